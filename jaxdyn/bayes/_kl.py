"""Closed-form KL of a mean-field Gaussian posterior to a N(0, s0^2) prior, and SSVI's KL warm-up."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxdyn import _validation

__all__ = ["gaussian_kl", "kl_warmup"]


def _check_positive(name: str, value) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    raise ValueError(f"{name}: must be a number > 0, got {value!r}")
  return float(value)


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
  """True when an array of ``shape`` broadcasts to ``target`` (without growing it)."""
  try:
    return jnp.broadcast_shapes(shape, target) == tuple(target)
  except ValueError:
    return False


def gaussian_kl(mu: ArrayLike, sigma: ArrayLike, *, prior_std: float,
                mask: ArrayLike | None = None) -> jax.Array:
  """Sum over (active) entries of KL(N(mu, sigma^2) || N(0, s0^2)), in closed form.

  KL = log(s0 / sigma) + (sigma^2 + mu^2) / (2 s0^2) - 1/2 per entry; entries where ``mask`` is
  false contribute exactly 0 (and no gradient), whatever their sigma, so inactive entries with
  sigma = 0 give no inf/NaN.

  Args:
    mu: posterior means.
    sigma: posterior standard deviations, > 0 on the active entries.
    prior_std: s0 > 0.
    mask: optional boolean array broadcastable to ``mu``: the active entries (default: all).

  Returns:
    A scalar: the summed KL in nats.

  Example:
    >>> float(gaussian_kl(0.0, 1.0, prior_std=1.0))
    0.0

  References:
    Li et al., "Training Bayesian Neural Networks with Sparse Subspace Variational Inference",
    ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """
  s0 = _check_positive("prior_std", prior_std)
  _validation.check_nonnegative("sigma", sigma)
  mu = jnp.asarray(mu, dtype=jnp.result_type(mu, sigma, jnp.float32))
  sigma = jnp.asarray(sigma, dtype=mu.dtype)
  try:
    shape = jnp.broadcast_shapes(mu.shape, sigma.shape)
  except ValueError as e:
    raise ValueError(f"sigma: shape {sigma.shape} does not broadcast against mu's {mu.shape}") from e
  if mask is not None and not _broadcasts_to(jnp.shape(mask), shape):
    raise ValueError(f"mask: shape {jnp.shape(mask)} does not broadcast to mu's {shape}")
  active = jnp.ones(shape, bool) if mask is None else jnp.broadcast_to(jnp.asarray(mask, bool), shape)
  safe_sigma = jnp.where(active, sigma, s0)
  safe_mu = jnp.where(active, mu, 0.0)
  kl = jnp.log(s0 / safe_sigma) + (safe_sigma**2 + safe_mu**2) / (2.0 * s0**2) - 0.5
  return jnp.sum(jnp.where(active, kl, 0.0))


def kl_warmup(step: ArrayLike, *, steps_per_epoch: int, num_epochs: int) -> jax.Array:
  """SSVI's KL weight at a (0-based) optimizer step: min(2 * epoch / num_epochs, 1).

  epoch = step // steps_per_epoch + 1 counts from 1, as the authors' training loop does, so the
  weight starts at 2 / num_epochs and reaches 1 at half of training.

  Args:
    step: the 0-based iteration number (traced or concrete).
    steps_per_epoch: optimizer steps per epoch, >= 1.
    num_epochs: epochs of the whole run, >= 1.

  Returns:
    A float32 scalar in (0, 1].

  Example:
    >>> float(kl_warmup(0, steps_per_epoch=10, num_epochs=4))
    0.5

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025 (loss of Sec. 5);
    code https://github.com/ljb121002/SSVI (``min(2 * epoch / epochs, 1)``).
  """
  for name, v in (("steps_per_epoch", steps_per_epoch), ("num_epochs", num_epochs)):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise ValueError(f"{name}: must be an int >= 1, got {v!r}")
  epoch = jnp.asarray(step) // steps_per_epoch + 1
  return jnp.minimum(2.0 * epoch.astype(jnp.float32) / num_epochs, 1.0)
