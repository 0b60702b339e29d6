"""Historical object prediction (HoP; Zong et al., ICCV 2023) on synthetic moving-shape sequences.

    make repro CLAIM=hop_improves_ap

Not a training run of the harness: each arm is one `experiments.techniques.detection.hop.hop_runner` call
(``config.hop`` below), which trains `jaxdyn.models.TemporalDetector` (per-frame backbone, a fusion
convolution over frames t-1 and t, TinyDetector's head) with the ATSS loss on 3-frame 64 x 64 sequences of
1-4 shapes moving at up to 3 px per frame (bouncing off the edges), a third of the frames low-contrast
(objects at 0.25x brightness), and measures COCO-style AP at frame t on 300 held-out sequences with the
inference path only. The arms differ only in the HoP branch (a temporal decoder building the pseudo
feature of frame t-1 from frames t-2 and t, short- and long-term, and its own object decoder; loss weight
0.5), which exists in training only. A 2-D single-camera analogue of the paper's BEV setting (BEV features
and nuScenes are out of reach here). Settings were declared before any run, except one resize for budget: a
60-step timing run of each arm (whose step costs set the budget) moved ``steps`` from 500 to 700.
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.detection.hop import hop_runner

RUNNER = hop_runner
PAPER = ("Zong, Jiang, Song, Xue, Su, Li, Liu, Temporal Enhanced Training of Multi-view 3D Object Detector via "
         "Historical Object Prediction, ICCV 2023, https://arxiv.org/abs/2304.00967")


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.hop = ml_collections.ConfigDict({
      "image_size": 64, "max_objects": 4, "min_size": 6, "max_size": 24, "noise": 0.1, "max_speed": 3,
      "dim_rate": 0.33, "dim_factor": 0.25, "train_sequences": 1500, "test_sequences": 300,
      "num_frames": 2, "hop_frames": 3, "hop_k": 1, "hop_long_term": True, "hop_weight": 0.5,
      "width": 32, "anchor_scale": 4.0, "topk": 9, "steps": 700, "batch": 16, "learning_rate": 2e-3,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.hop.update(image_size=32, max_size=12, train_sequences=8, test_sequences=4, width=8, steps=3, batch=4)
  return c


def get_claims():
  return [
      Claim(name="hop_improves_ap", paper=PAPER,
            statement="The historical object prediction branch (a pseudo feature of frame t-k from its adjacent "
            "frames, an extra object decoder predicting the objects at t-k; training only) gives higher detection "
            "accuracy at equal inference cost (nuScenes: +1.2 to +3 mAP on BEVDet4D / BEVFormer).",
            setting="TemporalDetector (per-frame backbone of 2 stride-2 convs, width 32; a 3x3 fusion conv over "
            "frames t-1 and t; TinyDetector's third conv and shared head; strides 4 and 8) trained 700 steps "
            "(batch 16, Adam 2e-3 with warm-up and cosine decay) on 1,500 synthetic 3-frame 64 x 64 sequences of "
            "1-4 shapes (sides 6-24 px) moving at integer velocities up to 3 px/frame, bouncing, noise 0.1, each "
            "frame low-contrast (0.25x) with probability 0.33; ATSS assignment (k = 9) and loss at frame t. "
            "HoP: short- and long-term temporal decoder (3x3 convs) building frame t-1's feature from frames "
            "t-2 and t, its own object decoder, ATSS loss at t-1 with weight 0.5; baseline: no branch. Metric: "
            "COCO AP@[.5:.95] at frame t on 300 held-out sequences, inference path only.",
            get_config=get_config, arms=[Arm("HoP", {"hop.hop_weight": 0.5}),
                                         Arm("baseline", {"hop.hop_weight": 0.0})],
            metric="ap", metric_name="AP@[.5:.95]", expects=[Expect("greater", "HoP", "baseline")],
            report={"AP50": "ap50", "AP (low-contrast t)": "ap_low_contrast", "inference FLOPs": "inference_flops",
                    "inference params": "inference_params", "train s": "train_seconds"},
            runner=hop_runner),
  ]
