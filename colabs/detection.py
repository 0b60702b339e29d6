# ---
# jupyter:
#   accelerator: GPU
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Object detection: ATSS against IoU-threshold assignment (Zhang et al., CVPR 2020)
#
# Zhang, Chi, Yao, Lei, Li, "Bridging the Gap Between Anchor-based and Anchor-free Detection via
# Adaptive Training Sample Selection", CVPR 2020, https://arxiv.org/abs/1912.02424. A dense detector
# learns from the anchors its assigner marks positive. RetinaNet's rule takes every anchor whose IoU
# with a box is at least 0.5 (below 0.4 negative, in between ignored). ATSS (adaptive training sample
# selection) takes, for each box, the 9 anchors per pyramid level whose centres are nearest the box
# centre, and keeps those whose IoU reaches the box's own threshold, the mean plus the standard
# deviation of the candidates' IoUs, with the centre inside the box.
#
# `jaxdyn.detection` holds the pieces, pure and jittable with static shapes: box utilities (`box_iou`,
# `generalized_box_iou`, `center_distance`, `encode_boxes` / `decode_boxes`, `make_anchors`), the two
# assigners (`atss_assign`, `iou_assign`, each returning an `Assignment`), the ATSS loss (`atss_loss`:
# focal + centerness-weighted GIoU + centerness BCE), COCO-style AP (`coco_average_precision`) and
# synthetic shape scenes (`synthetic_scenes`). `jaxdyn.models.TinyDetector` is a two-level detector
# (strides 4 and 8, one anchor per location) and `configs/atss_scenes.py` the experiment comparing the
# two assigners (`make repro CLAIM=atss_beats_iou_assignment`). Here: scenes with their boxes, the
# anchors each assigner picks on two scenes, then the detector trained with each assigner, its AP and
# its predicted boxes.

# %%
# Setup. In a jaxdyn checkout (`make notebooks`, the tests) this cell does nothing. Elsewhere (Colab) it
# clones jaxdyn, pip-installs it with the runtime's jax, jaxlib and jax plugins pinned to their
# installed versions (so its GPU/TPU build is never replaced) and moves into the checkout, so that
# `configs/` and `experiments/` import.
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

JAXDYN_REPO = "https://github.com/jaxdyn/jaxdyn"  # pyproject.toml: [project.urls] Repository
ACCELERATOR_PACKAGES = r"jax|jaxlib|jax[-_](cuda|rocm)\d*[-_](plugin|pjrt)|libtpu.*"

if not (importlib.util.find_spec("configs") and importlib.util.find_spec("experiments")):
  in_colab = "google.colab" in sys.modules
  checkout = "/content/jaxdyn" if in_colab else os.path.join(tempfile.gettempdir(), "jaxdyn")
  if not os.path.isdir(checkout):
    subprocess.run(["git", "clone", "--quiet", "--depth=1", JAXDYN_REPO, checkout], check=True)
  pins = sorted({f"{d.name}=={d.version}" for d in importlib.metadata.distributions()
                 if re.fullmatch(ACCELERATOR_PACKAGES, (d.name or "").lower())})
  constraints = os.path.join(tempfile.gettempdir(), "jaxdyn-constraints.txt")
  with open(constraints, "w") as f:
    f.write("".join(p + "\n" for p in pins))
  print(f"Installing jaxdyn from {checkout}, keeping {', '.join(pins)} ...", flush=True)
  pip = subprocess.run([sys.executable, "-m", "pip", "install", "-c", constraints, checkout],
                       capture_output=True, text=True)
  if pip.returncode:
    log = "\n".join(l for l in (pip.stdout + pip.stderr).splitlines() if "already satisfied" not in l)
    raise RuntimeError(
        f"pip could not install jaxdyn with this runtime's {', '.join(pins)} kept as they are (so "
        "that its GPU/TPU build stays). If pip names a conflict on jax or jaxlib, this runtime's jax "
        "is older than jaxdyn needs (pyproject.toml): pick a newer Colab runtime version. pip said:\n"
        + log)
  importlib.invalidate_caches()
  sys.path.insert(0, checkout)
  os.chdir(checkout)

# %%
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from matplotlib import patches

from configs import atss_scenes
from experiments.techniques.detection.scenes import TEST_SEED, postprocess
from jaxdyn import detection
from jaxdyn.models import TinyDetector

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
# The experiment's settings (configs/atss_scenes.py); on CPU a shorter run on fewer scenes.
CONFIG = atss_scenes.get_config()
C = CONFIG.detection
if SMALL:
  C.update(train_images=400, test_images=60, steps=120)
COLOURS = plt.cm.tab10.colors
print({k: C[k] for k in ("image_size", "min_size", "max_size", "max_objects", "train_images", "test_images",
                         "width", "anchor_scale", "steps", "batch", "learning_rate")})


def make_scenes(seed, n):
  return detection.synthetic_scenes(seed, n, image_size=C.image_size, max_objects=C.max_objects,
                                    min_size=C.min_size, max_size=C.max_size, noise=C.noise)


def draw_boxes(ax, boxes, labels, scores=None, *, linestyle="-", text=True):
  for i, (b, k) in enumerate(zip(np.asarray(boxes), np.asarray(labels))):
    x1, y1, x2, y2 = (float(v) for v in b)
    ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5, ls=linestyle,
                                   edgecolor=COLOURS[k]))
    if not text:
      continue
    caption = detection.SHAPES[k] + ("" if scores is None else f" {scores[i]:.2f}")
    ax.text(x1 + 0.5, y1 + 0.5, caption, color=COLOURS[k], fontsize=7, va="top",
            bbox=dict(facecolor="w", alpha=0.75, pad=0.5, lw=0))


def show(ax, image, title=""):
  ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, extent=(0, image.shape[1], image.shape[0], 0))
  ax.set(title=title, xticks=[], yticks=[], xlim=(0, image.shape[1]), ylim=(image.shape[0], 0))


# %% [markdown]
# ## Synthetic scenes
# Each 64 x 64 scene holds 1 to 4 non-overlapping shapes (rectangle, ellipse, triangle) with sides of
# 6 to 24 pixels, on a noisy canvas; the boxes are the shapes' tight extents.

# %%
train = make_scenes(CONFIG.seed, C.train_images)
test = make_scenes(TEST_SEED, C.test_images)
fig, axes = plt.subplots(1, 6, figsize=(15, 2.8))
for i, ax in enumerate(axes):
  show(ax, train.images[i], f"scene {i}")
  draw_boxes(ax, train.boxes[i][train.valid[i]], train.labels[i][train.valid[i]])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Which anchors each assigner picks
# The detector has one square anchor per location: 16 x 16 on the stride-4 grid and 32 x 32 on the
# stride-8 grid. Both assigners on every training scene first: how many positives a box gets, and how
# many boxes get none (`Assignment.num_unassigned`).

# %%
anchors, counts = TinyDetector(1, len(detection.SHAPES), width=C.width, image_size=C.image_size,
                               anchor_scale=C.anchor_scale, rngs=nnx.Rngs(0)).anchors()
print(f"anchors per level {counts} ({sum(counts)} in all)")
ASSIGNERS = {
    "ATSS": lambda b, v: detection.atss_assign(anchors, b, v, num_anchors_per_level=counts, topk=C.topk),
    "IoU >= 0.5": lambda b, v: detection.iou_assign(anchors, b, v),
}
for name, assign in ASSIGNERS.items():
  a = jax.jit(jax.vmap(assign))(train.boxes, train.valid)
  matched = np.asarray(a.matched_gt)
  pos = np.stack([(matched == g).sum(1) for g in range(C.max_objects)], 1)[train.valid]
  print(f"{name:10s}: positives per box mean {pos.mean():.2f} (min {pos.min()}, max {pos.max()}); "
        f"boxes with no positive {int(a.num_unassigned.sum())} of {int(train.valid.sum())}")
  if name == "ATSS":
    atss_unassigned = np.asarray(a.num_unassigned)

# %% [markdown]
# Two scenes: the first with the most objects, the first where ATSS leaves a box without a positive.
# Every anchor centre is a grey dot; each assigner's positives are coloured by the ground truth they are
# matched to (circles: stride 4, squares: stride 8), IoU's ignored anchors (IoU in [0.4, 0.5)) are
# crosses. ATSS's threshold of each box is recomputed from its 2 x 9 nearest candidates to show what it
# is. A small box can have a threshold above its best IoU (the mean plus the standard deviation can
# exceed the largest candidate IoU), and ATSS then gives it no positive; IoU's low-quality matches give
# a box whose best IoU is under 0.5 every anchor tied at that IoU, centre inside the box or not.

# %%
centres = np.asarray(detection.box_centers(anchors))
level = np.repeat(np.arange(len(counts)), counts)
level_start = np.cumsum((0,) + counts)


def show_assignments(scene, row):
  boxes, labels, valid = train.boxes[scene], train.labels[scene], train.valid[scene]
  gt = boxes[valid]
  ious = np.asarray(detection.box_iou(anchors, gt))
  dist = np.asarray(detection.center_distance(anchors, gt))
  results = {name: assign(boxes, valid) for name, assign in ASSIGNERS.items()}
  print(f"scene {scene}: ATSS threshold per box = mean + std of the IoUs of its {C.topk} nearest anchors per level")
  for g in range(len(gt)):
    cand = np.concatenate([s + np.argsort(dist[s:e, g], kind="stable")[:C.topk]
                           for s, e in zip(level_start[:-1], level_start[1:])])
    m, sd = ious[cand, g].mean(), ious[cand, g].std(ddof=1)
    w, h = gt[g, 2:] - gt[g, :2]
    print(f"  box {g} ({detection.SHAPES[labels[g]]:9s} {w:2.0f} x {h:2.0f} px): mean {m:.3f} + std {sd:.3f} = "
          f"{m + sd:.3f} (atss_assign: {float(results['ATSS'].threshold[g]):.3f}), best IoU {ious[:, g].max():.3f}")
  for ax, (name, a) in zip(row, results.items()):
    matched = np.asarray(a.matched_gt)
    show(ax, train.images[scene])
    ax.scatter(*centres.T, s=3, c="0.6")
    for g in range(len(gt)):
      colour = COLOURS[g + 3]
      for lv, marker in zip(range(len(counts)), "os"):
        sel = (matched == g) & (level == lv)
        ax.scatter(*centres[sel].T, s=40, marker=marker, color=colour, edgecolor="k", lw=0.5)
      x1, y1, x2, y2 = gt[g]
      ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5, edgecolor=colour))
      ax.text(x1 + 0.5, y1 + 0.5, f"box {g}", color=colour, fontsize=8, va="top",
              bbox=dict(facecolor="w", alpha=0.75, pad=0.5, lw=0))
    ax.scatter(*centres[matched == -2].T, s=25, marker="x", c="0.3")
    per_box = [int(np.sum(matched == g)) for g in range(len(gt))]
    ax.set_title(f"scene {scene}, {name}: positives per box {per_box}\nground truths with no positive: "
                 f"{int(a.num_unassigned)}", fontsize=10)
    print(f"  {name:10s}: positives per box {per_box}, ignored {int(np.sum(matched == -2))}, "
          f"ground truths with no positive: {int(a.num_unassigned)} of {len(gt)}")


scenes = [int(np.argmax(train.valid.sum(1)))]
if atss_unassigned.any():
  scenes.append(int(np.argmax(atss_unassigned > 0)))
fig, axes = plt.subplots(len(scenes), 2, figsize=(10, 5.3 * len(scenes)), squeeze=False)
for scene, row in zip(scenes, axes):
  show_assignments(scene, row)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Training the detector with each assigner
# The loop of the experiment's runner (`experiments/techniques/detection/scenes.py`, `scenes_runner`),
# written out so that the trained weights stay here: `TinyDetector`, Adam with warm-up and cosine decay,
# the ATSS loss on the anchors the assigner picks, mini-batches drawn at random from the training
# scenes. Only the assigner differs. Then ATSS's inference (score `sqrt(sigmoid(cls) *
# sigmoid(centerness))`, class-wise NMS; the runner's `postprocess`) on the held-out scenes, and COCO AP.


# %%
def train_detector(assigner, seed=CONFIG.seed):
  model = TinyDetector(1, len(detection.SHAPES), width=C.width, image_size=C.image_size,
                       anchor_scale=C.anchor_scale, rngs=nnx.Rngs(seed))
  assign = jax.vmap(assigner)
  graphdef, params = nnx.split(model)
  tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, C.learning_rate, min(100, C.steps // 5), C.steps))
  opt_state = tx.init(params)

  def loss_fn(p, images, boxes, labels, valid):
    a = assign(boxes, valid)
    cls, box, ctr = nnx.merge(graphdef, p)(images)
    return detection.atss_loss(cls, box, ctr, anchors, a.matched_gt, boxes, labels)[0]

  @jax.jit
  def step(p, s, images, boxes, labels, valid):
    loss, grads = jax.value_and_grad(loss_fn)(p, images, boxes, labels, valid)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  rng = np.random.default_rng(seed)
  losses = []
  for _ in range(C.steps):
    idx = rng.integers(0, C.train_images, C.batch)
    params, opt_state, loss = step(params, opt_state, train.images[idx], train.boxes[idx], train.labels[idx],
                                   train.valid[idx])
    losses.append(float(loss))
  return graphdef, params, losses


def detect(graphdef, params, images):
  cls, box, ctr = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))(params, images)
  return [postprocess(cls[i], box[i], ctr[i], anchors) for i in range(len(images))]


runs = {}
for name, assigner in ASSIGNERS.items():
  t0 = time.monotonic()
  graphdef, params, losses = train_detector(assigner)
  preds = detect(graphdef, params, test.images)
  ap = detection.coco_average_precision(
      [p[0] for p in preds], [p[1] for p in preds], [p[2] for p in preds],
      [test.boxes[i][test.valid[i]] for i in range(C.test_images)],
      [test.labels[i][test.valid[i]] for i in range(C.test_images)], num_classes=len(detection.SHAPES))
  runs[name] = dict(losses=losses, preds=preds, ap=ap)
  print(f"{name:10s}: {C.steps} steps in {time.monotonic() - t0:.0f} s, final loss {np.mean(losses[-20:]):.3f}; "
        f"AP {ap['ap']:.3f}  AP50 {ap['ap50']:.3f}  AP75 {ap['ap75']:.3f}  per class "
        + ", ".join(f"{s} {v:.3f}" for s, v in zip(detection.SHAPES, ap["ap_per_class"])))

# %% [markdown]
# With the small settings (CPU) this is one short run per arm on few scenes: a small gap between the
# arms here is no evidence either way. The full settings (a GPU or TPU runtime) are the experiment's, and
# `make repro CLAIM=atss_beats_iou_assignment` runs the comparison as a claim. The loss curves, and the
# AP at each IoU threshold from 0.50 to 0.95:

# %%
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
for name, r in runs.items():
  a.plot(r["losses"], label=name, alpha=0.8)
  b.plot(np.linspace(50, 95, 10), r["ap"]["ap_per_threshold"], "o-", label=name)
a.set(xlabel="step", ylabel="ATSS loss", yscale="log")
b.set(xlabel="IoU threshold (%)", ylabel="AP on the held-out scenes")
a.legend(); b.legend(); fig.tight_layout()
plt.show()

# %% [markdown]
# ## Predicted boxes on held-out scenes
# Ground truths dashed; detections solid, with their class and score. The AP above counts every
# detection; for a readable picture only those scoring at least 0.3 are drawn, and of detections of
# different classes on the same object (IoU > 0.5; NMS is class-wise) only the best.


# %%
def for_display(boxes, scores, labels, min_score=0.3, overlap=0.5):
  keep = []
  for i in np.flatnonzero(scores >= min_score):  # sorted by score already
    if not keep or np.asarray(detection.box_iou(boxes[i:i + 1], boxes[keep])).max() <= overlap:
      keep.append(i)
  return boxes[keep], labels[keep], scores[keep]  # draw_boxes' order


fig, axes = plt.subplots(2, 5, figsize=(15, 6.4))
for row, (name, r) in zip(axes, runs.items()):
  for i, ax in enumerate(row):
    show(ax, test.images[i], f"{name}, test scene {i}")
    draw_boxes(ax, test.boxes[i][test.valid[i]], test.labels[i][test.valid[i]], linestyle="--", text=False)
    draw_boxes(ax, *for_display(*r["preds"][i]))
fig.tight_layout()
plt.show()
