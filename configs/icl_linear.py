"""In-context linear regression with one layer of multi-head softmax attention (He, Pan, Chen & Yang, 2025).

    make repro CLAIM=icl_multihead_beats_single_head
    make repro CLAIM=icl_matches_debiased_gd
    make repro CLAIM=icl_ov_weights_sum_to_zero
    make repro CLAIM=icl_extra_heads_are_dummies

Not a training run of the harness: each claim arm is one `experiments.techniques.attention.icl_runner`
call (``config.icl`` below), which trains `jaxdyn.attention.train_icl` with H heads on fresh tasks
every step (x, x_q ~ N(0, I_5), beta ~ N(0, I_5 / 5), noise variance 0.1, L = 40 context pairs, batch
256, Adam 1e-3) and measures it on 20,000 fresh tasks. The paper trains for 500k steps; 20k here
(about 40 s a run on 2 cores). Settings were declared before any run.
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.attention import icl_runner

HEADS = (1, 2, 4, 8)
PAPER = ("He, Pan, Chen & Yang, In-Context Linear Regression Demystified: Training Dynamics and Mechanistic "
         "Interpretability of Multi-Head Softmax Attention, ICML 2025, https://arxiv.org/abs/2503.12734")
SETTING = ("One-layer multi-head softmax attention, d = 5, L = 40, noise variance 0.1, fresh tasks every step, "
           "batch 256, Adam 1e-3, 20,000 steps (the paper: 500k); measured on 20,000 fresh tasks per seed.")
RUNNER = icl_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.icl = ml_collections.ConfigDict({
      "num_heads": 2, "d": 5, "context": 40, "noise_var": 0.1, "steps": 20_000, "batch": 256,
      "learning_rate": 1e-3, "log_every": 500, "test_tasks": 20_000,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.icl.update(num_heads=4, steps=6, batch=8, log_every=3, test_tasks=64)
  return c


def _arms(heads):
  return [Arm(f"H={h}", {"icl.num_heads": h}) for h in heads]


_REPORT = {"debiased GD MSE": "debiased_gd_mse", "GD MSE": "gd_mse", "Bayes MSE": "bayes_mse",
           "R2 vs debiased GD": "r2_debiased_gd", "OV sum ratio": "ov_sum_ratio"}


def get_claims():
  common = dict(paper=PAPER, get_config=get_config, runner=icl_runner)
  return [
      Claim(name="icl_multihead_beats_single_head",
            statement="Multi-head attention outperforms single-head attention in test error.",
            setting=SETTING + " Metric: test MSE.", arms=_arms(HEADS), metric="test_mse",
            metric_name="test MSE", expects=[Expect("less", f"H={h}", "H=1") for h in HEADS[1:]],
            report=_REPORT, **common),
      Claim(name="icl_matches_debiased_gd",
            statement="The trained multi-head model approximately implements a debiased gradient-descent predictor.",
            setting=SETTING + " Metric: R^2 of debiased GD (step fitted to the model's outputs) against the "
            "model's predictions on fresh tasks; declared threshold 0.9.",
            arms=_arms(HEADS[1:]), metric="r2_debiased_gd", metric_name="R2 vs debiased GD",
            expects=[Expect("above", f"H={h}", value=0.9) for h in HEADS[1:]],
            report={"test MSE": "test_mse", "debiased GD MSE": "debiased_gd_mse", "step": "model_gd_step"},
            **common),
      Claim(name="icl_ov_weights_sum_to_zero",
            statement="The output-value weights are last-entry only and sum to zero across heads.",
            setting=SETTING + " Metric: the OV sum ratio, abs(sum_h OV_h) / sum_h abs(OV_h) over the heads' OV "
            "last entries; declared threshold 0.1.",
            arms=_arms(HEADS[1:]), metric="ov_sum_ratio", metric_name="OV sum ratio",
            expects=[Expect("below", f"H={h}", value=0.1) for h in HEADS[1:]],
            report={"test MSE": "test_mse"}, **common),
      Claim(name="icl_extra_heads_are_dummies",
            statement="With more than two heads, the heads beyond two act as near-dummies (small OV weights).",
            setting=SETTING + " Metric: the share of sum_h |OV_h| outside the two largest heads; declared "
            "threshold 0.2.",
            arms=_arms(HEADS[2:]), metric="extra_head_share", metric_name="OV share beyond 2 heads",
            expects=[Expect("below", f"H={h}", value=0.2) for h in HEADS[2:]],
            report={"test MSE": "test_mse", "OV sum ratio": "ov_sum_ratio"}, **common),
  ]
