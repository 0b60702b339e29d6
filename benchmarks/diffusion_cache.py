"""HarmoniCa's block cache: DiT sampling time with blocks reused against computing every block.

`jaxdyn.diffusion.cached_sampler` runs the EDM Heun sampler of a `jaxdyn.models.DiT` one backbone block at
a time; where its boolean schedule says "reuse", the block's cached residual is added instead of
computing the block. Under ``jit`` each distinct schedule row is its own network behind a ``lax.switch``,
so a reused block should cost nothing. This measures whether it does, for three samplers of the same
untrained DiT (the HarmoniCa claim's architecture, ``configs/harmonica_digits.py``: 2 x 2 patches, width
64, 4 blocks, 4 heads, no mixer) and the same noise:

- ``uncached``: `jaxdyn.diffusion.heun_sampler` with `dit_denoiser` (the reference);
- ``cache, every block``: `cached_sampler` with an all-True schedule (the cache's own overhead);
- ``cache, interval N``: `cached_sampler` with `fixed_interval_schedule(..., N)` (cache ratio near
  ``1 - 1/N``), for ``--intervals``.

At two sizes: the claim's 8 x 8 digits (16 tokens, batch 500: its 50 samples per class) and
``--large_image`` (default 32 x 32: 256 tokens, batch ``--large_batch``), where the blocks dominate. Each
sampler is compiled and warmed up first; then ``--rounds`` rounds time the samplers in turn
(`benchmarks._timing.timed`, median of ``--reps`` calls) and a sampler's time is its median over rounds.

Measured here (2 cores, 2026-12-01, machine otherwise idle; 10 Heun steps = 19 denoiser calls; 5 rounds x 3
calls; time as a fraction of the uncached sampler's):

  size                  sampler               ratio        ms   time x
  8 x 8, batch 500      uncached              0.000     925.1    1.000
                        cache, every block    0.000     867.2    0.937
                        cache, interval 2     0.474     451.8    0.488
                        cache, interval 3     0.632     323.4    0.350
  32 x 32, batch 32     uncached              0.000    2356.6    1.000
                        cache, every block    0.000    2328.1    0.988
                        cache, interval 2     0.474    1216.2    0.516
                        cache, interval 3     0.632     886.2    0.376

The time follows the fraction of blocks computed (1 - ratio) within a few percent, and the cache with
every block computing costs nothing over the plain sampler and equals it bit for bit (checked each
run). The DiT's weights are its initialisation plus N(0, 0.02) noise (an untrained DiT's output layer
is all zeros); sampling time does not depend on the weights' values. About 4 minutes.

Run: .venv/bin/python benchmarks/diffusion_cache.py   (the last line is machine-readable: interval 2's
sampling time over the uncached sampler's at the larger image)
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

from configs.harmonica_digits import get_config  # noqa: E402
from jaxdyn import diffusion  # noqa: E402
from jaxdyn.models import DiT  # noqa: E402


def samplers(model, labels, num_steps, sigma_data, intervals):
  """``{name: (jitted fn of (params, noise), cache ratio)}``.

  The parameters are arguments, not constants closed over: XLA:CPU (jax 0.10.2) miscompiles a matmul
  by an all-zero constant at batch >= 256 (BUILD.md, "XLA:CPU gotchas"), and an untrained DiT's final
  layer is all zeros (adaLN-Zero).
  """
  rows = diffusion.num_cache_steps(num_steps)
  depth = len(model.blocks)
  graphdef, _, rest = nnx.split(model, nnx.Param, ...)  # rest: the fixed position table

  def uncached(params, z):
    denoiser = diffusion.dit_denoiser(nnx.merge(graphdef, params, rest), labels, sigma_data=sigma_data)
    return diffusion.heun_sampler(denoiser, z, num_steps=num_steps)

  out = {"uncached": (jax.jit(uncached), 0.0)}
  schedules = {"cache, every block": np.ones((rows, depth), bool)}
  for n in intervals:
    schedules[f"cache, interval {n}"] = np.asarray(diffusion.fixed_interval_schedule(rows, depth, n))
  for name, sched in schedules.items():
    def cached(params, z, s=sched):
      return diffusion.cached_sampler(nnx.merge(graphdef, params, rest), z, labels, s, num_steps=num_steps,
                                      sigma_data=sigma_data)
    out[name] = (jax.jit(cached), float(diffusion.cache_ratio(sched)))
  return out


def measure(image, batch, c, args):
  model = DiT(1, 10, image_size=image, patch_size=c.patch_size, dim=c.dim, depth=c.depth, num_heads=c.num_heads,
              mlp_ratio=c.mlp_ratio, mixer_depth=c.mixer_depth, rngs=nnx.Rngs(0))
  labels = jnp.arange(batch) % 10
  noise = jax.random.normal(jax.random.key(1), (batch, image, image, 1))
  # weights as after some training (an untrained DiT's output layer is zero: it would sample plain noise decay)
  params = nnx.state(model, nnx.Param)
  keys = iter(jax.random.split(jax.random.key(2), len(jax.tree.leaves(params))))
  params = jax.tree.map(lambda a: a + 0.02 * jax.random.normal(next(keys), a.shape, a.dtype), params)
  fns = samplers(model, labels, args.num_steps, c.sigma_data, args.intervals)
  ref = np.asarray(fns["uncached"][0](params, noise))
  exact = bool(np.array_equal(np.asarray(fns["cache, every block"][0](params, noise)), ref))
  times = {k: [] for k in fns}
  for _ in range(args.rounds):
    for k, (fn, _) in fns.items():
      times[k].append(timed(fn, params, noise, reps=args.reps))
  med = {k: statistics.median(v) for k, v in times.items()}
  return [(k, fns[k][1], med[k], med[k] / med["uncached"]) for k in fns], exact


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--reps", type=int, default=3)
  parser.add_argument("--num_steps", type=int, default=10)
  parser.add_argument("--intervals", type=int, nargs="+", default=[2, 3])
  parser.add_argument("--large_image", type=int, default=32)
  parser.add_argument("--large_batch", type=int, default=32)
  args = parser.parse_args()
  c = get_config().diffusion
  print(f"{'size':<22}{'sampler':<22}{'ratio':>7}{'ms':>10}{'time x':>9}")
  last = None
  for image, batch in ((8, 10 * c.samples_per_class), (args.large_image, args.large_batch)):
    rows, exact = measure(image, batch, c, args)
    label = f"{image} x {image}, batch {batch}"
    for i, (name, ratio, t, rel) in enumerate(rows):
      print(f"{label if i == 0 else '':<22}{name:<22}{ratio:>7.3f}{1e3 * t:>10.1f}{rel:>9.3f}")
      if name == "cache, interval 2":
        last = rel
    print(f"{'':<22}every block computing equals the uncached sampler bit for bit: {exact}")
  print(f"cache_interval2_over_uncached_time={last:.3f}")


if __name__ == "__main__":
  main()
