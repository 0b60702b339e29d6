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
- `init_from_short_clip_model(params, short_params)`: the two-stage reading (below): a long-clip ViViT
  initialised from a ViViT trained end to end on short clips, its temporal position embeddings
  resized by `resize_temporal_positions`.

How the temporal transformer is initialised: the paper's text beyond its abstract was not available
when this was written (only "appropriately initializing the temporal transformer" was); this module
initialises it from the pretrained image transformer itself: temporal block ``j`` of ``L_t`` takes
the weights of spatial block ``L_s - L_t + j`` (``source="last"``, the deepest blocks, whose inputs are
closest to the final-normed class tokens the temporal transformer reads) or block ``j``
(``source="first"``), and the temporal final LayerNorm takes the spatial final LayerNorm's. The
temporal class token, position embeddings and the head stay freshly initialised. The adapter
(`jaxdyn.models._vivit.Adapter`) is a residual bottleneck, the identity at initialisation, so at step 0
the frozen model's temporal stack sees exactly the pretrained frame tokens.

A second reading, the two-stage scheme (`init_from_short_clip_model`), follows a third-party study
note on the paper (github.com/bobochow/Study-notes, ``SFA-ViViT.md``; unverified against the paper's
body): stage 1 trains the whole ViViT (spatial from the image model) end to end on clips of FEW
frames (8 there); stage 2 starts from stage 1's spatial AND temporal transformers, freezes the
spatial one, adds the adapter after it, and fine-tunes adapter + temporal transformer on clips of
MANY frames (128 there). "Appropriately initializing the temporal transformer" is then initialising
it from the short-clip video model.

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
import numpy as np
import optax

from jaxdyn import _validation

__all__ = ["freeze_spatial", "init_from_image_model", "init_from_short_clip_model",
           "resize_temporal_positions", "spatial_labels"]

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


def resize_temporal_positions(pos: Any, num_frames: int) -> jax.Array:
  """Temporal position embeddings ``(1, 1 + T, d)`` resized to ``(1, 1 + num_frames, d)``, linearly along frames.

  Entry 0 (the temporal class token's position) is kept as is; the ``T`` frame positions are
  sampled at ``num_frames`` evenly spaced points of the same span, first to first and last to last
  (``align_corners``):

  .. math::  c_j = j\,\frac{T - 1}{T' - 1},\qquad
     p'_{1 + j} = (1 - (c_j - \lfloor c_j \rfloor))\, p_{1 + \lfloor c_j \rfloor}
     + (c_j - \lfloor c_j \rfloor)\, p_{1 + \min(\lfloor c_j \rfloor + 1,\, T - 1)}

  for ``j = 0 .. T' - 1`` (``T' = num_frames``; ``c_j = 0`` when ``T' = 1``, and every new position
  is ``p_1`` when ``T = 1``). Resizing to ``T`` itself is the identity (bit for bit), and a ramp
  linear in the frame index stays one (the same first and last values). The usual way a ViViT /
  TimeSformer reuses learned temporal positions at another clip length (Bertasius et al. 2021,
  https://arxiv.org/abs/2102.05095, interpolate them; Arnab et al. 2021,
  https://arxiv.org/abs/2103.15691).

  Args:
    pos: the embeddings, shape ``(1, 1 + T, d)`` with ``T >= 1`` (a `jaxdyn.models.ViViT`'s
      ``temporal_pos``), floating and finite.
    num_frames: the new number of frames ``T' >= 1``.

  Returns:
    A new array of shape ``(1, 1 + num_frames, d)`` and ``pos``'s dtype.

  Raises:
    ValueError: a wrong shape, a non-finite entry, or ``num_frames < 1``.

  Example:
    >>> import jax.numpy as jnp
    >>> pos = jnp.array([[[9.0], [0.0], [3.0]]])  # class position 9, frames 0 and 3
    >>> resize_temporal_positions(pos, 4)[0, :, 0].tolist()
    [9.0, 0.0, 1.0, 2.0, 3.0]
  """
  num_frames = _validation.check_int("num_frames", num_frames, lower=1)
  pos = jnp.asarray(pos)
  if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[1] < 2:
    raise ValueError(f"pos: must have shape (1, 1 + frames, dim) with frames >= 1, got {pos.shape}")
  if not jnp.issubdtype(pos.dtype, jnp.floating):
    raise ValueError(f"pos: must be floating, got dtype {pos.dtype}")
  _validation.check_finite("pos", pos)
  t = pos.shape[1] - 1
  if t == num_frames:
    return jnp.array(pos, copy=True)
  c = np.arange(num_frames) * ((t - 1) / (num_frames - 1)) if num_frames > 1 else np.zeros(1)
  lo = np.minimum(np.floor(c).astype(np.int64), t - 1)
  hi = np.minimum(lo + 1, t - 1)
  w = jnp.asarray((c - lo)[None, :, None], pos.dtype)
  frames = pos[:, 1:]
  resized = (1 - w) * frames[:, lo] + w * frames[:, hi]
  return jnp.concatenate([pos[:, :1], resized.astype(pos.dtype)], axis=1)


# What `init_from_short_clip_model` copies: the whole spatial transformer, the temporal transformer, the head.
_SHORT_COPIED = ("spatial", "temporal_cls", "temporal_blocks", "temporal_norm", "head")


def init_from_short_clip_model(params: Mapping[str, Any], short_params: Mapping[str, Any]) -> dict[str, Any]:
  """A long-clip ViViT's parameters initialised from a ViViT trained on shorter clips (stage 2 of two).

  .. math::  \theta_{\text{spatial}} \leftarrow \theta^{\text{short}}_{\text{spatial}},\quad
     \theta_{\text{temporal}} \leftarrow \theta^{\text{short}}_{\text{temporal}},\quad
     \theta_{\text{head}} \leftarrow \theta^{\text{short}}_{\text{head}},\quad
     p_{\text{temporal}} \leftarrow \mathrm{resize}(p^{\text{short}}_{\text{temporal}}, T)

  Copied from ``short_params``: ``spatial`` (the whole spatial `ViT`), ``temporal_cls``,
  ``temporal_blocks``, ``temporal_norm`` and ``head``; ``temporal_pos`` is resized from the short
  model's ``T_s`` frames to ``params``' ``T`` by `resize_temporal_positions`. ``params``' adapter (the
  identity at initialisation, if any) and anything else are kept; an adapter of the short model is
  not copied. With ``T = T_s`` and an identity adapter the new model computes the short model's
  logits exactly.

  Where each detail comes from:

  - Freezing the spatial transformer, a compact adapter after it, and "appropriately initializing
    the temporal transformer": the paper's abstract (Gowda, Arnab & Huang 2023).
  - That the initialisation is two-stage (stage 1: the whole ViViT trained end to end on few-frame
    clips; stage 2: its spatial and temporal transformers reused, spatial frozen, adapter added,
    adapter + temporal fine-tuned on many-frame clips): a third-party study note
    (github.com/bobochow/Study-notes, ``SFA-ViViT.md``), not checked against the paper's body, which
    was not available.
  - Copying the temporal class token, final norm and head with the blocks, resizing the position
    embeddings by linear interpolation with aligned end points, keeping the class position, and
    leaving the adapter as created: this module's choices (the note does not say).

  Args:
    params: the long-clip ViViT's parameters as a pure dict
      (``nnx.to_pure_dict(nnx.state(model, nnx.Param))``).
    short_params: the short-clip ViViT's, same architecture (widths, depths, heads, patch size,
      number of classes) but any number of frames.

  Returns:
    A new pure dict; the copied leaves have buffers of their own (a jitted step donates them) and
    the inputs are not modified. Put it into the model with
    ``nnx.replace_by_pure_dict(state, new); nnx.update(model, state)``.

  Raises:
    ValueError: a missing sub-tree, or a structure or shape that differs (temporal positions aside).

  Example:
    >>> from flax import nnx
    >>> from jaxdyn.models import ViViT
    >>> kw = dict(image_size=8, dim=16, num_heads=2, spatial_depth=1, temporal_depth=1)
    >>> short = ViViT(1, 8, num_frames=2, **kw, rngs=nnx.Rngs(0))
    >>> long = ViViT(1, 8, num_frames=4, adapter_dim=4, freeze_spatial=True, **kw, rngs=nnx.Rngs(1))
    >>> state = nnx.state(long, nnx.Param)
    >>> new = init_from_short_clip_model(nnx.to_pure_dict(state), nnx.to_pure_dict(nnx.state(short, nnx.Param)))
    >>> nnx.replace_by_pure_dict(state, new); nnx.update(long, state)
    >>> long.temporal_pos.shape, bool((long.head.kernel[...] == short.head.kernel[...]).all())
    ((1, 5, 16), True)

  References:
    Gowda, Arnab & Huang, "Optimizing ViViT Training", 2023, https://arxiv.org/abs/2306.04822.
    Study note: https://github.com/bobochow/Study-notes (``SFA-ViViT.md``), third-party, unverified.
  """
  for name, tree in (("params", params), ("short_params", short_params)):
    if not isinstance(tree, Mapping):
      raise TypeError(f"{name}: must be a pure dict of parameters, got {type(tree).__name__}")
    for k in (*_SHORT_COPIED, "temporal_pos"):
      if k not in tree:
        raise ValueError(f"{name}: has no {k!r} sub-tree (a jaxdyn.models.ViViT's parameters); got {sorted(tree)}")
  pos, short_pos = jnp.asarray(params["temporal_pos"]), jnp.asarray(short_params["temporal_pos"])
  if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[1] < 2:
    raise ValueError(f"params: temporal_pos must have shape (1, 1 + frames, dim), got {pos.shape}")
  if short_pos.ndim != 3 or short_pos.shape[0] != 1 or short_pos.shape[1] < 2 or short_pos.shape[2] != pos.shape[2]:
    raise ValueError(f"short_params: temporal_pos must have shape (1, 1 + frames, {pos.shape[2]}) (the width of "
                     f"params'), got {short_pos.shape}")
  for k in _SHORT_COPIED:
    _check_same_tree("short_params", short_params[k], params[k], "params", sub=repr(k))
  out = dict(params)
  for k in _SHORT_COPIED:
    out[k] = _fresh(short_params[k])
  out["temporal_pos"] = resize_temporal_positions(short_pos, pos.shape[1] - 1)
  return out


def _fresh(tree: Any) -> Any:
  """A copy with its own buffers: a leaf shared by two parameters would be donated twice by a jitted step."""
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _check_same_tree(name_a: str, a: Any, b: Any, name_b: str, *, sub: str = "") -> None:
  """Raises naming ``name_a`` unless ``a`` and ``b`` have one structure and shapes (``sub``: their key, if any)."""
  sa, sb = jax.tree.structure(a), jax.tree.structure(b)
  if sa != sb:
    what = f"its {sub} sub-tree's structure differs from {name_b}'s" if sub else f"its structure differs from {name_b}'s"
    raise ValueError(f"{name_a}: {what} ({sa} vs {sb})")
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    if jnp.shape(x) != jnp.shape(y):
      raise ValueError(f"{name_a}: {sub}{jax.tree_util.keystr(path)} has shape {jnp.shape(x)}, "
                       f"{name_b} {jnp.shape(y)}")
