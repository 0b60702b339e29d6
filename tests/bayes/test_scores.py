"""Removal scores against folded-normal moments computed by direct numerical integration."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.bayes import CRITERIA, folded_normal_moments, removal_score

MUS = (-2.0, -0.3, 0.0, 1e-3, 0.05, 0.7, 3.0)
SIGMAS = (1e-3, 0.05, 0.5, 2.0)


def _numerical_moments(mu, sigma):
  """E|theta| and Var|theta| by the trapezoid rule over +-12 sigma (float64)."""
  t = np.linspace(mu - 12 * sigma, mu + 12 * sigma, 400_001)
  pdf = np.exp(-0.5 * ((t - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
  m1 = np.trapezoid(np.abs(t) * pdf, t)
  m2 = np.trapezoid(t * t * pdf, t)
  return m1, m2 - m1 * m1


@pytest.mark.parametrize("mu", MUS)
def test_moments_and_scores_match_numerical_integration(mu):
  sig = np.array(SIGMAS, np.float32)
  mean, var = folded_normal_moments(jnp.full_like(sig, mu), sig)
  snr = removal_score(jnp.full_like(sig, mu), sig, criterion="snr_abs")
  e_abs = removal_score(jnp.full_like(sig, mu), sig, criterion="mean_abs")
  for j, s in enumerate(SIGMAS):
    m1, v = _numerical_moments(mu, s)
    np.testing.assert_allclose(float(mean[j]), m1, rtol=2e-5)
    np.testing.assert_allclose(float(e_abs[j]), m1, rtol=2e-5)
    np.testing.assert_allclose(float(var[j]), v, rtol=2e-4, atol=1e-12)
    np.testing.assert_allclose(float(snr[j]), m1 / math.sqrt(v), rtol=2e-4)


def test_half_normal_at_mu_zero_and_other_criteria():
  # mu = 0: E|theta| = sigma sqrt(2/pi), SNR = sqrt(2/pi) / sqrt(1 - 2/pi) whatever sigma.
  s = jnp.array([0.01, 1.0, 7.0])
  np.testing.assert_allclose(removal_score(jnp.zeros(3), s), math.sqrt(2 / math.pi) / math.sqrt(1 - 2 / math.pi),
                             rtol=1e-6)
  mu = jnp.array([-0.4, 0.2, 0.0])
  np.testing.assert_allclose(removal_score(mu, s, criterion="abs_mu"), [0.4, 0.2, 0.0])
  np.testing.assert_allclose(removal_score(mu, s, criterion="abs_mu_over_sigma"), [40.0, 0.2, 0.0], rtol=1e-6)


def test_inactive_entries_score_zero_and_large_snr_stays_finite():
  score = removal_score(jnp.array([0.0, 2.0, 1.0]), jnp.array([0.0, 0.0, 1e-4]))
  assert float(score[0]) == 0.0 and float(score[1]) == np.inf
  np.testing.assert_allclose(float(score[2]), 1e4, rtol=1e-5)  # a = 1e4: SNR -> a, no cancellation


def test_snr_ranks_like_mu_over_sigma():
  rng = np.random.default_rng(0)
  mu = rng.normal(0, 0.05, 200).astype(np.float32)
  sigma = np.abs(rng.normal(0.01, 0.005, 200)).astype(np.float32) + 1e-3
  snr = np.asarray(removal_score(mu, sigma, criterion="snr_abs"), np.float64)
  ratio = np.asarray(removal_score(mu, sigma, criterion="abs_mu_over_sigma"))
  # SNR(|theta|) is increasing in |mu| / sigma: sorted by the ratio, it never decreases by more than
  # float32 rounding (it is flat at mu = 0, where float32 cannot order nearly equal values).
  in_order = snr[np.argsort(ratio)]
  assert np.all(np.diff(in_order) >= -2e-6 * in_order[1:])
  assert in_order[-1] > 2 * in_order[0]


def test_unknown_criterion():
  assert "snr_abs" in CRITERIA
  with pytest.raises(ValueError, match="criterion"):
    removal_score(jnp.ones(2), jnp.ones(2), criterion="magnitude")


# --- input policy ----------------------------------------------------------------------------------

@pytest.mark.parametrize("criterion", CRITERIA)
def test_nonfinite_sigma_never_gives_a_finite_score_under_jit(criterion):
  mu = jnp.array([0.0, 0.5, 0.0, 0.5, 0.3])
  sigma = jnp.array([np.nan, np.nan, np.inf, np.inf, 0.1])
  score = np.asarray(jax.jit(lambda s: removal_score(mu, s, criterion=criterion))(sigma))
  # The old code scored NaN sigma as sigma = 0 (0 or inf) and abs_mu ignored sigma altogether.
  assert not np.isfinite(score[:4]).any(), score
  assert np.isfinite(score[4])
  # A negative sigma (unchecked under jit) is NaN too; eagerly it is rejected by name.
  assert np.isnan(jax.jit(lambda s: removal_score(mu[:1], s, criterion=criterion))(jnp.array([-1.0])))
  with pytest.raises(ValueError, match="^sigma:"):
    removal_score(mu[:1], jnp.array([-1.0]), criterion=criterion)


def test_folded_moments_propagate_nan_sigma_under_jit_and_keep_empty_arrays():
  mean, var = jax.jit(folded_normal_moments)(jnp.array([0.5, 0.5]), jnp.array([np.nan, 0.0]))
  assert np.isnan(mean[0]) and np.isnan(var[0])  # the old code gave (0.5, 0.0)
  assert float(mean[1]) == 0.5 and float(var[1]) == 0.0
  m, v = folded_normal_moments(jnp.zeros((0,)), jnp.zeros((0,)))
  assert m.shape == v.shape == (0,)


def test_scores_are_scale_invariant_where_they_should_be():
  mu, sigma = np.array([0.3, -0.02, 0.0], np.float32), np.array([0.1, 0.01, 0.2], np.float32)
  ref = np.asarray(removal_score(mu, sigma))
  for scale in (1e-30, 1e30):
    np.testing.assert_allclose(removal_score(mu * np.float32(scale), sigma * np.float32(scale)), ref, rtol=1e-5)
