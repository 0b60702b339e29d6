"""The SCoRe claim runner's pieces: the base policy's two-turn batches, the baseline's batches, metrics, steps."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from configs import score_addition
from experiments.techniques.rl import addition, score
from experiments.techniques.text import lm
from jaxdyn import rl


def _rows(batch):
  return np.concatenate([batch["inputs"][:, :1], batch["targets"]], axis=1)


def _split_turns(row):
  """(prompt, y1, y2 or None) of a token row: bytes up to the first special id, split at the instruction."""
  body = row[1:]
  stop = np.flatnonzero(body > 255)
  text = bytes(body[:stop[0] if len(stop) else len(body)].astype(np.uint8))
  prompt, _, rest = text.partition(b"=")
  y1, sep, y2 = rest.partition(rl.SCORE_INSTRUCTION)
  return prompt + b"=", y1, (y2 if sep else None)


def test_base_batches_mix_single_and_two_turn_rows_with_loss_on_the_last_attempt_only():
  c = score_addition.get_config().rl
  c.sft_batch = 2000
  b = score.base_batch(c, np.random.default_rng(0))
  k = round(c.two_turn_share * c.sft_batch)
  rows = _rows(b)
  turns = [_split_turns(r) for r in rows]
  assert all(t[2] is None for t in turns[:-k]) and all(t[2] is not None for t in turns[-k:])
  plen = addition.prompt_len(c.digits)
  # single-turn rows: y1 and its EOS; two-turn rows: y2 and its EOS, nothing of the prompt, y1 or the instruction
  n_single = b["weights"][:-k].sum(1)
  assert np.array_equal(n_single, [len(t[1]) + 1 for t in turns[:-k]])
  for (p, y1, y2), w in zip(turns[-k:], b["weights"][-k:]):
    start = len(p) + len(y1) + len(rl.SCORE_INSTRUCTION)
    assert w[:start].sum() == 0 and w[start:start + len(y2) + 1].sum() == len(y2) + 1 and w.sum() == len(y2) + 1
  assert b["weights"][:, :plen - 1].sum() == 0
  # the two attempts of a two-turn row are independent draws: right / wrong rates and no correlation
  r1 = np.array([rl.verify(p, y1) for p, y1, _ in turns[-k:]])
  r2 = np.array([rl.verify(p, y2) for p, _, y2 in turns[-k:]])
  assert abs(1 - r1.mean() - c.error_rate) < 0.03 and abs(1 - r2.mean() - c.error_rate) < 0.03
  assert abs(r2[~r1].mean() - r2[r1].mean()) < 0.1
  assert np.mean([y1 == y2 for _, y1, y2 in turns[-k:]]) < 0.9  # not copies (verbosities differ often)


def test_correction_batches_pair_a_wrong_first_attempt_with_a_right_second_one():
  c = score_addition.get_config().rl
  c.sft_batch = 200
  b = score.correction_batch(c, np.random.default_rng(1))
  for row, w in zip(_rows(b), b["weights"]):
    p, y1, y2 = _split_turns(row)
    assert not rl.verify(p, y1) and rl.verify(p, y2)
    assert 1 <= rl.parse_answer(y1) - rl.parse_answer(y2) <= 9  # off by +1 .. 9
    assert w.sum() == len(y2) + 1


def test_transition_metrics_on_a_hand_worked_example():
  r1, r2 = np.array([0, 0, 1, 1, 1]), np.array([1, 0, 0, 1, 1])
  m = score.transition_metrics(r1, r2, [b"#1", b"#2", b"#3", b"#4", b"#5"], [b"#9", b"#2", b"#8", b"#4", b"1,2#5"])
  assert m == pytest.approx({"acc_t1": 0.6, "acc_t2": 0.6, "gain": 0.0, "delta_i_to_c": 0.2, "delta_c_to_i": 0.2,
                             "changed": 0.6})
  assert m["gain"] == pytest.approx(m["delta_i_to_c"] - m["delta_c_to_i"])
  with pytest.raises(ValueError, match="r1, r2, y1, y2"):
    score.transition_metrics(r1, r2[:3], [b""] * 5, [b""] * 5)


def _tiny():
  c = ml_collections.ConfigDict({"dim": 16, "depth": 1, "num_heads": 2, "mlp_ratio": 2})
  return lm.make_model(c, 0)


def test_stage_steps_at_the_reference_have_zero_kl_and_the_on_policy_surrogate_as_loss():
  model, ref = _tiny(), _tiny()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt = optax.sgd(0.0)
  prompts = [b"12+34=", b"12+34=", b"50+50=", b"50+50="]
  y1, y2 = [b"#46", b"#47", b"#100", b"1,0#9"], [b"#46", b"4,6#46", b"#10", b"#100"]
  ep = rl.score_episode(prompts, y1, y2, length=32)
  adv2 = jnp.array([1.0, -1.0, 0.5, -0.5])
  step1 = score.make_stage1_step(graphdef, rest, ref, opt, beta2=0.1)
  _, _, loss, kl = step1(params, opt.init(params), ep.first_tokens, ep.first_mask, ep.second_tokens, ep.second_mask,
                         adv2)
  n2 = ep.second_mask.sum(1)
  assert float(kl) == pytest.approx(0.0, abs=1e-6)
  assert float(loss) == pytest.approx(-float(np.sum(np.asarray(adv2) * n2) / n2.sum()), abs=1e-5)
  step2 = score.make_stage2_step(graphdef, rest, ref, opt, beta1=0.01)
  tokens, mask = np.concatenate([ep.first_tokens, ep.second_tokens]), np.concatenate([ep.first_mask, ep.second_mask])
  adv = jnp.concatenate([jnp.zeros(4), adv2])
  _, _, loss, kl = step2(params, opt.init(params), tokens, mask, adv)
  assert float(kl) == pytest.approx(0.0, abs=1e-6)
  assert float(loss) == pytest.approx(-float(np.sum(np.asarray(adv2) * n2) / mask.sum()), abs=1e-5)


def test_stage1_step_moves_the_second_attempt_toward_the_rewarded_one():
  model, ref = _tiny(), _tiny()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt = optax.adam(1e-2)
  prompts = [b"12+34="] * 2
  ep = rl.score_episode(prompts, [b"#45", b"#45"], [b"#46", b"#44"], length=24)
  step1 = score.make_stage1_step(graphdef, rest, ref, opt, beta2=0.1)
  s = opt.init(params)

  def second_lp(p):
    lp = rl.policy_log_probs(nnx.merge(graphdef, p, rest), jnp.asarray(ep.second_tokens))
    return np.asarray((lp * ep.second_mask).sum(1))

  before = second_lp(params)
  for _ in range(5):
    params, s, _, kl = step1(params, s, ep.first_tokens, ep.first_mask, ep.second_tokens, ep.second_mask,
                             jnp.array([1.0, -1.0]))
  after = second_lp(params)
  assert after[0] > before[0] and after[1] < before[1] and float(kl) > 0


def test_settings_are_checked_naming_the_key():
  c = score_addition.get_config().rl
  score.check_settings(c)
  for key, value, match in (("group_size", 1, "rl.group_size"), ("stage1_steps", -1, "rl.stage1_steps"),
                            ("length", 20, "rl.length"), ("two_turn_share", 1.5, "rl.two_turn_share"),
                            ("prompts_per_step", 10**6, "rl.prompts_per_step")):
    bad = ml_collections.ConfigDict(c.to_dict())
    bad[key] = value
    with pytest.raises(ValueError, match=match):
      score.check_settings(bad)
  with pytest.raises(ValueError, match="rl.arm"):
    cfg = score_addition.smoke_config()
    cfg.rl.arm = "star"
    score.run(cfg, "/nonexistent")


def test_score_runner_smoke_reports_both_arms(tmp_path):
  c = score_addition.smoke_config()
  # one workdir: the second arm reads the first one's shared run (rl.share_runs is off: <workdir>/shared)
  out = {arm: score.run(ml_collections.ConfigDict({**c.to_dict(), "rl": {**c.rl.to_dict(), "arm": arm}}),
                        str(tmp_path)) for arm in score.ARMS}
  for arm, r in out.items():
    assert r["arm"] == arm and 0.0 <= r["acc_t1"] <= 1.0 and 0.0 <= r["acc_t2"] <= 1.0
    assert r["gain"] == pytest.approx(r["delta_i_to_c"] - r["delta_c_to_i"])
    assert r["gain_minus_base"] == pytest.approx(r["gain"] - r["base_gain"])
  assert len(out["score"]["log"]) == c.rl.stage1_steps + c.rl.stage2_steps
  assert [r["stage"] for r in out["score"]["log"]] == [1] * c.rl.stage1_steps + [2] * c.rl.stage2_steps
  assert out["sft_corrections"]["gain_minus_sft_corrections"] == 0.0
  assert set(out["score"]["after_stage1"]) == {"acc_t1", "acc_t2", "gain", "delta_i_to_c", "delta_c_to_i", "changed"}
  assert out["score"]["base_acc_t1"] == out["sft_corrections"]["base_acc_t1"]  # one shared base policy
