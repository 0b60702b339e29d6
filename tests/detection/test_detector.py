"""TinyDetector: output layout against its anchors; the claim runner's inference step."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.techniques.detection.scenes import _nms, postprocess
from jaxdyn import detection
from jaxdyn.models import TinyDetector


def test_outputs_follow_the_anchor_order():
  det = TinyDetector(1, 3, width=4, image_size=32, rngs=nnx.Rngs(0))
  anchors, counts = det.anchors()
  assert counts == (64, 16) and anchors.shape == (80, 4)
  np.testing.assert_allclose(anchors[0], [-6, -6, 10, 10])  # stride 4, side 16, centre (2, 2)
  np.testing.assert_allclose(anchors[64], [-12, -12, 20, 20])  # stride 8, side 32, centre (4, 4)
  x = jnp.zeros((1, 32, 32, 1)).at[0, 0:4, 0:4, 0].set(1.0)  # a blob in the top-left corner
  cls, box, ctr = det(x)
  assert cls.shape == (1, 80, 3) and box.shape == (1, 80, 4) and ctr.shape == (1, 80)
  base = det(jnp.zeros((1, 32, 32, 1)))[0]
  changed = np.flatnonzero(np.abs(np.asarray(cls - base)).sum(-1)[0] > 0)
  # The blob is seen by the level-0 cells near the corner only (receptive field of 3 stride-2 convs + 2 convs).
  assert changed.min() == 0 and (changed[changed < 64] % 8).max() <= 3
  with pytest.raises(ValueError, match="x"):
    det(jnp.zeros((1, 16, 16, 1)))


def test_nms_and_postprocess_hand_worked():
  boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], float)  # IoU(0, 1) = 90/110
  assert _nms(boxes, np.array([0.9, 0.8, 0.7]), 0.6).tolist() == [0, 2]
  assert _nms(boxes, np.array([0.9, 0.8, 0.7]), 0.9).tolist() == [0, 1, 2]
  anchors = jnp.array([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])
  logit = np.log(0.64 / 0.36)  # sigmoid = 0.64; centerness logit 0: score sqrt(0.64 * 0.5)
  b, s, lab = postprocess(jnp.array([[logit, -9.0], [-9.0, logit]]), jnp.zeros((2, 4)), jnp.zeros(2), anchors)
  np.testing.assert_allclose(s, [np.sqrt(0.32)] * 2, rtol=1e-5)  # different classes: no suppression
  assert sorted(lab.tolist()) == [0, 1]
  np.testing.assert_allclose(np.sort(b[:, 0]), [0.0, 1.0], atol=1e-5)
  r = detection.coco_average_precision([b], [s], [lab], [np.asarray(anchors)], [np.array([0, 1])], num_classes=2)
  assert r["ap"] == 1.0
