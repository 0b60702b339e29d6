"""The HAPO claim runner's pieces: SFT batches, reading completions, the RL step's effect on the reward."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs import hapo_addition
from experiments.techniques.rl import addition, hapo
from jaxdyn import rl
from jaxdyn.data import BOS_ID, EOS_ID, PAD_ID


def test_completions_stop_at_the_end_token_and_at_special_ids():
  plen = 3
  rows = np.array([[BOS_ID, 49, 61, 35, 51, EOS_ID, 52],
                   [BOS_ID, 49, 61, 35, 51, 52, 53],
                   [BOS_ID, 49, 61, 35, PAD_ID, 51, EOS_ID]])
  assert addition.completions_of(rows, plen) == [b"#3", b"#345", b"#"]


def test_sft_batches_mix_verbosities_and_errors_with_loss_on_completions_only():
  c = hapo_addition.get_config().rl
  c.sft_batch = 2000
  b = addition.sft_batch(c, np.random.default_rng(0))
  plen = 1 + len(rl.format_prompt(0, 0, digits=c.digits))
  assert b["weights"][:, :plen - 1].sum() == 0  # no target inside the prompt
  rows = np.concatenate([b["inputs"][:, :1], b["targets"]], axis=1)
  comps = addition.completions_of(rows, plen)
  prompts = [bytes(r[1:plen].astype(np.uint8)) for r in rows]
  n_targets = b["weights"].sum(1)
  assert np.array_equal(n_targets, [len(x) + 1 for x in comps])  # the completion and its end token
  steps = np.array([x.count(b";") > 0 for x in comps]), np.array([x.count(b",") > 0 for x in comps])
  long_share, sums_share = steps[0].mean(), (steps[1] & ~steps[0]).mean()
  assert abs(long_share - 0.5) < 0.04 and abs(sums_share - 0.3) < 0.04
  wrong = 1 - np.mean([rl.verify(p, x) for p, x in zip(prompts, comps)])
  assert abs(wrong - c.error_rate) < 0.02


def test_hapo_runner_smoke_reports_both_arms(tmp_path):
  c = hapo_addition.smoke_config()
  out = {arm: hapo.run(ml_collections.ConfigDict({**c.to_dict(), "rl": {**c.rl.to_dict(), "arm": arm}}),
                       str(tmp_path / arm)) for arm in hapo.ARMS}
  for arm, r in out.items():
    assert 0.0 <= r["accuracy"] <= 1.0 and r["mean_length"] <= c.rl.max_new_tokens
    assert len(r["log"]) == c.rl.rl_steps and r["arm"] == arm
  assert out["correctness"]["length_ratio_to_correctness"] == 1.0


def test_rl_arm_resumes_from_its_checkpoint_with_the_same_history_and_results(tmp_path, monkeypatch):
  c = hapo_addition.smoke_config().rl
  c.update(rl_steps=4, num_prompts=4)
  monkeypatch.setattr(hapo, "CHECKPOINT_EVERY", 2)
  sft, _ = addition.train_sft(c, 0)
  graphdef, state = nnx.split(sft)

  def fresh():
    return nnx.merge(graphdef, jax.tree.map(jnp.copy, state))

  whole = fresh()
  expected = hapo.train_rl(whole, sft, c, "hapo", 0, tmp_path / "whole")
  real_sample, calls = addition.sample, []

  def crash_on_the_fourth_step(*args, **kwargs):
    calls.append(1)
    if len(calls) == 4:
      raise RuntimeError("crash at step 4")
    return real_sample(*args, **kwargs)

  monkeypatch.setattr(addition, "sample", crash_on_the_fourth_step)
  with pytest.raises(RuntimeError, match="crash at step 4"):
    hapo.train_rl(fresh(), sft, c, "hapo", 0, tmp_path / "crashed")
  monkeypatch.setattr(addition, "sample", real_sample)
  resumed = fresh()
  log = hapo.train_rl(resumed, sft, c, "hapo", 0, tmp_path / "crashed")  # restarts at step 2
  assert log == expected
  for a, b in zip(jax.tree.leaves(nnx.state(resumed, nnx.Param)), jax.tree.leaves(nnx.state(whole, nnx.Param))):
    np.testing.assert_array_equal(a, b)
