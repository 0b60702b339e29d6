"""Box utilities and the ATSS losses against hand-worked values."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import detection


def test_iou_hand_worked_both_conventions():
  a = jnp.array([[0.0, 0.0, 4.0, 4.0]])
  b = jnp.array([[2.0, 2.0, 6.0, 6.0], [10.0, 10.0, 12.0, 12.0]])
  np.testing.assert_allclose(detection.box_iou(a, b), [[4 / 28, 0.0]], rtol=1e-6)
  # +1 pixel: areas 25 and 25, intersection 3 x 3 = 9: 9 / 41.
  np.testing.assert_allclose(detection.box_iou(a, b, official_compat=True), [[9 / 41, 0.0]], rtol=1e-6)
  np.testing.assert_allclose(detection.box_area(b), [16.0, 4.0])
  np.testing.assert_allclose(detection.box_area(b, official_compat=True), [25.0, 9.0])
  assert float(detection.box_iou(jnp.zeros((1, 4)), jnp.zeros((1, 4)))[0, 0]) == 0.0  # empty boxes: 0, not 0/0


def test_giou_hand_worked():
  a = jnp.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
  b = jnp.array([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 2.0, 2.0], [2.0, 2.0, 3.0, 3.0]])
  # overlap 2 / union 6 and enclosing 6; identical; disjoint with enclosing 9, union 2.
  np.testing.assert_allclose(detection.generalized_box_iou(a, b), [1 / 3, 1.0, -7 / 9], rtol=1e-6)
  inverted = detection.generalized_box_iou(jnp.array([2.0, 0.0, 0.0, 2.0]), jnp.array([0.0, 0.0, 2.0, 2.0]))
  # collapsed to [2, 0, 2, 2] (zero width): IoU 0, union 4 = enclosing area 4, so GIoU 0 (not -1).
  assert float(inverted) == 0.0


def test_centre_distance_and_centres():
  a = jnp.array([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 5.0]])
  np.testing.assert_allclose(detection.box_centers(a), [[1.0, 1.0], [2.0, 3.0]])
  np.testing.assert_allclose(detection.center_distance(a, a), [[0.0, math.sqrt(5)], [math.sqrt(5), 0.0]], rtol=1e-6)


@pytest.mark.parametrize("compat", [False, True])
def test_encode_decode_round_trip_and_values(compat):
  rng = np.random.default_rng(0)
  anchors = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(0, 50, (20, 2)) + 60], 1).astype(np.float32)
  anchors = np.concatenate([anchors[:, :2], anchors[:, :2] + rng.uniform(4, 40, (20, 2))], 1).astype(np.float32)
  boxes = anchors + rng.uniform(-3, 3, (20, 4)).astype(np.float32)
  deltas = detection.encode_boxes(boxes, anchors, official_compat=compat)
  np.testing.assert_allclose(detection.decode_boxes(deltas, anchors, official_compat=compat), boxes, atol=1e-4)
  # A box of twice the anchor's width, same centre: dw = 5 log 2; +1 pixel: widths 5 and 9 for [0, 4], [-2, 6].
  d = detection.encode_boxes(jnp.array([-2.0, 0.0, 6.0, 4.0]), jnp.array([0.0, 0.0, 4.0, 4.0]), official_compat=compat)
  np.testing.assert_allclose(d, [0.0, 0.0, 5 * math.log(9 / 5 if compat else 2.0), 0.0], atol=1e-6)


def test_decode_clips_the_scale():
  out = detection.decode_boxes(jnp.array([0.0, 0.0, 1e4, 0.0]), jnp.array([0.0, 0.0, 2.0, 2.0]))
  np.testing.assert_allclose(out[2] - out[0], 2.0 * 1000 / 16, rtol=1e-5)


def test_make_anchors_layout():
  anchors, counts = detection.make_anchors(8, (4,), (6.0,))
  assert counts == (4,)
  np.testing.assert_allclose(anchors, [[-1, -1, 5, 5], [3, -1, 9, 5], [-1, 3, 5, 9], [3, 3, 9, 9]])


def test_focal_loss_hand_worked():
  x = jnp.array([0.0, 0.0, math.log(3.0)])  # p = 0.5, 0.5, 0.75
  y = jnp.array([1.0, 0.0, 1.0])
  want = [0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2), 0.25 * 0.0625 * -math.log(0.75)]
  np.testing.assert_allclose(detection.sigmoid_focal_loss(x, y), want, rtol=1e-6)
  bce = detection.sigmoid_focal_loss(x, y, alpha=0.5, gamma=0.0) * 2
  np.testing.assert_allclose(bce, [math.log(2), math.log(2), -math.log(0.75)], rtol=1e-6)
  assert np.isfinite(detection.sigmoid_focal_loss(jnp.array([200.0, -200.0]), jnp.array([0.0, 1.0]))).all()


def test_centerness_hand_worked():
  pts = jnp.array([[2.0, 2.0], [1.0, 3.0], [5.0, 2.0]])
  boxes = jnp.tile(jnp.array([[0.0, 0.0, 4.0, 4.0]]), (3, 1))
  np.testing.assert_allclose(detection.centerness_target(pts, boxes), [1.0, math.sqrt(1 / 3 * 1 / 3), 0.0], rtol=1e-6)


def test_atss_loss_hand_worked():
  # Two anchors, one class. Anchor 0 positive on the box it equals (deltas 0: GIoU 1, centerness 1), anchor 1
  # negative. Logits 0 everywhere: cls = (0.25 * 0.25 + 0.75 * 0.25) log 2 / 1; centerness BCE(0, 1) = log 2.
  anchors = jnp.array([[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 8.0, 4.0]])
  gt = jnp.array([[[0.0, 0.0, 4.0, 4.0]]])
  loss, aux = detection.atss_loss(jnp.zeros((1, 2, 1)), jnp.zeros((1, 2, 4)), jnp.zeros((1, 2)), anchors,
                                  jnp.array([[0, -1]]), gt, jnp.array([[0]]))
  np.testing.assert_allclose(aux["cls"], 0.25 * math.log(2), rtol=1e-6)
  np.testing.assert_allclose(aux["reg"], 0.0, atol=1e-7)
  np.testing.assert_allclose(aux["centerness"], math.log(2), rtol=1e-6)
  np.testing.assert_allclose(loss, 1.25 * math.log(2), rtol=1e-6)
  # Shift the prediction by dx = 2.5 (half a width: IoU 2/6, GIoU 1/3, weight 1): reg = 2/3, times lambda = 2.
  loss2, aux2 = detection.atss_loss(jnp.zeros((1, 2, 1)), jnp.array([[[5.0, 0, 0, 0], [0, 0, 0, 0]]]),
                                    jnp.zeros((1, 2)), anchors, jnp.array([[0, -1]]), gt, jnp.array([[0]]))
  np.testing.assert_allclose(aux2["reg"], 2 / 3, rtol=1e-5)
  np.testing.assert_allclose(loss2 - loss, 2 * 2 / 3, rtol=1e-5)
  # Ignored anchors (-2) enter no term; no positive: cls normalised by 1, reg and centerness 0.
  loss3, aux3 = detection.atss_loss(jnp.zeros((1, 2, 1)), jnp.zeros((1, 2, 4)), jnp.zeros((1, 2)), anchors,
                                    jnp.array([[-2, -1]]), gt, jnp.array([[0]]))
  np.testing.assert_allclose(loss3, 0.75 * 0.25 * math.log(2), rtol=1e-6)
  assert int(aux3["num_pos"]) == 0 and float(aux3["reg"]) == 0.0


def test_atss_loss_centerness_weights_and_normaliser():
  # Two positives of one box [0, 0, 8, 8]: centres (4, 4) (c = 1) and (2, 4) (c = sqrt(2/6) = 1/sqrt(3)).
  anchors = jnp.array([[2.0, 2.0, 6.0, 6.0], [0.0, 2.0, 4.0, 6.0]])
  gt = jnp.array([[[0.0, 0.0, 8.0, 8.0]]])
  deltas = detection.encode_boxes(jnp.array([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 4.0]]), anchors)[None]
  _, aux = detection.atss_loss(jnp.zeros((1, 2, 2)), deltas, jnp.zeros((1, 2)), anchors, jnp.array([[0, 0]]), gt,
                               jnp.array([[1]]))
  c = np.array([1.0, 1 / math.sqrt(3)])
  np.testing.assert_allclose(aux["reg"], (c[0] * 0 + c[1] * (1 - 0.5)) / c.sum(), rtol=1e-5)  # IoU 32/64, C = U
  bce = [math.log(2) - 0.5 * 0 for _ in c]  # BCE(0, c) = log 2 for any c
  np.testing.assert_allclose(aux["centerness"], sum(bce) / 2, rtol=1e-6)


def test_atss_loss_nan_under_jit_for_bad_labels_and_gradients_finite():
  anchors = jnp.array([[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 8.0, 4.0]])
  f = jax.jit(lambda y: detection.atss_loss(jnp.zeros((1, 2, 2)), jnp.zeros((1, 2, 4)), jnp.zeros((1, 2)), anchors,
                                            jnp.array([[0, -1]]), jnp.array([[[0.0, 0.0, 4.0, 4.0]]]), y)[0])
  assert np.isnan(f(jnp.array([[2]]))) and np.isfinite(f(jnp.array([[1]])))
  g = jax.grad(lambda d: detection.atss_loss(jnp.zeros((1, 2, 2)), d, jnp.zeros((1, 2)), anchors, jnp.array([[0, -1]]),
                                             jnp.array([[[0.0, 0.0, 4.0, 4.0]]]), jnp.array([[1]]))[0])(
                                                 jnp.ones((1, 2, 4)))
  assert np.isfinite(g).all() and not np.any(g[0, 1])
  with pytest.raises(ValueError, match="matched_gt"):
    detection.atss_loss(jnp.zeros((1, 2, 2)), jnp.zeros((1, 2, 4)), jnp.zeros((1, 2)), anchors, jnp.array([[1, -1]]),
                        jnp.array([[[0.0, 0.0, 4.0, 4.0]]]), jnp.array([[1]]))
