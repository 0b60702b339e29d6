"""EDM: preconditioning, loss weighting and noise sampling against the formulas; the Karras levels; the Heun
sampler against the exact probability-flow ODE of Gaussian data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import diffusion


@pytest.mark.parametrize("sigma_data", [0.5, 0.9, 2.0])
def test_preconditioning_matches_the_formulas(sigma_data):
  sigma = np.array([0.002, 0.1, 0.5, 1.0, 3.0, 80.0])
  s = diffusion.edm_preconditioning(jnp.asarray(sigma, jnp.float32), sigma_data=sigma_data)
  sd = sigma_data
  np.testing.assert_allclose(s.c_skip, sd**2 / (sigma**2 + sd**2), rtol=1e-5)
  np.testing.assert_allclose(s.c_out, sigma * sd / np.sqrt(sigma**2 + sd**2), rtol=1e-5)
  np.testing.assert_allclose(s.c_in, 1 / np.sqrt(sd**2 + sigma**2), rtol=1e-5)
  np.testing.assert_allclose(s.c_noise, np.log(sigma) / 4, rtol=1e-5, atol=1e-7)
  # The effective training target of F has unit variance: for x ~ (0, sd^2), n ~ N(0, 1),
  # (x - c_skip (x + sigma n)) / c_out has variance ((1 - c_skip)^2 sd^2 + c_skip^2 sigma^2) / c_out^2 = 1.
  var = ((1 - s.c_skip) ** 2 * sd**2 + s.c_skip**2 * sigma**2) / s.c_out**2
  np.testing.assert_allclose(var, 1.0, rtol=1e-4)
  # The input c_in (x + sigma n) has unit variance too.
  np.testing.assert_allclose(s.c_in**2 * (sd**2 + sigma**2), 1.0, rtol=1e-5)


def test_preconditioning_hand_worked_and_loss_weight():
  s = diffusion.edm_preconditioning(0.5, sigma_data=0.5)  # sigma = sigma_data: c_skip = 1/2, c_out = sd / sqrt(2)
  np.testing.assert_allclose([s.c_skip, s.c_out, s.c_in, s.c_noise],
                             [0.5, 0.5 / np.sqrt(2), np.sqrt(2), np.log(0.5) / 4], rtol=1e-6)
  sigma = jnp.array([0.01, 0.5, 2.0, 50.0])
  w = diffusion.edm_loss_weight(sigma, sigma_data=0.9)
  np.testing.assert_allclose(w, (np.asarray(sigma) ** 2 + 0.81) / (np.asarray(sigma) * 0.9) ** 2, rtol=1e-5)
  np.testing.assert_allclose(w, 1 / diffusion.edm_preconditioning(sigma, sigma_data=0.9).c_out ** 2, rtol=1e-5)
  with pytest.raises(ValueError, match="sigma: every entry must be > 0"):
    diffusion.edm_preconditioning(jnp.array([0.5, 0.0]))
  # Under jit a NaN level propagates.
  assert np.isnan(jax.jit(lambda s: diffusion.edm_loss_weight(s))(jnp.array([jnp.nan]))).all()


def test_sigma_sample_is_log_normal():
  sig = np.asarray(diffusion.edm_sigma_sample(jax.random.key(0), (40000,), p_mean=-0.6, p_std=1.2))
  assert sig.dtype == np.float32 and (sig > 0).all()
  logs = np.log(sig)
  se = 1.2 / np.sqrt(len(logs))
  assert abs(logs.mean() + 0.6) < 4 * se
  assert abs(logs.std() - 1.2) < 4 * 1.2 / np.sqrt(2 * len(logs))
  # P_std = 0: every level is exp(P_mean).
  np.testing.assert_allclose(diffusion.edm_sigma_sample(jax.random.key(1), (2, 3), p_mean=0.3, p_std=0.0),
                             np.full((2, 3), np.exp(0.3)), rtol=1e-6)


def test_loss_hand_worked_with_and_without_kept_patches():
  # 4x4 one-channel images in 2x2 patches (raster: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right).
  x = jnp.zeros((2, 4, 4, 1))
  d = jnp.zeros((2, 4, 4, 1)).at[0, 0, 0, 0].set(2.0).at[0, 3, 3, 0].set(1.0).at[1, 0, 3, 0].set(4.0)
  sigma = jnp.array([0.5, 1.0])
  w = np.array([8.0, (1 + 0.25) / 0.25])  # sigma_data = 0.5
  # All pixels: example 0 has (4 + 1) / 16, example 1 has 16 / 16.
  np.testing.assert_allclose(diffusion.edm_loss(d, x, sigma), np.mean(w * [5 / 16, 1.0]), rtol=1e-6)
  # Example 0 keeps patches {0, 2}: patch 0 has mean 4/4, patch 2 has 0 -> 0.5; example 1 keeps {1, 3}: 16/4, 0 -> 2.
  keep = jnp.array([[0, 2], [1, 3]])
  np.testing.assert_allclose(diffusion.edm_loss(d, x, sigma, keep=keep, patch_size=2), np.mean(w * [0.5, 2.0]),
                             rtol=1e-6)


def test_loss_gradient_is_zero_at_masked_outputs_and_the_loss_ignores_them():
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  d = jax.random.normal(k1, (3, 8, 8, 2))
  x = jax.random.normal(k2, (3, 8, 8, 2))
  sigma = jnp.array([0.3, 1.0, 4.0])
  keep = diffusion.random_keep_indices(k3, 3, 16, 0.75)
  g = np.asarray(jax.grad(lambda d: diffusion.edm_loss(d, x, sigma, keep=keep, patch_size=2))(d))
  kept = np.zeros((3, 16), bool)
  kept[np.arange(3)[:, None], np.asarray(keep)] = True
  pixel_kept = np.repeat(np.repeat(kept.reshape(3, 4, 4), 2, 1), 2, 2)  # (3, 8, 8)
  assert (g[~pixel_kept] == 0).all()
  assert (g[pixel_kept] != 0).all()
  # The gradient at kept pixels is lambda 2 (D - x) / (B * K * p * p * C).
  w = np.asarray(diffusion.edm_loss_weight(sigma))
  want = w[:, None, None, None] * 2 * (np.asarray(d) - np.asarray(x)) / (3 * 4 * 4 * 2)
  np.testing.assert_allclose(g[pixel_kept], want[pixel_kept], rtol=1e-5)
  # Changing the masked pixels of the target changes nothing.
  x2 = jnp.where(jnp.asarray(pixel_kept)[..., None], x, 100.0)
  np.testing.assert_array_equal(diffusion.edm_loss(d, x, sigma, keep=keep, patch_size=2),
                                diffusion.edm_loss(d, x2, sigma, keep=keep, patch_size=2))


def test_loss_checks_its_arguments():
  x = jnp.zeros((2, 4, 4, 1))
  with pytest.raises(ValueError, match="keep: must lie in"):
    diffusion.edm_loss(x, x, jnp.ones(2), keep=jnp.array([[0], [4]]), patch_size=2)
  with pytest.raises(ValueError, match="patch_size: must divide"):
    diffusion.edm_loss(x, x, jnp.ones(2), keep=jnp.array([[0], [1]]), patch_size=3)
  with pytest.raises(ValueError, match="sigma: must have shape"):
    diffusion.edm_loss(x, x, jnp.ones(3))
  with pytest.raises(ValueError, match="denoised: must hold at least one"):
    diffusion.edm_loss(x[:0], x[:0], jnp.ones(0))


def test_karras_sigmas_formula():
  s = np.asarray(diffusion.karras_sigmas(18))
  i = np.arange(18)
  want = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
  np.testing.assert_allclose(s[:-1], want, rtol=1e-5)
  assert s[-1] == 0 and s.shape == (19,)
  np.testing.assert_allclose(s[[0, 17]], [80, 0.002], rtol=1e-5)
  np.testing.assert_allclose(diffusion.karras_sigmas(4, sigma_min=1.0, sigma_max=4.0, rho=1.0), [4, 3, 2, 1, 0])
  np.testing.assert_allclose(diffusion.karras_sigmas(1, sigma_max=5.0), [5.0, 0.0])
  with pytest.raises(ValueError, match="sigma_min: must be a finite real number in"):
    diffusion.karras_sigmas(5, sigma_min=3.0, sigma_max=2.0)


MU, S = 0.7, 1.5  # Gaussian data N(MU, S^2) in every dimension


def _exact_denoiser(x, sigma):
  """E[x0 | x] for x0 ~ N(MU, S^2), x = x0 + sigma n: the ideal denoiser."""
  return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def _ode_solution(z, sigma_max=80.0):
  """The probability-flow ODE from x = sigma_max z down to sigma = 0: x - MU scales like sqrt(S^2 + sigma^2)."""
  return MU + (sigma_max * z - MU) * S / np.sqrt(S**2 + sigma_max**2)


def test_heun_sampler_follows_the_exact_ode_of_gaussian_data_at_second_order():
  z = jax.random.normal(jax.random.key(0), (2000,))
  exact = _ode_solution(np.asarray(z, np.float64))
  err = {}
  for n in (16, 32, 64):
    for second in (True, False):
      x = diffusion.heun_sampler(_exact_denoiser, z, num_steps=n, second_order=second)
      err[n, second] = np.max(np.abs(np.asarray(x) - exact))
  # Heun's error falls about 4x per doubling of the steps (second order), Euler's about 2x (first order).
  assert 3.0 < err[16, True] / err[32, True] < 5.5 and 3.0 < err[32, True] / err[64, True] < 5.5, err
  assert 1.6 < err[16, False] / err[32, False] < 2.5, err
  assert err[32, True] < err[32, False] / 5
  # With enough steps the samples have the data's mean and variance (up to sampling error of the noise).
  x = np.asarray(diffusion.heun_sampler(_exact_denoiser, z, num_steps=256))
  np.testing.assert_allclose(x, exact, atol=2e-3)
  se = S / np.sqrt(len(x))
  assert abs(x.mean() - MU) < 4 * se and abs(x.std() - S) < 4 * S / np.sqrt(2 * len(x))


def test_heun_sampler_is_jittable_and_shapes():
  z = jax.random.normal(jax.random.key(1), (3, 4, 4, 1))
  f = jax.jit(lambda z: diffusion.heun_sampler(_exact_denoiser, z, num_steps=8))
  np.testing.assert_allclose(f(z), diffusion.heun_sampler(_exact_denoiser, z, num_steps=8), rtol=1e-6)
  calls = []
  diffusion.heun_sampler(lambda x, s: calls.append(1) or x, jnp.zeros((2,)), num_steps=5)
  assert len(calls) == 3  # traced once in the loop body's two calls, once in the last Euler step
  with pytest.raises(TypeError, match="denoiser: must be callable"):
    diffusion.heun_sampler(3, z)
