"""ATSS and IoU-threshold assignment: bit for bit against a loop port of the authors' logic, hand-worked cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import detection

F32 = np.float32


# --- a NumPy port of sfzhang15/ATSS loss.py (POSITIVE_TYPE == 'ATSS'), loops, written from the paper and code ---

def _ref_iou(anchors, gts, compat):
  one = F32(1.0 if compat else 0.0)
  out = np.zeros((len(anchors), len(gts)), F32)
  for i, a in enumerate(anchors):
    for j, g in enumerate(gts):
      iw = max(min(a[2], g[2]) - max(a[0], g[0]) + one, F32(0))
      ih = max(min(a[3], g[3]) - max(a[1], g[1]) + one, F32(0))
      inter = iw * ih
      union = (a[2] - a[0] + one) * (a[3] - a[1] + one) + (g[2] - g[0] + one) * (g[3] - g[1] + one) - inter
      out[i, j] = inter / max(union, np.finfo(F32).tiny)
  return out


def _centre(b):
  return (b[0] + b[2]) / F32(2), (b[1] + b[3]) / F32(2)


def ref_atss(anchors, gts, counts, k=9, compat=False):
  anchors, gts = np.asarray(anchors, F32), np.asarray(gts, F32)
  num_a, num_g = len(anchors), len(gts)
  ious = _ref_iou(anchors, gts, compat)
  pos = np.zeros((num_a, num_g), bool)
  thresholds = []
  for g in range(num_g):
    gx, gy = _centre(gts[g])
    cand, start = [], 0
    for n in counts:  # the k nearest anchor centres on each level (stable: ties to the lower index)
      dist = []
      for a in range(start, start + n):
        ax, ay = _centre(anchors[a])
        dx, dy = ax - gx, ay - gy
        dist.append(np.sqrt(dx * dx + dy * dy))
      cand += [start + int(i) for i in np.argsort(np.asarray(dist, F32), kind="stable")[:min(k, n)]]
      start += n
    vals = [ious[a, g] for a in cand]
    total = vals[0]
    for v in vals[1:]:
      total = total + v
    mean = total * F32(1.0 / len(vals))
    sq = (vals[0] - mean) * (vals[0] - mean)
    for v in vals[1:]:
      sq = sq + (v - mean) * (v - mean)
    std = np.sqrt(sq * F32(1.0 / (len(vals) - 1))) if len(vals) > 1 else F32(np.nan)
    t = mean + std
    thresholds.append(t)
    for a, v in zip(cand, vals):
      cx, cy = _centre(anchors[a])
      margin = min(cx - gts[g, 0], cy - gts[g, 1], gts[g, 2] - cx, gts[g, 3] - cy)
      if v >= t and margin > F32(0.01):
        pos[a, g] = True
  matched = np.full(num_a, -1, np.int32)
  for a in range(num_a):  # an anchor positive for several boxes goes to the highest IoU (first on ties)
    best = -np.inf
    for g in range(num_g):
      if pos[a, g] and ious[a, g] > best:
        best, matched[a] = ious[a, g], g
  unassigned = sum(1 for g in range(num_g) if not (matched == g).any())
  return matched, np.asarray(thresholds, F32), unassigned


def _random_case(seed, integer):
  rng = np.random.default_rng(seed)
  size = 48
  anchors, counts = detection.make_anchors(size, (4, 8, 16), (12.0, 24.0, 48.0))
  n = int(rng.integers(1, 8))
  xy = rng.uniform(-4, size, (n, 2))
  wh = rng.uniform(1, 30, (n, 2))
  gts = np.concatenate([xy, xy + wh], 1)
  if integer:
    gts = np.round(gts)
    gts[:, 2:] = np.maximum(gts[:, 2:], gts[:, :2] + 1)
  if n > 2:  # a duplicate (ties in IoU) and a box sharing another's centre (ties in distance)
    gts[1] = gts[0]
    c = (gts[2, :2] + gts[2, 2:]) / 2
    gts[n - 1] = np.concatenate([c - 3, c + 3])
  return np.asarray(anchors), counts, gts.astype(F32)


@pytest.mark.parametrize("compat", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_atss_matches_the_loop_port_bit_for_bit(seed, compat):
  anchors, counts, gts = _random_case(seed, integer=seed % 2 == 0)
  want_matched, want_thr, want_unassigned = ref_atss(anchors, gts, counts, compat=compat)
  got = detection.atss_assign(anchors, gts, num_anchors_per_level=counts, official_compat=compat)
  np.testing.assert_array_equal(np.asarray(got.matched_gt), want_matched)
  np.testing.assert_array_equal(np.asarray(got.threshold), want_thr)  # bit for bit (op by op)
  jitted = jax.jit(lambda a, g: detection.atss_assign(a, g, num_anchors_per_level=counts, official_compat=compat))(
      anchors, gts)
  np.testing.assert_array_equal(np.asarray(jitted.matched_gt), want_matched)
  np.testing.assert_array_max_ulp(np.asarray(jitted.threshold), want_thr, maxulp=1)  # XLA:CPU may fuse into FMAs
  assert int(got.num_unassigned) == want_unassigned
  assert (want_matched >= 0).any()


def test_atss_under_jit_equals_eager_and_padding_is_inert():
  anchors, counts, gts = _random_case(3, integer=True)
  padded = np.concatenate([gts, np.array([[1, 1, 30, 30], [0, 0, 0, 0]], F32)])
  valid = np.arange(len(padded)) < len(gts)
  f = jax.jit(lambda a, g, v: detection.atss_assign(a, g, v, num_anchors_per_level=counts))
  got = f(anchors, padded, valid)
  ref = detection.atss_assign(anchors, gts, num_anchors_per_level=counts)
  np.testing.assert_array_equal(got.matched_gt, ref.matched_gt)
  np.testing.assert_array_max_ulp(np.asarray(got.threshold[:len(gts)]), np.asarray(ref.threshold), maxulp=1)
  assert np.isinf(got.threshold[len(gts):]).all() and int(got.num_unassigned) == int(ref.num_unassigned)


def test_atss_hand_worked_single_box():
  # 16x16 image, strides 4 and 8 (sizes 8, 16). Box [2, 2, 10, 10] (centre 6, 6): level-0 candidates are
  # the centre anchor (IoU 1), 4 edge neighbours (IoU 32/96 = 1/3) and 4 corners (16/112 = 1/7); level 1
  # has 4 anchors, IoUs 64/256, 48/272 (twice) and 36/284. Mean + std of those 13 is ~0.52: only IoU 1 passes.
  anchors, counts = detection.make_anchors(16, (4, 8), (8.0, 16.0))
  a = detection.atss_assign(anchors, jnp.array([[2.0, 2.0, 10.0, 10.0]]), num_anchors_per_level=counts)
  vals = np.array([1.0] + [1 / 3] * 4 + [1 / 7] * 4 + [0.25, 48 / 272, 48 / 272, 36 / 284])
  np.testing.assert_allclose(a.threshold[0], vals.mean() + vals.std(ddof=1), rtol=1e-6)
  assert np.flatnonzero(np.asarray(a.matched_gt) == 0).tolist() == [5]
  np.testing.assert_allclose(a.iou[5], 1.0)


def test_atss_counts_boxes_left_without_positives():
  anchors, counts = detection.make_anchors(16, (4, 8), (8.0, 16.0))
  gts = jnp.array([[2.0, 2.0, 10.0, 10.0],  # wins its centre anchor
                   [2.0, 2.0, 10.0, 10.0],  # identical: loses every tie to the lower index
                   [5.995, 5.995, 6.005, 6.005]])  # centre at an anchor centre, but 0.005 < 0.01 inside
  a = detection.atss_assign(anchors, gts, num_anchors_per_level=counts)
  assert int(a.num_unassigned) == 2
  assert set(np.asarray(a.matched_gt).tolist()) == {-1, 0}


def test_atss_single_candidate_has_no_positive_and_zero_boxes_are_all_negative():
  anchors = jnp.array([[0.0, 0.0, 4.0, 4.0]])
  a = detection.atss_assign(anchors, jnp.array([[0.0, 0.0, 4.0, 4.0]]), num_anchors_per_level=(1,))
  assert np.isnan(a.threshold[0]) and int(a.matched_gt[0]) == -1 and int(a.num_unassigned) == 1
  e = detection.atss_assign(anchors, jnp.zeros((0, 4)), num_anchors_per_level=(1,))
  assert e.matched_gt.tolist() == [-1] and int(e.num_unassigned) == 0 and float(e.iou[0]) == 0.0


def test_iou_assign_thresholds_and_ignore_band():
  # Anchors shifted right by 0, 1, 1.5, 2, 4 from a 4x4 box: IoU 1, 3/5, 5/11, 1/3, 0.
  anchors = jnp.array([[s, 0.0, s + 4.0, 4.0] for s in (0.0, 1.0, 1.5, 2.0, 4.0)])
  a = detection.iou_assign(anchors, jnp.array([[0.0, 0.0, 4.0, 4.0]]))
  assert a.matched_gt.tolist() == [0, 0, -2, -1, -1]
  np.testing.assert_allclose(a.iou, [1, 3 / 5, 5 / 11, 1 / 3, 0], rtol=1e-6)


def test_iou_assign_low_quality_matches():
  # The box's best anchor has IoU 1/3 (< 0.4): negative without low-quality matches, positive with them.
  anchors = jnp.array([[2.0, 0.0, 6.0, 4.0], [6.0, 0.0, 10.0, 4.0]])
  gts = jnp.array([[0.0, 0.0, 4.0, 4.0], [20.0, 20.0, 24.0, 24.0]])  # the second overlaps nothing
  on = detection.iou_assign(anchors, gts)
  off = detection.iou_assign(anchors, gts, low_quality_matches=False)
  assert on.matched_gt.tolist() == [0, -1] and off.matched_gt.tolist() == [-1, -1]
  assert int(on.num_unassigned) == 1 and int(off.num_unassigned) == 2


def test_iou_assign_official_compat_uses_plus_one_extents():
  # Shift 2 on a box of pixels 0..3: IoU 2/6 continuous (negative), (3*5)/(25+25-15) = 3/7 with +1 (ignored).
  anchors = jnp.array([[2.0, 0.0, 6.0, 4.0], [0.0, 0.0, 4.0, 4.0]])
  gts = jnp.array([[0.0, 0.0, 4.0, 4.0]])
  assert detection.iou_assign(anchors, gts).matched_gt.tolist() == [-1, 0]
  assert detection.iou_assign(anchors, gts, official_compat=True).matched_gt.tolist() == [-2, 0]


def test_bad_inputs_are_named():
  anchors, counts = detection.make_anchors(16, (4, 8), (8.0, 16.0))
  gts = jnp.array([[2.0, 2.0, 10.0, 10.0]])
  with pytest.raises(ValueError, match="num_anchors_per_level"):
    detection.atss_assign(anchors, gts, num_anchors_per_level=(16, 3))
  with pytest.raises(TypeError, match="gt_valid"):
    detection.atss_assign(anchors, gts, jnp.ones(1), num_anchors_per_level=counts)
  with pytest.raises(ValueError, match="negative_iou"):
    detection.iou_assign(anchors, gts, positive_iou=0.4, negative_iou=0.5)
