"""Sparse-training overhead: GraNet-wrapped Adam against plain Adam on the default MNIST-1D CNN.

Both train steps (forward, backward, update) are jitted on the default config's CNN (channels 32, 64,
hidden 128, batch 128), compiled and warmed up, then run in alternating blocks of ``--block`` steps
(plain, GraNet, plain, ...). GraNet's mask update runs every dT = 100 steps inside the step (its
``lax.cond``), so each block of 100 steps holds exactly one: the ratio includes the periodic work.
The medians of the per-block times are compared, so machine load affects both alike.

Run: .venv/bin/python benchmarks/sparse_overhead.py   (the last line is machine-readable; goal <= 1.10)
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdyn import models
from jaxdyn.sparsity import PruningSchedule, granet


def make_step(graphdef, tx):
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = nnx.merge(graphdef, p)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--block", type=int, default=100, help="steps per timed block (one mask update each)")
  ap.add_argument("--rounds", type=int, default=7)
  args = ap.parse_args()
  model = models.CNN(1, 10, spatial_dims=1, channels=(32, 64), hidden=128, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  x = jax.random.normal(jax.random.key(1), (128, 40))
  y = jax.random.randint(jax.random.key(2), (128,), 0, 10)
  total = args.block * (args.rounds + 1)
  sched = PruningSchedule(final_density=0.1, start_step=0, end_step=total, update_every=100)
  arms = {"adam": optax.adam(1e-3), "granet": granet(optax.adam(1e-3), schedule=sched)}
  runs = {}
  for name, tx in arms.items():
    p = jax.tree.map(jnp.copy, params)
    runs[name] = [make_step(graphdef, tx), p, tx.init(p)]

  def block(name):
    step, p, s = runs[name]
    t0 = time.perf_counter()
    for _ in range(args.block):
      p, s, loss = step(p, s, x, y)
    jax.block_until_ready(loss)
    runs[name][1:] = [p, s]
    return time.perf_counter() - t0

  for name in arms:  # compile and warm up (the first block includes one mask update too)
    block(name)
  times = {name: [] for name in arms}
  for _ in range(args.rounds):
    for name in arms:
      times[name].append(block(name))
  med = {name: statistics.median(t) for name, t in times.items()}
  for name in arms:
    print(f"{name:8s} median {1e3 * med[name] / args.block:7.3f} ms/step over {args.rounds} blocks of {args.block}")
  density = float(runs["granet"][2].density)
  print(f"granet density after {args.block * (args.rounds + 1)} steps: {density:.3f}")
  print(f"sparse_step_ratio={med['granet'] / med['adam']:.3f}")


if __name__ == "__main__":
  main()
