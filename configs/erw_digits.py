"""Embedded Representation Warmup (Liu et al., 2025) on scikit-learn's 8x8 digits: ERW vs a plain DiT.

    .venv/bin/python -m experiments.repro --claim=erw_faster_convergence --output=/tmp/erw.md
    make repro CLAIM=erw_faster_convergence

Not a training run of the harness: each arm is one `experiments.techniques.diffusion.erw.erw_runner` call
(its docstring has the steps). The DiT and EDM settings are the micro-budget runner's (2x2 patches: 16
tokens, width 64, 4 blocks, 4 heads, MLP ratio 2, no patch-mixer, no masking; sigma_data 0.75, P_mean -1.2,
P_std 1.2; Adam 1e-3 after clipping at 1, warm-up then cosine to a tenth; batch 32; 18-step Heun sampler,
50 samples per class). The encoder is `configs/vit_digits_encoder.py` (a ViT digits classifier, 2x2 patches,
width 64, 4 blocks, 400 steps), trained by the harness into each ERW run's ``encoder/`` folder and restored
by path. Both arms get the same total step budget, ``STEPS`` = 900; the ERW arm spends the first
``WARMUP`` = 300 of them on the warm-up (the README's command: 100k warm-up steps of 300k), so its warm-up
counts in the budget, as the paper's does. Layers, following the code's proportions for SiT-XL (warm-up on
the first 4 of 28 blocks, alignment at block 14 in the full phase): warm-up on the first block of 4,
alignment after block 2 in the full phase. Alignment weights: 0.5 in the warm-up (``--proj-coeff``), then
1.0 (the code's SiT-B coefficient) halved every 150 steps (the code: 50k of a 200k full phase, a quarter).
Projector hidden width 256 (the code: 2048 for width 1152). Thresholds declared before any run.
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.diffusion.erw import erw_runner

PAPER = ("Liu, Sun, Li, Lin, Efficient Generative Model Training via Embedded Representation Warmup, 2025, "
         "https://arxiv.org/abs/2504.10188 (code https://github.com/LINs-lab/ERW)")
RUNNER = erw_runner
STEPS, WARMUP = 900, 300


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.diffusion = ml_collections.ConfigDict({
      "patch_size": 2, "dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2, "mixer_depth": 0,
      "steps": STEPS, "batch": 32, "learning_rate": 1e-3, "sigma_data": 0.75, "p_mean": -1.2, "p_std": 1.2,
      "sample_steps": 18, "samples_per_class": 50, "classifier_steps": 400,
  })
  c.erw = ml_collections.ConfigDict({
      "enabled": True, "warmup_steps": WARMUP, "warmup_depth": 1, "align_depth": 2, "warmup_weight": 0.5,
      "initial_weight": 1.0, "half_life": 150.0, "projector_hidden": 256, "encoder_steps": 400,
      "encoder_depth": 4,
  })
  return c


def smoke_config():
  """A few steps of the same runner, ERW arm (tests/experiments/test_configs.py)."""
  c = get_config()
  c.diffusion.update(dim=16, depth=2, num_heads=2, steps=5, batch=8, sample_steps=2, samples_per_class=3,
                     classifier_steps=3)
  c.erw.update(warmup_steps=2, warmup_depth=1, align_depth=2, half_life=2.0, projector_hidden=8, encoder_steps=3,
               encoder_depth=1)
  return c


BASELINE = Arm("baseline", {"erw.enabled": False})
ERW = Arm("ERW", {})
SETTING = ("digits 8x8 in [-1, 1], class-conditional DiT (2x2 patches, width 64, 4 blocks, 4 heads, adaLN-Zero, no "
           "mixer or masking), EDM (sigma_data 0.75, P_mean -1.2, P_std 1.2), Adam 1e-3 (warm-up, cosine; a fresh "
           f"optimizer per ERW phase), batch 32, {STEPS} steps in total for both arms: ERW's {WARMUP} warm-up steps "
           "count in the budget (as the paper's). ERW: encoder = a harness-trained ViT digits classifier (2x2 "
           "patches, width 64, 4 blocks, 400 steps) restored by path, its final-normed patch tokens as targets; "
           "warm-up aligns embeddings + block 1 (clean input, weight 0.5); full phase aligns block 2 with weight "
           "1.0 halved every 150 steps; 3-layer SiLU projector (hidden 256). 18-step Heun sampler, 50 samples per "
           "class. Quality: Frechet distance of a digits MLP classifier's penultimate features (generated vs "
           "training digits; not FID).")
_REPORT = {"Frechet (clf. features)": "frechet_distance", "class acc. on samples": "conditional_accuracy",
           "final EDM loss": "final_loss", "wall s": "wall_seconds",
           # ERW's own columns (NaN, shown as a dash, for the baseline)
           "encoder test acc.": lambda r: r.get("encoder_test_accuracy", float("nan")),
           "final align loss": lambda r: r.get("final_align_loss", float("nan"))}


def get_claims():
  return [
      Claim(name="erw_faster_convergence", paper=PAPER,
            statement="Warming up the early layers on a pretrained encoder's representations, then training with a "
            "decaying alignment loss, converges much faster (40x faster than REPA on ImageNet 256).",
            setting=SETTING + " Metric: the classifier-feature Frechet distance at the fixed early budget (lower is "
            "better); declared: ERW below the baseline.", metric="frechet_distance",
            metric_name="Frechet distance (classifier features; not FID)",
            expects=[Expect("less", "ERW", "baseline")], arms=[BASELINE, ERW], get_config=get_config,
            runner=erw_runner, report=_REPORT),
  ]
