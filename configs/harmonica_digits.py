"""HarmoniCa (Huang et al., 2024) on scikit-learn's 8x8 digits: a learned cache router vs the fixed-interval cache.

    .venv/bin/python -m experiments.repro --claim=harmonica_beats_fixed_interval --output=/tmp/harmonica.md
    make repro CLAIM=harmonica_beats_fixed_interval

Not a training run of the harness: each arm is one `experiments.techniques.diffusion.harmonica.harmonica_runner`
call, and the three arms of a seed share one run (one trained DiT, one classifier, one noise draw). A
class-conditional `jaxdyn.models.DiT` (2x2 patches: 16 tokens, width 64, 4 blocks, 4 heads, MLP ratio 2, no
patch-mixer) is trained unmasked as an EDM denoiser on the 1,437 training digits in [-1, 1] (sigma_data 0.75,
P_mean -1.2, P_std 1.2; Adam 1e-3, batch 32), then frozen, and sampled with the 10-step Heun sampler (19 denoiser
calls = 19 cache steps x 4 blocks). Arms: no cache; the fixed-interval cache (interval 2: every block computed at
the even calls, reused at the odd ones: cache ratio 9/19 = 0.474); the HarmoniCa router (SDT + IEPO, soft
training-time mixing as the authors' code, the penalty adapted toward the fixed interval's ratio) thresholded to
reuse as many block evaluations as the fixed interval (declared tolerance +-0.02 on the cache ratio; both ratios
are in the report). Quality: the Frechet distance of a digits MLP classifier's 64-d penultimate features of 500
generated digits (50 per class, the same noise for every arm) against the training digits (not FID).
Declared before any run: the learned router's Frechet distance below the fixed interval's.

Sizing: settings fixed before the claim ran; one timing run of seed 0 (its Frechet distances not looked at)
checked the budget and the ratio matching. `experiments.repro` (3 seeds, 2026-12-01, 2 shared, heavily loaded
cores) took 6.1 min (about 75 s per seed when the machine was quieter). Result: Frechet distance 19.45 +- 0.45
with no cache, 25.1 +- 0.49 with the fixed interval, 20.02 +- 0.60 with the learned router, each cache at
ratio 0.474 exactly on every seed: the declared direction holds, by about 8 seed standard deviations, and the
router's samples stay close to the uncached ones (RMSE 0.02 against 0.15 for the fixed interval). The router
learns to reuse at the early, high-noise calls and at the last two, and to compute in the middle of the
trajectory. Caveats: the DiT is far from converged at this budget (class accuracy on samples about 0.2); the
penalty adaptation did not bring the trained router's ratio at threshold 0.5 down to the target (it stayed at
0.59-0.62 while beta fell to about 1e-7: entries of the early steps get IEPO weights near 1e-8, so almost no
gradient), so the matched inference threshold (0.19-0.22) does the ratio matching, and training refreshed the
cache at 0.5, not at that threshold.
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.diffusion.harmonica import harmonica_runner

PAPER = ("Huang, Wang, Yang, Lv, Gu, Liu, Zhang, Tao, HarmoniCa: Harmonizing Training and Inference for Better "
         "Feature Cache in Diffusion Transformer Acceleration, 2024, https://arxiv.org/abs/2410.01723")
RUNNER = harmonica_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.diffusion = ml_collections.ConfigDict({
      "patch_size": 2, "dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2, "mixer_depth": 0, "steps": 1000,
      "batch": 32, "learning_rate": 1e-3, "sigma_data": 0.75, "p_mean": -1.2, "p_std": 1.2, "sample_steps": 10,
      "samples_per_class": 50, "classifier_steps": 400,
  })
  c.harmonica = ml_collections.ConfigDict({
      "policy": "learned", "interval": 2, "router_steps": 150, "router_batch": 16, "router_lr": 0.05,
      "proxy_every": 50, "beta": 1e-4, "beta_rate": 0.05, "threshold": 0.5, "estimator": "soft",
      "ratio_tolerance": 0.02, "share_runs": True,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.diffusion.update(dim=16, depth=2, num_heads=2, steps=3, batch=8, sample_steps=2, samples_per_class=3,
                     classifier_steps=3)
  c.harmonica.update(router_steps=3, router_batch=4, proxy_every=2, share_runs=False)
  return c


NONE = Arm("no cache", {"harmonica.policy": "none"})
FIXED = Arm("fixed interval", {"harmonica.policy": "fixed"})
LEARNED = Arm("learned router", {"harmonica.policy": "learned"})
SETTING = ("digits 8x8 in [-1, 1], class-conditional DiT (2x2 patches, width 64, 4 blocks, 4 heads, adaLN-Zero, no "
           "mixer) trained unmasked as an EDM denoiser (sigma_data 0.75, Adam 1e-3, batch 32, 1000 steps), frozen; "
           "10-step Heun sampler (19 denoiser calls x 4 blocks), 50 samples per class from one noise draw shared by "
           "the arms. Fixed interval 2 (cache ratio 9/19 = 0.474). HarmoniCa router: a logit per (call, block), 150 "
           "SDT iterations (each one trajectory of 16 noises), Adam 0.05, logits clamped to [-5, 5], IEPO proxy "
           "refreshed every 50 iterations, soft training-time mixing (the authors' code), penalty adapted toward "
           "the fixed interval's ratio, then thresholded to the same ratio (tolerance 0.02). Metric: Frechet "
           "distance of a digits MLP classifier's penultimate features (generated vs training digits; not FID).")
_REPORT = {"cache ratio": "cache_ratio", "learned ratio": "cache_ratio_learned", "fixed ratio": "cache_ratio_fixed",
           "class acc. on samples": "conditional_accuracy", "RMSE to no cache": "rmse_to_uncached",
           "router s": "router_seconds", "wall s": "wall_seconds"}


def get_claim():
  return Claim(
      name="harmonica_beats_fixed_interval",
      paper=PAPER,
      statement="At the same cache ratio, the learned cache router (trained with step-wise denoising training and "
      "the image-error-proxy objective) gives better images than a hand-designed fixed-interval cache.",
      setting=SETTING + " Declared: the learned router's Frechet distance below the fixed interval's.",
      get_config=get_config, arms=[NONE, FIXED, LEARNED], metric="frechet_distance",
      metric_name="Frechet distance (classifier features; not FID)",
      expects=[Expect("less", "learned router", "fixed interval")], runner=harmonica_runner, report=_REPORT)
