"""SLTT memory and step time against BPTT: a spiking VGG-11 (or ResNet-18) at T = 4, 6, 8, 16, 32.

For each mode (bptt, sltt, sltt_k with K = 2) and T, one jitted train step (value_and_grad of the
authors' loss through `jaxdyn.snn.spiking_loss`, then an SGD update) is compiled; XLA's
``memory_analysis()`` gives its temp bytes (deterministic), and the median wall time of ``--reps`` calls
gives its step time. The modes are timed interleaved at each T so machine load affects them alike.

SLTT's claim: temp memory independent of T (a = mem(T=32) / mem(T=4) <= 1.1) while BPTT's grows
linearly; at T = 6 SLTT needs <= 30% of BPTT's memory (c; the paper reports > 70% less on ImageNet)
and less time (d < 1). SLTT's memory is one step's activations plus parameter-sized gradient
accumulators, so c falls as activations outweigh parameters: the small default sizes (for a quick
``make bench``) leave c above 0.3, while ``--width 16 --size 32 --batch 32`` is closer to the paper's
activation-dominated regime. The convolutions are `jaxdyn.models.conv2d` (lowered per backend and shape).

Run: .venv/bin/python benchmarks/sltt_memory.py [--model resnet18] [--width 16] [--size 32]
(the last line is machine-readable).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdyn.snn import SpikingPreActResNet18, SpikingVGG11, spiking_loss

MODES = (("bptt", None), ("sltt", None), ("sltt_k", 2))


def build(model_name: str, width: int, num_steps: int, seed: int = 0):
  cls = {"vgg11": SpikingVGG11, "resnet18": SpikingPreActResNet18}[model_name]
  return cls(3, 10, width=width, num_steps=num_steps, rngs=nnx.Rngs(seed))


def make_step(graphdef, tx, mode, k):
  def step(params, rest, opt_state, x, y, key):
    def loss_fn(p):
      model = nnx.merge(graphdef, p, rest, copy=True)
      loss, _ = spiking_loss(model, x, y, key=key, mode=mode, k=k)
      return loss, nnx.split(model, nnx.Param, ...)[2]

    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), rest, opt_state, loss

  return jax.jit(step)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--model", choices=("vgg11", "resnet18"), default="vgg11")
  ap.add_argument("--width", type=int, default=8, help="first-stage channels (64 in the paper)")
  ap.add_argument("--size", type=int, default=16, help="input height = width")
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--steps", default="4,6,8,16,32", help="the T values (must include 4, 6 and 32)")
  ap.add_argument("--reps", type=int, default=3, help="timed calls per mode and T")
  args = ap.parse_args()
  ts = [int(t) for t in args.steps.split(",")]
  if not {4, 6, 32} <= set(ts):
    raise ValueError(f"--steps: must include 4, 6 and 32, got {ts}")

  print(f"backend {jax.default_backend()}, {args.model} width {args.width}, input {args.size}x{args.size}x3, "
        f"batch {args.batch}, SGD step; temp = XLA temp bytes of the compiled step")
  x = jax.random.uniform(jax.random.key(0), (args.batch, args.size, args.size, 3))
  y = jnp.arange(args.batch) % 10
  tx = optax.sgd(0.1, momentum=0.9)
  mem, sec = {}, {}
  for t in ts:
    graphdef, params, rest = nnx.split(build(args.model, args.width, t), nnx.Param, ...)
    opt_state = tx.init(params)
    steps = {}
    for mode, k in MODES:
      step = make_step(graphdef, tx, mode, k)
      compiled = step.lower(params, rest, opt_state, x, y, jax.random.key(1)).compile()
      mem[mode, t] = compiled.memory_analysis().temp_size_in_bytes
      jax.block_until_ready(compiled(params, rest, opt_state, x, y, jax.random.key(1)))  # warm-up
      steps[mode] = compiled
    times = {mode: [] for mode, _ in MODES}
    for r in range(args.reps):
      for mode, _ in MODES:
        t0 = time.perf_counter()
        jax.block_until_ready(steps[mode](params, rest, opt_state, x, y, jax.random.key(2 + r)))
        times[mode].append(time.perf_counter() - t0)
    for mode, _ in MODES:
      sec[mode, t] = statistics.median(times[mode])
    print(f"  T={t}: " + ", ".join(f"{m} {mem[m, t] / 2**20:.2f} MiB {sec[m, t] * 1e3:.0f} ms"
                                   for m, _ in MODES), flush=True)

  print()
  print("| T | " + " | ".join(f"{m} temp MiB | {m} ms" for m, _ in MODES) + " | sltt/bptt mem | sltt/bptt time |")
  print("|---|" + "---|---|" * len(MODES) + "---|---|")
  for t in ts:
    cells = [f"{mem[m, t] / 2**20:.2f} | {sec[m, t] * 1e3:.0f}" for m, _ in MODES]
    print(f"| {t} | " + " | ".join(cells) +
          f" | {mem['sltt', t] / mem['bptt', t]:.3f} | {sec['sltt', t] / sec['bptt', t]:.3f} |")
  a = mem["sltt", 32] / mem["sltt", 4]
  b = mem["bptt", 32] / mem["bptt", 4]
  c = mem["sltt", 6] / mem["bptt", 6]
  d = sec["sltt", 6] / sec["bptt", 6]
  print()
  print(f"goals: a <= 1.1 {'met' if a <= 1.1 else 'NOT met'}, c <= 0.3 {'met' if c <= 0.3 else 'NOT met'}, "
        f"d < 1 {'met' if d < 1 else 'NOT met'}")
  print(f"sltt_mem_T32_over_T4={a:.3f} bptt_mem_T32_over_T4={b:.3f} sltt_over_bptt_mem_T6={c:.3f} "
        f"sltt_over_bptt_time_T6={d:.3f}")


if __name__ == "__main__":
  main()
