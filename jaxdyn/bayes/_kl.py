"""Closed-form KL of a mean-field Gaussian posterior to a N(0, s0^2) prior, and SSVI's KL warm-up."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxdyn import _validation

__all__ = ["gaussian_kl", "kl_warmup"]


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
  """True when an array of ``shape`` broadcasts to ``target`` (without growing it)."""
  try:
    return jnp.broadcast_shapes(shape, target) == tuple(target)
  except ValueError:
    return False


def _check_active_sigma(sigma, mask) -> None:
  """Eager: sigma > 0 wherever ``mask`` (or everywhere) is true; tracers pass unchecked."""
  if not (_validation.is_concrete(sigma) and _validation.is_concrete(mask)):
    return
  s = np.asarray(sigma, np.float64)
  active = np.broadcast_to(np.ones((), bool) if mask is None else np.asarray(mask, bool),
                           np.broadcast_shapes(s.shape, np.shape(mask)))
  s = np.broadcast_to(s, active.shape)
  if np.any(active & (s == 0)):
    idx = tuple(int(i) for i in np.argwhere(active & (s == 0))[0])
    raise ValueError(f"sigma: must be > 0 on the active entries (where mask is true), found 0 at index {idx}")


def kl_terms(mu: jax.Array, sigma: jax.Array, s0: float, active: jax.Array) -> jax.Array:
  """Unchecked summed KL over ``active`` (shared by `gaussian_kl` and the layers' ``kl``).

  Written in sigma / s0 and mu / s0 so that any scale s0 that keeps those ratios representable
  (1e-30 as much as 1e30 in float32) computes; s0^2 itself may underflow. Inactive entries add
  0 * (mu + sigma): exactly 0 with a zero gradient for finite values, NaN for a non-finite one.
  """
  r = jnp.where(active, sigma, s0) / s0
  m = jnp.where(active, mu, 0.0) / s0
  kl = -jnp.log(r) + 0.5 * (r * r + m * m) - 0.5
  return jnp.sum(jnp.where(active, kl, 0.0 * (mu + sigma)))


def gaussian_kl(mu: ArrayLike, sigma: ArrayLike, *, prior_std: float,
                mask: ArrayLike | None = None) -> jax.Array:
  """Sum over (active) entries of KL(N(mu, sigma^2) || N(0, s0^2)), in closed form.

  KL = log(s0 / sigma) + (sigma^2 + mu^2) / (2 s0^2) - 1/2 per entry; entries where ``mask`` is
  false contribute exactly 0 (and no gradient), whatever their finite sigma, so inactive entries
  with sigma = 0 give no inf/NaN.

  Concrete inputs are checked: sigma >= 0 and finite-or-inf everywhere (NaN is rejected) and
  sigma > 0 on the active entries (``"sigma: must be > 0 on the active entries"``). Under ``jit``
  (values unknown) an active sigma = 0 gives +inf and a negative one NaN; a NaN or an infinity in
  ``mu`` or ``sigma`` (active or not) gives a non-finite sum, never a finite one. Empty arrays
  give 0.

  Args:
    mu: posterior means.
    sigma: posterior standard deviations, > 0 on the active entries.
    prior_std: s0 > 0 (a finite real number).
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
  s0 = _validation.check_real("prior_std", prior_std, lower=0.0, lower_open=True)
  _validation.check_nonnegative("sigma", sigma)
  mu = jnp.asarray(mu, dtype=jnp.result_type(mu, sigma, jnp.float32))
  sigma = jnp.asarray(sigma, dtype=mu.dtype)
  try:
    shape = jnp.broadcast_shapes(mu.shape, sigma.shape)
  except ValueError as e:
    raise ValueError(f"sigma: shape {sigma.shape} does not broadcast against mu's {mu.shape}") from e
  if mask is not None and not _broadcasts_to(jnp.shape(mask), shape):
    raise ValueError(f"mask: shape {jnp.shape(mask)} does not broadcast to mu's {shape}")
  _check_active_sigma(sigma, mask)
  active = jnp.ones(shape, bool) if mask is None else jnp.broadcast_to(jnp.asarray(mask, bool), shape)
  return kl_terms(jnp.broadcast_to(mu, shape), jnp.broadcast_to(sigma, shape), s0, active)


def kl_warmup(step: ArrayLike, *, steps_per_epoch: int, num_epochs: int) -> jax.Array:
  """SSVI's KL weight at a (0-based) optimizer step: min(2 * epoch / num_epochs, 1).

  epoch = step // steps_per_epoch + 1 counts from 1, as the authors' training loop does, so the
  weight starts at 2 / num_epochs and reaches 1 at half of training. The weight is clipped to
  [0, 1]: a concrete negative ``step`` raises (``"step: ..."``); under ``jit`` one gives weight 0.

  Args:
    step: the 0-based iteration number(s), integers >= 0 (traced or concrete; an array gives one
      weight per step).
    steps_per_epoch: optimizer steps per epoch, an int >= 1.
    num_epochs: epochs of the whole run, an int >= 1.

  Returns:
    A float32 array of ``step``'s shape, in [0, 1] ((0, 1] for valid steps).

  Example:
    >>> float(kl_warmup(0, steps_per_epoch=10, num_epochs=4))
    0.5

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025 (loss of Sec. 5);
    code https://github.com/ljb121002/SSVI (``min(2 * epoch / epochs, 1)``).
  """
  steps_per_epoch = _validation.check_int("steps_per_epoch", steps_per_epoch, lower=1)
  num_epochs = _validation.check_int("num_epochs", num_epochs, lower=1)
  if np.ndim(step) == 0 and not isinstance(step, jax.Array):  # a Python or NumPy number
    step = _validation.check_int("step", step, lower=0, upper=np.iinfo(np.int32).max)
  step = jnp.asarray(step)
  if not jnp.issubdtype(step.dtype, jnp.integer):
    raise ValueError(f"step: must be integer iteration numbers >= 0, got dtype {step.dtype}")
  if _validation.is_concrete(step) and step.size and int(jnp.min(step)) < 0:
    raise ValueError(f"step: must be integer iteration numbers >= 0, got {int(jnp.min(step))}")
  if isinstance(steps_per_epoch, int) and steps_per_epoch > np.iinfo(step.dtype).max:
    epoch = jnp.ones_like(step)  # no representable step reaches the second epoch
  else:
    epoch = step // steps_per_epoch + 1
  # float(num_epochs): any accepted int (even beyond int32) divides in float32 without overflow.
  return jnp.clip(2.0 * epoch.astype(jnp.float32) / float(num_epochs), 0.0, 1.0)
