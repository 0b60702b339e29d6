"""Frozen-spatial ViViT (Gowda, Arnab & Huang) against full fine-tuning on synthetic action clips.

    make repro CLAIM=vivit_frozen_spatial_matches_full_accuracy   # the arms' runs are shared (cached):
    make repro CLAIM=vivit_frozen_spatial_saves_step_time         # the later claims reuse them
    make repro CLAIM=vivit_frozen_spatial_saves_memory
    make repro CLAIM=vivit_naive_freezing_loses_accuracy
    python -m experiments.main --config=configs/vivit_clips.py --workdir=runs/vivit   # random spatial init

Data: ``clips`` (`jaxdyn.data._clips`): 8 frames of 16 x 16, a scikit-learn digit moving on a torus in
one of 8 directions at 1 or 2 pixels a frame; the class is the direction (opposite directions are the
same frames in reverse order, so the temporal order must be used). 4,000 training and 1,000 eval clips.

Model: `jaxdyn.models.ViViT` (factorised encoder): spatial ViT (patch 4, width 64, 4 blocks, 4 heads)
on every frame, temporal transformer (2 blocks) on the frame class tokens. Each arm of a seed starts
from the same spatial ViT pre-trained on single frames (``clip_frames``: the digit's cell on a 4 x 4
grid, 16 classes, 400 Adam steps of 64 frames, lr 3e-3 cosine; about 88% eval accuracy), done once
per seed by the claim runner and cached on disk (`experiments.techniques.memory.vivit.vivit_runner`).
Then 400 Adam steps of 32 clips (cosine schedule), per arm:

- ``full_finetune``: the ViViT baseline: everything trained, the temporal transformer from random;
  lr 1e-3 (3e-3 wrecked the pre-trained spatial ViT: 37% at 400 steps on seed 0).
- ``frozen_adapter_init``: the paper's scheme: spatial frozen (``stop_gradient`` + no optimizer state,
  transform ``freeze_spatial``), a compact bottleneck adapter (width 16, the identity at init) between
  the frozen frame tokens and the temporal transformer, the temporal blocks initialised from the
  pre-trained ViT's last 2 blocks (`jaxdyn.memory.init_from_image_model`); lr 3e-3.
- ``frozen_naive``: spatial frozen, no adapter, temporal transformer from random (the paper's ablation).
- ``two_stage``: the two-stage reading of "appropriately initializing the temporal transformer" (from a
  third-party study note, unverified; `jaxdyn.memory.init_from_short_clip_model`). Stage 1: full
  fine-tuning (nothing frozen, no adapter, temporal from random, lr 1e-3 as ``full_finetune``) on the
  first 4 of the 8 frames of each clip for 200 steps (`experiments.techniques.memory.vivit.train_short_clips`,
  cached per seed); stage 2: the 8-frame model initialised from it (spatial, temporal blocks, norm,
  class token, head; temporal positions linearly resized from 4 to 8 frames), spatial frozen, the
  adapter (identity at init), 200 steps at lr 3e-3 (the frozen arms'). Compute: 200 full steps on half
  the frames (about a quarter of a ``full_finetune`` step each) plus 200 frozen steps (spatial forward
  only), roughly 30-40% of ``full_finetune``'s 400 full steps. Its ``median step s`` is the two stages'
  median step times averaged with weights 200 / 200 (each stage's is also in results.json as
  ``stage1_median_step_s`` / ``stage2_median_step_s``), its ``temp bytes`` the larger of the two stages'
  (stage 1's, the full backward); ``stage1 acc`` is stage 1's eval accuracy on the 4-frame eval clips.
  It is recorded beside the other arms in the accuracy, time and memory claims; no expectation is
  declared on it.

Time and memory come from the run itself: callbacks ``step_time`` (median wall time of a training
step) and ``train_step_memory`` (XLA's ``memory_analysis`` of the compiled step: temp bytes, the
activations and gradients it holds).

Plain ``python -m experiments.main`` runs the frozen arm from a random spatial ViT (``spatial_init``
empty); the pre-training is the runner's.

Exploration before declaring (seed 0, 2 shared CPU cores, not `make repro`): with ViT's usual 0.02
initialisation of the temporal position embeddings every arm stayed at 50%, confusing each direction
with its opposite (order invisible next to unit-scale frame tokens), hence the model's
``temporal_pos_std=1``. Seed 0 of each arm, the machine shared with other jobs (times up to 2x inflated): frame pre-training
25 s (88.4% on 16 cells); frozen + adapter + init 98.0% eval accuracy, median step 0.056 s, temp
8.48 MB, 72 s with the pre-training; naive freezing 97.4%, 0.066 s, 8.48 MB, 105 s; full fine-tuning
at lr 1e-3 99.4%, 0.39 s (0.20 s in a quieter 300-step run), temp 112.9 MB, 258 s. So on seed 0 the
time (-71 to -85%) and memory (-92.5%) drops hold, the accuracy claim misses by 0.4 point (1.4 below
full, 1 allowed; frozen at lr 1e-3 was not tried with the final position scale), and naive freezing
is only 0.6 point below. About 6-7 min a seed here (full fine-tuning most of it): over the 10-minute
target for 3 seeds unless the machine is quiet.
"""

import math

import ml_collections

from configs import default
from experiments.claims import Arm, Claim, Expect
from experiments.techniques.memory.vivit import vivit_runner

PAPER = ("Gowda, Arnab & Huang, Optimizing ViViT Training: Time and Memory Reduction for Action Recognition, 2023, "
         "https://arxiv.org/abs/2306.04822")
ADAPTER_DIM = 16


def get_config():
  c = default.get_config()
  c.dataset = "clips"
  c.model = "vivit"
  c.model_kwargs = ml_collections.ConfigDict({
      "patch_size": 4, "dim": 64, "spatial_depth": 4, "temporal_depth": 2, "num_heads": 4, "mlp_ratio": 2,
      "frame_classes": 16, "adapter_dim": ADAPTER_DIM, "freeze_spatial": True, "spatial_init": "",
      "init_temporal": False})
  c.objective_kwargs = ml_collections.ConfigDict({"label_smoothing": 0.0})
  c.transforms = ("freeze_spatial",)
  c.callbacks = ("train_step_memory", "step_time")
  c.optimizer.learning_rate = 3e-3
  c.batch_size = 32
  c.eval_batch_size = 500
  c.num_train_steps = 400
  c.log_every_steps = 50
  c.eval_every_steps = 200
  c.checkpoint_every_steps = 400
  return c


FROZEN = Arm("frozen_adapter_init", {"model_kwargs.init_temporal": True})
# Full fine-tuning at lr 3e-3 disrupted the pre-trained spatial ViT (37% at 400 steps, seed 0); 1e-3 gave 99.4%.
FULL = Arm("full_finetune", {"model_kwargs.freeze_spatial": False, "model_kwargs.adapter_dim": 0, "transforms": (),
                             "optimizer.learning_rate": 1e-3})
NAIVE = Arm("frozen_naive", {"model_kwargs.adapter_dim": 0})
# The whole model_kwargs is replaced (its new keys are not in the base config, whose hash, and so the other
# arms' cached runs, stay as they were); num_train_steps is stage 2's.
STAGE1_STEPS, STAGE1_FRAMES = 200, 4
TWO_STAGE = Arm("two_stage", {
    "model_kwargs": {**get_config().model_kwargs.to_dict(), "stage1_steps": STAGE1_STEPS,
                     "stage1_frames": STAGE1_FRAMES, "short_clip_init": ""},
    "num_train_steps": 200})
RUNNER = vivit_runner

SETTING = ("Synthetic clips (8 frames of 16 x 16, a digit moving in one of 8 directions on a torus; 4,000 train, "
           "1,000 eval), ViViT factorised encoder (spatial ViT width 64, 4 blocks; temporal 2 blocks), the "
           "spatial ViT pre-trained per seed on single frames (digit's cell on a 4 x 4 grid, 400 steps) and shared "
           "by the arms; 400 Adam steps of 32 clips, cosine lr (full fine-tuning 1e-3, frozen arms 3e-3). Step time: median wall time of the run's "
           "steps; memory: XLA temp bytes of the compiled train step.")
_REPORT = {"median step s": "final_median_step_s", "temp bytes": "final_temp_bytes",
           "frame pre-train acc": "pretrain_accuracy", "wall s": "wall_time_s",
           "stage1 acc": lambda r: r.get("stage1_accuracy", float("nan"))}


# Ratios through logs: log a < log b - ln(1 / 0.6)  <=>  a < 0.6 b (a drop of at least 40%); the claim
# compares seed means of the log, i.e. geometric means of the seconds and bytes.
_DROP_40 = math.log(1 / 0.6)


def get_claims():
  common = dict(paper=PAPER, get_config=get_config, runner=RUNNER, report=_REPORT)
  statement = ("Freezing the spatial transformer, with the temporal transformer initialised appropriately and a "
               "compact adapter, cuts training time by about 50% and memory substantially while accuracy matches "
               "the fully fine-tuned ViViT (equal or up to 1.79 points better).")
  return [
      Claim(name="vivit_frozen_spatial_matches_full_accuracy", statement=statement,
            setting=SETTING + " Declared: frozen + adapter + init at most 1 point of eval accuracy below full "
            "fine-tuning.",
            metric="eval_accuracy", metric_name="eval accuracy",
            expects=[Expect("at_least", "frozen_adapter_init", "full_finetune", 0.01)],
            arms=[FULL, FROZEN, TWO_STAGE], **common),
      Claim(name="vivit_frozen_spatial_saves_step_time", statement=statement,
            setting=SETTING + " Declared: median step time at least 40% below full fine-tuning's (log seconds "
            f"lower by more than ln(1/0.6) = {_DROP_40:.3f}).",
            metric=lambda r: math.log(r["final_median_step_s"]), metric_name="log median step time (s)",
            expects=[Expect("less", "frozen_adapter_init", "full_finetune", _DROP_40)],
            arms=[FULL, FROZEN, TWO_STAGE], **common),
      Claim(name="vivit_frozen_spatial_saves_memory", statement=statement,
            setting=SETTING + " Declared: train-step temp bytes at least 40% below full fine-tuning's (log bytes "
            f"lower by more than {_DROP_40:.3f}).",
            metric=lambda r: math.log(r["final_temp_bytes"]), metric_name="log train-step temp bytes",
            expects=[Expect("less", "frozen_adapter_init", "full_finetune", _DROP_40)],
            arms=[FULL, FROZEN, TWO_STAGE], **common),
      Claim(name="vivit_naive_freezing_loses_accuracy",
            statement="Freezing the spatial transformer naively (no adapter, temporal transformer from random) gives "
            "a low-accuracy model; the initialisation and the adapter recover it.",
            setting=SETTING + " Declared: frozen + adapter + init above naive freezing in eval accuracy.",
            metric="eval_accuracy", metric_name="eval accuracy",
            expects=[Expect("greater", "frozen_adapter_init", "frozen_naive")],
            arms=[FROZEN, NAIVE], **common),
  ]
