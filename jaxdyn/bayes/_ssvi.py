"""SSVI as an Optax transform: periodic removal and addition of active weights around an optimizer.

`ssvi` must be the last transform of a chain: its topology step rewrites parameters through the
updates it returns (new - old), so anything after it that rescales or adds to the updates would
leave removed entries non-zero and grow the active set. `ssvi` detects that on the next update (see
its docstring). Wrap the optimizer instead: ``ssvi(optax.chain(clip, sgd, ...))`` or
``optax.chain(clip, ssvi(sgd))``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdyn import _trees, _validation
from jaxdyn.bayes._layers import MU_NAME, RHO_NAME, posterior_std
from jaxdyn.bayes._scores import CRITERIA, score_unchecked

__all__ = ["SSVIState", "TopologySchedule", "drop_and_grow", "ssvi", "ssvi_sgd"]


@dataclasses.dataclass(frozen=True)
class TopologySchedule:
  """When SSVI moves the active set, and how much of it.

  Iterations are counted from 1 (the t-th call of ``update``). Iteration t is a topology step when
  t % update_every == 0 and t < end_step; it removes and adds n = floor(n_active * f(t)) entries per
  layer with f(t) = drop_fraction * (1 + cos(pi * t / end_step)) (0.3 at the start, 0 at T_end).

  Concrete values are checked and stored as Python numbers (NumPy scalars and 0-d arrays
  accepted); traced ones (``optax.inject_hyperparams``) are stored as they are, unchecked.

  Attributes:
    update_every: dT, an int >= 1 (100 in the paper).
    end_step: T_end, an int >= 1 (0.75 of the run in the paper).
    drop_fraction: f's half-amplitude in (0, 0.5] (0.15; the authors' ``alpha / 2`` with 0.3).
  """

  update_every: int
  end_step: int
  drop_fraction: float = 0.15

  def __post_init__(self):
    object.__setattr__(self, "update_every", _validation.check_int("update_every", self.update_every, lower=1))
    object.__setattr__(self, "end_step", _validation.check_int("end_step", self.end_step, lower=1))
    object.__setattr__(self, "drop_fraction", _validation.check_real(
        "drop_fraction", self.drop_fraction, lower=0.0, lower_open=True, upper=0.5))

  def is_update_step(self, step: jax.Array) -> jax.Array:
    return (step % self.update_every == 0) & (step < self.end_step) & (step > 0)

  def fraction(self, step: jax.Array) -> jax.Array:
    return self.drop_fraction * (1.0 + jnp.cos(math.pi * jnp.asarray(step, jnp.float32) / self.end_step))


class SSVIState(NamedTuple):
  """State of `ssvi`.

  The schedule fields are named so that ``optax.tree_utils.tree_get(opt_state, name)`` finds them
  through ``optax.chain``, ``optax.MultiSteps`` and ``optax.inject_hyperparams`` (their names are
  not those of `ssvi`'s arguments, which ``inject_hyperparams`` keeps in its ``hyperparams``): a
  training harness reads the schedule from the optimizer state instead of re-deriving it.

  Attributes:
    count: int32, the number of ``update`` calls so far (the next call is iteration count + 1).
    masks: one boolean mask per Gaussian kernel (shared by its mu and rho), in the order of
      ``jax.tree.leaves(params)``.
    inner_state: the wrapped optimizer's state; its copies of the parameter tree (momentum, moments)
      are zero outside the masks.
    topology_every: int32, dT in use (``update_every``).
    topology_end_step: int32, T_end in use (``end_step``, or its default round(0.75 total_steps)).
    topology_steps: int32, the topology (removal/addition) steps performed so far, i.e.
      `topology_update_count` of ``count`` (what `training_flops` takes as ``topology_steps``).
  """

  count: jax.Array
  masks: tuple[jax.Array, ...]
  inner_state: optax.OptState
  topology_every: jax.Array
  topology_end_step: jax.Array
  topology_steps: jax.Array


def _kernels(params, mu_name: str, rho_name: str) -> list[tuple[int, int, str]]:
  """(mu leaf index, rho leaf index, parent path) of every Gaussian kernel, matched by parent path."""
  by_parent: dict[tuple, dict[str, int]] = {}
  for i, (path, _) in enumerate(jax.tree_util.tree_flatten_with_path(params)[0]):
    names = _trees.path_names(path)
    if names and names[-1] in (mu_name, rho_name):
      by_parent.setdefault(tuple(map(str, names[:-1])), {})[names[-1]] = i
  kernels = [(d[mu_name], d[rho_name], "/".join(parent)) for parent, d in by_parent.items()
             if mu_name in d and rho_name in d]
  if not kernels:
    raise ValueError(f"params: no ({mu_name!r}, {rho_name!r}) leaf pairs found; name them with "
                     f"mu_name / rho_name")
  return sorted(kernels)


def drop_and_grow(mu: jax.Array, rho: jax.Array, grad_mu: jax.Array, mask: jax.Array,
                  fraction: jax.Array, *, criterion: str = "snr_abs"
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One SSVI removal/addition on one layer.

  With n_active = sum(mask) and n = floor(n_active * fraction): keep the n_active - n active entries
  with the highest `removal_score` (ties: lower flat index first); then add the n entries outside the
  kept set with the largest |grad_mu| (the dense gradient), which may re-add just-removed ones. New
  entries get mu = 0 and rho = mean rho of the surviving entries (those active before and after);
  re-added entries keep their values; removed entries get mu = rho = 0. The count is conserved.

  Args:
    mu: the layer's posterior means.
    rho: the layer's rho (sigma = softplus(rho) where active).
    grad_mu: d(CE + KL) / d mu of the last minibatch, dense.
    mask: boolean active set, consistent with ``rho != 0``.
    fraction: the removed fraction f in [0, 1), a scalar (checked when concrete; may be traced).
    criterion: see `removal_score`.

  Returns:
    ``(new_mask, new_mu, new_rho)``. An empty layer gives empty arrays. A NaN or an infinity in
    ``mu``, ``rho`` or ``grad_mu`` (anywhere, active or not), or a traced ``fraction`` outside
    [0, 1), makes all of ``new_mu`` and ``new_rho`` NaN (one reduction per input, only at topology
    steps), never a silently finite step.

  Example:
    >>> mask = jnp.array([True, True, False, False])
    >>> m, mu, rho = drop_and_grow(jnp.array([1.0, 0.1, 0, 0]), jnp.array([-5.0, -5.0, 0, 0]),
    ...                            jnp.array([0.0, 0.0, 0.0, 3.0]), mask, 0.5)
    >>> m.tolist(), mu.tolist(), rho.tolist()
    ([True, False, False, True], [1.0, 0.0, 0.0, 0.0], [-5.0, 0.0, 0.0, -5.0])

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025 (Alg. 1); code
    https://github.com/ljb121002/SSVI.
  """
  shape = jnp.shape(mu)
  for name, a in (("rho", rho), ("grad_mu", grad_mu), ("mask", mask)):
    _validation.check_same_shape(name, a, "mu", mu)
  _validation.check_choice("criterion", criterion, CRITERIA)
  _validation.check_real("fraction", fraction, lower=0.0, upper=1.0, upper_open=True)
  if jnp.ndim(fraction) != 0:
    raise ValueError(f"fraction: must be a scalar, got shape {jnp.shape(fraction)}")
  ok = (fraction >= 0) & (fraction < 1)  # False for NaN: only a traced fraction can fail here
  for a in (mu, rho, grad_mu):
    ok = ok & jnp.all(jnp.isfinite(a))
  mu, rho, g, mask = (jnp.ravel(a) for a in (mu, rho, grad_mu, mask))
  size = mu.shape[0]
  n_active = jnp.sum(mask, dtype=jnp.int32)
  n = jnp.floor(n_active.astype(jnp.float32) * fraction).astype(jnp.int32)
  positions = jnp.arange(size)

  def ranks(score):  # rank 0 = highest; stable, so ties go to the lower index
    order = jnp.argsort(-score, stable=True)
    return jnp.zeros(size, jnp.int32).at[order].set(positions.astype(jnp.int32))

  score = score_unchecked(mu, posterior_std(rho), criterion)
  score = jnp.where(mask, score, -jnp.inf)
  kept = mask & (ranks(score) < n_active - n)
  grow_score = jnp.where(kept, -jnp.inf, jnp.abs(g))
  grown = ~kept & (ranks(grow_score) < n)
  new_mask = kept | grown
  new = grown & ~mask
  survivors = new_mask & mask
  mean_rho = jnp.sum(jnp.where(survivors, rho, 0.0)) / jnp.maximum(jnp.sum(survivors), 1)
  new_mu = _validation.nan_unless(ok, jnp.where(new_mask & ~new, mu, 0.0))
  new_rho = _validation.nan_unless(ok, jnp.where(new, mean_rho.astype(rho.dtype), jnp.where(new_mask, rho, 0.0)))
  return new_mask.reshape(shape), new_mu.reshape(shape), new_rho.reshape(shape)


_CHAIN_ERROR = ("params: entries that ssvi left inactive (rho = 0) have a non-zero rho: something "
                "after ssvi changed its updates (ssvi must be the last transform of an optax.chain, "
                "since a topology step rewrites parameters through updates = new - old; wrap the "
                "optimizer instead, ssvi(optax.chain(...)), or put clipping before ssvi)")


def _end_step(total_steps, end_step):
  """T_end: ``end_step``, or round(0.75 * total_steps) (>= 1), traced when total_steps is."""
  if end_step is not None:
    return end_step
  if isinstance(total_steps, int):
    return max(1, int(round(0.75 * total_steps)))
  return jnp.maximum(1, jnp.round(0.75 * total_steps)).astype(jnp.int32)  # half to even, as round()


def ssvi(
    inner: optax.GradientTransformation,
    *,
    total_steps: int,
    end_step: int | None = None,
    update_every: int = 100,
    drop_fraction: float = 0.15,
    criterion: str = "snr_abs",
    mu_name: str = MU_NAME,
    rho_name: str = RHO_NAME,
) -> optax.GradientTransformationExtraArgs:
  """Sparse subspace variational inference: ``inner`` on a sparse active set that SSVI moves.

  Every iteration t (counted from 1) is either
    - a regular step: the inner optimizer sees the gradients masked to the active set and its
      updates are masked again, so inactive mu and rho stay exactly 0; or
    - a topology step (t % update_every == 0 and t < end_step, `TopologySchedule`): the inner update
      is skipped; per layer `drop_and_grow` removes the n = floor(n_active f(t)) active entries with
      the lowest `removal_score` and adds n entries by |dL/dmu| (the dense gradient in ``updates``),
      f(t) = drop_fraction (1 + cos(pi t / end_step)). Parameters change by returning
      updates = new_value - old_value on the changed entries (0 elsewhere; exact in floating point,
      since each changed entry goes to or from 0), and every params-shaped tree in the inner state
      (momentum, Adam moments) is multiplied by the new masks.
  Each layer's number of active entries stays what the model was built with. The masks are read at
  ``init`` from the parameters: an entry is active iff its rho is non-zero; kernels are the pairs of
  leaves named ``mu_name`` / ``rho_name`` under one parent (a dense layer, all rho non-zero, is left
  as it is by a topology step). Other leaves (biases, norms) pass through ``inner`` unmasked.

  **ssvi must be the last transform.** Because a topology step writes parameters through its
  updates, a transform after it (``optax.chain(ssvi(...), optax.scale(0.5))``, weight decay, a
  clip) would leave removed entries non-zero and silently grow the active set. Put such transforms
  inside ``inner`` or before ssvi (``optax.chain(optax.clip_by_global_norm(1.0), ssvi(...))``);
  ``optax.MultiSteps(ssvi(...))`` and ``optax.inject_hyperparams(ssvi)`` are fine. Each update
  checks that every entry it left inactive still has rho == 0 (one comparison and reduction per
  kernel's rho). Called eagerly, a violation raises ``ValueError("params: ...")``. Under ``jit``
  it makes every returned update NaN, so the parameters become NaN and the loss of the next step
  is non-finite: the training harness's non-finite guard stops the run (``config.nonfinite="fail"``)
  naming that step, and no run continues on a corrupted active set. We chose NaN poisoning over
  ``jax.debug.callback`` (a host callback per step, asynchronous errors, not supported everywhere)
  and ``checkify`` (every caller would have to wrap its step): it is pure, costs one select per
  update entry and works inside ``jit``, ``vmap``, sharded steps and optax wrappers alike.

  A topology step at which the gradient with respect to a layer's means is zero on every inactive
  entry (the loss does not reach the kernel through `active_mean`, e.g. a KL-only loss, or a model
  that reads ``kernel_mu`` directly) has nothing to rank the additions by, so it moves nothing
  useful (it re-adds what it removed, or the lowest indices). ssvi then warns once per transform
  (a ``RuntimeWarning`` naming the layers), through a ``jax.debug.callback`` that runs only on
  such a topology step: no host transfer on any other step.

  Only the standard ``update(updates, state, params)`` is needed (``params`` is required); extra
  keyword arguments are passed on to ``inner``. The state (`SSVIState`) records the schedule in
  use, ``topology_every``, ``topology_end_step`` and ``topology_steps`` (performed so far), for
  ``optax.tree_utils.tree_get``.

  Args:
    inner: the optimizer to wrap (e.g. SGD with momentum; `ssvi_sgd` builds the paper's).
    total_steps: steps of the whole run, an int >= 1 (to check ``end_step``).
    end_step: T_end in [1, total_steps]; None gives round(0.75 * total_steps) as in the paper.
    update_every: dT, an int >= 1 (100).
    drop_fraction: in (0, 0.5] (0.15).
    criterion: removal score, one of ``CRITERIA`` (default ``"snr_abs"``, the SNR of |theta|).
    mu_name: leaf name of the kernels' means.
    rho_name: leaf name of the kernels' rho (not ``mu_name``).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state `SSVIState`. The integer and real
    hyperparameters may be traced (``optax.inject_hyperparams(ssvi)(inner=..., total_steps=...)``
    needs no ``static_args``); they are checked only when concrete.

  Example:
    >>> params = {"layer": {"kernel_mu": jnp.array([0.5, 0.0]), "kernel_rho": jnp.array([-5.0, 0.0])}}
    >>> tx = ssvi(optax.sgd(0.1), total_steps=100)
    >>> state = tx.init(params)
    >>> state.masks[0].tolist(), int(optax.tree_utils.tree_get(state, "topology_end_step"))
    ([True, False], 75)

  References:
    Li et al., "Training Bayesian Neural Networks with Sparse Subspace Variational Inference",
    ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI (the schedule,
    the removal score, the mean-rho initialisation of new entries and the skipped optimizer step
    follow the authors' code, which agrees with the paper).
  """
  total_steps = _validation.check_int("total_steps", total_steps, lower=1)
  if end_step is not None:
    end_step = _validation.check_int("end_step", end_step, lower=1,
                                     upper=total_steps if isinstance(total_steps, int) else None)
  schedule = TopologySchedule(update_every=update_every, end_step=_end_step(total_steps, end_step),
                              drop_fraction=drop_fraction)
  _validation.check_choice("criterion", criterion, CRITERIA)
  for name, value in (("mu_name", mu_name), ("rho_name", rho_name)):
    if not isinstance(value, str):
      raise TypeError(f"{name}: must be a leaf name (a str), got {type(value).__name__}")
    if not value:
      raise ValueError(f"{name}: must be a non-empty leaf name, got {value!r}")
  if mu_name == rho_name:
    raise ValueError(f"rho_name: must differ from `mu_name`, got {rho_name!r} for both")
  if not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
    raise TypeError(f"inner: must be an optax.GradientTransformation, got {type(inner).__name__}")
  inner = optax.with_extra_args_support(inner)
  warned: list[bool] = []  # the blind-growth warning, once per transform

  def multipliers(params, kernels, masks):
    mults: list[Any] = [None] * len(jax.tree.leaves(params))
    for (i_mu, i_rho, _), m in zip(kernels, masks):
      mults[i_mu] = mults[i_rho] = m
    return mults

  def apply_masks(tree, mults):
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, [x if m is None else jnp.where(m, x, jnp.zeros_like(x))
                                        for x, m in zip(leaves, mults)])

  def schedule_fields():
    return dict(topology_every=jnp.asarray(schedule.update_every, jnp.int32),
                topology_end_step=jnp.asarray(schedule.end_step, jnp.int32))

  def init_fn(params):
    kernels = _kernels(params, mu_name, rho_name)
    leaves = jax.tree.leaves(params)
    for i_mu, i_rho, _ in kernels:
      if leaves[i_mu].shape != leaves[i_rho].shape:
        raise ValueError(f"params: {mu_name} and {rho_name} shapes differ: "
                         f"{leaves[i_mu].shape} vs {leaves[i_rho].shape}")
    masks = tuple(leaves[i_rho] != 0 for _, i_rho, _ in kernels)
    return SSVIState(count=jnp.zeros([], jnp.int32), masks=masks, inner_state=inner.init(params),
                     topology_steps=jnp.zeros([], jnp.int32), **schedule_fields())

  def warn_blind(blind, names):
    if warned:
      return
    warned.append(True)
    layers = [n for n, b in zip(names, np.asarray(blind)) if b]
    warnings.warn(
        f"ssvi: at a topology step the gradient with respect to the means ({mu_name}) is zero on every "
        f"inactive entry of {layers}, so the addition step has nothing to rank and the active set does not "
        f"move by gradient. Does the loss reach these kernels through their forward pass (active_mean)? A "
        f"KL-only loss, or a model reading {mu_name} directly, does not.", RuntimeWarning, stacklevel=2)

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError("params: ssvi needs the parameters in update(updates, state, params)")
    kernels = _kernels(params, mu_name, rho_name)
    names = [name for _, _, name in kernels]
    step = state.count + 1
    p_leaves, treedef = jax.tree.flatten(params)
    g_leaves = jax.tree.leaves(updates)
    map_params_like = _trees.params_like_mapper(params)

    # The chain check: every entry left inactive by the last update still has rho == 0.
    stray = functools.reduce(jnp.logical_or, [jnp.any(~m & (p_leaves[i_rho] != 0))
                                              for (_, i_rho, _), m in zip(kernels, state.masks)])
    if _validation.is_concrete(stray) and bool(stray):
      raise ValueError(_CHAIN_ERROR)

    def regular(_):
      mults = multipliers(params, kernels, state.masks)
      new_updates, inner_state = inner.update(apply_masks(updates, mults), state.inner_state, params,
                                              **extra_args)
      return apply_masks(new_updates, mults), inner_state, state.masks

    def topology(_):
      frac = schedule.fraction(step)
      new_leaves = list(p_leaves)
      masks, blind = [], []
      for (i_mu, i_rho, _), m in zip(kernels, state.masks):
        g_mu = g_leaves[i_mu]
        blind.append(jnp.any(~m) & jnp.all(m | (g_mu == 0)))
        m2, mu2, rho2 = drop_and_grow(p_leaves[i_mu], p_leaves[i_rho], g_mu, m, frac, criterion=criterion)
        new_leaves[i_mu], new_leaves[i_rho] = mu2, rho2
        masks.append(m2)
      blind = jnp.stack(blind)
      if not warned:
        jax.lax.cond(jnp.any(blind), lambda b: jax.debug.callback(functools.partial(warn_blind, names=names), b),
                     lambda b: None, blind)
      upd = [(new - old).astype(g.dtype) for new, old, g in zip(new_leaves, p_leaves, g_leaves)]
      mults = multipliers(params, kernels, masks)
      inner_state = map_params_like(
          state.inner_state, lambda x, i: x if mults[i] is None else jnp.where(mults[i], x, jnp.zeros_like(x)))
      return jax.tree.unflatten(treedef, upd), inner_state, tuple(masks)

    is_topology = schedule.is_update_step(step)
    new_updates, inner_state, masks = jax.lax.cond(is_topology, topology, regular, None)
    new_updates = jax.tree.map(
        lambda u: jnp.where(stray, jnp.asarray(jnp.nan, u.dtype), u) if jnp.issubdtype(u.dtype, jnp.inexact) else u,
        new_updates)
    return new_updates, SSVIState(count=step, masks=tuple(masks), inner_state=inner_state,
                                  topology_steps=state.topology_steps + is_topology.astype(jnp.int32),
                                  **schedule_fields())

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def ssvi_sgd(
    learning_rate: optax.ScalarOrSchedule,
    *,
    total_steps: int,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    end_step: int | None = None,
    update_every: int = 100,
    drop_fraction: float = 0.15,
    criterion: str = "snr_abs",
    mu_name: str = MU_NAME,
    rho_name: str = RHO_NAME,
) -> optax.GradientTransformationExtraArgs:
  """The paper's optimizer: `ssvi` around SGD with momentum and L2 weight decay on all but rho.

  updates = -lr * trace, trace = beta trace + (g + wd * w) with wd = 0 on the rho leaves (the
  authors' two parameter groups), all on the active set as `ssvi` prescribes.

  Args:
    learning_rate: a float or an optax schedule (cosine in the paper, 0.01 peak).
    total_steps: steps of the whole run.
    momentum: beta in [0, 1) (0.9), or None for plain SGD.
    weight_decay: coupled L2 coefficient >= 0 on every leaf but rho (5e-4).
    end_step: T_end, as in `ssvi`.
    update_every: dT, as in `ssvi`.
    drop_fraction: as in `ssvi`.
    criterion: removal score, as in `ssvi`.
    mu_name: leaf name of the kernels' means.
    rho_name: leaf name of the kernels' rho (no decay there).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` (state `SSVIState`); works under
    ``optax.inject_hyperparams`` without ``static_args``, as `ssvi` does.

  Example:
    >>> tx = ssvi_sgd(0.01, total_steps=1000)

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """
  _validation.check_real("weight_decay", weight_decay, lower=0.0)
  if momentum is not None:  # None: plain SGD, as optax.sgd
    _validation.check_real("momentum", momentum, lower=0.0, upper=1.0, upper_open=True)

  def decay_mask(params):
    def not_rho(path, _):
      names = [str(_trees.key_name(k)) for k in path]
      return rho_name not in names
    return jax.tree_util.tree_map_with_path(not_rho, params)

  inner = optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask),
                      optax.sgd(learning_rate, momentum=momentum))
  return ssvi(inner, total_steps=total_steps, end_step=end_step, update_every=update_every,
              drop_fraction=drop_fraction, criterion=criterion, mu_name=mu_name, rho_name=rho_name)
