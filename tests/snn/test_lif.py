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
    ({"tau": 1.0}, "tau: must be a real number > 1"),
    ({"tau": 0.5}, "tau: must be a real number > 1"),
    ({"v_th": 0.0}, "v_th: must be a finite real number > 0"),
    ({"v_th": -1.0}, "v_th: must be a finite real number > 0"),
    ({"reset": "zero"}, r"reset: must be one of \['soft', 'hard'\]"),
    ({"surrogate": "erf"}, r"surrogate: must be one of \["),
])
def test_errors_name_the_argument(kwargs, match):
  with pytest.raises(ValueError, match=match):
    lif_step(None, jnp.ones(2), **kwargs)
  with pytest.raises(ValueError, match=match):
    LIF(**kwargs)


def test_nonfinite_threshold_is_rejected_and_overflow_named():
  # Before: v_th = inf was accepted and gave v = u - inf * 0 = NaN for every neuron.
  for kwargs in ({"v_th": float("inf")}, {"v_th": float("nan")}):
    with pytest.raises(ValueError, match="v_th: must be a finite real number > 0"):
      lif_step(None, jnp.ones(2), **kwargs)
  with pytest.raises(ValueError, match=r"v_th: must be a finite real number in \(0, 3.40282e\+38\]"):
    lif_step(None, jnp.ones(2, jnp.float32), v_th=1e39)  # finite, but inf in float32
  with pytest.raises(ValueError, match=r"v_th: must be a finite real number in \(0, 65504\]"):
    lif_multistep(jnp.ones((2, 3), jnp.float16), v_th=1e5)
  s, v = lif_step(None, jnp.array([1e30, 5.0]), v_th=1e30)  # large but representable: computes
  np.testing.assert_array_equal(s, [1.0, 0.0])
  np.testing.assert_array_equal(v, [0.0, 5.0])


def test_tau_infinity_is_integrate_and_fire():
  s, v = lif_multistep(jnp.full((3, 1), 0.4), tau=float("inf"))  # lam = 1: 0.4, 0.8, 1.2 -> fires at t = 3
  np.testing.assert_array_equal(s[:, 0], [0.0, 0.0, 1.0])
  np.testing.assert_allclose(v, [0.2], rtol=1e-6)


def test_numpy_scalars_are_numbers():
  # Before: np.float32(2.0) for tau was refused with "tau: must be a number > 1 ..., got np.float32(2.0)".
  i = jnp.array([[0.6, 1.3], [0.9, 0.2], [0.7, 1.1]])
  ref = lif_multistep(i, tau=2.0, v_th=0.8, alpha=2.0)
  for tau, v_th, alpha in ((np.float32(2.0), np.float64(0.8), np.float32(2.0)),
                           (np.asarray(2.0), np.asarray(0.8, np.float32), np.int64(2))):
    got = lif_multistep(i, tau=tau, v_th=v_th, alpha=alpha)
    for a, b in zip(got, ref):
      np.testing.assert_allclose(a, b, rtol=1e-6)
    for a, b in zip(lif_step(None, i[0], tau=tau, v_th=v_th), lif_step(None, i[0], tau=2.0, v_th=0.8)):
      np.testing.assert_allclose(a, b, rtol=1e-6)
  cfg = LIFConfig(tau=np.float32(1.5), v_th=np.int64(2))
  assert cfg == LIFConfig(tau=1.5, v_th=2.0) and type(cfg.tau) is float and type(cfg.v_th) is float
  assert LIF(tau=np.float32(1.5)).config.tau == 1.5
  with pytest.raises(ValueError, match="tau: must be a real number > 1"):
    LIFConfig(tau=True)


def test_nonfinite_currents_propagate_and_empty_neurons_are_empty():
  # NaN / inf currents: NaN spikes and membranes from that step on (a silent 0 or 1 before).
  i = jnp.array([[0.5, 0.5, 0.5], [jnp.nan, jnp.inf, 0.7], [0.2, 0.2, 0.2]])
  s, v = jax.jit(lif_multistep)(i)
  np.testing.assert_array_equal(np.isnan(s), [[False] * 3, [True, True, False], [True, True, False]])
  np.testing.assert_array_equal(np.isnan(v), [True, True, False])
  s, v = lif_multistep(jnp.ones((4, 0, 3)))
  assert s.shape == (4, 0, 3) and v.shape == (0, 3)
  s, v = lif_step(jnp.zeros((0, 2)), jnp.ones((0, 2)))
  assert s.shape == v.shape == (0, 2)
  with pytest.raises(ValueError, match=r"currents: need a leading time axis of length >= 1"):
    lif_multistep(jnp.ones((0, 3)))
