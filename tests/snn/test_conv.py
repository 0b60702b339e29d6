"""The loop-friendly convolution: values and both gradients equal jax.lax's, also inside a scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn.snn import Conv2d, conv2d


@pytest.mark.parametrize("h,w,k,s", [(9, 8, 3, 1), (7, 7, 3, 2), (8, 8, 1, 2)])
def test_values_and_gradients_equal_lax(h, w, k, s):
  x = jax.random.normal(jax.random.key(0), (2, h, w, 3))
  kernel = jax.random.normal(jax.random.key(1), (k, k, 3, 4))
  ref = jax.lax.conv_general_dilated(x, kernel, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(conv2d(x, kernel, stride=s, loop_vjp=True), ref, rtol=1e-5, atol=1e-5)
  cot = jax.random.normal(jax.random.key(2), ref.shape)

  @jax.jit
  def grads(x, kernel):
    def in_scan(loop_vjp):  # two steps of a scan, as in a spiking network's time loop
      def body(c, _):
        return c, jnp.sum(jnp.sin(conv2d(c, kernel, stride=s, loop_vjp=loop_vjp)) * cot)
      return lambda x, kernel: jnp.sum(jax.lax.scan(body, x, None, length=2)[1])
    return (jax.grad(in_scan(True), (0, 1))(x, kernel), jax.grad(in_scan(False), (0, 1))(x, kernel))

  (dx, dk), (dx_ref, dk_ref) = grads(x, kernel)
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-5)


def test_module_matches_nnx_conv_and_errors():
  x = jax.random.normal(jax.random.key(3), (1, 5, 5, 2))
  ours = Conv2d(2, 4, (3, 3), strides=2, rngs=nnx.Rngs(0))
  theirs = nnx.Conv(2, 4, (3, 3), strides=2, rngs=nnx.Rngs(0))
  theirs.kernel[...] = ours.kernel[...]
  np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="stride: must be an int >= 1"):
    conv2d(x, jnp.ones((3, 3, 2, 4)), stride=0)


def test_numpy_stride_empty_batch_and_kernel_size():
  x = jax.random.normal(jax.random.key(4), (2, 6, 6, 2))
  kernel = jax.random.normal(jax.random.key(5), (3, 3, 2, 3))
  # Before: np.int64(2) was refused ("stride: must be an int >= 1, got np.int64(2)").
  np.testing.assert_array_equal(conv2d(x, kernel, stride=np.int64(2)), conv2d(x, kernel, stride=2))
  assert conv2d(x[:0], kernel, stride=2).shape == (0, 3, 3, 3)
  layer = Conv2d(np.int64(2), np.int32(3), (np.int64(3), 3), strides=np.int64(2), rngs=nnx.Rngs(0))
  assert layer.kernel.shape == (3, 3, 2, 3) and layer(x).shape == (2, 3, 3, 3)
  with pytest.raises(ValueError, match=r"kernel_size: must be a pair of ints >= 1"):
    Conv2d(2, 3, 3, rngs=nnx.Rngs(0))
