"""M-STaR self-evolving pieces: selection, Reward-Pass@k, temperature, schedules, majority vote, reward model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import rl
from jaxdyn.models import Transformer

T, F = True, False


# --- selection --------------------------------------------------------------------------------------
def test_select_verifier_only_keeps_every_correct_answer():
  correct = jnp.array([T, F, T, F, F, F])
  np.testing.assert_array_equal(rl.select_answers(correct, 3), [1, 0, 1, 0, 0, 0])


def test_select_with_scores_keeps_top_k_correct_per_prompt():
  # prompt 0: 4 correct, scores 0.2 0.9 0.5 0.7 -> top-2 are answers 1 (0.9) and 3 (0.7)
  # prompt 1: the best-scored answer (5.0) is wrong; the two correct ones are kept whatever their scores
  # prompt 2: one correct answer -> kept; prompt 3: none correct -> nothing
  correct = jnp.array([T, T, T, T, F, T, F, T, F, F, T, F, F, F, F, F])
  scores = jnp.array([0.2, 0.9, 0.5, 0.7, 5.0, -1.0, 4.0, -2.0, 0, 0, -9.0, 0, 1, 2, 3, 4], jnp.float32)
  want = [0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0]
  np.testing.assert_array_equal(rl.select_answers(correct, 4, scores), want)
  want_top1 = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
  np.testing.assert_array_equal(rl.select_answers(correct, 4, scores, top_k=1), want_top1)
  # top_k >= K keeps every correct answer, as the verifier alone does
  np.testing.assert_array_equal(rl.select_answers(correct, 4, scores, top_k=4), rl.select_answers(correct, 4))


def test_select_ties_go_to_the_earlier_answer():
  correct = jnp.array([T, T, T])
  np.testing.assert_array_equal(rl.select_answers(correct, 3, jnp.array([1.0, 1.0, 1.0]), top_k=2), [1, 1, 0])
  np.testing.assert_array_equal(rl.select_answers(correct, 3, jnp.array([0.0, 1.0, 1.0]), top_k=1), [0, 1, 0])


def test_select_nan_score_under_jit_poisons_only_its_group():
  f = jax.jit(lambda s: rl.select_answers(jnp.array([T, T, T, T]), 2, s, top_k=1))
  out = np.asarray(f(jnp.array([0.0, jnp.nan, 2.0, 1.0])))
  assert np.isnan(out[:2]).all()
  np.testing.assert_array_equal(out[2:], [1, 0])
  assert np.isnan(f(jnp.array([0.0, 1.0, jnp.inf, 1.0]))[2:]).all()


def test_select_bad_inputs():
  c = jnp.array([T, F, T, F])
  with pytest.raises(ValueError, match="group_size: must divide the number of answers in correct"):
    rl.select_answers(c, 3)
  with pytest.raises(TypeError, match="correct: must be a boolean array"):
    rl.select_answers(jnp.array([1, 0, 1, 0]), 2)
  with pytest.raises(ValueError, match="scores: must have the shape of correct"):
    rl.select_answers(c, 2, jnp.zeros(3))
  with pytest.raises(ValueError, match="scores: must be finite"):
    rl.select_answers(c, 2, jnp.array([0.0, np.inf, 0.0, 0.0]))
  with pytest.raises(ValueError, match="top_k: must be an int >= 1"):
    rl.select_answers(c, 2, jnp.zeros(4), top_k=0)
  with pytest.raises(ValueError, match="group_size: must be an int >= 1"):
    rl.select_answers(c, 0)
  with pytest.raises(ValueError, match="correct: must hold at least one"):
    rl.select_answers(jnp.zeros(0, bool), 1)


# --- Reward-Pass@k and the temperature choice ------------------------------------------------------
def test_reward_pass_at_k_hand_worked():
  # prompt 0: ranks by score 0.9(F) 0.5(F) 0.1(T) -> RP@2 miss, RP@3 hit
  # prompt 1: 0.8(T) 0.3(F) 0.2(F) -> hit at every k
  # prompt 2: no correct answer -> never
  # prompt 3: 0.4(F) 0.4(T) 0.0(F): the tie goes to the earlier (wrong) answer -> RP@1 miss, RP@2 hit
  correct = jnp.array([F, T, F, F, T, F, F, F, F, F, T, F])
  scores = jnp.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 1, 2, 3, 0.4, 0.4, 0.0], jnp.float32)
  assert float(rl.reward_pass_at_k(correct, scores, 3, k=1)) == pytest.approx(1 / 4)
  assert float(rl.reward_pass_at_k(correct, scores, 3, k=2)) == pytest.approx(2 / 4)
  assert float(rl.reward_pass_at_k(correct, scores, 3, k=3)) == pytest.approx(3 / 4)  # pass@K
  assert float(rl.reward_pass_at_k(correct, scores, 3)) == pytest.approx(2 / 4)  # default k=2


def test_reward_pass_at_k_bad_inputs_and_jit_nan():
  c, s = jnp.array([T, F, F, T]), jnp.zeros(4)
  with pytest.raises(ValueError, match="k: must be an int in \\[1, 2\\]"):
    rl.reward_pass_at_k(c, s, 2, k=3)
  with pytest.raises(ValueError, match="scores: must have the shape of correct"):
    rl.reward_pass_at_k(c, s[:2], 2)
  out = jax.jit(lambda x: rl.reward_pass_at_k(c, x, 2))(jnp.array([0.0, jnp.nan, 0.0, 0.0]))
  assert np.isnan(out)


def test_choose_temperature_argmax_and_ties():
  assert rl.choose_temperature([0.2, 0.5, 0.8, 1.1], [0.40, 0.55, 0.50, 0.30]) == (0.5, 1)
  assert rl.choose_temperature([0.2, 0.5, 0.8], [0.6, 0.6, 0.6]) == (0.2, 0)  # tie -> lowest temperature
  assert rl.choose_temperature([1.0], [0.0]) == (1.0, 0)
  # computed monitors: higher temperature finds the correct answer more often in this hand-built batch
  correct_lo = jnp.array([F, F, T, F, F, F])
  correct_hi = jnp.array([T, F, F, T, F, F])
  scores = jnp.array([0.9, 0.5, 0.1, 0.9, 0.5, 0.1])
  monitor = [float(rl.reward_pass_at_k(c, scores, 3)) for c in (correct_lo, correct_hi)]
  assert monitor == [0.0, 1.0]
  assert rl.choose_temperature([0.5, 1.0], monitor) == (1.0, 1)


@pytest.mark.parametrize("temps,monitor,name", [
    ([0.5, 0.5], [0.1, 0.2], "temperatures"), ([0.8, 0.5], [0.1, 0.2], "temperatures"),
    ([0.0, 0.5], [0.1, 0.2], "temperatures"), ([], [], "temperatures"), ("0.5", [0.1], "temperatures"),
    ([0.5, np.nan], [0.1, 0.2], "temperatures"), ([0.5, 1.0], [0.1], "monitor"),
    ([0.5, 1.0], [0.1, np.nan], "monitor"), ([0.5, 1.0], None, "monitor")])
def test_choose_temperature_bad_inputs(temps, monitor, name):
  with pytest.raises(ValueError, match=f"{name}: must be"):
    rl.choose_temperature(temps, monitor)


# --- schedules --------------------------------------------------------------------------------------
def test_evolve_schedule_at_given_steps():
  on = [rl.evolve_schedule(s, mode="online") for s in (0, 1, 7)]
  assert on == [rl.EvolveStep(0, T, 0, F), rl.EvolveStep(1, T, 1, F), rl.EvolveStep(7, T, 7, F)]
  it = [rl.evolve_schedule(s, mode="iterative", interval=4) for s in (0, 3, 4, 5, 8)]
  assert it == [rl.EvolveStep(0, T, 0, F), rl.EvolveStep(0, F, 0, F), rl.EvolveStep(1, T, 4, T),
                rl.EvolveStep(1, F, 4, F), rl.EvolveStep(2, T, 8, T)]
  co = [rl.evolve_schedule(s, mode="continuous", interval=4) for s in (0, 3, 4, 5, 8)]
  assert co == [rl.EvolveStep(0, T, 0, F), rl.EvolveStep(0, F, 0, F), rl.EvolveStep(1, T, 4, F),
                rl.EvolveStep(1, F, 4, F), rl.EvolveStep(2, T, 8, F)]
  # continuous with interval 1 is online
  assert rl.evolve_schedule(6, mode="continuous", interval=1) == rl.evolve_schedule(6, mode="online")
  # regenerations over 12 steps: every `interval` steps
  assert sum(rl.evolve_schedule(s, mode="continuous", interval=3).regenerate for s in range(12)) == 4


def test_evolve_schedule_bad_inputs():
  with pytest.raises(ValueError, match="interval: must be 1 for mode='online'"):
    rl.evolve_schedule(0, mode="online", interval=2)
  with pytest.raises(ValueError, match="mode: must be one of"):
    rl.evolve_schedule(0, mode="offline")
  with pytest.raises(ValueError, match="step: must be an int >= 0"):
    rl.evolve_schedule(-1)
  with pytest.raises(ValueError, match="interval: must be an int >= 1"):
    rl.evolve_schedule(0, mode="iterative", interval=0)


# --- prompt variation ---------------------------------------------------------------------------------
def test_majority_vote_hand_worked():
  # prompt 0: 7 7 5 9 -> 7; prompt 1: 4 3 3 4 -> tie, the earlier (4); prompt 2: none valid;
  # prompt 3: 8(invalid) 2 8(invalid) 2 -> 2 (invalid answers do not vote)
  answers = jnp.array([7, 7, 5, 9, 4, 3, 3, 4, 1, 1, 1, 1, 8, 2, 8, 2])
  valid = jnp.array([T, T, T, T, T, T, T, T, F, F, F, F, F, T, F, T])
  labels, has, ok = rl.majority_vote(answers, valid, 4)
  np.testing.assert_array_equal(labels, [7, 4, 0, 2])
  np.testing.assert_array_equal(has, [T, T, F, T])
  np.testing.assert_array_equal(ok, [T, T, F, F, T, F, F, T, F, F, F, F, F, T, F, T])
  # the pseudo-verdicts plug into the selection
  np.testing.assert_array_equal(rl.select_answers(ok, 4), np.asarray(ok, np.float32))


def test_majority_vote_bad_inputs():
  with pytest.raises(TypeError, match="answers: must be an integer array"):
    rl.majority_vote(jnp.array([1.0, 2.0]), jnp.array([T, T]), 2)
  with pytest.raises(ValueError, match="valid: must have the shape of answers"):
    rl.majority_vote(jnp.array([1, 2]), jnp.array([T]), 2)
  with pytest.raises(TypeError, match="valid: must be a boolean array"):
    rl.majority_vote(jnp.array([1, 2]), jnp.array([1, 1]), 2)


# --- reward model -----------------------------------------------------------------------------------
def _rm():
  return rl.RewardModel(Transformer(259, dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))


TOK = jnp.array([[256, 49, 43, 50, 61, 35, 51, 257], [256, 52, 43, 53, 61, 35, 57, 257]], jnp.int32)


def test_reward_model_scores_the_last_real_token_and_ignores_padding():
  rm = _rm()
  lengths = jnp.array([8, 5])
  s = rm(TOK, lengths)
  h = rm.backbone.features(TOK)
  w, b = rm.score_head.kernel[...][:, 0], rm.score_head.bias[...][0]
  np.testing.assert_allclose(s, [h[0, 7] @ w + b, h[1, 4] @ w + b], rtol=1e-5, atol=1e-6)
  padded = TOK.at[1, 5:].set(258)  # what comes after the last real token is never seen (causal)
  np.testing.assert_allclose(rm(padded, lengths), s, rtol=1e-5, atol=1e-6)
  out = jax.jit(lambda m, l: m(TOK, l))(rm, jnp.array([0, 5]))
  assert np.isnan(out[0]) and np.isfinite(out[1])


def test_reward_model_bad_inputs():
  rm = _rm()
  with pytest.raises(ValueError, match="lengths: must lie in \\[1, 8\\]"):
    rm(TOK, jnp.array([9, 5]))
  with pytest.raises(ValueError, match="lengths: must have shape"):
    rm(TOK, jnp.array([8]))
  with pytest.raises(TypeError, match="lengths: must be integers"):
    rm(TOK, jnp.array([8.0, 5.0]))
  with pytest.raises(TypeError, match="backbone: must be a jaxdyn.models.Transformer"):
    rl.RewardModel(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))


def test_reward_losses_against_their_formulas():
  c, r = jnp.array([2.0, -1.0, 0.5]), jnp.array([1.0, 1.0, 0.5])
  loss, aux = rl.reward_pairwise_loss(c, r)
  want = np.mean([np.log1p(np.exp(-1.0)), np.log1p(np.exp(2.0)), np.log(2.0)])
  assert float(loss) == pytest.approx(want, rel=1e-6)
  assert float(aux["accuracy"]) == pytest.approx(1 / 3)
  s, y = jnp.array([2.0, -1.0, 0.0, 3.0]), jnp.array([1.0, 1.0, 0.0, 0.25])
  loss, aux = rl.reward_pointwise_loss(s, y)
  sig = 1 / (1 + np.exp(-np.asarray(s, np.float64)))
  yy = np.asarray(y, np.float64)
  want = -np.mean(yy * np.log(sig) + (1 - yy) * np.log(1 - sig))
  assert float(loss) == pytest.approx(want, rel=1e-6)
  assert float(aux["accuracy"]) == pytest.approx(2 / 4)  # (s > 0, y > 0.5): (T,T) (F,T) (F,F) (T,F)
  # boolean verdicts are labels 1 / 0
  np.testing.assert_allclose(rl.reward_pointwise_loss(s[:3], jnp.array([T, T, F]))[0],
                             rl.reward_pointwise_loss(s[:3], y[:3])[0], rtol=1e-6)


def test_reward_losses_bad_inputs():
  z = jnp.zeros(3)
  with pytest.raises(ValueError, match="rejected: must have the shape of chosen"):
    rl.reward_pairwise_loss(z, z[:2])
  with pytest.raises(ValueError, match="chosen: must be finite"):
    rl.reward_pairwise_loss(z.at[0].set(jnp.nan), z)
  with pytest.raises(ValueError, match="chosen: must hold at least one"):
    rl.reward_pairwise_loss(z[:0], z[:0])
  with pytest.raises(ValueError, match="labels: must lie in \\[0, 1\\]"):
    rl.reward_pointwise_loss(z, jnp.array([0.0, 2.0, 1.0]))
  with pytest.raises(ValueError, match="labels: must have the shape of scores"):
    rl.reward_pointwise_loss(z, z[:2])
  with pytest.raises(ValueError, match="scores: must have 1 dimension"):
    rl.reward_pointwise_loss(z[None], z[None])


# --- training on the selected answers ----------------------------------------------------------------------
def test_selected_sft_loss_against_its_formula():
  lp = jnp.log(jnp.array([[0.5, 0.25, 0.9], [0.1, 0.2, 0.3], [0.8, 0.4, 0.6]]))
  mask = jnp.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
  w = jnp.array([1.0, 0.0, 1.0])
  want = -(np.log(0.25) + np.log(0.9) + np.log(0.8)) / 3
  assert float(rl.selected_sft_loss(lp, mask, w)) == pytest.approx(want, rel=1e-6)
  assert float(rl.selected_sft_loss(lp, mask, jnp.zeros(3))) == 0.0  # nothing selected
  # d loss / d log_probs = -w_b m_bt / sum(w m): zero on unselected rows and masked tokens
  g = jax.grad(rl.selected_sft_loss)(lp, mask, w)
  np.testing.assert_allclose(g, -np.asarray(mask * w[:, None]) / 3, rtol=1e-6)
  np.testing.assert_array_equal(jax.grad(rl.selected_sft_loss)(lp, mask, jnp.zeros(3)), np.zeros((3, 3)))


def test_selected_sft_step_raises_the_selected_answers_likelihood():
  model = Transformer(259, dim=8, depth=1, num_heads=1, rngs=nnx.Rngs(0))
  w = rl.select_answers(jnp.array([True, False]), 2)
  mask = rl.completion_mask(TOK, 5)

  @nnx.jit
  def step(m):  # one SGD step on the selected answer; returns the loss before it
    loss, g = nnx.value_and_grad(lambda m: rl.selected_sft_loss(rl.policy_log_probs(m, TOK), mask, w))(m)
    nnx.update(m, jax.tree.map(lambda p, d: p - 0.5 * d, nnx.state(m, nnx.Param), g))
    return loss

  first, second = float(step(model)), float(step(model))
  assert second < first


def test_selected_sft_loss_bad_inputs():
  lp, m = jnp.zeros((2, 3)), jnp.ones((2, 3))
  with pytest.raises(ValueError, match="weights: must have one entry per row"):
    rl.selected_sft_loss(lp, m, jnp.ones(3))
  with pytest.raises(ValueError, match="weights: every entry must be >= 0"):
    rl.selected_sft_loss(lp, m, jnp.array([1.0, -1.0]))
  with pytest.raises(ValueError, match="mask: must have the shape of log_probs"):
    rl.selected_sft_loss(lp, m[:, :2], jnp.ones(2))
  with pytest.raises(ValueError, match="log_probs: must be finite"):
    rl.selected_sft_loss(lp.at[0, 0].set(jnp.nan), m, jnp.ones(2))
