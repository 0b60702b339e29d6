"""Diffusion kernel and exact DSE: closed forms, invariants, and an independent float64 reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.dynamics import (
    diffusion_kernel,
    diffusion_spectral_entropy,
    gaussian_affinity,
    spectral_entropy,
)


def _numpy_dse(Z, sigma, t):
  """Independent float64 reference written from the paper's definitions."""
  Z = np.asarray(Z, np.float64)
  d2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
  G = np.exp(-d2 / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
  P = G / G.sum(1, keepdims=True)  # random-walk matrix D^-1 G
  lam = np.abs(np.linalg.eigvals(P).real) ** t
  p = lam / lam.sum() + 2.2e-16
  return -(p * np.log2(p)).sum()


def _random_points(n=60, d=5, scale=1.0, seed=0):
  return scale * np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_affinity_matches_formula():
  Z = _random_points(12, 3)
  sigma = 1.7
  d2 = ((Z[:, None].astype(np.float64) - Z[None]) ** 2).sum(-1)
  expected = np.exp(-d2 / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
  np.testing.assert_allclose(gaussian_affinity(Z, sigma=sigma), expected, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.diag(gaussian_affinity(Z, sigma=sigma)), 1 / (sigma * math.sqrt(2 * math.pi)), rtol=1e-6)


def test_kernel_symmetric_with_random_walk_eigenvalues():
  Z = _random_points(50, 4)
  sigma = 2.0
  K = np.asarray(diffusion_kernel(Z, sigma=sigma), np.float64)
  np.testing.assert_array_equal(K, K.T)
  G = np.asarray(gaussian_affinity(Z, sigma=sigma), np.float64)
  P = G / G.sum(1, keepdims=True)
  np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-12)
  rw = np.sort(np.linalg.eigvals(P).real)
  ours = np.sort(np.asarray(jnp.linalg.eigvalsh(jnp.asarray(K, jnp.float32)), np.float64))
  np.testing.assert_allclose(ours, rw, atol=2e-5)
  assert ours[-1] == pytest.approx(1.0, abs=1e-5)
  assert ours[0] > -1e-5  # PSD up to rounding


@pytest.mark.parametrize("d,sigma,t", [(0.5, 1.0, 1), (1.5, 1.0, 1), (1.5, 1.0, 3), (20.0, 10.0, 2)])
def test_two_points_closed_form(d, sigma, t):
  # K = [[1, a], [a, 1]] / (1 + a), a = exp(-d^2 / 2 sigma^2): eigenvalues 1 and (1 - a) / (1 + a).
  a = math.exp(-(d**2) / (2 * sigma**2))
  r = ((1 - a) / (1 + a)) ** t
  p = np.array([1.0, r]) / (1 + r) + 2.2e-16
  expected = -(p * np.log2(p)).sum()
  Z = np.array([[0.0, 0.0], [d, 0.0]], np.float32)
  assert float(diffusion_spectral_entropy(Z, sigma=sigma, t=t)) == pytest.approx(expected, abs=1e-5)


def test_identical_points_zero_entropy():
  Z = np.tile(np.array([[3.0, -1.0, 2.0]], np.float32), (40, 1))
  assert float(diffusion_spectral_entropy(Z)) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("sizes", [(5, 5), (3, 9), (4, 6, 8)])
def test_far_apart_tight_clusters_give_log2_of_cluster_count(sizes):
  # Each tight cluster is a connected component whose K block is (1/n_c) 1 1^T: eigenvalue 1 once
  # per cluster, 0 otherwise, whatever the cluster sizes.
  Z = np.concatenate([np.full((n, 3), 100.0 * i, np.float32) for i, n in enumerate(sizes)])
  for t in (1, 4):
    assert float(diffusion_spectral_entropy(Z, sigma=1.0, t=t)) == pytest.approx(math.log2(len(sizes)), abs=1e-4)


def test_two_jittered_clusters_approach_one_bit_at_large_t():
  rng = np.random.default_rng(1)
  Z = np.concatenate([rng.normal(0, 1, (20, 2)), rng.normal(100, 1, (20, 2))]).astype(np.float32)
  h1 = float(diffusion_spectral_entropy(Z, sigma=1.0, t=1))
  h200 = float(diffusion_spectral_entropy(Z, sigma=1.0, t=200))
  assert h1 > 1.5  # within-cluster eigenvalues add entropy at t = 1
  assert h200 == pytest.approx(1.0, abs=0.02)  # only the two unit eigenvalues survive


def test_isolated_points_reach_log2_n():
  Z = _random_points(32, 3, scale=100.0)
  assert float(diffusion_spectral_entropy(Z, sigma=0.1)) == pytest.approx(5.0, abs=1e-4)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.0, 30.0])
def test_bounded_by_log2_n_and_matches_float64_reference(sigma):
  Z = _random_points(60, 5)
  h = float(diffusion_spectral_entropy(Z, sigma=sigma))
  assert -1e-6 <= h <= math.log2(60) + 1e-6
  assert h == pytest.approx(_numpy_dse(Z, sigma, 1), abs=2e-4)


def test_non_increasing_in_t():
  Z = _random_points(80, 6)
  hs = [float(diffusion_spectral_entropy(Z, sigma=2.0, t=t)) for t in range(1, 8)]
  assert all(b <= a + 1e-5 for a, b in zip(hs, hs[1:])), hs
  assert hs[0] - hs[-1] > 1.0  # and it really decreases


def test_translation_invariant_in_float32():
  # Centring before ||a||^2 + ||b||^2 - 2ab keeps float32 accurate far from the origin.
  Z = _random_points(60, 16, scale=3.0)
  h0 = float(diffusion_spectral_entropy(Z, sigma=3.0))
  h_far = float(diffusion_spectral_entropy(Z + np.float32(1000.0), sigma=3.0))
  assert h_far == pytest.approx(h0, abs=1e-3)
  assert h0 == pytest.approx(_numpy_dse(Z, 3.0, 1), abs=2e-4)


def test_subsampling_deterministic_with_key():
  Z = _random_points(90, 4)
  key = jax.random.key(3)
  a = float(diffusion_spectral_entropy(Z, sigma=1.5, max_n=50, key=key))
  b = float(diffusion_spectral_entropy(Z, sigma=1.5, max_n=50, key=key))
  c = float(diffusion_spectral_entropy(Z, sigma=1.5, max_n=50, key=jax.random.key(4)))
  full = float(diffusion_spectral_entropy(Z, sigma=1.5))
  assert a == b
  assert a != c
  assert a < full  # fewer points, lower entropy (log2 50 < log2 90 regime)
  # No subsampling when N <= max_n: the key is irrelevant.
  assert float(diffusion_spectral_entropy(Z, sigma=1.5, max_n=90, key=key)) == full


def test_spectral_entropy_from_eigenvalues():
  assert float(spectral_entropy(np.ones(8))) == pytest.approx(3.0, abs=1e-6)
  assert float(spectral_entropy(np.array([1.0, 0.0, 0.0]))) == pytest.approx(0.0, abs=1e-12)
  # signs ignored, t powers: p = (1, 1/4, 1/4) / 1.5 at t = 2
  p = np.array([1.0, 0.25, 0.25]) / 1.5
  assert float(spectral_entropy(np.array([1.0, -0.5, 0.5]), t=2)) == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-6)


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan"), float("inf"), "1"])
def test_invalid_sigma(sigma):
  with pytest.raises(ValueError, match=r"sigma: must be a finite real number > 0"):
    diffusion_spectral_entropy(np.zeros((4, 2)), sigma=sigma)


@pytest.mark.parametrize("t", [0, -1, 1.5, 2.0, True])
def test_invalid_t(t):
  with pytest.raises(ValueError, match=r"t: must be an int in \[1, 2147483647\]"):
    diffusion_spectral_entropy(np.zeros((4, 2)), t=t)


def test_invalid_points_and_options():
  with pytest.raises(ValueError, match=r"Z: must have 2 dimensions"):
    diffusion_spectral_entropy(np.zeros(5))
  with pytest.raises(ValueError, match=r"Z: must have 2 dimensions"):
    diffusion_spectral_entropy(np.zeros((2, 3, 4)))
  with pytest.raises(ValueError, match=r"Z: must hold at least 2 points"):
    diffusion_spectral_entropy(np.zeros((1, 3)))
  with pytest.raises(ValueError, match=r"max_n: must be an int >= 2"):
    diffusion_spectral_entropy(np.zeros((4, 2)), max_n=1)
  with pytest.raises(ValueError, match=r"method: must be one of \['exact', 'slq'\]"):
    diffusion_spectral_entropy(np.zeros((4, 2)), method="lanczos")
  with pytest.raises(ValueError, match=r"key: a jax.random key is required"):
    diffusion_spectral_entropy(np.zeros((12, 2)), max_n=10)
  with pytest.raises(ValueError, match=r"key: a jax.random key is required"):
    diffusion_spectral_entropy(np.zeros((12, 2)), method="slq")
  with pytest.raises(ValueError, match=r"sigma"):
    diffusion_kernel(np.zeros((3, 2)), sigma=0.0)
  with pytest.raises(ValueError, match=r"eigenvalues: must have 1 dimension, got shape"):
    spectral_entropy(np.zeros((2, 2)))


# --- input policy: numeric range, half precision, NumPy scalars, keys, non-finite points --------


def test_bandwidths_beyond_float32_compute_their_limits():
  # Far below the spacing every point is isolated: K = I, DSE = log2 N. Far above, the points are
  # one: K = 1 1^T / N, DSE = 0. (1e-30 and 1e39 used to give NaN: sigma^2 leaves float32.)
  Z = _random_points(16, 3)
  for sigma in (1e-30, 1e-45, 1e-300):
    assert float(diffusion_spectral_entropy(Z, sigma=sigma)) == pytest.approx(4.0, abs=1e-6)
    np.testing.assert_allclose(diffusion_kernel(Z, sigma=sigma), np.eye(16), rtol=0, atol=1e-6)
  for sigma in (1e39, 1e300):  # 0 up to float32 rounding of the eigenvalues, as for identical points
    assert float(diffusion_spectral_entropy(Z, sigma=sigma)) == pytest.approx(0.0, abs=1e-4)
    np.testing.assert_allclose(diffusion_kernel(Z, sigma=sigma), np.full((16, 16), 1 / 16), rtol=1e-6)


def test_points_and_bandwidth_scaled_together_give_the_same_bits():
  # K depends on Z / sigma only; even powers of two scale exactly (through D^{-1/2} too), so the
  # kernel and the DSE keep every bit even where ||z||^2 (2^132) or sigma^2 (2^-168) leaves
  # float32 (both used to give NaN).
  Z = _random_points(40, 4)
  K, h = np.asarray(diffusion_kernel(Z, sigma=1.5)), float(diffusion_spectral_entropy(Z, sigma=1.5, t=2))
  for k in (-84, 66, 100):
    Zk = np.ldexp(Z, k).astype(np.float32)
    np.testing.assert_array_equal(diffusion_kernel(Zk, sigma=math.ldexp(1.5, k)), K)
    assert float(diffusion_spectral_entropy(Zk, sigma=math.ldexp(1.5, k), t=2)) == h
  for c in (1e20, 1e-25):  # any common factor, to rounding
    Zc = (Z.astype(np.float64) * c).astype(np.float32)
    assert float(diffusion_spectral_entropy(Zc, sigma=1.5 * c, t=2)) == pytest.approx(h, abs=1e-4)


def test_affinity_bandwidth_limits():
  Z = _random_points(6, 2)
  # 1 / (sigma sqrt(2 pi)) overflows float32 below 2.3e-39: rejected by name, not inf.
  with pytest.raises(ValueError, match=r"sigma: must be >= 2.34e-39 for float32 Z"):
    gaussian_affinity(Z, sigma=1e-40)
  # sigma = 1e-30 used to give NaN (sigma^2 underflows): isolated points, G = I / (sigma sqrt(2 pi)).
  np.testing.assert_allclose(gaussian_affinity(Z, sigma=1e-30), np.eye(6) / (1e-30 * math.sqrt(2 * math.pi)),
                             rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
  # LAPACK has no half-precision eigensolver: these used to raise NotImplementedError.
  Zh = jnp.asarray(_random_points(30, 3), dtype)
  Z32 = np.asarray(Zh, np.float32)
  assert float(diffusion_spectral_entropy(Zh, sigma=1.0)) == float(diffusion_spectral_entropy(Z32, sigma=1.0))
  assert diffusion_kernel(Zh).dtype == jnp.float32
  # In float16 the authors' 2.2e-16 rounds to 0 and 0 log 0 was NaN.
  assert float(spectral_entropy(jnp.asarray([1.0, 0.0, 0.0], dtype))) == pytest.approx(0.0, abs=1e-12)


def test_numpy_scalars_and_0d_arrays_are_numbers():
  Z = _random_points(20, 3)
  expected = float(diffusion_spectral_entropy(Z, sigma=2.0, t=2, max_n=100))
  numpy_args = [(np.float32(2.0), np.int64(2), np.int32(100)), (np.asarray(2.0), np.asarray(2), np.asarray(100))]
  for sigma, t, max_n in numpy_args:
    assert float(diffusion_spectral_entropy(Z, sigma=sigma, t=t, max_n=max_n)) == expected
  assert float(spectral_entropy(np.ones(4), t=np.asarray(3))) == pytest.approx(2.0, abs=1e-6)


def test_a_given_key_is_checked_even_when_unused():
  # The exact path without subsampling needs no key, but a wrong one is a caller's error.
  with pytest.raises(TypeError, match=r"key: must be a jax.random key"):
    diffusion_spectral_entropy(np.zeros((4, 2)), key="key")
  with pytest.raises(TypeError, match=r"key: must be a jax.random key"):
    diffusion_spectral_entropy(np.zeros((4, 2)), key=np.zeros(2, np.float32))


def test_nonfinite_point_gives_nan_even_outside_the_subsample():
  Z = _random_points(12, 3)
  key = jax.random.key(0)
  for row in range(12):
    for bad in (np.nan, np.inf):
      Zb = Z.copy()
      Zb[row, 1] = bad
      assert np.isnan(float(diffusion_spectral_entropy(Zb, sigma=1.0, max_n=3, key=key))), (row, bad)
  jitted = jax.jit(lambda z: diffusion_spectral_entropy(z, sigma=1.0, max_n=3, key=key))
  assert np.isnan(float(jitted(Zb)))


def test_spectral_entropy_at_any_scale_and_time():
  lam = np.array([1.0, 0.5, 0.25, 0.1], np.float32)
  expected = float(spectral_entropy(lam, t=3))
  for c in (1e-30, 1e30):  # |lambda|^3 under- or overflowed: 0 / 0
    assert float(spectral_entropy(lam * np.float32(c), t=3)) == pytest.approx(expected, abs=1e-5)
  # A large t keeps only the largest eigenvalue, whatever its magnitude (was 0 / 0 = NaN).
  assert float(spectral_entropy(np.array([0.5, 0.25], np.float32), t=1000)) == pytest.approx(0.0, abs=1e-12)
  h = float(diffusion_spectral_entropy(_random_points(30, 3), sigma=1.0, t=2**31 - 1))
  assert h == pytest.approx(0.0, abs=1e-9)  # one connected cloud: the eigenvalue 1 alone


def test_empty_and_degenerate_inputs_are_named():
  with pytest.raises(ValueError, match=r"Z: must hold at least 2 points \(rows\), got shape \(0, 3\)"):
    diffusion_spectral_entropy(np.zeros((0, 3)))
  with pytest.raises(ValueError, match=r"Z: must hold at least 1 point \(row\), got shape \(0, 3\)"):
    diffusion_kernel(np.zeros((0, 3)))
  with pytest.raises(ValueError, match=r"eigenvalues: must hold at least one"):
    spectral_entropy(np.zeros(0))
  assert np.isnan(float(spectral_entropy(np.zeros(3))))  # no distribution: documented NaN
