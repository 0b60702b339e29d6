"""Removal scores of SSVI: folded-normal moments of |theta| and the criteria built on them."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxdyn import _validation

__all__ = ["CRITERIA", "folded_normal_moments", "removal_score", "score_unchecked"]

CRITERIA = ("snr_abs", "abs_mu", "abs_mu_over_sigma", "mean_abs")
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _standard_moments(a: jax.Array) -> tuple[jax.Array, jax.Array]:
  """For z ~ N(a, 1), a >= 0: (E|z| - a, Var|z|), computed without cancellation.

  E|z| = a erf(a / sqrt 2) + sqrt(2/pi) exp(-a^2/2) = a + d with
  d = sqrt(2/pi) exp(-a^2/2) - a erfc(a / sqrt 2) >= 0, and Var|z| = 1 + a^2 - (a + d)^2
  = 1 - d (2a + d).
  """
  d = _SQRT_2_OVER_PI * jnp.exp(-0.5 * a * a) - a * jax.scipy.special.erfc(a / math.sqrt(2.0))
  d = jnp.maximum(d, 0.0)
  return d, jnp.maximum(1.0 - d * (2.0 * a + d), 0.0)


def _as_arrays(mu, sigma) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(mu, sigma, sigma == 0, safe): safe = sigma where finite and > 0, 1 where 0, NaN elsewhere.

  NaN for an infinite, NaN or negative sigma (the last two unchecked under ``jit``) makes every
  score there NaN: a bad sigma never hides behind the sigma = 0 branch or a ratio that goes to 0.
  """
  mu = jnp.asarray(mu, dtype=jnp.result_type(mu, sigma, jnp.float32))
  sigma = jnp.asarray(sigma, dtype=mu.dtype)
  zero = sigma == 0
  safe = jnp.where((sigma > 0) & (sigma < jnp.inf), sigma, jnp.where(zero, 1.0, jnp.nan))
  return mu, sigma, zero, safe


def folded_normal_moments(mu: ArrayLike, sigma: ArrayLike) -> tuple[jax.Array, jax.Array]:
  """Mean and variance of |theta| for theta ~ N(mu, sigma^2) (the folded normal).

  E|theta| = mu erf(mu / (sigma sqrt 2)) + sigma sqrt(2/pi) exp(-mu^2 / (2 sigma^2)),
  Var|theta| = sigma^2 + mu^2 - E|theta|^2. Both are evaluated as sigma times functions of
  a = |mu| / sigma with the erfc form of E|theta| - |mu|, so the variance keeps its precision when
  |mu| >> sigma (the direct difference cancels in float32). sigma = 0 gives (|mu|, 0).

  Elementwise: empty arrays give empty arrays. A NaN or an infinity in ``mu`` or ``sigma`` gives
  a non-finite mean there; concrete ``sigma`` is checked (>= 0, not NaN), and under ``jit`` a NaN
  or negative sigma gives NaN.

  Args:
    mu: posterior means.
    sigma: posterior standard deviations, >= 0, broadcastable against ``mu``.

  Returns:
    ``(mean, variance)`` of |theta|, elementwise.

  Example:
    >>> m, v = folded_normal_moments(0.0, 1.0)  # half-normal: sqrt(2/pi), 1 - 2/pi
    >>> round(float(m), 4), round(float(v), 4)
    (0.7979, 0.3634)

  References:
    Li et al., "Training Bayesian Neural Networks with Sparse Subspace Variational Inference",
    ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """
  _validation.check_nonnegative("sigma", sigma)
  mu, _, zero, safe = _as_arrays(mu, sigma)
  return _moments(mu, zero, safe)


def _moments(mu, zero, safe):
  """`folded_normal_moments` from `_as_arrays`'s mu, zero and safe."""
  mu = jnp.abs(mu)
  d, var1 = _standard_moments(jnp.where(zero, 0.0, mu / safe))
  mean = jnp.where(zero, mu, mu + safe * d)
  var = jnp.where(zero, 0.0, safe * safe * var1)
  return mean, var


def removal_score(mu: ArrayLike, sigma: ArrayLike, *, criterion: str = "snr_abs") -> jax.Array:
  """Score by which SSVI keeps active weights (higher = kept): the SNR of |theta| by default.

  With theta ~ N(mu, sigma^2) and a = |mu| / sigma:
    - ``"snr_abs"``: E|theta| / sqrt(Var|theta|) (the paper's choice, the default);
    - ``"abs_mu"``: |mu|;
    - ``"abs_mu_over_sigma"``: |mu| / sigma;
    - ``"mean_abs"``: E|theta|.
  0/0 (an inactive entry, mu = sigma = 0) scores 0, the authors' NaN -> 0; |mu| > 0 with sigma = 0
  scores +inf for the ratio criteria. SNR(|theta|) depends on a alone and increases with it (from
  sqrt(2/pi) / sqrt(1 - 2/pi) ~ 1.32 at a = 0 towards a), so "snr_abs" and "abs_mu_over_sigma" rank a
  layer the same way up to float32 rounding (SNR is flat near a = 0, where nearly equal values can
  swap); they differ in value, hardly in the kept set.

  Elementwise: empty arrays give empty arrays. Every criterion gives NaN (or inf) where ``mu`` or
  ``sigma`` is NaN or infinite, "abs_mu" included; concrete ``sigma`` is checked (>= 0, not NaN),
  and under ``jit`` a NaN or negative sigma gives NaN.

  Args:
    mu: posterior means.
    sigma: posterior standard deviations (softplus(rho) on active entries, 0 elsewhere).
    criterion: one of ``CRITERIA``.

  Returns:
    The elementwise score.

  Example:
    >>> s = removal_score(jnp.array([0.0, 0.1]), jnp.array([0.1, 0.1]))
    >>> bool(s[1] > s[0])
    True

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025 (Sec. 4.2, removal by SNR of |theta|);
    code https://github.com/ljb121002/SSVI (the default follows both).
  """
  _validation.check_choice("criterion", criterion, CRITERIA)
  _validation.check_nonnegative("sigma", sigma)
  return score_unchecked(mu, sigma, criterion)


def score_unchecked(mu: ArrayLike, sigma: ArrayLike, criterion: str) -> jax.Array:
  """`removal_score` without the eager checks (for `drop_and_grow`, whose sigma is derived)."""
  mu, sigma, zero, safe = _as_arrays(mu, sigma)
  abs_mu = jnp.abs(mu)
  if criterion == "abs_mu":
    return abs_mu + 0 * safe  # + 0, or NaN where sigma is NaN, negative or infinite
  if criterion == "mean_abs":
    return _moments(mu, zero, safe)[0]
  degenerate = jnp.where(abs_mu > 0, jnp.inf, 0.0)
  if criterion == "abs_mu_over_sigma":
    return jnp.where(zero, degenerate, abs_mu / safe)
  # snr_abs: sigma cancels; use the standardised moments.
  a = jnp.where(zero, 0.0, abs_mu / safe)
  d, var1 = _standard_moments(a)
  return jnp.where(zero, degenerate, (a + d) / jnp.sqrt(var1))
