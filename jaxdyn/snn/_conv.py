"""A 2-D convolution whose backward pass stays fast inside `jax.lax.scan` on XLA:CPU.

Spiking networks run their layers inside a time loop, and SLTT must keep it a loop (a scan) for its
memory to stay flat in T. On XLA:CPU the convolutions that JAX's autodiff emits for a conv's
gradients are not rewritten to the fast canonical form inside while-loop bodies: measured here
(jax 0.10.2, 16x32x32x32 input, 3x3x32x32 kernel, 6 steps), the kernel gradient inside a scan took
~50x as long as at the top level, making a spiking VGG's train step ~17x slower scanned than unrolled.

`conv2d` computes the same function with a `jax.custom_vjp` whose backward pass writes both gradients
as canonical NHWC/HWIO convolutions, which stay fast in loops: the input gradient convolves the output
cotangent g with the flipped, transposed kernel (lhs-dilated for strides > 1); the kernel gradient
  dK[i, j, c, o] = sum_{b, h, w} x_pad[b, s h + i, s w + j, c] g[b, h, w, o]
convolves the input transposed to (C_in, H, W, B) with g transposed to (H', W', B, C_out) as the kernel
(rhs-dilated by s), with optimization barriers so that XLA does not fold the transposes away again.
In the measurement above it is ~45x faster inside the scan. The gradients equal JAX's. `Conv2d` is the NNX layer; with ``loop_vjp=None`` it
uses this path on CPU only (GPU/TPU convolution libraries handle the autodiff forms well).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn import _validation

__all__ = ["Conv2d", "conv2d"]

_DN = ("NHWC", "HWIO", "NHWC")


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2


def _lax_conv(x, kernel, stride, pads):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), pads, dimension_numbers=_DN)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _loop_conv(x, kernel, stride, pads):
  return _lax_conv(x, kernel, stride, pads)


def _loop_conv_fwd(x, kernel, stride, pads):
  return _lax_conv(x, kernel, stride, pads), (x, kernel)


def _loop_conv_bwd(stride, pads, res, g):
  x, kernel = res
  kh, kw = kernel.shape[:2]
  (ph0, ph1), (pw0, pw1) = pads
  ho, wo = g.shape[1:3]
  # Input gradient: the transposed convolution as a canonical one.
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  back = []
  for size, k, p0, out in ((x.shape[1], kh, ph0, ho), (x.shape[2], kw, pw0, wo)):
    before = k - 1 - p0
    back.append((before, size + k - 1 - ((out - 1) * stride + 1) - before))
  dx = jax.lax.conv_general_dilated(g, flipped, (1, 1), back, lhs_dilation=(stride, stride),
                                    dimension_numbers=_DN)
  # Kernel gradient: a canonical convolution of the transposed input (channels as batch) with the
  # transposed cotangent as its kernel. The optimization barriers keep XLA from folding the transposes
  # back into the non-canonical form that is slow in loops.
  xp = jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)))[:, :(ho - 1) * stride + kh, :(wo - 1) * stride + kw]
  xt = jax.lax.optimization_barrier(xp.transpose(3, 1, 2, 0))  # (C_in, H_pad, W_pad, B)
  gt = jax.lax.optimization_barrier(g.transpose(1, 2, 0, 3))  # (H_out, W_out, B, C_out)
  dk = jax.lax.conv_general_dilated(xt, gt, (1, 1), "VALID", rhs_dilation=(stride, stride),
                                    dimension_numbers=_DN).transpose(1, 2, 0, 3)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


_loop_conv.defvjp(_loop_conv_fwd, _loop_conv_bwd)


def conv2d(x: jax.Array, kernel: jax.Array, *, stride: int = 1, loop_vjp: bool | None = None) -> jax.Array:
  """NHWC x HWIO convolution with "SAME" padding; optionally with the loop-friendly backward pass.

  y[b, h, w, o] = sum_{i, j, c} x_pad[b, s h + i, s w + j, c] K[i, j, c, o] (TensorFlow-style SAME
  padding). Values and gradients equal `jax.lax.conv_general_dilated`'s; only the backward pass's
  form differs (see the module docstring).

  Args:
    x: ``(B, H, W, C_in)``.
    kernel: ``(kh, kw, C_in, C_out)``.
    stride: the spatial stride s >= 1 (an int: Python, NumPy or 0-d array).
    loop_vjp: use the custom backward pass; None: on the CPU backend only.

  Returns:
    ``(B, ceil(H / s), ceil(W / s), C_out)``; an empty batch (B = 0) gives an empty output, and NaN or
    infinite inputs propagate as in any convolution.

  Example:
    >>> import jax.numpy as jnp
    >>> conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 5)), stride=2).shape
    (1, 2, 2, 5)

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311 (the spiking models this serves).
  """
  stride = _validation.check_int("stride", stride, lower=1)
  if jnp.ndim(x) != 4:
    raise ValueError(f"x: must be (B, H, W, C_in), got shape {jnp.shape(x)}")
  if jnp.ndim(kernel) != 4 or jnp.shape(kernel)[2] != jnp.shape(x)[3]:
    raise ValueError(f"kernel: must be (kh, kw, C_in, C_out) with C_in = x.shape[-1] = {jnp.shape(x)[3]}, "
                     f"got shape {jnp.shape(kernel)}")
  pads = (_same_pads(x.shape[1], kernel.shape[0], stride), _same_pads(x.shape[2], kernel.shape[1], stride))
  if loop_vjp is None:
    loop_vjp = jax.default_backend() == "cpu"
  if loop_vjp:
    return _loop_conv(x, kernel, stride, pads)
  return _lax_conv(x, kernel, stride, pads)


class Conv2d(nnx.Module):
  """NNX 2-D convolution (NHWC, SAME padding) built on `conv2d`; parameters as in ``nnx.Conv``.

  Args:
    in_features: input channels.
    out_features: output channels.
    kernel_size: ``(kh, kw)``.
    strides: spatial stride.
    use_bias: add a bias (initialised to zero).
    kernel_init: initialiser of the ``(kh, kw, in, out)`` kernel.
    loop_vjp: the loop-friendly backward pass; None: on CPU only.
    rngs: ``nnx.Rngs``.

  Returns:
    (on call) the convolved ``(B, H', W', out_features)`` array.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> Conv2d(2, 4, (3, 3), rngs=nnx.Rngs(0))(jnp.ones((1, 5, 5, 2))).shape
    (1, 5, 5, 4)

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311.
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: tuple[int, int], *, strides: int = 1,
               use_bias: bool = True, kernel_init=nnx.initializers.lecun_normal(),
               loop_vjp: bool | None = None, rngs: nnx.Rngs):
    in_features, out_features, strides = (_validation.check_int(name, v, lower=1) for name, v in (
        ("in_features", in_features), ("out_features", out_features), ("strides", strides)))
    if not isinstance(kernel_size, (tuple, list)) or len(kernel_size) != 2:
      raise ValueError(f"kernel_size: must be a pair of ints >= 1 (kh, kw), got {kernel_size!r}")
    kernel_size = tuple(_validation.check_int("kernel_size", v, lower=1) for v in kernel_size)
    self.kernel = nnx.Param(kernel_init(rngs.params(), (*kernel_size, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.strides = strides
    self.loop_vjp = loop_vjp

  def __call__(self, x: jax.Array) -> jax.Array:
    y = conv2d(x, self.kernel[...], stride=self.strides, loop_vjp=self.loop_vjp)
    return y if self.bias is None else y + self.bias[...]
