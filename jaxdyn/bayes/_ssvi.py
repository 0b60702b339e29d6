"""SSVI as an Optax transform: periodic removal and addition of active weights around an optimizer."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdyn.bayes._layers import MU_NAME, RHO_NAME, posterior_std
from jaxdyn.bayes._scores import check_criterion, removal_score

__all__ = ["SSVIState", "TopologySchedule", "drop_and_grow", "ssvi", "ssvi_sgd"]


def _concrete(value):
  """The value as a Python/NumPy scalar, or None when it is traced (e.g. under inject_hyperparams)."""
  if isinstance(value, jax.core.Tracer):
    return None
  return value.item() if hasattr(value, "item") and jnp.ndim(value) == 0 else value


def _check_int(name: str, value, low: int, high: int | None = None):
  v = _concrete(value)
  if v is None:
    return value
  ok = not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= low and (high is None or v <= high)
  if not ok:
    rng = f"[{low}, {high}]" if high is not None else f">= {low}"
    raise ValueError(f"{name}: must be an int {rng}, got {value!r}")
  return value


@dataclasses.dataclass(frozen=True)
class TopologySchedule:
  """When SSVI moves the active set, and how much of it.

  Iterations are counted from 1 (the t-th call of ``update``). Iteration t is a topology step when
  t % update_every == 0 and t < end_step; it removes and adds n = floor(n_active * f(t)) entries per
  layer with f(t) = drop_fraction * (1 + cos(pi * t / end_step)) (0.3 at the start, 0 at T_end).

  Attributes:
    update_every: dT >= 1 (100 in the paper).
    end_step: T_end >= 1 (0.75 of the run in the paper).
    drop_fraction: f's half-amplitude in (0, 0.5] (0.15; the authors' ``alpha / 2`` with 0.3).
  """

  update_every: int
  end_step: int
  drop_fraction: float = 0.15

  def __post_init__(self):
    _check_int("update_every", self.update_every, 1)
    _check_int("end_step", self.end_step, 1)
    f = _concrete(self.drop_fraction)
    if f is not None and not 0.0 < float(f) <= 0.5:
      raise ValueError(f"drop_fraction: must be in (0, 0.5], got {self.drop_fraction!r}")

  def is_update_step(self, step: jax.Array) -> jax.Array:
    return (step % self.update_every == 0) & (step < self.end_step) & (step > 0)

  def fraction(self, step: jax.Array) -> jax.Array:
    return self.drop_fraction * (1.0 + jnp.cos(math.pi * jnp.asarray(step, jnp.float32) / self.end_step))


class SSVIState(NamedTuple):
  """State of `ssvi`.

  Attributes:
    count: int32, the number of ``update`` calls so far (the next call is iteration count + 1).
    masks: one boolean mask per Gaussian kernel (shared by its mu and rho), in the order of
      ``jax.tree.leaves(params)``.
    inner_state: the wrapped optimizer's state; its copies of the parameter tree (momentum, moments)
      are zero outside the masks.
  """

  count: jax.Array
  masks: tuple[jax.Array, ...]
  inner_state: optax.OptState


def _key_name(k) -> Any:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return getattr(k, attr)
  return str(k)


def _pairs(params, mu_name: str, rho_name: str) -> list[tuple[int, int]]:
  """(mu leaf index, rho leaf index) of every Gaussian kernel, matched by their parent path."""
  by_parent: dict[tuple, dict[str, int]] = {}
  for i, (path, _) in enumerate(jax.tree_util.tree_flatten_with_path(params)[0]):
    names = [_key_name(k) for k in path]
    if names and names[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
      names = names[:-1]  # an nnx.Variable's array
    if names and names[-1] in (mu_name, rho_name):
      by_parent.setdefault(tuple(map(str, names[:-1])), {})[names[-1]] = i
  pairs = [(d[mu_name], d[rho_name]) for d in by_parent.values() if mu_name in d and rho_name in d]
  if not pairs:
    raise ValueError(f"params: no ({mu_name!r}, {rho_name!r}) leaf pairs found; name them with "
                     f"mu_name / rho_name")
  return sorted(pairs)


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
    fraction: the removed fraction f in [0, 1) (traced).
    criterion: see `removal_score`.

  Returns:
    ``(new_mask, new_mu, new_rho)``.

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
    if jnp.shape(a) != shape:
      raise ValueError(f"{name}: must have mu's shape {shape}, got {jnp.shape(a)}")
  f = _concrete(fraction)
  if f is not None and not (jnp.ndim(f) == 0 and 0.0 <= float(f) < 1.0):
    raise ValueError(f"fraction: must be a scalar in [0, 1), got {fraction!r}")
  mu, rho, g, mask = (jnp.ravel(a) for a in (mu, rho, grad_mu, mask))
  size = mu.shape[0]
  n_active = jnp.sum(mask, dtype=jnp.int32)
  n = jnp.floor(n_active.astype(jnp.float32) * fraction).astype(jnp.int32)
  positions = jnp.arange(size)

  def ranks(score):  # rank 0 = highest; stable, so ties go to the lower index
    order = jnp.argsort(-score, stable=True)
    return jnp.zeros(size, jnp.int32).at[order].set(positions.astype(jnp.int32))

  score = removal_score(mu, posterior_std(rho), criterion=criterion)
  score = jnp.where(mask, score, -jnp.inf)
  kept = mask & (ranks(score) < n_active - n)
  grow_score = jnp.where(kept, -jnp.inf, jnp.abs(g))
  grown = ~kept & (ranks(grow_score) < n)
  new_mask = kept | grown
  new = grown & ~mask
  survivors = new_mask & mask
  mean_rho = jnp.sum(jnp.where(survivors, rho, 0.0)) / jnp.maximum(jnp.sum(survivors), 1)
  new_mu = jnp.where(new_mask & ~new, mu, 0.0)
  new_rho = jnp.where(new, mean_rho.astype(rho.dtype), jnp.where(new_mask, rho, 0.0))
  return new_mask.reshape(shape), new_mu.reshape(shape), new_rho.reshape(shape)


def _params_like_mapper(params):
  """A function applying ``f(leaf, i)`` to every subtree of an optimizer state shaped like params."""
  treedef = jax.tree.structure(params)
  shapes = [jnp.shape(x) for x in jax.tree.leaves(params)]

  def is_params_like(node) -> bool:
    leaves, td = jax.tree.flatten(node)
    return td == treedef and [jnp.shape(x) for x in leaves] == shapes

  def apply(state, f):
    def visit(node):
      if is_params_like(node):
        leaves = jax.tree.leaves(node)
        return jax.tree.unflatten(treedef, [f(x, i) for i, x in enumerate(leaves)])
      return node
    return jax.tree.map(visit, state, is_leaf=is_params_like)

  return apply


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

  Only the standard ``update(updates, state, params)`` is needed (``params`` is required); extra
  keyword arguments are passed on to ``inner``.

  Args:
    inner: the optimizer to wrap (e.g. SGD with momentum; `ssvi_sgd` builds the paper's).
    total_steps: steps of the whole run, >= 1 (to check ``end_step``).
    end_step: T_end in [1, total_steps]; None gives round(0.75 * total_steps) as in the paper.
    update_every: dT >= 1 (100).
    drop_fraction: in (0, 0.5] (0.15).
    criterion: removal score, one of ``CRITERIA`` (default ``"snr_abs"``, the SNR of |theta|).
    mu_name: leaf name of the kernels' means.
    rho_name: leaf name of the kernels' rho.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state `SSVIState`.

  Example:
    >>> params = {"layer": {"kernel_mu": jnp.array([0.5, 0.0]), "kernel_rho": jnp.array([-5.0, 0.0])}}
    >>> tx = ssvi(optax.sgd(0.1), total_steps=100)
    >>> state = tx.init(params)
    >>> state.masks[0].tolist()
    [True, False]

  References:
    Li et al., "Training Bayesian Neural Networks with Sparse Subspace Variational Inference",
    ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI (the schedule,
    the removal score, the mean-rho initialisation of new entries and the skipped optimizer step
    follow the authors' code, which agrees with the paper).
  """
  _check_int("total_steps", total_steps, 1)
  if end_step is None:
    end_step = max(1, int(round(0.75 * _concrete(total_steps))))
  _check_int("end_step", end_step, 1, _concrete(total_steps))
  schedule = TopologySchedule(update_every=update_every, end_step=end_step, drop_fraction=drop_fraction)
  check_criterion(criterion)
  if not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
    raise TypeError(f"inner: must be an optax.GradientTransformation, got {type(inner).__name__}")
  inner = optax.with_extra_args_support(inner)

  def multipliers(params, pairs, masks):
    mults: list[Any] = [None] * len(jax.tree.leaves(params))
    for (i_mu, i_rho), m in zip(pairs, masks):
      mults[i_mu] = mults[i_rho] = m
    return mults

  def apply_masks(tree, mults):
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, [x if m is None else jnp.where(m, x, jnp.zeros_like(x))
                                        for x, m in zip(leaves, mults)])

  def init_fn(params):
    pairs = _pairs(params, mu_name, rho_name)
    leaves = jax.tree.leaves(params)
    for i_mu, i_rho in pairs:
      if leaves[i_mu].shape != leaves[i_rho].shape:
        raise ValueError(f"params: {mu_name} and {rho_name} shapes differ: "
                         f"{leaves[i_mu].shape} vs {leaves[i_rho].shape}")
    masks = tuple(leaves[i_rho] != 0 for _, i_rho in pairs)
    return SSVIState(count=jnp.zeros([], jnp.int32), masks=masks, inner_state=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError("params: ssvi needs the parameters in update(updates, state, params)")
    pairs = _pairs(params, mu_name, rho_name)
    step = state.count + 1
    p_leaves, treedef = jax.tree.flatten(params)
    g_leaves = jax.tree.leaves(updates)
    map_params_like = _params_like_mapper(params)

    def regular(_):
      mults = multipliers(params, pairs, state.masks)
      new_updates, inner_state = inner.update(apply_masks(updates, mults), state.inner_state, params,
                                              **extra_args)
      return apply_masks(new_updates, mults), inner_state, state.masks

    def topology(_):
      frac = schedule.fraction(step)
      new_leaves = list(p_leaves)
      masks = []
      for (i_mu, i_rho), m in zip(pairs, state.masks):
        m2, mu2, rho2 = drop_and_grow(p_leaves[i_mu], p_leaves[i_rho], g_leaves[i_mu], m, frac,
                                      criterion=criterion)
        new_leaves[i_mu], new_leaves[i_rho] = mu2, rho2
        masks.append(m2)
      upd = [(new - old).astype(g.dtype) for new, old, g in zip(new_leaves, p_leaves, g_leaves)]
      mults = multipliers(params, pairs, masks)
      inner_state = map_params_like(
          state.inner_state, lambda x, i: x if mults[i] is None else jnp.where(mults[i], x, jnp.zeros_like(x)))
      return jax.tree.unflatten(treedef, upd), inner_state, tuple(masks)

    new_updates, inner_state, masks = jax.lax.cond(schedule.is_update_step(step), topology, regular, None)
    return new_updates, SSVIState(count=step, masks=tuple(masks), inner_state=inner_state)

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
    momentum: beta (0.9).
    weight_decay: coupled L2 coefficient on every leaf but rho (5e-4).
    end_step: T_end, as in `ssvi`.
    update_every: dT, as in `ssvi`.
    drop_fraction: as in `ssvi`.
    criterion: removal score, as in `ssvi`.
    mu_name: leaf name of the kernels' means.
    rho_name: leaf name of the kernels' rho (no decay there).

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> tx = ssvi_sgd(0.01, total_steps=1000)

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """
  wd = _concrete(weight_decay)
  if wd is not None and not wd >= 0:
    raise ValueError(f"weight_decay: must be >= 0, got {weight_decay!r}")
  m = _concrete(momentum)
  if m is not None and not 0.0 <= m < 1.0:
    raise ValueError(f"momentum: must be in [0, 1), got {momentum!r}")

  def decay_mask(params):
    def not_rho(path, _):
      names = [str(_key_name(k)) for k in path]
      return rho_name not in names
    return jax.tree_util.tree_map_with_path(not_rho, params)

  inner = optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask),
                      optax.sgd(learning_rate, momentum=momentum))
  return ssvi(inner, total_steps=total_steps, end_step=end_step, update_every=update_every,
              drop_fraction=drop_fraction, criterion=criterion, mu_name=mu_name, rho_name=rho_name)
