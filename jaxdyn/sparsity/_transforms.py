"""Sparse training as Optax wrappers: static masks, GMP, SET, RigL and GraNet around any optimizer.

Every transform here wraps an inner ``optax.GradientTransformation`` and keeps a mask tree (see
`jaxdyn.sparsity.apply_masks`) in a `SparseState`. Each ``update(grads, state, params)``, at
iteration t (counted from 1):

1. the inner optimizer sees the gradients masked to the active set, and its update is masked again;
2. at a topology step (the method's schedule, gated by ``lax.cond`` so other steps pay nothing for
   it) the masks change as the method prescribes, from the weights after this step's update and the
   dense gradient ``grads``; every params-shaped subtree of the inner state (momentum, Adam moments,
   found by tree structure, never by the state's type) is zeroed outside the new active set and at
   regrown entries (between topology steps the moments see zero gradients outside the masks);
3. the returned updates are the inner update on entries that stay active and ``-param`` on the rest,
   so ``optax.apply_updates`` leaves every inactive entry exactly 0 (``p + (-p) == 0`` in floating
   point) and regrown entries start at 0.

Entries outside the initial masks are zeroed by the first update. Start sparse at step 0 with
``params = apply_masks(params, opt_state)`` after ``init``.

A transform after the wrapper that changes its updates (weight decay, a scale) would break step 3:
put such transforms inside ``inner`` or before the wrapper, as with `jaxdyn.bayes.ssvi`.

jaxdyn executes masked weights as dense arithmetic (stored zeros): the FLOPs that
`jaxdyn.sparsity.sparse_flops` counts are what a sparse kernel would execute, not this
implementation's wall time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdyn import _trees, _validation
from jaxdyn.sparsity._masks import (
    DISTRIBUTIONS,
    Predicate,
    _check_predicate,
    dense_masks,
    prunable,
    random_masks,
    rank_keys,
    top_k_mask,
)
from jaxdyn.sparsity._schedules import DropSchedule, PruningSchedule

__all__ = ["SparseState", "drop_and_regrow", "gmp", "granet", "rigl", "set_sparse", "static_sparse"]


class SparseState(NamedTuple):
  """State of the sparse-training wrappers.

  Field names are distinct from the wrappers' arguments so ``optax.tree_utils.tree_get(state, name)``
  finds them through ``optax.chain``, ``MultiSteps`` and ``inject_hyperparams``.

  Attributes:
    count: int32, ``update`` calls so far.
    masks: the mask tree (the params' structure: a boolean array per sparse leaf, a 0-d True per
      dense leaf).
    inner_state: the wrapped optimizer's state; its params-shaped subtrees (moments) are zeroed
      outside the new active set, and at regrown entries, at every topology step, and see zero
      gradients there in between.
    key: the raw data (uint32, ``jax.random.key_data``) of the `jax.random` key of random regrowth
      (SET), split at each topology step; stored raw so that the state checkpoints like any array.
    density: float32, the active fraction of the sparse leaves after the last update.
    topology_steps: int32, the updates at which the masks changed (or could have).
    active: int32 ``[n_sparse]``, each sparse leaf's active entries now (leaf order).
    active_step_sum: float32 ``[n_sparse]``, per sparse leaf (leaf order) the sum over updates of
      the leaf's active count during the update, for training-FLOP accounting (`training_flops`).
      Both are one array rather than a tuple of scalars: one operation per step instead of one per
      leaf, which on small models is most of the wrapper's cost.
  """

  count: jax.Array
  masks: Any
  inner_state: optax.OptState
  key: jax.Array
  density: jax.Array
  topology_steps: jax.Array
  active: jax.Array
  active_step_sum: jax.Array


def drop_and_regrow(weights: jax.Array, grow_score: jax.Array, mask: jax.Array, num: jax.Array | int
                    ) -> tuple[jax.Array, jax.Array]:
  """One layer's drop-and-regrow: drop the ``num`` smallest active |w|, regrow ``num`` by score.

  The kept set is the active entries but the ``num`` with the smallest |weights| (ties: the lower
  flat index is dropped first); the regrown set is the ``num`` entries outside the kept set with the
  largest ``grow_score`` (ties: the lower index first), which may include just-dropped ones (as in
  RigL). The active count is conserved when ``num`` <= the active count. A regrown entry starts at
  0 in the wrappers (paper rule of RigL and GraNet).

  Args:
    weights: the layer's weights (any shape).
    grow_score: same shape; |gradient| for RigL and GraNet, uniform noise for SET.
    mask: boolean active set, same shape.
    num: entries to move, an int (traced or concrete) in [0, active count].

  Returns:
    ``(new_mask, regrown)``, booleans of the weights' shape; ``regrown`` marks the entries that
    become active at this step (new or re-grown). A NaN or an infinity in ``weights`` or
    ``grow_score`` raises naming it when called eagerly; under ``jit`` the mask is kept unchanged
    (and the wrappers' updates carry the NaN on to the loss, where the harness's guard stops).

  Example:
    >>> m, g = drop_and_regrow(jnp.array([3.0, 0.1, 2.0, 0.0]), jnp.array([0.0, 0.0, 0.0, 5.0]),
    ...                        jnp.array([True, True, True, False]), 1)
    >>> m.tolist(), g.tolist()
    ([True, False, True, True], [False, False, False, True])
  """
  _validation.check_same_shape("grow_score", grow_score, "weights", weights)
  _validation.check_same_shape("mask", mask, "weights", weights)
  _validation.check_int("num", num, lower=0)
  for name, a in (("weights", weights), ("grow_score", grow_score)):
    _validation.check_finite(name, a)
  return _drop_and_regrow(weights, grow_score, mask, num)


def _drop_and_regrow(weights, grow_score, mask, num):
  """`drop_and_regrow` without the eager checks (the wrappers' topology step)."""
  shape = jnp.shape(weights)
  w, s, m = jnp.ravel(weights), jnp.ravel(grow_score), jnp.ravel(mask).astype(bool)
  drop_score = jnp.where(m, jnp.abs(w).astype(jnp.float32), jnp.inf)
  kept = m & ~top_k_mask(drop_score, num, largest_first=False)
  grown = ~kept & top_k_mask(jnp.where(kept, -jnp.inf, s.astype(jnp.float32)), num)
  ok = jnp.all(jnp.isfinite(w)) & jnp.all(~jnp.isnan(s))
  new_mask = kept | grown
  # A NaN anywhere makes the choice meaningless: keep the mask (the NaN weights carry on to the loss).
  new_mask = jnp.where(ok, new_mask, m)
  grown = grown & ok
  return new_mask.reshape(shape), grown.reshape(shape)


def _global_keep(scores: list[jax.Array], masks: list[jax.Array], k: jax.Array, strict_threshold: bool
                 ) -> list[jax.Array]:
  """Global magnitude pruning: keep k entries of the concatenated active |w| (exact, or > the k-th)."""
  flat = jnp.concatenate([jnp.where(m, s, -1.0).ravel() for s, m in zip(scores, masks)])
  if strict_threshold:  # GraNet's code: |w| > the k-th largest |w| over all entries (zeros included)
    allflat = jnp.concatenate([s.ravel() for s in scores])
    n = allflat.shape[0]
    kth = jnp.sort(rank_keys(allflat))[jnp.clip(n - k, 0, n - 1)]  # the k-th largest, as a sort key
    keep = (rank_keys(flat) > kth) & (k > 0)
  else:
    keep = top_k_mask(flat, k)
  out, start = [], 0
  for s in scores:
    out.append(keep[start:start + s.size].reshape(s.shape))
    start += s.size
  return out


class _Method(NamedTuple):
  init_masks: Callable[[Any], Any]
  is_topology: Callable[[jax.Array], jax.Array]
  # (step, weights after the update, dense grads, masks, key) over the sparse leaves, in leaf order ->
  # (new masks, regrown entries that restart at 0)
  topology: Callable[..., tuple[list[jax.Array], list[jax.Array]]]


def _wrap(inner: optax.GradientTransformation, method: _Method, predicate, exclude, key
          ) -> optax.GradientTransformationExtraArgs:
  if not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
    raise TypeError(f"inner: must be an optax.GradientTransformation, got {type(inner).__name__}")
  inner = optax.with_extra_args_support(inner)
  key = jax.random.key(0) if key is None else _validation.check_key("key", key)

  def sparse_index(params):
    flags = jax.tree.structure(params).flatten_up_to(prunable(params, predicate, exclude=exclude))
    return [i for i, f in enumerate(flags) if f]

  def counts_of(masks, idx):
    leaves = jax.tree.leaves(masks)
    return jnp.stack([jnp.sum(leaves[i], dtype=jnp.int32) for i in idx])

  def density_of(nnz, sizes):
    return jnp.sum(nnz).astype(jnp.float32) / float(sum(sizes))

  def init_fn(params):
    masks = method.init_masks(params)
    idx = sparse_index(params)
    sizes = [jax.tree.leaves(params)[i].size for i in idx]
    nnz = counts_of(masks, idx)
    return SparseState(count=jnp.zeros([], jnp.int32), masks=masks, inner_state=inner.init(params),
                       key=jax.random.key_data(key), density=density_of(nnz, sizes),
                       topology_steps=jnp.zeros([], jnp.int32), active=nnz,
                       active_step_sum=jnp.zeros([len(idx)], jnp.float32))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError("params: the sparse-training wrappers need the parameters in update(updates, state, params)")
    step = state.count + 1
    idx = sparse_index(params)
    p_leaves, treedef = jax.tree.flatten(params)
    sizes = [p_leaves[i].size for i in idx]
    g_leaves = treedef.flatten_up_to(updates)
    m_leaves = treedef.flatten_up_to(state.masks)

    sparse_m = [m_leaves[i] for i in idx]
    # Masking by multiplication, not `where`: a NaN or an infinity in a sparse leaf's gradient, masked
    # or not, must not vanish in the masking (inf * 0 and NaN * 0 are NaN), so it reaches the update
    # and the parameters. A separate finiteness reduction over the gradients did the same at 7% of
    # the step (benchmarks/sparse_overhead.py); the products fuse into the update for free.
    masked_g = list(g_leaves)
    for i in idx:
      masked_g[i] = g_leaves[i] * m_leaves[i].astype(g_leaves[i].dtype)
    u, inner_state = inner.update(jax.tree.unflatten(treedef, masked_g), state.inner_state, params, **extra_args)
    u_leaves = treedef.flatten_up_to(u)

    # The conditional returns the masks and the inner state: a regular step passes the inner state
    # through untouched (its moments see zero gradients outside the masks, so they stay zero there),
    # a topology step zeroes them outside `keep` (removed and regrown entries restart from zero
    # moments). Measured on the default CNN (benchmarks/sparse_overhead.py), masking the moments
    # after the conditional instead, on every step, cost 10-15% of the step. On XLA:CPU the
    # conditional's regular branch costs about 20 small operations (copies of the masks passed
    # through), about 0.15 ms of the Adam update alone; restructurings that passed fewer buffers
    # through it measured no faster in the full step. What did help was the topology branch's own
    # cost: its rankings were float argsorts (5.3 ms per topology step of the update alone), now
    # integer-key sorts (`top_k_mask`, 1.9 ms), and the benchmark's ratio fell from 1.11-1.12 to
    # 1.04-1.06 (2026-12-02, side by side on one machine).
    def regular(_):
      return sparse_m, sparse_m, state.key, state.active, state.density, inner_state

    def topology(_):
      after = [jnp.where(m_leaves[i], (p_leaves[i] + u_leaves[i]).astype(p_leaves[i].dtype),
                         jnp.zeros_like(p_leaves[i])) for i in idx]
      k_use, k_next = jax.random.split(jax.random.wrap_key_data(state.key))
      new, regrown = method.topology(step, after, [g_leaves[i] for i in idx], sparse_m, k_use)
      nnz = jnp.stack([jnp.sum(m, dtype=jnp.int32) for m in new])
      keep = [m & ~r for m, r in zip(new, regrown)]
      keep_all = [None] * len(p_leaves)
      for j, i in enumerate(idx):
        keep_all[i] = keep[j]
      inner = _trees.params_like_mapper(params)(
          inner_state, lambda x, i: x if keep_all[i] is None else jnp.where(keep_all[i], x, jnp.zeros_like(x)))
      return list(new), keep, jax.random.key_data(k_next), nnz, density_of(nnz, sizes), inner

    is_topology = method.is_topology(step)
    new_sparse, keep_sparse, next_key, nnz, density, inner_state = jax.lax.cond(is_topology, topology, regular, None)
    # Active entries take the inner update; the rest -param (exactly 0 after apply_updates; after the
    # first update they are 0 already). Products again, so that a non-finite update is never dropped.
    out = list(u_leaves)
    new_m = list(m_leaves)
    keep = [None] * len(p_leaves)
    for j, i in enumerate(idx):
      new_m[i], keep[i] = new_sparse[j], keep_sparse[j]
      k = keep[i].astype(u_leaves[i].dtype)
      out[i] = u_leaves[i] * k - p_leaves[i].astype(u_leaves[i].dtype) * (1 - k)
    masks = jax.tree.unflatten(treedef, new_m)
    sums = state.active_step_sum + state.active.astype(jnp.float32)
    return jax.tree.unflatten(treedef, out), SparseState(
        count=step, masks=masks, inner_state=inner_state, key=next_key, density=density,
        topology_steps=state.topology_steps + is_topology.astype(jnp.int32), active=nnz, active_step_sum=sums)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_common(distribution, predicate, exclude):
  _validation.check_choice("distribution", distribution, DISTRIBUTIONS)
  checked, exclude = _check_predicate(predicate, exclude)
  return (None if predicate is None else checked), exclude


def static_sparse(inner: optax.GradientTransformation, *, density: float, key: jax.Array,
                  distribution: str = "erk", predicate: Predicate | None = None, exclude: Sequence[str] = ()
                  ) -> optax.GradientTransformationExtraArgs:
  """Static sparse training: ``inner`` on fixed random masks at ``density``.

  The masks are `random_masks` (exact per-layer counts of ``distribution``) drawn at ``init``
  from ``key``, and never change.

  Args:
    inner: the optimizer to wrap.
    density: the global density of the sparse leaves, in (0, 1].
    key: the `jax.random` key of the masks.
    distribution: ``"erk"`` (default), ``"er"`` or ``"uniform"`` (`layer_counts`).
    predicate: which leaves are sparse (`prunable`; default 2-D and 4-D kernels, not embeddings).
    exclude: path substrings kept dense (e.g. ``("convs/0", "head")``).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state `SparseState`.

  Example:
    >>> params = {"w": jnp.ones((10, 10)), "b": jnp.ones(10)}
    >>> tx = static_sparse(optax.sgd(0.1), density=0.2, key=jax.random.key(0))
    >>> state = tx.init(params)
    >>> int(state.masks["w"].sum()), round(float(state.density), 6)
    (20, 0.2)

  References:
    Evci et al., "Rigging the Lottery", ICML 2020, https://arxiv.org/abs/1911.11134 (the static
    ERK baseline).
  """
  _validation.check_real("density", density, lower=0.0, lower_open=True, upper=1.0)
  _validation.check_key("key", key)
  predicate, exclude = _check_common(distribution, predicate, exclude)
  method = _Method(
      init_masks=lambda p: random_masks(key, p, density, distribution=distribution, predicate=predicate,
                                        exclude=exclude),
      is_topology=lambda step: jnp.zeros([], bool),
      topology=lambda step, w, g, m, k: (m, [jnp.zeros(x.shape, bool) for x in m]))
  return _wrap(inner, method, predicate, exclude, key)


def gmp(inner: optax.GradientTransformation, *, schedule: PruningSchedule, scope: str = "layer",
        predicate: Predicate | None = None, exclude: Sequence[str] = ()) -> optax.GradientTransformationExtraArgs:
  """Gradual magnitude pruning (Zhu and Gupta): prune to the cubic schedule, never regrow.

  At each update step of ``schedule`` the active entries with the smallest |w| are removed so that
  exactly round(d(t) N) of the N sparse entries stay active: per layer at d(t) (``scope="layer"``,
  Zhu and Gupta's layer-wise pruning, counts by `layer_counts` with ``"uniform"``) or by one global
  magnitude ranking (``scope="global"``, GraNet without regeneration). Pruned entries stay pruned.

  Args:
    inner: the optimizer to wrap.
    schedule: a `PruningSchedule` with ``init_density == 1`` (GMP starts dense).
    scope: ``"layer"`` or ``"global"``.
    predicate: which leaves are sparse (`prunable`).
    exclude: path substrings kept dense.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state `SparseState`.

  Example:
    >>> params = {"w": jnp.arange(1.0, 11.0).reshape(2, 5)}
    >>> tx = gmp(optax.sgd(0.0), schedule=PruningSchedule(final_density=0.3, end_step=1, update_every=1))
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    >>> optax.apply_updates(params, updates)["w"].tolist()
    [[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 8.0, 9.0, 10.0]]

  References:
    Zhu and Gupta, "To prune, or not to prune", 2017, https://arxiv.org/abs/1710.01878 (eq. 1).
  """
  if not isinstance(schedule, PruningSchedule):
    raise TypeError(f"schedule: must be a PruningSchedule, got {type(schedule).__name__}")
  if schedule.init_density != 1.0:
    raise ValueError(f"schedule: GMP starts dense (init_density 1.0), got init_density {schedule.init_density}")
  _validation.check_choice("scope", scope, ("layer", "global"))
  predicate, exclude = _check_common("erk", predicate, exclude)
  sizes_of = lambda w: [x.size for x in w]  # noqa: E731

  def topology(step, w, g, m, key):
    del g, key
    d = schedule.density(step)
    scores = [jnp.abs(x).astype(jnp.float32) for x in w]
    if scope == "global":
      k = jnp.round(d * float(sum(sizes_of(w)))).astype(jnp.int32)
      new = _global_keep(scores, m, k, strict_threshold=False)
    else:  # round(d n_l) per layer, with the rounding remainder spread so the total is exact
      total = float(sum(sizes_of(w)))
      k_total = jnp.round(d * total).astype(jnp.int32)
      real = [d * x.size for x in w]
      base = [jnp.floor(r).astype(jnp.int32) for r in real]
      rema = jnp.stack([r - b for r, b in zip(real, base)])
      left = k_total - sum(base)
      extra = top_k_mask(rema, left).astype(jnp.int32)
      new = [top_k_mask(jnp.where(mm, s, -1.0).ravel(), b + extra[j]).reshape(s.shape)
             for j, (s, mm, b) in enumerate(zip(scores, m, base))]
    return [n & mm for n, mm in zip(new, m)], [jnp.zeros(x.shape, bool) for x in w]

  method = _Method(init_masks=lambda p: dense_masks(p, predicate, exclude=exclude),
                   is_topology=schedule.is_update_step, topology=topology)
  return _wrap(inner, method, predicate, exclude, None)


def _dst(inner, *, density, key, schedule, distribution, predicate, exclude, grow):
  def topology(step, w, g, m, k):
    frac = schedule.fraction(step)
    new, regrown = [], []
    for j, (x, gg, mm) in enumerate(zip(w, g, m)):
      n = jnp.floor(frac * jnp.sum(mm, dtype=jnp.float32)).astype(jnp.int32)
      score = jnp.abs(gg) if grow == "gradient" else jax.random.uniform(jax.random.fold_in(k, j), x.shape)
      a, b = _drop_and_regrow(x, score, mm, n)
      new.append(a)
      regrown.append(b)
    return new, regrown

  method = _Method(
      init_masks=lambda p: random_masks(key, p, density, distribution=distribution, predicate=predicate,
                                        exclude=exclude),
      is_topology=schedule.is_update_step, topology=topology)
  return _wrap(inner, method, predicate, exclude, key)


def _drop_schedule(schedule, drop_fraction, end_step, update_every):
  if schedule is not None:
    if not isinstance(schedule, DropSchedule):
      raise TypeError(f"schedule: must be a DropSchedule, got {type(schedule).__name__}")
    return schedule
  if end_step is None:
    raise ValueError("end_step: required unless a DropSchedule is given (RigL: 0.75 of the run)")
  return DropSchedule(end_step=end_step, drop_fraction=drop_fraction, update_every=update_every)


def rigl(inner: optax.GradientTransformation, *, density: float, key: jax.Array, end_step: int | None = None,
         update_every: int = 100, drop_fraction: float = 0.3, schedule: DropSchedule | None = None,
         distribution: str = "erk", predicate: Predicate | None = None, exclude: Sequence[str] = ()
         ) -> optax.GradientTransformationExtraArgs:
  """RigL (Evci et al.): sparse from the start, drop by magnitude, regrow by gradient magnitude.

  Masks start as `random_masks` at ``density``. Every dT steps up to T_end, per layer the
  n = floor(f(t) n_active) active entries with the smallest |w| are dropped and the n inactive
  entries with the largest |dL/dw| (the dense gradient this step) are regrown at 0, f(t) =
  (drop_fraction / 2)(1 + cos(pi t / T_end)) (`DropSchedule`). Each layer's active count is constant.

  Args:
    inner: the optimizer to wrap.
    density: global density of the sparse leaves, in (0, 1].
    key: the `jax.random` key of the initial masks.
    end_step: T_end (RigL: 0.75 of the run); required unless ``schedule`` is given.
    update_every: dT (100).
    drop_fraction: alpha in (0, 1) (0.3).
    schedule: a `DropSchedule` instead of the three arguments above.
    distribution: the layer-wise density (`layer_counts`; "erk").
    predicate: which leaves are sparse (`prunable`).
    exclude: path substrings kept dense.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state `SparseState`.

  Example:
    >>> tx = rigl(optax.adam(1e-3), density=0.1, key=jax.random.key(0), end_step=750)

  References:
    Evci et al., "Rigging the Lottery: Making All Tickets Winners", ICML 2020,
    https://arxiv.org/abs/1911.11134.
  """
  _validation.check_real("density", density, lower=0.0, lower_open=True, upper=1.0)
  _validation.check_key("key", key)
  predicate, exclude = _check_common(distribution, predicate, exclude)
  schedule = _drop_schedule(schedule, drop_fraction, end_step, update_every)
  return _dst(inner, density=density, key=key, schedule=schedule, distribution=distribution, predicate=predicate,
              exclude=exclude, grow="gradient")


def set_sparse(inner: optax.GradientTransformation, *, density: float, key: jax.Array, end_step: int | None = None,
               update_every: int = 100, drop_fraction: float = 0.3, schedule: DropSchedule | None = None,
               distribution: str = "erk", predicate: Predicate | None = None, exclude: Sequence[str] = ()
               ) -> optax.GradientTransformationExtraArgs:
  """SET (Mocanu et al.): as `rigl`, with regrowth at uniformly random inactive positions.

  The drop is by magnitude and the schedule RigL's cosine one (the comparison protocol of Evci et al.;
  Mocanu et al. drop a fixed zeta = 0.3 each epoch). Random draws come from the state's key, split at
  every topology step, so a resumed run regrows the same entries.

  Args:
    inner, density, key, end_step, update_every, drop_fraction, schedule, distribution, predicate,
    exclude: as in `rigl`.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state `SparseState`.

  Example:
    >>> tx = set_sparse(optax.sgd(0.1), density=0.1, key=jax.random.key(0), end_step=750)

  References:
    Mocanu et al., Nature Communications 2018, https://arxiv.org/abs/1707.04780.
  """
  _validation.check_real("density", density, lower=0.0, lower_open=True, upper=1.0)
  _validation.check_key("key", key)
  predicate, exclude = _check_common(distribution, predicate, exclude)
  schedule = _drop_schedule(schedule, drop_fraction, end_step, update_every)
  return _dst(inner, density=density, key=key, schedule=schedule, distribution=distribution, predicate=predicate,
              exclude=exclude, grow="random")


def granet(inner: optax.GradientTransformation, *, schedule: PruningSchedule, key: jax.Array | None = None,
           drop_fraction: float = 0.5, min_drop_fraction: float = 0.005, total_steps: int | None = None,
           distribution: str = "erk", predicate: Predicate | None = None, exclude: Sequence[str] = (),
           official_compat: bool = False) -> optax.GradientTransformationExtraArgs:
  """GraNet: gradual global magnitude pruning with zero-cost neuroregeneration (Liu et al., 2021).

  At each update step t of ``schedule`` (t % dT == 0, t0 <= t <= tf):

  1. *prune*: keep exactly round(d(t) N) of the N sparse entries, those with the largest |w| over all
     sparse layers together (global magnitude pruning to the cubic schedule d(t));
  2. *regenerate*, per layer: drop the n = ceil(r(t) n_active) surviving entries with the smallest
     |w|, and regrow n entries outside the kept set with the largest |dL/dw| (`drop_and_regrow`),
     every regrown weight starting at 0 (its moments too). r(t) decays from ``drop_fraction`` to
     ``min_drop_fraction`` with a cosine over [t0, tf] (`DropSchedule`).

  Dense to sparse: ``schedule.init_density == 1`` (masks start all True). Sparse to sparse:
  ``init_density < 1`` starts from `random_masks` at d_i with ``distribution`` (ERK) and ``key``.

  **Paper and code.** The default follows the paper (Liu et al., NeurIPS 2021, Alg. 1 and Sec. 4);
  ``official_compat=True`` reproduces the authors' code (VITA-Group/GraNet,
  ``CIFAR/sparselearning/core.py``, ``Masking.pruning`` / ``truncate_weights``):

  - the global prune keeps the weights strictly above the k-th largest |w| of all sparse entries
    (zeros included), so ties can keep fewer than k (paper: exactly k);
  - the last prune falls one update early (steps t0 <= t < tf), so d_f is never quite reached;
  - regeneration continues every dT after tf (paper: only at the pruning steps);
  - a weight that is dropped and regrown at the same step keeps its value and moments; only entries
    that were inactive start at 0 (paper: every regrown weight starts at 0);
  - the death rate decays over the whole run, r(t) = r_min + (r_0 - r_min)(1 + cos(pi t / T)) / 2
    with T = ``total_steps`` (the code's per-iteration ``CosineDecay``), not over [t0, tf].

  The paper states the cosine decay without its horizon; over [t0, tf] is our reading (pruning and
  regeneration share their steps there).

  Args:
    inner: the optimizer to wrap (the paper: SGD with momentum).
    schedule: the `PruningSchedule` (d_i, d_f, t0, tf, dT).
    key: `jax.random` key of the initial masks when ``init_density < 1`` (required then).
    drop_fraction: r_0 in (0, 1) (0.5).
    min_drop_fraction: r_min in [0, r_0] (0.005).
    total_steps: the run's length, required with ``official_compat=True`` (the death rate's horizon).
    distribution: the initial layer-wise density when starting sparse (`layer_counts`; "erk").
    predicate: which leaves are sparse (`prunable`).
    exclude: path substrings kept dense.
    official_compat: reproduce the authors' code (above).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state `SparseState`.

  Example:
    >>> sched = PruningSchedule(final_density=0.1, start_step=100, end_step=800, update_every=100)
    >>> tx = granet(optax.sgd(0.1, momentum=0.9), schedule=sched)
    >>> params = {"w": jnp.ones((10, 10))}
    >>> float(tx.init(params).density)
    1.0

  References:
    Liu et al., "Sparse Training via Boosting Pruning Plasticity with Neuroregeneration", NeurIPS
    2021, https://arxiv.org/abs/2106.10404; code https://github.com/VITA-Group/GraNet.
  """
  if not isinstance(schedule, PruningSchedule):
    raise TypeError(f"schedule: must be a PruningSchedule, got {type(schedule).__name__}")
  if not isinstance(official_compat, bool):
    raise TypeError(f"official_compat: must be a bool, got {type(official_compat).__name__}")
  predicate, exclude = _check_common(distribution, predicate, exclude)
  if schedule.init_density < 1.0 and key is None:
    raise ValueError("key: needed to draw the initial masks when schedule.init_density < 1 (sparse to sparse)")
  if key is not None:
    _validation.check_key("key", key)
  drop_fraction = _validation.check_real("drop_fraction", drop_fraction, lower=0.0, lower_open=True, upper=1.0,
                                         upper_open=True)
  min_drop_fraction = _validation.check_real("min_drop_fraction", min_drop_fraction, lower=0.0, upper=drop_fraction)
  if official_compat:
    if total_steps is None:
      raise ValueError("total_steps: required with official_compat=True (the code decays the death rate over the run)")
    total_steps = _validation.check_int("total_steps", total_steps, lower=1)
    drops = DropSchedule(end_step=total_steps, drop_fraction=drop_fraction, min_fraction=min_drop_fraction,
                         start_step=0, update_every=schedule.update_every)
  else:
    if total_steps is not None:
      _validation.check_int("total_steps", total_steps, lower=1)
    drops = DropSchedule(end_step=schedule.end_step, drop_fraction=drop_fraction, min_fraction=min_drop_fraction,
                         start_step=schedule.start_step, update_every=schedule.update_every)

  def is_topology(step):
    if official_compat:  # prune in [t0, tf), regenerate every dT from t0 on
      return (step % schedule.update_every == 0) & (step >= schedule.start_step) & (step > 0)
    return schedule.is_update_step(step)

  def topology(step, w, g, m, key):
    del key
    total = float(sum(x.size for x in w))
    prune_now = schedule.is_update_step(step, official_compat=official_compat)
    k = jnp.round(schedule.density(step) * total).astype(jnp.int32)
    scores = [jnp.abs(x).astype(jnp.float32) for x in w]
    pruned = _global_keep(scores, m, k, strict_threshold=official_compat)
    pruned = [jnp.where(prune_now, p & mm, mm) for p, mm in zip(pruned, m)]
    r = drops.fraction(step)
    new, regrown = [], []
    for x, gg, mm in zip(w, g, pruned):
      nnz = jnp.sum(mm, dtype=jnp.float32)
      if official_compat:  # drop |w| <= the (zeros + n)-th smallest |w|, regrow as many as were dropped
        n = jnp.ceil(r * nnz).astype(jnp.int32)
        keys = rank_keys(jnp.where(mm, jnp.abs(x), 0.0).ravel())
        zeros = x.size - nnz.astype(jnp.int32)
        thr = jnp.sort(keys)[jnp.clip(zeros + n - 1, 0, x.size - 1)]  # as a sort key (`rank_keys`)
        kept = mm & (keys.reshape(x.shape) > thr) & (n > 0) | (mm & (n == 0))
        n_dropped = jnp.sum(mm & ~kept, dtype=jnp.int32)
        grown = ~kept & top_k_mask(jnp.where(kept, -jnp.inf, jnp.abs(gg).astype(jnp.float32)).ravel(),
                                   n_dropped).reshape(x.shape)
        a = kept | grown
        b = grown & ~mm  # dropped-and-regrown entries keep their values in the code
      else:
        n = jnp.ceil(r * nnz).astype(jnp.int32)
        a, b = _drop_and_regrow(x, jnp.abs(gg), mm, n)
      new.append(a)
      regrown.append(b)
    return new, regrown

  init_density = schedule.init_density
  if init_density < 1.0:
    init_masks = lambda p: random_masks(key, p, init_density, distribution=distribution, predicate=predicate,  # noqa: E731
                                        exclude=exclude)
  else:
    init_masks = lambda p: dense_masks(p, predicate, exclude=exclude)  # noqa: E731
  return _wrap(inner, _Method(init_masks=init_masks, is_topology=is_topology, topology=topology), predicate,
               exclude, key)
