"""Deferred patch masking: DiT train-step time, FLOPs and temp memory at 0% and 75% masking, with and without mixer.

The micro-budget diffusion claims (``configs/microdiff_digits.py``) train a class-conditional
`jaxdyn.models.DiT` as an EDM denoiser with 75% of its patches masked; the claim counts the FLOPs saved,
this measures the time and memory too. Three arms, each the claim runner's train step
(`experiments.techniques.diffusion.micro`: log-normal noise levels, `jaxdyn.diffusion.edm_preconditioning`,
value_and_grad of `jaxdyn.diffusion.edm_loss` on the kept patches, then gradient clipping and Adam with
its warm-up + cosine schedule):

- ``0% + mixer``: unmasked (``keep=None``) with the 1-block patch-mixer: the claim's FLOPs reference;
- ``75% + mixer``: deferred masking: the mixer on all T patches, the 4 backbone blocks on T / 4;
- ``75% no mixer``: plain masking (``mixer_depth=0``): every block on T / 4 patches.

At two sizes: the claim's (8 x 8 digits, 2 x 2 patches: 16 tokens, width 64, 4 heads, MLP ratio 2,
batch 32, read from its config; the first batch of the training digits) and a larger image
(``--large_image``, default 32 x 32 random normal data, ``--large_patch`` 2: 256 tokens, the same network
and batch), where attention and the per-token layers dominate and masking can pay. Each step is compiled
and warmed up first; XLA's cost analysis gives its FLOPs and ``compiled.memory_analysis()`` its temp bytes
(activations and the backward's buffers). Then ``--rounds`` rounds, each timing the three steps in turn
with `benchmarks._timing.timed` (median of ``--reps`` calls); an arm's time is the median over its rounds,
so machine load affects the arms alike.

Measured here (2 cores, 2026-12-01, a test suite and other jobs running; 5 rounds x 3 calls; step time,
FLOPs, temp memory as fractions of the unmasked step's):

  size                 arm            step ms  GFLOP  temp MiB  time x  FLOP x  temp x
  8 x 8, 16 tokens     0% + mixer       17.2   0.597    14.5    1.000   1.000   1.000
                       75% + mixer       9.7   0.255     3.9    0.565   0.426   0.267
                       75% no mixer      5.5   0.136     1.4    0.319   0.228   0.097
  32 x 32, 256 tokens  0% + mixer     1004    17.07    768      1.000   1.000   1.000
                       75% + mixer     303     5.58    215      0.302   0.327   0.281
                       75% no mixer    100     2.17     71      0.100   0.127   0.093

At the claim's 16 tokens a step is milliseconds and the time saved stays well below the FLOPs saved
(fixed costs such as the Adam update and dispatch, presumably; not separated here); at 256 tokens the
time follows the FLOPs (attention's T^2 falls 16x on the backbone), and deferred masking costs 3x plain
masking's time, its 1-block mixer on all 256 tokens being most of what remains (3.4 of its 5.6 GFLOP).
About 90 s in all (about 50 s of it compiling the six steps).

Run: .venv/bin/python benchmarks/diffusion_masking.py   (the last line is machine-readable: deferred
masking's step time over the unmasked step's at the larger image)
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _timing
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the claim's config
from _timing import timed  # noqa: E402

from configs.microdiff_digits import get_config  # noqa: E402
from experiments.techniques.diffusion import micro  # noqa: E402
from jaxdyn.data import load_dataset  # noqa: E402
from jaxdyn.models import DiT  # noqa: E402

ARMS = (("0% + mixer", 0.0, True), ("75% + mixer", 0.75, True), ("75% no mixer", 0.75, False))


def make_step(c, image_size: int, patch_size: int, mask_ratio: float, mixer: bool, xb, yb):
  """The claim runner's train step (`micro.make_train_step`) for one arm, compiled; returns ``(compiled, args)``."""
  model = DiT(1, 10, image_size=image_size, patch_size=patch_size, dim=c.dim, depth=c.depth, num_heads=c.num_heads,
              mlp_ratio=c.mlp_ratio, mixer_depth=c.mixer_depth if mixer else 0, rngs=nnx.Rngs(0))
  params = nnx.state(model)
  opt = micro.make_optimizer(c.learning_rate, c.steps, c.finetune_steps)
  args = (params, opt.init(params), xb, yb, jax.random.key(0))
  return jax.jit(micro.make_train_step(c, model, opt, mask_ratio)).lower(*args).compile(), args


def main():
  c = get_config().diffusion
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--large_image", type=int, default=32)
  parser.add_argument("--large_patch", type=int, default=c.patch_size)
  parser.add_argument("--batch", type=int, default=c.batch)
  parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
  parser.add_argument("--reps", type=int, default=3, help="timed calls per round (median)")
  args = parser.parse_args()

  digits = load_dataset("digits")
  kx, ky = jax.random.split(jax.random.key(0))
  settings = {
      "claim": (8, c.patch_size, jnp.asarray(2.0 * np.asarray(digits.train.x[:args.batch], np.float32) - 1.0),
                jnp.asarray(np.asarray(digits.train.y[:args.batch], np.int32))),
      "large": (args.large_image, args.large_patch,
                jax.random.normal(kx, (args.batch, args.large_image, args.large_image, 1)),
                jax.random.randint(ky, (args.batch,), 0, 10)),
  }
  print(f"DiT width {c.dim}, {c.depth} backbone blocks (+{c.mixer_depth} mixer), {c.num_heads} heads, MLP ratio "
        f"{c.mlp_ratio}; EDM loss, clipped Adam; batch {args.batch}; backend {jax.default_backend()}; "
        f"{args.rounds} rounds x median of {args.reps} calls")
  print(f"{'size':<6} {'image':>5} {'tokens':>6} {'arm':<13} {'median ms':>10} {'min ms':>8} {'GFLOP':>8} "
        f"{'temp MiB':>9} {'time x':>7} {'FLOP x':>7} {'temp x':>7}")
  ratios = {}
  for name, (image, patch, xb, yb) in settings.items():
    rows = []
    for arm, mask_ratio, mixer in ARMS:
      compiled, step_args = make_step(c, image, patch, mask_ratio, mixer, xb, yb)
      rows.append(dict(arm=arm, fn=compiled, args=step_args, flops=micro.compiled_flops(compiled),
                       temp=compiled.memory_analysis().temp_size_in_bytes, times=[]))
    for _ in range(args.rounds):
      for row in rows:
        row["times"].append(timed(row["fn"], *row["args"], reps=args.reps))
    for r in rows:
      r["median"] = statistics.median(r["times"])
    ref = rows[0]
    tokens = (image // patch) ** 2
    for r in rows:
      print(f"{name:<6} {image:>5} {tokens:>6} {r['arm']:<13} {1e3 * r['median']:>10.2f} {1e3 * min(r['times']):>8.2f} "
            f"{r['flops'] / 1e9:>8.3f} {r['temp'] / 2**20:>9.2f} {r['median'] / ref['median']:>7.3f} "
            f"{r['flops'] / ref['flops']:>7.3f} {r['temp'] / ref['temp']:>7.3f}")
    ratios[name] = {r["arm"]: r["median"] / ref["median"] for r in rows}
  print(f"masked_plain_over_unmasked_step_time_small={ratios['claim']['75% no mixer']:.3f} "
        f"masked_plain_over_unmasked_step_time_large={ratios['large']['75% no mixer']:.3f}")
  print(f"masked_mixer_over_unmasked_step_time_small={ratios['claim']['75% + mixer']:.3f}")
  print(f"masked_mixer_over_unmasked_step_time_large={ratios['large']['75% + mixer']:.3f}")


if __name__ == "__main__":
  main()
