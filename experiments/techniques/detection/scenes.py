"""ATSS against IoU-threshold assignment on synthetic scenes: a claim runner (not the classification loop).

One run (``config.detection``, ``config.seed``): a `jaxdyn.models.TinyDetector` trained with Adam on a
fixed set of `jaxdyn.detection.synthetic_scenes` (drawn from ``seed``), mini-batches drawn from ``seed``,
with the ATSS loss (`jaxdyn.detection.atss_loss`: focal + centerness-weighted GIoU + centerness BCE) on
the anchors that ``config.detection.assigner`` selects (``"atss"``: `atss_assign`, k = 9 per level;
``"iou"``: `iou_assign`, 0.5 / 0.4 with low-quality matches). Only the assignment differs between the
arms. Evaluation on a held-out set drawn from a seed no training run uses: ATSS's inference (score
``sqrt(sigmoid(cls) * sigmoid(centerness))``, candidates with class probability > 0.05, class-wise
greedy NMS at IoU 0.6, at most 100 detections per image), then `jaxdyn.detection.coco_average_precision`.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results
from jaxdyn import detection
from jaxdyn.models import TinyDetector

TEST_SEED = 987_654  # the held-out scenes: the same for every run


def _scenes(c, seed, n):
  return detection.synthetic_scenes(seed, n, image_size=c.image_size, max_objects=c.max_objects,
                                    min_size=c.min_size, max_size=c.max_size, noise=c.noise)


def _assigner(c, anchors, counts):
  if c.assigner == "atss":
    return lambda g, v: detection.atss_assign(anchors, g, v, num_anchors_per_level=counts, topk=c.topk)
  if c.assigner == "iou":
    return lambda g, v: detection.iou_assign(anchors, g, v)
  raise ValueError(f"detection.assigner: must be 'atss' or 'iou', got {c.assigner!r}")


def _nms(boxes, scores, iou_threshold):
  order = np.argsort(-scores, kind="stable")
  keep = []
  while order.size:
    i = order[0]
    keep.append(i)
    if order.size == 1:
      break
    rest = order[1:]
    lt = np.maximum(boxes[i, :2], boxes[rest, :2])
    rb = np.minimum(boxes[i, 2:], boxes[rest, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    iou = inter / np.maximum(area(boxes[i]) + area(boxes[rest]) - inter, 1e-12)
    order = rest[iou <= iou_threshold]
  return np.asarray(keep, int)


def postprocess(cls_logits, box_deltas, ctr_logits, anchors, *, score_threshold=0.05, nms_iou=0.6, max_det=100):
  """ATSS inference for one image: ``(boxes, scores, labels)`` as NumPy arrays."""
  prob = np.asarray(jax.nn.sigmoid(cls_logits))
  ctr = np.asarray(jax.nn.sigmoid(ctr_logits))
  boxes = np.asarray(detection.decode_boxes(box_deltas, anchors))
  a_idx, k_idx = np.nonzero(prob > score_threshold)
  scores = np.sqrt(prob[a_idx, k_idx] * ctr[a_idx])
  out_b, out_s, out_l = [], [], []
  for k in np.unique(k_idx):
    sel = k_idx == k
    keep = _nms(boxes[a_idx[sel]], scores[sel], nms_iou)
    out_b.append(boxes[a_idx[sel]][keep])
    out_s.append(scores[sel][keep])
    out_l.append(np.full(len(keep), k, int))
  if not out_b:
    return np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)
  b, s, lab = np.concatenate(out_b), np.concatenate(out_s), np.concatenate(out_l)
  top = np.argsort(-s, kind="stable")[:max_det]
  return b[top], s[top], lab[top]


@caches_results
def scenes_runner(config, workdir: str) -> dict[str, Any]:
  """One (assigner, seed) run; see the module docstring."""
  del workdir
  c = config.detection
  t0 = time.monotonic()
  train = _scenes(c, config.seed, c.train_images)
  test = _scenes(c, TEST_SEED, c.test_images)
  model = TinyDetector(1, len(detection.SHAPES), width=c.width, image_size=c.image_size,
                       anchor_scale=c.anchor_scale, rngs=nnx.Rngs(config.seed))
  anchors, counts = model.anchors()
  assign = jax.vmap(_assigner(c, anchors, counts))
  graphdef, params = nnx.split(model)
  tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, c.learning_rate, min(100, c.steps // 5), c.steps))
  opt_state = tx.init(params)

  def loss_fn(p, images, boxes, labels, valid):
    a = assign(boxes, valid)
    cls, box, ctr = nnx.merge(graphdef, p)(images)
    loss, aux = detection.atss_loss(cls, box, ctr, anchors, a.matched_gt, boxes, labels)
    return loss, (aux, jnp.sum(a.num_unassigned), jnp.sum(valid))

  @jax.jit
  def step(p, s, images, boxes, labels, valid):
    (loss, extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, images, boxes, labels, valid)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss, extra

  rng = np.random.default_rng(config.seed)
  unassigned = total_gt = 0
  losses = []
  for _ in range(c.steps):
    idx = rng.integers(0, c.train_images, c.batch)
    params, opt_state, loss, (aux, un, ng) = step(params, opt_state, train.images[idx], train.boxes[idx],
                                                  train.labels[idx], train.valid[idx])
    losses.append(float(loss))
    unassigned += int(un)
    total_gt += int(ng)
  train_s = time.monotonic() - t0
  if not np.isfinite(losses).all():
    raise FloatingPointError(f"non-finite training loss at step {int(np.argmin(np.isfinite(losses)))}")
  forward = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
  preds = ([], [], [])
  for start in range(0, c.test_images, 50):
    cls, box, ctr = forward(params, test.images[start:start + 50])
    for i in range(cls.shape[0]):
      for out, v in zip(preds, postprocess(cls[i], box[i], ctr[i], anchors)):
        out.append(v)
  gts = [test.boxes[i][test.valid[i]] for i in range(c.test_images)]
  gls = [test.labels[i][test.valid[i]] for i in range(c.test_images)]
  ap = detection.coco_average_precision(*preds, gts, gls, num_classes=len(detection.SHAPES))
  return {"assigner": c.assigner, "ap": ap["ap"], "ap50": ap["ap50"], "ap75": ap["ap75"],
          "unassigned_gt_fraction": unassigned / max(total_gt, 1), "final_loss": float(np.mean(losses[-50:])),
          "train_seconds": train_s, "wall_time_s": round(time.monotonic() - t0, 2)}
