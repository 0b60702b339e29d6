"""ToMAP's toy persuasion game: opponent rule, replies, predictor loss, reward, determinism, oracle vs random."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdyn import rl
from jaxdyn.rl import _tomap


def _oracle(key, replies, stance):
  del key, replies
  return jnp.argmax(stance, axis=-1).astype(jnp.int32)


def _random(key, replies, stance):
  del replies
  return jax.random.randint(key, (stance.shape[0],), 0, stance.shape[1])


# --- the opponent -----------------------------------------------------------------------------------------
def test_opponent_update_by_hand():
  s = jnp.array([[0.8, 0.2, 0.5], [0.8, 0.2, 0.5], [0.8, 0.2, 0.5]])
  out = rl.opponent_update(s, jnp.array([0, 1, 2]), rate=0.5, backfire=0.1, threshold=0.5)
  # held claim 0: 0.8 * 0.5; claim 1 not held: 0.2 + 0.1 * 0.8; claim 2 at the threshold counts as held
  np.testing.assert_allclose(out, [[0.4, 0.2, 0.5], [0.8, 0.28, 0.5], [0.8, 0.2, 0.25]], rtol=1e-6)
  out = rl.opponent_update(jnp.array([0.9, 0.6]), jnp.array(1), rate=0.25, backfire=0.0, threshold=0.7)
  np.testing.assert_allclose(out, [0.9, 0.6], rtol=1e-6)  # 0.6 < 0.7 not held, backfire 0: unchanged
  out = rl.opponent_update(jnp.array([0.9, 0.6]), jnp.array(0), rate=0.25, backfire=0.0, threshold=0.7)
  np.testing.assert_allclose(out, [0.675, 0.6], rtol=1e-6)


def test_opponent_update_bad_claim():
  with pytest.raises(ValueError, match="claim:"):
    rl.opponent_update(jnp.array([0.5, 0.5]), jnp.array(2))
  out = jax.jit(rl.opponent_update)(jnp.array([0.5, 0.5]), jnp.array(2))
  assert np.isnan(np.asarray(out)).all()
  with pytest.raises(ValueError, match="stance:"):
    rl.opponent_update(jnp.array([1.5, 0.5]), jnp.array(0))
  with pytest.raises(ValueError, match="rate:"):
    rl.opponent_update(jnp.array([0.5, 0.5]), jnp.array(0), rate=1.5)


def test_opponent_reply_levels_and_reveal():
  s = jnp.array([0.0, 0.3, 0.5, 0.9, 1.0])  # 4 s = 0, 1.2, 2, 3.6, 4
  assert bytes(rl.opponent_reply(jax.random.key(0), s, noise=0.0, reveal=1.0)) == b"01244"
  assert bytes(rl.opponent_reply(jax.random.key(0), s, noise=0.0, reveal=0.0)) == b"?????"
  many = np.asarray(rl.opponent_reply(jax.random.key(1), jnp.full((4000,), 0.5), noise=0.0, reveal=0.3))
  assert set(many.tobytes()) == {ord("2"), ord("?")}
  assert abs(np.mean(many == ord("2")) - 0.3) < 0.03
  noisy = np.asarray(rl.opponent_reply(jax.random.key(2), jnp.full((4000,), 0.5), noise=0.25, reveal=1.0)) - 48
  # level = round(2 + eps), eps ~ N(0, 1): P(level = 2) = P(|eps| < 0.5) = 0.383
  assert abs(np.mean(noisy == 2) - math.erf(0.5 / math.sqrt(2))) < 0.03
  with pytest.raises(ValueError, match="key:"):
    rl.opponent_reply(None, s)


def test_thesis_agreement():
  np.testing.assert_allclose(rl.thesis_agreement(jnp.array([[0.5, 0.25], [1.0, 1.0]])), [0.625, 0.0])


def test_reply_features_by_hand():
  replies = jnp.array([[ord("1"), ord("?")], [ord("3"), ord("?")]], jnp.uint8)  # T = 2, K = 2
  f = np.asarray(rl.reply_features(replies)).reshape(2, 12)
  np.testing.assert_array_equal(f[0], [0, 0, 0, 1, 0, 0, 0, 0.5, 0, 0.5, 0, 0])
  np.testing.assert_array_equal(f[1], [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1])
  with pytest.raises(ValueError, match="replies:"):
    rl.reply_features(jnp.array([[ord("x")]], jnp.uint8))
  with pytest.raises(TypeError, match="replies:"):
    rl.reply_features(jnp.array([[1]], jnp.int32))


# --- the stance predictor --------------------------------------------------------------------------------
def test_stance_loss_formula():
  z = jnp.array([[[1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 1.0, 0.0, 0.0]]])
  # labels: round(4 * 0.625) = round(2.5) = 2 (half to even, as Python's round), round(4 * 0.1) = 0
  stance = jnp.array([[0.625, 0.1]])
  lse = [math.log(sum(math.exp(v) for v in row)) for row in ([1, 2, 3, 4, 5], [0, 0, 1, 0, 0])]
  want = ((lse[0] - 3.0) + (lse[1] - 0.0)) / 2
  assert float(rl.stance_loss(z, stance)) == pytest.approx(want, rel=1e-6)
  assert round(4 * 0.625) == 2 and round(4 * 0.375) == 2  # the authors' label rule
  assert float(rl.stance_loss(z[:, :1], jnp.array([[0.375]]))) == pytest.approx(lse[0] - 3.0, rel=1e-6)
  with pytest.raises(ValueError, match="stance:"):
    rl.stance_loss(z, jnp.array([[0.5]]))


def test_predicted_stance_and_observation():
  z = jnp.log(jnp.array([[0.1, 0.2, 0.3, 0.2, 0.2]]))
  want = 0.2 * 0.25 + 0.3 * 0.5 + 0.2 * 0.75 + 0.2 * 1.0
  np.testing.assert_allclose(rl.predicted_stance(z), [want], rtol=1e-6)
  f = jnp.arange(12.0)
  obs = rl.persuader_observation(f, z)
  np.testing.assert_allclose(obs[:12], f)
  np.testing.assert_allclose(obs[12:17], [0.1, 0.2, 0.3, 0.2, 0.2], rtol=1e-6)
  np.testing.assert_allclose(obs[17], want, rtol=1e-6)
  np.testing.assert_array_equal(rl.persuader_observation(f), f)
  with pytest.raises(ValueError, match="logits:"):
    rl.persuader_observation(f, jnp.zeros((2, 5)))


def test_predictor_learns_from_games():
  d = rl.play_dialogue(jax.random.key(3), _random, num_games=200, num_claims=3, num_turns=3, noise=0.05, reveal=0.7)
  x, s = rl.dialogue_stance_examples(d)
  assert x.shape == (800, 36) and s.shape == (800, 3)
  np.testing.assert_array_equal(s[4:8], d.stance[1])
  np.testing.assert_array_equal(x[5], rl.reply_features(d.replies[1, :2]))
  model = rl.StancePredictor(3, hidden=32, rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, x, s):
    loss, grads = nnx.value_and_grad(lambda m: rl.stance_loss(m(x), s))(model)
    opt.update(model, grads)
    return loss

  first = float(step(model, opt, x, s))
  for _ in range(100):
    last = float(step(model, opt, x, s))
  assert first > 1.4 and last < 0.8  # from about log 5 to well below it

  # a greedy persuader that addresses the claim the trained predictor believes most held beats a random one
  def tom(key, replies, stance):
    del key, stance
    return jnp.argmax(rl.predicted_stance(model(rl.reply_features(replies))), axis=-1).astype(jnp.int32)

  kw = dict(num_games=300, num_claims=3, num_turns=3, noise=0.05, reveal=0.7)
  r_tom, r_rand, r_oracle = (float(rl.play_dialogue(jax.random.key(100), c, **kw).rewards.sum(1).mean())
                             for c in (tom, _random, _oracle))
  assert r_rand + 0.08 < r_tom < r_oracle + 1e-6, (r_rand, r_tom, r_oracle)


# --- the reward ------------------------------------------------------------------------------------------
def _calc_diff(new, old, keep_negative=True):  # the authors' make_debate_reward.calc_diff, curve_exp = 1
  if new > old:
    reward = 1 if old > 0.999 else (new - old) / (1.0 - old)
  else:
    if old < 0.001:
      return 0
    reward = (new - old) / old
  return reward if keep_negative else max(0.0, reward)


def test_persuasion_reward_matches_authors_grid():
  grid = [0.0, 0.0005, 0.1, 0.25, 0.5, 0.8, 0.9995, 1.0]
  old, new = np.meshgrid(grid, grid, indexing="ij")
  for keep in (True, False):
    got = rl.persuasion_reward(jnp.array(old, jnp.float32), jnp.array(new, jnp.float32), keep_negative=keep)
    want = [[_calc_diff(float(np.float32(n)), float(np.float32(o)), keep) for n in grid] for o in grid]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(rl.persuasion_reward(jnp.array([0.5, 0.8]), jnp.array([0.75, 0.4])), [0.5, -0.5])
  np.testing.assert_allclose(rl.persuasion_reward(0.5, 0.25, normalized=False), -0.25)
  np.testing.assert_allclose(rl.persuasion_reward(0.5, 0.25, normalized=False, keep_negative=False), 0.0)
  with pytest.raises(TypeError, match="normalized:"):
    rl.persuasion_reward(0.5, 0.25, normalized=1)


def test_dialogue_rewards_hand_built():
  a = jnp.array([0.2, 0.6, 0.4, 0.8])
  local = [0.4 / 0.8, -0.2 / 0.6, 0.4 / 0.6]
  total = 0.6 / 0.8
  np.testing.assert_allclose(rl.dialogue_rewards(a), local, rtol=1e-6)
  np.testing.assert_allclose(rl.dialogue_rewards(a, global_factor=0.25), [0.75 * v + 0.25 * total for v in local],
                             rtol=1e-6)
  np.testing.assert_allclose(rl.dialogue_rewards(a, normalized=False, global_factor=1.0), [0.6] * 3, rtol=1e-6)
  np.testing.assert_allclose(rl.dialogue_rewards(a, keep_negative=False)[1], 0.0)
  with pytest.raises(ValueError, match="agreement:"):
    rl.dialogue_rewards(jnp.array([0.5]))


# --- the game --------------------------------------------------------------------------------------------
def test_game_is_deterministic_given_a_key():
  a = rl.play_dialogue(jax.random.key(7), _random, num_games=8)
  b = rl.play_dialogue(jax.random.key(7), _random, num_games=8)
  c = rl.play_dialogue(jax.random.key(8), _random, num_games=8)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a.stance, c.stance)
  # the record is consistent with the rules
  np.testing.assert_allclose(a.stance[:, 1], rl.opponent_update(a.stance[:, 0], a.claims[:, 0]), rtol=1e-6)
  np.testing.assert_allclose(a.agreement, rl.thesis_agreement(a.stance), rtol=1e-6)
  np.testing.assert_allclose(a.rewards, rl.dialogue_rewards(a.agreement), rtol=1e-6)
  assert a.replies.dtype == np.uint8 and a.replies.shape == (8, 4, 4)


def test_oracle_persuader_beats_random():
  oracle = rl.play_dialogue(jax.random.key(0), _oracle, num_games=300)
  rand = rl.play_dialogue(jax.random.key(0), _random, num_games=300)
  np.testing.assert_array_equal(oracle.stance[:, 0], rand.stance[:, 0])  # the same opponents
  r_oracle, r_rand = float(oracle.rewards.sum(1).mean()), float(rand.rewards.sum(1).mean())
  assert r_oracle > r_rand + 0.15, (r_oracle, r_rand)
  gain = oracle.agreement[:, -1] - oracle.agreement[:, 0]
  assert float(gain.mean()) > float((rand.agreement[:, -1] - rand.agreement[:, 0]).mean()) + 0.05
  # the oracle's turn always lands while the opponent holds some claim (and backfires only when it holds none)
  held = np.asarray(oracle.stance[:, :-1].max(-1) >= 0.5)
  delta = np.asarray(oracle.agreement[:, 1:] - oracle.agreement[:, :-1])
  assert held.any() and (~held).any() and (delta[held] > 0).all() and (delta[~held] < 0).all()


def test_play_dialogue_bad_inputs():
  with pytest.raises(ValueError, match="choose:"):
    rl.play_dialogue(jax.random.key(0), lambda k, r, s: jnp.zeros(3, jnp.int32), num_games=2)
  with pytest.raises(TypeError, match="choose:"):
    rl.play_dialogue(jax.random.key(0), None)
  with pytest.raises(ValueError, match="reveal:"):
    rl.play_dialogue(jax.random.key(0), _random, reveal=2.0)
  with pytest.raises(TypeError, match="dialogue:"):
    rl.dialogue_stance_examples((1, 2))
  assert _tomap.NUM_LEVELS == 5
