"""The Pallas multi-step LIF kernel (interpret mode on CPU) against the jnp scan: values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import _pallas
from jaxdyn.snn import lif_multistep, lif_multistep_pallas


def loss_of(impl, w, c, **kw):
  def f(currents, v0):
    s, v = impl(currents, v0, **kw)
    return jnp.sum(s * w) + jnp.sum(v * c)
  return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))


@pytest.mark.parametrize("reset,detach,surrogate", [
    ("soft", False, "triangle"), ("hard", False, "sigmoid"), ("hard", True, "rectangle"),
])
def test_kernel_equals_jnp_path(reset, detach, surrogate):
  shape = (5, 3, 30)  # 90 neurons: padded to 2 blocks of 64
  currents = jax.random.normal(jax.random.key(0), shape) * 0.8 + 0.5
  v0 = jax.random.normal(jax.random.key(1), shape[1:]) * 0.3
  w = jax.random.normal(jax.random.key(2), shape)
  c = jax.random.normal(jax.random.key(3), shape[1:])
  kw = dict(tau=1.5, reset=reset, detach_membrane=detach, surrogate=surrogate)
  s_ref, v_ref = lif_multistep(currents, v0, **kw)
  s, v = lif_multistep_pallas(currents, v0, block_size=64, interpret=True, **kw)
  np.testing.assert_array_equal(s, s_ref)
  np.testing.assert_allclose(v, v_ref, rtol=1e-6, atol=1e-6)
  assert 0 < float(s.mean()) < 1  # the test exercises both spikes and silence
  (l_ref, (gi_ref, gv_ref)) = loss_of(lif_multistep, w, c, **kw)(currents, v0)
  (l, (gi, gv)) = loss_of(lambda *a, **k: lif_multistep_pallas(*a, block_size=64, interpret=True, **k),
                          w, c, **kw)(currents, v0)
  np.testing.assert_allclose(l, l_ref, rtol=1e-6)
  np.testing.assert_allclose(gi, gi_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(gv, gv_ref, rtol=1e-5, atol=1e-6)


def test_default_v0_and_errors():
  currents = jnp.full((3, 4), 0.6)
  s, v = lif_multistep_pallas(currents)
  s_ref, v_ref = lif_multistep(currents)
  np.testing.assert_array_equal(s, s_ref)
  np.testing.assert_allclose(v, v_ref, rtol=1e-6)
  with pytest.raises(ValueError, match="block_size: must be a power of two"):
    lif_multistep_pallas(currents, block_size=96)
  with pytest.raises(ValueError, match="tau: must be a real number > 1"):
    lif_multistep_pallas(currents, tau=1.0)
  with pytest.raises(ValueError, match=r"v0: shape \(3,\) does not match"):
    lif_multistep_pallas(currents, jnp.zeros(3))


def test_empty_neuron_set_nonfinite_currents_and_numpy_scalars():
  # N = 0: before, a reshape TypeError ("cannot reshape array of shape (3, 0, 4) into shape (3, 1)").
  s, v = lif_multistep_pallas(jnp.ones((3, 0, 4)), interpret=True)
  assert s.shape == (3, 0, 4) and v.shape == (0, 4)
  # A NaN / inf current fires NaN from its step on, exactly as the jnp path does.
  currents = jnp.array([[0.5, 0.5, 0.5], [jnp.nan, -jnp.inf, 0.7], [0.2, 0.2, 0.2]])
  s, v = lif_multistep_pallas(currents, block_size=np.int64(2), tau=np.float32(1.5), interpret=True)
  s_ref, v_ref = lif_multistep(currents, tau=1.5)
  np.testing.assert_array_equal(s, s_ref)
  np.testing.assert_array_equal(v, v_ref)
  np.testing.assert_array_equal(np.isnan(s[:, 0]), [False, True, True])
  # Integer currents become floats (before: "currents: must be floating").
  s, _ = lif_multistep_pallas(jnp.array([[1, 0], [0, 2]]), interpret=True)
  np.testing.assert_array_equal(s, [[1.0, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("num_steps", [4, 6])
def test_kernels_lower_to_triton_for_a_gpu(monkeypatch, num_steps):
  """The forward and backward kernels lower to two Triton calls for a GPU (no GPU needed to lower)."""
  monkeypatch.setattr(_pallas, "target", lambda interpret: "gpu")
  x = jax.ShapeDtypeStruct((num_steps, 3, 100), jnp.float32)

  def loss(currents):
    s, v = lif_multistep_pallas(currents, detach_membrane=True)
    return s.sum() + v.sum()

  text = jax.jit(jax.grad(loss)).trace(x).lower(lowering_platforms=("cuda",)).as_text()
  assert text.count("custom_call @__gpu$xla.gpu.triton(") == 2
