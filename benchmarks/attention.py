"""Sparse (LongGen's sink + window) against full causal attention: step time and compiled memory, 1k-8k.

For each sequence length L, one attention "step" is the forward and backward pass of
``sum(attention(q, k, v) * g)`` with respect to q, k and v (batch 1, 2 heads, head dim 64, float32):

- full: ``jax.nn.dot_product_attention(is_causal=True)`` (XLA's attention: on CPU the (L, L) score
  matrix);
- sparse: `jaxdyn.attention.block_sparse_attention(implementation="jnp")` on the sink + window
  pattern (64 sink tokens, a window of 1,024, 64 x 64 blocks): each query block gathers only the key
  blocks the layout lists.

Both are jitted, compiled and warmed up, then timed in alternation (median of ``--reps``); the
compiled step's temporary memory comes from ``jit(...).lower(...).compile().memory_analysis()``. The
Pallas kernel runs in interpret mode here (the only mode on CPU, far slower than either path), so it
is only checked against the jnp path at the smallest length, not timed. The last two lines are
machine-readable: ``sparse_over_full_time_8k`` and ``sparse_over_full_mem_8k``.

Measured here (2 cores, 2026-11-30; step time, compiled temp memory):

  L       full (XLA)          sparse (jnp path)    time ratio  memory ratio
  1024    113 ms    49 MiB    138 ms    66 MiB     1.22        1.35
  2048    420 ms   131 MiB    299 ms   148 MiB     0.71        1.13
  4096   1610 ms   518 MiB    614 ms   296 MiB     0.38        0.57
  8192   6421 ms  2060 MiB   1171 ms   592 MiB     0.18        0.29

The full step grows as L^2, the sparse one as L (each query block reads at most 18 key blocks);
below about 1.5k tokens the window covers most of the causal triangle and the gather costs more
than it saves. The interpret-mode kernel matched the jnp path to 5.4e-7.

On a GPU, ``benchmarks/gpu_kernels.py`` times the compiled kernel against cuDNN's and XLA's
``jax.nn.dot_product_attention``; its H200 results are in `jaxdyn.attention`'s kernel docstring.

Run: .venv/bin/python benchmarks/attention.py   (about 2 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn.attention import block_sparse_attention, sink_window_mask

SINK, WINDOW, BLOCK, HEADS, HEAD_DIM = 64, 1024, 64, 2, 64


def step_fn(attend):
  def loss(q, k, v, g):
    return jnp.sum(attend(q, k, v) * g)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--lengths", default="1024,2048,4096,8192")
  ap.add_argument("--reps", type=int, default=3)
  args = ap.parse_args()
  lengths = [int(x) for x in args.lengths.split(",")]
  rows = {}
  for n in lengths:
    key = jax.random.split(jax.random.key(n), 4)
    q, k, v, g = (jax.random.normal(kk, (1, n, HEADS, HEAD_DIM), jnp.float32) for kk in key)
    sparse_mask = sink_window_mask(n, sink=SINK, window=WINDOW)
    steps = {
        "full": step_fn(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True)),
        "sparse": step_fn(lambda q, k, v, m=sparse_mask: block_sparse_attention(
            q, k, v, m, block_q=BLOCK, block_k=BLOCK, implementation="jnp")),
    }
    mem = {name: s.lower(q, k, v, g).compile().memory_analysis().temp_size_in_bytes for name, s in steps.items()}
    for s in steps.values():
      jax.block_until_ready(s(q, k, v, g))
    times = {name: [] for name in steps}
    for _ in range(args.reps):
      for name, s in steps.items():
        t0 = time.perf_counter()
        jax.block_until_ready(s(q, k, v, g))
        times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) for name, t in times.items()}
    rows[n] = (med, mem)
    print(f"L={n:5d}  full {1e3 * med['full']:8.1f} ms {mem['full'] / 2**20:8.1f} MiB   "
          f"sparse {1e3 * med['sparse']:8.1f} ms {mem['sparse'] / 2**20:8.1f} MiB   "
          f"time ratio {med['sparse'] / med['full']:.3f}  memory ratio {mem['sparse'] / mem['full']:.3f}", flush=True)
  n0 = lengths[0]
  small = n0 if n0 <= 1024 else 1024
  key = jax.random.split(jax.random.key(0), 3)
  q, k, v = (jax.random.normal(kk, (1, small, HEADS, HEAD_DIM), jnp.float32) for kk in key)
  m = sink_window_mask(small, sink=SINK, window=WINDOW // 4)
  a = block_sparse_attention(q, k, v, m, block_q=BLOCK, block_k=BLOCK, implementation="pallas", interpret=True)
  b = block_sparse_attention(q, k, v, m, block_q=BLOCK, block_k=BLOCK, implementation="jnp")
  print(f"interpret-mode kernel vs jnp path at L={small} (window {WINDOW // 4}): max |diff| = "
        f"{float(np.max(np.abs(np.asarray(a) - np.asarray(b)))):.2e}")
  last = lengths[-1]
  med, mem = rows[last]
  tag = f"{last // 1024}k" if last % 1024 == 0 else str(last)
  print(f"sparse_over_full_time_{tag}={med['sparse'] / med['full']:.3f}")
  print(f"sparse_over_full_mem_{tag}={mem['sparse'] / mem['full']:.3f}")


if __name__ == "__main__":
  main()
