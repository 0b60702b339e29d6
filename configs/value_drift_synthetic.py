"""Value drift through SFT then DPO ("Value Drifts", Bhatia et al., 2025) on synthetic preference data.

    .venv/bin/python -m experiments.repro --claim=value_drift_sft_dominates --output=/tmp/drift.md
    make repro CLAIM=value_drift_sft_dominates     # also value_gap_moves_values

Not a training run of the harness: each arm is one `experiments.techniques.rl.value_drift_study.drift_runner` call;
both arms of a seed share one run (one SFT policy, the same DPO batches). A freshly initialised byte-level
`jaxdyn.models.Transformer` (width 64, 2 layers, 4 heads, MLP ratio 4) is first trained for 200 steps on
demonstrations answering each way half the time (a "base model" with no stance: a freshly initialised one prefers
an option by accident), then fine-tuned for 300 Adam steps (1e-3, batches of 64) on demonstrations of a
two-option value (prompts ``Q<id>?``, answers ``safe`` 80% / ``bold`` 20%),
then optimized by DPO (beta 0.1, Adam 1e-4, 300 steps of 64 pairs, the SFT policy the reference) on pairs that
contrast the two options: in the "no value gap" arm half of the pairs prefer ``safe`` (no net value, as the
paper's standard preference datasets, whose chosen and rejected answers hardly differ in stance), in the "value
gap" arm 20% do (a gap against the SFT value, as the paper's controlled synthetic dataset). The probe set (200
held-out prompt ids, both options scored by sequence log-probs) is recorded every 10 steps of both phases;
`jaxdyn.rl.value_drift` measures the drift path.

Sizing, before the claim was declared: only the stages before the compared arms were probed. Without the base
stage the fresh model's probe already gave the value 0.88 on seed 0, so the base stage was added; with it (seeds 0
and 1) the probe's value probability goes 0.49 / 0.54 -> about 0.80 after SFT (net drift 0.30 / 0.27) in 53 / 38 s,
while the path length over SFT is 1.2 / 1.6: the step-to-step jitter of minibatch training (about 0.04 per 10 steps)
adds up along the path. The claims are therefore declared on the drift magnitude of each phase (net total
variation from its first record to its last), and the path lengths are reported beside them.

Result (3 seeds, 2026-12-02, 6.9 minutes beside other runs): both hold. With no value gap SFT's drift magnitude is
0.287 and DPO's 0.043 (SFT's share 0.87; p(value) 0.80 after SFT, 0.79 at the end); with the gap DPO moves the
probe by 0.80, to p(value) = 5e-6: DPO does not stop at the data's 20% but at its optimum for a policy that
cannot tell the prompts apart, where the log-ratio of the two options moves by log(0.8 / 0.2) / beta = 13.9 nats
from the reference's (0.8 / 0.2 = 4 for the value), i.e. p(value) = 4 * 4^-10 / (1 + 4 * 4^-10) = 4e-6.
The path lengths tell the same story less sharply: the minibatch jitter of SFT (learning rate 1e-3) adds 1.1 to
SFT's path against 0.3 to DPO's (1e-4).

Declared before any run:
- ``value_drift_sft_dominates``: with no value gap in the preference data, SFT's drift magnitude is more than half
  of the two phases' together (``sft_net / (sft_net + po_net) > 0.5``) (the paper: "the SFT phase generally
  establishes a model's values, and subsequent preference optimization rarely re-aligns these values");
- ``value_gap_moves_values``: preference optimization moves the probe further (net total variation over the DPO
  phase) with a value gap in its data than without (the paper: preference optimization re-shapes values when its
  data holds a value gap).
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.rl.value_drift_study import drift_runner

PAPER = ("Bhatia, Nayak, Kamath, Mosbach, Stańczak, Shwartz, Reddy, Value Drifts: Tracing Value Alignment During "
         "LLM Post-Training, 2025, https://arxiv.org/abs/2510.26707")
RUNNER = drift_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.drift = ml_collections.ConfigDict({
      "arm": "no_gap", "share_runs": True,
      "model": {"dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 4},
      "base_steps": 200, "sft_pool": 4096, "sft_value_rate": 0.8, "sft_steps": 300, "sft_learning_rate": 1e-3,
      "batch": 64,
      "pref_pool": 4096, "no_gap_value_rate": 0.5, "gap_value_rate": 0.2, "dpo_steps": 300,
      "dpo_learning_rate": 1e-4, "beta": 0.1, "record_every": 10, "num_probes": 200,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.drift.update(share_runs=False, base_steps=2, sft_pool=16, sft_steps=4, batch=4, pref_pool=16, dpo_steps=4,
                 record_every=2, num_probes=4)
  c.drift.model.update(dim=16, depth=1, num_heads=2, mlp_ratio=2)
  return c


NO_GAP = Arm("DPO, no value gap", {"drift.arm": "no_gap"})
GAP = Arm("DPO, value gap", {"drift.arm": "gap"})
SETTING = ("A 2-layer width-64 byte-level Transformer, trained for 200 steps on demonstrations answering each way "
           "half the time (a base model with no stance), fine-tuned for 300 steps on demonstrations "
           "of a two-option value (80% 'safe', 20% 'bold'), then 300 DPO steps (beta 0.1, the SFT policy the "
           "reference, learning rate a tenth of SFT's) on pairs contrasting the two options, 50% of them preferring "
           "'safe' (no value gap) or 20% (a gap against the SFT value); a probe set of 200 held-out prompts recorded "
           "every 10 steps of both phases.")
_REPORT = {"SFT net": "sft_net", "PO net": "po_net", "SFT share of path": "sft_share_of_drift",
           "SFT path": "sft_drift", "PO path": "po_drift", "p(value) after SFT": "value_prob_after_sft",
           "p(value) end": "value_prob_end", "step 50%": "step_50"}


def get_claims():
  common = dict(paper=PAPER, get_config=get_config, arms=[NO_GAP, GAP], runner=drift_runner, report=_REPORT)
  return [
      Claim(name="value_drift_sft_dominates",
            statement="The SFT phase generally establishes a model's values; subsequent preference optimization "
            "rarely re-aligns them.",
            setting=SETTING + " Declared: with no value gap, SFT's drift magnitude (net total variation over the "
            "phase) is more than half of SFT's and DPO's together.",
            metric="sft_share_of_net", metric_name="SFT's share of the drift magnitude",
            expects=[Expect("above", "DPO, no value gap", value=0.5)], **common),
      Claim(name="value_gap_moves_values",
            statement="Preference optimization re-shapes values when its data holds a value gap.",
            setting=SETTING + " Declared: DPO's net drift of the probe is larger with a value gap than without.",
            metric="po_net", metric_name="net drift over DPO (mean total variation)",
            expects=[Expect("greater", "DPO, value gap", "DPO, no value gap")], **common),
  ]
