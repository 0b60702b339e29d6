"""Mean-field Gaussian dense and convolution layers (Flax NNX) over a sparse set of active weights.

Each kernel entry has a posterior N(mu, sigma^2) with sigma = softplus(rho). An entry is active iff
its rho is non-zero (the authors' convention); inactive entries contribute neither mean (the forward
pass reads mu through `active_mean`), variance nor KL. The SSVI transform (`ssvi`) keeps mu = rho = 0
on them while it moves the active set. Biases are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn.bayes import _flops
from jaxdyn.bayes._kl import kl_terms
from jaxdyn.models import conv2d

__all__ = [
    "GaussianConv",
    "GaussianDense",
    "MU_NAME",
    "RHO_NAME",
    "SAMPLING",
    "active_mean",
    "model_kl",
    "posterior_std",
    "random_mask",
    "rho_from_std",
]

MU_NAME = "kernel_mu"
RHO_NAME = "kernel_rho"
SAMPLING = ("local", "weights")
_VAR_EPS = 1e-8  # added to the local-reparameterisation variance, as in the paper


def check_density(density) -> float:
  """``density`` as a float in (0, 1] (Python, NumPy or 0-d array number), else a named ValueError."""
  return _validation.check_real("density", density, lower=0.0, lower_open=True, upper=1.0)


def num_active(size: int, density: float) -> int:
  """Active entries of a layer of ``size`` at ``density``: round(density * size), at least 1."""
  return max(1, min(size, int(round(check_density(density) * size))))


def random_mask(key: jax.Array, shape: Sequence[int], density: float) -> jax.Array:
  """A boolean mask with exactly round(density * size) (>= 1) true entries, uniformly at random.

  Args:
    key: a `jax.random` key.
    shape: the kernel's shape.
    density: the active fraction, in (0, 1].

  Returns:
    A boolean array of ``shape``.

  Example:
    >>> int(random_mask(jax.random.key(0), (10, 10), 0.1).sum())
    10

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025 (random initial mask per layer);
    code https://github.com/ljb121002/SSVI.
  """
  _validation.check_key("key", key)
  shape = tuple(shape)
  for s in shape:
    _validation.check_int("shape", s, lower=1)
  size = 1
  for s in shape:
    size *= s
  k = num_active(size, density)
  return (jax.random.permutation(key, size) < k).reshape(shape)


def rho_from_std(sigma: ArrayLike) -> jax.Array:
  """rho = softplus^-1(sigma) = sigma + log(-expm1(-sigma)), stable for small sigma > 0.

  Concrete ``sigma`` must be > 0 everywhere (checked, NaN rejected, naming ``sigma``); under `jit`
  the values are not checked: sigma = 0 gives -inf, a negative or NaN sigma NaN, +inf gives +inf.
  Elementwise, so an empty array gives an empty array.
  """
  _validation.check_nonnegative("sigma", sigma, strict=True)
  sigma = jnp.asarray(sigma)
  return sigma + jnp.log(-jnp.expm1(-sigma))


def posterior_std(rho: ArrayLike) -> jax.Array:
  """sigma = softplus(rho) on active entries (rho != 0) and exactly 0 on inactive ones.

  A non-finite rho is active and gives a non-finite sigma: NaN for NaN and -inf (softplus(-inf)
  = 0 would silently make an active entry deterministic), +inf for +inf. Elementwise, so an empty
  array gives an empty array.
  """
  rho = jnp.asarray(rho)
  if not jnp.issubdtype(rho.dtype, jnp.floating):
    raise TypeError(f"rho: must be a floating array, got dtype {rho.dtype}")
  sigma = jnp.where(rho > -jnp.inf, jax.nn.softplus(rho), jnp.nan)
  return jnp.where(rho != 0, sigma, 0.0)


def active_mean(mu: ArrayLike, rho: ArrayLike) -> jax.Array:
  """mu on the active set (rho != 0) and exactly 0 elsewhere, with a dense straight-through gradient.

  The value is where(rho != 0, mu, 0); the gradient with respect to mu is 1 everywhere, so
  d loss / d mu at an inactive entry is the dense gradient that SSVI's addition step ranks, while
  the output never depends on an inactive finite mu (even one an optimizer without `ssvi` has
  moved). A NaN or an infinity in ``mu`` or ``rho`` (active or not) gives NaN there; an empty
  array gives an empty array.
  """
  _validation.check_same_shape("rho", rho, "mu", mu)
  mu = jnp.asarray(mu)
  rho = jax.lax.stop_gradient(jnp.asarray(rho))
  # 0 * rho is exactly (+-)0 for a finite rho and NaN otherwise: the NaN policy at no extra pass.
  return jnp.where(rho != 0, mu, mu - jax.lax.stop_gradient(mu)) + (0 * rho).astype(mu.dtype)


class _GaussianKernel(nnx.Module):
  """Shared initialisation, forward pass and KL of a sparse mean-field Gaussian kernel."""

  def _init_kernel(self, shape, *, density, use_bias, mu_init_std, sigma_init, rngs):
    self.density = check_density(density)
    if mu_init_std is not None:
      mu_init_std = _validation.check_real("mu_init_std", mu_init_std, lower=0.0, lower_open=True)
    if isinstance(sigma_init, (str, bytes)) or not hasattr(sigma_init, "__len__") or len(sigma_init) != 2:
      raise ValueError(f"sigma_init: must be a pair (mean > 0, std >= 0), got {sigma_init!r}")
    sigma_mean = _validation.check_real("sigma_init", sigma_init[0], lower=0.0, lower_open=True)
    sigma_std = _validation.check_real("sigma_init", sigma_init[1], lower=0.0)
    fan_in = 1
    for s in shape[:-1]:
      fan_in *= s
    std = mu_init_std if mu_init_std is not None else fan_in**-0.5
    k_mu, k_sigma, k_mask = jax.random.split(rngs.params(), 3)
    mu = std * jax.random.normal(k_mu, shape)
    # sigma0 = |N(m, s)|, floored at 1e-6 so that rho is finite (the authors redraw instead).
    sigma0 = jnp.maximum(jnp.abs(sigma_mean + sigma_std * jax.random.normal(k_sigma, shape)), 1e-6)
    rho = rho_from_std(sigma0)
    if self.density < 1.0:
      mask = random_mask(k_mask, shape, self.density)
      mu, rho = jnp.where(mask, mu, 0.0), jnp.where(mask, rho, 0.0)
    self.kernel_mu = nnx.Param(mu)
    self.kernel_rho = nnx.Param(rho)
    self.bias = nnx.Param(jnp.zeros((shape[-1],))) if use_bias else None

  @property
  def mask(self) -> jax.Array:
    """The active entries (rho != 0)."""
    return self.kernel_rho[...] != 0

  def kl(self, *, prior_std: float) -> jax.Array:
    """Closed-form KL of the active entries to N(0, prior_std^2) (`gaussian_kl`, unchecked values).

    Non-finite parameters give a non-finite KL; an active entry whose sigma underflows to 0
    (rho below about -88 in float32) gives +inf.
    """
    s0 = _validation.check_real("prior_std", prior_std, lower=0.0, lower_open=True)
    rho = self.kernel_rho[...]
    mu = jnp.asarray(self.kernel_mu[...], jnp.result_type(self.kernel_mu[...], jnp.float32))
    return kl_terms(mu, posterior_std(rho).astype(mu.dtype), s0, rho != 0)

  def _mean_kernel(self):
    return active_mean(self.kernel_mu[...], self.kernel_rho[...])

  def _sample_kernel(self, key):
    mu = self._mean_kernel()
    return mu + posterior_std(self.kernel_rho[...]) * jax.random.normal(key, mu.shape, mu.dtype)

  def _forward(self, x, op, kind: str, *, key, sampling: str) -> jax.Array:
    """op(x, W) with W the mean kernel (no key), one sample of it, or the local reparameterisation."""
    _validation.check_choice("sampling", sampling, SAMPLING)
    if key is not None:
      _validation.check_key("key", key)
    mu = self._mean_kernel()
    if key is None:
      y = op(x, mu)
    elif sampling == "weights":
      y = op(x, self._sample_kernel(key))
    else:
      sigma = posterior_std(self.kernel_rho[...])
      mean = op(x, mu)
      std = jnp.sqrt(op(x * x, sigma * sigma) + _VAR_EPS)
      y = mean + std * jax.random.normal(key, mean.shape, mean.dtype)
    _flops.record(self, kind, y.shape)
    return y if self.bias is None else y + self.bias[...]


class GaussianDense(_GaussianKernel):
  """Mean-field Gaussian dense layer over a sparse active set, with the local reparameterisation.

  Training (``key`` given, ``sampling="local"``): out = x W_mu + sqrt((x^2) W_sigma^2 + 1e-8) * eps
  + b, eps ~ N(0, I) per example and unit, W_sigma = softplus(W_rho) on active entries, 0 elsewhere.
  ``sampling="weights"`` draws one W = W_mu + W_sigma * eps for the whole batch instead; with
  ``key=None`` the layer uses the mean weights. Init: mu ~ N(0, mu_init_std^2) (None: 1/sqrt(fan_in)),
  sigma0 = |N(m, s^2)| with ``sigma_init = (m, s)``, rho = softplus^-1(sigma0), then a random mask
  keeps round(density * size) entries (density 1: no mask). The forward pass uses `active_mean`:
  mu on the active set, 0 elsewhere, with a straight-through gradient, so d loss / d mu is the dense
  gradient that SSVI's addition step needs and an inactive mu never changes the output, even when
  an optimizer without `ssvi` moves it (a fixed random mask is ``density < 1`` without `ssvi`).

  Args:
    in_features: input width.
    out_features: output width.
    density: active fraction of the kernel, in (0, 1].
    use_bias: a deterministic bias.
    mu_init_std: std of the initial means (0.01 in the paper's ResNet), or None for 1/sqrt(fan_in).
    sigma_init: (mean, std) of the folded normal of the initial sigma; the paper's (6e-4, 5e-4).
    rngs: ``nnx.Rngs`` with a ``params`` stream.

  Returns:
    The module; ``layer(x, key=None, sampling="local")`` gives ``(..., out_features)``. ``x`` must
    have ``in_features`` entries on its last axis (checked, naming ``x``); ``key``, when given, is
    checked by name. The layer has no training mode of its own: a key samples, no key means the
    mean weights (the Bayesian models decide by their mode). Rows are independent: an empty batch
    gives an empty output, and a NaN or an infinity in a row of ``x`` gives a non-finite output row.

  Example:
    >>> layer = GaussianDense(4, 3, density=0.5, rngs=nnx.Rngs(0))
    >>> int(layer.mask.sum()), layer(jnp.ones((2, 4)), key=jax.random.key(1)).shape
    (6, (2, 3))

  References:
    Li et al., "Training Bayesian Neural Networks with Sparse Subspace Variational Inference",
    ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
    Kingma et al., "Variational Dropout and the Local Reparameterization Trick", NeurIPS 2015,
    https://arxiv.org/abs/1506.02557.
  """

  def __init__(self, in_features: int, out_features: int, *, density: float = 1.0,
               use_bias: bool = True, mu_init_std: float | None = 0.01,
               sigma_init: tuple[float, float] = (6e-4, 5e-4), rngs: nnx.Rngs):
    self.in_features = _validation.check_int("in_features", in_features, lower=1)
    out_features = _validation.check_int("out_features", out_features, lower=1)
    self._init_kernel((self.in_features, out_features), density=density, use_bias=use_bias,
                      mu_init_std=mu_init_std, sigma_init=sigma_init, rngs=rngs)

  def __call__(self, x: jax.Array, *, key: jax.Array | None = None, sampling: str = "local") -> jax.Array:
    if not np.shape(x) or np.shape(x)[-1] != self.in_features:
      raise ValueError(f"x: must have in_features = {self.in_features} entries on its last axis, got shape "
                       f"{np.shape(x)}")
    return self._forward(x, jnp.matmul, "dense", key=key, sampling=sampling)


_PADDINGS = ("SAME", "SAME_LOWER", "VALID")
_DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


class GaussianConv(_GaussianKernel):
  """Mean-field Gaussian convolution over a sparse active set, with the local reparameterisation.

  Training (``key`` given, ``sampling="local"``): out = conv(x, mu) + sqrt(conv(x^2, sigma^2) + 1e-8)
  * eps + b, eps drawn per example, position and channel; ``sampling="weights"`` draws one kernel
  for the batch (the exact posterior predictive for Monte Carlo averaging); ``key=None`` uses the
  means. Inputs are channels-last with 1, 2 or 3 spatial axes (``len(kernel_size)``). Initialisation
  and the active-set convention as in `GaussianDense`.

  Args:
    in_features: input channels.
    out_features: output channels.
    kernel_size: spatial size of the kernel, e.g. ``(3, 3)``.
    strides: an int or one per spatial axis.
    padding: "SAME", "VALID" or explicit pairs, as in `jax.lax.conv_general_dilated`.
    density: active fraction of the kernel, in (0, 1].
    use_bias: a deterministic bias.
    mu_init_std: std of the initial means, or None for 1/sqrt(fan_in).
    sigma_init: (mean, std) of the folded normal of the initial sigma.
    rngs: ``nnx.Rngs`` with a ``params`` stream.

  Returns:
    The module; ``conv(x, key=None, sampling="local")`` gives ``(batch, *spatial_out, out_features)``.
    ``x`` must be ``(batch, *spatial, in_features)`` with ``len(kernel_size)`` spatial axes (checked,
    naming ``x``); keys, empty batches and non-finite inputs as in `GaussianDense`.

  Example:
    >>> conv = GaussianConv(3, 8, (3, 3), density=0.2, rngs=nnx.Rngs(0))
    >>> conv(jnp.ones((2, 5, 5, 3)), key=jax.random.key(1)).shape
    (2, 5, 5, 8)

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: Sequence[int], *,
               strides: int | Sequence[int] = 1, padding: str | Sequence[tuple[int, int]] = "SAME",
               density: float = 1.0, use_bias: bool = False, mu_init_std: float | None = 0.01,
               sigma_init: tuple[float, float] = (6e-4, 5e-4), rngs: nnx.Rngs):
    if isinstance(kernel_size, (str, bytes)) or not hasattr(kernel_size, "__len__") or (
        len(kernel_size) not in _DIMENSION_NUMBERS):
      raise ValueError(f"kernel_size: must have 1 to 3 entries, got {kernel_size!r}")
    kernel_size = tuple(_validation.check_int("kernel_size", k, lower=1) for k in kernel_size)
    self.in_features = _validation.check_int("in_features", in_features, lower=1)
    out_features = _validation.check_int("out_features", out_features, lower=1)
    if np.ndim(strides) != 0:
      if len(strides) != len(kernel_size):
        raise ValueError(f"strides: must be an int >= 1 or one per spatial axis ({len(kernel_size)}), got "
                         f"{strides!r}")
      self.strides = tuple(_validation.check_int("strides", s, lower=1) for s in strides)
    else:
      self.strides = (_validation.check_int("strides", strides, lower=1),) * len(kernel_size)
    if isinstance(padding, str):
      if padding.upper() not in _PADDINGS:  # lax reads the names case-insensitively
        _validation.check_choice("padding", padding, _PADDINGS)
      self.padding = padding.upper()
    else:
      try:
        pairs = tuple(tuple(p) for p in padding)
      except TypeError as e:
        raise ValueError(f"padding: must be one of {list(_PADDINGS)} or (low, high) pairs, got {padding!r}") from e
      if len(pairs) != len(kernel_size) or any(len(p) != 2 for p in pairs):
        raise ValueError(f"padding: must hold one (low, high) pair per spatial axis ({len(kernel_size)}), got "
                         f"{padding!r}")
      self.padding = tuple(tuple(_validation.check_int("padding", v) for v in p) for p in pairs)
    self._init_kernel((*kernel_size, self.in_features, out_features), density=density, use_bias=use_bias,
                      mu_init_std=mu_init_std, sigma_init=sigma_init, rngs=rngs)

  def _conv(self, x, w):
    if w.ndim == 4 and (isinstance(self.padding, str) or min(min(p) for p in self.padding) >= 0):
      # 2-D: jaxdyn.models' convolution, lowered per backend and shape (fast small maps on XLA:CPU).
      return conv2d(x, w, strides=self.strides, padding=self.padding)
    return jax.lax.conv_general_dilated(x, w, self.strides, self.padding,
                                        dimension_numbers=_DIMENSION_NUMBERS[w.ndim - 2])

  def __call__(self, x: jax.Array, *, key: jax.Array | None = None, sampling: str = "local") -> jax.Array:
    ndim = len(self.strides) + 2
    if np.ndim(x) != ndim or np.shape(x)[-1] != self.in_features:
      raise ValueError(f"x: must be (batch, {len(self.strides)} spatial axes, in_features = {self.in_features}), "
                       f"got shape {np.shape(x)}")
    return self._forward(x, self._conv, "conv", key=key, sampling=sampling)


def gaussian_layers(model: nnx.Module) -> list[tuple[str, _GaussianKernel]]:
  """The model's Gaussian layers with their paths, in graph order."""
  return [("/".join(str(p) for p in path), node) for path, node in nnx.iter_graph(model)
          if isinstance(node, _GaussianKernel)]


def model_kl(model: nnx.Module, *, prior_std: float) -> jax.Array:
  """Sum of the closed-form KL of every Gaussian layer's active entries to N(0, prior_std^2).

  Args:
    model: an NNX module containing `GaussianDense` / `GaussianConv` layers.
    prior_std: s0 > 0 (0.005 in the paper).

  Returns:
    A scalar (nats). The parameters' values are not checked (it runs inside the loss): a NaN or an
    infinity in any kernel gives a non-finite KL, as does an active entry whose sigma underflows to
    0 (rho below about -88 in float32).

  Example:
    >>> layer = GaussianDense(4, 3, rngs=nnx.Rngs(0))
    >>> bool(model_kl(layer, prior_std=0.005) > 0)
    True

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """
  _validation.check_real("prior_std", prior_std, lower=0.0, lower_open=True)
  if not isinstance(model, nnx.Module):
    raise TypeError(f"model: must be an nnx.Module with GaussianDense or GaussianConv layers, got "
                    f"{type(model).__name__}")
  layers = gaussian_layers(model)
  if not layers:
    raise ValueError("model: has no GaussianDense or GaussianConv layer")
  return sum(layer.kl(prior_std=prior_std) for _, layer in layers)
