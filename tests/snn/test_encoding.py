"""Encoders (direct, Poisson) and dropout masks fixed over time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.snn import direct_encode, encode, fixed_dropout_masks, poisson_encode


def test_direct_is_the_input_at_every_step():
  x = jnp.array([[0.2, -1.0, 3.0]])
  for t in range(3):
    np.testing.assert_array_equal(direct_encode(x, t), x)
    np.testing.assert_array_equal(encode(x, t), x)


def test_poisson_rate_determinism_and_independence():
  key = jax.random.key(0)
  p = jnp.array([0.0, 0.1, 0.5, 0.9, 1.0, 1.7, -0.3])
  steps = jax.vmap(lambda t: poisson_encode(key, jnp.tile(p, (200, 1)), t))(jnp.arange(50))
  rate = np.asarray(steps.mean(axis=(0, 1)))
  n = 50 * 200
  expected = np.clip(np.asarray(p), 0, 1)
  assert np.all(np.abs(rate - expected) <= 5 * np.sqrt(expected * (1 - expected) / n) + 1e-9)
  assert set(np.unique(np.asarray(steps)).tolist()) <= {0.0, 1.0}
  np.testing.assert_array_equal(poisson_encode(key, p, 3), poisson_encode(key, p, 3))
  assert not np.array_equal(steps[0], steps[1])  # fresh randomness per step


def test_dropout_masks_values_rate_and_structure():
  like = {"a": jnp.zeros((100, 50)), "b": jax.ShapeDtypeStruct((100, 50), jnp.float32)}
  m = fixed_dropout_masks(jax.random.key(1), like, 0.25)
  assert m["a"].shape == (100, 50) and m["b"].shape == (100, 50)
  assert not np.array_equal(m["a"], m["b"])  # independent masks per layer
  vals = np.unique(np.concatenate([np.asarray(m["a"]).ravel(), np.asarray(m["b"]).ravel()]))
  np.testing.assert_allclose(vals, [0.0, 1 / 0.75], rtol=1e-6)
  kept = np.mean(np.asarray(m["a"]) > 0)
  assert abs(kept - 0.75) < 5 * np.sqrt(0.75 * 0.25 / 5000)
  assert fixed_dropout_masks(jax.random.key(1), like, 0.0) is None


def test_errors():
  with pytest.raises(ValueError, match=r"encoder: must be one of \['direct', 'poisson'\]"):
    encode(jnp.ones(2), 0, encoder="latency")
  with pytest.raises(ValueError, match="key: a jax.random key is required"):
    encode(jnp.ones(2), 0, encoder="poisson")
  with pytest.raises(ValueError, match=r"rate: must be a finite real number in \[0, 1\)"):
    fixed_dropout_masks(jax.random.key(0), jnp.ones(2), 1.0)


def test_poisson_nonfinite_is_nan_and_numpy_scalars_and_keys():
  key = jax.random.key(0)
  x = jnp.array([0.3, jnp.nan, jnp.inf, -jnp.inf, 1.0])
  out = np.asarray(poisson_encode(key, x, 2))  # before: NaN -> 0, +inf -> 1, -inf -> 0 (finite)
  np.testing.assert_array_equal(np.isnan(out), [False, True, True, True, False])
  assert out[4] == 1.0
  np.testing.assert_array_equal(poisson_encode(key, x[:1], np.int64(2)), poisson_encode(key, x[:1], 2))
  np.testing.assert_array_equal(fixed_dropout_masks(key, jnp.zeros((3, 4)), np.float32(0.5)),
                                fixed_dropout_masks(key, jnp.zeros((3, 4)), 0.5))
  with pytest.raises(TypeError, match="key: must be a jax.random key"):
    encode(jnp.ones(2), 0, key="seed")  # checked whenever given, also for the direct encoder
  with pytest.raises(TypeError, match="key: must be a jax.random key"):
    fixed_dropout_masks(np.zeros(2, np.float32), jnp.ones(2), 0.0)
  with pytest.raises(ValueError, match="t: must be an int >= 0"):
    poisson_encode(key, x, -1)
