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
  with pytest.raises(ValueError, match=r"num_bins_per_dim: expected an integer >= 1"):
    binned_shannon_entropy(np.zeros((4, 2)), num_bins_per_dim=0)
  with pytest.raises(ValueError, match=r"Z: expected a 2-D array"):
    binned_shannon_entropy(np.zeros(4))
  with pytest.raises(ValueError, match=r"Y: expected N = 5 rows"):
    ksg_mutual_information(np.zeros(5), np.zeros(4))
  with pytest.raises(ValueError, match=r"k: expected an integer in \[1, N - 1\]"):
    ksg_mutual_information(np.zeros(5), np.zeros(5), k=5)
  with pytest.raises(ValueError, match=r"labels: expected shape \(N,\)"):
    knn_mutual_information_discrete(np.zeros((5, 2)), np.zeros(4))
  with pytest.raises(ValueError, match=r"labels: every class has a single point"):
    knn_mutual_information_discrete(np.zeros((3, 2)), np.arange(3))
  with pytest.raises(ValueError, match=r"key: a jax.random key is required"):
    mine_mutual_information(np.zeros(5), np.zeros(5), key=None)
  with pytest.raises(ValueError, match=r"ema_rate: expected a number in \(0, 1\]"):
    mine_mutual_information(np.zeros(5), np.zeros(5), key=jax.random.key(0), ema_rate=0.0)
  with pytest.raises(ValueError, match=r"X: expected at least 2 points"):
    mine_mutual_information(np.zeros(1), np.zeros(1), key=jax.random.key(0))
