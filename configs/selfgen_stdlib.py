"""Self-generated tokens (Cen et al., TMLR 2025): batch-scheduled sampling against teacher forcing, on the stdlib.

    .venv/bin/python -m experiments.repro --claim=selfgen_free_running --output=/tmp/selfgen.md
    make repro CLAIM=selfgen_free_running

Not a training run of the harness: each arm is one `experiments.techniques.text.self_generated.self_generated_runner`
call; both arms of a seed share one run (the same rows, trained in lockstep). A byte-level
`jaxdyn.models.Transformer` (width 64, 2 layers, 4 heads, MLP ratio 4) is trained for 300 Adam steps (peak 3e-3,
cosine) on packed rows of 256 bytes (16 rows a step, document mask) of top-level pieces of standard-library files,
with teacher forcing or with Batch-Scheduled Sampling: inputs replaced by the model's own argmax tokens with
probability p, p a staircase of 4 stages from 0 to 0.25 ("batch" schedule, derived here from the abstract).
Evaluation: 128 prompts of 64 bytes from held-out files (at line starts), greedy continuation of 32 bytes against
the true continuation.

Declared before any run: ``selfgen_free_running``: scheduled sampling's free-running byte accuracy above teacher
forcing's.
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.text.self_generated import self_generated_runner

PAPER = ("Cen, Liu, Zeng, Chaudhari, Rangwala, Karypis, Fakoor, Bridging the Training-Inference Gap in LLMs by "
         "Leveraging Self-Generated Tokens, TMLR 2025, https://arxiv.org/abs/2410.14655")
RUNNER = self_generated_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict({"dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 4})
  c.data = ml_collections.ConfigDict({"seq_len": 256, "rows": 16, "pass_fraction": 1.1, "eval_prompts": 128,
                                      "prompt_len": 64, "continuation_len": 32})
  c.train = ml_collections.ConfigDict({"steps": 300, "learning_rate": 3e-3, "warmup": 30, "eval_every": 100})
  c.sampling = ml_collections.ConfigDict({"arm": "scheduled", "schedule": "batch", "p_max": 0.25, "stages": 4,
                                          "share_runs": True})
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.model.update(dim=16, depth=1, num_heads=2, mlp_ratio=2)
  c.data.update(seq_len=32, rows=2, eval_prompts=2, prompt_len=8, continuation_len=4)
  c.train.update(steps=4, warmup=1, eval_every=2)
  c.sampling.update(stages=2, share_runs=False)
  return c


TF = Arm("teacher forcing", {"sampling.arm": "teacher_forcing"})
SS = Arm("batch-scheduled sampling", {"sampling.arm": "scheduled"})
SETTING = ("Top-level pieces of Python standard-library files (bytes); a 2-layer width-64 causal Transformer, 300 "
           "Adam steps of 16 packed rows of 256 bytes (document mask), the arms trained in lockstep on the same "
           "rows. Scheduled sampling: inputs replaced by the model's own argmax tokens with probability p, a "
           "4-stage staircase from 0 to 0.25, targets unchanged. Metric: greedy continuations of 32 bytes after "
           "128 held-out 64-byte prompts, share of bytes equal to the true continuation.")
_REPORT = {"matched prefix (bytes)": "matched_prefix", "teacher-forced loss": "val_loss"}


def get_claim():
  return Claim(
      name="selfgen_free_running",
      paper=PAPER,
      statement="Training on the model's own generated tokens (batch-scheduled sampling) narrows the "
      "training-inference gap: better free-running generation than teacher forcing alone.",
      setting=SETTING + " Declared: scheduled sampling's free-running byte accuracy above teacher forcing's.",
      get_config=get_config, arms=[TF, SS], metric="free_running_accuracy",
      metric_name="free-running byte accuracy", expects=[Expect("greater", "batch-scheduled sampling",
                                                                 "teacher forcing")],
      runner=self_generated_runner, report=_REPORT)
