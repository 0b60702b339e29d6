"""A 2-D convolution whose lowering is chosen per backend and per shape.

XLA:CPU's convolution is fast on large feature maps and slow on small ones, and JAX's autodiff forms
of its gradients are slow inside `jax.lax.scan` (a spiking network's time loop). `conv2d` computes

  y[b, h, w, o] = sum_{i, j, c} x_pad[b, s_h h + d_h i, s_w w + d_w j, c] K[i, j, c, o]

(NHWC input, HWIO kernel, strides s, kernel dilation d, padding "SAME", "VALID" or explicit pairs) with
one of three lowerings, all equal in values and gradients to `jax.lax.conv_general_dilated`:

- ``"xla"``: `jax.lax.conv_general_dilated`, differentiated by JAX.
- ``"xla_canonical"``: the same forward; a `jax.custom_vjp` writes both gradients as canonical NHWC/HWIO
  forward convolutions. The input gradient convolves the output cotangent g (lhs-dilated by s) with
  the flipped, transposed kernel (rhs-dilated by d); the kernel gradient
    dK[i, j, c, o] = sum_{b, h, w} x_pad[b, s_h h + d_h i, s_w w + d_w j, c] g[b, h, w, o]
  convolves the input transposed to (C_in, H, W, B) with g transposed to (H', W', B, C_out) as the
  kernel (window stride d, rhs dilation s), behind optimization barriers so that XLA does not fold the
  transposes back. XLA:CPU rewrites JAX's gradient convolutions to this form at the top level of a
  program but not inside while-loop bodies, where the kernel gradient was ~50x slower (jax 0.10.2,
  16x32x32x32 input, 3x3x32x32 kernel, 6 scan steps).
- ``"im2col"``: the kh * kw shifted, strided windows of the padded input concatenated on the channel
  axis (B, H', W', kh kw C_in), then one matmul with the kernel reshaped to (kh kw C_in, C_out); a
  `jax.custom_vjp` gives dK = windows^T g and dx = the windows' transpose (pads and adds) of g K^T.
  The window matrix is rebuilt in the backward pass, so the saved residual is x, not a kh kw times
  larger copy; and it is built and consumed in batch chunks of about 8 MiB (`jax.lax.map` / `scan`)
  so that it stays in cache: XLA:CPU writes a whole-batch window matrix at about 1 GB/s. Its
  gradients are matmuls, also fast inside loops. A 1x1 kernel is a dense layer over the channels.
- ``"winograd"`` (3x3 kernels, stride 1, dilation 1, padding of at most 2 per side): Winograd's
  minimal filtering F(2x2, 3x3) (Lavin and Gray, CVPR 2016, https://arxiv.org/abs/1509.09308). Each
  2x2 output tile is Y = A^T [(G K G^T) . (B^T d B)] A from the 4x4 input tile d around it: 16 (C_in x
  C_out) matmuls over all tiles, 16 products per tile where the direct form has 36, so 2.25x fewer
  multiplications than im2col's matmul, and a transformed-tile array 16/4 the input's size against
  im2col's 9x. A `jax.custom_vjp` gives dx as the same algorithm on the cotangent with the flipped,
  transposed kernel (whose transform is the forward's U permuted, so one U serves both), and
  dK = G^T [sum over tiles V^T (A dY A^T)] G: again 16 matmuls. Tiles are built and consumed in batch
  chunks as im2col's windows. The transforms' coefficients are 0, +-1 and +-1/2, so the results equal
  the direct convolution to float32 rounding (about 1e-6 relative); half-precision inputs are
  transformed and multiplied in float32 (in bfloat16 the transforms' sums lose most of the 8 bits).

`conv_lowering` picks from this table, measured with ``benchmarks/conv_speed.py`` on this project's
CPU machines (AMD EPYC, 2 cores, jax 0.10.2, float32; float32 sgemm 2048^3 about 120 GFLOP/s).
Forward + backward of one layer in ms; the spiking VGG-11 layers per time step inside a two-step scan
(its time loop), the ResNet-18 layers at the top level; 3x3 kernels, SAME padding:

  ==================  =====  ======  =============  ======
  layer               batch  xla     xla_canonical  im2col
  ==================  =====  ======  =============  ======
  2x2, 512 -> 512     32     231.7   208.0          6.2
  4x4, 512 -> 512     32     1255.4  33.7           20.4
  8x8, 256 -> 256     32     1864.8  41.5           30.1
  16x16, 64 -> 128    32     902.3   23.3           12.3
  32x32, 64 -> 64     128    3093.8  2955.9         291.4
  16x16, 128 -> 128   128    593.4   931.1          335.0
  8x8, 256 -> 256     128    268.3   399.4          178.5
  4x4, 512 -> 512     128    277.1   274.1          195.7
  ==================  =====  ======  =============  ======

im2col was the fastest of these three at every shape of both networks (1x1 stride-2 shortcuts
included). Winograd against im2col, 2026-12-02 (same machines, sgemm 145-195 GFLOP/s that day; one
run of ``benchmarks/conv_speed.py``; single layers vary by +-30% between runs on these shared
machines, so only the large differences are policy):

  ==================  =====  ======  ========
  layer               batch  im2col  winograd
  ==================  =====  ======  ========
  16x16, 64 -> 128    32     11.0    15.4
  8x8, 128 -> 256     32     10.7    12.6
  8x8, 256 -> 256     32     21.5    15.7
  4x4, 512 -> 512     32     16.3    14.1
  2x2, 512 -> 512     32     5.2     12.1
  32x32, 3 -> 64      128    31.3    55.7
  32x32, 64 -> 64     128    288.7   205.5
  16x16, 128 -> 128   128    188.2   94.5
  8x8, 256 -> 256     128    133.6   104.4
  4x4, 512 -> 512     128    201.3   127.6
  ==================  =====  ======  ========

Winograd is faster on ResNet-18's 3x3 stride-1 layers from 8x8 up (in an earlier run of the same
day, 32x32: 408 against 602 ms, 16x16: 240 against 340, 8x8: 183 against 247) and loses on 2x2 maps
(one tile) and on the 3-channel stem; at 4x4 the runs disagree (127 against 201 above, 191 against
188 and 162 against 160 in two others), so im2col stays there. The ResNet-18 step went from 4.2-4.5 s to
3.0-3.9 s (``resnet18_rate_over_sgemm`` 0.56-0.60 to 0.73-0.84). On the spiking VGG-11 the layers are
within the noise, and Winograd's transformed kernels on its weight-heavy 8x8 layers, which XLA
hoists out of the time loop, raised the SLTT step's temporaries from 107 to 116 MiB (over the 0.3
memory ratio to BPTT): hence the policy's "transformed kernel no larger than the input" rule.

So on CPU the policy is ``"winograd"`` for 3x3 stride-1 layers with >= 16 input channels, an output
map of at least 8x8 and 16 C_out <= B H' W'; otherwise ``"im2col"`` unless one example's window
matrix exceeds 64 MiB (large images, e.g. 224x224x64 inputs, unmeasured here, where even a
one-example chunk leaves the cache); then
``"xla_canonical"``, which is also right inside loops. Tiny layers (under 2e7 forward FLOPs, e.g. the
small models of the tests and notebooks) also take ``"xla_canonical"``: they run in well under a
millisecond in any lowering, and one convolution op compiles several times faster than the windows.

On GPU and TPU the policy keeps XLA's convolution (``"xla"``). On one NVIDIA H200 (jax 0.11.2,
2026-11-30, ``benchmarks/conv_speed.py --skip resnet``) every layer of both tables ran in 0.1-0.5 ms
forward + backward under ``"xla"``, and im2col was slower on the large maps (ResNet-18's 32x32,
64 -> 64 at batch 128: 1.7 ms against 0.5); the spiking VGG-11 SLTT step took 9 ms (BPTT 11 ms,
temp memory 84 against 362 MiB). No TPU has been measured.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdyn import _validation

__all__ = ["LOWERINGS", "Conv2d", "conv2d", "conv_lowering"]

LOWERINGS = ("xla", "xla_canonical", "im2col", "winograd")

_DN = ("NHWC", "HWIO", "NHWC")

Pads = tuple[tuple[int, int], tuple[int, int]]


# --------------------------------------------------------------------------------------------------
# Argument handling.


def _pair(name: str, value, lower: int) -> tuple[int, int]:
  if isinstance(value, (tuple, list)):
    if len(value) != 2:
      raise ValueError(f"{name}: must be an int >= {lower} or a pair of them, got {value!r}")
    return tuple(_validation.check_int(name, v, lower=lower) for v in value)
  v = _validation.check_int(name, value, lower=lower)
  return v, v


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2


def _resolve_padding(padding, spatial: Sequence[int], eff_kernel: Sequence[int], strides) -> Pads:
  if isinstance(padding, str):
    mode = _validation.check_choice("padding", padding.upper(), ("SAME", "VALID"))
    if mode == "VALID":
      return (0, 0), (0, 0)
    return tuple(_same_pads(n, k, s) for n, k, s in zip(spatial, eff_kernel, strides))
  try:
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  except (TypeError, ValueError):
    pads = None
  if pads is None or len(pads) != 2 or any(p < 0 for pair in pads for p in pair):
    raise ValueError(f"padding: must be 'SAME', 'VALID' or ((top, bottom), (left, right)) of ints >= 0, "
                     f"got {padding!r}")
  return pads


def _effective(ksize, dilation) -> tuple[int, int]:
  """The dilated window's extent d (k - 1) + 1 along each spatial axis."""
  return tuple(d * (k - 1) + 1 for k, d in zip(ksize, dilation))


def _out_map(spatial, pads: Pads, ksize, strides, dilation) -> tuple[int, int]:
  """(H', W') of the convolution (< 1 when the window does not fit)."""
  return tuple((n + p[0] + p[1] - e) // s + 1
               for n, p, e, s in zip(spatial, pads, _effective(ksize, dilation), strides))


# --------------------------------------------------------------------------------------------------
# The lowerings.


def _lax_conv(x, kernel, strides, pads, dilation):
  return jax.lax.conv_general_dilated(x, kernel, strides, pads, rhs_dilation=dilation, dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _canonical_conv(x, kernel, strides, pads, dilation):
  return _lax_conv(x, kernel, strides, pads, dilation)


def _canonical_fwd(x, kernel, strides, pads, dilation):
  return _lax_conv(x, kernel, strides, pads, dilation), (x, kernel)


def _canonical_bwd(strides, pads, dilation, res, g):
  x, kernel = res
  ksize, out = kernel.shape[:2], g.shape[1:3]
  # Input gradient: the transposed convolution as a canonical one.
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  back = []
  for n, k, (p0, _), o, s, d in zip(x.shape[1:3], ksize, pads, out, strides, dilation):
    before = d * (k - 1) - p0
    back.append((before, n + d * (k - 1) - ((o - 1) * s + 1) - before))
  dx = jax.lax.conv_general_dilated(g, flipped, (1, 1), back, lhs_dilation=strides, rhs_dilation=dilation,
                                    dimension_numbers=_DN)
  # Kernel gradient: the transposed input (channels as batch) convolved with the transposed cotangent
  # as its kernel; the barriers stop XLA from folding the transposes back into the slow form.
  xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  xp = xp[:, :(out[0] - 1) * strides[0] + dilation[0] * (ksize[0] - 1) + 1,
          :(out[1] - 1) * strides[1] + dilation[1] * (ksize[1] - 1) + 1]
  xt = jax.lax.optimization_barrier(xp.transpose(3, 1, 2, 0))  # (C_in, H_pad, W_pad, B)
  gt = jax.lax.optimization_barrier(g.transpose(1, 2, 0, 3))  # (H_out, W_out, B, C_out)
  dk = jax.lax.conv_general_dilated(xt, gt, dilation, "VALID", rhs_dilation=strides,
                                    dimension_numbers=_DN).transpose(1, 2, 0, 3)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


_canonical_conv.defvjp(_canonical_fwd, _canonical_bwd)


def _windows(x, ksize, strides, pads, dilation):
  """(B, H', W', kh * kw * C_in): the shifted, strided windows in (i, j, c) order (the HWIO reshape's)."""
  b, h, w, c = x.shape
  if any(p for pair in pads for p in pair):
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  ho, wo = _out_map((h, w), pads, ksize, strides, dilation)
  cols = [
      jax.lax.slice(x, (0, i * dilation[0], j * dilation[1], 0),
                    (b, i * dilation[0] + (ho - 1) * strides[0] + 1, j * dilation[1] + (wo - 1) * strides[1] + 1, c),
                    (1, *strides, 1))
      for i in range(ksize[0]) for j in range(ksize[1])
  ]
  return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


# The window matrix is built and consumed in batch chunks of about this many bytes, so that it stays in
# cache: XLA:CPU writes a whole-batch window matrix at ~1 GB/s (a ResNet-18 3x3 64 -> 64 layer on
# 128x32x32 maps: 594 ms forward + backward whole-batch, 322 ms in chunks of 4 images).
_CHUNK_BYTES = 8 << 20


def _batch_chunk(batch: int, window_bytes_per_example: int) -> int:
  """The largest divisor of ``batch`` whose window matrix fits `_CHUNK_BYTES` (the whole batch if it does)."""
  if batch * window_bytes_per_example <= 2 * _CHUNK_BYTES:
    return max(batch, 1)
  best = 1
  for c in range(1, batch + 1):
    if batch % c == 0 and c * window_bytes_per_example <= _CHUNK_BYTES:
      best = c
  return best


def _split(a, chunk):
  """(B, ...) -> (B / chunk, chunk, ...)."""
  return a.reshape(a.shape[0] // chunk, chunk, *a.shape[1:])


def _chunked(fn, chunk, x):
  """``fn`` over batch chunks of ``x`` (one call when the chunk is the batch)."""
  if chunk >= x.shape[0]:
    return fn(x)
  out = jax.lax.map(fn, _split(x, chunk))
  return out.reshape(x.shape[0], *out.shape[2:])


def _chunked_grads(grads, chunk, x, g, acc):
  """``(dx, dk)`` from ``grads(x_chunk, g_chunk) -> (dx_chunk, dk_part)`` over batch chunks: dx
  concatenated, the kernel parts summed onto the zeros ``acc`` (one call when the chunk is the batch)."""
  if chunk >= x.shape[0]:
    return grads(x, g)

  def body(dk, xg):
    dxc, dkc = grads(*xg)
    return dk + dkc, dxc

  dk, dx = jax.lax.scan(body, acc, (_split(x, chunk), _split(g, chunk)))
  return dx.reshape(x.shape), dk


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _im2col_conv(x, kernel, strides, pads, dilation):
  return _im2col_fwd(x, kernel, strides, pads, dilation)[0]


def _im2col_plan(x, kernel, strides, pads, dilation):
  kh, kw, cin, cout = kernel.shape
  ho, wo = _out_map(x.shape[1:3], pads, (kh, kw), strides, dilation)
  chunk = _batch_chunk(x.shape[0], ho * wo * kh * kw * cin * x.dtype.itemsize)
  return (kh, kw), kernel.reshape(kh * kw * cin, cout), chunk


def _im2col_fwd(x, kernel, strides, pads, dilation):
  ksize, kmat, chunk = _im2col_plan(x, kernel, strides, pads, dilation)
  y = _chunked(lambda xc: jnp.dot(_windows(xc, ksize, strides, pads, dilation), kmat,
                                  preferred_element_type=x.dtype), chunk, x)
  return y, (x, kernel)  # the window matrix is rebuilt in the backward pass: the residual is x


def _im2col_bwd(strides, pads, dilation, res, g):
  x, kernel = res
  ksize, kmat, chunk = _im2col_plan(x, kernel, strides, pads, dilation)

  def grads(xc, gc):
    cols, transpose = jax.vjp(lambda xc: _windows(xc, ksize, strides, pads, dilation), xc)
    dk = jnp.einsum("bhwk,bhwo->ko", cols, gc, preferred_element_type=kernel.dtype)
    return transpose(jnp.dot(gc, kmat.T, preferred_element_type=x.dtype))[0], dk

  dx, dk = _chunked_grads(grads, chunk, x, g, jnp.zeros(kmat.shape, kernel.dtype))
  return dx.astype(x.dtype), dk.reshape(kernel.shape).astype(kernel.dtype)


_im2col_conv.defvjp(_im2col_fwd, _im2col_bwd)


# Winograd F(2x2, 3x3) (Lavin and Gray, 2016): each 2x2 output tile from a 4x4 input tile as
# Y = A^T [(G K G^T) . (B^T d B)] A, 16 products per tile instead of 36 for each (C_in, C_out) pair.
_WINO_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32)
_WINO_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
_WINO_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32)


def _bilinear(left: np.ndarray, right: np.ndarray, parts):
  """``out[p][q] = sum_{i, j} left[p, i] right[q, j] parts[i][j]`` over arrays, as adds where the
  coefficient is +-1 (all of B's and A's) and skipping zeros; a flat list in (p, q) order."""
  out = []
  for p in range(left.shape[0]):
    for q in range(right.shape[0]):
      acc = None
      for i in range(left.shape[1]):
        for j in range(right.shape[1]):
          c = float(left[p, i] * right[q, j])
          if c == 0.0:
            continue
          term = parts[i][j] if c == 1.0 else -parts[i][j] if c == -1.0 else parts[i][j] * c
          acc = term if acc is None else acc + term
      out.append(acc)
  return out


def _wino_tiles(ho, wo):
  return -(-ho // 2), -(-wo // 2)


def _wino_input(x, pads, tiles, order=range(4)):
  """V = B^T d B for every 4x4 input tile d (stride 2): a list of 16 (B T_h T_w, C_in) arrays in (p, q)
  order, p and q each taken in ``order`` (separate arrays, one 2-D matmul each: stacking them for a
  batched matmul cost a copy of every tile array, about 20% of the ResNet-18 step)."""
  b, h, w, c = x.shape
  th, tw = tiles
  xp = jnp.pad(x, ((0, 0), (pads[0][0], 2 * th + 2 - h - pads[0][0]), (pads[1][0], 2 * tw + 2 - w - pads[1][0]),
                   (0, 0)))
  d = [[xp[:, i:i + 2 * th:2, j:j + 2 * tw:2, :] for j in range(4)] for i in range(4)]
  v = _bilinear(_WINO_BT, _WINO_BT, d)
  return [v[4 * p + q].reshape(b * th * tw, c) for p in order for q in order]


def _wino_output_cotangent(g, tiles):
  """dM = A dY A^T for each 2x2 tile of the output cotangent: a list of 16 (B T_h T_w, C_out) arrays."""
  b, ho, wo, o = g.shape
  th, tw = tiles
  gp = jnp.pad(g, ((0, 0), (0, 2 * th - ho), (0, 2 * tw - wo), (0, 0))).reshape(b, th, 2, tw, 2, o)
  parts = [[gp[:, :, a, :, c, :] for c in range(2)] for a in range(2)]
  return [t.reshape(b * th * tw, o) for t in _bilinear(_WINO_AT.T, _WINO_AT.T, parts)]


def _wino_kernel(kernel):
  """U = G K G^T for every (C_in, C_out) pair: (16, C_in, C_out)."""
  return jnp.stack(_bilinear(_WINO_G, _WINO_G, [[kernel[i, j] for j in range(3)] for i in range(3)]))


# Flipping the kernel's window reverses G's columns, which swaps G's rows 0 and 3: the transformed
# flipped kernel is U with its 16 entries permuted by _WINO_FLIP on each axis, so the input gradient
# reuses the forward's U (one transformed kernel per layer, not two, held in memory).
_WINO_FLIP = (3, 1, 2, 0)


def _wino_conv(x, u, pads, out_map, flipped: bool = False):
  """The Winograd convolution of a whole (chunk of a) batch with transformed kernel ``u`` (16, C, O);
  ``flipped``: with the kernel flipped in its window and transposed (C and O swapped), i.e. the
  input gradient's convolution, from the same ``u``."""
  b = x.shape[0]
  th, tw = tiles = _wino_tiles(*out_map)
  order = _WINO_FLIP if flipped else range(4)
  if flipped:  # product y pairs the input tile transform at flip(y) with U[y] transposed
    m = [jnp.dot(v, u[y].T, preferred_element_type=x.dtype) for y, v in enumerate(_wino_input(x, pads, tiles, order))]
  else:
    m = [jnp.dot(v, u[y], preferred_element_type=x.dtype) for y, v in enumerate(_wino_input(x, pads, tiles))]
  o = m[0].shape[-1]
  m = [t.reshape(b, th, tw, o) for t in m]
  parts = [[m[4 * order[i] + order[j]] for j in range(4)] for i in range(4)]
  y = jnp.stack(_bilinear(_WINO_AT, _WINO_AT, parts))  # [(a, b)] of (B, T, T, O)
  y = y.reshape(2, 2, b, th, tw, o).transpose(2, 3, 0, 4, 1, 5)
  return y.reshape(b, 2 * th, 2 * tw, o)[:, :out_map[0], :out_map[1]]


def _wino_dtype(dtype):
  """Half-precision inputs are transformed and multiplied in float32: the transforms' sums of up to
  nine terms would otherwise lose most of bfloat16's 8 mantissa bits (errors of order 1 at unit scale)."""
  return jnp.promote_types(dtype, jnp.float32)


def _wino_forward(x, kernel, pads):
  """The Winograd forward in batch chunks (as im2col's): a chunk's tiles in and out of the 16
  matmuls (V and M) stay in cache."""
  dtype = x.dtype
  x, kernel = x.astype(_wino_dtype(dtype)), kernel.astype(_wino_dtype(dtype))
  b, h, w, c = x.shape
  o = kernel.shape[-1]
  out_map = _out_map((h, w), pads, (3, 3), (1, 1), (1, 1))
  th, tw = _wino_tiles(*out_map)
  u = _wino_kernel(kernel)
  chunk = _batch_chunk(b, 16 * th * tw * (c + o) * x.dtype.itemsize)
  return _chunked(lambda xc: _wino_conv(xc, u, pads, out_map), chunk, x).astype(dtype)


def _winograd_supported(kernel_shape, strides, pads, dilation) -> bool:
  return (tuple(kernel_shape[:2]) == (3, 3) and tuple(strides) == (1, 1) and tuple(dilation) == (1, 1)
          and all(0 <= p <= 2 for pair in pads for p in pair))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _winograd_conv(x, kernel, strides, pads, dilation):
  return _wino_forward(x, kernel, pads)


def _winograd_fwd(x, kernel, strides, pads, dilation):
  return _wino_forward(x, kernel, pads), (x, kernel)  # the tiles are rebuilt in the backward pass


def _winograd_bwd(strides, pads, dilation, res, g):
  x_in, k_in = res
  x, kernel, g = (a.astype(_wino_dtype(x_in.dtype)) for a in (x_in, k_in, g))
  b, h, w, c = x.shape
  o = kernel.shape[-1]
  tiles = _wino_tiles(*g.shape[1:3])
  # dx: the transposed convolution, a stride-1 3x3 convolution of g with the flipped, transposed
  # kernel and padding 2 - p on each side (so within [0, 2] again): Winograd as well.
  back = tuple((2 - lo, 2 - hi) for lo, hi in pads)
  u = _wino_kernel(kernel)
  # dK = G^T [sum over tiles V^T dM] G with dM = A dY A^T per output tile: 16 (C_in x C_out) matmuls.

  def grads(xc, gc):
    dxc = _wino_conv(gc, u, back, (h, w), flipped=True)
    du = jnp.stack([jnp.dot(v.T, dm, preferred_element_type=kernel.dtype)
                    for v, dm in zip(_wino_input(xc, pads, tiles), _wino_output_cotangent(gc, tiles))])
    return dxc, du

  # Both in the same batch chunks, sized for the four tile arrays (V and dM here, dx's V and M).
  chunk = _batch_chunk(b, 2 * 16 * tiles[0] * tiles[1] * (c + o) * x.dtype.itemsize)
  dx, du = _chunked_grads(grads, chunk, x, g, jnp.zeros((16, c, o), kernel.dtype))
  du = du.reshape(4, 4, c, o)
  dk = jnp.stack(_bilinear(_WINO_G.T, _WINO_G.T, [[du[p, q] for q in range(4)] for p in range(4)]))
  return dx.astype(x_in.dtype), dk.reshape(kernel.shape).astype(k_in.dtype)


_winograd_conv.defvjp(_winograd_fwd, _winograd_bwd)


_LOWER = {"xla": _lax_conv, "xla_canonical": _canonical_conv, "im2col": _im2col_conv, "winograd": _winograd_conv}


# --------------------------------------------------------------------------------------------------
# The policy.

# XLA:CPU: im2col while one example's window matrix (float32 bytes) stays within this.
_CPU_IM2COL_MAX_BYTES = 64 << 20
# ... and while the layer is worth it: below this many forward FLOPs a layer runs in well under a
# millisecond in any lowering, and XLA's one convolution compiles several times faster than the
# window matrix's slices (what small models and tests mostly pay for).
_CPU_IM2COL_MIN_FLOPS = 20_000_000
# Where im2col would run, Winograd F(2x2, 3x3) instead for 3x3 stride-1 layers with at least this many
# input channels and an output map of at least this size on both axes: measured faster at 8x8 to
# 32x32, level with im2col at 4x4 (too few tiles), and a 3-channel stem has too little to multiply.
_CPU_WINOGRAD_MIN_CIN = 16
_CPU_WINOGRAD_MIN_MAP = 8
# ... and while the transformed kernel (16 C_in C_out numbers, 16/9 of the kernel) is no larger than
# the layer's input (B H W C_in), i.e. 16 C_out <= B H' W': on weight-heavy layers (small maps, wide
# channels, small batch) it is memory that im2col does not need, held through a whole time loop when
# XLA hoists it out as loop-invariant (the spiking VGG-11's 8x8 layers at batch 32 added 9 MiB to the
# SLTT step's 107 MiB of temporaries).


def conv_lowering(x_shape: Sequence[int], kernel_shape: Sequence[int], *, strides=1, padding="SAME",
                  dilation=1, backend: str | None = None) -> str:
  """The lowering `conv2d` uses for these shapes on ``backend`` (default: JAX's default backend).

  On CPU: ``"im2col"`` (1x1 kernels always; others while one example's window matrix stays within
  64 MiB), else ``"xla_canonical"``; layers under 2e7 forward FLOPs take ``"xla_canonical"`` too (they
  run in well under a millisecond either way, and XLA's convolution compiles faster). Where im2col
  would run, a 3x3 stride-1 layer (dilation 1, padding <= 2) with at least 16 input channels, an
  output map of at least 8x8 and 16 C_out <= B H' W' (its transformed kernel no larger than its
  input) takes ``"winograd"``. On GPU and TPU: ``"xla"``. The measurements behind the policy are in
  this module's docstring.

  Args:
    x_shape: ``(B, H, W, C_in)``.
    kernel_shape: ``(kh, kw, C_in, C_out)``.
    strides, padding, dilation: as in `conv2d`.
    backend: ``"cpu"``, ``"gpu"``, ``"tpu"`` (or a platform name such as ``"cuda"``); None: the default.

  Returns:
    One of `LOWERINGS`.

  Example:
    >>> conv_lowering((32, 2, 2, 512), (3, 3, 512, 512), backend="cpu")
    'im2col'
    >>> conv_lowering((32, 2, 2, 512), (3, 3, 512, 512), backend="gpu")
    'xla'
  """
  backend = jax.default_backend() if backend is None else backend
  if not isinstance(backend, str):
    raise TypeError(f"backend: must be a platform name such as 'cpu', 'gpu' or 'tpu', got {backend!r}")
  if backend.lower() != "cpu":
    return "xla"
  x_shape, kernel_shape = tuple(x_shape), tuple(kernel_shape)
  strides, dilation = _pair("strides", strides, 1), _pair("dilation", dilation, 1)
  pads = _resolve_padding(padding, x_shape[1:3], _effective(kernel_shape[:2], dilation), strides)
  ho, wo = _out_map(x_shape[1:3], pads, kernel_shape[:2], strides, dilation)
  window = ho * wo * kernel_shape[0] * kernel_shape[1] * x_shape[3]  # one example's window matrix
  if x_shape[0] * window * kernel_shape[3] * 2 < _CPU_IM2COL_MIN_FLOPS:
    return "xla_canonical"
  if kernel_shape[0] * kernel_shape[1] == 1 or window * 4 <= _CPU_IM2COL_MAX_BYTES:
    if (_winograd_supported(kernel_shape, strides, pads, dilation) and x_shape[3] >= _CPU_WINOGRAD_MIN_CIN
        and min(ho, wo) >= _CPU_WINOGRAD_MIN_MAP and 16 * kernel_shape[3] <= x_shape[0] * ho * wo):
      return "winograd"
    return "im2col"
  return "xla_canonical"


# --------------------------------------------------------------------------------------------------
# Public API.


def conv2d(x: jax.Array, kernel: jax.Array, *, strides: int | Sequence[int] = 1,
           padding: str | Sequence[tuple[int, int]] = "SAME", dilation: int | Sequence[int] = 1,
           lowering: str | None = None) -> jax.Array:
  """NHWC x HWIO 2-D convolution, lowered as `conv_lowering` picks (or as ``lowering`` says).

  y[b, h, w, o] = sum_{i, j, c} x_pad[b, s_h h + d_h i, s_w w + d_w j, c] K[i, j, c, o]. Values and
  gradients equal `jax.lax.conv_general_dilated` with ``dimension_numbers=("NHWC", "HWIO", "NHWC")``
  and ``rhs_dilation=dilation``, to float rounding; only the programs differ (module docstring).

  Args:
    x: ``(B, H, W, C_in)``.
    kernel: ``(kh, kw, C_in, C_out)``; x and kernel are promoted to a common dtype (integer and bool
      inputs to the default float).
    strides: s >= 1, an int or an (s_h, s_w) pair (Python, NumPy or 0-d array ints).
    padding: ``"SAME"`` (TensorFlow-style: output ceil(H / s)), ``"VALID"``, or ``((top, bottom),
      (left, right))`` of ints >= 0.
    dilation: the kernel dilation d >= 1, an int or a pair.
    lowering: one of `LOWERINGS`; None: `conv_lowering` for these shapes on the default backend.

  Returns:
    ``(B, H', W', C_out)``; an empty batch (B = 0) gives an empty output, and NaN or infinite inputs
    propagate as in any convolution.

  Example:
    >>> import jax.numpy as jnp
    >>> conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 5)), strides=2).shape
    (1, 2, 2, 5)
    >>> float(conv2d(jnp.ones((1, 3, 3, 1)), jnp.ones((3, 3, 1, 1)), padding="VALID", lowering="im2col")[0, 0, 0, 0])
    9.0

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311 (the spiking models this was built for).
  """
  strides, dilation = _pair("strides", strides, 1), _pair("dilation", dilation, 1)
  if lowering is not None:
    _validation.check_choice("lowering", lowering, LOWERINGS)
  if jnp.ndim(x) != 4:
    raise ValueError(f"x: must be (B, H, W, C_in), got shape {jnp.shape(x)}")
  if jnp.ndim(kernel) != 4 or jnp.shape(kernel)[2] != jnp.shape(x)[3]:
    raise ValueError(f"kernel: must be (kh, kw, C_in, C_out) with C_in = x.shape[-1] = {jnp.shape(x)[3]}, "
                     f"got shape {jnp.shape(kernel)}")
  dtype = jnp.result_type(x, kernel)
  if not jnp.issubdtype(dtype, jnp.inexact):  # integer or bool images: the default float, as nnx.Conv
    dtype = jnp.result_type(float)
  x, kernel = jnp.asarray(x, dtype), jnp.asarray(kernel, dtype)
  eff = _effective(kernel.shape[:2], dilation)
  pads = _resolve_padding(padding, x.shape[1:3], eff, strides)
  if min(_out_map(x.shape[1:3], pads, kernel.shape[:2], strides, dilation)) < 1:
    raise ValueError(f"kernel: the (dilated) {eff[0]}x{eff[1]} window does not fit the padded "
                     f"{x.shape[1]}x{x.shape[2]} input with padding {pads}")
  if lowering is None:
    lowering = conv_lowering(x.shape, kernel.shape, strides=strides, padding=pads, dilation=dilation)
  elif lowering == "winograd" and not _winograd_supported(kernel.shape, strides, pads, dilation):
    raise ValueError(f"lowering: 'winograd' needs a 3x3 kernel, stride 1, dilation 1 and padding of at most 2 on "
                     f"each side, got kernel {kernel.shape[:2]}, strides {strides}, dilation {dilation}, "
                     f"padding {pads}")
  return _LOWER[lowering](x, kernel, strides, pads, dilation)


class Conv2d(nnx.Module):
  """NNX 2-D convolution (NHWC) built on `conv2d`; parameters (``kernel``, ``bias``) as in ``nnx.Conv``.

  Args:
    in_features: input channels.
    out_features: output channels.
    kernel_size: ``(kh, kw)``.
    strides: spatial stride (an int or a pair).
    padding: ``"SAME"`` (default), ``"VALID"`` or explicit pairs, as in `conv2d`.
    dilation: kernel dilation (an int or a pair).
    use_bias: add a bias (initialised to zero).
    kernel_init: initialiser of the ``(kh, kw, in, out)`` kernel (LeCun normal, as ``nnx.Conv``).
    lowering: one of `LOWERINGS`, fixed for this layer; None: `conv_lowering` at each call.
    rngs: ``nnx.Rngs``.

  Returns:
    (on call) the convolved ``(B, H', W', out_features)`` array.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> Conv2d(2, 4, (3, 3), rngs=nnx.Rngs(0))(jnp.ones((1, 5, 5, 2))).shape
    (1, 5, 5, 4)
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: Sequence[int], *,
               strides: int | Sequence[int] = 1, padding: str | Sequence[tuple[int, int]] = "SAME",
               dilation: int | Sequence[int] = 1, use_bias: bool = True,
               kernel_init=nnx.initializers.lecun_normal(), lowering: str | None = None, rngs: nnx.Rngs):
    in_features, out_features = (_validation.check_int(name, v, lower=1) for name, v in (
        ("in_features", in_features), ("out_features", out_features)))
    if not isinstance(kernel_size, (tuple, list)) or len(kernel_size) != 2:
      raise ValueError(f"kernel_size: must be a pair of ints >= 1 (kh, kw), got {kernel_size!r}")
    kernel_size = tuple(_validation.check_int("kernel_size", v, lower=1) for v in kernel_size)
    self.strides, self.dilation = _pair("strides", strides, 1), _pair("dilation", dilation, 1)
    if isinstance(padding, str):
      _validation.check_choice("padding", padding.upper(), ("SAME", "VALID"))
    else:
      _resolve_padding(padding, (1, 1), (1, 1), (1, 1))
    self.padding = padding
    if lowering is not None:
      _validation.check_choice("lowering", lowering, LOWERINGS)
    self.lowering = lowering
    self.kernel = nnx.Param(kernel_init(rngs.params(), (*kernel_size, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = conv2d(x, self.kernel[...], strides=self.strides, padding=self.padding, dilation=self.dilation,
               lowering=self.lowering)
    return y if self.bias is None else y + self.bias[...]
