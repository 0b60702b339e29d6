"""The M-STaR claim runner's pieces: answer lengths and finished answers, verdicts, the loop's data and step."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from configs import mstar_addition
from experiments.techniques.rl import addition, mstar
from experiments.techniques.text import lm
from jaxdyn import rl
from jaxdyn.data import BOS_ID, EOS_ID, PAD_ID


def test_answer_lengths_and_finished_read_the_first_end_token():
  plen = 3
  rows = np.array([[BOS_ID, 49, 61, 35, 51, EOS_ID, 52],  # finished after 2 bytes
                   [BOS_ID, 49, 61, 35, 51, 52, 53],  # never ends
                   [BOS_ID, 49, 61, 35, PAD_ID, EOS_ID, EOS_ID]])  # a PAD before the end: not finished
  assert mstar.answer_lengths(rows, plen).tolist() == [6, 7, 6]
  assert mstar.finished(rows, plen).tolist() == [True, False, False]


def test_verdicts_need_the_right_answer_and_its_end_token():
  prompt = rl.format_prompt(12, 30, digits=2)
  plen = addition.prompt_len(2)
  right = rl.encode([prompt], [b"#42"], length=plen + 6)
  wrong = rl.encode([prompt], [b"#43"], length=plen + 6)
  cut = right.copy()
  cut[0, plen + 3:] = ord("2")  # "#422..." without an end token
  cut2 = right.copy()
  cut2[0, plen + 3:] = [ord("#"), ord("4"), ord("2")]  # "#42#42": right answer, but never finished
  got = mstar.verdicts([prompt] * 4, np.concatenate([right, wrong, cut, cut2]), plen)
  assert got.tolist() == [True, False, False, False]


def test_sft_step_raises_the_selected_answers_likelihood_and_ignores_the_rest():
  c = mstar_addition.smoke_config().rl
  model = lm.make_model(c.model, 0)
  plen = addition.prompt_len(c.digits)
  prompts = [rl.format_prompt(1, 2, digits=c.digits), rl.format_prompt(3, 4, digits=c.digits)]
  tokens = jnp.asarray(rl.encode(prompts, [b"#3", b"#9"], length=plen + 4))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  step = mstar.make_sft_step(graphdef, rest, optax.sgd(0.5), prompt_len=plen)
  mask = rl.completion_mask(tokens, plen)

  def seq_lp(p):
    return np.asarray(jnp.sum(rl.policy_log_probs(nnx.merge(graphdef, p, rest), tokens) * mask, axis=1))

  before = seq_lp(params)
  new, _, loss = step(params, optax.sgd(0.5).init(params), tokens, jnp.array([1.0, 0.0]))
  after = seq_lp(new)
  assert np.isclose(float(loss), -before[0] / float(mask[0].sum()), rtol=1e-5)  # NLL per token of row 0 only
  assert after[0] > before[0] + 0.1
  _, _, zero = step(params, optax.sgd(0.5).init(params), tokens, jnp.zeros(2))
  assert float(zero) == 0.0  # nothing selected: no loss


def test_settings_are_checked_with_the_key_named():
  c = mstar_addition.smoke_config().rl
  for key, value, match in [("interval", 100, "rl.num_prompts"), ("top_k", 9, "rl.top_k"),
                            ("temperatures", (1.0, 0.5), "temperatures"), ("fixed_temperature", 0.0,
                                                                            "rl.fixed_temperature")]:
    bad = ml_collections.ConfigDict(c.to_dict())
    bad[key] = value
    with pytest.raises(ValueError, match=match):
      mstar.check_settings(bad)


def test_mstar_runner_smoke_reports_every_arm(tmp_path):
  c = mstar_addition.smoke_config()
  out = {arm: mstar.run(ml_collections.ConfigDict({**c.to_dict(), "rl": {**c.rl.to_dict(), "arm": arm}}),
                        str(tmp_path / arm)) for arm in mstar.ARMS}
  for arm, r in out.items():
    assert 0.0 <= r["accuracy"] <= 1.0 and r["arm"] == arm
  assert out["pre_evolved"]["accuracy"] == out["pre_evolved"]["sft_accuracy"]
  assert out["pre_evolved"]["accuracy_minus_pre_evolved"] == 0.0 and out["fixed"]["accuracy_minus_fixed"] == 0.0
  for arm in ("fixed", "auto"):
    r = out[arm]
    assert len(r["log"]) == c.rl.evolve_steps
    assert len(r["regenerations"]) == -(-c.rl.evolve_steps // c.rl.interval)
    for g in r["regenerations"]:
      assert g["temperature"] in c.rl.temperatures or g["temperature"] == c.rl.fixed_temperature
      assert len(g["reward_pass_at_2"]) == (len(c.rl.temperatures) if arm == "auto" else 1)
      # at most top_k answers of each prompt are kept
      assert g["selected_share"] <= c.rl.top_k / c.rl.group_size + 1e-9
  assert all(g["temperature"] == c.rl.fixed_temperature for g in out["fixed"]["regenerations"])
  assert out["fixed"]["rm_examples"] == len(c.rl.temperatures) * c.rl.num_prompts
