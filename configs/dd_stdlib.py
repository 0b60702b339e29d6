"""Dataset decomposition (Pouransari et al., NeurIPS 2024) against concat-and-chunk on the standard library's source.

    .venv/bin/python -m experiments.repro --claim=dd_fewer_attention_flops --output=/tmp/dd.md
    make repro CLAIM=dd_fewer_attention_flops     # also dd_less_wall_time, dd_no_worse_at_equal_tokens

Not a training run of the harness: each arm is one `experiments.techniques.text.decomposition.dd_runner` call,
and the three arms of a seed share one run (the same documents, the same validation rows, trained in lockstep so
that the machine's load slows them alike). A byte-level `jaxdyn.models.Transformer` (width 64, 2 layers, 4 heads,
MLP ratio 4, causal, RoPE) is trained for 240 Adam steps of 2,048 tokens (peak 3e-3, 24 warmup steps, cosine to
10%) three ways: concat-and-chunk into rows of 1,024 bytes without the document mask (the baseline), the same with
it, and dataset decomposition (buckets of 32 .. 1,024 bytes, Grow-P2 curriculum over 4 cycles, variable batch
size at constant tokens per step). Documents are top-level pieces of standard-library files (see the runner's
docstring for why not whole files). Validation: 24 rows of 1,024 bytes of the validation split's pieces with the
document mask, every 30 steps.

Declared before any run:
- ``dd_fewer_attention_flops``: dataset decomposition reaches the baseline's final validation loss having spent
  fewer attention FLOPs (the fraction of the baseline's total, at the first evaluation at or below it);
- ``dd_less_wall_time``: the same in train-step seconds (compiles excluded: decomposition compiles one step per
  bucket);
- ``dd_no_worse_at_equal_tokens``: decomposition's final validation loss at most 0.02 nats per byte above the
  baseline's at the same tokens.
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.text.decomposition import dd_runner

PAPER = ("Pouransari, Li, Chang, Vasu, Koc, Shankar, Tuzel, Dataset Decomposition: Faster LLM Training with "
         "Variable Sequence Length Curriculum, NeurIPS 2024, https://arxiv.org/abs/2405.13226")
RUNNER = dd_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict({"dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 4})
  c.data = ml_collections.ConfigDict({"kmin": 5, "kmax": 10, "tokens_per_step": 2048, "curriculum": "grow_p2",
                                      "cycles": 4, "pass_fraction": 1.1, "eval_rows": 24})
  c.train = ml_collections.ConfigDict({"steps": 240, "learning_rate": 3e-3, "warmup": 24, "eval_every": 30})
  c.dd = ml_collections.ConfigDict({"method": "dd", "share_runs": True})
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.model.update(dim=16, depth=1, num_heads=2, mlp_ratio=2)
  c.data.update(kmin=3, kmax=5, tokens_per_step=64, cycles=1, eval_rows=4)
  c.train.update(steps=4, warmup=1, eval_every=2)
  c.dd.share_runs = False
  return c


CONCAT = Arm("concat-and-chunk", {"dd.method": "concat"})
CONCAT_MASK = Arm("concat + document mask", {"dd.method": "concat_mask"})
DD = Arm("dataset decomposition", {"dd.method": "dd"})
SETTING = ("Top-level pieces of Python standard-library files as documents (bytes); a 2-layer width-64 causal "
           "Transformer, 240 Adam steps of 2,048 tokens (peak 3e-3, cosine), the arms of a seed trained in "
           "lockstep on the same documents. Concat-and-chunk: rows of 1,024 bytes (with and without the "
           "document mask). Dataset decomposition: buckets 32 .. 1,024 bytes, Grow-P2 over 4 cycles. Validation "
           "loss (nats per byte) on 24 rows of held-out files' pieces with the document mask, every 30 steps.")
_REPORT = {"val loss": "val_loss", "attention FLOPs / concat's": "attention_flops_ratio",
           "FLOPs to concat's loss": "flops_to_concat_loss", "seconds to concat's loss": "seconds_to_concat_loss",
           "step s": "step_seconds", "compile s": "compile_seconds"}


def get_claims():
  common = dict(paper=PAPER, get_config=get_config, arms=[CONCAT, CONCAT_MASK, DD], runner=dd_runner,
                report=_REPORT)
  return [
      Claim(name="dd_fewer_attention_flops",
            statement="Training on dataset-decomposed variable-length sequences reaches the concat-and-chunk "
            "baseline's quality with fewer attention FLOPs (target accuracy up to 3x faster).",
            setting=SETTING + " Declared: decomposition reaches the baseline's final validation loss having spent "
            "a smaller fraction of the baseline's total attention FLOPs.",
            metric="flops_to_concat_loss", metric_name="attention FLOPs to reach concat's final loss (fraction)",
            expects=[Expect("less", "dataset decomposition", "concat-and-chunk")], **common),
      Claim(name="dd_less_wall_time",
            statement="Dataset decomposition reaches the baseline's quality in less training time.",
            setting=SETTING + " Declared: decomposition reaches the baseline's final validation loss in fewer "
            "train-step seconds (compiles excluded), as a fraction of the baseline's total.",
            metric="seconds_to_concat_loss", metric_name="step seconds to reach concat's final loss (fraction)",
            expects=[Expect("less", "dataset decomposition", "concat-and-chunk")], **common),
      Claim(name="dd_no_worse_at_equal_tokens",
            statement="At the same number of training tokens, dataset decomposition's model is no worse than "
            "concat-and-chunk's.",
            setting=SETTING + " Declared: decomposition's final validation loss at most 0.02 nats per byte above "
            "the baseline's.",
            metric="val_excess_over_concat", metric_name="final validation loss minus concat's (nats/byte)",
            expects=[Expect("below", "dataset decomposition", value=0.02)], **common),
  ]
