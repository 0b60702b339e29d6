"""FLOPs by the mask: what a sparse kernel would execute for a model's matmuls and convolutions.

The count follows the convention of RigL (Evci et al., App. H) and GraNet: a layer with a fraction
d_l of its kernel active costs d_l times its dense multiply-adds (2 FLOPs each); the backward pass
costs twice the forward (input and weight gradients), so a training step costs 3x the forward per
example, and a step that regrows by the dense gradient (RigL, GraNet) pays the dense weight gradient
of that step, 1x dense forward, in addition. Elementwise work, normalisation and pooling are left
out, as there. Which matmul uses which kernel is read from the model's jaxpr, so any framework
(Flax NNX or Linen, Equinox, plain functions) is counted the same way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.extend import core as jex_core

from jaxdyn import _trees, _validation
from jaxdyn.sparsity._masks import _find_masks

__all__ = ["LayerFlops", "sparse_flops", "training_flops"]

_ALIAS = {"convert_element_type", "reshape", "copy", "copy_p", "transpose", "squeeze", "expand_dims"}


@dataclasses.dataclass(frozen=True)
class LayerFlops:
  """Dense forward FLOPs per example of the matmuls and convolutions that read one kernel.

  Attributes:
    path: the kernel's ``/``-joined path in the params.
    dense: forward FLOPs per example with the kernel dense (2 per multiply-add).
    density: the kernel's active fraction under the mask.
  """

  path: str
  dense: float
  density: float

  @property
  def sparse(self) -> float:
    return self.dense * self.density


def _sub_jaxprs(eqn) -> list[tuple[Any, list[Any]]]:
  """(inner jaxpr, the eqn's operands that feed its invars) for call-like primitives."""
  out = []
  for name in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
    j = eqn.params.get(name)
    if j is None:
      continue
    inner = j.jaxpr if hasattr(j, "jaxpr") else j
    if hasattr(inner, "invars") and len(inner.invars) == len(eqn.invars):
      out.append((inner, list(eqn.invars)))
  return out


def _op_flops(eqn) -> float:
  out = eqn.outvars[0].aval
  if eqn.primitive.name == "dot_general":
    (lc, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval
    return 2.0 * math.prod(out.shape) * math.prod(lhs.shape[d] for d in lc)
  rhs = eqn.invars[1].aval  # conv_general_dilated
  out_dim = eqn.params["dimension_numbers"].rhs_spec[0]
  return 2.0 * math.prod(out.shape) * math.prod(rhs.shape) / rhs.shape[out_dim]


def _walk(jaxpr, alias: dict, acc: dict) -> None:
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    src = [alias.get(v) if isinstance(v, jex_core.Var) else None for v in eqn.invars]
    if name in ("dot_general", "conv_general_dilated"):
      leaves = {s for s in src[:2] if s is not None}
      for leaf in leaves:
        acc[leaf] = acc.get(leaf, 0.0) + _op_flops(eqn)
      continue
    if name in _ALIAS and src and src[0] is not None:
      alias[eqn.outvars[0]] = src[0]
      continue
    for inner, operands in _sub_jaxprs(eqn):
      inner_alias = {iv: alias.get(o) for iv, o in zip(inner.invars, operands)
                     if isinstance(o, jex_core.Var) and alias.get(o) is not None}
      _walk(inner, inner_alias, acc)


def sparse_flops(apply_fn: Callable[[Any, jax.Array], Any], params: Any, masks: Any, example_input: Any
                 ) -> list[LayerFlops]:
  """Forward FLOPs per example of every masked kernel, dense and by the mask.

  ``apply_fn(params, x)`` is traced to a jaxpr (shapes only, nothing runs); each ``dot_general`` or
  ``conv_general_dilated`` whose operand is a sparse kernel (directly, or through a reshape, a
  transpose or a dtype cast, inside jitted or custom-derivative calls) is charged to that kernel.

  Args:
    apply_fn: ``(params, x) -> outputs``; for an NNX model
      ``lambda p, x: nnx.merge(graphdef, p)(x)``.
    params: the parameters.
    masks: a mask tree for ``params`` (or an optimizer state holding one); leaves with 0-d masks are
      dense and not counted.
    example_input: one batch of inputs (or a ``jax.ShapeDtypeStruct``); FLOPs are divided by its
      leading (batch) axis.

  Returns:
    One `LayerFlops` per masked kernel used by the model, in leaf order.

  Example:
    >>> params = {"w": np.ones((8, 4), np.float32)}
    >>> masks = {"w": np.arange(32).reshape(8, 4) < 8}
    >>> sparse_flops(lambda p, x: x @ p["w"], params, masks, np.ones((2, 8), np.float32))
    [LayerFlops(path='w', dense=64.0, density=0.25)]
  """
  if not callable(apply_fn):
    raise TypeError(f"apply_fn: must be a callable (params, x) -> outputs, got {type(apply_fn).__name__}")
  masks = _find_masks(masks, params)
  if not hasattr(example_input, "shape") or not hasattr(example_input, "dtype"):
    example_input = np.asarray(example_input)
  if len(example_input.shape) < 1 or example_input.shape[0] < 1:
    raise ValueError(f"example_input: needs a leading batch axis of size >= 1, got shape {example_input.shape}")
  batch = example_input.shape[0]
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  m_leaves = treedef.flatten_up_to(masks)
  spec = jax.ShapeDtypeStruct(example_input.shape, example_input.dtype)
  leaves = [x for _, x in flat]
  try:
    closed = jax.make_jaxpr(lambda ls, x: apply_fn(jax.tree.unflatten(treedef, ls), x))(leaves, spec)
  except (TypeError, ValueError) as e:
    raise ValueError(f"example_input: apply_fn cannot be called on shape {spec.shape} ({type(e).__name__}: {e})"
                     ) from e
  invars = closed.jaxpr.invars[:len(leaves)]
  alias = {v: i for i, (v, m) in enumerate(zip(invars, m_leaves)) if np.ndim(m) > 0}
  acc: dict[int, float] = {}
  _walk(closed.jaxpr, alias, acc)
  out = []
  for i in sorted(acc):
    m = np.asarray(m_leaves[i])
    out.append(LayerFlops("/".join(_trees.path_names(flat[i][0])), acc[i] / batch, float(m.mean())))
  return out


def training_flops(layers: list[LayerFlops], *, num_steps: int, batch_size: int, mean_density: Any = None,
                   dense_gradient_steps: int = 0) -> dict[str, float]:
  """Training FLOPs of a run, sparse against dense, by RigL's convention (module docstring).

  sparse = sum_l 3 F_l dbar_l B T + sum_l F_l B T_g, dense = sum_l 3 F_l B T, with F_l the dense
  forward FLOPs per example, dbar_l the layer's density averaged over the run's steps, B the batch,
  T the steps and T_g the steps that computed a dense weight gradient for regrowth.

  Args:
    layers: from `sparse_flops`.
    num_steps: T >= 1.
    batch_size: B >= 1.
    mean_density: per layer (a sequence in the order of ``layers``) the density averaged over the
      steps, e.g. ``state.active_step_sum / (count * size)`` of a `SparseState`; default each
      layer's current ``density`` (static masks).
    dense_gradient_steps: T_g in [0, T].

  Returns:
    ``{"sparse": ..., "dense": ..., "ratio": sparse / dense}``.

  Example:
    >>> training_flops([LayerFlops("w", 100.0, 0.1)], num_steps=10, batch_size=2)["ratio"]
    0.1
  """
  num_steps = _validation.check_int("num_steps", num_steps, lower=1)
  batch_size = _validation.check_int("batch_size", batch_size, lower=1)
  dense_gradient_steps = _validation.check_int("dense_gradient_steps", dense_gradient_steps, lower=0,
                                               upper=num_steps)
  try:
    layers = list(layers)
  except TypeError:
    layers = None
  if not layers or not all(isinstance(layer, LayerFlops) for layer in layers):
    raise ValueError(f"layers: must be a non-empty list of LayerFlops (from sparse_flops), got {layers!r}")
  if mean_density is None:
    dens = [layer.density for layer in layers]
  else:
    dens = [float(d) for d in np.asarray(mean_density, np.float64).ravel()]
    if len(dens) != len(layers):
      raise ValueError(f"mean_density: needs one value per layer ({len(layers)}), got {len(dens)}")
    if not all(0.0 <= d <= 1.0 for d in dens):
      raise ValueError(f"mean_density: must lie in [0, 1], got {dens}")
  dense = sum(3.0 * layer.dense for layer in layers) * batch_size * num_steps
  sparse = sum(3.0 * layer.dense * d for layer, d in zip(layers, dens)) * batch_size * num_steps
  sparse += sum(layer.dense for layer in layers) * batch_size * dense_gradient_steps
  return {"sparse": sparse, "dense": dense, "ratio": sparse / dense}
