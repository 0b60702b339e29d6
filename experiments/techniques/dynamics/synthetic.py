"""The DSE paper's synthetic manifolds, run as a claim's ``runner`` (not a training run).

Points uniform on a d-dimensional subspace of a D-dimensional space, plus isotropic noise: DSE beside
binned Shannon entropy, for every (intrinsic dimension, noise level) of ``config.synthetic``
(``configs/dse_synthetic.py``). The grid of one seed is computed once and cached, shared by the arms
that read different cells of it.

References:
  Liao, Liu et al., "Assessing Neural Network Representations During Training Using
  Noise-Resilient Diffusion Spectral Entropy", https://arxiv.org/abs/2312.04823.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import time
from typing import Any

import numpy as np

from experiments.claims import write_json
from jaxdyn.dynamics import binned_shannon_entropy, diffusion_spectral_entropy

def synthetic_manifold(seed: int, *, num_points: int, intrinsic_dim: int, ambient_dim: int,
                       noise_std: float) -> np.ndarray:
  """``num_points`` points uniform in ``[-1, 1]^d`` mapped into ``R^D`` by a random orthonormal
  ``D x d`` basis (seeded), plus isotropic Gaussian noise of std ``noise_std`` in all ``D`` dims.

  The clean points and the basis depend on ``seed`` only (not on ``noise_std``), so different noise
  levels perturb the same manifold sample.
  """
  if not 1 <= intrinsic_dim <= ambient_dim:
    raise ValueError(f"intrinsic_dim: must be in [1, ambient_dim={ambient_dim}], got {intrinsic_dim}")
  if noise_std < 0:
    raise ValueError(f"noise_std: must be >= 0, got {noise_std}")
  rng = np.random.default_rng([seed, intrinsic_dim])
  u = rng.uniform(-1.0, 1.0, (num_points, intrinsic_dim))
  basis, _ = np.linalg.qr(rng.standard_normal((ambient_dim, intrinsic_dim)))
  noise = np.random.default_rng([seed, intrinsic_dim, 1]).standard_normal((num_points, ambient_dim))
  return (u @ basis.T + noise_std * noise).astype(np.float32)


def _fmt_noise(s: float) -> str:
  return f"{s:g}"


def synthetic_measurements(seed: int, s) -> dict[str, float]:
  """DSE and binned Shannon entropy for every (intrinsic dim, noise std) of config block ``s``.

  Keys ``dse_d{d}_noise{std}`` and ``shannon_d{d}_noise{std}`` (bits).
  """
  out = {}
  for d in s.intrinsic_dims:
    for std in s.noise_stds:
      z = synthetic_manifold(seed, num_points=s.num_points, intrinsic_dim=d, ambient_dim=s.ambient_dim,
                             noise_std=std)
      tag = f"d{d}_noise{_fmt_noise(std)}"
      out[f"dse_{tag}"] = float(diffusion_spectral_entropy(z, sigma=s.sigma, t=s.t))
      out[f"shannon_{tag}"] = binned_shannon_entropy(z, num_bins_per_dim=s.num_bins_per_dim)
  return out


def noise_to_signal(values: dict[str, float], estimator: str, dims, noise_stds) -> float:
  """How far noise moves an estimator, relative to how far the intrinsic dimension moves it.

  ``mean_d |H(d, max noise) - H(d, no noise)| / |H(max d, no noise) - H(min d, no noise)|``, with
  "no noise" the first and "max noise" the last of ``noise_stds``. Lower is more noise-resistant.
  """
  lo, hi = _fmt_noise(noise_stds[0]), _fmt_noise(noise_stds[-1])
  drift = np.mean([abs(values[f"{estimator}_d{d}_noise{hi}"] - values[f"{estimator}_d{d}_noise{lo}"])
                   for d in dims])
  signal = abs(values[f"{estimator}_d{max(dims)}_noise{lo}"] - values[f"{estimator}_d{min(dims)}_noise{lo}"])
  return float(drift / signal) if signal > 0 else float("inf")


def _grid_cache_path(config, workdir: str) -> pathlib.Path:
  """Where the seed's grid is shared by every arm: ``<runs_dir>/_dse_synthetic_grid/<hash>-seed<k>.json``.

  The hash covers the grid's settings only (not the arm's ``intrinsic_dim``, ``estimator`` or
  ``metric_noise_std``), so arms that read different cells of one grid compute it once.
  """
  s = config.synthetic.to_dict()
  for k in ("intrinsic_dim", "estimator", "metric_noise_std"):
    s.pop(k, None)
  h = hashlib.sha256(json.dumps(s, sort_keys=True, default=str).encode()).hexdigest()[:10]
  return pathlib.Path(workdir).resolve().parent.parent / "_dse_synthetic_grid" / f"{h}-seed{config.seed}.json"


def synthetic_runner(config, workdir: str) -> dict[str, Any]:
  """A claim runner: the synthetic-manifold grid for ``config.seed``; cached in ``workdir``.

  Returns every ``dse_*`` / ``shannon_*`` value of :func:`synthetic_measurements`, plus, for the
  arm's ``config.synthetic.intrinsic_dim`` at ``metric_noise_std``, ``dse`` and ``shannon``; and for
  ``config.synthetic.estimator``, ``noise_to_signal`` (see :func:`noise_to_signal`). The grid of one
  seed is computed once and shared by all arms (see :func:`_grid_cache_path`); ``wall_time_s`` is
  the time of the grid computation.
  """
  path = pathlib.Path(workdir) / "results.json"
  if path.exists():
    return json.loads(path.read_text())
  s = config.synthetic
  grid_path = _grid_cache_path(config, workdir)
  if grid_path.exists():
    grid = json.loads(grid_path.read_text())
  else:
    t0 = time.monotonic()
    grid = {"values": synthetic_measurements(config.seed, s), "wall_time_s": round(time.monotonic() - t0, 2)}
    write_json(grid_path, grid)
  vals = grid["values"]
  tag = f"d{s.intrinsic_dim}_noise{_fmt_noise(s.metric_noise_std)}"
  results = {
      **vals,
      "dse": vals[f"dse_{tag}"],
      "shannon": vals[f"shannon_{tag}"],
      "intrinsic_dim": s.intrinsic_dim,
      "estimator": s.estimator,
      "noise_to_signal": noise_to_signal(vals, s.estimator, s.intrinsic_dims, s.noise_stds),
      "wall_time_s": grid["wall_time_s"],
  }
  write_json(path, results)
  return results
