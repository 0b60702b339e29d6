"""Mesa's group-wise 8-bit quantize / dequantize: the jnp path and a Pallas kernel (private).

The tensor is viewed as ``(P, G, Q)``: G groups (contiguous channel groups, or heads), P rows before
the grouped axis, Q elements of one group after it (a reshape, no copy). With the group's range
``alpha_g`` (width) and ``beta_g`` (minimum), ``inv_g = 255 / alpha_g`` (0 when that is not finite,
i.e. a zero range) and ``step_g = alpha_g / 255``:

  v = (x - beta_g) * inv_g,   q = floor(v + u),   u ~ U[0, 1),
  codes = clip(q, 0, 255) - 128            (int8; official_compat: q wraps modulo 256 instead),
  x^ = (codes + 128) * step_g + beta_g.

``floor(v + u)`` is stochastic rounding: E[q] = v for v in [0, 255], and |q - v| < 1, so
|x^ - x| < step_g for every x inside the group's range.

The uniform ``u`` of element ``i`` (its flat index in ``x``, as uint32) is a counter-based hash of
``i`` and two 32-bit seeds drawn from the key (the MurmurHash3 finaliser, twice):

  h = fmix32(i * 0x9E3779B9 + s0),  h = fmix32(h ^ s1),  u = (h >> 8) / 2^24,

so the Pallas kernel draws the same numbers in-kernel as the jnp path (no noise tensor in memory) and
both give the same codes and values bit for bit under ``jit`` (op-by-op dispatch of the jnp path
rounds ``(codes + 128) step`` before adding beta, where a compiled loop may fuse the two: 1 ulp).
(The authors' CUDA kernel likewise draws one Philox number per thread.)

The kernel (`pallas_quantize`, `pallas_dequantize`) runs one program per (group, row block, column
block) over ``(BP, BQ)`` tiles, block sizes powers of two (Triton), with the group's coefficients as
one-element blocks; rows and columns that do not fill a tile are zero-padded in the wrapper and cut
off after. Off GPU/TPU it runs in Pallas interpret mode (`jaxdyn._pallas`), much slower than the jnp
path, which is why ``"jnp"`` is the default implementation.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from jaxdyn import _pallas

LEVELS = 255  # 8 bits: codes 0 .. 255, stored as int8 (code - 128)
_OFFSET = 128
_GOLDEN = 0x9E3779B9
_M1, _M2 = 0x85EBCA6B, 0xC2B2AE35


def _u32(v) -> jax.Array:
  return jnp.asarray(v, jnp.uint32)


def _fmix32(h: jax.Array) -> jax.Array:
  h = h ^ jax.lax.shift_right_logical(h, _u32(16))
  h = h * _u32(_M1)
  h = h ^ jax.lax.shift_right_logical(h, _u32(13))
  h = h * _u32(_M2)
  return h ^ jax.lax.shift_right_logical(h, _u32(16))


def uniform_from_index(index: jax.Array, s0: jax.Array, s1: jax.Array) -> jax.Array:
  """U[0, 1) float32 numbers, a counter-based hash of uint32 ``index`` and the seeds ``s0``, ``s1``."""
  h = _fmix32(index * _u32(_GOLDEN) + s0)
  h = _fmix32(h ^ s1)
  return jax.lax.shift_right_logical(h, _u32(8)).astype(jnp.float32) * jnp.float32(2.0 ** -24)


def coefficients(alpha: jax.Array, beta: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(inv, step, beta)`` per group, float32: inv = 255 / alpha (0 unless finite), step = alpha / 255."""
  alpha = jnp.asarray(alpha, jnp.float32)
  inv = jnp.float32(LEVELS) / alpha
  inv = jnp.where(jnp.isfinite(inv) & (alpha > 0), inv, jnp.float32(0.0))
  inv = jnp.where(jnp.isnan(alpha), alpha, inv)  # a NaN range stays NaN (non-finite inputs propagate)
  return inv, alpha / jnp.float32(LEVELS), jnp.asarray(beta, jnp.float32)


def _codes(x, inv, beta, u, wrap: bool):
  v = (x.astype(jnp.float32) - beta) * inv
  q = jnp.floor(v + u)
  if wrap:  # the authors' kernel: clamp at 0, then the uint8 store keeps the low 8 bits
    q = jnp.maximum(q, 0.0)
    q = q - jnp.float32(256.0) * jnp.floor(q * jnp.float32(1.0 / 256.0))
  else:
    q = jnp.clip(q, 0.0, jnp.float32(LEVELS))
  return (q.astype(jnp.int32) - _OFFSET).astype(jnp.int8)


def _values(codes, step, beta, dtype):
  return ((codes.astype(jnp.int32) + _OFFSET).astype(jnp.float32) * step + beta).astype(dtype)


# --- the jnp path ----------------------------------------------------------------------------------
def jnp_quantize(x3: jax.Array, inv, beta, seeds, *, wrap: bool) -> jax.Array:
  """int8 codes of ``x3`` (P, G, Q) with per-group ``inv``, ``beta`` (G,) and uint32 ``seeds`` (2,)."""
  p, g, q = x3.shape
  index = jax.lax.broadcasted_iota(jnp.uint32, x3.shape, 0) * _u32(g * q)
  index = index + jax.lax.broadcasted_iota(jnp.uint32, x3.shape, 1) * _u32(q)
  index = index + jax.lax.broadcasted_iota(jnp.uint32, x3.shape, 2)
  u = uniform_from_index(index, seeds[0], seeds[1])
  return _codes(x3, inv[None, :, None], beta[None, :, None], u, wrap)


def jnp_dequantize(codes3: jax.Array, step, beta, dtype) -> jax.Array:
  return _values(codes3, step[None, :, None], beta[None, :, None], dtype)


# --- the Pallas kernel -----------------------------------------------------------------------------
def _pow2_ceil(n: int) -> int:
  return 1 << max(0, (n - 1).bit_length())


def _blocks(p: int, q: int) -> tuple[int, int]:
  """Power-of-two tile ``(BP, BQ)``: a whole group row when it is a power of two up to 1,024."""
  bq = _pow2_ceil(q)
  if bq != q or q > 1024:
    bq = 1024 if q % 1024 == 0 else min(128, bq)
  bp = min(_pow2_ceil(p), max(1, 2048 // bq))
  return bp, bq


def _pad_to(x3, bp: int, bq: int):
  p, _, q = x3.shape
  pp, pq = -p % bp, -q % bq
  if pp or pq:
    x3 = jnp.pad(x3, ((0, pp), (0, 0), (0, pq)))
  return x3


def _quantize_kernel(x_ref, inv_ref, beta_ref, seed_ref, o_ref, *, bp, bq, g_total, q_total, wrap):
  g = pl.program_id(0)
  i = pl.program_id(1)
  j = pl.program_id(2)
  rows = jax.lax.broadcasted_iota(jnp.int32, (bp, bq), 0) + i * bp
  cols = jax.lax.broadcasted_iota(jnp.int32, (bp, bq), 1) + j * bq
  index = (rows.astype(jnp.uint32) * _u32(g_total) + g.astype(jnp.uint32)) * _u32(q_total) + cols.astype(jnp.uint32)
  u = uniform_from_index(index, seed_ref[0], seed_ref[1])
  o_ref[...] = _codes(x_ref[...], inv_ref[0], beta_ref[0], u, wrap)


def _dequantize_kernel(c_ref, step_ref, beta_ref, o_ref):
  o_ref[...] = _values(c_ref[...], step_ref[0], beta_ref[0], o_ref.dtype)


def _specs(bp: int, bq: int):
  tile = pl.BlockSpec((bp, None, bq), lambda g, i, j: (i, g, j))
  scalar = pl.BlockSpec((1,), lambda g, i, j: (g,))
  return tile, scalar


@functools.partial(jax.jit, static_argnames=("wrap", "interpret"))
def pallas_quantize(x3: jax.Array, inv, beta, seeds, *, wrap: bool, interpret: bool | None = None) -> jax.Array:
  """`jnp_quantize` as a Pallas kernel (bit-identical codes)."""
  p, g, q = x3.shape
  bp, bq = _blocks(p, q)
  xp = _pad_to(x3, bp, bq)
  tile, scalar = _specs(bp, bq)
  target = _pallas.target(interpret)
  out = pl.pallas_call(
      functools.partial(_quantize_kernel, bp=bp, bq=bq, g_total=g, q_total=q, wrap=wrap),
      out_shape=jax.ShapeDtypeStruct(xp.shape, jnp.int8),
      grid=(g, xp.shape[0] // bp, xp.shape[2] // bq),
      in_specs=[tile, scalar, scalar, pl.BlockSpec((2,), lambda g, i, j: (0,))],
      out_specs=tile,
      **_pallas.call_options(target),
  )(xp, inv, beta, seeds)
  return out[:p, :, :q]


@functools.partial(jax.jit, static_argnames=("dtype", "interpret"))
def pallas_dequantize(codes3: jax.Array, step, beta, *, dtype, interpret: bool | None = None) -> jax.Array:
  """`jnp_dequantize` as a Pallas kernel (bit-identical values)."""
  p, g, q = codes3.shape
  bp, bq = _blocks(p, q)
  cp = _pad_to(codes3, bp, bq)
  tile, scalar = _specs(bp, bq)
  target = _pallas.target(interpret)
  out = pl.pallas_call(
      _dequantize_kernel,
      out_shape=jax.ShapeDtypeStruct(cp.shape, jnp.dtype(dtype)),
      grid=(g, cp.shape[0] // bp, cp.shape[2] // bq),
      in_specs=[tile, scalar, scalar],
      out_specs=tile,
      **_pallas.call_options(target),
  )(cp, step, beta)
  return out[:p, :, :q]
