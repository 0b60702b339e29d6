"""Sparse training experiments: the `jaxdyn.sparsity` wrappers as transforms, and their accounting.

Registers
- transforms ``static_sparse``, ``gmp``, ``set``, ``rigl`` and ``granet``: `jaxdyn.sparsity`'s
  wrappers around the configured optimizer (so they must come last in ``config.transforms``). The
  harness fills in ``total_steps`` (the run's steps, for the default windows) and ``seed``
  (``config.seed``, the initial random masks) unless the config sets them. Windows are given as
  fractions of the run (``start_fraction``, ``end_fraction``) so one config serves any length;
  GraNet's CIFAR recipe prunes from epoch 0 to 110 of 160 (0.69), RigL updates until 0.75.
- callback ``sparsity_eval``: logs the density every ``every_steps``; at the end returns the
  density, active and total parameters, and the training and inference FLOPs by the mask against
  dense (`jaxdyn.sparsity.sparse_flops` / `training_flops`: what a sparse kernel would execute;
  this masked-dense implementation runs at dense cost).
"""

from __future__ import annotations

import jax
import numpy as np
import optax
from flax import nnx

from experiments.callbacks import Callback
from experiments.registry import register
from jaxdyn import _validation
from jaxdyn.sparsity import (
    PruningSchedule,
    gmp,
    granet,
    mask_stats,
    rigl,
    set_sparse,
    sparse_flops,
    static_sparse,
    training_flops,
)


def _step(name: str, fraction: float, total_steps: int) -> int:
  fraction = _validation.check_real(name, fraction, lower=0.0, upper=1.0)
  return int(round(fraction * total_steps))


def _window(total_steps, start_fraction, end_fraction) -> tuple[int, int]:
  t0 = _step("start_fraction", start_fraction, total_steps)
  tf = max(1, _step("end_fraction", end_fraction, total_steps))
  if t0 >= tf:
    raise ValueError(f"end_fraction: the window [{start_fraction}, {end_fraction}] of {total_steps} steps is empty")
  return t0, tf


@register("transform", "static_sparse", tiny={"density": 0.5})
def static_sparse_transform(tx, *, density: float, seed: int, distribution: str = "erk", exclude=()):
  """`jaxdyn.sparsity.static_sparse`: fixed random masks (ERK by default) at ``density``."""
  return static_sparse(tx, density=density, key=jax.random.key(seed), distribution=distribution,
                       exclude=tuple(exclude))


@register("transform", "gmp", tiny={"final_density": 0.5, "update_every": 1})
def gmp_transform(tx, *, final_density: float, total_steps: int, start_fraction: float = 0.0,
                  end_fraction: float = 0.7, update_every: int = 100, scope: str = "layer", exclude=()):
  """`jaxdyn.sparsity.gmp`: dense to ``final_density`` on the cubic schedule over the window."""
  t0, tf = _window(total_steps, start_fraction, end_fraction)
  return gmp(tx, schedule=PruningSchedule(final_density=final_density, start_step=t0, end_step=tf,
                                          update_every=update_every), scope=scope, exclude=tuple(exclude))


@register("transform", "granet", tiny={"final_density": 0.5, "update_every": 1})
def granet_transform(tx, *, final_density: float, total_steps: int, seed: int, init_density: float = 1.0,
                     start_fraction: float = 0.0, end_fraction: float = 0.7, update_every: int = 100,
                     drop_fraction: float = 0.5, min_drop_fraction: float = 0.005, distribution: str = "erk",
                     exclude=(), official_compat: bool = False):
  """`jaxdyn.sparsity.granet`: global gradual pruning with zero-cost neuroregeneration."""
  t0, tf = _window(total_steps, start_fraction, end_fraction)
  schedule = PruningSchedule(final_density=final_density, init_density=init_density, start_step=t0, end_step=tf,
                             update_every=update_every)
  return granet(tx, schedule=schedule, key=jax.random.key(seed), drop_fraction=drop_fraction,
                min_drop_fraction=min_drop_fraction, total_steps=total_steps, distribution=distribution,
                exclude=tuple(exclude), official_compat=official_compat)


def _dst(fn, tx, density, total_steps, seed, end_fraction, update_every, drop_fraction, distribution, exclude):
  tf = max(1, _step("end_fraction", end_fraction, total_steps))
  return fn(tx, density=density, key=jax.random.key(seed), end_step=tf, update_every=update_every,
            drop_fraction=drop_fraction, distribution=distribution, exclude=tuple(exclude))


@register("transform", "rigl", tiny={"density": 0.5, "update_every": 1})
def rigl_transform(tx, *, density: float, total_steps: int, seed: int, end_fraction: float = 0.75,
                   update_every: int = 100, drop_fraction: float = 0.3, distribution: str = "erk", exclude=()):
  """`jaxdyn.sparsity.rigl`: ERK masks, magnitude drop and gradient regrowth until ``end_fraction``."""
  return _dst(rigl, tx, density, total_steps, seed, end_fraction, update_every, drop_fraction, distribution,
              exclude)


@register("transform", "set", tiny={"density": 0.5, "update_every": 1})
def set_transform(tx, *, density: float, total_steps: int, seed: int, end_fraction: float = 0.75,
                  update_every: int = 100, drop_fraction: float = 0.3, distribution: str = "erk", exclude=()):
  """`jaxdyn.sparsity.set_sparse`: ERK masks, magnitude drop and random regrowth until ``end_fraction``."""
  return _dst(set_sparse, tx, density, total_steps, seed, end_fraction, update_every, drop_fraction,
              distribution, exclude)


def _has_masks(state) -> bool:
  return optax.tree_utils.tree_get(state.opt_state, "active_step_sum", default=None) is not None


@register("callback", "sparsity_eval")
class SparsityEval(Callback):
  """Density during training; at the end, active parameters and FLOPs by the mask against dense.

  ``on_end()`` returns (``final_<key>`` in results.json): ``density`` (active fraction of the sparse
  kernels), ``active_params`` / ``total_params`` (all parameters, dense leaves included),
  ``param_ratio``, ``inference_flop_ratio`` (forward FLOPs of the masked kernels over dense), and
  ``train_flops``, ``train_flops_dense`` and ``train_flop_ratio`` (every step at its own masks, from
  the state's per-layer ``active_step_sum``, plus a dense weight gradient at each topology step of the
  gradient-regrowth methods, RigL's convention). Without a sparsity transform the run is dense and
  the ratios are 1.
  """

  def __init__(self, *, every_steps: int = 100):
    super().__init__(every_steps=every_steps)

  def run(self, step: int) -> None:
    if _has_masks(self.ctx.state):
      self.ctx.writer.write(step, {"density": float(self.ctx.opt_state_value("density"))})

  def on_end(self) -> dict[str, float]:
    st, c = self.ctx.state, self.ctx.config
    if not _has_masks(st):
      return {"density": 1.0, "param_ratio": 1.0, "inference_flop_ratio": 1.0, "train_flop_ratio": 1.0}
    params = jax.device_get(st.params)
    masks = jax.device_get(optax.tree_utils.tree_get(st.opt_state, "masks"))
    stats = mask_stats(masks, params)
    graphdef, rest = self.ctx.graphdef, st.rest
    x0 = np.zeros((1, *self.ctx.dataset.input_shape), np.float32)
    layers = sparse_flops(lambda p, x: nnx.merge(graphdef, p, rest)(x, train=False), params, masks, x0)
    # Per sparse leaf, the density averaged over the run's steps; layers lists the kernels in leaf order.
    sums = [float(s) for s in jax.device_get(self.ctx.opt_state_value("active_step_sum"))]
    count = max(1, int(jax.device_get(st.step)))
    m_leaves = [np.asarray(m) for m in jax.tree.leaves(masks)]
    sizes = [m.size for m in m_leaves if m.ndim > 0]
    paths = ["/".join(map(str, p)) for p, m in _sparse_paths(params, masks)]
    mean = dict(zip(paths, [s / (count * n) for s, n in zip(sums, sizes)]))
    mean_density = [mean.get(layer.path, layer.density) for layer in layers]
    regrow = {"rigl", "granet"} & {t["name"] for t in c.transforms}
    topo = int(self.ctx.opt_state_value("topology_steps")) if regrow else 0
    tr = training_flops(layers, num_steps=c.num_train_steps, batch_size=c.batch_size, mean_density=mean_density,
                        dense_gradient_steps=min(topo, c.num_train_steps))
    inf_dense = sum(layer.dense for layer in layers)
    return {"density": stats["density"], "active_params": float(stats["params_active"]),
            "total_params": float(stats["params_total"]),
            "param_ratio": stats["params_active"] / stats["params_total"],
            "inference_flop_ratio": sum(layer.sparse for layer in layers) / inf_dense,
            "train_flops": tr["sparse"], "train_flops_dense": tr["dense"], "train_flop_ratio": tr["ratio"],
            "topology_steps": float(topo)}


def _sparse_paths(params, masks):
  from jaxdyn._trees import path_names  # pylint: disable=import-outside-toplevel
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  out = []
  for (path, _), m in zip(flat, treedef.flatten_up_to(masks)):
    if np.ndim(m) > 0:
      out.append((path_names(path), m))
  return out

