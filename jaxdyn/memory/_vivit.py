"""Frozen-spatial ViViT training (Gowda, Arnab & Huang): freeze, adapt, initialise the temporal transformer.

ViViT's factorised encoder (`jaxdyn.models.ViViT`) runs a spatial transformer on every frame and a
temporal transformer on the frame tokens. Fine-tuning all of it on video costs, per step, the spatial
forward AND backward over every frame and the spatial activations kept for that backward. Gowda,
Arnab & Huang freeze the image-pretrained spatial transformer, which saves about half the training
time and much of the memory, and recover the accuracy that naive freezing loses with two pieces:
an appropriate initialisation of the temporal transformer and a compact adapter between the frozen
frame representations and the temporal transformer. The pieces here:

- `freeze_spatial(tx)`: an Optax transform, ``optax.multi_transform`` with the spatial transformer's
  parameters on ``optax.set_to_zero()``: their updates are exactly 0 and the wrapped optimizer keeps no
  state for them (``optax.MaskedNode`` in its place). Pair it with ``ViViT(freeze_spatial=True)``,
  whose ``stop_gradient`` at the spatial output is what removes the spatial backward (XLA prunes the
  whole branch, so neither its gradient computation nor the activations it would store exist; see
  ``tests/memory/test_vivit.py`` for the ``memory_analysis`` numbers).
- `spatial_labels(params)`: the partition itself (``"frozen"`` under ``prefix``, else ``"trainable"``).
- `init_from_image_model(params, image_params)`: the spatial transformer from an image model (a `ViT`
  trained on single frames), and the temporal transformer initialised from the same image model's
  blocks (below) instead of at random.

How the temporal transformer is initialised: the paper's text beyond its abstract was not available
when this was written (only "appropriately initializing the temporal transformer" was); this module
initialises it from the pretrained image transformer itself: temporal block ``j`` of ``L_t`` takes
the weights of spatial block ``L_s - L_t + j`` (``source="last"``, the deepest blocks, whose inputs are
closest to the final-normed class tokens the temporal transformer reads) or block ``j``
(``source="first"``), and the temporal final LayerNorm takes the spatial final LayerNorm's. The
temporal class token, position embeddings and the head stay freshly initialised. The adapter
(`jaxdyn.models._vivit.Adapter`) is a residual bottleneck, the identity at initialisation, so at step 0
the frozen model's temporal stack sees exactly the pretrained frame tokens.

References:
  Gowda, Arnab & Huang, "Optimizing ViViT Training: Time and Memory Reduction for Action Recognition",
  2023, https://arxiv.org/abs/2306.04822.
  Arnab et al., "ViViT: A Video Vision Transformer", ICCV 2021, https://arxiv.org/abs/2103.15691.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxdyn import _validation

__all__ = ["freeze_spatial", "init_from_image_model", "spatial_labels"]

FROZEN, TRAINABLE = "frozen", "trainable"


def _first_key(path) -> Any:
  k = path[0]
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return getattr(k, attr)
  return k


def _check_prefix(prefix: Any) -> str:
  if not isinstance(prefix, str) or not prefix:
    raise TypeError(f"prefix: must be a non-empty string (a top-level parameter name), got {prefix!r}")
  return prefix


def spatial_labels(params: Any, *, prefix: str = "spatial") -> Any:
  """Labels every parameter leaf ``"frozen"`` when its top-level name is ``prefix``, else ``"trainable"``.

  .. math::  \\ell(\\theta_{k_1 / k_2 / \\dots}) = \\begin{cases} \\text{frozen} & k_1 = \\text{prefix}
     \\\\ \\text{trainable} & \\text{otherwise.} \\end{cases}

  Args:
    params: a parameter PyTree whose top level is a mapping (a dict, or the ``nnx.State`` of
      ``nnx.split(model, nnx.Param, ...)`` for a `jaxdyn.models.ViViT`).
    prefix: the top-level name of the frozen sub-tree.

  Returns:
    A PyTree of the same structure holding ``"frozen"`` / ``"trainable"`` at every leaf (the
    ``param_labels`` of ``optax.multi_transform``).

  Raises:
    ValueError: no leaf lies under ``prefix``, or every leaf does (nothing would train).

  Example:
    >>> spatial_labels({"spatial": {"w": 1.0}, "head": {"w": 2.0}})
    {'head': {'w': 'trainable'}, 'spatial': {'w': 'frozen'}}
  """
  prefix = _check_prefix(prefix)
  labeled = jax.tree_util.tree_map_with_path(lambda p, _: FROZEN if _first_key(p) == prefix else TRAINABLE, params)
  leaves = jax.tree.leaves(labeled)
  if FROZEN not in leaves:
    names = sorted({str(_first_key(p)) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]})
    raise ValueError(f"params: has no parameters under {prefix!r}; its top-level names are {names}")
  if TRAINABLE not in leaves:
    raise ValueError(f"params: every parameter lies under {prefix!r}; nothing would be trained")
  return labeled


def freeze_spatial(tx: optax.GradientTransformation, *, prefix: str = "spatial"
                   ) -> optax.GradientTransformationExtraArgs:
  """``tx`` on every parameter but those under ``prefix``, which get zero updates and no optimizer state.

  .. math::  u_k = \\begin{cases} 0 & \\ell(\\theta_k) = \\text{frozen} \\\\
     \\mathrm{tx}(g)_k & \\text{otherwise} \\end{cases}

  ``optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, spatial_labels)``: the
  frozen leaves are ``optax.MaskedNode`` in ``tx``'s state (no moments, no memory), and the frozen
  parameters stay bit-identical however many steps run, weight decay included (it lives inside ``tx``).
  This removes the optimizer's share of the cost; the backward pass through the frozen transformer is
  removed by the model (``ViViT(freeze_spatial=True)`` stops the gradient at its output), not here.

  Args:
    tx: the optimizer of the trainable parameters.
    prefix: the top-level parameter name of the frozen sub-tree (`spatial_labels`).

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> params = {"spatial": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
    >>> tx = freeze_spatial(optax.adam(0.1))
    >>> updates, _ = tx.update({"spatial": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}, tx.init(params), params)
    >>> updates["spatial"]["w"].tolist(), [round(u, 3) for u in updates["head"]["w"].tolist()]
    ([0.0, 0.0], [-0.1, -0.1])

  References:
    Gowda, Arnab & Huang, "Optimizing ViViT Training", 2023, https://arxiv.org/abs/2306.04822.
  """
  if not isinstance(tx, optax.GradientTransformation):
    raise TypeError(f"tx: must be an optax.GradientTransformation, got {type(tx).__name__}")
  prefix = _check_prefix(prefix)
  return optax.multi_transform({TRAINABLE: tx, FROZEN: optax.set_to_zero()},
                               lambda params: spatial_labels(params, prefix=prefix))


def init_from_image_model(params: Mapping[str, Any], image_params: Mapping[str, Any], *,
                          init_temporal: bool = True, source: str = "last") -> dict[str, Any]:
  """A ViViT's parameters with the spatial transformer from an image model and, optionally, the
  temporal transformer initialised from that image model's blocks.

  .. math::  \\theta_{\\text{spatial}} \\leftarrow \\theta_{\\text{image}},\\qquad
     \\theta_{\\text{temporal}, j} \\leftarrow \\theta_{\\text{image block}, \\sigma(j)},\\qquad
     \\theta_{\\text{temporal norm}} \\leftarrow \\theta_{\\text{image norm}}

  with ``sigma(j) = L_s - L_t + j`` (``source="last"``) or ``j`` (``source="first"``) for
  ``j = 0 .. L_t - 1``. Everything else (temporal class token and positions, adapter, head) is kept.

  Args:
    params: the ViViT's parameters as a pure dict (``nnx.to_pure_dict(nnx.state(model, nnx.Param))``),
      with top-level ``spatial``, ``temporal_blocks`` and ``temporal_norm``.
    image_params: the image model's (a `jaxdyn.models.ViT` with the same patch size, width, heads and
      MLP ratio) parameters as a pure dict; its head is copied too (the frame head is unused on clips).
    init_temporal: also initialise the temporal blocks and norm from the image model (False: only
      the spatial transformer is replaced, the temporal one keeps its random initialisation).
    source: ``"last"`` or ``"first"``: which image blocks seed the temporal blocks.

  Returns:
    A new pure dict whose copied leaves have buffers of their own (a buffer shared between the
    spatial and a temporal block would be donated twice by a jitted train step); the inputs are not
    modified. Put it into a model with
    ``nnx.replace_by_pure_dict(state, new); nnx.update(model, state)``.

  Raises:
    ValueError: a missing sub-tree, more temporal than image blocks, or any shape that differs.

  Example:
    >>> from flax import nnx
    >>> from jaxdyn.models import ViT, ViViT
    >>> kw = dict(image_size=8, dim=16, num_heads=2)
    >>> vit = ViT(1, 16, depth=2, **kw, rngs=nnx.Rngs(1))
    >>> m = ViViT(1, 8, num_frames=4, spatial_depth=2, temporal_depth=1, **kw, rngs=nnx.Rngs(0))
    >>> state = nnx.state(m, nnx.Param)
    >>> new = init_from_image_model(nnx.to_pure_dict(state), nnx.to_pure_dict(nnx.state(vit, nnx.Param)))
    >>> nnx.replace_by_pure_dict(state, new); nnx.update(m, state)
    >>> bool((m.temporal_blocks[0].fc1.kernel[...] == vit.blocks[1].fc1.kernel[...]).all())
    True

  References:
    Gowda, Arnab & Huang, "Optimizing ViViT Training", 2023, https://arxiv.org/abs/2306.04822.
  """
  for name, tree in (("params", params), ("image_params", image_params)):
    if not isinstance(tree, Mapping):
      raise TypeError(f"{name}: must be a pure dict of parameters, got {type(tree).__name__}")
  if not isinstance(init_temporal, bool):
    raise TypeError(f"init_temporal: must be a bool, got {type(init_temporal).__name__}")
  source = _validation.check_choice("source", source, ("last", "first"))
  for k in ("spatial", "temporal_blocks", "temporal_norm"):
    if k not in params:
      raise ValueError(f"params: has no {k!r} sub-tree (a jaxdyn.models.ViViT's parameters); got {sorted(params)}")
  for k in ("blocks", "norm"):
    if k not in image_params:
      raise ValueError(f"image_params: has no {k!r} sub-tree (a jaxdyn.models.ViT's parameters); got "
                       f"{sorted(image_params)}")
  _check_same_tree("image_params", image_params, params["spatial"], "params['spatial']")
  out = dict(params)
  out["spatial"] = _fresh(dict(image_params))
  if init_temporal:
    n_t, n_s = len(params["temporal_blocks"]), len(image_params["blocks"])
    if n_t > n_s:
      raise ValueError(f"params: has {n_t} temporal blocks, more than the image model's {n_s}")
    first = n_s - n_t if source == "last" else 0
    blocks = {}
    for j, key in enumerate(sorted(params["temporal_blocks"])):
      src = image_params["blocks"][sorted(image_params["blocks"])[first + j]]
      _check_same_tree("image_params['blocks']", src, params["temporal_blocks"][key], "params['temporal_blocks']")
      blocks[key] = _fresh(src)
    out["temporal_blocks"] = blocks
    out["temporal_norm"] = _fresh(image_params["norm"])
  return out


def _fresh(tree: Any) -> Any:
  """A copy with its own buffers: a leaf shared by two parameters would be donated twice by a jitted step."""
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _check_same_tree(name_a: str, a: Any, b: Any, name_b: str) -> None:
  sa, sb = jax.tree.structure(a), jax.tree.structure(b)
  if sa != sb:
    raise ValueError(f"{name_a}: its structure differs from {name_b}'s ({sa} vs {sb})")
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    if jnp.shape(x) != jnp.shape(y):
      raise ValueError(f"{name_a}: {jax.tree_util.keystr(path)} has shape {jnp.shape(x)}, "
                       f"{name_b} {jnp.shape(y)}")
