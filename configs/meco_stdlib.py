"""MeCo (Gao et al., ICML 2025): metadata conditioning then cooldown, against plain pre-training, on the stdlib.

    .venv/bin/python -m experiments.repro --claim=meco_fewer_tokens --output=/tmp/meco.md
    make repro CLAIM=meco_fewer_tokens

Not a training run of the harness: each arm is one `experiments.techniques.text.meco.meco_runner` call, and the
arms of a seed share one run (the same documents, trained in lockstep). A byte-level `jaxdyn.models.Transformer`
(width 64, 2 layers, 4 heads, MLP ratio 4) is trained on packed rows of 256 bytes (16 rows a step, 4,096 tokens,
document mask) of top-level pieces of standard-library files: plain for 300 steps; MeCo for 85% of them (255
steps: "package: <name>\\n\\n" before each piece, no loss on it, then plain rows for the last 10%, optimizer state
kept; its learning-rate schedule spans its own 255 steps); and MeCo for all 300 steps (reported). Adam, peak 3e-3,
30 warmup steps, cosine to 10%. Validation: 32 rows of held-out files' pieces, plain (no metadata), nats per byte.

Declared before any run: ``meco_fewer_tokens``: MeCo trained on 85% of the plain run's tokens ends with a
validation loss (plain text) no higher than the plain run's (the paper: the same quality with 33% less data).
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.text.meco import meco_runner

PAPER = ("Gao, Wettig, He, Dong, Malladi, Chen, Metadata Conditioning Accelerates Language Model Pre-training, "
         "ICML 2025, https://arxiv.org/abs/2501.01956")
RUNNER = meco_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict({"dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 4})
  c.data = ml_collections.ConfigDict({"seq_len": 256, "rows": 16, "pass_fraction": 1.1, "eval_rows": 32})
  c.train = ml_collections.ConfigDict({"steps": 300, "learning_rate": 3e-3, "warmup": 30, "eval_every": 30})
  c.meco = ml_collections.ConfigDict({"arm": "meco", "token_fraction": 0.85, "cooldown_fraction": 0.1,
                                      "share_runs": True})
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.model.update(dim=16, depth=1, num_heads=2, mlp_ratio=2)
  c.data.update(seq_len=32, rows=2, eval_rows=2)
  c.train.update(steps=4, warmup=1, eval_every=2)
  c.meco.share_runs = False
  return c


PLAIN = Arm("plain, 100% tokens", {"meco.arm": "plain"})
MECO = Arm("MeCo, 85% tokens", {"meco.arm": "meco"})
MECO_FULL = Arm("MeCo, 100% tokens", {"meco.arm": "meco_full"})
SETTING = ("Top-level pieces of Python standard-library files (bytes), metadata = the file's package; a 2-layer "
           "width-64 causal Transformer on packed rows of 256 bytes with the document mask, 4,096 tokens a step, "
           "Adam 3e-3 with warmup and cosine over each arm's own steps, the arms of a seed trained in lockstep. "
           "Plain: 300 steps. MeCo: 'package: <name>' prefixes without loss, then the last 10% of steps plain. "
           "Validation loss on held-out files' pieces without metadata (nats per byte).")
_REPORT = {"val loss": "val_loss", "val loss, true metadata": "val_loss_conditioned", "steps": "steps"}


def get_claim():
  return Claim(
      name="meco_fewer_tokens",
      paper=PAPER,
      statement="Metadata conditioning then cooldown (MeCo) matches standard pre-training's downstream quality "
      "with 33% less data, and the model works without metadata after the cooldown.",
      setting=SETTING + " Declared: MeCo at 85% of the tokens ends with a plain-text validation loss no higher "
      "than the plain run's at 100%.",
      get_config=get_config, arms=[PLAIN, MECO, MECO_FULL], metric="val_excess_over_plain",
      metric_name="final validation loss minus plain's (nats/byte)",
      expects=[Expect("below", "MeCo, 85% tokens", value=0.0)], runner=meco_runner, report=_REPORT)
