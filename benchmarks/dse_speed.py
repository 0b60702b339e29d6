"""Exact vs fast (slq) Diffusion Spectral Entropy: time and absolute error, side by side in one run.

Data: low-rank-plus-noise features, N points in D = 512: ``Z = U A + 0.3 E`` with ``U`` (N x 16)
and ``E`` (N x 512) standard normal and ``A`` (16 x 512) normal with standard deviation
``4 / sqrt(512)``; pairwise distances are then of order sigma = 10 (the authors' default), and
DSE at t = 1 is 9-11.5 bits for N = 1,000 ... 10,000 (far from both 0 and log2 N).

Both paths start from Z and include forming the N x N diffusion kernel. "exact" is the library's
``method="exact"`` (``jnp.linalg.eigvalsh``, float32); "fast" is ``method="slq"`` with its
defaults. Times exclude compilation (each jitted computation is compiled ahead of time, its
compile time printed separately): exact runs once per N, fast is the median of 3 runs. As a
reference for the baseline, the column ``lapack_s`` times scipy's eigenvalues-only LAPACK
``syevd`` (float32) on the same kernel plus the kernel time: JAX's ``eigvalsh`` also computes
eigenvectors, so ``speedup_vs_lapack`` is the speedup over the fastest exact method we know.

Run: ``python benchmarks/dse_speed.py`` (about 3-10 minutes on 2 CPU cores, most of it the exact
eigendecomposition at N = 10,000). Options: ``--sizes 1000 2000`` for a quick run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from jaxdyn.dynamics._diffusion import _dse_exact, _kernel
from jaxdyn.dynamics._slq import DEFAULT_SLQ_OPTIONS, _slq_entropy_from_kernel

D = 512
SIGMA = 10.0
T = 1


def make_features(n: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  signal = rng.standard_normal((n, 16)) @ (rng.standard_normal((16, D)) * (4.0 / np.sqrt(D)))
  return (signal + 0.3 * rng.standard_normal((n, D))).astype(np.float32)


def timed(fn, *args):
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
  if hasattr(os, "getloadavg"):
    print("load average at start: %.1f %.1f %.1f (shared machines inflate both columns)" % os.getloadavg())
  print(f"data: low-rank(16)-plus-noise, D = {D}, sigma = {SIGMA}, t = {T}; slq options {DEFAULT_SLQ_OPTIONS}")

  sigma = jnp.asarray(SIGMA, jnp.float32)
  t = jnp.asarray(T, jnp.int32)
  key = jax.random.key(args.seed)
  rows = []
  for n in args.sizes:
    Z = jnp.asarray(make_features(n, args.seed))

    start = time.perf_counter()
    exact_fn = _dse_exact.lower(Z, sigma, t).compile()
    kernel_fn = _kernel.lower(Z, sigma).compile()
    K = jax.block_until_ready(kernel_fn(Z, sigma))
    slq_fn = _slq_entropy_from_kernel.lower(K, key, t, **DEFAULT_SLQ_OPTIONS).compile()
    compile_s = time.perf_counter() - start

    fast_times = []
    for _ in range(3):
      start = time.perf_counter()
      fast = jax.block_until_ready(slq_fn(kernel_fn(Z, sigma), key, t))
      fast_times.append(time.perf_counter() - start)
    fast_s = statistics.median(fast_times)

    exact, exact_s = timed(exact_fn, Z, sigma, t)

    K, kernel_s = timed(kernel_fn, Z, sigma)
    K_np = np.asarray(K)
    start = time.perf_counter()
    lam = scipy.linalg.eigvalsh(K_np, driver="evd", check_finite=False)
    lapack_s = kernel_s + time.perf_counter() - start
    lapack_dse = -np.sum((p := np.abs(lam) / np.abs(lam).sum() + 2.2e-16) * np.log2(p))

    exact, fast = float(exact), float(fast)
    rows.append((n, exact, fast, abs(fast - exact), exact_s, fast_s, exact_s / fast_s, lapack_s, lapack_s / fast_s))
    print(
        f"N={n}: compile {compile_s:.1f}s (not timed); exact {exact:.4f} bits in {exact_s:.2f}s; "
        f"slq {fast:.4f} bits in {fast_s:.2f}s (runs {', '.join(f'{x:.2f}' for x in fast_times)}); "
        f"LAPACK values-only DSE {lapack_dse:.4f}",
        flush=True,
    )

  print()
  header = ("N", "dse_exact", "dse_fast", "abs_err_bits", "exact_s", "fast_s", "speedup", "lapack_s", "speedup_vs_lapack")
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for n, ex, fa, err, es, fs, sp, ls, spl in rows:
    print(f"| {n} | {ex:.4f} | {fa:.4f} | {err:.4f} | {es:.2f} | {fs:.2f} | {sp:.1f}x | {ls:.2f} | {spl:.1f}x |")
  last = {r[0]: r for r in rows}
  if 10000 in last:
    r = last[10000]
    print(f"dse_fast_speedup_N10000={r[6]:.1f} dse_fast_abs_err_bits_N10000={r[3]:.4f}")


if __name__ == "__main__":
  main()
