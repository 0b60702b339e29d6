"""FreeZe's pose core: Kabsch, RANSAC and symmetric-object disambiguation against known poses."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import detection


def _rotation(seed):
  """A random proper rotation (QR of a Gaussian matrix, sign-fixed), float64."""
  q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))
  return q if np.linalg.det(q) > 0 else -q


def _rot_z(angle):
  c, s = math.cos(angle), math.sin(angle)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


R0 = _rotation(0)
T0 = np.array([0.5, -1.25, 2.0])


def _cloud(seed, n):
  return np.random.default_rng(seed).uniform(-1, 1, (n, 3))


def test_kabsch_recovers_a_known_pose_float32():
  src = _cloud(1, 20)
  dst = src @ R0.T + T0
  r, t = detection.kabsch(src.astype(np.float32), dst.astype(np.float32))
  assert r.dtype == jnp.float32
  np.testing.assert_allclose(r, R0, atol=1e-5)
  np.testing.assert_allclose(t, T0, atol=1e-5)
  r_jit, t_jit = jax.jit(detection.kabsch)(src.astype(np.float32), dst.astype(np.float32))
  np.testing.assert_allclose(r_jit, R0, atol=1e-5)
  np.testing.assert_allclose(t_jit, T0, atol=1e-5)


def test_kabsch_weights_ignore_zero_weight_outliers_and_equal_duplication():
  src = _cloud(2, 12)
  dst = src @ R0.T + T0
  dst[:4] += np.random.default_rng(3).normal(size=(4, 3))  # four corrupted matches
  w = np.r_[np.zeros(4), np.random.default_rng(4).uniform(0.5, 2.0, 8)].astype(np.float32)
  r, t = detection.kabsch(src.astype(np.float32), dst.astype(np.float32), w)
  np.testing.assert_allclose(r, R0, atol=1e-5)
  np.testing.assert_allclose(t, T0, atol=1e-5)
  # Integer weights equal duplicating the matches (noisy data: a non-trivial optimum).
  noisy = src @ R0.T + T0 + 0.05 * np.random.default_rng(5).normal(size=src.shape)
  k = np.random.default_rng(6).integers(1, 4, 12)
  r_w, t_w = detection.kabsch(src, noisy, k.astype(np.float64))
  r_d, t_d = detection.kabsch(np.repeat(src, k, 0), np.repeat(noisy, k, 0))
  np.testing.assert_allclose(r_w, r_d, atol=1e-5)
  np.testing.assert_allclose(t_w, t_d, atol=1e-5)


def test_kabsch_reflection_keeps_det_plus_one_at_the_closed_form_optimum():
  src = _cloud(7, 15)
  mirror = np.diag([1.0, 1.0, -1.0])
  dst = src @ (R0 @ mirror).T + T0  # the best orthogonal fit is a reflection
  r, t = detection.kabsch(src.astype(np.float32), dst.astype(np.float32))
  r, t = np.asarray(r, np.float64), np.asarray(t, np.float64)
  assert abs(np.linalg.det(r) - 1.0) < 1e-5
  np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
  cs, cd = src - src.mean(0), dst - dst.mean(0)
  sigma = np.linalg.svd(cs.T @ cd, compute_uv=False)  # det(V U^T) = -1 here: delta = -1
  best = (cs ** 2).sum() + (cd ** 2).sum() - 2 * (sigma[0] + sigma[1] - sigma[2])
  cost = ((src @ r.T + t - dst) ** 2).sum()
  np.testing.assert_allclose(cost, best, rtol=1e-4)
  # A planar object (z = 0): H has rank 2 and the unfixed SVD may return a reflection; the sign fix
  # gives the exact rotation.
  flat = _cloud(8, 10) * np.array([1.0, 1.0, 0.0])
  r_flat, t_flat = detection.kabsch(flat, flat @ R0.T + T0)
  np.testing.assert_allclose(r_flat, R0, atol=1e-6)
  np.testing.assert_allclose(t_flat, T0, atol=1e-6)


def test_ransac_with_half_outliers_recovers_the_pose_and_the_inliers():
  n = 100
  rng = np.random.default_rng(9)
  src = rng.uniform(-1, 1, (n, 3))
  dst = src @ R0.T + T0
  outlier = rng.permutation(n) < n // 2
  dst[outlier] = rng.uniform(-3, 3, (outlier.sum(), 3))
  dst[~outlier] += 1e-4 * rng.normal(size=((~outlier).sum(), 3))  # small noise on the inliers
  assert np.linalg.norm(src[outlier] @ R0.T + T0 - dst[outlier], axis=1).min() > 0.05  # a clean split
  out = jax.jit(lambda k, s, d: detection.ransac_pose(k, s, d, num_iterations=200, inlier_threshold=0.05))(
      jax.random.key(0), src.astype(np.float32), dst.astype(np.float32))
  np.testing.assert_allclose(out.rotation, R0, atol=1e-4)
  np.testing.assert_allclose(out.translation, T0, atol=1e-4)
  np.testing.assert_array_equal(out.inliers, ~outlier)
  assert int(out.num_inliers) == n // 2
  assert out.num_inliers.dtype == jnp.int32
  # Plain Kabsch on all matches is far off: the outliers matter.
  r_all, _ = detection.kabsch(src, dst)
  assert np.abs(np.asarray(r_all) - R0).max() > 0.1
  # sample_size 4 works too; a different key gives the same answer.
  out4 = detection.ransac_pose(jax.random.key(3), src, dst, num_iterations=400, inlier_threshold=0.05,
                               sample_size=4)
  np.testing.assert_allclose(out4.rotation, R0, atol=1e-4)
  np.testing.assert_array_equal(out4.inliers, ~outlier)


def test_ransac_all_inliers_exact_and_nan_propagates():
  src = _cloud(10, 8)
  dst = src @ R0.T + T0
  out = detection.ransac_pose(jax.random.key(1), src, dst, num_iterations=4, inlier_threshold=1e-3)
  assert int(out.num_inliers) == 8
  np.testing.assert_allclose(out.rotation, R0, atol=1e-6)
  bad = dst.copy()
  bad[3, 1] = np.nan
  out = jax.jit(lambda d: detection.ransac_pose(jax.random.key(1), src, d, num_iterations=4,
                                                inlier_threshold=1e-3))(bad)
  assert np.isnan(out.rotation).all() and np.isnan(out.translation).all() and int(out.num_inliers) == 0


def test_disambiguation_picks_the_candidate_the_second_set_supports():
  # An object symmetric under a half-turn about its z axis: the geometric matches fit both poses.
  sym = _rot_z(math.pi)
  geo = _cloud(11, 30)
  geo = np.concatenate([geo, geo @ sym.T])  # a symmetric point set
  for r in (R0, R0 @ sym):  # both candidates fit the geometry exactly (as a set)
    posed = geo @ r.T + T0
    d = np.linalg.norm((geo @ R0.T + T0)[:, None] - posed[None], axis=-1).min(1)
    assert d.max() < 1e-9
  # The second (visual) set: texture points away from the axis, matched under the true pose.
  rng = np.random.default_rng(12)
  radius, phi = rng.uniform(0.5, 1.0, 10), rng.uniform(0, 2 * math.pi, 10)
  src2 = np.stack([radius * np.cos(phi), radius * np.sin(phi), rng.uniform(-1, 1, 10)], 1)
  dst2 = src2 @ R0.T + T0
  dst2[0] += 10.0  # one bad visual match
  cand_r = np.stack([R0 @ sym, R0]).astype(np.float32)
  cand_t = np.stack([T0, T0]).astype(np.float32)
  out = detection.disambiguate_pose(cand_r, cand_t, src2.astype(np.float32), dst2.astype(np.float32),
                                    inlier_threshold=0.05)
  assert int(out.index) == 1
  np.testing.assert_array_equal(out.num_inliers, [0, 9])  # the flipped pose moves each point by 2 * radius >= 1
  np.testing.assert_allclose(out.rotation, R0, atol=1e-6)
  np.testing.assert_allclose(out.translation, T0, atol=1e-6)
  np.testing.assert_allclose(out.mean_residual, [0.05, 0.05 / 10], rtol=1e-4, atol=1e-6)
  # Order does not matter, and under jit the same choice comes out.
  flipped = jax.jit(lambda r, t: detection.disambiguate_pose(r, t, src2, dst2, inlier_threshold=0.05))(
      cand_r[::-1], cand_t[::-1])
  assert int(flipped.index) == 0


def test_disambiguation_ties_go_to_the_lower_residual():
  src2 = _cloud(13, 6)
  dst2 = src2 @ R0.T + T0
  near = _rot_z(0.001) @ R0  # every match still an inlier, but with a larger residual
  out = detection.disambiguate_pose(np.stack([near, R0]), np.stack([T0, T0]), src2, dst2, inlier_threshold=0.5)
  np.testing.assert_array_equal(out.num_inliers, [6, 6])
  assert int(out.index) == 1 and float(out.mean_residual[0]) > float(out.mean_residual[1])


P = _cloud(14, 6).astype(np.float32)


@pytest.mark.parametrize("call,name", [
    (lambda: detection.kabsch(np.ones((5, 2)), np.ones((5, 2))), "src"),
    (lambda: detection.kabsch(np.ones(3), np.ones(3)), "src"),
    (lambda: detection.kabsch(np.zeros((0, 3)), np.zeros((0, 3))), "src"),
    (lambda: detection.kabsch(P, P[:4]), "dst"),
    (lambda: detection.kabsch(P, P, np.ones(5)), "weights"),
    (lambda: detection.kabsch(P, P, -np.ones(6)), "weights"),
    (lambda: detection.kabsch(P, P, np.zeros(6)), "weights"),
    (lambda: detection.kabsch(P, P + 0j), "dst"),
    (lambda: detection.ransac_pose(None, P, P, num_iterations=2, inlier_threshold=0.1), "key"),
    (lambda: detection.ransac_pose(jax.random.key(0), P, P, num_iterations=0, inlier_threshold=0.1),
     "num_iterations"),
    (lambda: detection.ransac_pose(jax.random.key(0), P, P, num_iterations=2.0, inlier_threshold=0.1),
     "num_iterations"),
    (lambda: detection.ransac_pose(jax.random.key(0), P, P, num_iterations=2, inlier_threshold=0.0),
     "inlier_threshold"),
    (lambda: detection.ransac_pose(jax.random.key(0), P, P, num_iterations=2, inlier_threshold=math.nan),
     "inlier_threshold"),
    (lambda: detection.ransac_pose(jax.random.key(0), P, P, num_iterations=2, inlier_threshold=0.1, sample_size=2),
     "sample_size"),
    (lambda: detection.ransac_pose(jax.random.key(0), P, P, num_iterations=2, inlier_threshold=0.1, sample_size=7),
     "sample_size"),
    (lambda: detection.ransac_pose(jax.random.key(0), P[:2], P[:2], num_iterations=2, inlier_threshold=0.1),
     "sample_size"),
    (lambda: detection.ransac_pose(jax.random.key(0), P, P[:, :2], num_iterations=2, inlier_threshold=0.1), "dst"),
    (lambda: detection.disambiguate_pose(np.eye(3), np.zeros(3), P, P, inlier_threshold=0.1), "candidates_R"),
    (lambda: detection.disambiguate_pose(np.zeros((0, 3, 3)), np.zeros((0, 3)), P, P, inlier_threshold=0.1),
     "candidates_R"),
    (lambda: detection.disambiguate_pose(np.eye(3)[None], np.zeros((2, 3)), P, P, inlier_threshold=0.1),
     "candidates_t"),
    (lambda: detection.disambiguate_pose(np.eye(3)[None], np.zeros((1, 3)), P, P[:3], inlier_threshold=0.1),
     "dst2"),
    (lambda: detection.disambiguate_pose(np.eye(3)[None], np.zeros((1, 3)), P[:0], P[:0], inlier_threshold=0.1),
     "src2"),
    (lambda: detection.disambiguate_pose(np.eye(3)[None], np.zeros((1, 3)), P, P, inlier_threshold=-1.0),
     "inlier_threshold"),
    (lambda: detection.disambiguate_pose(np.eye(3)[None], np.zeros((1, 3)), P, P, inlier_threshold=True),
     "inlier_threshold"),
])
def test_bad_inputs_are_named(call, name):
  with pytest.raises((ValueError, TypeError), match=f"^{name}:"):
    call()


def test_traced_bad_weights_and_nonfinite_give_nan():
  src = _cloud(15, 6)
  f = jax.jit(detection.kabsch)
  for w in (np.zeros(6), np.r_[-1.0, np.ones(5)], np.r_[np.inf, np.ones(5)]):
    r, t = f(src, src, w)
    assert np.isnan(r).all() and np.isnan(t).all()
  bad = src.copy()
  bad[2, 0] = np.inf
  r, t = detection.kabsch(bad, src)
  assert np.isnan(r).all() and np.isnan(t).all()
  out = detection.disambiguate_pose(np.eye(3)[None], np.array([[np.nan, 0.0, 0.0]]), src, src, inlier_threshold=0.1)
  assert np.isnan(out.rotation).all() and np.isnan(out.mean_residual).all()
