"""jaxdyn.models.conv2d: every lowering equals jax.lax.conv_general_dilated in values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn.models import LOWERINGS, Conv2d, _conv, conv2d, conv_lowering

_DN = ("NHWC", "HWIO", "NHWC")

# (H, W, kernel, strides, dilation, padding, dtype)
GRID = [
    (9, 8, 3, 1, 1, "SAME", jnp.float32),
    (7, 7, 3, 2, 1, "SAME", jnp.float32),
    (8, 8, 1, 2, 1, "SAME", jnp.float32),
    (9, 9, 3, 2, 2, "VALID", jnp.float32),
    (6, 7, 3, (2, 1), (1, 2), ((1, 2), (0, 3)), jnp.float32),
    (2, 2, 3, 1, 1, "SAME", jnp.float32),
    (5, 4, (2, 3), 1, 1, "SAME", jnp.float32),
    (6, 6, 3, 1, 1, "SAME", jnp.bfloat16),
    (7, 6, 3, 1, 1, ((2, 0), (1, 2)), jnp.float32),
    (6, 5, 3, 1, 1, "VALID", jnp.float32),
]


def _supported(lowering, h, w, k, s, d, pad):
  """Whether ``lowering`` takes this layer (Winograd: 3x3, stride 1, dilation 1, padding <= 2)."""
  if lowering != "winograd":
    return True
  kshape, strides, dilation = _pair(k), _pair(s), _pair(d)
  pads = _conv._resolve_padding(pad, (h, w), _conv._effective(kshape, dilation), strides)
  return _conv._winograd_supported(kshape, strides, pads, dilation)


def _pair(v):
  return v if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("h,w,k,s,d,pad,dtype", GRID)
def test_every_lowering_equals_lax_in_values_and_gradients(h, w, k, s, d, pad, dtype):
  kh, kw = _pair(k)
  x = jax.random.normal(jax.random.key(0), (2, h, w, 3), dtype)
  kernel = jax.random.normal(jax.random.key(1), (kh, kw, 3, 4), dtype)

  def lax_conv(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, _pair(s), pad, rhs_dilation=_pair(d), dimension_numbers=_DN)

  cot = jax.random.normal(jax.random.key(2), jax.eval_shape(lax_conv, x, kernel).shape, dtype)

  def in_scan(conv):  # two steps of a scan, as in a spiking network's time loop
    def loss(x, kernel):
      def body(c, _):
        return c, jnp.sum(jnp.sin(conv(c, kernel)).astype(jnp.float32) * cot)
      return jnp.sum(jax.lax.scan(body, x, None, length=2)[1])
    return loss

  @jax.jit
  def everything(x, kernel):
    convs = {"lax": lax_conv}
    convs.update({lw: (lambda lw: lambda x, kernel: conv2d(x, kernel, strides=s, padding=pad, dilation=d,
                                                           lowering=lw))(lw)
                  for lw in LOWERINGS if _supported(lw, h, w, k, s, d, pad)})
    return {name: (conv(x, kernel), jax.grad(in_scan(conv), (0, 1))(x, kernel)) for name, conv in convs.items()}

  out = everything(x, kernel)
  assert len(out) == 1 + sum(_supported(lw, h, w, k, s, d, pad) for lw in LOWERINGS)
  if not _supported("winograd", h, w, k, s, d, pad):
    with pytest.raises(ValueError, match="lowering: 'winograd' needs a 3x3 kernel, stride 1"):
      conv2d(x, kernel, strides=s, padding=pad, dilation=d, lowering="winograd")
  ref_y, (ref_dx, ref_dk) = out.pop("lax")
  for name, (y, (dx, dk)) in out.items():
    assert y.dtype == dx.dtype == dk.dtype == dtype, name
    for got, want in ((y, ref_y), (dx, ref_dx), (dk, ref_dk)):
      want = np.asarray(want, np.float32)
      # float32: 1e-5 of the array's scale. The gradients pass through cos(y) with |y| up to ~15, which
      # turns y's last-bit differences (summation order: AVX-512 and AVX2 machines differ) into
      # absolute differences of about 1e-5 on small entries.
      scale = max(1.0, float(np.abs(want).max()))
      tol = dict(rtol=1e-5, atol=1e-5 * scale) if dtype == jnp.float32 else dict(rtol=5e-2, atol=5e-1)
      np.testing.assert_allclose(np.asarray(got, np.float32), want, err_msg=name, **tol)


def test_policy_picks_each_lowering_where_it_is_meant_to():
  # XLA:CPU (measured, see the docstring): Winograd for 3x3 stride-1 layers with >= 16 input channels
  # on maps of at least 8x8 whose transformed kernel is no larger than their input; im2col for the
  # rest of the spiking VGG-11's and ResNet-18's shapes.
  for x_shape, k_shape in (((128, 32, 32, 64), (3, 3, 64, 64)), ((128, 16, 16, 128), (3, 3, 128, 128)),
                           ((128, 8, 8, 256), (3, 3, 256, 256)), ((32, 16, 16, 64), (3, 3, 64, 128))):
    assert conv_lowering(x_shape, k_shape, backend="cpu") == "winograd", (x_shape, k_shape)
  for x_shape, k_shape, s in (((32, 2, 2, 512), (3, 3, 512, 512), 1), ((32, 32, 32, 3), (3, 3, 3, 64), 1),
                              ((128, 4, 4, 512), (3, 3, 512, 512), 1), ((128, 32, 32, 64), (1, 1, 64, 128), 2),
                              ((128, 16, 16, 128), (3, 3, 128, 256), 2), ((128, 32, 32, 64), (3, 3, 64, 64), 2),
                              ((32, 8, 8, 256), (3, 3, 256, 256), 1)):  # the last: 16 C_out > B H' W'
    assert conv_lowering(x_shape, k_shape, strides=s, backend="cpu") == "im2col", (x_shape, k_shape)
  assert conv_lowering((128, 32, 32, 64), (3, 3, 64, 64), dilation=2, backend="cpu") == "im2col"
  # One example's window matrix over 64 MiB (224x224x64, 3x3: 110 MiB): XLA's convolution, with the
  # loop-friendly gradient; the output map decides (stride 2 quarters it), and 1x1 kernels stay dense.
  assert conv_lowering((8, 224, 224, 64), (3, 3, 64, 64), backend="cpu") == "xla_canonical"
  assert conv_lowering((8, 224, 224, 64), (3, 3, 64, 64), strides=2, backend="cpu") == "im2col"
  assert conv_lowering((8, 224, 224, 64), (1, 1, 64, 64), backend="cpu") == "im2col"
  # Tiny layers (< 2e7 forward FLOPs): XLA's convolution compiles faster and runs as fast.
  assert conv_lowering((16, 8, 8, 8), (3, 3, 8, 8), backend="cpu") == "xla_canonical"
  for backend in ("gpu", "cuda", "tpu"):
    assert conv_lowering((32, 2, 2, 512), (3, 3, 512, 512), backend=backend) == "xla"
  assert conv_lowering((1, 2, 2, 1), (3, 3, 1, 1)) in LOWERINGS  # the default backend's pick
  with pytest.raises(TypeError, match="backend: must be a platform name"):
    conv_lowering((1, 2, 2, 1), (3, 3, 1, 1), backend=3)


def test_im2col_in_batch_chunks_equals_lax(monkeypatch):
  # Tiny chunks force the chunked forward (lax.map) and backward (scan accumulating dK).
  per_example = 3 * 3 * 27 * 4  # a 3x3 output map of 27-wide windows, float32
  monkeypatch.setattr(_conv, "_CHUNK_BYTES", 2 * per_example)
  assert _conv._batch_chunk(6, per_example) == 2 and _conv._batch_chunk(7, per_example) == 1
  assert _conv._batch_chunk(4, per_example) == 4  # within twice the chunk: the whole batch at once
  x = jax.random.normal(jax.random.key(6), (6, 5, 5, 3))
  kernel = jax.random.normal(jax.random.key(7), (3, 3, 3, 4))
  cot = jax.random.normal(jax.random.key(8), (6, 3, 3, 4))

  @jax.jit
  def both(x, kernel):
    def loss(conv):
      return lambda x, kernel: jnp.sum(conv(x, kernel) * cot)
    ours = lambda x, kernel: conv2d(x, kernel, strides=2, lowering="im2col")  # noqa: E731
    ref = lambda x, kernel: jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=_DN)  # noqa: E731
    return [(f(x, kernel), jax.grad(loss(f), (0, 1))(x, kernel)) for f in (ours, ref)]

  (y, (dx, dk)), (ref_y, (ref_dx, ref_dk)) = both(x, kernel)
  for got, want in ((y, ref_y), (dx, ref_dx), (dk, ref_dk)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda x: jnp.sum(conv2d(x, kernel, strides=2, lowering="im2col"))))(x))
  assert "scan" in jaxpr  # the chunked path did run


def test_winograd_in_batch_chunks_equals_lax(monkeypatch):
  # Tiny chunks force the chunked forward (lax.map, also for dx) and the backward's scan over dK.
  monkeypatch.setattr(_conv, "_CHUNK_BYTES", 16 * 9 * 3 * 4)  # 16 transforms of 3x3 tiles x 3 channels
  x = jax.random.normal(jax.random.key(9), (6, 5, 6, 3))
  kernel = jax.random.normal(jax.random.key(10), (3, 3, 3, 4))
  cot = jax.random.normal(jax.random.key(11), (6, 5, 6, 4))

  @jax.jit
  def both(x, kernel):
    def loss(conv):
      return lambda x, kernel: jnp.sum(conv(x, kernel) * cot)
    ours = lambda x, kernel: conv2d(x, kernel, lowering="winograd")  # noqa: E731
    ref = lambda x, kernel: jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DN)  # noqa: E731
    return [(f(x, kernel), jax.grad(loss(f), (0, 1))(x, kernel)) for f in (ours, ref)]

  (y, (dx, dk)), (ref_y, (ref_dx, ref_dk)) = both(x, kernel)
  for got, want in ((y, ref_y), (dx, ref_dx), (dk, ref_dk)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda x: jnp.sum(conv2d(x, kernel, lowering="winograd"))))(x))
  assert "scan" in jaxpr  # the chunked path did run


def test_winograd_is_a_transform_of_tiles():
  """One 4x4 tile by hand: Y = A^T [(G K G^T) . (B^T d B)] A is the 2x2 valid correlation of d with K."""
  d = np.arange(16, dtype=np.float32).reshape(4, 4) ** 1.5
  k = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0], [-1.0, 0.25, 2.0]], np.float32)
  bt, g, at = _conv._WINO_BT, _conv._WINO_G, _conv._WINO_AT
  y = at @ ((g @ k @ g.T) * (bt @ d @ bt.T)) @ at.T
  direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * k) for j in range(2)] for i in range(2)])
  np.testing.assert_allclose(y, direct, rtol=1e-5)
  ours = conv2d(jnp.asarray(d)[None, :, :, None], jnp.asarray(k)[:, :, None, None], padding="VALID",
                lowering="winograd")
  np.testing.assert_allclose(np.asarray(ours)[0, :, :, 0], direct, rtol=1e-5)


def test_module_matches_nnx_conv_and_shares_its_parameters():
  x = jax.random.normal(jax.random.key(3), (1, 5, 5, 2))
  for kw in (dict(strides=2), dict(padding="VALID"), dict(kernel_dilation=2)):
    ours = Conv2d(2, 4, (3, 3), **{("dilation" if k == "kernel_dilation" else k): v for k, v in kw.items()},
                  rngs=nnx.Rngs(0))
    theirs = nnx.Conv(2, 4, (3, 3), **kw, rngs=nnx.Rngs(0))
    assert jax.tree.map(jnp.shape, nnx.state(ours, nnx.Param)) == jax.tree.map(jnp.shape, nnx.state(theirs, nnx.Param))
    theirs.kernel[...] = ours.kernel[...]
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-6)


def test_bad_arguments_name_themselves():
  x, kernel = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 4))
  with pytest.raises(ValueError, match="strides: must be an int >= 1"):
    conv2d(x, kernel, strides=0)
  with pytest.raises(ValueError, match="strides: must be an int >= 1 or a pair"):
    conv2d(x, kernel, strides=(1, 1, 1))
  with pytest.raises(ValueError, match="dilation: must be an int >= 1"):
    conv2d(x, kernel, dilation=0)
  with pytest.raises(ValueError, match=r"padding: must be one of \['SAME', 'VALID'\]"):
    conv2d(x, kernel, padding="FULL")
  with pytest.raises(ValueError, match="padding: must be 'SAME', 'VALID' or"):
    conv2d(x, kernel, padding=((1, -1), (0, 0)))
  with pytest.raises(ValueError, match="lowering: must be one of"):
    conv2d(x, kernel, lowering="direct")
  for kwargs in (dict(strides=2), dict(dilation=2), dict(padding=((3, 0), (1, 1)))):
    with pytest.raises(ValueError, match=r"lowering: 'winograd' needs a 3x3 kernel, stride 1, dilation 1 and padding"):
      conv2d(x, kernel, lowering="winograd", **kwargs)
  with pytest.raises(ValueError, match=r"lowering: 'winograd' needs a 3x3 kernel.*got kernel \(5, 5\)"):
    Conv2d(2, 4, (5, 5), lowering="winograd", rngs=nnx.Rngs(0))(x)
  with pytest.raises(ValueError, match="kernel: the .* window does not fit"):
    conv2d(x, jnp.ones((7, 7, 2, 4)), padding="VALID")
  with pytest.raises(ValueError, match="kernel: must be"):
    conv2d(x, jnp.ones((3, 3, 3, 4)))
  with pytest.raises(ValueError, match="x: must be"):
    conv2d(x[0], kernel)
  with pytest.raises(ValueError, match="lowering: must be one of"):
    Conv2d(2, 4, (3, 3), lowering="fft", rngs=nnx.Rngs(0))


def test_numpy_ints_empty_batch_and_integer_images():
  x = jax.random.normal(jax.random.key(4), (2, 6, 6, 2))
  kernel = jax.random.normal(jax.random.key(5), (3, 3, 2, 3))
  np.testing.assert_array_equal(conv2d(x, kernel, strides=np.int64(2)), conv2d(x, kernel, strides=2))
  for lowering in LOWERINGS:
    s = 1 if lowering == "winograd" else 2
    assert conv2d(x[:0], kernel, strides=s, lowering=lowering).shape == (0, 6 // s, 6 // s, 3)
  assert conv2d(jnp.ones((1, 4, 4, 2), jnp.uint8), kernel).dtype == jnp.float32
  layer = Conv2d(np.int64(2), np.int32(3), (np.int64(3), 3), strides=np.int64(2), rngs=nnx.Rngs(0))
  assert layer.kernel.shape == (3, 3, 2, 3) and layer(x).shape == (2, 3, 3, 3)
  with pytest.raises(ValueError, match=r"kernel_size: must be a pair of ints >= 1"):
    Conv2d(2, 3, 3, rngs=nnx.Rngs(0))
