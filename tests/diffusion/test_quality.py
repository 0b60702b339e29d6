"""The classifier-feature Frechet distance (not FID) and the per-class accuracy of conditional samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxdyn import diffusion


def test_frechet_one_dimensional_hand_worked():
  a = np.array([[0.0], [2.0]])  # mean 1, variance 2
  b = np.array([[4.0], [12.0]])  # mean 8, variance 32
  # (1 - 8)^2 + 2 + 32 - 2 sqrt(64) = 49 + 34 - 16
  assert diffusion.frechet_distance(a, b) == pytest.approx(67.0, rel=1e-12)


def test_frechet_two_dimensional_hand_worked():
  a = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])  # mean 0, covariance (4/3) I
  b = 2 * a + [1.0, 0.0]  # mean (1, 0), covariance (16/3) I
  # 1 + 2 (4/3 + 16/3 - 2 sqrt(64/9)) = 1 + 8/3
  assert diffusion.frechet_distance(a, b) == pytest.approx(1 + 8 / 3, rel=1e-12)


def test_frechet_general_covariances():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(500, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
  b = rng.normal(size=(400, 3)) * [1.5, 1.0, 0.5] + [1.0, 1.0, 0.0]
  ma, mb = a.mean(0), b.mean(0)
  ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  # The textbook formula with scipy's matrix square root of the (non-symmetric) product.
  want = np.sum((ma - mb) ** 2) + np.trace(ca + cb - 2 * np.real(scipy.linalg.sqrtm(ca @ cb)))
  assert diffusion.frechet_distance(a, b) == pytest.approx(want, rel=1e-8)
  # Zero for a set against itself; invariant under a rotation applied to both sets.
  assert diffusion.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
  q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
  assert diffusion.frechet_distance(a @ q, b @ q) == pytest.approx(want, rel=1e-8)


def test_frechet_rejects_bad_inputs():
  a = np.ones((4, 2))
  with pytest.raises(ValueError, match="features_b: must have the feature width"):
    diffusion.frechet_distance(a, np.ones((4, 3)))
  with pytest.raises(ValueError, match="features_a: must hold at least 2"):
    diffusion.frechet_distance(a[:1], a)
  with pytest.raises(ValueError, match="features_a: must be finite"):
    diffusion.frechet_distance(np.array([[0.0, np.nan], [1.0, 1.0]]), a)


def test_conditional_accuracy():
  logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
  acc = np.asarray(diffusion.conditional_accuracy(logits, jnp.array([0, 0, 1, 0])))
  # class 0: samples 0 (right), 1 (wrong), 3 (wrong) -> 1/3; class 1: sample 2 (wrong) -> 0; class 2: never asked.
  np.testing.assert_allclose(acc[:2], [1 / 3, 0.0], rtol=1e-6)
  assert np.isnan(acc[2])
  with pytest.raises(ValueError, match="requested: must lie in"):
    diffusion.conditional_accuracy(logits, jnp.array([0, 0, 3, 0]))
  bad = jax.jit(diffusion.conditional_accuracy)(logits, jnp.array([0, 0, 3, 0]))
  assert np.isnan(np.asarray(bad)).all()
