"""LIF step: hand-worked values, soft/hard reset, the multistep scan, SLTT's detached membrane."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.snn import LIF, LIFConfig, lif_multistep, lif_step


def test_hand_worked_soft_reset_sequence():
  # tau = 1.1: lam = 1 - 1/1.1 = 1/11. Constant input 0.6:
  # t1: u = 0.6 (no spike), v = 0.6; t2: u = 0.6/11 + 0.6 = 0.654545..; t3: u = v/11 + 0.6, ...
  # With input 1.5: t1: u = 1.5 -> spike, v = 0.5; t2: u = 0.5/11 + 1.5 = 1.54545 -> spike, v = 0.54545.
  lam = 1 / 11
  s, v = lif_step(None, jnp.array([0.6, 1.5]))
  np.testing.assert_allclose(s, [0.0, 1.0])
  np.testing.assert_allclose(v, [0.6, 0.5], rtol=1e-6)
  s, v = lif_step(v, jnp.array([0.6, 1.5]))
  np.testing.assert_allclose(s, [0.0, 1.0])
  np.testing.assert_allclose(v, [0.6 * lam + 0.6, 0.5 * lam + 1.5 - 1.0], rtol=1e-6)
  assert LIFConfig().lam == pytest.approx(lam)


def test_threshold_is_inclusive_and_hard_reset_zeroes():
  s, v = lif_step(None, jnp.array([1.0, 0.999]), reset="hard")
  np.testing.assert_array_equal(s, [1.0, 0.0])
  np.testing.assert_allclose(v, [0.0, 0.999])
  s, v = lif_step(jnp.array([0.0]), jnp.array([2.5]), v_th=2.0, reset="soft")
  np.testing.assert_allclose(v, [0.5])


def test_multistep_equals_loop_of_steps_values_and_grads():
  i = jax.random.normal(jax.random.key(0), (5, 3, 4)) + 0.6
  w = jax.random.normal(jax.random.key(1), (5, 3, 4))

  def loop(i):
    v, out = None, []
    for t in range(i.shape[0]):
      s, v = lif_step(v, i[t], tau=2.0)
      out.append(s)
    return jnp.sum(jnp.stack(out) * w) + jnp.sum(v)

  def scan(i):
    s, v = lif_multistep(i, tau=2.0)
    return jnp.sum(s * w) + jnp.sum(v)

  np.testing.assert_allclose(jax.jit(scan)(i), jax.jit(loop)(i), rtol=1e-6)
  np.testing.assert_allclose(jax.jit(jax.grad(scan))(i), jax.jit(jax.grad(loop))(i), rtol=1e-5, atol=1e-6)


def test_detach_membrane_cuts_only_the_temporal_path():
  # d s[2] / d I[1] is nonzero through v[1] normally, and zero with the membrane detached.
  i = jnp.array([0.9, 0.95])
  f = lambda i, d: lif_multistep(i[:, None], tau=2.0, detach_membrane=d)[0][1, 0]  # noqa: E731
  g = jax.grad(f)(i, False)
  gd = jax.grad(f)(i, True)
  assert g[0] != 0.0 and gd[0] == 0.0
  assert g[1] == gd[1] != 0.0


def test_lif_module_is_the_step_function():
  layer = LIF(tau=1.5, reset="hard", surrogate="sigmoid")
  v = jnp.array([0.3, -0.2])
  i = jnp.array([0.9, 1.4])
  for a, b in zip(layer(v, i), lif_step(v, i, tau=1.5, reset="hard", surrogate="sigmoid")):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs,match", [
    ({"tau": 1.0}, "tau: must be a number > 1"),
    ({"tau": 0.5}, "tau: must be a number > 1"),
    ({"v_th": 0.0}, "v_th: the threshold must be a number > 0"),
    ({"v_th": -1.0}, "v_th: the threshold must be a number > 0"),
    ({"reset": "zero"}, r"reset: must be one of \['soft', 'hard'\]"),
    ({"surrogate": "erf"}, r"surrogate: must be one of \["),
])
def test_errors_name_the_argument(kwargs, match):
  with pytest.raises(ValueError, match=match):
    lif_step(None, jnp.ones(2), **kwargs)
  with pytest.raises(ValueError, match=match):
    LIF(**kwargs)
