"""Timing shared by the benchmarks (a helper module: `make bench` runs it as a no-op)."""

from __future__ import annotations

import statistics
import time

import jax


def timed(fn, *args, reps: int) -> float:
  """Median wall seconds of ``reps`` calls after one warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)
