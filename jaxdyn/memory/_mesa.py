"""Mesa: exact forward passes whose saved activations are 8-bit (Pan et al., 2021).

Every operation here computes its output exactly (bit for bit the plain operation) and keeps, for its
backward pass, an 8-bit copy of each tensor the gradient needs instead of the float tensor:

- `mesa_dense` (``y = x W + b``): the input ``x`` (for ``dW``; ``dx = g W^T`` needs no activation);
- `mesa_matmul` (an attention matmul ``a @ b`` on ``(batch, heads, ., .)`` tensors): both operands;
- `mesa_softmax`: its output ``p`` (``dx = p (g - <g, p>)``);
- `mesa_gelu`: its input; `mesa_layer_norm`: its input (plus the per-row mean and 1/std in float);
- `mesa_attention`: ``softmax(q k^T / sqrt(d)) v`` as one operation keeping q, k, v and p once.

Quantization (per group g: contiguous channel groups of the last axis, or one group per head of the
4-D attention tensors; `quantize`, `dequantize`). A range (``alpha_g``, ``beta_g``) is the group's
width and minimum, kept as a running estimate in a `QuantRange` that the train step carries:

  first batch:  alpha_g = max_g(x) - min_g(x),  beta_g = min_g(x);
  afterwards:   alpha_g <- 0.9 alpha_g + 0.1 (max_g(x) - min_g(x)),  beta_g <- 0.9 beta_g + 0.1 min_g(x),

updated with the current batch before it is quantized (as the authors' code does). With
``s_g = 255 / alpha_g`` (0 for a zero range) and ``u ~ U[0, 1)`` drawn from an explicit key,

  q = clip(floor((x - beta_g) s_g + u), 0, 255),   codes = q - 128  (int8),
  x^ = (codes + 128) alpha_g / 255 + beta_g.

``floor(v + u)`` is stochastic rounding: E[x^] = x, and |x^ - x| < Delta_g = alpha_g / 255 for every x
inside the group's range (always on the first batch, whose range is its own). The backward passes
use x^ in place of x; each op's docstring bounds the resulting gradient error by Delta.

Where the authors' code differs from this default (``official_compat=True`` reproduces the code):

1. Codes above 255 wrap around. The CUDA kernel clamps ``(x - beta) s + u - 1/2`` at 0 only and
   stores the rounded value into a ``uint8``, so a value above the running range (the current batch
   wider than the EMA) keeps its low 8 bits: 1.5 alpha above beta comes back near 0.5 alpha. The
   default saturates at 255, a quantizer clipped to its range.
2. The softmax input is quantized and stored too, although the backward reads only the output
   (the code passes it to PyTorch's softmax backward, which does not use it): one more byte per score.
3. The attention probabilities are stored twice: the code's ``Softmax`` and the second ``MatMul``
   are separate modules with separate quantizers (ranges, noise) for the same tensor. The default
   (`mesa_attention`, `MesaAttention`) keeps one 8-bit copy for both backward uses. This one is a
   property of the code's module structure; the paper does not ask for two copies.

The rounding noise is a counter-based hash of each element's index and two seeds drawn from the
key (``jaxdyn/memory/_mesa_kernel.py``), so the Pallas kernel (``implementation="pallas"``, Triton
on GPU, interpret mode elsewhere) draws it in-kernel and gives the jnp path's codes bit for bit.

Keeping XLA from undoing it. Each forward computes its output, the ranges and the codes inside one
``lax.cond`` on a run-time predicate (the carried ranges are finite), and each backward adds
``0 * g[0]`` of its incoming cotangent to the dequantization's offset. Without the first, XLA fuses
quantize and dequantize into one backward fusion that reads the float tensor (XLA:CPU drops
optimization barriers before fusion), so the float tensor lives until the backward; without the
second, XLA:CPU's scheduler dequantizes every layer's codes as soon as the forward ends. Measured
on stacks of layers (temp bytes per element per layer, float vs Mesa): dense 4 -> 1, GELU after a
dense 12 -> 5, LayerNorm 8.2 -> 3.1, attention after a dense 29 -> 11; and on the ViT train step
(``benchmarks/memory.py``) 0.28x the float step's temp memory.

The NNX layers `MesaDense`, `MesaAttention`, `MesaLayerNorm`, `MesaGELU` keep their ranges in
`MesaRange` variables (not ``nnx.Param``: a train step that splits ``nnx.Param`` from the rest
carries them like BatchNorm statistics), update them only in training mode
(`jaxdyn.models.is_training`) and need a key there; in inference they run the plain operation.
`jaxdyn.models.ViT` with ``mesa=True`` is the ViT built from them.

References:
  Pan, Chen, He, Liu, Cai, Zhuang, "Mesa: A Memory-saving Training Framework for Transformers",
  https://arxiv.org/abs/2111.11124; code https://github.com/ziplab/Mesa (``mesa/custom_quant.py``,
  ``mesa/cpp_extension/quantization_cuda_kernel.cu``).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn.memory import _mesa_kernel as _k
from jaxdyn.models._base import is_training

__all__ = [
    "IMPLEMENTATIONS",
    "MesaAttention",
    "MesaDense",
    "MesaGELU",
    "MesaLayerNorm",
    "MesaRange",
    "QuantRange",
    "dequantize",
    "init_range",
    "mesa_attention",
    "mesa_dense",
    "mesa_gelu",
    "mesa_layer_norm",
    "mesa_matmul",
    "mesa_softmax",
    "quantize",
    "update_range",
]

IMPLEMENTATIONS = ("jnp", "pallas")
DECAY = 0.9
# Per-role salts: the rounding noise of each saved tensor is drawn from fold_in(key, salt).
_SALT = {"x": 0, "q": 1, "k": 2, "s": 3, "p": 4, "p2": 5, "v": 6, "a": 7, "b": 8}


class QuantRange(NamedTuple):
  """The running range of one quantized tensor, per group.

  Attributes:
    alpha: ``(groups,)`` float32, the range's width (max - min), a running estimate.
    beta: ``(groups,)`` float32, the range's lower end (min), a running estimate.
    count: int32 scalar, batches seen; 0 means the next batch initialises the range.
  """

  alpha: jax.Array
  beta: jax.Array
  count: jax.Array


class MesaRange(nnx.Variable):
  """NNX variable type of Mesa's running ranges: state, not a parameter (no gradient, no update)."""


def init_range(groups: int) -> QuantRange:
  """An empty range for ``groups`` groups (zeros, ``count = 0``: the first batch sets it).

  Example:
    >>> init_range(4).alpha.shape
    (4,)
  """
  groups = _validation.check_int("groups", groups, lower=1)
  return QuantRange(jnp.zeros((groups,), jnp.float32), jnp.zeros((groups,), jnp.float32),
                    jnp.zeros((), jnp.int32))


# --- checks ----------------------------------------------------------------------------------------
def _check_array(name: str, x) -> jax.Array:
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name}: must be a floating array, got dtype {x.dtype}")
  return x


def _check_range(name: str, r, x: jax.Array, axis: int) -> QuantRange:
  if not isinstance(r, QuantRange):
    raise TypeError(f"{name}: must be a jaxdyn.memory.QuantRange (init_range(groups)), got {type(r).__name__}")
  if jnp.ndim(r.alpha) != 1 or jnp.shape(r.beta) != jnp.shape(r.alpha) or jnp.ndim(r.count) != 0:
    raise ValueError(f"{name}: must hold alpha and beta of shape (groups,) and a scalar count, got shapes "
                     f"{jnp.shape(r.alpha)}, {jnp.shape(r.beta)}, {jnp.shape(r.count)}")
  groups = jnp.shape(r.alpha)[0]
  size = x.shape[axis]
  if groups < 1 or size % groups:
    raise ValueError(f"{name}: its {groups} groups must divide axis {axis} of x (size {size})")
  return r


def _check_ranges(name: str, ranges, n: int) -> tuple:
  if not isinstance(ranges, (tuple, list)) or len(ranges) != n:
    got = f"{len(ranges)} ranges" if isinstance(ranges, (tuple, list)) else type(ranges).__name__
    raise ValueError(f"{name}: must be a tuple of {n} QuantRange, got {got}")
  return tuple(ranges)


def _check_axis(x: jax.Array, axis: int) -> int:
  axis = _validation.check_int("axis", axis)
  if not -x.ndim <= axis < x.ndim:
    raise ValueError(f"axis: must index one of the {x.ndim} axes of x, got {axis}")
  return axis % x.ndim


def _check_options(decay, official_compat, implementation):
  decay = _validation.check_real("decay", decay, lower=0.0, upper=1.0, upper_open=True)
  _validation.check_choice("implementation", implementation, IMPLEMENTATIONS)
  return (decay, bool(official_compat), implementation)


def _seeds(key, role: str) -> jax.Array:
  return jax.random.bits(jax.random.fold_in(key, _SALT[role]), (2,), jnp.uint32)


# --- group view, range update, quantize / dequantize ------------------------------------------------
def _view(x: jax.Array, axis: int, groups: int) -> jax.Array:
  """``x`` as ``(P, G, Q)``: the groups split axis ``axis`` into ``groups`` contiguous chunks."""
  axis = axis % x.ndim
  p = math.prod(x.shape[:axis])
  q = (x.shape[axis] // groups) * math.prod(x.shape[axis + 1:])
  return x.reshape(p, groups, q)


def _update(r: QuantRange, x: jax.Array, axis: int, decay: float) -> QuantRange:
  if x.size == 0:  # no data: the range stays
    return r
  x3 = _view(x, axis, r.alpha.shape[0]).astype(jnp.float32)
  lo, hi = jnp.min(x3, axis=(0, 2)), jnp.max(x3, axis=(0, 2))
  width = hi - lo
  first = r.count == 0
  d = jnp.float32(decay)
  alpha = jnp.where(first, width, d * r.alpha + (1 - d) * width)
  beta = jnp.where(first, lo, d * r.beta + (1 - d) * lo)
  return QuantRange(alpha, beta, r.count + 1)


def _quantize(x: jax.Array, r: QuantRange, seeds, axis: int, wrap: bool, implementation: str) -> jax.Array:
  x3 = _view(x, axis, r.alpha.shape[0])
  if x.size == 0:
    return jnp.zeros(x.shape, jnp.int8)
  inv, _, beta = _k.coefficients(r.alpha, r.beta)
  fn = _k.pallas_quantize if implementation == "pallas" else _k.jnp_quantize
  return fn(x3, inv, beta, seeds, wrap=wrap).reshape(x.shape)


def _dequantize(codes: jax.Array, r: QuantRange, axis: int, dtype, implementation: str, after=None) -> jax.Array:
  """x^ from the codes; with ``after`` (the backward's incoming cotangent) only once it exists.

  ``beta + 0 * after[0]`` (not simplified for floats: 0 * NaN is NaN) makes the dequantization wait
  for the backward pass to reach the layer; otherwise XLA:CPU's scheduler dequantizes every layer's
  codes as soon as the forward pass ends, and holds all the float copies at once.
  """
  c3 = _view(codes, axis, r.alpha.shape[0])
  if codes.size == 0:
    return jnp.zeros(codes.shape, dtype)
  _, step, beta = _k.coefficients(r.alpha, r.beta)
  if after is not None and after.size:
    beta = beta + jnp.float32(0.0) * jax.lax.stop_gradient(after).reshape(-1)[0].astype(jnp.float32)
  if implementation == "pallas":
    out = _k.pallas_dequantize(c3, step, beta, dtype=jnp.dtype(dtype))
  else:
    out = _k.jnp_dequantize(c3, step, beta, jnp.dtype(dtype))
  return out.reshape(codes.shape)


def update_range(r: QuantRange, x: ArrayLike, *, axis: int = -1, decay: float = DECAY) -> QuantRange:
  """The running range after batch ``x``: set by the first batch, then an EMA with ``decay``.

  alpha_g = max_g(x) - min_g(x), beta_g = min_g(x) when ``r.count == 0``; otherwise
  alpha_g <- decay alpha_g + (1 - decay)(max_g(x) - min_g(x)) and likewise beta_g with min_g(x).
  Groups split ``axis`` into ``len(r.alpha)`` contiguous chunks. An empty ``x`` leaves ``r`` as it is.

  Args:
    r: the current range (`init_range`).
    x: the batch.
    axis: the grouped axis (-1: channel groups; 1: heads of ``(batch, heads, ., .)`` tensors).
    decay: EMA decay in [0, 1) (Mesa: 0.9).

  Returns:
    The new `QuantRange` (``count`` + 1).

  Example:
    >>> r = update_range(init_range(1), jnp.array([[0.0, 2.0]]))
    >>> float(r.alpha[0]), float(r.beta[0])
    (2.0, 0.0)
    >>> r = update_range(r, jnp.array([[1.0, 5.0]]))
    >>> round(float(r.alpha[0]), 4), round(float(r.beta[0]), 4)
    (2.2, 0.1)
  """
  x = _check_array("x", x)
  axis = _check_axis(x, axis)
  r = _check_range("r", r, x, axis)
  decay = _validation.check_real("decay", decay, lower=0.0, upper=1.0, upper_open=True)
  return _update(r, x, axis, decay)


def quantize(x: ArrayLike, r: QuantRange, key: jax.Array, *, axis: int = -1, official_compat: bool = False,
             implementation: str = "jnp") -> jax.Array:
  """int8 codes of ``x`` in the groups' ranges, stochastically rounded (see the module docstring).

  codes = clip(floor((x - beta_g) 255 / alpha_g + u), 0, 255) - 128 with u ~ U[0, 1) from ``key``;
  with ``official_compat`` the value is clamped at 0 only and wraps modulo 256 above (the authors'
  kernel). A zero range gives code -128 (dequantized to beta_g).

  Args:
    x: the tensor.
    r: its range (`update_range`).
    key: a `jax.random` key for the rounding noise.
    axis: the grouped axis.
    official_compat: reproduce the authors' wrap-around above the range.
    implementation: ``"jnp"`` or ``"pallas"`` (the kernel; bit-identical codes).

  Returns:
    int8 codes of ``x``'s shape.

  Example:
    >>> x = jnp.linspace(-1.0, 1.0, 8).reshape(1, 8)
    >>> r = update_range(init_range(2), x)
    >>> codes = quantize(x, r, jax.random.key(0))
    >>> bool(jnp.all(jnp.abs(dequantize(codes, r) - x) < r.alpha.max() / 255))
    True
  """
  x = _check_array("x", x)
  axis = _check_axis(x, axis)
  r = _check_range("r", r, x, axis)
  _validation.check_key("key", key)
  _, wrap, implementation = _check_options(DECAY, official_compat, implementation)
  return _quantize(x, r, _seeds(key, "x"), axis, wrap, implementation)


def dequantize(codes: ArrayLike, r: QuantRange, *, axis: int = -1, dtype=jnp.float32,
               implementation: str = "jnp") -> jax.Array:
  """x^ = (codes + 128) alpha_g / 255 + beta_g, the values the backward passes use.

  Args:
    codes: int8 codes from `quantize`.
    r: the range they were quantized with.
    axis: the grouped axis.
    dtype: the floating dtype of the result.
    implementation: ``"jnp"`` or ``"pallas"`` (bit-identical).

  Returns:
    The dequantized tensor, ``codes``' shape.
  """
  codes = jnp.asarray(codes)
  if codes.dtype != jnp.int8:
    raise TypeError(f"codes: must be int8 codes from quantize, got dtype {codes.dtype}")
  axis = _check_axis(codes, axis)
  r = _check_range("r", r, codes, axis)
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise ValueError(f"dtype: must be a floating dtype, got {dtype}")
  _validation.check_choice("implementation", implementation, IMPLEMENTATIONS)
  return _dequantize(codes, r, axis, dtype, implementation)


# --- the operations: exact forward, 8-bit residuals ------------------------------------------------
def _with_codes(forward, ranges, seeds, axes, cfg):
  """Runs ``forward() -> (y, tensors)``, updates each tensor's range and quantizes it, all in one place.

  Returns ``(y, codes, new_ranges)``. Everything happens inside one conditional on a run-time
  predicate (the carried ranges are finite). Without it XLA fuses quantize and dequantize into one
  backward fusion that reads the float tensor, or schedules the quantization right before the
  backward reads the codes; either way the float tensor stays alive from the forward to the
  backward pass and nothing is saved (measured on XLA:CPU, which drops optimization barriers
  before fusion). A conditional's results exist only after it ran, and the next layer needs ``y``.
  The other branch (non-finite carried ranges, which the EMA would keep non-finite) returns zero
  codes; they dequantize to non-finite values, so the gradients are non-finite too.
  """
  decay, wrap, impl = cfg

  def run(quantize_them: bool):
    y, tensors = forward()
    new = tuple(_update(r, t, a, decay) for r, t, a in zip(ranges, tensors, axes))
    if quantize_them:
      codes = tuple(_quantize(t, r, sd, a, wrap, impl) for t, r, sd, a in zip(tensors, new, seeds, axes))
    else:
      codes = tuple(jnp.zeros(t.shape, jnp.int8) for t in tensors)
    return y, codes, new

  ok = jnp.bool_(True)
  for r in ranges:
    ok = ok & jnp.all(jnp.isfinite(r.alpha)) & jnp.all(jnp.isfinite(r.beta))
  return jax.lax.cond(ok, lambda: run(True), lambda: run(False))


def _dense_out(x, kernel, bias):
  y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
  if bias is not None:
    y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
  return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _dense(x, kernel, bias, r, seeds, cfg):
  decay, _, _ = cfg
  return _dense_out(x, kernel, bias), _update(r, x, -1, decay)


def _dense_fwd(x, kernel, bias, r, seeds, cfg):
  y, (codes,), (r,) = _with_codes(lambda: (_dense_out(x, kernel, bias), (x,)), (r,), (seeds,), (-1,), cfg)
  return (y, r), (codes, r, kernel, bias, jnp.zeros((), x.dtype))


def _dense_bwd(cfg, res, cot):
  codes, r, kernel, bias, proto = res
  g = cot[0]
  xh = _dequantize(codes, r, -1, proto.dtype, cfg[2], after=g)
  dx = jax.lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ()))).astype(proto.dtype)
  lead = tuple(range(g.ndim - 1))
  dw = jax.lax.dot_general(xh, g, ((lead, lead), ((), ()))).astype(kernel.dtype)
  db = None if bias is None else jnp.sum(g, axis=lead).astype(bias.dtype)
  return dx, dw, db, None, None


_dense.defvjp(_dense_fwd, _dense_bwd)


def mesa_dense(x: ArrayLike, kernel: ArrayLike, bias: ArrayLike | None, r: QuantRange, key: jax.Array, *,
               decay: float = DECAY, official_compat: bool = False,
               implementation: str = "jnp") -> tuple[jax.Array, QuantRange]:
  """``y = x W + b`` (exactly `flax.nnx.Linear`'s), saving ``x`` in 8 bits for ``dW``.

  Backward: ``dx = g W^T`` and ``db = sum g`` are exact; ``dW = x^T g`` uses x^, so with
  |x^ - x| <= Delta_c (the quantization step of the group of input channel c; rows r of the
  flattened batch)

    |dW_cj - dW*_cj| = |sum_r (x^_rc - x_rc) g_rj| <= Delta_c sum_r |g_rj|.

  Args:
    x: ``(..., in)`` inputs.
    kernel: ``(in, out)``.
    bias: ``(out,)`` or None.
    r: the range of ``x`` (channel groups of the last axis; groups divide ``in``).
    key: `jax.random` key of the rounding noise.
    decay: EMA decay of the range.
    official_compat: the authors' code's quantizer (see the module docstring).
    implementation: ``"jnp"`` or ``"pallas"``.

  Returns:
    ``(y, new_range)``.

  Example:
    >>> x = jnp.ones((2, 4)); w = jnp.ones((4, 3))
    >>> y, r = mesa_dense(x, w, None, init_range(2), jax.random.key(0))
    >>> y.tolist(), int(r.count)
    ([[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]], 1)
  """
  x = _check_array("x", x)
  kernel = _check_array("kernel", kernel)
  _validation.check_ndim("kernel", kernel, 2)
  if x.ndim < 1:
    raise ValueError(f"x: must have a feature axis, got shape {x.shape}")
  if kernel.shape[0] != x.shape[-1]:
    raise ValueError(f"kernel: must have x's {x.shape[-1]} features as its first axis, got shape {kernel.shape}")
  if bias is not None:
    bias = _check_array("bias", bias)
    if bias.shape != (kernel.shape[1],):
      raise ValueError(f"bias: must have shape ({kernel.shape[1]},), got {bias.shape}")
  r = _check_range("r", r, x, -1)
  _validation.check_key("key", key)
  cfg = _check_options(decay, official_compat, implementation)
  return _dense(x, kernel, bias, r, _seeds(key, "x"), cfg)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _gelu(x, r, seeds, cfg, approximate):
  return jax.nn.gelu(x, approximate=approximate), _update(r, x, -1, cfg[0])


def _gelu_fwd(x, r, seeds, cfg, approximate):
  y, (codes,), (r,) = _with_codes(lambda: (jax.nn.gelu(x, approximate=approximate), (x,)), (r,), (seeds,), (-1,),
                                  cfg)
  return (y, r), (codes, r, jnp.zeros((), x.dtype))


def _gelu_bwd(cfg, approximate, res, cot):
  codes, r, proto = res
  xh = _dequantize(codes, r, -1, proto.dtype, cfg[2], after=cot[0])
  _, vjp = jax.vjp(functools.partial(jax.nn.gelu, approximate=approximate), xh)
  return vjp(cot[0])[0], None, None


_gelu.defvjp(_gelu_fwd, _gelu_bwd)


def mesa_gelu(x: ArrayLike, r: QuantRange, key: jax.Array, *, approximate: bool = True, decay: float = DECAY,
              official_compat: bool = False, implementation: str = "jnp") -> tuple[jax.Array, QuantRange]:
  """`jax.nn.gelu` (exactly), saving its input in 8 bits.

  Backward: ``dx = g gelu'(x^)``. Since |gelu''| <= L = sqrt(2/pi) ~ 0.798 everywhere (the maximum is
  at 0, for the tanh form and for the erf form, whose gelu'' = phi(x)(2 - x^2)),

    |dx - dx*| <= L Delta |g|   elementwise.

  Args:
    x: ``(..., features)``.
    r: the range of ``x`` (channel groups of the last axis).
    key: `jax.random` key of the rounding noise.
    approximate: the tanh form (`flax.nnx.gelu`'s default) or the erf form.
    decay: EMA decay of the range.
    official_compat: the authors' code's quantizer.
    implementation: ``"jnp"`` or ``"pallas"``.

  Returns:
    ``(gelu(x), new_range)``.
  """
  x = _check_array("x", x)
  if x.ndim < 1:
    raise ValueError(f"x: must have a feature axis, got shape {x.shape}")
  r = _check_range("r", r, x, -1)
  _validation.check_key("key", key)
  cfg = _check_options(decay, official_compat, implementation)
  return _gelu(x, r, _seeds(key, "x"), cfg, bool(approximate))


def _ln_stats(x, epsilon):
  """flax's LayerNorm statistics (fast variance, float32 at least): mean and 1/std per row."""
  xf = jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32))
  mu = xf.mean(-1)
  mu2 = jax.lax.square(xf).mean(-1)
  var = jnp.maximum(0.0, mu2 - jax.lax.square(mu))
  return mu[..., None], jax.lax.rsqrt(var + epsilon)[..., None]


def _ln_out(x, mean, rstd, scale, bias):
  y = x - mean
  mul = rstd * scale.reshape((1,) * (x.ndim - 1) + (-1,))
  y *= mul
  y += bias.reshape((1,) * (x.ndim - 1) + (-1,))
  return jnp.asarray(y, jnp.result_type(x, scale, bias))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _layer_norm(x, scale, bias, r, seeds, cfg, epsilon):
  mean, rstd = _ln_stats(x, epsilon)
  return _ln_out(x, mean, rstd, scale, bias), _update(r, x, -1, cfg[0])


def _layer_norm_fwd(x, scale, bias, r, seeds, cfg, epsilon):
  mean, rstd = _ln_stats(x, epsilon)
  y, (codes,), (r,) = _with_codes(lambda: (_ln_out(x, mean, rstd, scale, bias), (x,)), (r,), (seeds,), (-1,), cfg)
  return (y, r), (codes, r, mean, rstd, scale, bias, jnp.zeros((), x.dtype))


def _layer_norm_bwd(cfg, epsilon, res, cot):
  codes, r, mean, rstd, scale, bias, proto = res
  g = cot[0].astype(rstd.dtype)
  xh = _dequantize(codes, r, -1, rstd.dtype, cfg[2], after=g)
  xn = (xh - mean) * rstd
  lead = tuple(range(g.ndim - 1))
  dscale = jnp.sum(g * xn, axis=lead).astype(scale.dtype)
  dbias = jnp.sum(g, axis=lead).astype(bias.dtype)
  dxn = g * scale
  dx = rstd * (dxn - dxn.mean(-1, keepdims=True) - xn * (dxn * xn).mean(-1, keepdims=True))
  return dx.astype(proto.dtype), dscale, dbias, None, None


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def mesa_layer_norm(x: ArrayLike, scale: ArrayLike, bias: ArrayLike, r: QuantRange, key: jax.Array, *,
                    epsilon: float = 1e-6, decay: float = DECAY, official_compat: bool = False,
                    implementation: str = "jnp") -> tuple[jax.Array, QuantRange]:
  """LayerNorm over the last axis (exactly `flax.nnx.LayerNorm`'s), saving its input in 8 bits.

  Forward: mu, var = E[x], max(0, E[x^2] - mu^2) per row, rho = 1/sqrt(var + eps),
  y = (x - mu) rho gamma + beta. The row's mu and rho are kept in float (2 numbers per row); the
  backward recomputes the normalized input from x^: n^ = (x^ - mu) rho, and with dn = g gamma,

    dgamma = sum_rows g n^,   dbeta = sum_rows g (exact),
    dx = rho (dn - mean_c(dn) - n^ mean_c(dn n^)).

  Error bounds, with e_c = n^_c - n_c, |e_c| <= rho Delta_c and m^ = mean_c(dn n^):

    |dgamma_c - dgamma*_c| <= sum_rows |g_c| rho Delta_c,
    |dx_c - dx*_c| = rho |e_c m^ + n_c mean_c(dn e)| <= rho^2 (Delta_c |m^| + |n_c| mean_c(|dn| Delta)).

  Args:
    x: ``(..., features)``.
    scale, bias: ``(features,)``.
    r: the range of ``x`` (channel groups of the last axis).
    key: `jax.random` key of the rounding noise.
    epsilon: added to the variance.
    decay: EMA decay of the range.
    official_compat: the authors' code's quantizer.
    implementation: ``"jnp"`` or ``"pallas"``.

  Returns:
    ``(y, new_range)``.
  """
  x = _check_array("x", x)
  scale = _check_array("scale", scale)
  bias = _check_array("bias", bias)
  if x.ndim < 1:
    raise ValueError(f"x: must have a feature axis, got shape {x.shape}")
  for name, v in (("scale", scale), ("bias", bias)):
    if v.shape != (x.shape[-1],):
      raise ValueError(f"{name}: must have shape ({x.shape[-1]},) (x's features), got {v.shape}")
  epsilon = _validation.check_real("epsilon", epsilon, lower=0.0, lower_open=True)
  r = _check_range("r", r, x, -1)
  _validation.check_key("key", key)
  cfg = _check_options(decay, official_compat, implementation)
  return _layer_norm(x, scale, bias, r, _seeds(key, "x"), cfg, epsilon)


def _softmax_bwd_math(ph, g):
  return ph * (g - jnp.sum(g * ph, axis=-1, keepdims=True))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _softmax(x, ranges, seeds, cfg):
  p = jax.nn.softmax(x, axis=-1)
  new = (_update(ranges[0], p, 1, cfg[0]),)
  if cfg[1]:
    new += (_update(ranges[1], x, 1, cfg[0]),)
  return p, new


def _softmax_fwd(x, ranges, seeds, cfg):
  def forward():  # the code also stores the input (the backward does not read it)
    p = jax.nn.softmax(x, axis=-1)
    return p, ((p, x) if cfg[1] else (p,))

  p, codes, new = _with_codes(forward, ranges, seeds, (1,) * len(ranges), cfg)
  return (p, new), (codes, new, jnp.zeros((), x.dtype))


def _softmax_bwd(cfg, res, cot):
  codes, ranges, proto = res
  ph = _dequantize(codes[0], ranges[0], 1, proto.dtype, cfg[2], after=cot[0])
  return _softmax_bwd_math(ph, cot[0]), None, None


_softmax.defvjp(_softmax_fwd, _softmax_bwd)


def _check_heads(name: str, x: jax.Array) -> None:
  if x.ndim != 4:
    raise ValueError(f"{name}: must be a (batch, heads, rows, columns) attention tensor, got shape {x.shape}")


def mesa_softmax(x: ArrayLike, ranges: tuple[QuantRange, ...], key: jax.Array, *, decay: float = DECAY,
                 official_compat: bool = False, implementation: str = "jnp") -> tuple[jax.Array, tuple]:
  """Softmax over the last axis of attention scores (exactly `jax.nn.softmax`), saving p in 8 bits.

  Backward: dx = p^ (g - <g, p^>). With p^ = p + e, |e| <= Delta (head-wise ranges), p^ >= 0
  (beta = min p >= 0 on the first batch) and sum_j p^_j <= 1 + n Delta over a row of n scores,

    |dx_i - dx*_i| = |e_i (g_i - <g, p^>) - p_i <g, e>|
                  <= Delta (|g_i| + max|g| (1 + n Delta)) + p_i Delta sum_j |g_j|.

  Args:
    x: ``(batch, heads, rows, columns)`` scores; groups are heads (or groups of heads).
    ranges: ``(range of p,)``; with ``official_compat`` ``(range of p, range of x)``.
    key: `jax.random` key of the rounding noise.
    decay: EMA decay of the ranges.
    official_compat: the authors' code: also store the input (difference 2 of the module docstring).
    implementation: ``"jnp"`` or ``"pallas"``.

  Returns:
    ``(p, new_ranges)``.
  """
  x = _check_array("x", x)
  _check_heads("x", x)
  cfg = _check_options(decay, official_compat, implementation)
  ranges = _check_ranges("ranges", ranges, 2 if cfg[1] else 1)
  for r in ranges:
    _check_range("ranges", r, x, 1)
  _validation.check_key("key", key)
  seeds = (_seeds(key, "p"),) + ((_seeds(key, "s"),) if cfg[1] else ())
  return _softmax(x, ranges, seeds, cfg)


def _bmm(a, b):
  return jnp.matmul(a, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _matmul(a, b, ranges, seeds, cfg):
  return _bmm(a, b), (_update(ranges[0], a, 1, cfg[0]), _update(ranges[1], b, 1, cfg[0]))


def _matmul_fwd(a, b, ranges, seeds, cfg):
  y, codes, (ra, rb) = _with_codes(lambda: (_bmm(a, b), (a, b)), ranges, seeds, (1, 1), cfg)
  return (y, (ra, rb)), (codes[0], ra, codes[1], rb, jnp.zeros((), a.dtype), jnp.zeros((), b.dtype))


def _matmul_bwd(cfg, res, cot):
  ca, ra, cb, rb, pa, pb = res
  g = cot[0]
  ah = _dequantize(ca, ra, 1, pa.dtype, cfg[2], after=g)
  bh = _dequantize(cb, rb, 1, pb.dtype, cfg[2], after=g)
  return jnp.matmul(g, jnp.swapaxes(bh, -1, -2)), jnp.matmul(jnp.swapaxes(ah, -1, -2), g), None, None


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def mesa_matmul(a: ArrayLike, b: ArrayLike, ranges: tuple[QuantRange, QuantRange], key: jax.Array, *,
                decay: float = DECAY, official_compat: bool = False,
                implementation: str = "jnp") -> tuple[jax.Array, tuple]:
  """An attention matmul ``a @ b`` (exactly `jnp.matmul`), saving both operands in 8 bits, head-wise.

  For ``q @ k^T`` pass ``a = q`` ``(B, H, N, d)`` and ``b = k^T`` ``(B, H, d, M)``; for ``p @ v``,
  ``a = p``, ``b = v``. Backward: da = g b^^T, db = a^^T g, so with head-wise steps Delta_a, Delta_b

    |da_ik - da*_ik| <= Delta_b sum_j |g_ij|,   |db_kj - db*_kj| <= Delta_a sum_i |g_ij|.

  Args:
    a, b: ``(batch, heads, ., .)`` operands; groups are heads (or groups of heads).
    ranges: ``(range of a, range of b)``.
    key: `jax.random` key of the rounding noise.
    decay: EMA decay of the ranges.
    official_compat: the authors' code's quantizer.
    implementation: ``"jnp"`` or ``"pallas"``.

  Returns:
    ``(a @ b, new_ranges)``.
  """
  a = _check_array("a", a)
  b = _check_array("b", b)
  _check_heads("a", a)
  _check_heads("b", b)
  if a.shape[:2] != b.shape[:2] or a.shape[-1] != b.shape[-2]:
    raise ValueError(f"b: must have shape ({a.shape[0]}, {a.shape[1]}, {a.shape[-1]}, columns) to multiply a "
                     f"{a.shape}, got {b.shape}")
  ranges = _check_ranges("ranges", ranges, 2)
  _check_range("ranges", ranges[0], a, 1)
  _check_range("ranges", ranges[1], b, 1)
  _validation.check_key("key", key)
  cfg = _check_options(decay, official_compat, implementation)
  return _matmul(a, b, ranges, (_seeds(key, "a"), _seeds(key, "b")), cfg)


def _attention_out(q, k, v):
  """flax's dot-product attention order of operations on (B, H, N, d) tensors."""
  qs = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
  s = jnp.matmul(qs, jnp.swapaxes(k, -1, -2))
  p = jax.nn.softmax(s, axis=-1)
  return qs, s, p, jnp.matmul(p, v)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _attention(q, k, v, ranges, seeds, cfg):
  return _attention_fwd(q, k, v, ranges, seeds, cfg)[0]


def _attention_fwd(q, k, v, ranges, seeds, cfg):
  def forward():  # default ranges: (q, k, p, v); official_compat: (q, k, s, p, p for p @ v, v)
    qs, s, p, o = _attention_out(q, k, v)
    return o, ((qs, k, s, p, p, v) if cfg[1] else (qs, k, p, v))

  o, codes, new = _with_codes(forward, ranges, seeds, (1,) * len(ranges), cfg)
  return (o, new), (codes, new, jnp.zeros((), q.dtype), jnp.zeros((), k.dtype), jnp.zeros((), v.dtype))


def _attention_bwd(cfg, res, cot):
  codes, ranges, pq, pk, pv = res
  impl = cfg[2]
  if cfg[1]:
    cq, ck, _, cp, cp2, cv = codes
    rq, rk, _, rp, rp2, rv = ranges
  else:
    cq, ck, cp, cv = codes
    rq, rk, rp, rv = ranges
    cp2, rp2 = cp, rp
  g = cot[0]
  qh = _dequantize(cq, rq, 1, pq.dtype, impl, after=g)
  kh = _dequantize(ck, rk, 1, pk.dtype, impl, after=g)
  ph = _dequantize(cp, rp, 1, pq.dtype, impl, after=g)
  ph2 = ph if cp2 is cp else _dequantize(cp2, rp2, 1, pq.dtype, impl, after=g)
  vh = _dequantize(cv, rv, 1, pv.dtype, impl, after=g)
  dp = jnp.matmul(g, jnp.swapaxes(vh, -1, -2))
  dv = jnp.matmul(jnp.swapaxes(ph2, -1, -2), g)
  ds = _softmax_bwd_math(ph, dp)
  dqs = jnp.matmul(ds, kh)
  dk = jnp.matmul(jnp.swapaxes(ds, -1, -2), qh)
  dq = dqs / jnp.sqrt(qh.shape[-1]).astype(pq.dtype)
  return dq.astype(pq.dtype), dk.astype(pk.dtype), dv.astype(pv.dtype), None, None


_attention.defvjp(_attention_fwd, _attention_bwd)


def mesa_attention(q: ArrayLike, k: ArrayLike, v: ArrayLike, ranges: tuple[QuantRange, ...], key: jax.Array, *,
                   decay: float = DECAY, official_compat: bool = False,
                   implementation: str = "jnp") -> tuple[jax.Array, tuple]:
  """``softmax(q k^T / sqrt(d)) v`` exactly, saving q / sqrt(d), k, p and v in 8 bits, head-wise.

  The two attention matmuls (`mesa_matmul`) and the softmax (`mesa_softmax`) in one operation, so
  the probabilities p are stored once for both their backward uses (the softmax's and ``p @ v``'s).
  With ``official_compat`` it stores what the authors' modules store: the scores s too, and a second,
  separately quantized copy of p for ``p @ v`` (differences 2 and 3 of the module docstring).

  Backward (^: dequantized): dp = g v^^T, dv = p^^T g, ds = p^ (dp - <dp, p^>), dq = ds k^ / sqrt(d),
  dk = ds^T (q/sqrt(d))^; each term's error follows from `mesa_matmul`'s and `mesa_softmax`'s bounds.

  Args:
    q, k, v: ``(batch, heads, tokens, head_dim)``.
    ranges: 4 ranges (q, k, p, v) or, with ``official_compat``, 6 (q, k, s, p, p for ``p @ v``, v);
      each with heads (or groups of heads) as groups.
    key: `jax.random` key of the rounding noise.
    decay: EMA decay of the ranges.
    official_compat: store what the authors' code stores.
    implementation: ``"jnp"`` or ``"pallas"``.

  Returns:
    ``(output (batch, heads, tokens, head_dim), new_ranges)``.
  """
  q, k, v = _check_array("q", q), _check_array("k", k), _check_array("v", v)
  for name, t in (("q", q), ("k", k), ("v", v)):
    _check_heads(name, t)
  if k.shape != q.shape[:2] + k.shape[2:] or k.shape[-1] != q.shape[-1]:
    raise ValueError(f"k: must have q's batch, heads and head_dim {q.shape}, got {k.shape}")
  if v.shape[:3] != k.shape[:3]:
    raise ValueError(f"v: must have k's batch, heads and tokens {k.shape[:3]}, got {v.shape}")
  cfg = _check_options(decay, official_compat, implementation)
  roles = ("q", "k", "s", "p", "p2", "v") if cfg[1] else ("q", "k", "p", "v")
  ranges = _check_ranges("ranges", ranges, len(roles))
  for r in ranges:
    _check_range("ranges", r, q, 1)
  _validation.check_key("key", key)
  return _attention(q, k, v, ranges, tuple(_seeds(key, role) for role in roles), cfg)


# --- NNX layers ------------------------------------------------------------------------------------
class _Ranges(nnx.Module):
  """``n`` running ranges of ``groups`` groups, as `MesaRange` variables."""

  def __init__(self, n: int, groups: int):
    self.alpha = MesaRange(jnp.zeros((n, groups), jnp.float32))
    self.beta = MesaRange(jnp.zeros((n, groups), jnp.float32))
    self.count = MesaRange(jnp.zeros((n,), jnp.int32))

  def get(self) -> tuple[QuantRange, ...]:
    a, b, c = self.alpha[...], self.beta[...], self.count[...]
    return tuple(QuantRange(a[i], b[i], c[i]) for i in range(a.shape[0]))

  def set(self, ranges) -> None:
    self.alpha.value = jnp.stack([r.alpha for r in ranges])
    self.beta.value = jnp.stack([r.beta for r in ranges])
    self.count.value = jnp.stack([r.count for r in ranges])


def _train_key(module, train, key):
  """(training?, key): the key is required in training (stochastic rounding)."""
  train = is_training(module, train)
  if train:
    _validation.check_key("key", key, why=" in training (Mesa's stochastic rounding)")
  return train, key


class _MesaLayer(nnx.Module):
  deterministic: bool = True  # NNX's mode attribute: model.train() sets False, model.eval() True

  def _options(self, groups, decay, official_compat, implementation):
    self.groups = _validation.check_int("groups", groups, lower=1)
    self.decay, self.official_compat, self.implementation = _check_options(decay, official_compat, implementation)

  @property
  def _cfg(self) -> dict:
    return dict(decay=self.decay, official_compat=self.official_compat, implementation=self.implementation)


class MesaDense(_MesaLayer):
  """A dense layer (`flax.nnx.Linear`'s parameters and output) saving its input in 8 bits (`mesa_dense`).

  Args:
    in_features, out_features: sizes.
    use_bias: add a bias.
    groups: channel groups of the input's range (divides ``in_features``).
    decay: EMA decay of the range (Mesa: 0.9).
    official_compat: the authors' quantizer (see `jaxdyn.memory` Mesa's module docstring).
    implementation: ``"jnp"`` or ``"pallas"``.
    rngs: ``nnx.Rngs`` for the kernel (LeCun normal) and the bias (zeros).

  Call ``layer(x, train=None, key=None)``: in training (``train=True`` or ``layer.train()``) the
  range updates and ``key`` draws the rounding; in inference it is ``x W + b``, no key needed.

  Example:
    >>> layer = MesaDense(4, 3, groups=2, rngs=nnx.Rngs(0))
    >>> x = jnp.ones((2, 4))
    >>> bool(jnp.all(layer(x, train=True, key=jax.random.key(1)) == layer(x)))
    True
  """

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True, groups: int = 1,
               decay: float = DECAY, official_compat: bool = False, implementation: str = "jnp",
               rngs: nnx.Rngs):
    in_features = _validation.check_int("in_features", in_features, lower=1)
    out_features = _validation.check_int("out_features", out_features, lower=1)
    self._options(groups, decay, official_compat, implementation)
    if in_features % self.groups:
      raise ValueError(f"groups: must divide in_features={in_features}, got {groups}")
    self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.ranges = _Ranges(1, self.groups)
    self.in_features, self.out_features = in_features, out_features

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    train, key = _train_key(self, train, key)
    bias = None if self.bias is None else self.bias[...]
    if not train:
      return _dense_out(jnp.asarray(x), self.kernel[...], bias)
    y, r = mesa_dense(x, self.kernel[...], bias, self.ranges.get()[0], key, **self._cfg)
    self.ranges.set((r,))
    return y


class MesaGELU(_MesaLayer):
  """GELU (`flax.nnx.gelu`, tanh form by default) saving its input in 8 bits (`mesa_gelu`).

  Args:
    groups: channel groups of the input's range (divides the feature count).
    approximate: the tanh form (True) or the erf form.
    decay, official_compat, implementation: as `MesaDense`.
  """

  def __init__(self, *, groups: int = 1, approximate: bool = True, decay: float = DECAY,
               official_compat: bool = False, implementation: str = "jnp"):
    self._options(groups, decay, official_compat, implementation)
    self.approximate = bool(approximate)
    self.ranges = _Ranges(1, self.groups)

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    train, key = _train_key(self, train, key)
    if not train:
      return jax.nn.gelu(jnp.asarray(x), approximate=self.approximate)
    y, r = mesa_gelu(x, self.ranges.get()[0], key, approximate=self.approximate, **self._cfg)
    self.ranges.set((r,))
    return y


class MesaLayerNorm(_MesaLayer):
  """LayerNorm (`flax.nnx.LayerNorm`'s parameters and output) saving its input in 8 bits.

  Args:
    num_features: size of the normalized last axis.
    epsilon: added to the variance (flax's default 1e-6).
    groups: channel groups of the input's range (divides ``num_features``).
    decay, official_compat, implementation: as `MesaDense`.
    rngs: unused (the scale starts at 1, the bias at 0); accepted like NNX layers.
  """

  def __init__(self, num_features: int, *, epsilon: float = 1e-6, groups: int = 1, decay: float = DECAY,
               official_compat: bool = False, implementation: str = "jnp", rngs: nnx.Rngs | None = None):
    del rngs
    num_features = _validation.check_int("num_features", num_features, lower=1)
    self.epsilon = _validation.check_real("epsilon", epsilon, lower=0.0, lower_open=True)
    self._options(groups, decay, official_compat, implementation)
    if num_features % self.groups:
      raise ValueError(f"groups: must divide num_features={num_features}, got {groups}")
    self.scale = nnx.Param(jnp.ones((num_features,)))
    self.bias = nnx.Param(jnp.zeros((num_features,)))
    self.ranges = _Ranges(1, self.groups)

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    train, key = _train_key(self, train, key)
    if not train:
      x = jnp.asarray(x)
      mean, rstd = _ln_stats(x, self.epsilon)
      return _ln_out(x, mean, rstd, self.scale[...], self.bias[...])
    y, r = mesa_layer_norm(x, self.scale[...], self.bias[...], self.ranges.get()[0], key, epsilon=self.epsilon,
                           **self._cfg)
    self.ranges.set((r,))
    return y


class MesaAttention(_MesaLayer):
  """Multi-head self-attention whose saved activations are all 8-bit (Mesa's MSA).

  ``qkv = x W_qkv + b`` (one `MesaDense`, so x is stored once), heads split as in DeiT/timm,
  ``o = softmax(q k^T / sqrt(d)) v`` (`mesa_attention`: q, k, p, v head-wise), then the output
  projection (`MesaDense`). In inference every step is the plain operation.

  Args:
    dim: token width.
    num_heads: heads (divides ``dim``); the attention tensors' groups.
    groups: channel groups of the two dense layers' inputs (divides ``dim``; DeiT-Mesa uses heads).
    decay, official_compat, implementation: as `MesaDense`.
    rngs: ``nnx.Rngs`` for the projections.
  """

  def __init__(self, dim: int, num_heads: int, *, groups: int | None = None, decay: float = DECAY,
               official_compat: bool = False, implementation: str = "jnp", rngs: nnx.Rngs):
    dim = _validation.check_int("dim", dim, lower=1)
    num_heads = _validation.check_int("num_heads", num_heads, lower=1)
    if dim % num_heads:
      raise ValueError(f"num_heads: must divide dim={dim}, got {num_heads}")
    groups = num_heads if groups is None else groups
    self._options(groups, decay, official_compat, implementation)
    cfg = self._cfg
    self.qkv = MesaDense(dim, 3 * dim, groups=self.groups, rngs=rngs, **cfg)
    self.proj = MesaDense(dim, dim, groups=self.groups, rngs=rngs, **cfg)
    self.heads = _Ranges(6 if self.official_compat else 4, num_heads)
    self.dim, self.num_heads = dim, num_heads

  def _split(self, qkv):
    b, n, _ = qkv.shape
    qkv = qkv.reshape(b, n, 3, self.num_heads, self.dim // self.num_heads)
    qkv = jnp.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B, H, N, d)
    return qkv[0], qkv[1], qkv[2]

  def _merge(self, o):
    b, _, n, _ = o.shape
    return jnp.transpose(o, (0, 2, 1, 3)).reshape(b, n, self.dim)

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    train, key = _train_key(self, train, key)
    x = jnp.asarray(x)
    if x.ndim != 3 or x.shape[-1] != self.dim:
      raise ValueError(f"x: must be (batch, tokens, {self.dim}), got shape {x.shape}")
    if not train:
      q, k, v = self._split(self.qkv(x, train=False))
      return self.proj(self._merge(_attention_out(q, k, v)[-1]), train=False)
    k0, k1, k2 = (jax.random.fold_in(key, i) for i in range(3))
    q, k, v = self._split(self.qkv(x, train=True, key=k0))
    o, ranges = mesa_attention(q, k, v, self.heads.get(), k1, **self._cfg)
    self.heads.set(ranges)
    return self.proj(self._merge(o), train=True, key=k2)
