"""The value-drift claim runner's pieces: SFT batches, the per-phase drift summary, a smoke run of both arms."""

import ml_collections
import numpy as np
import pytest

from configs import value_drift_synthetic
from experiments.techniques.rl import value_drift_study as vd
from jaxdyn import rl


def _binary(*p):
  return [np.stack([np.asarray(x, np.float32), 1 - np.asarray(x, np.float32)], -1) for x in p]


def test_drift_summary_splits_the_path_and_the_magnitude_at_the_end_of_sft():
  # two probes; SFT records at steps 0, 10, 20 (its end), DPO records at 30, 40
  probs = _binary([0.5, 0.5], [0.9, 0.7], [0.8, 0.8], [0.8, 0.6], [0.7, 0.8])
  out = vd.drift_summary([0, 10, 20, 30, 40], probs, sft_end=20)
  # per-interval mean TV: 0.3, 0.1, 0.1, 0.15
  assert out["sft_drift"] == pytest.approx(0.4) and out["po_drift"] == pytest.approx(0.25)
  assert out["drift_total"] == pytest.approx(0.65)
  assert out["sft_share_of_drift"] == pytest.approx(0.4 / 0.65)
  assert out["sft_net"] == pytest.approx(0.3) and out["po_net"] == pytest.approx(0.05)
  assert out["sft_share_of_net"] == pytest.approx(0.3 / 0.35)
  assert out["step_50"] == 20 and out["step_90"] == 40  # cumulative 0.3, 0.4, 0.5, 0.65
  assert out["value_prob_after_sft"] == pytest.approx(0.8) and out["value_prob_end"] == pytest.approx(0.75)


def test_sft_batches_carry_the_value_rate_and_loss_on_the_answer_only():
  c = value_drift_synthetic.get_config().drift
  c.batch = 4096
  b = next(vd.sft_batches(c, 0, 0.8))
  safe = b["targets"][:, rl.value_probes(1).prompt_len - 1] == ord("s")
  assert abs(safe.mean() - 0.8) < 0.02
  assert np.array_equal(b["weights"].sum(1), np.full(c.batch, 5))  # 4 answer bytes and the end token
  assert b["weights"][:, :rl.value_probes(1).prompt_len - 1].sum() == 0


def test_smoke_run_reports_both_arms_from_one_sft_policy(tmp_path):
  c = value_drift_synthetic.smoke_config()
  out = {arm: vd.run(ml_collections.ConfigDict({**c.to_dict(), "drift": {**c.drift.to_dict(), "arm": arm}}),
                     str(tmp_path / arm)) for arm in vd.ARMS}
  assert out["gap"]["value_rate"] == 0.2 and out["no_gap"]["value_rate"] == 0.5
  # both arms start from the same SFT records
  n_sft = sum(s <= c.drift.sft_steps for s in out["gap"]["probe_steps"])
  assert out["gap"]["probe_value_prob"][:n_sft] == out["no_gap"]["probe_value_prob"][:n_sft]
  assert out["gap"]["probe_steps"][-1] == c.drift.sft_steps + c.drift.dpo_steps
  for r in out.values():
    assert 0 <= r["sft_share_of_net"] <= 1 and r["drift_total"] >= r["net"] - 1e-6


def test_unknown_arm_is_refused(tmp_path):
  c = value_drift_synthetic.smoke_config()
  c.drift.arm = "both"
  with pytest.raises(ValueError, match="drift.arm"):
    vd.run(c, str(tmp_path))
