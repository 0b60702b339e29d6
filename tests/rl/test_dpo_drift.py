"""DPO's loss against its formula and value-drift metrics on hand-worked sequences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import rl


def test_dpo_loss_matches_the_formula_and_its_gradient():
  pc, pr = jnp.array([-1.0, -3.0, -2.0]), jnp.array([-2.0, -1.0, -2.5])
  rc, rr = jnp.array([-1.5, -2.0, -2.0]), jnp.array([-1.5, -1.5, -3.0])
  beta = 0.5
  z = beta * ((np.asarray(pc) - np.asarray(rc)) - (np.asarray(pr) - np.asarray(rr)))  # [0.5, -0.75, -0.25]
  np.testing.assert_allclose(z, [0.5, -0.75, -0.25])
  loss, aux = rl.dpo_loss(pc, pr, rc, rr, beta=beta)
  np.testing.assert_allclose(float(loss), np.mean(np.log1p(np.exp(-z))), rtol=1e-6)
  np.testing.assert_allclose(float(aux["accuracy"]), 1 / 3, rtol=1e-6)
  # d loss / d pc_n = -beta sigmoid(-z_n) / n ; the reference gets none
  g = jax.grad(lambda a, r: rl.dpo_loss(a, pr, r, rr, beta=beta)[0], argnums=(0, 1))(pc, rc)
  np.testing.assert_allclose(np.asarray(g[0]), -beta / (1 + np.exp(z)) / 3, rtol=1e-5)
  np.testing.assert_array_equal(np.asarray(g[1]), 0.0)


def test_value_drift_by_hand():
  # two binary probes over 4 checkpoints: probe 1 moves 0.2, 0.6, 0.0; probe 2 moves 0.2, 0.0, 0.2 (back)
  p = jnp.array([[0.1, 0.5], [0.3, 0.7], [0.9, 0.7], [0.9, 0.5]])
  m = rl.value_drift(p, steps=[0, 10, 20, 30], fractions=(0.5, 0.8, 1.0))
  # TV of a binary choice = |dp|; mean over probes: [0.2, 0.3, 0.1]
  np.testing.assert_allclose(np.asarray(m.per_interval), [0.2, 0.3, 0.1], atol=1e-6)
  np.testing.assert_allclose(float(m.total), 0.6, atol=1e-6)
  np.testing.assert_allclose(float(m.net), (0.8 + 0.0) / 2, atol=1e-6)
  np.testing.assert_allclose(np.asarray(m.cumulative), [1 / 3, 5 / 6, 1.0], atol=1e-6)
  np.testing.assert_array_equal(np.asarray(m.steps_at), [20, 20, 30])


def test_value_drift_multichoice_and_no_drift():
  p = jnp.array([[[1.0, 0.0, 0.0]], [[0.0, 0.5, 0.5]], [[0.0, 0.5, 0.5]]])
  m = rl.value_drift(p, fractions=(0.9,))
  np.testing.assert_allclose(np.asarray(m.per_interval), [1.0, 0.0], atol=1e-7)
  np.testing.assert_array_equal(np.asarray(m.steps_at), [1])
  still = rl.value_drift(jnp.full((3, 2), 0.4))
  assert float(still.total) == 0.0
  np.testing.assert_array_equal(np.asarray(still.steps_at), [0, 0])


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="beta"):
    rl.dpo_loss(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), beta=0.0)
  with pytest.raises(ValueError, match="ref_rejected"):
    rl.dpo_loss(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), jnp.zeros(3))
  with pytest.raises(ValueError, match="policy_chosen"):
    rl.dpo_loss(jnp.zeros(0), jnp.zeros(0), jnp.zeros(0), jnp.zeros(0))
  with pytest.raises(ValueError, match="probs"):
    rl.value_drift(jnp.ones((1, 2)) * 0.5)
  with pytest.raises(ValueError, match="probs"):
    rl.value_drift(jnp.ones((2, 2, 3)))
  with pytest.raises(ValueError, match="steps"):
    rl.value_drift(jnp.full((3, 2), 0.5), steps=[0, 5, 5])
  with pytest.raises(ValueError, match="fractions"):
    rl.value_drift(jnp.full((3, 2), 0.5), fractions=(0.0,))
  assert np.isnan(float(rl.dpo_loss(jnp.array([jnp.nan]), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1))[0]))
