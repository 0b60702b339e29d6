"""Training dynamics: Diffusion Spectral Entropy / Mutual Information tracked during training.

- Callback ``dse``: every ``every_steps`` steps (and at step 0 and the last step) it computes, on a
  fixed probe set of eval examples, DSE(Z), DSMI(Z; Y) and DSMI(Z; X) of the model's penultimate
  features Z, logs them as ``dse``, ``dsmi_zy``, ``dsmi_zx``, plots them into ``dynamics.png`` and
  returns the last and first values and their change from ``on_end()``.
- The paper's toy set-up (points on a d-dimensional subspace plus noise), run as a claim's runner, is
  in `experiments.techniques.dynamics.synthetic`.

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

import time
from typing import Any

import jax
import numpy as np

from experiments import metrics_io
from experiments.callbacks import Callback
from experiments.registry import register
from jaxdyn import _validation
from jaxdyn.dynamics import (
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


@register("callback", "dse", tiny={"every_steps": 1, "probe_size": 40, "num_clusters": 2, "num_repeats": 1})
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

  def __init__(self, *, every_steps: int = 100, probe_size: int = 500, probe_seed: int = 0,
               sigma: float = 0.5, t: int = 1, normalize: str = "rms", num_clusters: int = 10,
               num_repeats: int = 5):
    super().__init__(every_steps=every_steps)
    _validation.check_choice("normalize", normalize, _NORMALIZE)
    num_clusters = _validation.check_int("num_clusters", num_clusters, lower=2)
    self.probe_size = _validation.check_int("probe_size", probe_size, lower=2 * num_clusters)
    self.num_clusters = num_clusters
    self.kw = dict(sigma=_validation.check_real("sigma", sigma, lower=0.0, lower_open=True),
                   t=_validation.check_int("t", t, lower=1),
                   num_repeats=_validation.check_int("num_repeats", num_repeats, lower=1),
                   seed=_validation.check_int("probe_seed", probe_seed, lower=0), normalize=normalize)

  def setup(self, ctx) -> None:
    super().setup(ctx)
    seed = self.kw["seed"]
    _, self.x, self.y = probe_set(ctx.dataset.eval, self.probe_size, seed)
    self.x_classes = reference_classes(self.x.reshape(len(self.x), -1), kind="vector",
                                       num_clusters=self.num_clusters, seed=seed)
    # Measurements already logged by an interrupted run of this workdir (the writer dropped the rows
    # logged after the restored step before callbacks are set up).
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
  fig = metrics_io.figure(figsize=(13, 3.6))
  axes = fig.subplots(1, 3)
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
