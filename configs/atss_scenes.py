"""ATSS against IoU-threshold anchor assignment on synthetic shape scenes (Zhang et al., CVPR 2020).

    make repro CLAIM=atss_beats_iou_assignment

Not a training run of the harness: each arm is one `experiments.techniques.detection.scenes.scenes_runner`
call (``config.detection`` below), which trains `jaxdyn.models.TinyDetector` (2 pyramid levels, strides 4
and 8, one square anchor of side 4 x stride per location) with the ATSS loss on 64 x 64 scenes of 1-4
shapes (3 classes, sides 6-24 px) and measures COCO-style AP on 300 held-out scenes. The arms differ only
in the assigner. Settings were declared before any run.
"""

import ml_collections

from experiments.claims import Arm, Claim, Expect
from experiments.techniques.detection.scenes import scenes_runner

RUNNER = scenes_runner
PAPER = ("Zhang, Chi, Yao, Lei, Li, Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive "
         "Training Sample Selection, CVPR 2020, https://arxiv.org/abs/1912.02424")


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.detection = ml_collections.ConfigDict({
      "assigner": "atss", "topk": 9, "image_size": 64, "max_objects": 4, "min_size": 6, "max_size": 24,
      "noise": 0.05, "train_images": 2000, "test_images": 300, "width": 32, "anchor_scale": 4.0,
      "steps": 600, "batch": 16, "learning_rate": 2e-3,
  })
  return c


def smoke_config():
  """A few steps of the same runner (tests/experiments/test_configs.py)."""
  c = get_config()
  c.detection.update(image_size=32, max_size=12, train_images=16, test_images=4, width=8, steps=3, batch=4)
  return c


def get_claims():
  return [
      Claim(name="atss_beats_iou_assignment", paper=PAPER,
            statement="Adaptive training sample selection (ATSS) gives higher AP than IoU-threshold assignment "
            "(RetinaNet with ATSS: +1.4 AP on COCO, one anchor per location).",
            setting="TinyDetector (3 stride-2 convs, a shared head; strides 4 and 8, anchors 16 and 32 px) trained "
            "600 steps (batch 16, Adam 2e-3 with warm-up and cosine decay) on 2,000 synthetic 64 x 64 scenes of "
            "1-4 non-overlapping shapes (rectangle, ellipse, triangle; sides 6-24 px), ATSS loss (focal, "
            "centerness-weighted GIoU x 2, centerness BCE). Arms: ATSS (k = 9 per level) vs IoU >= 0.5 positive, "
            "< 0.4 negative, low-quality matches. Metric: COCO AP@[.5:.95] on 300 held-out scenes.",
            get_config=get_config, arms=[Arm("ATSS", {"detection.assigner": "atss"}),
                                         Arm("IoU", {"detection.assigner": "iou"})],
            metric="ap", metric_name="AP@[.5:.95]", expects=[Expect("greater", "ATSS", "IoU")],
            report={"AP50": "ap50", "AP75": "ap75", "unassigned gt fraction": "unassigned_gt_fraction",
                    "train s": "train_seconds"},
            runner=scenes_runner),
  ]
