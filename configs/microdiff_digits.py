"""Micro-budget diffusion (Sehwag et al., 2024) on scikit-learn's 8x8 digits: deferred masking vs plain masking.

    .venv/bin/python -m experiments.repro --claim=microdiff_mask_cuts_flops --output=/tmp/microdiff.md
    make repro CLAIM=microdiff_mixer_beats_plain_masking

Not a training run of the harness: each arm is one `experiments.techniques.diffusion.micro.micro_runner`
call. A class-conditional `jaxdyn.models.DiT` (2x2 patches: 16 tokens, width 64, 4 backbone blocks,
4 heads, MLP ratio 2) is trained as an EDM denoiser on the 1,437 training digits in [-1, 1]
(sigma_data 0.75, the data's standard deviation; P_mean -1.2, P_std 1.2), with Adam, and sampled
with the 18-step Heun sampler. Arms: unmasked with a 1-block patch-mixer (the FLOPs reference);
75% of the patches masked with the patch-mixer before the mask (deferred masking); 75% masked without
a mixer. Both masked arms end with an unmasked fine-tune of a tenth of their steps. Quality: the
Frechet distance between Gaussian fits of a digits MLP classifier's 64-d penultimate features of
500 generated digits (50 per class) and of the training digits (not FID), and that classifier's accuracy
on the generated digits of each requested class. Thresholds declared before any run.

Sizing: an exploratory trial at batch 64 with 300 + 30 steps left class accuracy on samples at chance;
the claim sizes (1000 + 100 steps at batch 32) fit the budget: `experiments.repro` (3 seeds, 2026-12-01,
2 shared cores) took 6.5 min for the FLOPs claim and 2.6 more for the quality claim (shared runs cached).
Result: FLOPs cut 2.09 with the mixer (2.87 without); Frechet distance 18.1 +- 1.5 unmasked,
24.1 +- 1.2 deferred masking, 24.5 +- 1.6 plain masking: the declared direction holds but the gap is
within the seed spread, and class accuracy on samples (0.31 unmasked, 0.14-0.15 masked) shows every arm
is still far from converged at this budget. More steps are the lever before reading anything into it.
At equal training FLOPs (``microdiff_deferred_beats_downscaled``, declared before it ran: an unmasked DiT of
width 48 with 3 backbone blocks, 3.08e11 FLOPs against deferred masking's 3.14e11) the downscaled model
is better here (21.4 +- 0.9 against 24.1 +- 1.2): the paper's comparison does not hold at this budget.
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.diffusion.micro import micro_runner

PAPER = ("Sehwag, Kong, Li, Spranger, Lyu, Stretching Each Dollar: Diffusion Training from Scratch on a "
         "Micro-Budget, 2024, https://arxiv.org/abs/2407.15811")
RUNNER = micro_runner
STEPS, FINETUNE = 1000, 100


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.diffusion = ml_collections.ConfigDict({
      "patch_size": 2, "dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2, "mixer_depth": 1,
      "mask_ratio": 0.75, "steps": STEPS, "finetune_steps": FINETUNE, "batch": 32, "learning_rate": 1e-3,
      "sigma_data": 0.75, "p_mean": -1.2, "p_std": 1.2, "sample_steps": 18, "samples_per_class": 50,
      "classifier_steps": 400,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.diffusion.update(dim=16, depth=1, num_heads=2, steps=3, finetune_steps=2, batch=8, sample_steps=2,
                     samples_per_class=3, classifier_steps=3)
  return c


UNMASKED = Arm("unmasked + mixer", {"diffusion.mask_ratio": 0.0, "diffusion.finetune_steps": 0,
                                    "diffusion.steps": STEPS + FINETUNE})
DEFERRED = Arm("75% masked + mixer", {})
PLAIN = Arm("75% masked, no mixer", {"diffusion.mixer_depth": 0})
# The paper's comparison at equal training cost: an unmasked model scaled down (width 48, 3 backbone blocks
# + the mixer) to at most the deferred-masking arm's training FLOPs (about 0.45x the reference's, against
# deferred masking's 0.48x: XLA's counts are in the report).
DOWNSCALED = Arm("unmasked, downscaled", {"diffusion.mask_ratio": 0.0, "diffusion.finetune_steps": 0,
                                          "diffusion.steps": STEPS + FINETUNE, "diffusion.dim": 48,
                                          "diffusion.depth": 3})
SETTING = ("digits 8x8 in [-1, 1], class-conditional DiT (2x2 patches, width 64, 4 backbone blocks, 4 heads, "
           "adaLN-Zero), EDM (sigma_data 0.75, P_mean -1.2, P_std 1.2), Adam 1e-3 (warm-up, cosine), batch 32, "
           f"{STEPS} masked steps then {FINETUNE} unmasked fine-tuning steps ({STEPS + FINETUNE} unmasked steps for "
           "the reference), 18-step Heun sampler, 50 samples per class. Training FLOPs from XLA's cost analysis of "
           "the compiled train steps. Quality: Frechet distance of a digits MLP classifier's penultimate features "
           "(generated vs training digits; not FID).")
_REPORT = {"Frechet (clf. features)": "frechet_distance", "class acc. on samples": "conditional_accuracy",
           "train FLOPs": "flops", "FLOPs cut": "flops_ratio", "final loss": "final_loss", "wall s": "wall_seconds"}


def get_claims():
  common = dict(paper=PAPER, get_config=get_config, runner=micro_runner, report=_REPORT)
  return [
      Claim(name="microdiff_mask_cuts_flops",
            statement="Masking 75% of the patches (with the patch-mixer on all patches before the mask) cuts the "
            "training cost substantially.",
            setting=SETTING + " Metric: unmasked training FLOPs / the arm's training FLOPs; declared: at least 2x "
            "for 75% masking with the mixer.", metric="flops_ratio", metric_name="training-FLOPs cut",
            expects=[Expect("above", "75% masked + mixer", value=2.0)], arms=[UNMASKED, DEFERRED], **common),
      Claim(name="microdiff_mixer_beats_plain_masking",
            statement="Deferred masking (a patch-mixer on all patches before the 75% mask) loses much less quality "
            "than masking 75% of the patches without the mixer.",
            setting=SETTING + " Metric: the classifier-feature Frechet distance (lower is better); declared: "
            "deferred masking below plain masking.", metric="frechet_distance",
            metric_name="Frechet distance (classifier features; not FID)",
            expects=[Expect("less", "75% masked + mixer", "75% masked, no mixer")], arms=[UNMASKED, DEFERRED, PLAIN],
            **common),
      Claim(name="microdiff_deferred_beats_downscaled",
            statement="At equal training FLOPs, deferred masking (patch-mixer, 75% mask, the full-size backbone) gives "
            "better samples than training a downscaled model without masking.",
            setting=SETTING + " The downscaled arm: width 48, 3 backbone blocks + the 1-block mixer, unmasked, "
            f"{STEPS + FINETUNE} steps, at most the deferred arm's training FLOPs (see the report's train FLOPs). "
            "Metric: the classifier-feature Frechet distance (lower is better); declared: deferred masking below "
            "the downscaled model.", metric="frechet_distance",
            metric_name="Frechet distance (classifier features; not FID)",
            expects=[Expect("less", "75% masked + mixer", "unmasked, downscaled")], arms=[DEFERRED, DOWNSCALED],
            **common),
  ]
