"""Anchor assignment: ATSS (adaptive training sample selection) and the IoU-threshold rule.

Zhang, Chi, Yao, Lei, Li, "Bridging the Gap Between Anchor-based and Anchor-free Detection via
Adaptive Training Sample Selection", CVPR 2020, https://arxiv.org/abs/1912.02424; authors' code
sfzhang15/ATSS, ``atss_core/modeling/rpn/atss/loss.py`` (``POSITIVE_TYPE == 'ATSS'``).

**ATSS** (`atss_assign`), for every ground truth ``g``:

1. candidates: on each pyramid level ``l``, the ``k_l = min(k, A_l)`` anchors whose centres are
   nearest to ``g``'s centre (Euclidean; ``k = 9``);
2. threshold ``t_g = m_g + v_g``: the mean and the *unbiased* standard deviation (divisor ``C - 1``,
   as ``torch.std``) of the IoUs of ``g``'s ``C = sum_l k_l`` candidates;
3. a candidate is positive for ``g`` if its IoU ``>= t_g`` and its centre lies strictly inside ``g``:
   ``min(cx - x1, cy - y1, x2 - cx, y2 - cy) > 0.01``;
4. an anchor positive for several ground truths goes to the one with the highest IoU (ties: the
   lowest ground-truth index, as ``torch.max``); every other anchor is negative.

**IoU threshold** (`iou_assign`, RetinaNet: Lin et al., "Focal Loss for Dense Object Detection",
ICCV 2017, https://arxiv.org/abs/1708.02002): each anchor's best ground truth by IoU; positive if that
IoU ``>= 0.5``, negative if ``< 0.4``, ignored in between. The paper states only these thresholds;
its implementations (Detectron, maskrcnn-benchmark's ``Matcher(0.5, 0.4,
allow_low_quality_matches=True)``, which the ATSS code's IoU baseline also uses) add *low-quality
matches*: for each ground truth, every anchor reaching that ground truth's highest IoU (ties included)
becomes positive, matched to the anchor's own best ground truth. That is on by default here
(``low_quality_matches``), and it is skipped for a ground truth whose best IoU is 0 (the Matcher would
otherwise make every anchor positive). The ATSS code's IoU baseline also turns positives whose centre is
outside their box into ignored anchors; that variant is not reproduced.

Static shapes: ground truths are padded to a fixed ``G`` with a validity mask ``gt_valid``; padded
rows never match. Candidates are taken with ``lax.top_k`` per level, so the levels' sizes are static
Python ints. Ties in the centre distance go to the lower anchor index (``lax.top_k`` is stable; the
authors' ``torch.topk`` leaves that order unspecified). The mean and the standard deviation are
summed left to right over the candidates (levels in order, nearest first within a level) and scaled by
the rounded reciprocals ``1 / C`` and ``1 / (C - 1)`` (XLA rewrites a division by a constant that way),
so a loop reproduces the threshold: bit for bit op by op, and within one float32 ulp under ``jit``,
where XLA:CPU may fuse the squared deviations into fused multiply-adds.

A ground truth can end with no positive anchor (a box too small for any anchor centre to lie 0.01
inside it, or all its candidates won by ground truths of higher IoU): `Assignment.num_unassigned`
counts them.

``official_compat=True`` computes the IoUs in the authors' "+1 pixel" convention
(`jaxdyn.detection.box_iou`); centres and the centre-inside test are the same in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation
from jaxdyn.detection import _boxes

__all__ = ["Assignment", "atss_assign", "iou_assign"]

NEGATIVE = -1
IGNORE = -2
CENTER_MARGIN = 0.01


class Assignment(NamedTuple):
  """Per-anchor matches of an assigner.

  Attributes:
    matched_gt: int32 ``(A,)``: the ground-truth index of a positive anchor, ``-1`` for a negative,
      ``-2`` for an ignored anchor (`iou_assign` only).
    iou: float ``(A,)``: IoU with the matched ground truth for a positive, else the anchor's highest IoU
      over the valid ground truths (0 when there is none).
    threshold: float ``(G,)``: the IoU threshold of each ground truth (ATSS's ``m_g + v_g``; the
      positive threshold for `iou_assign`), ``+inf`` for padded rows.
    num_unassigned: int32 ``()``: valid ground truths with no positive anchor.
  """

  matched_gt: jax.Array
  iou: jax.Array
  threshold: jax.Array
  num_unassigned: jax.Array


def _check_inputs(anchors, gt_boxes, gt_valid):
  anchors = _boxes._check_boxes("anchors", anchors, 2)  # pylint: disable=protected-access
  _validation.check_nonempty("anchors", anchors, what="anchors")
  gt_boxes = _boxes._check_boxes("gt_boxes", gt_boxes, 2)  # pylint: disable=protected-access
  g = gt_boxes.shape[0]
  if gt_valid is None:
    gt_valid = jnp.ones((g,), bool)
  else:
    dtype = gt_valid.dtype if hasattr(gt_valid, "dtype") else np.asarray(gt_valid).dtype
    if dtype != bool:
      raise TypeError(f"gt_valid: must be a bool array, got dtype {dtype}")
    if np.shape(gt_valid) != (g,):
      raise ValueError(f"gt_valid: must have shape ({g},) (one flag per row of gt_boxes), got {np.shape(gt_valid)}")
    gt_valid = jnp.asarray(gt_valid)
  dtype = jnp.result_type(anchors, gt_boxes)
  return anchors.astype(dtype), gt_boxes.astype(dtype), gt_valid


def _unassigned(matched, gt_valid):
  g = gt_valid.shape[0]
  hit = jnp.zeros((g + 1,), bool).at[jnp.where(matched >= 0, matched, g)].set(True)[:g]
  return jnp.sum(gt_valid & ~hit).astype(jnp.int32)


def _best(values, fill):
  """Row-wise max and argmax with a sentinel column (so G = 0 works); the sentinel index is G."""
  ext = jnp.concatenate([values, jnp.full((values.shape[0], 1), fill, values.dtype)], axis=1)
  return jnp.max(ext, axis=1), jnp.argmax(ext, axis=1).astype(jnp.int32)


def _sum_left_to_right(x):
  total = x[..., 0]
  for i in range(1, x.shape[-1]):
    total = total + x[..., i]
  return total


def atss_assign(anchors: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array | None = None, *,
                num_anchors_per_level: Sequence[int], topk: int = 9, official_compat: bool = False
                ) -> Assignment:
  """ATSS: positives by the adaptive IoU threshold ``mean + std`` of each box's nearest anchors.

  Args:
    anchors: ``(A, 4)`` anchors, level after level.
    gt_boxes: ``(G, 4)`` ground-truth boxes (``G >= 0``), padded rows allowed.
    gt_valid: bool ``(G,)``, False for padded rows (default: all valid).
    num_anchors_per_level: the levels' anchor counts, Python ints ``>= 1`` summing to ``A``.
    topk: ``k >= 1`` candidates per level (9 in the paper); a level with fewer anchors gives all of them.
      With ``C = 1`` candidate in all the standard deviation is undefined (NaN) and nothing is positive,
      as in the authors' code.
    official_compat: IoUs in the "+1 pixel" convention of the authors' code.

  Returns:
    An `Assignment`.

  Example:
    >>> anchors, counts = _boxes.make_anchors(16, (4, 8), (8.0, 16.0))
    >>> a = atss_assign(anchors, jnp.array([[2.0, 2.0, 10.0, 10.0]]), num_anchors_per_level=counts)
    >>> [int(i) for i in jnp.flatnonzero(a.matched_gt == 0)], int(a.num_unassigned)
    ([5], 0)
  """
  anchors, gt_boxes, gt_valid = _check_inputs(anchors, gt_boxes, gt_valid)
  topk = _validation.check_int("topk", topk, lower=1)
  if not isinstance(num_anchors_per_level, (tuple, list)) or not num_anchors_per_level:
    raise ValueError(f"num_anchors_per_level: must be a non-empty sequence of ints, got {num_anchors_per_level!r}")
  counts = [_validation.check_int("num_anchors_per_level", n, lower=1) for n in num_anchors_per_level]
  if sum(counts) != anchors.shape[0]:
    raise ValueError(f"num_anchors_per_level: must sum to the number of anchors {anchors.shape[0]}, got "
                     f"{tuple(counts)} (sum {sum(counts)})")
  num_gt = gt_boxes.shape[0]
  ious = _boxes.box_iou(anchors, gt_boxes, official_compat=official_compat)  # (A, G)
  dist = _boxes.center_distance(anchors, gt_boxes)  # (A, G)
  candidates, start = [], 0
  for n in counts:
    _, idx = jax.lax.top_k(-dist[start:start + n].T, min(topk, n))  # (G, k_l), nearest first
    candidates.append(idx + start)
    start += n
  cand = jnp.concatenate(candidates, axis=1)  # (G, C)
  num_cand = cand.shape[1]
  cand_iou = jnp.take_along_axis(ious.T, cand, axis=1)
  dtype = cand_iou.dtype
  mean = _sum_left_to_right(cand_iou) * np.asarray(1.0 / num_cand, dtype)
  dev = cand_iou - mean[:, None]
  if num_cand > 1:
    std = jnp.sqrt(_sum_left_to_right(dev * dev) * np.asarray(1.0 / (num_cand - 1), dtype))
  else:
    std = jnp.full_like(mean, jnp.nan)
  threshold = mean + std
  centres = _boxes.box_centers(anchors)
  cx, cy = centres[cand, 0], centres[cand, 1]  # (G, C)
  margin = jnp.minimum(jnp.minimum(cx - gt_boxes[:, None, 0], cy - gt_boxes[:, None, 1]),
                       jnp.minimum(gt_boxes[:, None, 2] - cx, gt_boxes[:, None, 3] - cy))
  is_pos = (cand_iou >= threshold[:, None]) & (margin > CENTER_MARGIN) & gt_valid[:, None]
  pos = jnp.zeros((num_gt, anchors.shape[0]), bool).at[jnp.arange(num_gt)[:, None], cand].set(is_pos)
  best_val, best = _best(jnp.where(pos.T, ious, -jnp.inf), -jnp.inf)
  positive = best_val > -jnp.inf
  matched = jnp.where(positive, best, NEGATIVE).astype(jnp.int32)
  max_iou, _ = _best(jnp.where(gt_valid[None, :], ious, 0.0), 0.0)
  return Assignment(matched, jnp.where(positive, best_val, max_iou), jnp.where(gt_valid, threshold, jnp.inf),
                    _unassigned(matched, gt_valid))


def iou_assign(anchors: jax.Array, gt_boxes: jax.Array, gt_valid: jax.Array | None = None, *,
               positive_iou: float = 0.5, negative_iou: float = 0.4, low_quality_matches: bool = True,
               official_compat: bool = False) -> Assignment:
  """RetinaNet's IoU-threshold assignment (module docstring), with low-quality matches by default.

  Args:
    anchors: ``(A, 4)`` anchors.
    gt_boxes: ``(G, 4)`` ground-truth boxes (``G >= 0``), padded rows allowed.
    gt_valid: bool ``(G,)``, False for padded rows (default: all valid).
    positive_iou: IoU at or above which an anchor is positive, in ``(0, 1]`` (0.5).
    negative_iou: IoU below which an anchor is negative, in ``[0, positive_iou]`` (0.4); anchors in
      between are ignored (``matched_gt == -2``).
    low_quality_matches: make each ground truth's best anchors positive (the Matcher's rule).
    official_compat: IoUs in the "+1 pixel" convention.

  Returns:
    An `Assignment` (``threshold`` is ``positive_iou`` for every valid ground truth).

  Example:
    >>> anchors = jnp.array([[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 8.0, 4.0], [1.0, 0.0, 5.0, 4.0]])
    >>> a = iou_assign(anchors, jnp.array([[0.0, 0.0, 4.0, 4.0]]))
    >>> a.matched_gt.tolist()  # IoU 1, 0 and 0.6
    [0, -1, 0]
  """
  anchors, gt_boxes, gt_valid = _check_inputs(anchors, gt_boxes, gt_valid)
  positive_iou = _validation.check_real("positive_iou", positive_iou, lower=0.0, upper=1.0, lower_open=True)
  negative_iou = _validation.check_real("negative_iou", negative_iou, lower=0.0, upper=positive_iou)
  ious = _boxes.box_iou(anchors, gt_boxes, official_compat=official_compat)  # (A, G)
  masked = jnp.where(gt_valid[None, :], ious, -1.0)
  best_val, best = _best(masked, -1.0)
  matched = jnp.where(best_val >= positive_iou, best, jnp.where(best_val < negative_iou, NEGATIVE, IGNORE))
  if low_quality_matches:
    gt_best = jnp.max(jnp.concatenate([masked, jnp.full((1, masked.shape[1]), -1.0, masked.dtype)]), axis=0)
    low = (masked == gt_best[None, :]) & gt_valid[None, :] & (gt_best[None, :] > 0)
    matched = jnp.where(jnp.any(low, axis=1), best, matched)
  matched = matched.astype(jnp.int32)
  return Assignment(matched, jnp.maximum(best_val, 0.0),
                    jnp.where(gt_valid, jnp.asarray(positive_iou, ious.dtype), jnp.inf), _unassigned(matched, gt_valid))
