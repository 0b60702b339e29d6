"""NUPES: non-uniform post-training quantization of weights through a power automorphism.

A kernel ``w`` (last axis = output channels: Dense ``(in, out)``, Conv ``(*k, in, out)``) is stored on
the symmetric b-bit integer grid {-Q, ..., Q}, Q = 2^(b-1) - 1, *after* the power automorphism

    q_a(w) = sign(w) |w|^a,   q_a^{-1}(t) = sign(t) |t|^(1/a),   a > 0,

which keeps products multiplicative (q_a(xy) = q_a(x) q_a(y)), so the integer codes still multiply
as weights do. Per output channel c, with m_c = max_i |w_ic|:

    v = clip(round(sign(w) |w / s|^a), -Q, Q),   s_c = m_c / Q^(1/a),
    w_hat = s sign(v) |v|^(1/a)  (= m_c sign(v) (|v| / Q)^(1/a)),

so q_a(w / s) lands on the uniform grid (its largest level is the channel's largest weight) and the
grid in weight space is denser near 0 for a < 1. For a = 1 this is uniform round-to-nearest
(`quantize_uniform`, s = m / Q, w_hat = s v) and the code takes that path literally, without a
power, so the two agree bit for bit. Rounding is ``jnp.round`` (half to even) throughout.

What follows which source:

- The automorphism, its exponent searched per layer by minimising a reconstruction error over a
  (locally convex) 1-D problem, and the remark that a < 1 suits bell-shaped weights: PowerQuant
  (Yvinec, Dapogny, Cord, Bailly, ICLR 2023, https://arxiv.org/abs/2301.09858), on which NUPES
  builds. PowerQuant solves the 1-D problem with a local optimiser; `search_exponent` scans a grid
  (`EXPONENTS`, 0.25 ... 1.5 by 0.05) instead, which is exact on the grid and jittable. Ties go to
  the exponent closest to 1.
- NUPES (Yvinec, Dapogny, Bailly, https://arxiv.org/abs/2308.05600; what we could read of it is its
  abstract and summaries): the quantized weights are learned over the *whole* grid from calibration
  data, not only rounded up or down as AdaRound does, and the exponent is optimised jointly "by
  alleviating the numerical instabilities". The parametrisation below is ours (`nupes_layer`):
  continuous latent codes z in the transformed space, initialised at sign(w) |w / s|^a, rounded
  and clipped in the forward pass with a straight-through gradient; the exponent as
  a = 0.1 + softplus(theta) (clamped to <= 10), with the gradient with respect to a taken through
  the hard dequantized weights (a safe power, 0^(1/a) = 0 with zero gradient) and that with
  respect to z through the continuous dequantization at max(|z|, 1e-3), so neither log 0 nor
  0^(negative) appears. The channel ranges m are kept fixed (a warps the grid between -m and m).
  Adam (optax) with a cosine-decayed step on the output error, divided by its value at the
  initialisation so that the other term's weight does not depend on the bits or the layer. With
  Adam alone the straight-through codes oscillate across rounding boundaries (Adam moves every
  latent by about the step whatever its gradient) and the error went *up* in our trials, so we add
  the oscillation-dampening term of Nagel et al. (ICML 2022, https://arxiv.org/abs/2203.11086),
  damping (t / T) mean((z - round(z))^2), ramped up over the T steps, which pulls each latent to
  its code as the run ends. The initial exponent is the output-error grid search, and the result is
  never worse on the calibration set than that initialisation (the better of the two is returned).
  Defaults (200 steps, step 0.01 for z and for theta, damping 30) were set on random Dense layers
  at 3 and 4 bits, where they lower the output error 10-20 % below the initialisation with
  independent Gaussian inputs, and 2-5 times with correlated ones (as activations are).
- The rounding baseline `adaround_layer` follows AdaRound (Nagel et al., ICML 2020,
  https://arxiv.org/abs/2004.10568): rectified sigmoid h(V) = clip(sigmoid(V) (zeta - gamma) +
  gamma, 0, 1) with zeta = 1.1, gamma = -0.1, V initialised so h(V) is the fractional part, the
  regulariser 1 - |2h - 1|^beta after a 20 % warm-up with beta decayed linearly from 20 to 2, Adam,
  then hard rounding (h >= 1/2). Our choices: the regulariser is averaged over the weights and the
  output error is divided by RTN's (so ``regularization``, 3 by default, does not depend on the
  layer's size, scale or bits: the paper's 0.01 is for its unnormalised loss), fewer steps at a
  larger Adam step (500 at 0.01 against 10,000 at 0.001), and the uniform grid is the per-channel
  max-abs one of `quantize_uniform`.

Numerics. The per-channel arithmetic is done on the weights scaled by a power of two (`jnp.frexp`,
`jnp.ldexp`: exact) that brings each channel's largest weight into [0.5, 1), and the relative
errors on values scaled the same way, so no reciprocal or square over- or underflows whatever the
weights' or the outputs' scale. Divisions by a per-channel scale are written as products with its
reciprocal, because XLA:CPU rewrites them so in some fusions and not in others: written out, the
codes and scales are the same bits eagerly, under ``jit`` and inside the learned quantizers. XLA's
max reduction may skip a NaN on CPU; the channel maxima put it back, so a NaN weight always makes
its channel's scale NaN.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdyn import _validation

__all__ = ["EXPONENTS", "QuantizedTensor", "adaround_layer", "dequantize", "inverse_power_transform", "nupes_layer",
           "power_transform", "quantize_power", "quantize_tree", "quantize_uniform", "search_exponent"]

EXPONENTS = tuple(k / 20 for k in range(5, 31))  # 0.25, 0.3, ..., 1.5; 1.0 exactly
_A_MIN, _A_MAX = 0.1, 10.0  # the accepted exponents
_Z_FLOOR = 1e-3  # |z| floor (in grid units) of the straight-through gradient's continuous branch
_ZETA, _GAMMA = 1.1, -0.1  # AdaRound's rectified sigmoid
_BETA_START, _BETA_END, _WARMUP = 20.0, 2.0, 0.2  # AdaRound's annealing


@functools.partial(jax.tree_util.register_dataclass, data_fields=("values", "scale", "exponent"),
                   meta_fields=("bits",))
@dataclasses.dataclass(frozen=True)
class QuantizedTensor:
  """A kernel stored as b-bit integer codes: w_hat = scale sign(v) |v|^(1/exponent).

  A PyTree (``bits`` is static), so it passes through ``jit`` and ``tree.map``. `dequantize` gives
  w_hat; with exponent 1 it is ``scale * values``.

  Attributes:
    values: int8 codes v in [-(2^(bits-1) - 1), 2^(bits-1) - 1], the kernel's shape.
    scale: float, one per output channel (the kernel's last axis), in weight units.
    exponent: the power exponent a, a float scalar array (1 for uniform quantization).
    bits: b, an int in [2, 8].
  """

  values: jax.Array
  scale: jax.Array
  exponent: jax.Array
  bits: int


# --- argument checks ------------------------------------------------------------------------------

def _check_bits(bits) -> int:
  return _validation.check_int("bits", bits, lower=2, upper=8)


def _check_kernel(name: str, w) -> jax.Array:
  w = _validation.check_floating(name, w)
  _validation.check_ndim(name, w, (2, 3, 4, 5))
  return w


def _check_exponent(exponent, name: str = "exponent"):
  if jnp.ndim(exponent) != 0:
    raise ValueError(f"{name}: must be a scalar, got shape {jnp.shape(exponent)}")
  return _validation.check_real(name, exponent, lower=_A_MIN, upper=_A_MAX)


def _is_one(a) -> bool:
  """True when the exponent is concretely 1 (then no power is computed at all)."""
  return _validation.is_concrete(a) and float(a) == 1.0


# --- the quantizer --------------------------------------------------------------------------------

def _channel_max(w: jax.Array) -> jax.Array:
  """m_c = max |w| over all axes but the last; 1 where a channel is all zeros, NaN where it holds one.

  (XLA:CPU's vectorised max reduction may skip a NaN, so the NaN is put back explicitly.)
  """
  axes = tuple(range(w.ndim - 1))
  m = jnp.max(jnp.abs(w), axis=axes, initial=0.0)
  m = jnp.where(jnp.any(jnp.isnan(w), axis=axes), jnp.asarray(jnp.nan, m.dtype), m)
  return jnp.where(m == 0, jnp.ones_like(m), m)


def _uniform_scale(m: jax.Array, qmax) -> jax.Array:
  """m / Q, computed as m * fl(1 / Q): a scalar division, then an exactly rounded product.

  XLA:CPU turns a division by a broadcast scalar into a product with its reciprocal in some fusions
  and not in others; writing the product out makes the scales, hence the codes, the same bits
  eagerly, under ``jit`` and inside the learned quantizers.
  """
  return m * (jnp.asarray(1, m.dtype) / jnp.asarray(qmax, m.dtype))


def _divide(w: jax.Array, s: jax.Array) -> jax.Array:
  """w / s per channel as w * (1 / s) (elementwise reciprocal, then a product), for the same reason."""
  return w * (1 / s)


def _normalize(w: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(w', m', m)``: w and its channel maxima m times one power of two per channel, so that m' is
  in [0.5, 1). Exact (only exponents move), so codes computed from w' and m' are those of w and m,
  and no reciprocal over- or underflows whatever the weights' scale (1 / s for a tiny s would be
  inf, and its product with a zero weight NaN)."""
  m = _channel_max(w)
  _, e = jnp.frexp(m)
  return jnp.ldexp(w, -e), jnp.ldexp(m, -e), m


def _rtn_codes(w: jax.Array, qmax) -> tuple[jax.Array, jax.Array]:
  """Uniform round-to-nearest: float codes v = clip(round(w / s), -Q, Q) and scales s = m / Q."""
  w_n, m_n, m = _normalize(w)
  v = jnp.clip(jnp.round(_divide(w_n, _uniform_scale(m_n, qmax))), -qmax, qmax)
  return v, _uniform_scale(m, qmax)


def _power_scale(m: jax.Array, a, qmax) -> jax.Array:
  return m / jnp.power(jnp.asarray(qmax, m.dtype), 1 / jnp.asarray(a, m.dtype))


def _scale(m: jax.Array, a, qmax) -> jax.Array:
  """The scales at exponent ``a``: exactly `_rtn_codes`' where a == 1."""
  return jnp.where(a == 1, _uniform_scale(m, qmax), _power_scale(m, a, qmax))


def _codes(w: jax.Array, a, qmax) -> tuple[jax.Array, jax.Array]:
  """The float codes v and per-channel scales s of ``w`` at exponent ``a``; where a == 1 the values
  are `_rtn_codes`' (computed by the same operations, so the same bits)."""
  w_n, m_n, m = _normalize(w)
  t = qmax * jnp.power(_divide(jnp.abs(w_n), m_n), jnp.asarray(a, w.dtype))  # in [0, Q] for any a
  v = jnp.sign(w) * jnp.clip(jnp.round(t), 0, qmax)
  v_rtn, s_rtn = _rtn_codes(w, qmax)
  return jnp.where(a == 1, v_rtn, v), jnp.where(a == 1, s_rtn, _power_scale(m, a, qmax))


def _dequant(v: jax.Array, s: jax.Array, a) -> jax.Array:
  power = s * jnp.sign(v) * jnp.power(jnp.abs(v), 1 / jnp.asarray(a, s.dtype))
  return jnp.where(a == 1, v * s, power)


def _relative_error(y, y_hat):
  """||y - y_hat||^2 / ||y||^2, with y and y - y_hat first scaled by a power of two that brings
  max |y| into [0.5, 1) (exactly, with `jnp.ldexp`: a division by a huge max |y| would flush to 0),
  so that no square overflows or underflows."""
  c = jnp.max(jnp.abs(y))
  _, e = jnp.frexp(jnp.where(jnp.isfinite(c), c, 1.0))
  d, y = jnp.ldexp(y - y_hat, -e), jnp.ldexp(y, -e)
  return jnp.sum(jnp.square(d)) / (jnp.sum(jnp.square(y)) + jnp.finfo(y.dtype).tiny)


# One compilation per kernel shape (Q and a are traced), instead of one per operation eagerly.
@jax.jit
def _rtn_int8(w, qmax):
  v, s = _rtn_codes(w, qmax)
  return v.astype(jnp.int8), s


@jax.jit
def _power_int8(w, a, qmax):
  v, s = _codes(w, a, qmax)
  return v.astype(jnp.int8), s


@jax.jit
def _dequant_uniform(v, s):
  return v.astype(s.dtype) * s


@jax.jit
def _dequant_power(v, s, a):
  return _dequant(v.astype(s.dtype), s, a)


@jax.jit
def _power(w, a, inverse):
  p = jnp.where(inverse, 1 / a, a).astype(w.dtype)
  return jnp.where(a == 1, w, jnp.sign(w) * jnp.power(jnp.abs(w), p))


def _pack(v: jax.Array, s: jax.Array, a, bits: int) -> QuantizedTensor:
  return QuantizedTensor(values=v.astype(jnp.int8), scale=s, exponent=jnp.asarray(a, s.dtype), bits=bits)


def power_transform(w: jax.Array, exponent: float) -> jax.Array:
  """The power automorphism q_a(w) = sign(w) |w|^a of (R, x), elementwise.

  Args:
    w: a real array (integers become floats; half precision is upcast to float32).
    exponent: a in [0.1, 10] (may be traced); a = 1 returns ``w`` itself, without a power.

  Returns:
    q_a(w), the shape of ``w``; NaN stays NaN, +-inf stays +-inf.

  Example:
    >>> power_transform(jnp.array([-4.0, 0.0, 9.0]), 0.5).tolist()
    [-2.0, 0.0, 3.0]

  References:
    Yvinec et al., PowerQuant, ICLR 2023, https://arxiv.org/abs/2301.09858; NUPES,
    https://arxiv.org/abs/2308.05600.
  """
  w = _validation.check_floating("w", w)
  a = _check_exponent(exponent)
  return w if _is_one(a) else _power(w, a, False)


def inverse_power_transform(t: jax.Array, exponent: float) -> jax.Array:
  """The inverse automorphism q_a^{-1}(t) = sign(t) |t|^(1/a), elementwise.

  Args:
    t: a real array (transformed weights).
    exponent: a in [0.1, 10] (may be traced); a = 1 returns ``t`` itself.

  Returns:
    q_a^{-1}(t), the shape of ``t``.

  Example:
    >>> inverse_power_transform(jnp.array([-2.0, 0.0, 3.0]), 0.5).tolist()
    [-4.0, 0.0, 9.0]

  References:
    Yvinec et al., NUPES, https://arxiv.org/abs/2308.05600.
  """
  t = _validation.check_floating("t", t)
  a = _check_exponent(exponent)
  return t if _is_one(a) else _power(t, a, True)


def quantize_uniform(w: jax.Array, bits: int) -> QuantizedTensor:
  """Uniform symmetric round-to-nearest (RTN) quantization, one scale per output channel.

  s_c = max_i |w_ic| / Q with Q = 2^(b-1) - 1 (s_c = 1 / Q for an all-zero channel), and
  v = clip(round(w / s), -Q, Q) (ties to even); w_hat = s v.

  Args:
    w: a kernel with 2 to 5 dimensions, output channels on the last axis.
    bits: b, an int in [2, 8].

  Returns:
    A `QuantizedTensor` with int8 ``values``, ``scale`` of shape ``(w.shape[-1],)`` and
    ``exponent`` 1. Under ``jit`` a NaN or an infinity in a channel makes its scale non-finite.

  Example:
    >>> qt = quantize_uniform(jnp.array([[0.25, -2.0], [-1.0, 0.5]]), 3)
    >>> qt.values.tolist(), (qt.scale * 3).tolist()
    ([[1, -3], [-3, 1]], [1.0, 2.0])
    >>> np.asarray(dequantize(qt), np.float64).round(3).tolist()
    [[0.333, -2.0], [-1.0, 0.667]]

  References:
    The baseline of Yvinec et al., NUPES, https://arxiv.org/abs/2308.05600.
  """
  bits = _check_bits(bits)
  w = _check_kernel("w", w)
  v, s = _rtn_int8(w, 2 ** (bits - 1) - 1)
  return _pack(v, s, 1.0, bits)


def quantize_power(w: jax.Array, bits: int, *, exponent: float = 1.0) -> QuantizedTensor:
  """Power quantization: q_a(w / s) rounded to the uniform b-bit grid, one scale per output channel.

  With Q = 2^(b-1) - 1 and m_c = max_i |w_ic|: s_c = m_c / Q^(1/a),
  v = clip(round(sign(w) |w / s|^a), -Q, Q) (computed as Q (|w| / m)^a, which cannot overflow)
  and w_hat = s sign(v) |v|^(1/a). For a = 1 it is `quantize_uniform` bit for bit (no power is
  computed; under ``jit`` with a traced exponent equal to 1 the uniform values are selected).

  Args:
    w: a kernel with 2 to 5 dimensions, output channels on the last axis.
    bits: b, an int in [2, 8].
    exponent: a in [0.1, 10] (may be traced).

  Returns:
    A `QuantizedTensor` (int8 codes). The dequantized weights satisfy
    |q_a(w / s) - q_a(w_hat / s)| <= 1/2 (half a grid step in the transformed space).

  Example:
    >>> w = jnp.array([[0.01, -1.0], [1.0, 0.36]])
    >>> quantize_power(w, 3, exponent=0.5).values.tolist()  # round(3 sqrt(|w| / max))
    [[0, -3], [3, 2]]
    >>> quantize_uniform(w, 3).values.tolist()
    [[0, -3], [3, 1]]

  References:
    Yvinec et al., NUPES, https://arxiv.org/abs/2308.05600; PowerQuant, ICLR 2023,
    https://arxiv.org/abs/2301.09858.
  """
  bits = _check_bits(bits)
  w = _check_kernel("w", w)
  a = _check_exponent(exponent)
  qmax = 2 ** (bits - 1) - 1
  v, s = _rtn_int8(w, qmax) if _is_one(a) else _power_int8(w, a, qmax)  # a = 1: `quantize_uniform` itself
  return _pack(v, s, a, bits)


def dequantize(qt: QuantizedTensor) -> jax.Array:
  """The weights a `QuantizedTensor` stands for: w_hat = scale sign(v) |v|^(1/exponent).

  Args:
    qt: a `QuantizedTensor`.

  Returns:
    w_hat, the shape of ``qt.values`` and the dtype of ``qt.scale``; a non-finite scale gives
    non-finite weights in its channel.

  Example:
    >>> qt = QuantizedTensor(jnp.array([[-3, 1]], jnp.int8), jnp.array([2.0, 0.5]), jnp.array(0.5), 3)
    >>> dequantize(qt).tolist()  # scale * sign(v) v^2
    [[-18.0, 0.5]]

  References:
    Yvinec et al., NUPES, https://arxiv.org/abs/2308.05600.
  """
  if not isinstance(qt, QuantizedTensor):
    raise TypeError(f"qt: must be a QuantizedTensor, got {type(qt).__name__}")
  s = _validation.check_floating("qt", qt.scale)
  a = qt.exponent
  if _validation.is_concrete(a) and jnp.ndim(a) == 0 and float(a) == 1.0:
    return _dequant_uniform(qt.values, s)  # no power at all
  return _dequant_power(qt.values, s, a)


# --- the exponent search --------------------------------------------------------------------------

def _dense(w: jax.Array, x: jax.Array) -> jax.Array:
  return x @ w


def _check_apply(apply, w: jax.Array, x: jax.Array | None) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """``apply`` itself, or the Dense layer ``x @ w`` after checking that the shapes fit it."""
  if apply is not None:
    if not callable(apply):
      raise TypeError(f"apply: must be a callable (w, x) -> y, got {type(apply).__name__}")
    return apply
  if x is not None:
    if w.ndim != 2:
      raise ValueError(f"apply: required for a kernel of shape {w.shape} (the default is the Dense layer "
                       f"x @ w, for a 2-D w)")
    if jnp.ndim(x) != 2 or jnp.shape(x)[1] != w.shape[0]:
      raise ValueError(f"x: must have shape (batch, {w.shape[0]}) for the default apply (x @ w), got shape "
                       f"{jnp.shape(x)}")
  return _dense


def _check_exponents(exponents) -> np.ndarray:
  try:
    grid = np.asarray(exponents, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise TypeError(f"exponents: must be a sequence of real numbers, got {exponents!r}") from e
  if grid.ndim != 1 or grid.size == 0 or isinstance(exponents, (str, bytes)):
    raise ValueError(f"exponents: must be a non-empty 1-D sequence of exponents, got {exponents!r}")
  if np.asarray(exponents).dtype == np.bool_:
    raise TypeError(f"exponents: must be real numbers, not booleans, got {exponents!r}")
  for e in grid:
    _validation.check_real("exponents", float(e), lower=_A_MIN, upper=_A_MAX)
  return grid


def _grid_errors(w, grid, qmax, x, apply):
  """The relative reconstruction error of every exponent in ``grid`` (weights, or outputs on ``x``)."""
  y = None if x is None else apply(w, x)

  def error(a):
    v, s = _codes(w, a, qmax)
    w_hat = _dequant(v, s, a)
    return _relative_error(w, w_hat) if x is None else _relative_error(y, apply(w_hat, x))

  return jax.lax.map(error, grid)


def _pick(grid, errors):
  """The exponent of least error, NaN unless every error is finite. Relative errors within 1e-6 of
  the least are ties, which go to the exponent closest to 1: rounding noise does not pick a
  non-uniform grid that is no better."""
  best = jnp.min(errors)
  closeness = jnp.where(errors <= best + 1e-6, jnp.abs(grid - 1), jnp.inf)
  a = grid[jnp.argmin(closeness)]
  return _validation.nan_unless(jnp.all(jnp.isfinite(errors)), a)


@functools.partial(jax.jit, static_argnames=("apply",))
def _search(w, grid, qmax, x, *, apply):
  errors = _grid_errors(w, grid, qmax, x, apply)
  return _pick(grid, errors), errors


def search_exponent(w: jax.Array, bits: int, *, exponents=EXPONENTS, x: jax.Array | None = None,
                    apply: Callable[[jax.Array, jax.Array], jax.Array] | None = None
                    ) -> tuple[jax.Array, jax.Array]:
  """The exponent a of `quantize_power` that best reconstructs a layer, from a grid.

  Without ``x`` (data-free, as PowerQuant): the error of a is ||w - w_hat_a||^2 / ||w||^2. With
  calibration inputs ``x``: ||y - apply(w_hat_a, x)||^2 / ||y||^2 with y = apply(w, x), the layer's
  relative output error (``apply`` defaults to the Dense layer ``x @ w``). Both are computed
  without overflow at any scale. The exponent of least error is returned; among errors within
  1e-6 of the least (a tie that rounding noise would otherwise break), the one closest to 1.

  Args:
    w: a kernel with 2 to 5 dimensions, output channels on the last axis.
    bits: b, an int in [2, 8].
    exponents: the candidate exponents, a non-empty 1-D sequence in [0.1, 10] (concrete;
      `EXPONENTS`, 0.25 to 1.5 by 0.05, by default).
    x: calibration inputs, the batch on the leading axis (optional).
    apply: ``(w, x) -> y``, the layer (e.g. a convolution); None for ``x @ w``.

  Returns:
    ``(exponent, errors)``: the chosen exponent (a scalar array) and the error of every candidate.
    A NaN or an infinity in ``w`` or ``x`` makes the exponent NaN (also under ``jit``).

  Example:
    >>> w = jnp.array([[0.01, -0.02, 0.03, 1.0], [-0.01, 0.02, -0.03, 1.0]]).T  # one outlier per column
    >>> a, errors = search_exponent(w, 3)
    >>> float(a) < 1, bool(errors.min() < errors[list(EXPONENTS).index(1.0)])
    (True, True)

  References:
    Yvinec et al., PowerQuant, ICLR 2023, https://arxiv.org/abs/2301.09858 (the search);
    NUPES, https://arxiv.org/abs/2308.05600.
  """
  bits = _check_bits(bits)
  w = _check_kernel("w", w)
  grid = jnp.asarray(_check_exponents(exponents), w.dtype)
  if x is not None:
    x = _validation.check_floating("x", x)
    _validation.check_nonempty("x", x)
  apply = _check_apply(apply, w, x)
  return _search(w, grid, 2 ** (bits - 1) - 1, x, apply=apply)


# --- learned quantization on calibration data -----------------------------------------------------

def _check_calibration(w, x, apply, batch_size, key):
  w = _check_kernel("w", w)
  if x is None:
    raise ValueError("x: calibration inputs are required (the batch on the leading axis), got None")
  x = _validation.check_floating("x", x)
  _validation.check_nonempty("x", x)
  apply = _check_apply(apply, w, x)
  _validation.check_finite("w", w)
  _validation.check_finite("x", x)
  n = x.shape[0]
  if batch_size is not None:
    batch_size = _validation.check_int("batch_size", batch_size, lower=1)
    if batch_size >= n:
      batch_size = None  # the full batch every step
  if key is not None or batch_size is not None:
    key = _validation.check_key("key", key, why=f" when batch_size < len(x) = {n}")
  return w, x, apply, batch_size, key


def _minibatch(x, y, key, t, batch_size):
  if batch_size is None:
    return x, y
  idx = jax.random.choice(jax.random.fold_in(key, t), x.shape[0], (batch_size,), replace=False)
  return x[idx], y[idx]


def _safe_pow(r, p):
  """r^p for r >= 0 with 0^p = 0 and a finite gradient everywhere (r = 0 included)."""
  pos = r > 0
  return jnp.where(pos, jnp.power(jnp.where(pos, r, 1.0), p), 0.0)


def _exponent_of(theta):
  return jnp.minimum(_A_MIN + jax.nn.softplus(theta), _A_MAX)


def _theta_of(a):
  """softplus^{-1}(a - 0.1), stable for large a (and finite at a = 0.1)."""
  u = jnp.maximum(a - _A_MIN, 1e-6)
  return u + jnp.log(-jnp.expm1(-u))


@functools.partial(jax.jit, static_argnames=("apply", "batch_size"))
def _nupes(w, x, key, a0, learn, qmax, steps, lr, lr_a, damping, *, apply, batch_size):
  """`nupes_layer`'s computation: (codes, scales, exponent); one compilation per layer shape and
  ``apply`` (the bits, the steps, the exponent and whether it is learned are traced)."""
  qmax = jnp.asarray(qmax, w.dtype)
  a0 = jnp.asarray(a0, w.dtype)

  def exponent_of(theta):
    return jnp.where(learn, _exponent_of(theta), a0)  # a0 itself, exactly, when it is not learned

  w_n, m_n, m = _normalize(w)
  y = apply(w, x)
  z0 = jnp.sign(w) * qmax * jnp.power(_divide(jnp.abs(w_n), m_n), a0)
  v0, s0 = _codes(w, a0, qmax)
  err0 = _relative_error(y, apply(_dequant(v0, s0, a0), x))
  unit = jnp.where(err0 > 0, err0, 1.0)  # the reconstruction term starts at 1

  def loss_fn(params, xb, yb, t):
    z = params["z"]
    a = exponent_of(params["theta"])
    v = jax.lax.stop_gradient(jnp.clip(jnp.round(z), -qmax, qmax))
    hard = m * jnp.sign(v) * _safe_pow(jnp.abs(v) / qmax, 1.0 / a)  # carries d/da
    cont = m * jnp.sign(z) * jnp.power(jnp.maximum(jnp.abs(z), _Z_FLOOR) / qmax, 1.0 / jax.lax.stop_gradient(a))
    w_hat = hard + (cont - jax.lax.stop_gradient(cont))  # the value of hard, d/dz of cont
    return _relative_error(yb, apply(w_hat, xb)) / unit + damping * (t / steps) * jnp.mean(jnp.square(z - v))

  adam = optax.scale_by_adam()

  def step(t, carry):
    params, state = carry
    xb, yb = _minibatch(x, y, key, t, batch_size)
    grads = jax.grad(loss_fn)(params, xb, yb, t)
    updates, state = adam.update(grads, state, params)
    decay = 0.5 * (1 + jnp.cos(jnp.pi * t / steps))
    z = jnp.clip(params["z"] - lr * decay * updates["z"], -qmax - 0.5, qmax + 0.5)
    theta = params["theta"] - jnp.where(learn, lr_a, 0.0) * decay * updates["theta"]
    return {"z": z, "theta": theta}, state

  params = {"z": z0, "theta": _theta_of(a0)}
  params, _ = jax.lax.fori_loop(0, steps, step, (params, adam.init(params)))
  a1 = exponent_of(params["theta"])
  v1 = jnp.clip(jnp.round(params["z"]), -qmax, qmax)
  s1 = _scale(m, a1, qmax)
  err1 = _relative_error(y, apply(_dequant(v1, s1, a1), x))
  better = err1 <= err0
  ok = jnp.isfinite(err0) & jnp.isfinite(err1)
  v = jnp.where(better, v1, v0)
  s = _validation.nan_unless(ok, jnp.where(better, s1, s0))
  a = _validation.nan_unless(ok, jnp.where(better, a1, a0))
  return v, s, a


def nupes_layer(w: jax.Array, x: jax.Array, *, bits: int,
                apply: Callable[[jax.Array, jax.Array], jax.Array] | None = None, exponent: float | None = None,
                learn_exponent: bool = True, steps: int = 200, learning_rate: float = 0.01,
                exponent_learning_rate: float = 0.01, damping: float = 30.0, batch_size: int | None = None,
                key: jax.Array | None = None) -> QuantizedTensor:
  """NUPES on one layer: learns the integer codes over the whole grid, and the exponent, from data.

  With Q = 2^(b-1) - 1 and the fixed channel ranges m_c = max_i |w_ic|, the layer's weights are
  w_hat(z, a) = m sign(v) (|v| / Q)^(1/a), v = clip(round(z), -Q, Q). The latent codes z start at
  sign(w) Q (|w| / m)^a0 (the transformed weights over the scale) and a at a0; at step t both
  minimise the output error, relative to that of the initialisation, plus an oscillation damping,

      L_t(z, a) = ||y - apply(w_hat(z, a), x)||^2 / ||y - apply(w_hat_0, x)||^2
                  + damping (t / steps) mean((z - v)^2),     y = apply(w, x),

  (w_hat_0 = `quantize_power` at a0), with Adam (step ``learning_rate`` for z in grid units,
  ``exponent_learning_rate`` for a's parameter theta, a = 0.1 + softplus(theta) clamped to 10, both
  decayed by a cosine to 0) for ``steps`` steps in one ``lax.fori_loop``. Rounding and clipping are
  straight-through for z (the gradient of the continuous dequantization at max(|z|, 1e-3)); a gets
  the exact gradient of the rounded weights, with 0^(1/a) = 0 handled so no log 0 appears. The
  damping (Nagel et al., 2022) pulls each latent to its code as the run ends; without it the
  straight-through codes oscillate and the error rises. Unlike AdaRound, a code may move anywhere
  on the grid, not only to the floor or the ceiling of its weight; z stays in [-Q - 1/2, Q + 1/2].
  The better (on all of ``x``) of the result and of its initialisation, `quantize_power` at a0, is
  returned, so NUPES never does worse than the exponent search (hence than RTN, a0 = 1 being on the
  grid).

  Args:
    w: the layer's kernel, 2 to 5 dimensions, output channels on the last axis.
    x: calibration inputs, the batch on the leading axis (at least one example).
    bits: b, an int in [2, 8].
    apply: ``(w, x) -> y``, the layer as a function of its kernel, mapping the batch axis of ``x``
      to that of ``y`` (e.g. a convolution); None for the Dense layer ``x @ w``.
    exponent: the initial exponent a0 in [0.1, 10]; None searches `EXPONENTS` on the output error
      (`search_exponent` with ``x``).
    learn_exponent: optimise a jointly (True), or keep a0.
    steps: Adam steps, an int >= 1.
    learning_rate: Adam's step for the codes, > 0.
    exponent_learning_rate: Adam's step for the exponent's parameter, > 0.
    damping: the weight >= 0 of the oscillation-dampening term at the last step (0: plain
      straight-through Adam).
    batch_size: examples drawn (without replacement) from ``x`` at each step; None (or >= len(x)):
      all of them.
    key: a `jax.random` key, required when ``batch_size < len(x)``.

  Returns:
    A `QuantizedTensor` with the learned codes, scales m / Q^(1/a) and exponent a. Eagerly a NaN or
    an infinity in ``w`` or ``x`` raises naming it; under ``jit`` it makes the scale and the exponent
    NaN.

  Example:
    >>> w = jax.random.normal(jax.random.key(0), (8, 4))
    >>> x = jax.random.normal(jax.random.key(1), (32, 8))
    >>> qt = nupes_layer(w, x, bits=3, steps=20)
    >>> rtn = dequantize(quantize_uniform(w, 3))
    >>> bool(jnp.sum((x @ w - x @ dequantize(qt)) ** 2) <= jnp.sum((x @ w - x @ rtn) ** 2))
    True

  References:
    Yvinec, Dapogny, Bailly, "NUPES: Non-Uniform Post-Training Quantization via Power Exponent
    Search", https://arxiv.org/abs/2308.05600 (the whole-grid optimisation of the codes and the
    joint optimisation of the exponent; the parametrisation and the numerical safeguards are ours,
    see the module's docstring).
  """
  bits = _check_bits(bits)
  w, x, apply, batch_size, key = _check_calibration(w, x, apply, batch_size, key)
  if not isinstance(learn_exponent, (bool, np.bool_)):
    raise TypeError(f"learn_exponent: must be a bool, got {type(learn_exponent).__name__}")
  steps = _validation.check_int("steps", steps, lower=1)
  lr = _validation.check_real("learning_rate", learning_rate, lower=0.0, lower_open=True)
  lr_a = _validation.check_real("exponent_learning_rate", exponent_learning_rate, lower=0.0, lower_open=True)
  damping = _validation.check_real("damping", damping, lower=0.0)
  qmax = 2 ** (bits - 1) - 1
  if exponent is None:
    a0, _ = _search(w, jnp.asarray(EXPONENTS, w.dtype), qmax, x, apply=apply)
  else:
    a0 = _check_exponent(exponent)
  a0, learn = jnp.asarray(a0, w.dtype), jnp.asarray(bool(learn_exponent))  # the same compilation either way
  v, s, a = _nupes(w, x, key, a0, learn, qmax, steps, lr, lr_a, damping, apply=apply, batch_size=batch_size)
  return _pack(v, s, a, bits)


@functools.partial(jax.jit, static_argnames=("apply", "batch_size"))
def _adaround(w, x, key, qmax, steps, lr, lam, *, apply, batch_size):
  """`adaround_layer`'s computation: (codes, scales); one compilation for every bits and steps."""
  qmax = jnp.asarray(qmax, w.dtype)
  w_n, m_n, m = _normalize(w)
  s = _uniform_scale(m, qmax)
  y = apply(w, x)
  scaled = _divide(w_n, _uniform_scale(m_n, qmax))  # w / s, as `_rtn_codes` computes it
  floor = jnp.floor(scaled)
  frac = scaled - floor  # in [0, 1)
  v_init = -jnp.log((_ZETA - _GAMMA) / (frac - _GAMMA) - 1)  # h(v_init) = frac
  err_rtn = _relative_error(y, apply(jnp.clip(jnp.round(scaled), -qmax, qmax) * s, x))
  unit = jnp.where(err_rtn > 0, err_rtn, 1.0)  # the reconstruction term starts at 1
  warm = _WARMUP * steps

  def h(v):
    return jnp.clip(jax.nn.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0.0, 1.0)

  def loss_fn(v, xb, yb, t):
    hv = h(v)
    w_soft = s * jnp.clip(floor + hv, -qmax, qmax)
    rel = jnp.clip((t - warm) / jnp.maximum(steps - warm, 1.0), 0.0, 1.0)
    beta = _BETA_END + (_BETA_START - _BETA_END) * (1 - rel)
    reg = jnp.mean(1 - jnp.power(jnp.abs(2 * hv - 1), beta))
    return _relative_error(yb, apply(w_soft, xb)) / unit + jnp.where(t >= warm, lam, 0.0) * reg

  tx = optax.adam(lr)

  def step(t, carry):
    v, state = carry
    xb, yb = _minibatch(x, y, key, t, batch_size)
    updates, state = tx.update(jax.grad(loss_fn)(v, xb, yb, t), state, v)
    return optax.apply_updates(v, updates), state

  v, _ = jax.lax.fori_loop(0, steps, step, (v_init, tx.init(v_init)))
  codes = jnp.clip(floor + (h(v) >= 0.5).astype(w.dtype), -qmax, qmax)
  err = _relative_error(y, apply(codes * s, x))
  return codes, _validation.nan_unless(jnp.isfinite(err), s)


def adaround_layer(w: jax.Array, x: jax.Array, *, bits: int,
                   apply: Callable[[jax.Array, jax.Array], jax.Array] | None = None, steps: int = 500,
                   learning_rate: float = 0.01, regularization: float = 3.0, batch_size: int | None = None,
                   key: jax.Array | None = None) -> QuantizedTensor:
  """AdaRound on one layer: learns whether each weight rounds down or up, on the uniform grid.

  On `quantize_uniform`'s grid (s = max |w| / Q per channel), w_soft = s clip(floor(w / s) + h(V),
  -Q, Q) with the rectified sigmoid h(V) = clip(sigmoid(V) (1.1 + 0.1) - 0.1, 0, 1), V initialised
  so that h(V) = w / s - floor(w / s). Adam minimises

      ||apply(w, x) - apply(w_soft, x)||^2 / E_rtn + lambda mean(1 - |2 h(V) - 1|^beta),

  E_rtn = ||apply(w, x) - apply(w_rtn, x)||^2 the error of `quantize_uniform`,
  with the regulariser off for the first 20 % of ``steps``, then beta decayed linearly from 20 to 2;
  finally each weight rounds up where h(V) >= 1/2.

  Args:
    w: the layer's kernel, 2 to 5 dimensions, output channels on the last axis.
    x: calibration inputs, the batch on the leading axis (at least one example).
    bits: b, an int in [2, 8].
    apply: ``(w, x) -> y``, the layer as a function of its kernel; None for ``x @ w``.
    steps: Adam steps, an int >= 1 (the paper uses 10,000 at step 1e-3).
    learning_rate: Adam's step, > 0.
    regularization: lambda >= 0, the weight of the rounding regulariser (averaged over weights,
      against an output error of 1 for RTN).
    batch_size: examples drawn from ``x`` per step; None (or >= len(x)): all of them.
    key: a `jax.random` key, required when ``batch_size < len(x)``.

  Returns:
    A `QuantizedTensor` with exponent 1 whose codes are floor(w / s) or floor(w / s) + 1. Eagerly a
    NaN or an infinity in ``w`` or ``x`` raises naming it; under ``jit`` it makes the scale NaN.

  Example:
    >>> w = jax.random.normal(jax.random.key(0), (8, 4))
    >>> x = jax.random.normal(jax.random.key(1), (32, 8))
    >>> qt = adaround_layer(w, x, bits=3, steps=50)
    >>> float(qt.exponent), bool(jnp.all(jnp.abs(qt.values - w / qt.scale) < 1))
    (1.0, True)

  References:
    Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", ICML 2020,
    https://arxiv.org/abs/2004.10568; the baseline of NUPES, https://arxiv.org/abs/2308.05600.
  """
  bits = _check_bits(bits)
  w, x, apply, batch_size, key = _check_calibration(w, x, apply, batch_size, key)
  steps = _validation.check_int("steps", steps, lower=1)
  lr = _validation.check_real("learning_rate", learning_rate, lower=0.0, lower_open=True)
  lam = _validation.check_real("regularization", regularization, lower=0.0)
  codes, s = _adaround(w, x, key, 2 ** (bits - 1) - 1, steps, lr, lam, apply=apply, batch_size=batch_size)
  return _pack(codes, s, 1.0, bits)


# --- whole models ---------------------------------------------------------------------------------

def _is_kernel(path, leaf) -> bool:
  del path
  return np.ndim(leaf) in (2, 4) and jnp.issubdtype(jnp.result_type(leaf), jnp.floating)


def quantize_tree(params: Any, bits: int, *, method: str = "rtn", exponent: float | None = None,
                  predicate: Callable[[Any, Any], bool] | None = None) -> tuple[Any, dict[str, QuantizedTensor]]:
  """Quantizes every kernel of a parameter tree (data-free), leaving the other leaves as they are.

  A leaf is a kernel when ``predicate(path, leaf)`` holds (default: a floating leaf with 2 or 4
  dimensions, a Dense or a Conv2D kernel, whose last axis is the output). ``method="rtn"`` applies
  `quantize_uniform`; ``method="power"`` applies `quantize_power` with ``exponent``, or, when it is
  None, with the exponent `search_exponent` picks for that leaf from its weights alone.

  Args:
    params: a PyTree of arrays (a Flax ``nnx.State`` or a dict of parameters).
    bits: b, an int in [2, 8].
    method: ``"rtn"`` or ``"power"``.
    exponent: for ``"power"``: a in [0.1, 10], or None to search it per leaf; must be None for
      ``"rtn"``.
    predicate: ``(path, leaf) -> bool`` selecting the kernels (2 to 5 dimensions each).

  Returns:
    ``(dequantized, quantized)``: the tree with every kernel replaced by its dequantized weights (in
    the kernel's dtype), and a dict from ``jax.tree_util.keystr(path)`` to each kernel's
    `QuantizedTensor`. A NaN or an infinity in a selected kernel raises naming ``params``.

  Example:
    >>> params = {"dense": {"kernel": jnp.array([[0.25, -2.0], [-1.0, 0.5]]), "bias": jnp.array([0.1, 0.2])}}
    >>> deq, qts = quantize_tree(params, 3)
    >>> list(qts), deq["dense"]["bias"] is params["dense"]["bias"]
    (["['dense']['kernel']"], True)

  References:
    Yvinec et al., NUPES, https://arxiv.org/abs/2308.05600; PowerQuant, ICLR 2023,
    https://arxiv.org/abs/2301.09858 (the data-free exponent search).
  """
  bits = _check_bits(bits)
  _validation.check_choice("method", method, ("rtn", "power"))
  if exponent is not None:
    if method == "rtn":
      raise ValueError(f"exponent: only used with method='power' (None for 'rtn'), got {exponent!r}")
    exponent = _check_exponent(exponent)
  if predicate is None:
    predicate = _is_kernel
  elif not callable(predicate):
    raise TypeError(f"predicate: must be a callable (path, leaf) -> bool, got {type(predicate).__name__}")
  quantized: dict[str, QuantizedTensor] = {}

  def visit(path, leaf):
    if not predicate(path, leaf):
      return leaf
    where = jax.tree_util.keystr(path)
    if np.ndim(leaf) not in (2, 3, 4, 5):
      raise ValueError(f"params: the leaf {where} that predicate selects must be a kernel with 2 to 5 dimensions, "
                       f"got shape {np.shape(leaf)}")
    _validation.check_finite("params", leaf)
    if method == "rtn":
      qt = quantize_uniform(leaf, bits)
    else:
      a = exponent if exponent is not None else search_exponent(leaf, bits)[0]
      qt = quantize_power(leaf, bits, exponent=a)
    quantized[where] = qt
    return dequantize(qt).astype(jnp.result_type(leaf))

  return jax.tree_util.tree_map_with_path(visit, params), quantized

