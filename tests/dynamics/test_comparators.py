"""Comparators: binned Shannon entropy by hand; k-NN MI and MINE on Gaussians with known MI."""

import math

import jax
import numpy as np
import pytest
from sklearn.feature_selection import mutual_info_classif

from jaxdyn.dynamics import (
    binned_shannon_entropy,
    knn_mutual_information_discrete,
    ksg_mutual_information,
    mine_mutual_information,
)


def _gaussian_mi_bits(rho, dims=1):
  return -0.5 * dims * math.log2(1.0 - rho**2)


def _correlated(n, rho, dims=1, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, dims))
  y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, dims))
  return x.astype(np.float32), y.astype(np.float32)


def test_binned_entropy_hand_count_two_bins():
  # Dim 0 spans [0, 4] -> bins [0, 2), [2, 4]; dim 1 spans [0, 10] -> [0, 5), [5, 10].
  Z = np.array(
      [[0, 0], [1, 1], [1.9, 4.9], [0.5, 2], [2, 0], [3, 4], [4, 5], [2.5, 10]],  # cells 00 x4, 10 x2, 11 x2
      np.float32,
  )
  p = np.array([4, 2, 2]) / 8
  assert binned_shannon_entropy(Z) == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-9)  # 1.5 bits


def test_binned_entropy_hand_count_three_bins_and_constant_dim():
  # x in [0, 3]: bins [0, 1), [1, 2), [2, 3]; the constant second dim is a single bin.
  Z = np.array([[0.0, 7], [0.5, 7], [0.99, 7], [1.0, 7], [2.0, 7], [3.0, 7]], np.float32)  # counts 3, 1, 2
  p = np.array([3, 1, 2]) / 6
  h = binned_shannon_entropy(Z, num_bins_per_dim=3)
  assert h == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-9)
  assert binned_shannon_entropy(Z, num_bins_per_dim=1) == pytest.approx(0.0, abs=1e-12)


def test_binned_entropy_saturates_in_high_dimension():
  Z = np.random.default_rng(0).standard_normal((64, 40)).astype(np.float32)
  assert binned_shannon_entropy(Z) == pytest.approx(6.0, abs=1e-9)  # every point in its own cell


@pytest.mark.parametrize("rho,dims,tol", [(0.0, 1, 0.05), (0.9, 1, 0.1), (0.8, 2, 0.15)])
def test_ksg_on_correlated_gaussians(rho, dims, tol):
  x, y = _correlated(1000, rho, dims, seed=1)
  est = float(ksg_mutual_information(x, y, k=3))
  assert est == pytest.approx(_gaussian_mi_bits(rho, dims), abs=tol)


def test_knn_discrete_matches_sklearn_on_one_feature():
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 3, 600)
  z = (labels + 1.2 * rng.standard_normal(600)).astype(np.float64)
  ours = float(knn_mutual_information_discrete(z, labels, k=3))
  sk = mutual_info_classif(z[:, None], labels, n_neighbors=3, random_state=0)[0] / math.log(2)
  assert sk > 0.1
  assert ours == pytest.approx(sk, abs=2e-3)


def test_knn_discrete_separated_and_independent():
  rng = np.random.default_rng(3)
  labels = np.repeat(np.arange(4), 100)
  z = 50.0 * labels[:, None] + rng.standard_normal((400, 3))
  assert float(knn_mutual_information_discrete(z, labels)) == pytest.approx(2.0, abs=0.02)  # H(C)
  shuffled = rng.permutation(labels)
  assert abs(float(knn_mutual_information_discrete(z, shuffled))) < 0.05


def test_mine_on_correlated_gaussians():
  x, y = _correlated(1000, 0.8, seed=4)
  est = float(mine_mutual_information(x, y, key=jax.random.key(0), steps=800))
  assert est == pytest.approx(_gaussian_mi_bits(0.8), abs=0.15)  # 0.737 bits
  x0, y0 = _correlated(1000, 0.0, seed=5)
  est0 = float(mine_mutual_information(x0, y0, key=jax.random.key(0), steps=800))
  assert abs(est0) < 0.08
  plain = float(mine_mutual_information(x, y, key=jax.random.key(1), steps=800, bias_correction=False))
  assert plain == pytest.approx(_gaussian_mi_bits(0.8), abs=0.15)


def test_comparator_validation():
  with pytest.raises(ValueError, match=r"num_bins_per_dim: must be an int >= 1"):
    binned_shannon_entropy(np.zeros((4, 2)), num_bins_per_dim=0)
  with pytest.raises(ValueError, match=r"Z: must have 2 dimensions"):
    binned_shannon_entropy(np.zeros(4))
  with pytest.raises(ValueError, match=r"Y: must have N = 5 rows"):
    ksg_mutual_information(np.zeros(5), np.zeros(4))
  with pytest.raises(ValueError, match=r"k: must be an int in \[1, 4\]"):
    ksg_mutual_information(np.zeros(5), np.zeros(5), k=5)
  with pytest.raises(ValueError, match=r"labels: must have shape \(N,\)"):
    knn_mutual_information_discrete(np.zeros((5, 2)), np.zeros(4))
  with pytest.raises(ValueError, match=r"labels: must give some class >= 2 points"):
    knn_mutual_information_discrete(np.zeros((3, 2)), np.arange(3))
  with pytest.raises(ValueError, match=r"key: a jax.random key is required"):
    mine_mutual_information(np.zeros(5), np.zeros(5), key=None)
  with pytest.raises(ValueError, match=r"ema_rate: must be a finite real number in \(0, 1\]"):
    mine_mutual_information(np.zeros(5), np.zeros(5), key=jax.random.key(0), ema_rate=0.0)
  with pytest.raises(ValueError, match=r"X: must hold at least 2 points"):
    mine_mutual_information(np.zeros(1), np.zeros(1), key=jax.random.key(0))


# --- input policy: non-finite samples, magnitudes, NumPy scalars ---------------------------------


def test_ksg_nonfinite_sample_raises_or_is_nan_under_jit():
  x, y = _correlated(200, 0.8, seed=6)
  for bad in (np.nan, np.inf):
    xb = x.copy()
    xb[7, 0] = bad  # used to give a finite "estimate" (3.7 bits for a NaN point)
    with pytest.raises(ValueError, match=r"X: must be finite"):
      ksg_mutual_information(xb, y)
    with pytest.raises(ValueError, match=r"Y: must be finite"):
      ksg_mutual_information(y, xb)
    assert np.isnan(float(jax.jit(ksg_mutual_information)(xb, y)))


def test_knn_estimators_are_exact_under_a_common_scale():
  # Distance ranks are all they read: a common power of two changes no bit, where squared
  # distances used to overflow (2^200) or underflow (2^-200) float32.
  x, y = _correlated(300, 0.8, dims=2, seed=7)
  labels = (x[:, 0] > 0).astype(int)
  ksg, ross = float(ksg_mutual_information(x, y)), float(knn_mutual_information_discrete(x, labels))
  for k in (-100, 100):
    assert float(ksg_mutual_information(np.ldexp(x, k), np.ldexp(y, k))) == ksg
    assert float(knn_mutual_information_discrete(np.ldexp(x, k), labels)) == ross
  assert float(ksg_mutual_information(x, y, k=np.int64(3))) == ksg  # used to be refused


def test_knn_discrete_nonfinite_raises_or_is_nan_under_jit():
  z = np.random.default_rng(8).standard_normal((50, 2)).astype(np.float32)
  labels = np.arange(50) % 2
  z[3, 1] = np.inf
  with pytest.raises(ValueError, match=r"Z: must be finite"):
    knn_mutual_information_discrete(z, labels)
  assert np.isnan(float(jax.jit(lambda a: knn_mutual_information_discrete(a, labels))(z)))
  with pytest.raises(ValueError, match=r"labels: must be finite"):
    knn_mutual_information_discrete(np.abs(z[:, :1]) * 0, np.where(labels == 0, np.nan, 1.0))


def test_binned_entropy_nonfinite_raises_and_any_magnitude_bins():
  Z = np.array([[0, 0], [1, 1], [1.9, 4.9], [0.5, 2], [2, 0], [3, 4], [4, 5], [2.5, 10]], np.float64)
  expected = binned_shannon_entropy(Z)
  bad = Z.copy()
  bad[2, 1] = np.nan  # used to give a finite entropy
  with pytest.raises(ValueError, match=r"Z: must be finite, found"):
    binned_shannon_entropy(bad)
  # float64 on the host: 1e300 used to pass through float32 (inf); -1e308..1e308 spans overflow.
  assert binned_shannon_entropy(Z * 1e300) == expected
  assert binned_shannon_entropy((Z - 2.0) * 2e307) == expected
  assert binned_shannon_entropy(Z.astype(np.float16)) == expected


def test_mine_nonfinite_raises_and_scale_is_exact():
  x, y = _correlated(1000, 0.8, seed=4)  # the shapes and options of test_mine_on_correlated_gaussians
  key = jax.random.key(0)
  yb = y.copy()
  yb[5, 0] = np.nan  # used to return NaN only by the accident of the standardisation
  with pytest.raises(ValueError, match=r"Y: must be finite"):
    mine_mutual_information(x, yb, key=key, steps=20)
  expected = float(mine_mutual_information(x, y, key=key, steps=20))
  # Standardising x * 2^80 squared it past float32 (std = inf, x -> 0): an estimate of ~0.
  assert float(mine_mutual_information(np.ldexp(x, 80), y, key=key, steps=20)) == expected
  # NumPy scalars are numbers (learning_rate = np.float32(1e-3) used to be refused).
  lr, ema = np.float32(1e-3), np.float32(0.01)
  assert float(mine_mutual_information(x, y, key=key, steps=20, learning_rate=lr, ema_rate=ema)) == expected
