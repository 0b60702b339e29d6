"""Closed-form KL against a Monte Carlo estimate; the warm-up schedule; inactive entries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.bayes import gaussian_kl, kl_warmup


@pytest.mark.parametrize("mu,sigma,s0", [(0.3, 0.1, 0.5), (-0.02, 0.004, 0.005), (0.0, 1.0, 1.0), (1.5, 2.0, 0.7)])
def test_closed_form_matches_monte_carlo(mu, sigma, s0):
  rng = np.random.default_rng(0)
  t = mu + sigma * rng.standard_normal(2_000_000)
  log_q = -0.5 * ((t - mu) / sigma) ** 2 - np.log(sigma)
  log_p = -0.5 * (t / s0) ** 2 - np.log(s0)
  est = log_q - log_p
  se = est.std() / np.sqrt(est.size)
  closed = float(gaussian_kl(mu, sigma, prior_std=s0))
  assert abs(closed - est.mean()) < 4 * se + 1e-6, (closed, est.mean(), se)


def test_sum_over_active_entries_only_and_finite_gradients():
  mu = jnp.array([0.3, 0.0, -0.1])
  sigma = jnp.array([0.2, 0.0, 0.05])  # the middle entry is inactive (sigma = 0)
  mask = jnp.array([True, False, True])
  both = gaussian_kl(mu[::2], sigma[::2], prior_std=0.1)
  np.testing.assert_allclose(gaussian_kl(mu, sigma, prior_std=0.1, mask=mask), both, rtol=1e-6)
  g_mu, g_sigma = jax.grad(lambda m, s: gaussian_kl(m, s, prior_std=0.1, mask=mask), argnums=(0, 1))(mu, sigma)
  assert np.all(np.isfinite(g_mu)) and np.all(np.isfinite(g_sigma))
  assert float(g_mu[1]) == 0.0 and float(g_sigma[1]) == 0.0
  # d KL / d mu = mu / s0^2 on an active entry.
  np.testing.assert_allclose(float(g_mu[0]), 0.3 / 0.01, rtol=1e-5)


def test_warmup_counts_epochs_from_one():
  # 10 steps per epoch, 8 epochs: weight 2 * epoch / 8, capped at 1 from epoch 4 on.
  steps = jnp.array([0, 9, 10, 29, 30, 79])
  np.testing.assert_allclose(kl_warmup(steps, steps_per_epoch=10, num_epochs=8),
                             [0.25, 0.25, 0.5, 0.75, 1.0, 1.0])


def test_value_errors_name_the_argument():
  with pytest.raises(ValueError, match="prior_std"):
    gaussian_kl(0.0, 1.0, prior_std=0.0)
  with pytest.raises(ValueError, match="steps_per_epoch"):
    kl_warmup(0, steps_per_epoch=0, num_epochs=3)
  with pytest.raises(ValueError, match="num_epochs"):
    kl_warmup(0, steps_per_epoch=3, num_epochs=0)
