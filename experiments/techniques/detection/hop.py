"""Historical object prediction (HoP) on synthetic moving-shape sequences: a claim runner.

One run (``config.hop``, ``config.seed``): a `jaxdyn.models.TemporalDetector` (per-frame backbone, fusion
of the frames ``t-1`` and ``t``, TinyDetector's head) trained with Adam on a fixed set of
`jaxdyn.detection.synthetic_sequences` of ``hop_frames`` frames (drawn from ``seed``), mini-batches drawn
from ``seed``, with the ATSS loss (`jaxdyn.detection.atss_assign`, `jaxdyn.detection.atss_loss`) on the
objects of the last frame ``t``. With ``hop_weight > 0`` the model also has the HoP branch (a
`jaxdyn.detection.TemporalDecoder` over the ``hop_frames`` per-frame features building the pseudo feature
of frame ``t - hop_k`` without reading it, and an object decoder of its own), trained with the same ATSS
loss on the objects of frame ``t - hop_k``: total `jaxdyn.detection.hop_loss` ``= L(t) + hop_weight *
L_hop(t - k)``. With ``hop_weight == 0`` the branch is not built (the baseline). Both arms start from the
same inference weights (the branch is created last) and see the same mini-batches.

Evaluation on held-out sequences drawn from a seed no training run uses, with the inference path only
(``model(frames t-1, t)``; the HoP branch is never called): ATSS's post-processing
(`experiments.techniques.detection.scenes.postprocess`), then `jaxdyn.detection.coco_average_precision`
at frame ``t``, over all test sequences and over those whose frame ``t`` is low-contrast. The inference
FLOPs are XLA's cost analysis of the compiled inference call on one window.
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
from experiments.techniques.detection.scenes import postprocess
from jaxdyn import detection
from jaxdyn.models import TemporalDetector

TEST_SEED = 876_543  # the held-out sequences: the same for every run


def _sequences(c, seed, n):
  return detection.synthetic_sequences(seed, n, c.hop_frames, image_size=c.image_size, max_objects=c.max_objects,
                                       min_size=c.min_size, max_size=c.max_size, noise=c.noise,
                                       max_speed=c.max_speed, dim_rate=c.dim_rate, dim_factor=c.dim_factor)


def build_model(c, seed: int) -> TemporalDetector:
  """The run's detector; the HoP branch exists only when ``c.hop_weight > 0``."""
  return TemporalDetector(1, len(detection.SHAPES), width=c.width, image_size=c.image_size,
                          anchor_scale=c.anchor_scale, num_frames=c.num_frames, hop=c.hop_weight > 0,
                          hop_frames=c.hop_frames, hop_k=c.hop_k, hop_long_term=c.hop_long_term,
                          rngs=nnx.Rngs(seed))


def inference_flops(model: TemporalDetector) -> float:
  """XLA's FLOPs of the compiled inference call (``model(x)``, one window of ``num_frames`` frames)."""
  graphdef, params = nnx.split(model)
  x = jnp.zeros((1, model.num_frames, model.image_size, model.image_size, model.in_channels))
  compiled = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x)).lower(params, x).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def inference_param_count(params) -> int:
  """Parameters outside the HoP branch (``hop_decoder``, ``hop_head``): those the inference call uses."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return int(sum(np.size(v) for path, v in flat if not str(getattr(path[0], "key", path[0])).startswith("hop_")))


def _predict(forward, params, seqs, anchors, c):
  preds = ([], [], [])
  x = seqs.images[:, c.hop_frames - c.num_frames:]
  for start in range(0, len(x), 50):
    cls, box, ctr = forward(params, x[start:start + 50])
    for i in range(cls.shape[0]):
      for out, v in zip(preds, postprocess(cls[i], box[i], ctr[i], anchors)):
        out.append(v)
  return preds


def _ap_at_last_frame(preds, seqs, idx):
  gts = [seqs.boxes[i, -1][seqs.valid[i, -1]] for i in idx]
  gls = [seqs.labels[i, -1][seqs.valid[i, -1]] for i in idx]
  return detection.coco_average_precision(*([p[i] for i in idx] for p in preds), gts, gls,
                                          num_classes=len(detection.SHAPES))


@caches_results
def hop_runner(config, workdir: str) -> dict[str, Any]:
  """One (hop_weight, seed) run; see the module docstring."""
  del workdir
  c = config.hop
  t0 = time.monotonic()
  train = _sequences(c, config.seed, c.train_sequences)
  test = _sequences(c, TEST_SEED, c.test_sequences)
  model = build_model(c, config.seed)
  flops = inference_flops(model)
  anchors, counts = model.anchors()
  assign = jax.vmap(lambda g, v: detection.atss_assign(anchors, g, v, num_anchors_per_level=counts, topk=c.topk))
  graphdef, params = nnx.split(model)
  tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, c.learning_rate, min(100, c.steps // 5), c.steps))
  opt_state = tx.init(params)
  use_hop = c.hop_weight > 0
  first = 0 if use_hop else c.hop_frames - c.num_frames  # the baseline never computes the older frames

  def det_loss(outs, boxes, labels, valid):
    a = assign(boxes, valid)
    loss, _ = detection.atss_loss(*outs, anchors, a.matched_gt, boxes, labels)
    return loss

  def loss_fn(p, images, boxes, labels, valid):
    m = nnx.merge(graphdef, p)
    feats = m.features(images[:, first:])
    main = det_loss(m.detect(feats), boxes[:, -1], labels[:, -1], valid[:, -1])
    if not use_hop:
      return main, (main, jnp.zeros(()))
    h = c.hop_frames - 1 - c.hop_k
    hist = det_loss(m.historical(feats), boxes[:, h], labels[:, h], valid[:, h])
    return detection.hop_loss(main, hist, c.hop_weight), (main, hist)

  @jax.jit
  def step(p, s, images, boxes, labels, valid):
    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, images, boxes, labels, valid)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss, parts

  rng = np.random.default_rng(config.seed)
  main_losses, hist_losses = [], []
  for _ in range(c.steps):
    idx = rng.integers(0, c.train_sequences, c.batch)
    params, opt_state, loss, (main, hist) = step(params, opt_state, train.images[idx], train.boxes[idx],
                                                 train.labels[idx], train.valid[idx])
    main_losses.append(float(main))
    hist_losses.append(float(hist))
    if not np.isfinite(float(loss)):
      raise FloatingPointError(f"non-finite training loss at step {len(main_losses) - 1}")
  train_s = time.monotonic() - t0
  forward = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))  # __call__: the HoP branch is never called
  preds = _predict(forward, params, test, anchors, c)
  ap = _ap_at_last_frame(preds, test, range(c.test_sequences))
  dim = np.flatnonzero(test.dimmed[:, -1])
  ap_dim = _ap_at_last_frame(preds, test, dim)["ap"] if dim.size else None
  return {"hop_weight": c.hop_weight, "ap": ap["ap"], "ap50": ap["ap50"], "ap75": ap["ap75"],
          "ap_low_contrast": ap_dim, "inference_flops": flops,
          "inference_params": inference_param_count(params), "params": int(sum(np.size(v) for v in
                                                                                   jax.tree.leaves(params))),
          "final_main_loss": float(np.mean(main_losses[-50:])), "final_hop_loss": float(np.mean(hist_losses[-50:])),
          "train_seconds": train_s, "wall_time_s": round(time.monotonic() - t0, 2)}
