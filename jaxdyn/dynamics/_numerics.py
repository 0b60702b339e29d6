"""Exact power-of-two rescaling shared by the dynamics family (private).

DSE, its kernel and the spectral entropies are invariant to a common scale (of the points and
the bandwidth, or of the eigenvalues). Scaling by a power of two is exact in floating point, so
working at a safe scale changes no bit of a result that the direct formula computes, and makes
the rest (magnitudes that would overflow or underflow) compute too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# |x|^t of the largest eigenvalue is left as it is inside [2^-60, 2^60]: there a float32 sum of
# N <= 2^60 such terms neither overflows nor loses the largest one to underflow.
_POWER_LIMIT = 2.0**60


def pow2(n: jax.Array, dtype) -> jax.Array:
  """``2.0 ** n`` in ``dtype``, exactly (built from its bits), for integers ``n`` in its normal range."""
  info = jnp.finfo(dtype)
  bits = (jnp.asarray(n).astype(jnp.int64 if info.bits == 64 else jnp.int32) + (info.maxexp - 1)) << info.nmant
  return jax.lax.bitcast_convert_type(bits, dtype)


def times_pow2(x: jax.Array, n: jax.Array) -> jax.Array:
  """``x * 2**n`` for an integer scalar ``n``: exact unless the result leaves the normal range.

  Three factors whose exponents share a sign, each a normal number: a shift that no single
  power of two of the dtype can express (``2**-140`` in float32) still applies, and an
  intermediate overflows or underflows only when the result itself does.
  """
  lim = jnp.finfo(x.dtype).maxexp - 8
  n = jnp.clip(jnp.asarray(n, jnp.int32), -3 * lim, 3 * lim)
  a = n // 3
  b = (n - a) // 2
  return x * pow2(a, x.dtype) * pow2(b, x.dtype) * pow2(n - a - b, x.dtype)


def power_reference(top: jax.Array, t: jax.Array) -> jax.Array:
  """What to divide eigenvalue magnitudes by before raising them to ``t``: 1, or ``top``.

  ``top`` is the largest magnitude. Where ``top ** t`` lies in ``[2^-60, 2^60]`` the answer is
  1 (dividing by it changes no bit); elsewhere (eigenvalues far from 1, a large ``t``) it is
  ``top``, which leaves the normalised ``p_i`` unchanged and keeps every power in ``[0, 1]``.
  A NaN ``top`` gives NaN and a zero ``top`` gives 0, so the entropy is NaN as it should be.
  """
  tt = top ** jnp.asarray(t).astype(top.dtype)
  inside = (tt >= 1.0 / _POWER_LIMIT) & (tt <= _POWER_LIMIT)
  return jnp.where(inside, jnp.ones_like(top), top)


@jax.jit
def normalise_scale(K: jax.Array) -> jax.Array:
  """``K`` times the power of two that brings ``max |K|`` near 1, where it lies outside ``[2^-24, 2^24]``.

  Inside that range (every diffusion kernel: ``1/N <= max |K| <= 1``) ``K`` is returned as it
  is. A non-finite ``K`` is returned unchanged.
  """
  e = jnp.frexp(jnp.max(jnp.abs(K)))[1]
  return times_pow2(K, jnp.where(jnp.abs(e) <= 24, 0, -e))
