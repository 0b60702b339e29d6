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


# --- input policy ----------------------------------------------------------------------------------

def test_zero_sigma_on_an_active_entry_is_rejected_eagerly_and_inf_under_jit():
  mu, sigma = jnp.array([0.3, 0.0, -0.1]), jnp.array([0.2, 0.0, 0.05])
  with pytest.raises(ValueError, match=r"^sigma: must be > 0 on the active entries .* index \(1,\)"):
    gaussian_kl(mu, sigma, prior_std=0.1)  # the old code returned inf
  # Inactive there: fine, and the same number as before.
  np.testing.assert_allclose(gaussian_kl(mu, sigma, prior_std=0.1, mask=jnp.array([True, False, True])),
                             gaussian_kl(mu[::2], sigma[::2], prior_std=0.1), rtol=1e-6)
  # Under jit the values are unknown: +inf, as documented.
  assert float(jax.jit(lambda s: gaussian_kl(mu, s, prior_std=0.1))(sigma)) == np.inf


def test_nonfinite_values_propagate_even_on_inactive_entries():
  mask = jnp.array([True, False])
  for mu, sigma in (([0.3, np.nan], [0.2, 0.0]), ([0.3, 0.0], [0.2, np.inf]), ([np.inf, 0.0], [0.2, 0.0])):
    kl = jax.jit(lambda m, s: gaussian_kl(m, s, prior_std=0.1, mask=mask))(jnp.array(mu), jnp.array(sigma))
    assert not np.isfinite(float(kl)), (mu, sigma, kl)  # the old code returned a finite KL for the first two
  assert float(gaussian_kl(jnp.zeros((0, 3)), jnp.ones((0, 3)), prior_std=1.0)) == 0.0  # empty: 0


def test_kl_is_invariant_to_a_common_scale_down_to_1e_30():
  mu, sigma = np.array([0.3, -0.1, 0.0], np.float32), np.array([0.2, 0.05, 0.1], np.float32)
  ref = float(gaussian_kl(mu, sigma, prior_std=0.1))
  for scale in (1e-30, 1e-20, 1e20, 1e30):  # the old formula divided by s0^2, which underflows
    got = float(gaussian_kl(mu * np.float32(scale), sigma * np.float32(scale), prior_std=0.1 * scale))
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_numpy_scalars_are_numbers():
  ref = float(gaussian_kl(0.3, 0.2, prior_std=0.5))
  for s0 in (np.float32(0.5), np.float64(0.5), np.asarray(0.5)):  # np.float32 was rejected
    assert float(gaussian_kl(0.3, 0.2, prior_std=s0)) == pytest.approx(ref, rel=1e-6)
  w = kl_warmup(25, steps_per_epoch=np.int64(10), num_epochs=np.int32(8))  # np.int64 was rejected
  assert float(w) == 0.75
  assert float(kl_warmup(np.int64(25), steps_per_epoch=10, num_epochs=8)) == 0.75


def test_negative_step_is_an_error_and_clips_to_zero_under_jit():
  with pytest.raises(ValueError, match="^step: must be"):
    kl_warmup(-50, steps_per_epoch=10, num_epochs=8)  # the old code returned -1.0
  with pytest.raises(ValueError, match="^step: must be"):
    kl_warmup(jnp.array([3, -1]), steps_per_epoch=10, num_epochs=8)
  with pytest.raises(ValueError, match="^step: must be an int"):
    kl_warmup(2.0, steps_per_epoch=10, num_epochs=8)
  f = jax.jit(lambda s: kl_warmup(s, steps_per_epoch=10, num_epochs=8))
  np.testing.assert_array_equal(f(jnp.array([-50, -11, -1, 0, 35, 10**6])), [0.0, 0.0, 0.0, 0.25, 1.0, 1.0])
  # Huge but accepted counts compute (no int32 overflow).
  assert float(kl_warmup(5, steps_per_epoch=2**40, num_epochs=2**40)) == pytest.approx(2.0 / 2**40)
