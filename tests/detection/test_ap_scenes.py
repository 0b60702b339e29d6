"""COCO-style AP against hand-worked cases; the synthetic scenes generator."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdyn import detection

BOX = np.array([[0.0, 0.0, 10.0, 10.0]])


def _ap(preds, gts, num_classes=1):
  pb, ps, pl = zip(*preds)
  gb, gl = zip(*gts)
  return detection.coco_average_precision(list(pb), list(ps), list(pl), list(gb), list(gl), num_classes=num_classes)


def _img(boxes, scores=None, labels=None):
  boxes = np.asarray(boxes, float).reshape(-1, 4)
  n = len(boxes)
  return (boxes, np.asarray(scores if scores is not None else np.ones(n)),
          np.asarray(labels if labels is not None else np.zeros(n, int)))


def test_perfect_detections():
  r = _ap([_img(BOX, [0.9])], [(BOX, np.array([0]))])
  assert r["ap"] == 1.0 and r["ap50"] == 1.0 and r["ap75"] == 1.0


def test_shifted_detection_counts_thresholds_up_to_its_iou():
  # Shifted by 2: IoU 80 / 120 = 2/3 >= 0.50, 0.55, 0.60, 0.65 only: AP = 4/10, AP50 = 1, AP75 = 0.
  r = _ap([_img([[2.0, 0.0, 12.0, 10.0]])], [(BOX, np.array([0]))])
  np.testing.assert_allclose(r["ap_per_threshold"], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
  assert r["ap"] == pytest.approx(0.4) and r["ap50"] == 1.0 and r["ap75"] == 0.0


def test_duplicate_detection_is_a_false_positive():
  # Two boxes; detections: box 1 (0.9), a duplicate of box 1 (0.8), box 2 (0.7): TP, FP, TP.
  # Recall 1/2, 1/2, 1; precision 1, 1/2, 2/3 -> envelope 1, 2/3, 2/3. Recall points 0..0.50 (51 of them)
  # read precision 1, points 0.51..1 (50) read 2/3: AP = (51 + 50 * 2/3) / 101 at every threshold.
  b2 = np.array([[20.0, 20.0, 30.0, 30.0]])
  r = _ap([_img(np.concatenate([BOX, BOX, b2]), [0.9, 0.8, 0.7])], [(np.concatenate([BOX, b2]), np.array([0, 0]))])
  assert r["ap"] == pytest.approx((51 + 50 * 2 / 3) / 101)
  # The duplicate scored below both true detections costs nothing.
  r2 = _ap([_img(np.concatenate([BOX, BOX, b2]), [0.9, 0.1, 0.7])], [(np.concatenate([BOX, b2]), np.array([0, 0]))])
  assert r2["ap"] == 1.0


def test_missed_box_wrong_class_and_classes_without_ground_truth():
  # Class 0: one of two boxes found (AP = 51/101: recall points 0..0.5). Class 1 has no ground truth: left out.
  # A class-1 detection on a class-0 box does not match it.
  b2 = np.array([[20.0, 20.0, 30.0, 30.0]])
  r = _ap([_img(np.concatenate([BOX, b2]), [0.9, 0.8], [0, 1])], [(np.concatenate([BOX, b2]), np.array([0, 0]))],
          num_classes=2)
  assert r["ap"] == pytest.approx(51 / 101)
  assert np.isnan(r["ap_per_class"][1])


def test_images_are_pooled_by_score():
  # Image 1: a false positive at 0.95; image 2: a true positive at 0.5. Pooled: FP, TP -> precision 1/2 at recall 1.
  far = np.array([[50.0, 50.0, 60.0, 60.0]])
  r = _ap([_img(far, [0.95]), _img(BOX, [0.5])], [(np.zeros((0, 4)), np.zeros(0, int)), (BOX, np.array([0]))])
  assert r["ap"] == pytest.approx(0.5)
  empty = _ap([_img(np.zeros((0, 4)), np.zeros(0))], [(BOX, np.array([0]))])
  assert empty["ap"] == 0.0


def test_ap_bad_inputs():
  with pytest.raises(ValueError, match="gt_boxes"):
    _ap([_img(BOX)], [(np.zeros((0, 4)), np.zeros(0, int))])
  with pytest.raises(ValueError, match="pred_labels"):
    _ap([_img(BOX, [0.9], [3])], [(BOX, np.array([0]))])
  with pytest.raises(ValueError, match="pred_boxes"):
    _ap([_img([[0.0, np.nan, 1.0, 1.0]])], [(BOX, np.array([0]))])


def test_scenes_are_deterministic_and_boxes_are_tight():
  a = detection.synthetic_scenes(3, 8, image_size=48, max_objects=4, min_size=6, max_size=20, noise=0.0)
  b = detection.synthetic_scenes(3, 8, image_size=48, max_objects=4, min_size=6, max_size=20, noise=0.0)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert a.valid.any(axis=1).all() and set(np.unique(a.labels[a.valid])) <= {0, 1, 2}
  for img, boxes, valid in zip(a.images[..., 0], a.boxes, a.valid):
    covered = np.zeros(img.shape, bool)
    for x1, y1, x2, y2 in boxes[valid].astype(int):
      patch = img[y1:y2, x1:x2] > 0
      # tight: every edge row / column of the box holds a painted pixel
      assert patch[0].any() and patch[-1].any() and patch[:, 0].any() and patch[:, -1].any()
      assert 6 - 1 <= x2 - x1 <= 20 and 6 - 1 <= y2 - y1 <= 20
      covered[y1:y2, x1:x2] = True
    assert not (img[~covered] > 0).any()  # nothing painted outside the boxes (no noise here)
  assert not np.array_equal(a.images, detection.synthetic_scenes(4, 8, image_size=48, max_objects=4, min_size=6,
                                                                 max_size=20, noise=0.0).images)
  with pytest.raises(ValueError, match="max_size"):
    detection.synthetic_scenes(0, 2, image_size=16, min_size=8, max_size=20)
