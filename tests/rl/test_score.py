"""SCoRe: episodes and masks against hand-built rows, the stage II bonus and stage I's KL against hand values."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import rl
from jaxdyn.data import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE
from jaxdyn.models import Transformer


def test_turn2_prompt_is_prompt_attempt_instruction():
  assert rl.score_turn2_prompt(b"0042+0917=", b"9,5,9,0#959") == b"0042+0917=9,5,9,0#959" + rl.SCORE_INSTRUCTION
  assert rl.score_turn2_prompt(b"1+2=", b"", instruction=b"?") == b"1+2=?"
  with pytest.raises(ValueError, match="instruction: must be non-empty"):
    rl.score_turn2_prompt(b"1+2=", b"#3", instruction=b"")
  with pytest.raises(TypeError, match="first_attempt: must be bytes"):
    rl.score_turn2_prompt(b"1+2=", "#3")


def test_episode_rows_and_masks_exact():
  # row 0: x=b"12+07=", y1=b"#18" (wrong), y2=b"9,1#19"; row 1: x=b"30+04=", y1=b"#34", y2=b"#34"
  ep = rl.score_episode([b"12+07=", b"30+04="], [b"#18", b"#34"], [b"9,1#19", b"#34"], length=20, instruction=b"?")
  row = lambda *parts: [BOS_ID, *b"".join(parts), EOS_ID]  # noqa: E731
  first0, first1 = row(b"12+07=", b"#18"), row(b"30+04=", b"#34")
  second0, second1 = row(b"12+07=#18?", b"9,1#19"), row(b"30+04=#34?", b"#34")
  pad = lambda r: r + [PAD_ID] * (20 - len(r))  # noqa: E731
  np.testing.assert_array_equal(ep.first_tokens, [pad(first0), pad(first1)])
  np.testing.assert_array_equal(ep.second_tokens, [pad(second0), pad(second1)])
  # targets are tokens[:, 1:]: y1 = "#18" sits at tokens 7..9 and EOS at 10, i.e. targets 6..9
  want_first = np.zeros((2, 19), np.float32)
  want_first[:, 6:10] = 1
  want_second = np.zeros((2, 19), np.float32)
  want_second[0, 10:17] = 1  # "9,1#19" at tokens 11..16, EOS at 17
  want_second[1, 10:14] = 1  # "#34" at tokens 11..13, EOS at 14
  np.testing.assert_array_equal(ep.first_mask, want_first)
  np.testing.assert_array_equal(ep.second_mask, want_second)
  # the masked targets are exactly the attempts and their EOS
  tgt = ep.second_tokens[:, 1:]
  assert bytes(tgt[0][ep.second_mask[0] > 0][:-1].tolist()) == b"9,1#19"
  assert tgt[0][ep.second_mask[0] > 0][-1] == EOS_ID
  # with one prompt length per batch, the first mask is completion_mask's
  np.testing.assert_array_equal(ep.first_mask, rl.completion_mask(jnp.asarray(ep.first_tokens), 7))


def test_episode_rejects_bad_inputs():
  with pytest.raises(ValueError, match="length: must fit the longest second-turn row of 11"):
    rl.score_episode([b"1+2="], [b"#4"], [b"#3"], length=10, instruction=b"?")
  rl.score_episode([b"1+2="], [b"#4"], [b"#3"], length=11, instruction=b"?")
  with pytest.raises(ValueError, match="second_attempts: must hold one entry per prompt"):
    rl.score_episode([b"1+2="], [b"#4"], [b"#3", b"#3"], length=20)
  with pytest.raises(TypeError, match="first_attempts: must be a sequence of bytes"):
    rl.score_episode([b"1+2="], b"#4", [b"#3"], length=20)
  with pytest.raises(ValueError, match="prompts: must hold at least one"):
    rl.score_episode([], [], [], length=20)


def test_rewards_from_the_verifier():
  prompts = [b"12+07=", b"12+07=", b"30+04=", b"30+04="]
  r1, r2 = rl.score_rewards(prompts, [b"#18", b"#19", b"#34", b"3"], [b"#19", b"#18", b"4,3#34", b"#35"])
  np.testing.assert_array_equal(r1, [0, 1, 1, 0])
  np.testing.assert_array_equal(r2, [1, 0, 1, 0])
  assert r1.dtype == np.float32


R1 = jnp.array([0.0, 0.0, 1.0, 1.0])
R2 = jnp.array([0.0, 1.0, 0.0, 1.0])  # wrong->wrong, wrong->right, right->wrong, right->right


def test_stage2_alpha_zero_is_plain_two_turn_rewards():
  a1, a2 = rl.score_stage2_rewards(R1, R2, alpha=0.0)
  np.testing.assert_array_equal(a1, R1)
  np.testing.assert_array_equal(a2, R2)
  # and so the stage II loss on both attempts stacked is plain two-turn RL's
  lp = -jnp.linspace(0.1, 2.0, 8 * 5).reshape(8, 5)
  mask = jnp.ones((8, 5))
  shaped = rl.group_advantages(jnp.concatenate([a1, a2]), 2, scale="none")
  plain = rl.group_advantages(jnp.concatenate([R1, R2]), 2, scale="none")
  loss_shaped = rl.clipped_surrogate_loss(lp, lp, shaped, mask)[0]
  loss_plain = rl.clipped_surrogate_loss(lp, lp, plain, mask)[0]
  assert float(loss_shaped) == float(loss_plain)


@pytest.mark.parametrize("alpha", [0.5, 10.0])
def test_stage2_bonus_rewards_corrections(alpha):
  a1, a2 = rl.score_stage2_rewards(R1, R2, alpha=alpha)
  np.testing.assert_array_equal(a1, R1)  # the first attempt keeps its own reward
  np.testing.assert_allclose(a2, [0.0, 1.0 + alpha, -alpha, 1.0])
  bonus = np.asarray(a2 - R2)
  assert bonus[1] > 0 and bonus[2] < 0 and bonus[0] == 0 and bonus[3] == 0
  # the paper's default alpha
  np.testing.assert_allclose(rl.score_stage2_rewards(R1, R2)[1], [0.0, 11.0, -10.0, 1.0])
  assert rl.SCORE_ALPHA == 10.0 and rl.SCORE_BETA1 == 0.01 and rl.SCORE_BETA2 == 0.1


def test_stage2_rewards_jit_and_checks():
  out = jax.jit(lambda a, b: rl.score_stage2_rewards(a, b, alpha=2.0))(R1, R2)
  np.testing.assert_allclose(out[1], [0.0, 3.0, -2.0, 1.0])
  with pytest.raises(ValueError, match="alpha: must be"):
    rl.score_stage2_rewards(R1, R2, alpha=-1.0)
  with pytest.raises(ValueError, match="second_rewards: must have the shape of first_rewards"):
    rl.score_stage2_rewards(R1, R2[:3])


LP2 = -jnp.array([[0.2, 0.7, 1.1, 0.3], [0.5, 0.1, 0.9, 2.0]])
OLD2 = LP2 - 0.05
ADV2 = jnp.array([1.0, -0.5])
MASK2 = jnp.array([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])


def _pg():
  return rl.clipped_surrogate_loss(LP2, OLD2, ADV2, MASK2)


@pytest.mark.parametrize("aggregation", ["token", "sequence"])
def test_stage1_kl_zero_when_policy_is_base(aggregation):
  lp1 = -jnp.array([[0.3, 1.2, 0.4, 0.9], [0.6, 0.2, 0.8, 0.1]])
  m1 = jnp.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]])
  loss, aux = rl.score_stage1_loss(lp1, lp1, m1, LP2, OLD2, ADV2, MASK2, beta2=0.1, aggregation=aggregation)
  pg = rl.clipped_surrogate_loss(LP2, OLD2, ADV2, MASK2, aggregation=aggregation)[0]
  assert float(aux["kl_first"]) == 0.0
  assert float(loss) == float(pg) == float(aux["pg_loss"])
  # and the KL term's gradient vanishes there
  g = jax.grad(lambda x: rl.score_stage1_loss(x, lp1, m1, LP2, OLD2, ADV2, MASK2)[0])(lp1)
  np.testing.assert_allclose(g, 0.0, atol=1e-7)


def test_stage1_kl_hand_computed():
  lp1 = np.array([[-0.5, -1.0, -2.0], [-0.3, -0.3, -4.0]])
  ref1 = np.array([[-1.5, -1.0, -0.2], [-0.1, -9.0, -0.7]])
  m1 = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
  k3 = lambda lp, ref: math.exp(ref - lp) - (ref - lp) - 1  # noqa: E731
  terms = [k3(-0.5, -1.5), k3(-1.0, -1.0), k3(-0.3, -0.1)]  # masked entries only
  beta2 = 0.25
  pg = float(_pg()[0])
  # token aggregation: mean over the 3 masked tokens
  loss, aux = rl.score_stage1_loss(lp1, ref1, m1, LP2, OLD2, ADV2, MASK2, beta2=beta2)
  assert float(aux["kl_first"]) == pytest.approx(sum(terms) / 3, rel=1e-6)
  assert float(loss) == pytest.approx(pg + beta2 * sum(terms) / 3, rel=1e-6)
  # sequence aggregation: per-row means, then their mean
  pg_seq = float(rl.clipped_surrogate_loss(LP2, OLD2, ADV2, MASK2, aggregation="sequence")[0])
  loss_s, aux_s = rl.score_stage1_loss(lp1, ref1, m1, LP2, OLD2, ADV2, MASK2, beta2=beta2, aggregation="sequence")
  kl_seq = ((terms[0] + terms[1]) / 2 + terms[2]) / 2
  assert float(aux_s["kl_first"]) == pytest.approx(kl_seq, rel=1e-6)
  assert float(loss_s) == pytest.approx(pg_seq + beta2 * kl_seq, rel=1e-6)
  # gradient of the KL term: d k3 / d lp = 1 - exp(ref - lp), through the policy only (ref is a constant)
  g_lp, g_ref = jax.grad(lambda a, b: rl.score_stage1_loss(a, b, m1, LP2, OLD2, ADV2, MASK2, beta2=beta2)[0],
                         argnums=(0, 1))(jnp.asarray(lp1, jnp.float32), jnp.asarray(ref1, jnp.float32))
  want = beta2 / 3 * m1 * (1 - np.exp(ref1 - lp1))
  np.testing.assert_allclose(g_lp, want, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(g_ref, 0.0)
  # beta2 = 0: the second attempt's surrogate alone
  assert float(rl.score_stage1_loss(lp1, ref1, m1, LP2, OLD2, ADV2, MASK2, beta2=0.0)[0]) == pytest.approx(pg)


def test_stage1_checks():
  lp1, m1 = jnp.zeros((2, 4)), jnp.ones((2, 4))
  with pytest.raises(ValueError, match="first_mask: must select at least one token"):
    rl.score_stage1_loss(lp1, lp1, jnp.zeros((2, 4)), LP2, OLD2, ADV2, MASK2)
  with pytest.raises(ValueError, match="second_advantages: must have shape"):
    rl.score_stage1_loss(lp1, lp1, m1, LP2, OLD2, jnp.ones(3), MASK2)
  with pytest.raises(ValueError, match="first_ref_log_probs: must have the shape"):
    rl.score_stage1_loss(lp1, lp1[:, :3], m1, LP2, OLD2, ADV2, MASK2)
  with pytest.raises(ValueError, match="beta2: must be"):
    rl.score_stage1_loss(lp1, lp1, m1, LP2, OLD2, ADV2, MASK2, beta2=-0.1)
  nan = rl.score_stage1_loss(lp1.at[0, 0].set(jnp.nan), lp1, m1, LP2, OLD2, ADV2, MASK2)[0]
  assert np.isnan(float(nan))


def test_stage1_on_a_tiny_model():
  """Log-probs of the episode rows under a tiny policy: KL 0 against itself, positive against another model."""
  policy = rl.policy_log_probs
  model = Transformer(VOCAB_SIZE, dim=16, depth=1, num_heads=1, rngs=nnx.Rngs(0))
  other = Transformer(VOCAB_SIZE, dim=16, depth=1, num_heads=1, rngs=nnx.Rngs(1))
  ep = rl.score_episode([b"12+07=", b"30+04="], [b"#18", b"#34"], [b"#19", b"#34"], length=20)
  lp1, lp2 = policy(model, ep.first_tokens), policy(model, ep.second_tokens)
  adv = jnp.array([1.0, 0.0])
  loss, aux = rl.score_stage1_loss(lp1, lp1, ep.first_mask, lp2, lp2, adv, ep.second_mask)
  assert float(aux["kl_first"]) == 0.0
  # on-policy surrogate: -mean(A) over the second attempts' tokens (row 0: 4 targets, row 1: 4 targets)
  assert float(loss) == pytest.approx(-(1.0 * 4 + 0.0 * 4) / 8, rel=1e-6)
  ref1 = policy(other, ep.first_tokens)
  kl = float(rl.score_stage1_loss(lp1, ref1, ep.first_mask, lp2, lp2, adv, ep.second_mask)[1]["kl_first"])
  d = np.asarray(ref1 - lp1, np.float64)
  want = float(((np.exp(d) - d - 1) * ep.first_mask).sum() / ep.first_mask.sum())
  assert kl == pytest.approx(want, rel=1e-5) and kl > 0


def test_sft_corrections_rows():
  p = rl.AdditionProblems(np.array([0, 1]), np.array([12, 58]), np.array([7, 67]), 2)
  tokens, mask = rl.score_sft_corrections(p, [-1, 3], length=40, verbosity=[0, 1], instruction=b"?")
  y1 = [b"#18", b"5,2,1#128"]
  y2 = [b"#19", b"5,2,1#125"]
  for i, (x, a, b) in enumerate(zip([b"12+07=", b"58+67="], y1, y2)):
    row = [BOS_ID, *(x + a + b"?" + b), EOS_ID]
    np.testing.assert_array_equal(tokens[i, :len(row)], row)
    assert (tokens[i, len(row):] == PAD_ID).all()
    start = len(x + a + b"?")
    want = np.zeros(39, np.float32)
    want[start:start + len(b) + 1] = 1  # loss on the second attempt and its EOS only
    np.testing.assert_array_equal(mask[i], want)
  # the first attempts are wrong, the second right
  r1, r2 = rl.score_rewards([b"12+07=", b"58+67="], y1, y2)
  np.testing.assert_array_equal(r1, [0, 0])
  np.testing.assert_array_equal(r2, [1, 1])


def test_sft_corrections_checks():
  p = rl.addition_problems(2, digits=1, seed=0)
  with pytest.raises(ValueError, match="errors: must be non-zero"):
    rl.score_sft_corrections(p, [1, 0], length=30)
  with pytest.raises(ValueError, match="errors: must hold one entry per problem"):
    rl.score_sft_corrections(p, [1], length=30)
  with pytest.raises(ValueError, match="verbosity: must"):
    rl.score_sft_corrections(p, [1, 1], length=30, verbosity=3)
  with pytest.raises(ValueError, match="length: must fit"):
    rl.score_sft_corrections(p, [1, 1], length=8)
  with pytest.raises(TypeError, match="problems: must be an AdditionProblems"):
    rl.score_sft_corrections((p.a, p.b), [1, 1], length=30)


def test_sample_two_turns_with_a_stub_generator(monkeypatch):
  """The episode sampler's plumbing (turn-2 prompts, one batch per length, keys, decoding) with a stub `generate`;
  the real KV-cache sampler on a tiny model runs in the docstring example."""
  from jaxdyn.rl import _score
  calls = []

  def fake_generate(model, prompt_tokens, *, max_new_tokens, key, temperature, greedy):
    prompt_tokens = np.asarray(prompt_tokens)
    calls.append((prompt_tokens, np.asarray(jax.random.key_data(key)), temperature, greedy))
    rows = []
    for i, row in enumerate(prompt_tokens):
      text = b"#" + str(i).encode() * i if len(calls) == 1 else b"#9"
      new = [*text, EOS_ID] + [PAD_ID] * max_new_tokens
      rows.append([*row, *new[:max_new_tokens]])
    return jnp.asarray(rows, jnp.int32)

  monkeypatch.setattr(_score, "generate", fake_generate)
  model = Transformer(VOCAB_SIZE, dim=16, depth=1, num_heads=1, rngs=nnx.Rngs(0))
  key = jax.random.key(3)
  prompts = [b"12+07=", b"30+04=", b"11+11=", b"20+20="]
  first, second = rl.score_sample(model, prompts, key=key, max_new_tokens=4, temperature=0.7, instruction=b"?")
  assert first == [b"#", b"#1", b"#22", b"#333"]  # the last ran out of tokens (no EOS): kept as it stands
  assert second == [b"#9"] * 4
  # turn 1: one batch of [BOS] x; turn 2: one batch per length of [BOS] x y1 p, each with its own key
  assert len(calls) == 1 + 4
  np.testing.assert_array_equal(calls[0][0], rl.encode(prompts, length=7))
  for (tokens, _, _, _), x, y1 in zip(calls[1:], prompts, first):
    np.testing.assert_array_equal(tokens, [[BOS_ID, *(x + y1 + b"?")]])
  want_keys = [jax.random.fold_in(key, n) for n in (0, 8, 9, 10, 11)]
  for (_, got, temp, greedy), want in zip(calls, want_keys):
    np.testing.assert_array_equal(got, jax.random.key_data(want))
    assert temp == 0.7 and greedy is False
  with pytest.raises(ValueError, match="prompts: must share one length"):
    rl.score_sample(model, [b"1+2=", b"12+07="], key=key, max_new_tokens=4)
  with pytest.raises(TypeError, match="key: must be a jax.random key"):
    rl.score_sample(model, prompts, key=0, max_new_tokens=4)


def test_sample_pads_second_turn_batches_to_a_power_of_two_rows(monkeypatch):
  """A length's batch of turn-2 prompts runs as a power of two rows (its last prompt repeated), so RL steps whose
  counts of rows per length differ reuse the compiled loops; the padding rows' completions are dropped."""
  from jaxdyn.rl import _score
  shapes = []

  def fake_generate(model, prompt_tokens, *, max_new_tokens, key, temperature, greedy):
    prompt_tokens = np.asarray(prompt_tokens)
    shapes.append(prompt_tokens.shape)
    rows = []
    for i, row in enumerate(prompt_tokens):
      text = (b"#1" if i < 3 else b"#22") if len(shapes) == 1 else b"#" + str(i).encode()
      rows.append([*row, *([*text, EOS_ID] + [PAD_ID] * max_new_tokens)[:max_new_tokens]])
    if len(shapes) == 2:  # the padding row repeats the last prompt of the length
      np.testing.assert_array_equal(prompt_tokens[3], prompt_tokens[2])
    return jnp.asarray(rows, jnp.int32)

  monkeypatch.setattr(_score, "generate", fake_generate)
  model = Transformer(VOCAB_SIZE, dim=16, depth=1, num_heads=1, rngs=nnx.Rngs(0))
  prompts = [b"12+07=", b"30+04=", b"11+11=", b"20+20=", b"21+20="]
  first, second = rl.score_sample(model, prompts, key=jax.random.key(0), max_new_tokens=4, instruction=b"?")
  assert first == [b"#1"] * 3 + [b"#22"] * 2
  assert shapes == [(5, 7), (4, 10), (2, 11)]  # turn 1 as it is; 3 rows of length 10 -> 4, 2 of length 11 -> 2
  assert second == [b"#0", b"#1", b"#2", b"#0", b"#1"]
