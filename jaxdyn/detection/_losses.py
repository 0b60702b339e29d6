"""Dense-detector losses: sigmoid focal loss, centerness-weighted GIoU loss, centerness BCE (ATSS).

Zhang et al., ATSS, CVPR 2020, https://arxiv.org/abs/1912.02424 (authors' code sfzhang15/ATSS,
``atss_core/modeling/rpn/atss/loss.py``); focal loss: Lin et al., ICCV 2017, https://arxiv.org/abs/1708.02002;
centerness: Tian et al., FCOS, ICCV 2019, https://arxiv.org/abs/1904.01355.

With ``p = sigmoid(x)`` and a target ``y`` in [0, 1] per anchor and class (one-hot of the matched
ground truth's class; all zeros for a negative anchor):

.. math::  \\mathrm{FL}(x, y) = -\\alpha_y (1 - p_y)^\\gamma \\log p_y,\\quad p_y = y p + (1 - y)(1 - p),\\quad
           \\alpha_y = y \\alpha + (1 - y)(1 - \\alpha)

(``alpha = 0.25``, ``gamma = 2``; `sigmoid_focal_loss` computes ``-log p_y`` as the binary cross-entropy
with logits, so large logits stay finite). The centerness of an anchor centre ``(cx, cy)`` inside its
box, ``l = cx - x1``, ``t = cy - y1``, ``r = x2 - cx``, ``b = y2 - cy`` (`centerness_target`):

.. math::  c = \\sqrt{\\frac{\\min(l, r)}{\\max(l, r)} \\cdot \\frac{\\min(t, b)}{\\max(t, b)}}

`atss_loss` sums, over a batch (``P`` positives in all, ``c_i`` their centerness targets):

.. math::  L = \\frac{\\sum_{a, k} \\mathrm{FL}}{\\max(P, 1)}
             + \\lambda \\frac{\\sum_i c_i (1 - \\mathrm{GIoU}(\\hat b_i, b_i))}{\\sum_i c_i}
             + \\frac{\\sum_i \\mathrm{BCE}(\\hat c_i, c_i)}{\\max(P, 1)}

with ``lambda = 2`` (the code's ``REG_LOSS_WEIGHT``), ``hat b_i`` the decoded box prediction of positive
anchor ``i`` and ``b_i`` its ground truth; ignored anchors (``matched_gt == -2``) enter no term. The
regression and centerness terms are 0 when there is no positive (the code returns 0 too).

Differences from the authors' code: the regression target is the ground-truth box itself (the code
encodes it and decodes it again, the same box up to rounding), and a positive anchor whose centre is
outside its box (possible for IoU-threshold assignment, never for ATSS) gets centerness 0 (each of
``l, t, r, b`` clipped at 0) instead of the code's NaN assertion; the normalisers are not averaged over
devices (one host here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation
from jaxdyn.detection import _boxes

__all__ = ["atss_loss", "centerness_target", "sigmoid_focal_loss"]


def sigmoid_focal_loss(logits: jax.Array, targets: jax.Array, *, alpha: float = 0.25, gamma: float = 2.0
                       ) -> jax.Array:
  """Elementwise sigmoid focal loss (module docstring), the shape of ``logits``.

  Args:
    logits: float logits, any shape.
    targets: float targets in [0, 1], the shape of ``logits``.
    alpha: class-balance weight of the positives, in [0, 1] (0.25).
    gamma: focusing exponent ``>= 0`` (2; 0 gives the alpha-weighted binary cross-entropy).

  Returns:
    The per-element losses (not reduced).

  Example:
    >>> round(float(sigmoid_focal_loss(jnp.array(0.0), jnp.array(1.0))), 6)  # 0.25 * 0.5**2 * log 2
    0.043322
  """
  x = _validation.check_floating("logits", logits)
  y = _validation.check_floating("targets", targets)
  _validation.check_same_shape("targets", y, "logits", x)
  alpha = _validation.check_real("alpha", alpha, lower=0.0, upper=1.0)
  gamma = _validation.check_real("gamma", gamma, lower=0.0)
  p = jax.nn.sigmoid(x)
  ce = jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x)))
  p_t = y * p + (1 - y) * (1 - p)
  alpha_t = y * alpha + (1 - y) * (1 - alpha)
  return alpha_t * (1 - p_t) ** gamma * ce


def centerness_target(points: jax.Array, boxes: jax.Array) -> jax.Array:
  """FCOS centerness of points ``(..., 2)`` in boxes ``(..., 4)`` (module docstring), shape ``(...)``.

  Distances to the sides are clipped at 0, so a point outside its box has centerness 0.

  Example:
    >>> round(float(centerness_target(jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0, 4.0, 4.0]))), 6)  # sqrt(1/3)
    0.57735
  """
  pts = _validation.check_floating("points", points)
  if pts.ndim < 1 or pts.shape[-1] != 2:
    raise ValueError(f"points: must have a last axis of 2 (x, y), got shape {pts.shape}")
  b = _boxes._check_boxes("boxes", boxes)  # pylint: disable=protected-access
  if pts.shape[:-1] != b.shape[:-1]:
    raise ValueError(f"points: must have the leading shape of boxes, got {pts.shape} and {b.shape}")
  l = jnp.maximum(pts[..., 0] - b[..., 0], 0.0)
  t = jnp.maximum(pts[..., 1] - b[..., 1], 0.0)
  r = jnp.maximum(b[..., 2] - pts[..., 0], 0.0)
  d = jnp.maximum(b[..., 3] - pts[..., 1], 0.0)
  div = _boxes._safe_div  # pylint: disable=protected-access
  c = jnp.sqrt(div(jnp.minimum(l, r), jnp.maximum(l, r)) * div(jnp.minimum(t, d), jnp.maximum(t, d)))
  finite = jnp.all(jnp.isfinite(pts), -1) & _boxes._finite(b)  # pylint: disable=protected-access
  return _validation.nan_unless(finite, c)


def _check_int_array(name, x, shape):
  dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
  if not jnp.issubdtype(dtype, jnp.integer):
    raise TypeError(f"{name}: must be an integer array, got dtype {dtype}")
  if tuple(np.shape(x)) != tuple(shape):
    raise ValueError(f"{name}: must have shape {tuple(shape)}, got {np.shape(x)}")


def atss_loss(cls_logits: jax.Array, box_deltas: jax.Array, centerness_logits: jax.Array, anchors: jax.Array,
              matched_gt: jax.Array, gt_boxes: jax.Array, gt_labels: jax.Array, *, alpha: float = 0.25,
              gamma: float = 2.0, reg_weight: float = 2.0, weights: Sequence[float] = _boxes.BOX_WEIGHTS,
              official_compat: bool = False) -> tuple[jax.Array, dict[str, Any]]:
  """The ATSS training loss of a batch (module docstring), from an assignment per image.

  Args:
    cls_logits: ``(B, A, K)`` classification logits (``K`` classes, no background class).
    box_deltas: ``(B, A, 4)`` predicted deltas, decoded with `jaxdyn.detection.decode_boxes`.
    centerness_logits: ``(B, A)`` centerness logits.
    anchors: ``(A, 4)`` anchors.
    matched_gt: int ``(B, A)``: `Assignment.matched_gt` per image (index in ``[0, G)``, -1 negative,
      -2 ignored).
    gt_boxes: ``(B, G, 4)`` ground-truth boxes (padded rows are never matched).
    gt_labels: int ``(B, G)`` class ids in ``[0, K)`` (padded rows too: give them any valid id).
    alpha, gamma: focal-loss parameters.
    reg_weight: ``lambda >= 0``, the weight of the GIoU term (2, as the authors' config).
    weights: the box coder's weights.
    official_compat: decode in the "+1 pixel" convention.

  Returns:
    ``(loss, aux)``: the scalar loss and a dict of its terms ``cls``, ``reg``, ``centerness`` and the
    number of positives ``num_pos``. Under ``jit``, an out-of-range ``gt_labels`` or ``matched_gt`` or a
    non-finite input gives a NaN loss (a NaN delta of a negative anchor
    too).

  Example:
    >>> anchors = jnp.array([[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 8.0, 4.0]])
    >>> loss, aux = atss_loss(jnp.zeros((1, 2, 2)), jnp.zeros((1, 2, 4)), jnp.zeros((1, 2)), anchors,
    ...                       jnp.array([[0, -1]]), jnp.array([[[0.0, 0.0, 4.0, 4.0]]]), jnp.array([[1]]))
    >>> int(aux["num_pos"]), float(aux["reg"])  # the positive's decoded box is its ground truth
    (1, 0.0)
  """
  x = _validation.check_floating("cls_logits", cls_logits)
  _validation.check_ndim("cls_logits", x, 3)
  batch, num_anchors, num_classes = x.shape
  _validation.check_nonempty("cls_logits", x)
  d = _boxes._check_boxes("box_deltas", box_deltas, 3)  # pylint: disable=protected-access
  if d.shape != (batch, num_anchors, 4):
    raise ValueError(f"box_deltas: must have shape {(batch, num_anchors, 4)}, got {d.shape}")
  c = _validation.check_floating("centerness_logits", centerness_logits)
  if c.shape != (batch, num_anchors):
    raise ValueError(f"centerness_logits: must have shape {(batch, num_anchors)}, got {c.shape}")
  a = _boxes._check_boxes("anchors", anchors, 2)  # pylint: disable=protected-access
  if a.shape[0] != num_anchors:
    raise ValueError(f"anchors: must have {num_anchors} rows (axis 1 of cls_logits), got shape {a.shape}")
  g = _boxes._check_boxes("gt_boxes", gt_boxes, 3)  # pylint: disable=protected-access
  if g.shape[0] != batch:
    raise ValueError(f"gt_boxes: must have batch size {batch}, got shape {g.shape}")
  num_gt = g.shape[1]
  _check_int_array("matched_gt", matched_gt, (batch, num_anchors))
  if _validation.is_concrete(matched_gt) and np.size(matched_gt):
    m = np.asarray(matched_gt)
    if m.min() < -2 or m.max() >= num_gt:
      raise ValueError(f"matched_gt: must lie in [-2, {num_gt}) (G = {num_gt}), got values in [{m.min()}, {m.max()}]")
  _validation.check_integer_labels("gt_labels", gt_labels, num_classes, shape=(batch, num_gt))
  alpha = _validation.check_real("alpha", alpha, lower=0.0, upper=1.0)
  gamma = _validation.check_real("gamma", gamma, lower=0.0)
  reg_weight = _validation.check_real("reg_weight", reg_weight, lower=0.0)
  weights = _boxes._check_weights(weights)  # pylint: disable=protected-access

  matched = jnp.asarray(matched_gt)
  labels = jnp.asarray(gt_labels)
  pos = matched >= 0
  idx = jnp.clip(matched, 0, max(num_gt - 1, 0))
  if num_gt:
    cls = jnp.take_along_axis(labels, idx, axis=1)
    target_boxes = jnp.take_along_axis(g, idx[..., None], axis=1).astype(d.dtype)
  else:
    cls = jnp.zeros_like(matched)
    target_boxes = jnp.zeros(d.shape, d.dtype)
  onehot = jax.nn.one_hot(jnp.where(pos, cls, num_classes), num_classes, dtype=x.dtype)
  care = (matched != -2).astype(x.dtype)
  num_pos = jnp.sum(pos)
  norm = jnp.maximum(num_pos, 1).astype(x.dtype)
  cls_loss = jnp.sum(sigmoid_focal_loss(x, onehot, alpha=alpha, gamma=gamma) * care[..., None]) / norm

  pred_boxes = _boxes.decode_boxes(d, jnp.broadcast_to(a.astype(d.dtype), d.shape), weights=weights,
                                   official_compat=official_compat)
  centres = jnp.broadcast_to(_boxes.box_centers(a.astype(d.dtype)), d.shape[:2] + (2,))
  ctr = jnp.where(pos, centerness_target(centres, target_boxes), 0.0)
  giou = _boxes.generalized_box_iou(pred_boxes, target_boxes)
  reg_loss = jnp.sum(jnp.where(pos, ctr * (1 - giou), 0.0)) / jnp.maximum(jnp.sum(ctr), jnp.finfo(d.dtype).tiny)
  bce = jnp.maximum(c, 0) - c * ctr + jnp.log1p(jnp.exp(-jnp.abs(c)))
  ctr_loss = jnp.sum(jnp.where(pos, bce, 0.0)) / norm

  total = cls_loss + reg_weight * reg_loss + ctr_loss
  ok = (jnp.all(_validation.labels_valid(labels, num_classes)) & jnp.all((matched >= -2) & (matched < num_gt))
        & jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(a)) & jnp.all(jnp.isfinite(d)) & jnp.all(jnp.isfinite(c))
        & jnp.all(jnp.isfinite(x)))
  total = _validation.nan_unless(ok, total)
  return total, {"cls": cls_loss, "reg": reg_loss, "centerness": ctr_loss, "num_pos": num_pos}
