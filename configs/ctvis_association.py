"""CTVIS's inference-style contrastive items against one-reference-frame items, on synthetic instance association.

    .venv/bin/python -m experiments.repro --claim=ctvis_association --output=/tmp/ctvis_association.md
    make repro CLAIM=ctvis_association          # also ctvis_reappear (the same runs)

Not a training run of the harness: each arm is one `experiments.techniques.multimodal.ctvis.ctvis_runner` call;
the three arms of a seed share one run (the same initial network, batches and evaluation videos). The task
(`experiments.techniques.multimodal.ctvis.make_videos`): videos of 8 objects over 12 frames; an object's
40-dimensional observation is a fixed random rotation of its identity appearance (16 dims, fixed per object, plus
per-frame noise 0.8), a pose/state part (8 dims, a random walk with step 1.0 from a unit Gaussian: close between
adjacent frames, not an identity) and 16 dims of clutter (scale 2.0, fresh each frame). Objects hide with
probability 0.2 per frame and come back with 0.35 (about 32% of entries hidden; 16% of the scored detections
come back after a gap). An MLP (40 -> 64 -> 64 -> 32, GELU) is trained for 2,000 Adam steps (1e-3) of 32 fresh
videos with `jaxdyn.multimodal.ctvis_contrastive_loss` (IDOL's form plus the auxiliary cosine term, weights 2 : 3
as the authors') over the arm's contrastive items:

- ``ctvis``: `jaxdyn.multimodal.ctvis_contrastive_items`: the clip's frames run through a memory bank, the anchor
  against its track's similarity-guided momentum average (or last embedding, probability 1/2) and the other
  tracks' averages, noise rate 0.05 (an absent object's memory takes another object's embedding);
- ``ctvis_no_noise``: the same without noise (reported, no expectation declared);
- ``reference``: `jaxdyn.multimodal.ctvis_reference_items`: frame t against frame t-1 only (IDOL / MinVIS-style).

Evaluation for every arm is the same online tracker (`jaxdyn.multimodal.ctvis_track`: memory bank with the
similarity-guided momentum, bi-softmax scores, greedy matching, threshold 0.2) on 500 held-out videos.
``association_accuracy``: of the detections of an object seen before, the share given the track id its
previous detection got; ``reappear_accuracy``: the same over detections back after a gap of 1 or more frames.

Sizing, before the claim ran (only the stage before the compared arms was probed: the task and the tracker on
fixed features, and the time of 50 training steps of each arm; no trained arm's loss or accuracy was looked
at). A first task (6 objects, no clutter, state step 0.3) was too easy: the tracker on the raw observations
associated 99% correctly, so no embedding could matter. With clutter (16 dims, scale 2) and state step 1.0 the
tracker on raw observations gets 0.62 (0.54 on reappearances), on the identity part alone (the mix undone)
0.84, on the state part alone 0.80 (0.61 on reappearances), on both 0.95 (0.88): the state part is what an
adjacent-frame objective can lean on and what fails after gaps. A step of 32 videos took 30-55 ms under the
shared load (compile 10-25 s), so the 9 trainings of 3 seeds take about 7 minutes alone.

Result (3 seeds, 2026-12-02, 21.6 minutes under a load of 15-28 on the 2 cores; each arm trained in 110-215 s):
CTVIS's items beat the reference-frame items in every seed, but by less than the declared margin overall, and
well beyond it on reappearing objects. ``ctvis_association`` does NOT hold: association accuracy 0.9746 against
0.9680 (+0.0066; per seed 0.9736 / 0.9748 / 0.9754 against 0.9672 / 0.9679 / 0.9688), short of the declared
+0.01. ``ctvis_reappear`` holds: on objects back after an occlusion 0.951 against 0.914 (+0.037; per seed
0.955 / 0.949 / 0.950 against 0.913 / 0.912 / 0.917). On detections seen in the frame before the arms tie (0.979
against 0.979), and 84% of the scored detections are of that kind, which is why the overall gain is small: the
gain is where the paper places it (occlusion, re-identification), and the overall margin depends on how often
objects come back, which this task sets by ``p_hide`` / ``p_return`` (declared before the run, not retuned).
Noise made no measurable difference here (0.9746 with and without; reappearance 0.951 against 0.950): at rate
0.05 an absent object's memory is polluted in about 1.5% of its updates, too rarely to matter in 12 frames. The
tracker on the raw observations scores 0.617, so every trained embedding does the association.

Declared before any run:
- ``ctvis_association``: CTVIS's association accuracy above the reference-frame baseline's by more than 0.01
  (mean of seeds 0, 1, 2; the paper: up to +5 AP on YTVIS / OVIS);
- ``ctvis_reappear``: CTVIS's accuracy on reappearing objects above the baseline's by more than 0.02 (the paper
  credits CTVIS with occlusion and re-identification).

Deviations from the paper: feature vectors instead of video frames, no detector (detections are given, one per
visible object; no background queries); noise rate 0.05 (the authors' code: 0.001); the negatives are the other
tracks' memory embeddings (the code takes the other query embeddings of frame t-1).
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.multimodal.ctvis import ctvis_runner

PAPER = ("Ying, Zhong, Mao, Wang, Chen, Wu, Liu, Fan, Zhuge, Shen, CTVIS: Consistent Training for Online Video "
         "Instance Segmentation, ICCV 2023, https://arxiv.org/abs/2307.12616 (code: "
         "https://github.com/KainingYing/CTVIS)")
RUNNER = ctvis_runner


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.ctvis = ml_collections.ConfigDict({
      "arm": "ctvis", "share_runs": True,
      "num_objects": 8, "num_frames": 12, "id_dim": 16, "state_dim": 8, "nuisance_dim": 16, "id_noise": 0.8,
      "drift": 1.0, "nuisance_scale": 2.0, "p_hide": 0.2, "p_return": 0.35,
      "width": 64, "embed_dim": 32, "steps": 2000, "batch_videos": 32, "learning_rate": 1e-3,
      "noise_rate": 0.05, "average_prob": 0.5, "aux_weight": 1.5, "threshold": 0.2, "eval_videos": 500,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.ctvis.update(share_runs=False, num_objects=3, num_frames=4, steps=3, batch_videos=2, eval_videos=4, width=8,
                 embed_dim=4)
  return c


CTVIS = Arm("CTVIS items", {"ctvis.arm": "ctvis"})
NO_NOISE = Arm("CTVIS items, no noise", {"ctvis.arm": "ctvis_no_noise"})
REFERENCE = Arm("reference-frame items", {"ctvis.arm": "reference"})
SETTING = ("Synthetic association: 8 objects x 12 frames, observation = rotation of (identity 16 dims + noise 0.8, "
           "random-walk state 8 dims step 1.0, clutter 16 dims scale 2.0), hide 0.2 / return 0.35 per frame; MLP "
           "embedding 40-64-64-32 trained 2,000 Adam steps (1e-3) x 32 videos with the IDOL-form contrastive loss "
           "over CTVIS's memory-bank items (noise 0.05) or frame t vs t-1 items; the same online tracker (memory "
           "bank, bi-softmax, greedy, threshold 0.2) on 500 held-out videos.")
_REPORT = {"reappear acc.": "reappear_accuracy", "adjacent acc.": "adjacent_accuracy",
           "raw-feature acc.": "raw_association_accuracy", "train s": "train_seconds"}


def get_claims():
  common = dict(paper=PAPER, get_config=get_config, arms=[CTVIS, NO_NOISE, REFERENCE], runner=ctvis_runner,
                report=_REPORT)
  return [
      Claim(name="ctvis_association",
            statement="Contrastive items built the inference way (memory bank, momentum-averaged embeddings, noise) "
            "train more discriminative instance embeddings than items from one reference frame: up to +5 AP.",
            setting=SETTING + " Declared: CTVIS's association accuracy above the reference-frame arm's by > 0.01.",
            metric="association_accuracy", metric_name="association accuracy",
            expects=[Expect("greater", "CTVIS items", "reference-frame items", margin=0.01)], **common),
      Claim(name="ctvis_reappear",
            statement="CTVIS's items help with occlusion and re-identification.",
            setting=SETTING + " Declared: CTVIS's accuracy on objects back after a gap above the reference-frame "
            "arm's by > 0.02.",
            metric="reappear_accuracy", metric_name="reappearance accuracy",
            expects=[Expect("greater", "CTVIS items", "reference-frame items", margin=0.02)], **common),
  ]
