"""Training dynamics: Diffusion Spectral Entropy / Mutual Information tracked during training.

- Callback ``dse``: every ``every_steps`` steps (and at step 0 and the last step) it computes, on a
  fixed probe set of eval examples, DSE(Z), DSMI(Z; Y) and DSMI(Z; X) of the model's penultimate
  features Z, logs them as ``dse``, ``dsmi_zy``, ``dsmi_zx``, plots them into ``dynamics.png`` and
  returns the last and first values and their change from ``on_end()``.
- ``synthetic_manifold`` / ``synthetic_runner``: the paper's toy set-up (points uniform on a
  d-dimensional subspace of a D-dimensional space, plus noise), DSE beside binned Shannon entropy,
  run as a claim's ``runner``.

Bandwidth. DSE depends on sigma relative to the scale of Z, and penultimate features change scale
during training (their norm typically grows). With a fixed sigma on raw features, growth in norm
alone raises DSE (points drift apart relative to the kernel), which would make "DSE rises during
training" true for a reason unrelated to the representation's geometry. By default
(``normalize="rms"``) the callback therefore centres Z and divides it by one scalar, its RMS radius
``sqrt(mean_i ||z_i - mean(z)||^2)``, before every measurement, and uses one fixed sigma for the whole
run (default 0.5, half the unit RMS radius, chosen before any run). The rescaling is isotropic, so
the shape of the cloud is untouched; only its overall size is factored out. ``normalize="none"``
measures raw features with the fixed sigma, as the authors do (their default sigma = 10).

DSMI(Z; X): X (the probe's inputs, flattened) is a continuous vector, so, as the spec says, it is
discretised by spectral clustering (``reference_classes(X, kind="vector")``, 10 clusters). X does not
change during training, so it is clustered once, on the probe set only. The random subsets inside
DSMI use the same key at every measurement, so changes over training are not subset noise.

References:
  Liao, Liu et al., "Assessing Neural Network Representations During Training Using
  Noise-Resilient Diffusion Spectral Entropy", https://arxiv.org/abs/2312.04823;
  authors' code https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
from typing import Any

import jax
import numpy as np

from experiments import metrics_io
from experiments.callbacks import Callback
from experiments.registry import register
from jaxdyn.dynamics import (
    binned_shannon_entropy,
    diffusion_spectral_entropy,
    diffusion_spectral_mutual_information,
    reference_classes,
)

DYNAMICS_PNG = "dynamics.png"
KEYS = ("dse", "dsmi_zy", "dsmi_zx")
_NORMALIZE = ("rms", "none")


def normalize_features(Z: np.ndarray, mode: str = "rms") -> np.ndarray:
  """Centred ``Z`` divided by its RMS radius ``sqrt(mean_i ||z_i - mean(z)||^2)`` (``mode="rms"``).

  ``mode="none"`` returns ``Z`` as float32. A cloud of identical points is returned centred (zeros).
  """
  if mode not in _NORMALIZE:
    raise ValueError(f"normalize: must be one of {list(_NORMALIZE)}, got {mode!r}")
  Z = np.asarray(Z, np.float32).reshape(len(Z), -1)
  if mode == "none":
    return Z
  Z = Z - Z.mean(axis=0, keepdims=True)
  r = float(np.sqrt(np.mean(np.sum(Z.astype(np.float64) ** 2, axis=1))))
  return Z / r if r > 0 else Z


def dse_dsmi(Z: np.ndarray, labels: np.ndarray, x_classes: np.ndarray, *, sigma: float, t: int,
             num_repeats: int, seed: int, normalize: str = "rms") -> dict[str, float]:
  """DSE(Z), DSMI(Z; Y) and DSMI(Z; X) in bits, exactly as the ``dse`` callback computes them.

  ``labels`` and ``x_classes`` are discrete class ids of the same rows (X already clustered).
  """
  Zn = normalize_features(Z, normalize)
  key = jax.random.key(seed)
  return {
      "dse": float(diffusion_spectral_entropy(Zn, sigma=sigma, t=t)),
      "dsmi_zy": diffusion_spectral_mutual_information(
          Zn, labels, sigma=sigma, t=t, num_repeats=num_repeats, key=jax.random.fold_in(key, 1),
          y_kind="discrete"),
      "dsmi_zx": diffusion_spectral_mutual_information(
          Zn, x_classes, sigma=sigma, t=t, num_repeats=num_repeats, key=jax.random.fold_in(key, 2),
          y_kind="discrete"),
  }


def probe_set(source, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(indices, x, y)`` of ``size`` examples of ``source`` drawn without replacement with ``seed``."""
  n = len(source)
  if size > n:
    raise ValueError(f"probe_size: must be <= the eval split's size {n}, got {size}")
  idx = np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
  if hasattr(source, "x") and hasattr(source, "y"):
    return idx, np.asarray(source.x[idx]), np.asarray(source.y[idx])
  recs = [source[int(i)] for i in idx]
  return idx, np.stack([r["x"] for r in recs]), np.asarray([r["y"] for r in recs])


@register("callback", "dse")
class DSECallback(Callback):
  """Tracks DSE(Z), DSMI(Z; Y), DSMI(Z; X) of penultimate features on a fixed probe of eval data.

  Measured at step 0 (the initial model), every ``every_steps`` steps and at the last step; each
  measurement is logged as ``dse``, ``dsmi_zy``, ``dsmi_zx`` (bits) with ``dse_seconds`` (its cost).
  ``on_end()`` returns ``dse``, ``dsmi_zy``, ``dsmi_zx`` (last measurement), ``<key>_first`` (first
  measurement of the run, step 0 unless it resumed from a run that skipped it) and ``<key>_change``
  (last minus first), which become ``final_<key>`` in results.json; the main process plots all
  measurements into ``dynamics.png``.

  Args:
    ctx: the harness context.
    every_steps: measure every this many steps.
    probe_size: number of eval examples in the probe (drawn once with ``probe_seed``).
    probe_seed: seed of the probe draw, the X clustering and the DSMI subsets.
    sigma: kernel bandwidth, fixed for the run (on RMS-normalised features by default).
    t: diffusion time.
    normalize: ``"rms"`` (centre, divide by the RMS radius; see the module docstring) or ``"none"``.
    num_clusters: spectral clusters of X for DSMI(Z; X) (authors: 10).
    num_repeats: random subsets per class in DSMI (authors: 5).

  References:
    Liao, Liu et al., arXiv 2312.04823, https://arxiv.org/abs/2312.04823;
    https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  """

  def __init__(self, ctx, *, every_steps: int = 100, probe_size: int = 500, probe_seed: int = 0,
               sigma: float = 0.5, t: int = 1, normalize: str = "rms", num_clusters: int = 10,
               num_repeats: int = 5):
    super().__init__(ctx, every_steps=every_steps)
    if normalize not in _NORMALIZE:
      raise ValueError(f"normalize: must be one of {list(_NORMALIZE)}, got {normalize!r}")
    if probe_size < 2 * num_clusters:
      raise ValueError(f"probe_size: must be >= 2 * num_clusters = {2 * num_clusters}, got {probe_size}")
    self.kw = dict(sigma=float(sigma), t=int(t), num_repeats=int(num_repeats), seed=int(probe_seed),
                   normalize=normalize)
    _, self.x, self.y = probe_set(ctx.dataset.eval, probe_size, probe_seed)
    self.x_classes = reference_classes(self.x.reshape(len(self.x), -1), kind="vector",
                                       num_clusters=num_clusters, seed=probe_seed)
    # Measurements already logged by an interrupted run of this workdir (the writer was truncated to
    # the restored step before callbacks are built).
    self.rows: list[dict[str, Any]] = [
        {"step": r["step"], **{k: r[k] for k in KEYS}}
        for r in metrics_io.read_metrics(ctx.workdir) if all(k in r for k in KEYS)
    ] if ctx.is_main else []
    if int(ctx.state.step) == 0:
      self.run(0)

  def features(self) -> np.ndarray:
    """Penultimate features of the current model on the probe set."""
    return np.asarray(self.ctx.features(self.x)[1])

  def measure(self) -> dict[str, float]:
    return dse_dsmi(self.features(), self.y, self.x_classes, **self.kw)

  def on_step(self, step: int) -> None:
    if step % self.every_steps == 0 or step == self.ctx.config.num_train_steps:
      self.run(step)

  def run(self, step: int) -> None:
    t0 = time.monotonic()
    vals = self.measure()
    self.rows.append({"step": int(step), **vals})
    self.ctx.writer.write(step, {**vals, "dse_seconds": time.monotonic() - t0})

  def on_end(self) -> dict[str, float]:
    if not self.rows:
      return {}
    first, last = self.rows[0], self.rows[-1]
    out = {k: last[k] for k in KEYS}
    out.update({f"{k}_first": first[k] for k in KEYS})
    out.update({f"{k}_change": last[k] - first[k] for k in KEYS})
    out["dse_first_step"] = first["step"]
    if self.ctx.is_main:
      c = self.ctx.config
      plot_dynamics({c.dataset: self.rows}, self.ctx.workdir / DYNAMICS_PNG,
                    title=f"{c.model} on {c.dataset}: sigma={self.kw['sigma']:g} "
                          f"({self.kw['normalize']}), t={self.kw['t']}, probe {len(self.y)}")
    return out


def plot_dynamics(runs: dict[str, list[dict[str, Any]]], path, *, title: str = "") -> None:
  """One panel each for DSE(Z), DSMI(Z; Y), DSMI(Z; X) against step; one line per run."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  for label, rows in runs.items():
    steps = [r["step"] for r in rows]
    for ax, k in zip(axes, KEYS):
      ax.plot(steps, [r[k] for r in rows], marker=".", label=label)
  for ax, name in zip(axes, ("DSE(Z)", "DSMI(Z; Y)", "DSMI(Z; X)")):
    ax.set(xlabel="step", ylabel=f"{name} [bits]", title=name)
  axes[0].legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# ------------------------------------------------------------------------------------------------
# Synthetic manifolds (the paper's toy experiment), run as a claim's ``runner``.


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


def _write_json(path: pathlib.Path, obj) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".tmp{os.getpid()}")
  tmp.write_text(json.dumps(obj, indent=1))
  tmp.replace(path)


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
    _write_json(grid_path, grid)
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
  _write_json(path, results)
  return results
