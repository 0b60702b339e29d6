"""The ToMAP claim runner's pieces: returns, per-turn advantages, observations, metrics, the REINFORCE step."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs import tomap_dialogue
from experiments.techniques.rl import tomap
from jaxdyn import rl


def test_returns_to_go_by_hand():
  g = tomap.returns_to_go(np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]), gamma=0.5)
  np.testing.assert_allclose(g, [[1 + 0.5 * (2 + 0.5 * 3), 2 + 0.5 * 3, 3], [-0.5 + 0.125, -1 + 0.25, 0.5]])
  np.testing.assert_allclose(tomap.returns_to_go(np.array([[1.0, 2.0, 3.0]]), gamma=1.0), [[6, 5, 3]])
  with pytest.raises(ValueError, match="gamma:"):
    tomap.returns_to_go(np.zeros((1, 2)), gamma=1.5)
  with pytest.raises(ValueError, match="rewards:"):
    tomap.returns_to_go(np.zeros(3), gamma=1.0)


def test_turn_advantages_are_normalised_per_turn():
  g = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 13.0], [7.0, 7.0]])
  a = np.asarray(tomap.turn_advantages(g))
  # turn 0: mean 4, population std sqrt(5); turn 1: mean 10, std sqrt(4.5)
  np.testing.assert_allclose(a[:, 0], (g[:, 0] - 4) / (math.sqrt(5) + 1e-4), rtol=1e-5)
  np.testing.assert_allclose(a[:, 1], (g[:, 1] - 10) / (math.sqrt(4.5) + 1e-4), rtol=1e-5)
  np.testing.assert_allclose(tomap.turn_advantages(g + np.array([100.0, -3.0])), a, rtol=1e-4, atol=1e-5)


def _dialogue(num_games=6, num_turns=3):
  return rl.play_dialogue(jax.random.key(0), tomap.random_choose, num_games=num_games, num_claims=4,
                          num_turns=num_turns)


def test_observations_are_the_replies_so_far_with_the_predictor_appended():
  d = _dialogue()
  obs = tomap.observations(d.replies)
  assert obs.shape == (6, 3, 48)
  np.testing.assert_array_equal(obs[:, 1], rl.reply_features(d.replies[:, :2]))  # before turn 1: replies 0 and 1
  predictor = rl.StancePredictor(4, hidden=8, rngs=nnx.Rngs(1))
  obs = tomap.observations(d.replies, predictor)
  assert obs.shape == (6, 3, 72)
  np.testing.assert_allclose(obs[:, 2, 68:], rl.predicted_stance(predictor(rl.reply_features(d.replies[:, :3]))),
                             rtol=1e-6)


def test_change_stats_by_hand():
  d = _dialogue(num_games=3, num_turns=2)
  a = jnp.array([[0.5, 0.6, 0.7], [0.5, 0.4, 0.5], [0.2, 0.3, 0.1]])
  d = d._replace(agreement=a, rewards=jnp.array([[0.1, 0.2], [0.0, 0.0], [1.0, -1.0]]))
  s = tomap.change_stats(d)
  assert s["rise_rate"] == pytest.approx(1 / 3)  # a tie (0.5 -> 0.5) is not a rise
  assert s["mean_change"] == pytest.approx((0.2 + 0.0 - 0.1) / 3, abs=1e-6)
  assert s["mean_reward"] == pytest.approx(0.3 / 3, abs=1e-6)


def test_reinforce_step_moves_probability_towards_positive_advantages():
  c = tomap_dialogue.smoke_config().tomap
  predictor, _ = tomap.train_predictor(c, 0)
  d = _dialogue(num_games=8, num_turns=c.num_turns)
  claims = jnp.zeros_like(d.claims)  # every recorded action: claim 0, half of them with a positive advantage
  adv = jnp.where(jnp.arange(8)[:, None] < 4, 1.0, -0.2) * jnp.ones(d.claims.shape)
  for arm in tomap.POLICY_ARMS:
    p = tomap.make_persuader(c, arm, predictor, 0)
    assert p.log_probs(p.params, p.pred_params, d.replies).shape == (8, c.num_turns, 4)
    before = float(jnp.mean(p.log_probs(p.params, p.pred_params, d.replies)[..., 0]))
    params, _, _, entropy = p.step(p.params, p.opt_state, p.pred_params, d.replies, claims, adv)
    assert float(jnp.mean(p.log_probs(params, p.pred_params, d.replies)[..., 0])) > before
    assert 0 < float(entropy) <= math.log(4) + 1e-5
    greedy = p.choose(params, True)(jax.random.key(0), d.replies[:, :2], None)  # before turn 1
    np.testing.assert_array_equal(greedy, jnp.argmax(p.log_probs(params, p.pred_params, d.replies)[:, 1], -1))
  with pytest.raises(ValueError, match="arm:"):
    tomap.make_persuader(c, "oracle", predictor, 0)


def test_predictor_stage_learns_the_stance():
  c = tomap_dialogue.get_config().tomap
  c.update(predictor_games=1000, predictor_steps=200, predictor_hidden=32, predictor_learning_rate=1e-2)
  _, stats = tomap.train_predictor(c, 0)
  # from log 5 = 1.61 at chance; the held / not-held call beats the coin flip of a stance-blind guess
  assert stats["holdout_loss"] < 1.35 and stats["holdout_held_accuracy"] > 0.6


def test_tomap_runner_smoke_reports_every_arm(tmp_path):
  c = tomap_dialogue.smoke_config()
  out = {arm: tomap.run(ml_collections.ConfigDict({**c.to_dict(), "tomap": {**c.tomap.to_dict(), "arm": arm}}),
                        str(tmp_path / arm)) for arm in tomap.ARMS}
  for arm, r in out.items():
    assert 0.0 <= r["rise_rate"] <= 1.0 and r["arm"] == arm
    assert len(r["log"]) == (c.tomap.rl_steps if arm in tomap.POLICY_ARMS else 0)
  assert out["without_predictor"]["rise_rate_minus_without"] == 0.0
  with pytest.raises(ValueError, match="tomap.arm:"):
    tomap.run(ml_collections.ConfigDict({**c.to_dict(), "tomap": {**c.tomap.to_dict(), "arm": "x"}}), str(tmp_path))
