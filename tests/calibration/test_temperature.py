"""Temperature scaling recovers a known temperature and minimises the NLL."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.calibration import apply_temperature
from jaxdyn.calibration import expected_calibration_error
from jaxdyn.calibration import fit_temperature
from jaxdyn.calibration import negative_log_likelihood


def _calibrated_source(n=20000, k=10, seed=0):
  # Labels drawn from softmax(z): the source logits z are calibrated by construction.
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, k)) * 2.0
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  y = (rng.uniform(size=(n, 1)) > np.cumsum(p, -1)).sum(-1)  # inverse-CDF draw from softmax(z)
  return jnp.asarray(z, jnp.float32), jnp.asarray(np.minimum(y, k - 1), jnp.int32)


@pytest.mark.parametrize("t_true", [2.5, 0.5])
def test_recovers_known_temperature(t_true):
  z, y = _calibrated_source()
  observed = z * t_true  # softmax(observed / t_true) is calibrated
  t = float(fit_temperature(observed, y))
  assert abs(t / t_true - 1) < 0.02, t
  before = float(expected_calibration_error(observed, y))
  after = float(expected_calibration_error(apply_temperature(observed, t), y))
  assert after < 0.02 < before


def test_fitted_temperature_is_a_minimum_of_the_nll():
  z, y = _calibrated_source()
  observed = z * 1.7
  t = float(fit_temperature(observed, y))
  nll = lambda s: float(negative_log_likelihood(observed / s, y))
  assert nll(t) <= min(nll(t * 1.01), nll(t / 1.01))
  # Closed form for two classes: see the docstring (75% accurate -> confidence 0.75).
  z2 = jnp.array([[2.0, 0.0]] * 3 + [[0.0, 2.0]])
  t2 = fit_temperature(z2, jnp.zeros(4, jnp.int32))
  np.testing.assert_allclose(float(t2), 2.0 / np.log(3.0), rtol=1e-4)  # sigmoid(2 / T) = 0.75


def test_bounds_clamp_and_jit():
  # Every sample correct: the NLL keeps falling as T -> 0, so the lower bound is returned.
  z = jnp.array([[3.0, 0.0], [0.0, 3.0]])
  y = jnp.array([0, 1])
  np.testing.assert_allclose(float(fit_temperature(z, y, bounds=(0.1, 10.0))), 0.1, rtol=1e-4)
  # Jittable with traced labels (range checks are skipped under jit).
  jitted = jax.jit(fit_temperature)(z, y)
  np.testing.assert_allclose(float(jitted), float(fit_temperature(z, y)), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(apply_temperature(z, 3.0)), np.asarray(z) / 3.0)


def test_validation():
  z = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="labels"):
    fit_temperature(z, jnp.array([0, 3]))
  with pytest.raises(ValueError, match="labels"):
    fit_temperature(z, jnp.array([0, 1, 2]))
  with pytest.raises(ValueError, match="bounds"):
    fit_temperature(z, jnp.array([0, 1]), bounds=(0.0, 1.0))
  with pytest.raises(ValueError, match="bounds"):
    fit_temperature(z, jnp.array([0, 1]), bounds=(2.0, 1.0))
  with pytest.raises(ValueError, match="num_iters"):
    fit_temperature(z, jnp.array([0, 1]), num_iters=0)
  with pytest.raises(ValueError, match="temperature"):
    apply_temperature(z, 0.0)
  with pytest.raises(ValueError, match="temperature"):
    apply_temperature(z, -2.0)


# --- Input policy ------------------------------------------------------------------------------

Z2 = jnp.array([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])  # the docstring's 75% example
Y2 = jnp.zeros(4, jnp.int32)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fit_temperature_rejects_non_finite_logits(bad):
  z = np.array(Z2)
  z[1, 1] = bad  # NaN used to return the lower bound 0.05 as if it were a fit
  with pytest.raises(ValueError, match=r"logits: must be finite, found .* at index \(1, 1\)"):
    fit_temperature(z, Y2)
  assert np.isnan(float(jax.jit(fit_temperature)(z, Y2)))  # under jit: NaN, never a bound
  np.testing.assert_allclose(float(jax.jit(fit_temperature)(Z2, Y2)), 2.0 / np.log(3.0), rtol=1e-4)


def test_fit_temperature_out_of_range_label_gives_nan_under_jit():
  for bad in (-1, 2):
    assert np.isnan(float(jax.jit(fit_temperature)(Z2, Y2.at[2].set(bad))))
    with pytest.raises(ValueError, match=r"labels: must lie in \[0, 2\)"):
      fit_temperature(Z2, Y2.at[2].set(bad))


def test_fit_temperature_empty_batch_and_bounds():
  with pytest.raises(ValueError, match="logits: must hold at least one of its examples"):
    fit_temperature(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32))
  for bounds in ((True, 2.0), (0.1, float("nan")), (0.1,), 3.0):
    with pytest.raises(ValueError, match="bounds: must"):
      fit_temperature(Z2, Y2, bounds=bounds)
  t = fit_temperature(Z2, Y2, bounds=(np.float32(0.05), np.asarray(20.0)), num_iters=np.int64(50))
  np.testing.assert_allclose(float(t), float(fit_temperature(Z2, Y2)), rtol=1e-6)


def test_apply_temperature_traced_bad_temperature_gives_nan():
  f = jax.jit(apply_temperature)
  np.testing.assert_allclose(np.asarray(f(Z2, 2.0)), np.asarray(Z2) / 2.0)
  for bad in (np.inf, 0.0, -1.0, np.nan):  # T = inf used to give all-zero logits under jit
    assert np.isnan(np.asarray(f(Z2, bad))).all()
  with pytest.raises(ValueError, match="temperature: must be a finite real number > 0"):
    apply_temperature(Z2, np.inf)
  assert apply_temperature(jnp.zeros((0, 3)), 2.0).shape == (0, 3)  # empty in, empty out
  np.testing.assert_allclose(np.asarray(apply_temperature(Z2, np.float32(4.0))), np.asarray(Z2) / 4.0)
