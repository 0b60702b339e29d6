"""Mesa's train-step memory and time against the float ViT and against rematerialising every block.

Three steps of the same ViT shape (value_and_grad of the cross-entropy, then an Adam update), at two
batch sizes:

- ``fp32``: `jaxdyn.models.ViT` (float activations saved for the backward pass);
- ``mesa``: ``ViT(mesa=True)``: exact forward, 8-bit saved activations (`jaxdyn.memory`);
- ``remat``: the float ViT with every block under ``jax.checkpoint`` (only block inputs saved; the
  backward recomputes each block's forward).

For each, XLA's ``memory_analysis()`` of the compiled step gives its temp bytes (deterministic: the
activations and the backward's buffers; parameters and optimizer state are arguments), and the
median wall time of ``--reps`` calls its step time, the three steps timed in alternation (round by
round) so that machine load affects them alike. Mesa's goals: temp <= 0.35 of the float step's and
time <= 1.3 of it, at the larger batch.

XLA:CPU undoes ``jax.checkpoint`` unless its ``cse_barrier_expander`` pass is off (see
`jaxdyn.memory._plans`): without the flag the remat step measured exactly the float step's temp bytes
(1.000x); this script turns the pass off before JAX starts (`jaxdyn.memory.CPU_REMAT_XLA_FLAG`). Mesa's
figures are the same with and without it (--small: temp 0.472x either way).

Measured here (2 cores, 2026-12-01, 16 x 16 inputs, patch 4, width 64, depth 4, 4 heads, with the
flag; other jobs were running): batch 128: Mesa temp 0.282x the float step (80 vs 284 MiB), time
0.94x; remat 0.342x, 0.95x. Batch 512: mesa_temp_ratio 0.283 (322 vs 1,136 MiB), mesa_time_ratio
0.815; remat 0.342x, 0.91x. Mesa is not faster than the float step by itself: the float ViT's
attention is flax's ``MultiHeadAttention``, slower here than Mesa's fused one (``--small``, batch 32:
Mesa 1.2-1.45x the float step's time). The Pallas quantize kernel was not timed on a GPU (none was
lent to this work).

Run: .venv/bin/python benchmarks/memory.py [--small] (the last line is machine-readable).
"""

from __future__ import annotations

import os

# Before JAX creates its CPU client (jaxdyn.memory.CPU_REMAT_XLA_FLAG; checked against it below).
_FLAG = "--xla_disable_hlo_passes=cse_barrier_expander"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jaxdyn.memory import CPU_REMAT_XLA_FLAG  # noqa: E402
from jaxdyn.models import ViT  # noqa: E402

assert _FLAG == CPU_REMAT_XLA_FLAG, "keep the flag in step with jaxdyn.memory.CPU_REMAT_XLA_FLAG"

KINDS = ("fp32", "mesa", "remat")


def features_remat(model: ViT, x):
  """The float ViT's features with each block under ``jax.checkpoint``."""
  t = model.patch(x)
  b = t.shape[0]
  t = t.reshape(b, t.shape[1] * t.shape[2], t.shape[-1])
  t = jnp.concatenate([jnp.broadcast_to(model.cls[...], (b, 1, t.shape[-1])), t], axis=1) + model.pos[...]
  for blk in model.blocks:
    gd, state = nnx.split(blk)
    t = jax.checkpoint(lambda s, t, gd=gd: nnx.merge(gd, s)(t))(state, t)
  return model.norm(t[:, 0])


def make_step(kind: str, args):
  model = ViT(args.channels, 10, image_size=args.image, patch_size=args.patch, dim=args.dim, depth=args.depth,
              num_heads=args.heads, mesa=kind == "mesa", rngs=nnx.Rngs(0))
  gd, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(1e-3)

  def step(params, rest, opt_state, x, y, key):
    def loss_fn(params):
      m = nnx.merge(gd, params, rest, copy=True)
      logits = m.head(features_remat(m, x)) if kind == "remat" else m(x, train=True, key=key)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, nnx.split(m, nnx.Param, ...)[2]

    (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_rest, opt_state, loss

  return jax.jit(step), (params, rest, tx.init(params))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--small", action="store_true", help="a quick smoke run (tiny shapes, 3 reps)")
  p.add_argument("--batches", type=int, nargs=2, default=(128, 512))
  p.add_argument("--image", type=int, default=16)
  p.add_argument("--patch", type=int, default=2)
  p.add_argument("--channels", type=int, default=1)
  p.add_argument("--dim", type=int, default=64)
  p.add_argument("--depth", type=int, default=4)
  p.add_argument("--heads", type=int, default=4)
  p.add_argument("--reps", type=int, default=10)
  args = p.parse_args()
  if args.small:
    args.batches, args.image, args.dim, args.depth, args.heads, args.reps = (16, 32), 8, 32, 2, 2, 3
  tokens = (args.image // args.patch) ** 2 + 1
  print(f"ViT {args.image}x{args.image}x{args.channels}, patch {args.patch} ({tokens} tokens), width {args.dim}, "
        f"depth {args.depth}, {args.heads} heads; backend {jax.default_backend()}")
  ratios = {}
  for batch in args.batches:
    kx, ky = jax.random.split(jax.random.key(batch))
    x = jax.random.normal(kx, (batch, args.image, args.image, args.channels))
    y = jax.random.randint(ky, (batch,), 0, 10)
    key = jax.random.key(1)
    compiled, states, temp = {}, {}, {}
    for kind in KINDS:
      fn, state = make_step(kind, args)
      compiled[kind] = fn.lower(*state, x, y, key).compile()
      states[kind] = state
      temp[kind] = compiled[kind].memory_analysis().temp_size_in_bytes
      jax.block_until_ready(compiled[kind](*state, x, y, key))  # warm-up
    times = {k: [] for k in KINDS}
    for _ in range(args.reps):  # alternate the three steps, round by round
      for kind in KINDS:
        t0 = time.perf_counter()
        jax.block_until_ready(compiled[kind](*states[kind], x, y, key))
        times[kind].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for kind in KINDS:
      print(f"batch {batch:4d} {kind:5s}: temp {temp[kind] / 2**20:8.2f} MiB ({temp[kind] / temp['fp32']:.3f}x fp32), "
            f"step {1e3 * med[kind]:7.2f} ms ({med[kind] / med['fp32']:.3f}x fp32)")
    ratios = {"temp": temp["mesa"] / temp["fp32"], "time": med["mesa"] / med["fp32"],
              "remat_temp": temp["remat"] / temp["fp32"], "remat_time": med["remat"] / med["fp32"]}
  print(f"remat_temp_ratio {ratios['remat_temp']:.3f} remat_time_ratio {ratios['remat_time']:.3f} "
        f"(batch {args.batches[-1]})")
  print(f"mesa_time_ratio {ratios['time']:.3f} (goal <= 1.3, batch {args.batches[-1]})")
  print(f"mesa_temp_ratio {ratios['temp']:.3f}")


if __name__ == "__main__":
  main()
