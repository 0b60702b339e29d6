"""COCO-style average precision for boxes, in NumPy (host side).

Follows pycocotools' ``COCOeval`` for ``iouType="bbox"`` with no crowd boxes and one area range (all):

- per image and class, detections sorted by score (stable) and cut to ``max_detections``; for each IoU
  threshold ``t``, each detection in turn is matched to the unmatched ground truth of its class with the
  highest IoU, if that IoU is ``>= t`` (an equal IoU later in the list wins, as pycocotools);
  a matched detection is a true positive, any other a false positive;
- per class and threshold, all images' detections are sorted by score (stable, images in order),
  precision is made non-increasing from the right, and read at the 101 recall points
  ``0, 0.01, ..., 1`` (the first detection whose recall reaches the point; 0 past the last recall):

  .. math::  \\mathrm{AP}_t = \\frac{1}{101} \\sum_{r \\in \\{0, 0.01, \\ldots, 1\\}}
             \\max_{r' \\ge r} p(r')

- AP is the mean over the IoU thresholds ``0.50, 0.55, ..., 0.95`` and over the classes that have at
  least one ground truth (a class without ground truths is left out, as pycocotools' -1); AP50 and AP75
  use one threshold. IoUs are in the continuous convention (pycocotools' ``w = x2 - x1``).

Lin et al., "Microsoft COCO: Common Objects in Context", 2014, https://arxiv.org/abs/1405.0312;
https://github.com/cocodataset/cocoapi (``PythonAPI/pycocotools/cocoeval.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxdyn import _validation

__all__ = ["coco_average_precision"]

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)


def _iou(a, b):
  lt = np.maximum(a[:, None, :2], b[None, :, :2])
  rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
  wh = np.clip(rb - lt, 0.0, None)
  inter = wh[..., 0] * wh[..., 1]
  area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
  area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  union = area_a[:, None] + area_b[None, :] - inter
  return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _as_images(name, values, n, per_row, dtype_kind):
  if not isinstance(values, (Sequence, np.ndarray)) or isinstance(values, (str, bytes)):
    raise TypeError(f"{name}: must be a sequence with one array per image, got {type(values).__name__}")
  if len(values) != n:
    raise ValueError(f"{name}: must have one entry per image ({n}), got {len(values)}")
  out = []
  for i, v in enumerate(values):
    arr = np.asarray(v)
    if arr.size == 0:
      arr = arr.reshape((0,) + per_row)
    if arr.shape[1:] != per_row or arr.ndim != 1 + len(per_row):
      raise ValueError(f"{name}: image {i} must have shape (n,{' ' + str(per_row[0]) if per_row else ''}), "
                       f"got {arr.shape}")
    if dtype_kind == "f":
      if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) or arr.dtype == bool:
        raise TypeError(f"{name}: image {i} must be real numbers, got dtype {arr.dtype}")
      _validation.check_finite(name, arr.astype(np.float64))
      arr = arr.astype(np.float64)
    else:
      if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: image {i} must be integer class ids, got dtype {arr.dtype}")
    out.append(arr)
  return out


def _evaluate_image(dt, scores, gt, max_detections):
  """``(scores, tp)`` of one image and class: ``tp`` is ``(T, D)`` bool over the IoU thresholds."""
  order = np.argsort(-scores, kind="mergesort")[:max_detections]
  dt, scores = dt[order], scores[order]
  ious = _iou(dt, gt) if len(dt) and len(gt) else np.zeros((len(dt), len(gt)))
  tp = np.zeros((len(IOU_THRESHOLDS), len(dt)), bool)
  for ti, t in enumerate(IOU_THRESHOLDS):
    taken = np.zeros(len(gt), bool)
    for di in range(len(dt)):
      best, m = min(t, 1 - 1e-10), -1
      for gi in range(len(gt)):
        if taken[gi] or ious[di, gi] < best:
          continue
        best, m = ious[di, gi], gi
      if m >= 0:
        taken[m] = True
        tp[ti, di] = True
  return scores, tp


def _ap_from(scores, tp, num_gt):
  """AP at each threshold from the pooled detections of one class: ``(T,)``."""
  order = np.argsort(-scores, kind="mergesort")
  tp = tp[:, order]
  tps = np.cumsum(tp, axis=1, dtype=np.float64)
  fps = np.cumsum(~tp, axis=1, dtype=np.float64)
  ap = np.zeros(len(IOU_THRESHOLDS))
  for ti in range(len(IOU_THRESHOLDS)):
    if not tp.shape[1]:
      continue
    rc = tps[ti] / num_gt
    pr = (tps[ti] / (fps[ti] + tps[ti])).tolist()
    for i in range(len(pr) - 1, 0, -1):
      pr[i - 1] = max(pr[i - 1], pr[i])
    idx = np.searchsorted(rc, RECALL_POINTS, side="left")
    q = [pr[i] if i < len(pr) else 0.0 for i in idx]
    ap[ti] = float(np.mean(q))
  return ap


def coco_average_precision(pred_boxes: Sequence[Any], pred_scores: Sequence[Any], pred_labels: Sequence[Any],
                           gt_boxes: Sequence[Any], gt_labels: Sequence[Any], *, num_classes: int,
                           max_detections: int = 100) -> dict[str, Any]:
  """COCO box AP (module docstring) of detections against ground truths, image by image.

  Args:
    pred_boxes: per image an ``(n_i, 4)`` array of detected boxes ``(x1, y1, x2, y2)`` (each argument a
      sequence over images, or one array whose first axis is the image).
    pred_scores: per image ``(n_i,)`` scores (higher first).
    pred_labels: per image ``(n_i,)`` integer class ids in ``[0, num_classes)``.
    gt_boxes: per image an ``(m_i, 4)`` array of ground-truth boxes (no padding).
    gt_labels: per image ``(m_i,)`` integer class ids in ``[0, num_classes)``.
    num_classes: ``K >= 1``.
    max_detections: detections kept per image and class, by score (100, COCO's ``maxDets``).

  Returns:
    A dict: ``"ap"`` (mean over 0.50:0.95 and the classes with ground truths), ``"ap50"``, ``"ap75"``,
    ``"ap_per_threshold"`` (``(10,)``) and ``"ap_per_class"`` (``(K,)``, mean over thresholds; NaN for
    a class without ground truths). At least one ground truth is required (else AP is undefined).

  Example:
    >>> box = np.array([[0.0, 0.0, 10.0, 10.0]])
    >>> r = coco_average_precision([box], [np.array([0.9])], [np.array([0])], [box], [np.array([0])],
    ...                            num_classes=1)
    >>> r["ap"], r["ap50"]
    (1.0, 1.0)
  """
  num_classes = _validation.check_int("num_classes", num_classes, lower=1)
  max_detections = _validation.check_int("max_detections", max_detections, lower=1)
  if not isinstance(gt_boxes, (Sequence, np.ndarray)) or isinstance(gt_boxes, (str, bytes)):
    raise TypeError(f"gt_boxes: must be a sequence with one array per image, got {type(gt_boxes).__name__}")
  n = len(gt_boxes)
  if n == 0:
    raise ValueError("gt_boxes: must hold at least one image, got 0")
  gb = _as_images("gt_boxes", gt_boxes, n, (4,), "f")
  gl = _as_images("gt_labels", gt_labels, n, (), "i")
  pb = _as_images("pred_boxes", pred_boxes, n, (4,), "f")
  ps = _as_images("pred_scores", pred_scores, n, (), "f")
  pl = _as_images("pred_labels", pred_labels, n, (), "i")
  for i in range(n):
    if len(gl[i]) != len(gb[i]):
      raise ValueError(f"gt_labels: image {i} must have one label per box ({len(gb[i])}), got {len(gl[i])}")
    for name, v in (("pred_scores", ps[i]), ("pred_labels", pl[i])):
      if len(v) != len(pb[i]):
        raise ValueError(f"{name}: image {i} must have one entry per box of pred_boxes ({len(pb[i])}), got {len(v)}")
  for name, labels in (("gt_labels", gl), ("pred_labels", pl)):
    for lab in labels:
      _validation.check_integer_labels(name, lab, num_classes)
  if sum(len(g) for g in gb) == 0:
    raise ValueError("gt_boxes: must hold at least one ground-truth box (AP is undefined without one)")
  per_class = np.full((num_classes, len(IOU_THRESHOLDS)), np.nan)
  for k in range(num_classes):
    num_gt = sum(int(np.sum(lab == k)) for lab in gl)
    if num_gt == 0:
      continue
    scores, tps = [], []
    for i in range(n):
      s, tp = _evaluate_image(pb[i][pl[i] == k], ps[i][pl[i] == k], gb[i][gl[i] == k], max_detections)
      scores.append(s)
      tps.append(tp)
    per_class[k] = _ap_from(np.concatenate(scores), np.concatenate(tps, axis=1), num_gt)
  per_threshold = np.nanmean(per_class, axis=0)
  return {"ap": float(np.mean(per_threshold)), "ap50": float(per_threshold[0]), "ap75": float(per_threshold[5]),
          "ap_per_threshold": per_threshold, "ap_per_class": np.mean(per_class, axis=1)}
