"""EDM: the denoiser's preconditioning, the training noise levels and loss, and the Heun sampler.

Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM),
NeurIPS 2022, https://arxiv.org/abs/2206.00364; used as-is by Sehwag et al., "Stretching Each Dollar:
Diffusion Training from Scratch on a Micro-Budget", 2024, https://arxiv.org/abs/2407.15811.

The denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)`` wraps a network ``F`` with
(`edm_preconditioning`, EDM Table 1)

.. math::  c_{skip} = \\frac{\\sigma_d^2}{\\sigma^2 + \\sigma_d^2},\\quad
           c_{out} = \\frac{\\sigma \\sigma_d}{\\sqrt{\\sigma^2 + \\sigma_d^2}},\\quad
           c_{in} = \\frac{1}{\\sqrt{\\sigma^2 + \\sigma_d^2}},\\quad c_{noise} = \\tfrac14 \\ln \\sigma.

Training draws ``ln sigma ~ N(P_mean, P_std^2)`` (`edm_sigma_sample`) and minimises
``lambda(sigma) ||D(x + sigma n; sigma) - x||^2`` with ``lambda = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2``
(`edm_loss_weight`, `edm_loss`), which makes the effective target of ``F`` unit-variance at every
level. With deferred masking the squared error is averaged over the kept patches only (``keep``), as the
micro-budget code does (its per-pixel loss pooled per patch, then averaged over the unmasked patches).

Sampling integrates the probability-flow ODE ``dx/dsigma = (x - D(x; sigma)) / sigma`` from ``sigma_max``
to 0 over the Karras levels (`karras_sigmas`)
``sigma_i = (sigma_max^{1/rho} + i/(N-1) (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho``, ``sigma_N = 0``,
with Heun's second-order method (EDM Algorithm 1 with ``S_churn = 0``; the last step is an Euler step),
`heun_sampler`. EDM's defaults are ``sigma_data = 0.5``, ``P_mean = -1.2``, ``P_std = 1.2``, ``N = 18``,
``sigma_min = 0.002``, ``sigma_max = 80``, ``rho = 7``; the micro-budget code keeps EDM's sampler and
changes only settings for its latents (``sigma_data = 0.9``, ``P_mean = -0.6``), which are arguments here.
The sampler runs in the array's dtype (float32 by default; EDM's and the authors' loops use float64) and
has no stochastic churn (``S_churn = 0`` is also the authors' setting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation

__all__ = ["EDMScalings", "edm_loss", "edm_loss_weight", "edm_preconditioning", "edm_sigma_sample", "heun_sampler",
           "karras_sigmas"]


class EDMScalings(NamedTuple):
  """The four preconditioning coefficients of `edm_preconditioning`, each shaped like ``sigma``."""

  c_skip: jax.Array
  c_out: jax.Array
  c_in: jax.Array
  c_noise: jax.Array


def _check_sigma_data(sigma_data):
  return _validation.check_real("sigma_data", sigma_data, lower=1e-3, upper=1e3)


def _sigma_array(name, sigma):
  sigma = _validation.check_floating(name, sigma)
  _validation.check_nonnegative(name, sigma, strict=True)
  return sigma


def edm_preconditioning(sigma: jax.Array, *, sigma_data: float = 0.5) -> EDMScalings:
  """EDM's ``c_skip, c_out, c_in, c_noise`` at noise levels ``sigma`` (module docstring).

  Args:
    sigma: noise levels ``> 0`` (any shape; a NaN propagates under ``jit``).
    sigma_data: standard deviation of the data, in [1e-3, 1e3].

  Returns:
    `EDMScalings`, each entry with the shape of ``sigma``.

  Example:
    >>> s = edm_preconditioning(0.5, sigma_data=0.5)
    >>> [round(float(v), 4) for v in s]
    [0.5, 0.3536, 1.4142, -0.1733]
  """
  sigma = _sigma_array("sigma", sigma)
  sd = _check_sigma_data(sigma_data)
  total = sigma * sigma + sd * sd
  return EDMScalings(c_skip=sd * sd / total, c_out=sigma * sd * jax.lax.rsqrt(total), c_in=jax.lax.rsqrt(total),
                     c_noise=jnp.log(sigma) / 4)


def edm_loss_weight(sigma: jax.Array, *, sigma_data: float = 0.5) -> jax.Array:
  """``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2``.

  Example:
    >>> float(edm_loss_weight(0.5, sigma_data=0.5))
    8.0
  """
  sigma = _sigma_array("sigma", sigma)
  sd = _check_sigma_data(sigma_data)
  return (sigma * sigma + sd * sd) / (sigma * sd) ** 2


def _check_shape(shape) -> tuple[int, ...]:
  if isinstance(shape, (tuple, list)):
    return tuple(_validation.check_int("shape", s, lower=0) for s in shape)
  return (_validation.check_int("shape", shape, lower=0),)


def edm_sigma_sample(key: jax.Array, shape: int | tuple[int, ...], *, p_mean: float = -1.2,
                     p_std: float = 1.2) -> jax.Array:
  """Training noise levels ``sigma = exp(P_mean + P_std n)``, ``n ~ N(0, 1)`` (log-normal), float32.

  Args:
    key: a `jax.random` key.
    shape: the output shape (an int or a tuple of ints >= 0), e.g. the batch size.
    p_mean: ``P_mean`` in [-10, 10] (EDM: -1.2; the micro-budget code: -0.6).
    p_std: ``P_std`` in [0, 5] (EDM and the micro-budget code: 1.2).

  Example:
    >>> import jax
    >>> edm_sigma_sample(jax.random.key(0), 4).shape
    (4,)
  """
  _validation.check_key("key", key)
  shape = _check_shape(shape)
  p_mean = _validation.check_real("p_mean", p_mean, lower=-10.0, upper=10.0)
  p_std = _validation.check_real("p_std", p_std, lower=0.0, upper=5.0)
  return jnp.exp(p_mean + p_std * jax.random.normal(key, shape, jnp.float32))


def _patch_means(sq: jax.Array, p: int) -> jax.Array:
  """``(B, H, W, C) -> (B, T)``: the mean of each p x p patch over its pixels and channels (raster order)."""
  from jaxdyn.models._dit import _patchify  # noqa: PLC0415  (one patch layout, the model's)
  return _patchify(sq, p).mean(-1)


def edm_loss(denoised: jax.Array, clean: jax.Array, sigma: jax.Array, *, sigma_data: float = 0.5,
             keep: jax.Array | None = None, patch_size: int = 1) -> jax.Array:
  """The EDM loss ``mean_b lambda(sigma_b) mean_{kept}(D_b - x_b)^2`` (module docstring).

  Args:
    denoised: ``D(x + sigma n; sigma)``, ``(B, ...)``; with ``keep``, images ``(B, H, W, C)``.
    clean: the clean data ``x``, the shape of ``denoised``.
    sigma: ``(B,)`` noise levels ``> 0``.
    sigma_data: as in `edm_preconditioning`.
    keep: ``(B, K)`` indices of the kept ``patch_size`` x ``patch_size`` patches (raster order, as
      `jaxdyn.models.DiT` and `random_keep_indices`), or None: every entry counts. With ``keep`` the
      squared error is averaged over the pixels and channels of the kept patches only: the outputs of
      masked patches get zero gradient.
    patch_size: the patch side ``p`` for ``keep``; must divide ``H`` and ``W``.

  Returns:
    A scalar. An empty batch is rejected.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.zeros((1, 2, 2, 1)); d = jnp.array([[[[1.0], [0.0]], [[0.0], [0.0]]]])
    >>> float(edm_loss(d, x, jnp.array([0.5]), sigma_data=0.5))  # 8 * mean(1, 0, 0, 0)
    2.0
    >>> float(edm_loss(d, x, jnp.array([0.5]), sigma_data=0.5, keep=jnp.array([[0]])))  # the kept pixel only
    8.0
  """
  _validation.check_same_shape("clean", clean, "denoised", denoised)
  if np.ndim(denoised) < 1:
    raise ValueError(f"denoised: must have a leading batch axis, got shape {np.shape(denoised)}")
  _validation.check_nonempty("denoised", denoised)
  b = np.shape(denoised)[0]
  if tuple(np.shape(sigma)) != (b,):
    raise ValueError(f"sigma: must have shape ({b},) (one level per example), got {tuple(np.shape(sigma))}")
  weight = edm_loss_weight(sigma, sigma_data=sigma_data)
  d = _validation.check_floating("denoised", denoised)
  x = _validation.check_floating("clean", clean)
  sq = jnp.square(d - x)
  if keep is None:
    per = sq.reshape(b, -1).mean(-1)
    return jnp.mean(weight * per)
  p = _validation.check_int("patch_size", patch_size, lower=1)
  if sq.ndim != 4 or sq.shape[1] % p or sq.shape[2] % p:
    raise ValueError(f"patch_size: must divide the height and width of images (B, H, W, C), got {p} for "
                     f"denoised of shape {tuple(sq.shape)}")
  t = (sq.shape[1] // p) * (sq.shape[2] // p)
  kshape = tuple(np.shape(keep))
  if len(kshape) != 2 or kshape[0] != b or not 1 <= kshape[1] <= t:
    raise ValueError(f"keep: must be patch indices of shape ({b}, K) with 1 <= K <= {t}, got shape {kshape}")
  kdtype = keep.dtype if hasattr(keep, "dtype") else np.asarray(keep).dtype
  if not jnp.issubdtype(kdtype, jnp.integer):
    raise TypeError(f"keep: must be integer patch indices, got dtype {kdtype}")
  if _validation.is_concrete(keep):
    k = np.asarray(keep)
    if k.min() < 0 or k.max() >= t:
      raise ValueError(f"keep: must lie in [0, {t}), got values in [{k.min()}, {k.max()}]")
  patches = _patch_means(sq, p)
  kept = jnp.take_along_axis(patches, jnp.asarray(keep), axis=1, mode="fill", fill_value=jnp.nan)
  return jnp.mean(weight * kept.mean(-1))


def karras_sigmas(num_steps: int, *, sigma_min: float = 0.002, sigma_max: float = 80.0,
                  rho: float = 7.0) -> jax.Array:
  """The Karras noise levels ``(sigma_0 = sigma_max, ..., sigma_{N-1} = sigma_min, sigma_N = 0)``, float32.

  Args:
    num_steps: ``N >= 1`` (``N = 1``: ``(sigma_max, 0)``).
    sigma_min: ``> 0``, below ``sigma_max``.
    sigma_max: ``<= 1e4``.
    rho: in [0.1, 100] (EDM: 7; ``rho = 1`` spaces the levels evenly).

  Example:
    >>> [round(float(s), 4) for s in karras_sigmas(3, sigma_min=1.0, sigma_max=4.0, rho=2.0)]
    [4.0, 2.25, 1.0, 0.0]
  """
  n = _validation.check_int("num_steps", num_steps, lower=1)
  smax = _validation.check_real("sigma_max", sigma_max, lower=0.0, upper=1e4, lower_open=True)
  smin = _validation.check_real("sigma_min", sigma_min, lower=0.0, upper=smax, lower_open=True, upper_open=True)
  rho = _validation.check_real("rho", rho, lower=0.1, upper=100.0)
  i = np.arange(n, dtype=np.float64)
  frac = i / (n - 1) if n > 1 else i
  s = (smax ** (1 / rho) + frac * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
  return jnp.asarray(np.append(s, 0.0), jnp.float32)


def heun_sampler(denoiser: Callable[[jax.Array, jax.Array], jax.Array], noise: jax.Array, *, num_steps: int = 18,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                 second_order: bool = True) -> jax.Array:
  """EDM's deterministic sampler: Heun steps of the probability-flow ODE over `karras_sigmas`.

  From ``x_0 = sigma_max * noise``, for ``i = 0 .. N-1`` with ``d_i = (x_i - D(x_i; sigma_i)) / sigma_i``:
  ``x_{i+1} = x_i + (sigma_{i+1} - sigma_i) d_i`` (Euler), then, unless ``sigma_{i+1} = 0``, the
  trapezoidal correction ``x_{i+1} = x_i + (sigma_{i+1} - sigma_i)(d_i + d'_{i+1}) / 2`` with ``d'`` the
  slope at the Euler point. ``2N - 1`` denoiser calls; jittable (a ``lax.fori_loop``).

  Args:
    denoiser: ``D(x, sigma) -> x``-shaped denoised estimate, ``sigma`` a scalar array (close over
      class labels or other conditioning).
    noise: standard normal draws, ``(B, ...)``, a floating array.
    num_steps: ``N >= 1``.
    sigma_min, sigma_max, rho: as in `karras_sigmas`.
    second_order: False gives plain Euler steps (``N`` calls), for comparison.

  Returns:
    The samples, the shape and dtype of ``noise``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> exact = lambda x, s: x / (1 + s ** 2)  # the ideal denoiser of N(0, 1) data
    >>> z = jax.random.normal(jax.random.key(0), (4000,))
    >>> x = heun_sampler(exact, z, num_steps=64)  # the exact ODE maps z to z (sigma_max^2 >> 1)
    >>> round(float(jnp.std(x) / jnp.std(z)), 2)
    1.0
  """
  if not callable(denoiser):
    raise TypeError(f"denoiser: must be callable D(x, sigma), got {type(denoiser).__name__}")
  sigmas = karras_sigmas(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
  x = _validation.check_floating("noise", noise)
  if x.ndim < 1:
    raise ValueError(f"noise: must have a leading batch axis, got shape {x.shape}")
  sigmas = sigmas.astype(x.dtype)
  n = sigmas.shape[0] - 1

  def slope(y, s):
    return (y - denoiser(y, s).astype(y.dtype)) / s

  def heun(i, y):
    s, s_next = sigmas[i], sigmas[i + 1]
    d = slope(y, s)
    y_euler = y + (s_next - s) * d
    return y + (s_next - s) * 0.5 * (d + slope(y_euler, s_next))

  def euler(i, y):
    return y + (sigmas[i + 1] - sigmas[i]) * slope(y, sigmas[i])

  x = x * sigmas[0]
  x = jax.lax.fori_loop(0, n - 1, heun if second_order else euler, x)
  return euler(n - 1, x)
