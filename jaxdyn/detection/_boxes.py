"""Axis-aligned boxes: areas, IoU, GIoU, centre distances, the box encoder, anchor grids.

Boxes are ``(..., 4)`` arrays ``(x1, y1, x2, y2)`` in pixels. Two conventions for a box's extent:

- continuous (the default; COCO's evaluation, torchvision): width ``x2 - x1``, height ``y2 - y1``;
  a box is the region ``[x1, x2] x [y1, y2]`` of the plane;
- ``official_compat=True``: the old "+1 pixel" convention of maskrcnn-benchmark, which the ATSS
  authors' code (sfzhang15/ATSS, ``boxlist_iou`` and ``BoxCoder``) inherits: ``x2`` is the *last*
  pixel inside the box, so width ``x2 - x1 + 1`` in the areas, the intersection and the encoder, and
  decoded corners ``ctr -+ (w - 1) / 2``.

Centres are ``((x1 + x2) / 2, (y1 + y2) / 2)`` in both conventions (as in the authors' code).

.. math::  \\mathrm{IoU}(a, b) = \\frac{|a \\cap b|}{|a| + |b| - |a \\cap b|},\\qquad
           \\mathrm{GIoU}(a, b) = \\mathrm{IoU}(a, b) - \\frac{|C| - |a \\cup b|}{|C|}

with ``C`` the smallest box enclosing both (Rezatofighi et al., CVPR 2019,
https://arxiv.org/abs/1902.09630). An IoU of two empty boxes is 0 (never 0/0).

The encoder is Faster R-CNN's (weights ``(wx, wy, ww, wh) = (10, 10, 5, 5)`` as the ATSS code):

.. math::  d_x = w_x \\frac{g_{cx} - a_{cx}}{a_w},\\ d_y = w_y \\frac{g_{cy} - a_{cy}}{a_h},\\
           d_w = w_w \\log\\frac{g_w}{a_w},\\ d_h = w_h \\log\\frac{g_h}{a_h}

and the decoder its inverse, with ``d_w / w_w`` and ``d_h / w_h`` clipped above at ``log(1000 / 16)``
(as the authors' and Detectron's decoders) so ``exp`` never overflows.

Non-finite inputs propagate: a box with a NaN or infinite coordinate gives NaN in every IoU, GIoU and
decoded box it enters (an infinite corner would otherwise give a plausible IoU of 0).

All functions are pure and jittable (no value-dependent Python control flow); shapes are checked
eagerly. Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive
Training Sample Selection", CVPR 2020, https://arxiv.org/abs/1912.02424.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation

__all__ = [
    "box_area",
    "box_centers",
    "box_iou",
    "center_distance",
    "decode_boxes",
    "encode_boxes",
    "generalized_box_iou",
    "make_anchors",
]

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
SCALE_CLIP = math.log(1000.0 / 16)


def _check_boxes(name, boxes, ndim=None):
  if ndim is not None:
    _validation.check_ndim(name, boxes, ndim)
  if np.ndim(boxes) < 1 or np.shape(boxes)[-1] != 4:
    raise ValueError(f"{name}: must have a last axis of 4 (x1, y1, x2, y2), got shape {np.shape(boxes)}")
  return _validation.check_floating(name, boxes)


def _extent(boxes, official_compat):
  one = 1.0 if official_compat else 0.0
  return boxes[..., 2] - boxes[..., 0] + one, boxes[..., 3] - boxes[..., 1] + one


def _finite(x):
  """Per box: all four coordinates finite (an infinite corner otherwise gives a finite IoU of 0)."""
  return jnp.all(jnp.isfinite(x), axis=-1)


def _safe_div(num, den):
  """``num / den`` with 0 / 0 = 0; a NaN in ``den`` stays NaN (``jnp.maximum`` propagates it)."""
  return num / jnp.maximum(den, jnp.finfo(den.dtype).tiny)


def box_area(boxes: jax.Array, *, official_compat: bool = False) -> jax.Array:
  """Areas ``w * h`` of ``(..., 4)`` boxes; ``official_compat`` uses ``(w + 1)(h + 1)``.

  Example:
    >>> float(box_area(jnp.array([0.0, 0.0, 2.0, 3.0]))), float(box_area(jnp.array([0.0, 0.0, 2.0, 3.0]),
    ...                                                                    official_compat=True))
    (6.0, 12.0)
  """
  boxes = _check_boxes("boxes", boxes)
  w, h = _extent(boxes, official_compat)
  return w * h


def box_centers(boxes: jax.Array) -> jax.Array:
  """Centres ``((x1 + x2) / 2, (y1 + y2) / 2)`` of ``(..., 4)`` boxes, shape ``(..., 2)``.

  Example:
    >>> box_centers(jnp.array([[0.0, 2.0, 4.0, 6.0]])).tolist()
    [[2.0, 4.0]]
  """
  boxes = _check_boxes("boxes", boxes)
  return jnp.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], axis=-1)


def _pairwise_inter(a, b, official_compat):
  one = 1.0 if official_compat else 0.0
  lt = jnp.maximum(a[:, None, :2], b[None, :, :2])
  rb = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  wh = jnp.maximum(rb - lt + one, 0.0)
  return wh[..., 0] * wh[..., 1]


def box_iou(boxes_a: jax.Array, boxes_b: jax.Array, *, official_compat: bool = False) -> jax.Array:
  """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` boxes: an ``(N, M)`` array.

  ``official_compat=True`` uses the "+1 pixel" extents in the areas and the intersection, as the
  ATSS authors' ``boxlist_iou``.

  Example:
    >>> a = jnp.array([[0.0, 0.0, 2.0, 2.0]]); b = jnp.array([[1.0, 0.0, 3.0, 2.0]])
    >>> float(box_iou(a, b)[0, 0]), round(float(box_iou(a, b, official_compat=True)[0, 0]), 4)
    (0.3333333432674408, 0.5)
  """
  a = _check_boxes("boxes_a", boxes_a, 2)
  b = _check_boxes("boxes_b", boxes_b, 2)
  dtype = jnp.result_type(a, b)
  a, b = a.astype(dtype), b.astype(dtype)
  inter = _pairwise_inter(a, b, official_compat)
  area_a = jnp.prod(jnp.stack(_extent(a, official_compat), -1), -1)
  area_b = jnp.prod(jnp.stack(_extent(b, official_compat), -1), -1)
  union = area_a[:, None] + area_b[None, :] - inter
  return _validation.nan_unless(_finite(a)[:, None] & _finite(b)[None, :], _safe_div(inter, union))


def generalized_box_iou(boxes_a: jax.Array, boxes_b: jax.Array) -> jax.Array:
  """Elementwise GIoU of aligned ``(..., 4)`` boxes (continuous convention), values in ``[-1, 1]``.

  A box with ``x2 < x1`` (or ``y2 < y1``) in ``boxes_a`` (the predictions) is collapsed to zero width
  (``x2 <- max(x1, x2)``), as in the ATSS authors' GIoU loss; that loss has no "+1 pixel" terms, so
  there is no ``official_compat`` switch here. Its ``1e-7`` added to the union and the enclosing area is
  replaced by 0 / 0 = 0.

  Example:
    >>> a = jnp.array([0.0, 0.0, 1.0, 1.0]); b = jnp.array([2.0, 0.0, 3.0, 1.0])
    >>> float(generalized_box_iou(a, b))  # disjoint: IoU 0, enclosing area 3, union 2
    -0.3333333432674408
  """
  a = _check_boxes("boxes_a", boxes_a)
  b = _check_boxes("boxes_b", boxes_b)
  _validation.check_same_shape("boxes_b", b, "boxes_a", a)
  dtype = jnp.result_type(a, b)
  a, b = a.astype(dtype), b.astype(dtype)
  a = jnp.stack([a[..., 0], a[..., 1], jnp.maximum(a[..., 0], a[..., 2]), jnp.maximum(a[..., 1], a[..., 3])], -1)
  area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
  area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  iw = jnp.maximum(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0.0)
  ih = jnp.maximum(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0.0)
  inter = iw * ih
  union = area_a + area_b - inter
  enclosing = ((jnp.maximum(a[..., 2], b[..., 2]) - jnp.minimum(a[..., 0], b[..., 0]))
               * (jnp.maximum(a[..., 3], b[..., 3]) - jnp.minimum(a[..., 1], b[..., 1])))
  giou = _safe_div(inter, union) - _safe_div(enclosing - union, enclosing)
  return _validation.nan_unless(_finite(a) & _finite(b), giou)


def center_distance(boxes_a: jax.Array, boxes_b: jax.Array) -> jax.Array:
  """Pairwise Euclidean distances between the centres of ``(N, 4)`` and ``(M, 4)`` boxes: ``(N, M)``.

  Example:
    >>> a = jnp.array([[0.0, 0.0, 2.0, 2.0]]); b = jnp.array([[3.0, 4.0, 5.0, 6.0]])
    >>> float(center_distance(a, b)[0, 0])
    5.0
  """
  a = box_centers(_check_boxes("boxes_a", boxes_a, 2))
  b = box_centers(_check_boxes("boxes_b", boxes_b, 2))
  d = a[:, None, :] - b[None, :, :]
  return jnp.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])


def _check_weights(weights):
  if not isinstance(weights, (tuple, list)) or len(weights) != 4:
    raise ValueError(f"weights: must be 4 positive numbers (wx, wy, ww, wh), got {weights!r}")
  return tuple(_validation.check_real("weights", w, lower=0.0, lower_open=True) for w in weights)


def _geometry(boxes, official_compat):
  w, h = _extent(boxes, official_compat)
  return (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2, w, h


def encode_boxes(boxes: jax.Array, anchors: jax.Array, *, weights: Sequence[float] = BOX_WEIGHTS,
                 official_compat: bool = False) -> jax.Array:
  """Regression targets ``(dx, dy, dw, dh)`` of ``boxes`` relative to ``anchors`` (module docstring).

  Args:
    boxes: ``(..., 4)`` target boxes (positive width and height).
    anchors: ``(..., 4)`` anchors, the shape of ``boxes``.
    weights: ``(wx, wy, ww, wh) > 0``.
    official_compat: widths ``x2 - x1 + 1`` as the authors' ``BoxCoder``.

  Returns:
    ``(..., 4)`` deltas; `decode_boxes` inverts them (up to rounding).

  Example:
    >>> encode_boxes(jnp.array([1.0, 0.0, 3.0, 4.0]), jnp.array([0.0, 0.0, 2.0, 4.0])).tolist()
    [5.0, 0.0, 0.0, 0.0]
  """
  b = _check_boxes("boxes", boxes)
  a = _check_boxes("anchors", anchors)
  _validation.check_same_shape("anchors", a, "boxes", b)
  wx, wy, ww, wh = _check_weights(weights)
  gx, gy, gw, gh = _geometry(b, official_compat)
  ax, ay, aw, ah = _geometry(a, official_compat)
  return jnp.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * jnp.log(gw / aw), wh * jnp.log(gh / ah)], -1)


def decode_boxes(deltas: jax.Array, anchors: jax.Array, *, weights: Sequence[float] = BOX_WEIGHTS,
                 official_compat: bool = False) -> jax.Array:
  """Boxes from deltas ``(dx, dy, dw, dh)`` relative to ``anchors``: the inverse of `encode_boxes`.

  ``dw / ww`` and ``dh / wh`` are clipped above at ``log(1000 / 16)``. With ``official_compat`` the
  corners are ``ctr -+ (w - 1) / 2`` (the "+1 pixel" convention), else ``ctr -+ w / 2``.

  Example:
    >>> decode_boxes(jnp.array([5.0, 0.0, 0.0, 0.0]), jnp.array([0.0, 0.0, 2.0, 4.0])).tolist()
    [1.0, 0.0, 3.0, 4.0]
  """
  d = _check_boxes("deltas", deltas)
  a = _check_boxes("anchors", anchors)
  _validation.check_same_shape("anchors", a, "deltas", d)
  wx, wy, ww, wh = _check_weights(weights)
  ax, ay, aw, ah = _geometry(a.astype(d.dtype), official_compat)
  cx = d[..., 0] / wx * aw + ax
  cy = d[..., 1] / wy * ah + ay
  w = jnp.exp(jnp.minimum(d[..., 2] / ww, SCALE_CLIP)) * aw
  h = jnp.exp(jnp.minimum(d[..., 3] / wh, SCALE_CLIP)) * ah
  if official_compat:
    w, h = w - 1.0, h - 1.0
  out = jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
  return _validation.nan_unless((_finite(d) & _finite(a))[..., None], out)


def make_anchors(image_size: int, strides: Sequence[int], sizes: Sequence[float]) -> tuple[jax.Array, tuple[int, ...]]:
  """One square anchor per feature-map location on each pyramid level (continuous convention).

  Level ``l`` has stride ``s_l`` and a ``ceil(image_size / s_l)``-square grid; the anchor at column
  ``i``, row ``j`` is centred at ``((i + 1/2) s_l, (j + 1/2) s_l)`` with side ``sizes[l]`` (ATSS uses
  one anchor per location, side ``8 s_l``). Rows are ordered as a feature map ``(H, W)`` flattened
  row-major, level after level.

  Args:
    image_size: side of the (square) image, ``>= 1``.
    strides: one stride ``>= 1`` per level.
    sizes: one anchor side ``> 0`` per level.

  Returns:
    ``(anchors, num_anchors_per_level)``: a float32 ``(A, 4)`` array and a tuple of Python ints.

  Example:
    >>> anchors, counts = make_anchors(8, (4, 8), (8.0, 16.0))
    >>> counts, anchors[0].tolist()
    ((4, 1), [-2.0, -2.0, 6.0, 6.0])
  """
  image_size = _validation.check_int("image_size", image_size, lower=1)
  if not isinstance(strides, (tuple, list)) or not strides:
    raise ValueError(f"strides: must be a non-empty sequence of ints, got {strides!r}")
  if not isinstance(sizes, (tuple, list)) or len(sizes) != len(strides):
    raise ValueError(f"sizes: must be a sequence of one size per stride ({len(strides)}), got {sizes!r}")
  strides = [_validation.check_int("strides", s, lower=1) for s in strides]
  sizes = [_validation.check_real("sizes", s, lower=0.0, lower_open=True) for s in sizes]
  levels, counts = [], []
  for s, size in zip(strides, sizes):
    n = -(-image_size // s)
    c = (np.arange(n, dtype=np.float64) + 0.5) * s
    cy, cx = np.meshgrid(c, c, indexing="ij")
    cx, cy = cx.ravel(), cy.ravel()
    levels.append(np.stack([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], -1))
    counts.append(n * n)
  return jnp.asarray(np.concatenate(levels), jnp.float32), tuple(counts)
