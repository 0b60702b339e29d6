"""Mixup sampling: permutations, coefficients, exact mixing formula, determinism, validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.calibration import MixupSample, sample_mixup


def _batch(b=6):
  x = jnp.arange(b * 3, dtype=jnp.float32).reshape(b, 3)
  img = jnp.arange(b * 2 * 2, dtype=jnp.uint8).reshape(b, 2, 2)
  y = jax.nn.one_hot(jnp.array([0, 1, 2, 0, 1, 2])[:b], 3)
  return {"x": x, "img": img}, y


def test_shapes_perms_and_lam_range():
  inputs, y = _batch()
  s = sample_mixup(jax.random.key(0), inputs, y, num_mixes=3, alpha=2.0)
  assert isinstance(s, MixupSample)
  assert s.inputs["x"].shape == (3, 6, 3) and s.inputs["img"].shape == (3, 6, 2, 2)
  assert s.labels.shape == (3, 6, 3) and s.lam.shape == (3,) and s.perms.shape == (3, 6)
  assert s.inputs["x"].dtype == jnp.float32 and s.inputs["img"].dtype == jnp.float32
  perms = np.asarray(s.perms)
  for m in range(3):
    np.testing.assert_array_equal(np.sort(perms[m]), np.arange(6))
  lam = np.asarray(s.lam)
  assert np.all((lam >= 0) & (lam <= 1))


def test_mixing_formula_on_every_leaf_and_labels():
  inputs, y = _batch()
  s = sample_mixup(jax.random.key(1), inputs, y, num_mixes=3, alpha=1.0)
  lam, perms = np.asarray(s.lam, np.float64), np.asarray(s.perms)
  for name, leaf in inputs.items():
    leaf = np.asarray(leaf, np.float64)
    for m in range(3):
      want = lam[m] * leaf + (1 - lam[m]) * leaf[perms[m]]
      np.testing.assert_allclose(np.asarray(s.inputs[name][m]), want, rtol=1e-6, atol=1e-5)
  y = np.asarray(y, np.float64)
  for m in range(3):
    want = lam[m] * y + (1 - lam[m]) * y[perms[m]]
    np.testing.assert_allclose(np.asarray(s.labels[m]), want, atol=1e-6)
    np.testing.assert_allclose(np.asarray(s.labels[m]).sum(-1), 1.0, atol=1e-6)


def test_same_class_pairs_keep_an_exact_one_hot():
  # All samples share class 1, so every pair is same-class: the mixed label must be exactly e_1
  # (the RankMixup losses detect such pairs with `== 1.0`).
  y = jax.nn.one_hot(jnp.ones(6, jnp.int32), 3)
  s = sample_mixup(jax.random.key(2), jnp.ones((6, 1)), y, num_mixes=3, alpha=0.5)
  np.testing.assert_array_equal(np.asarray(s.labels), np.broadcast_to(np.asarray(y), (3, 6, 3)))
  # A mixed pair of different classes has max label max(lam, 1 - lam) < 1 unless lam in {0, 1}.
  y2 = jax.nn.one_hot(jnp.array([0, 1, 0, 1, 1, 1]), 2)
  s2 = sample_mixup(jax.random.key(3), jnp.ones((6, 1)), y2, num_mixes=3, alpha=2.0)
  perms, lam = np.asarray(s2.perms), np.asarray(s2.lam)
  same = np.asarray(jnp.argmax(y2, -1))[perms] == np.asarray(jnp.argmax(y2, -1))[None]
  has_one = np.any(np.asarray(s2.labels) == 1.0, axis=-1)
  np.testing.assert_array_equal(has_one, same | np.isin(lam, [0.0, 1.0])[:, None])


def test_deterministic_from_key():
  inputs, y = _batch()
  a = sample_mixup(jax.random.key(7), inputs, y, num_mixes=3)
  b = sample_mixup(jax.random.key(7), inputs, y, num_mixes=3)
  c = sample_mixup(jax.random.key(8), inputs, y, num_mixes=3)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
  assert not np.array_equal(np.asarray(a.lam), np.asarray(c.lam))
  assert not np.array_equal(np.asarray(a.perms), np.asarray(c.perms))


def test_lam_follows_symmetric_beta():
  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.05 for a = 2 (0.083 for a = 1).
  inputs, y = _batch()
  keys = [jax.random.key(i) for i in range(400)]
  lam = np.concatenate(
      [np.asarray(sample_mixup(k, inputs, y, num_mixes=3, alpha=2.0).lam) for k in keys])
  lam = lam.astype(np.float64)
  assert abs(lam.mean() - 0.5) < 0.02
  assert abs(lam.var() - 1 / 20) < 0.006


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan")])
def test_bad_alpha(alpha):
  inputs, y = _batch()
  with pytest.raises(ValueError, match="alpha"):
    sample_mixup(jax.random.key(0), inputs, y, alpha=alpha)


def test_bad_num_mixes_and_shapes():
  inputs, y = _batch()
  with pytest.raises(ValueError, match="num_mixes"):
    sample_mixup(jax.random.key(0), inputs, y, num_mixes=0)
  with pytest.raises(ValueError, match="inputs"):
    sample_mixup(jax.random.key(0), {"x": jnp.ones((5, 2))}, y)
  with pytest.raises(ValueError, match="labels"):
    sample_mixup(jax.random.key(0), inputs, jnp.array([0, 1, 2, 0, 1, 2]))
  with pytest.raises(ValueError, match="labels"):
    sample_mixup(jax.random.key(0), inputs, y[:, :, None])


# --- Input policy ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, "key", 0, np.zeros(2, np.float32)])
def test_bad_key_is_named(bad):
  inputs, y = _batch()
  with pytest.raises((ValueError, TypeError), match="key:"):
    sample_mixup(bad, inputs, y)


def test_empty_batch_is_rejected():
  with pytest.raises(ValueError, match="labels: must hold at least one of its examples"):
    sample_mixup(jax.random.key(0), jnp.zeros((0, 2)), jnp.zeros((0, 3)))


def test_non_finite_inputs_reach_the_mixed_copies():
  inputs, y = _batch()
  x = np.array(inputs["x"])
  x[2, 1] = np.nan
  s = sample_mixup(jax.random.key(1), x, y, num_mixes=3)
  bad = np.isnan(np.asarray(s.inputs))
  perms = np.asarray(s.perms)
  for m in range(3):  # row 2 itself and the row paired with sample 2
    assert bad[m, 2, 1] and bad[m, int(np.flatnonzero(perms[m] == 2)[0]), 1]
  assert bad.sum() <= 6 and np.isfinite(np.asarray(s.labels)).all()


def test_numpy_scalars_are_numbers():
  inputs, y = _batch()
  a = sample_mixup(jax.random.key(4), inputs, y, num_mixes=2, alpha=2.0)
  b = sample_mixup(jax.random.key(4), inputs, y, num_mixes=np.asarray(2), alpha=np.float32(2.0))
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
