"""Spike function: Heaviside forward (H(0) = 1) and each surrogate's derivative against its formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.snn import SURROGATES, register_surrogate, spike, surrogate_derivative

X = np.array([-2.0, -1.0, -0.75, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 0.6, 1.0, 1.5], np.float32)


def formula(name, x, a):
  """The surrogates as the SLTT paper and code define them, in NumPy."""
  if name == "triangle":
    return np.maximum(0.0, a - a * a * np.abs(x))
  if name == "rectangle":
    return np.where(np.abs(x) <= a / 2, 1.0 / a, 0.0)
  sig = 1.0 / (1.0 + np.exp(-a * x))
  return a * sig * (1.0 - sig)


def test_forward_is_heaviside_with_h0_equal_1():
  for name in SURROGATES:
    np.testing.assert_array_equal(spike(X, surrogate=name), (X >= 0).astype(np.float32))
  assert float(spike(jnp.float32(0.0))) == 1.0
  assert float(spike(jnp.float32(-1e-7))) == 0.0


@pytest.mark.parametrize("name,default_alpha", [("triangle", 1.0), ("rectangle", 1.0), ("sigmoid", 4.0)])
@pytest.mark.parametrize("alpha", [None, 2.0])
def test_autodiff_derivative_matches_formula(name, default_alpha, alpha):
  a = default_alpha if alpha is None else alpha
  g = jax.vmap(jax.grad(lambda x: spike(x, surrogate=name, alpha=alpha)))(jnp.asarray(X))
  np.testing.assert_allclose(g, formula(name, X, a), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(surrogate_derivative(X, surrogate=name, alpha=alpha), formula(name, X, a),
                             rtol=1e-6, atol=1e-7)


def test_hand_worked_values():
  # triangle a = 1 at x = 0.25: 1 - 0.25; rectangle at 0.5 (edge, inclusive): 1; sigmoid a = 4 at 0: 4/4.
  assert float(jax.grad(spike)(0.25)) == pytest.approx(0.75)
  assert float(jax.grad(lambda x: spike(x, surrogate="rectangle"))(0.5)) == 1.0
  assert float(jax.grad(lambda x: spike(x, surrogate="rectangle"))(0.51)) == 0.0
  assert float(jax.grad(lambda x: spike(x, surrogate="sigmoid"))(0.0)) == pytest.approx(1.0)


def test_chain_rule_scales_the_surrogate():
  g = jax.grad(lambda x: spike(3.0 * x - 1.0))(0.4)  # x' = 0.2: 3 * (1 - 0.2)
  assert float(g) == pytest.approx(2.4, rel=1e-6)


def test_register_surrogate_is_used_by_spike_and_lif():
  from jaxdyn.snn import lif_step

  register_surrogate("test_linear_box", lambda x, a: jnp.where(jnp.abs(x) <= a, 0.5 * a, 0.0),
                     default_alpha=2.0)
  assert float(jax.grad(lambda x: spike(x, surrogate="test_linear_box"))(1.5)) == 1.0
  assert float(jax.grad(lambda x: spike(x, surrogate="test_linear_box"))(2.5)) == 0.0
  g = jax.grad(lambda i: lif_step(None, i, surrogate="test_linear_box")[0].sum())(jnp.array([0.0, 4.0]))
  np.testing.assert_array_equal(g, [1.0, 0.0])  # x = I - 1: -1 is inside the box, 3 is not


def test_errors_name_the_argument_and_valid_values():
  with pytest.raises(ValueError, match=r"surrogate: must be one of \[.*'rectangle'.*'sigmoid'.*'triangle'"):
    spike(0.0, surrogate="relu")
  with pytest.raises(ValueError, match=r"alpha: must be a finite real number in \[0.0001, 10000\]"):
    spike(0.0, alpha=0.0)
  with pytest.raises(ValueError, match="name: 'triangle' is a built-in surrogate"):
    register_surrogate("triangle", lambda x, a: x)
  with pytest.raises(TypeError, match="derivative: must be a callable"):
    register_surrogate("bad", 3.0)


def test_nonfinite_inputs_give_nan_spikes_and_derivatives():
  # Before: H(nan) = 0, H(+inf) = 1, H(-inf) = 0 (finite), so a NaN never reached the loss.
  x = jnp.array([jnp.nan, jnp.inf, -jnp.inf, 0.0, -0.5])
  for name in SURROGATES:
    np.testing.assert_array_equal(spike(x, surrogate=name), [np.nan, np.nan, np.nan, 1.0, 0.0])
    d = np.asarray(surrogate_derivative(x, surrogate=name))
    assert np.isnan(d[:3]).all() and np.isfinite(d[3:]).all()
  assert np.isnan(jax.grad(lambda x: spike(x))(jnp.nan))
  assert np.isnan(jax.jit(spike)(jnp.float32(jnp.inf)))


def test_alpha_range_numpy_scalars_and_half_precision():
  # Sharp triangle in float16: a - a^2 |x| overflowed (a^2 = 1e8 -> inf, inf * 0 = NaN at x = 0).
  g = jax.grad(lambda x: spike(x, alpha=1e4))(jnp.float16(0.0))
  assert g.dtype == jnp.float16 and float(g) == 1e4
  assert float(jax.grad(lambda x: spike(x, alpha=1e4))(jnp.float16(0.5))) == 0.0
  np.testing.assert_allclose(surrogate_derivative(X, alpha=np.float32(2.0)), formula("triangle", X, 2.0),
                             rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(surrogate_derivative(X, surrogate="sigmoid", alpha=np.asarray(4.0)),
                                surrogate_derivative(X, surrogate="sigmoid"))
  for bad in (1e5, 1e-5, float("inf")):
    with pytest.raises(ValueError, match=r"alpha: must be a finite real number in \[0.0001, 10000\]"):
      spike(0.0, alpha=bad)
  with pytest.raises(TypeError, match="name: must be a non-empty string"):
    register_surrogate(3, lambda x, a: x)
