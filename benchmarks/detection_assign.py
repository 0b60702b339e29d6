"""ATSS against IoU-threshold anchor assignment: TinyDetector train-step time and the assigners alone.

The claim ``atss_beats_iou_assignment`` (``configs/atss_scenes.py``) trains `jaxdyn.models.TinyDetector`
with the ATSS loss on anchors chosen by one of two assigners; this measures what the choice costs. At the
claim's scene size (64 x 64, batch 16, width 32, 1-4 shapes of 6-24 px, read from its config) and on a
larger canvas (``--sizes``, default 128 x 128: four times the anchors, the same shapes), four jitted
programs on one fixed batch of `jaxdyn.detection.synthetic_scenes`:

- ``step atss`` / ``step iou``: the claim runner's train step (`experiments.techniques.detection.scenes`):
  value_and_grad of the assignment (vmapped over the batch; no gradient flows through it) + the forward
  pass + `jaxdyn.detection.atss_loss`, then its Adam update (warm-up + cosine schedule);
- ``assign atss`` / ``assign iou``: the vmapped assigner alone on the batch's boxes
  (`jaxdyn.detection.atss_assign`, k = 9 per level; `jaxdyn.detection.iou_assign`, 0.5 / 0.4 with
  low-quality matches), as the step calls it.

All are compiled and warmed up first, then timed in ``--rounds`` rounds, each round timing every program
in turn (step atss, step iou, assign atss, assign iou: ABAB) with `benchmarks._timing.timed` (median of
``--reps`` calls); a program's time is the median over its rounds, so machine load affects the arms
alike. FLOPs come from XLA's cost analysis of the compiled programs; the table also gives the anchors'
positives per image and the unassigned ground truths on the batch.

Measured here (2 cores, 2026-12-01, a test suite and other jobs running; 7 rounds x 5 calls): ATSS's
assigner alone takes about 2x the IoU rule's (64 x 64: 0.43 vs 0.21 ms; 128 x 128: 0.94 vs 0.42 ms per
batch of 16), but it is 1-3% of the train step, which is the convolutions' (629 MFLOP at 64 x 64, 2.6 GFLOP
at 128 x 128; the assigners under 3.1 MFLOP): ATSS / IoU step time 0.960 at 64 x 64 (13.4 vs 13.9 ms) and
0.949 at 128 x 128 (88 vs 93 ms), within this machine's noise of 1. About 35 s in all.

Run: .venv/bin/python benchmarks/detection_assign.py   (the last line is machine-readable: the step-time
ratio at the claim's size; the line before it gives it on the larger canvas)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _timing
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the claim's config
from _timing import timed  # noqa: E402

from configs.atss_scenes import get_config  # noqa: E402
from jaxdyn import detection  # noqa: E402
from jaxdyn.models import TinyDetector  # noqa: E402

ASSIGNERS = ("atss", "iou")


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def make_programs(c, image_size: int, batch: int):
  """The jitted train step and the vmapped assigner of each arm, compiled on one batch of scenes."""
  scenes = detection.synthetic_scenes(0, batch, image_size=image_size, max_objects=c.max_objects,
                                      min_size=c.min_size, max_size=c.max_size, noise=c.noise)
  images, boxes, labels, valid = (jnp.asarray(a) for a in scenes)
  model = TinyDetector(1, len(detection.SHAPES), width=c.width, image_size=image_size,
                       anchor_scale=c.anchor_scale, rngs=nnx.Rngs(0))
  anchors, counts = model.anchors()
  graphdef, params = nnx.split(model)
  tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, c.learning_rate, min(100, c.steps // 5), c.steps))
  opt_state = tx.init(params)
  assigners = {
      "atss": lambda g, v: detection.atss_assign(anchors, g, v, num_anchors_per_level=counts, topk=c.topk),
      "iou": lambda g, v: detection.iou_assign(anchors, g, v),
  }
  rows = []
  for name in ASSIGNERS:
    assign = jax.vmap(assigners[name])

    def loss_fn(p, images, boxes, labels, valid, assign=assign):  # as the claim runner's
      a = assign(boxes, valid)
      cls, box, ctr = nnx.merge(graphdef, p)(images)
      loss, aux = detection.atss_loss(cls, box, ctr, anchors, a.matched_gt, boxes, labels)
      return loss, (aux, jnp.sum(a.num_unassigned), jnp.sum(valid))

    def step(p, s, images, boxes, labels, valid, loss_fn=loss_fn):
      (loss, extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, images, boxes, labels, valid)
      updates, s = tx.update(grads, s, p)
      return optax.apply_updates(p, updates), s, loss, extra

    step_args = (params, opt_state, images, boxes, labels, valid)
    compiled_step = jax.jit(step).lower(*step_args).compile()
    compiled_assign = jax.jit(assign).lower(boxes, valid).compile()
    a = compiled_assign(boxes, valid)
    stats = dict(pos=float(jnp.sum(a.matched_gt >= 0)) / batch, unassigned=int(jnp.sum(a.num_unassigned)))
    rows.append(dict(arm=f"step {name}", fn=compiled_step, args=step_args, flops=_flops(compiled_step),
                     times=[], **stats))
    rows.append(dict(arm=f"assign {name}", fn=compiled_assign, args=(boxes, valid),
                     flops=_flops(compiled_assign), times=[], **stats))
  rows.sort(key=lambda r: r["arm"].split()[0] != "step")  # step atss, step iou, assign atss, assign iou
  return rows, anchors.shape[0], int(np.sum(scenes.valid))


def main():
  c = get_config().detection
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=(c.image_size, 2 * c.image_size),
                      help="canvas sides (the first is the claim's; the last line's ratio is at it)")
  parser.add_argument("--batch", type=int, default=c.batch)
  parser.add_argument("--rounds", type=int, default=7, help="alternating timing rounds")
  parser.add_argument("--reps", type=int, default=5, help="timed calls per round (median)")
  args = parser.parse_args()

  print(f"TinyDetector width {c.width}, anchors {c.anchor_scale:g} x stride (4, 8), batch {args.batch}, "
        f"1-{c.max_objects} shapes of {c.min_size}-{c.max_size} px; Adam; backend {jax.default_backend()}; "
        f"{args.rounds} rounds x median of {args.reps} calls")
  print(f"{'canvas':>7} {'anchors':>7} {'program':<12} {'median ms':>10} {'min ms':>8} {'MFLOP':>9} "
        f"{'pos/img':>8} {'unassigned gt':>14}")
  ratios = {}
  for size in args.sizes:
    rows, num_anchors, num_gt = make_programs(c, size, args.batch)
    for _ in range(args.rounds):
      for row in rows:
        row["times"].append(timed(row["fn"], *row["args"], reps=args.reps))
    med = {r["arm"]: statistics.median(r["times"]) for r in rows}
    for r in rows:
      print(f"{size:>7} {num_anchors:>7} {r['arm']:<12} {1e3 * med[r['arm']]:>10.3f} {1e3 * min(r['times']):>8.3f} "
            f"{r['flops'] / 1e6:>9.2f} {r['pos']:>8.2f} {r['unassigned']:>7} of {num_gt}")
    ratios[size] = dict(step=med["step atss"] / med["step iou"], assign=med["assign atss"] / med["assign iou"],
                        share=med["assign atss"] / med["step atss"])
  for size in args.sizes:
    r = ratios[size]
    print(f"{size}x{size}: ATSS / IoU step time {r['step']:.3f}, assigner alone {r['assign']:.3f}; "
          f"the ATSS assigner alone is {r['share']:.3f} of the ATSS step")
  print(f"atss_over_iou_step_time_{args.sizes[-1]}={ratios[args.sizes[-1]]['step']:.3f}")
  print(f"atss_over_iou_step_time={ratios[args.sizes[0]]['step']:.3f}")


if __name__ == "__main__":
  main()
