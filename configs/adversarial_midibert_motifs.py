"""Adversarial-MidiBERT (Zhao, 2024) on a synthetic motif task with a spurious marker token: adversarial vs random
masked-LM pre-training, with and without mask fine-tuning, tested where the marker's correlation is broken.

    .venv/bin/python -m experiments.repro --claim=adversarial_masking_reduces_bias --output=/tmp/adv.md
    make repro CLAIM=adversarial_masking_reduces_bias

Not a training run of the harness: each arm is one `experiments.techniques.text.adversarial_masking` runner call,
and the four arms of a seed share one run (one pre-trained encoder per masking rule, one data draw). The task
(a generator written there): rows of 30 tokens, a 3-token motif over 16 content ids repeated, 10% of positions
replaced by uniform noise, one position holding a marker (one of 2 ids); label = whether at least 2 of the 3
motif tokens are in the lower half of the ids. The marker is independent of everything in the 4,096 pre-training
rows, agrees with the label 90% of the time in the 256 fine-tuning rows (a shortcut), and is independent of the
label in the 2,000 bias-broken test rows (the metric). Encoder: bidirectional `jaxdyn.models.Transformer` (width
64, 2 blocks, 4 heads, MLP ratio 2), 400 Adam steps of batch 64 (lr 1e-3) of masked-LM pre-training; random
masking (15%, 80/10/10) or the adversarial masker (top-k of a sigmoid head on the shared encoder, U(0.1, 0.3) of
the available positions capped at 15%, masker regression loss, mask book updated every 50 steps); then 150 Adam
steps of batch 32 (lr 5e-4) fine-tuning every weight with a mean-pooled linear head, with mask fine-tuning at 15%
or without. Declared before any run: adversarial pre-training + mask fine-tuning gives a higher bias-broken test
accuracy than random masking (+ plain fine-tuning, the standard recipe). The two other arms separate the
contributions of the pre-training and of mask fine-tuning.

Sizing: settings fixed before the claim ran (only the smoke config was run before); not resized. `experiments.repro`
(3 seeds, 2026-12-01, 2 cores shared with four other jobs, load 8-13) took 12.6 min wall for 4.0 min of CPU time
(about 70-90 s per seed alone). Result: the declared direction does NOT hold: bias-broken accuracy 0.927 +- 0.011
(adversarial + mask FT) vs 0.937 +- 0.026 (random MLM); random + mask FT 0.935 +- 0.038, adversarial alone
0.937 +- 0.006: every arm within the seed spread (the marker reliance, accuracy where the marker agrees minus where
it contradicts, is 0.08-0.12 in every arm). The mechanism runs as written but barely reaches the marker: by the end
62% of the positions are frozen in the mask book (the code's schedule freezes 10-30% of the available tokens per
update and unfreezes only 0-10%), so the masker selects 2.77 positions per row (9.2%) instead of 4; the marker is
selected in 11.0% of the rows (random: 13.1%), i.e. *more* often than an average position under the adversarial
rule, and noise positions 11.2%. At this scale (400 steps) the masker does not single out the context-free tokens.
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.text.adversarial_masking import adversarial_masking_runner

PAPER = ("Zhao, Adversarial-MidiBERT: Symbolic Music Understanding Model Based on Unbias Pre-training and Mask "
         "Fine-tuning, 2024, https://arxiv.org/abs/2407.08306")
RUNNER = adversarial_masking_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = ml_collections.ConfigDict({"content": 16, "motif": 3, "length": 30, "noise": 0.1, "bias": 0.9})
  c.model = ml_collections.ConfigDict({"dim": 64, "depth": 2, "num_heads": 4, "mlp_ratio": 2})
  c.pretrain = ml_collections.ConfigDict({
      "masking": "adversarial", "examples": 4096, "steps": 400, "batch": 64, "learning_rate": 1e-3,
      "book_every": 50, "share_runs": True,
  })
  c.finetune = ml_collections.ConfigDict({
      "mask_rate": 0.15, "mask_rates": (0.0, 0.15), "examples": 256, "test_examples": 2000, "steps": 150,
      "batch": 32, "learning_rate": 5e-4,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.model.update(dim=16, depth=1, num_heads=2)
  c.pretrain.update(examples=64, steps=4, batch=8, book_every=2, share_runs=False)
  c.finetune.update(examples=16, test_examples=16, steps=3, batch=8)
  return c


RANDOM = Arm("random MLM", {"pretrain.masking": "random", "finetune.mask_rate": 0.0})
RANDOM_MFT = Arm("random MLM + mask FT", {"pretrain.masking": "random", "finetune.mask_rate": 0.15})
ADV = Arm("adversarial", {"pretrain.masking": "adversarial", "finetune.mask_rate": 0.0})
ADV_MFT = Arm("adversarial + mask FT", {"pretrain.masking": "adversarial", "finetune.mask_rate": 0.15})
SETTING = ("synthetic rows of 30 tokens: a 3-token motif over 16 ids repeated, 10% uniform noise, one marker token "
           "(2 ids) at a random position; label = majority of the motif's tokens in the lower half. Marker independent "
           "in 4,096 pre-training rows, equal to the label in 90% of 256 fine-tuning rows, independent in the 2,000 "
           "bias-broken test rows. Bidirectional Transformer (width 64, 2 blocks, 4 heads), 400 steps x 64 rows of "
           "masked-LM pre-training: random 15% (80/10/10) or the adversarial masker (top-k of a sigmoid head on the "
           "shared encoder, U(0.1, 0.3) of available positions capped at 15%, masker regression loss, mask book every "
           "50 steps); 150 steps x 32 rows of fine-tuning (mean-pooled linear head, all weights), mask fine-tuning "
           "15% or none.")
_REPORT = {"in-dist. acc.": "in_distribution_accuracy", "marker reliance": "marker_reliance",
           "marker mask rate": "marker_mask_rate", "noise mask rate": "noise_mask_rate",
           "frozen share": "frozen_share", "MLM loss": "pretrain_loss_last", "wall s": "wall_seconds"}


def get_claim():
  return Claim(
      name="adversarial_masking_reduces_bias",
      paper=PAPER,
      statement="Pre-training with an adversarial masker that keeps bias-carrying (context-free) tokens out of "
      "masking, and fine-tuning with masked inputs, reduce the bias a masked-LM passes to its downstream tasks.",
      setting=SETTING + " Declared: adversarial + mask FT has a higher bias-broken test accuracy than random MLM.",
      get_config=get_config, arms=[RANDOM, RANDOM_MFT, ADV, ADV_MFT], metric="bias_broken_accuracy",
      metric_name="accuracy on the bias-broken test set",
      expects=[Expect("greater", "adversarial + mask FT", "random MLM")], runner=adversarial_masking_runner,
      report=_REPORT)
