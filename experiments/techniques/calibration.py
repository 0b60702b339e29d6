"""Calibration experiments: baseline objectives, RankMixup, and a callback that scores calibration.

Objectives (``config.objective``; keyword arguments from ``config.objective_kwargs``):

- ``label_smoothing``: cross-entropy against labels smoothed towards uniform.
- ``focal``: focal loss (gamma 3, Mukhoti et al.'s FL-3).
- ``mixup``: the standard mixup baseline, soft-label cross-entropy on the mixed batch only.
- ``rankmixup``: RankMixup (Noh et al., ICCV 2023): CE on the clean batch + alpha * MRL or M-NDCG on
  M mixed copies, which go through the model in one batched forward pass.

Plain cross-entropy is the harness's ``ce`` objective (``experiments/techniques/common.py``). The
``calibration`` callback scores the final
model on the eval split (ECE, adaptive ECE, class-wise ECE, NLL, Brier, accuracy, ECE after
temperature scaling) and saves a reliability diagram.

References:
  Noh et al., "RankMixup: Ranking-Based Mixup Training for Network Calibration", ICCV 2023,
  https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from experiments.callbacks import Callback
from experiments.registry import register
from jaxdyn import _validation
from jaxdyn.calibration import (
    apply_temperature,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    focal_loss,
    label_smoothing_loss,
    mixup_cross_entropy_loss,
    mndcg_loss,
    mrl_loss,
    rankmixup_loss,
    reliability_diagram,
    sample_mixup,
)

RELIABILITY_PNG = "reliability_diagram.png"
_METHODS = ("mrl", "mndcg")
_TEMPERATURE_SOURCES = ("eval_crossfit", "train_tail")


@register("objective", "label_smoothing")
def label_smoothing(model, batch, *, key, smoothing: float = 0.1):
  """Label smoothing: CE against (1 - eps) onehot(y) + eps / K (`label_smoothing_loss`)."""
  logits = model(batch["x"], train=True, key=key)
  loss = label_smoothing_loss(logits=logits, labels=batch["y"], smoothing=smoothing)
  return loss, {"logits": logits}


@register("objective", "focal")
def focal(model, batch, *, key, gamma: float = 3.0):
  """Focal loss -(1 - p_y)^gamma log p_y (`focal_loss`); gamma 3 as in the RankMixup baselines."""
  logits = model(batch["x"], train=True, key=key)
  loss = focal_loss(logits=logits, labels=batch["y"], gamma=gamma)
  return loss, {"logits": logits}


@register("objective", "mixup")
def mixup(model, batch, *, key, mixup_alpha: float = 1.0):
  """Standard mixup (Zhang et al., 2018): soft-label CE on one mixed copy of the batch only.

  lam ~ Beta(a, a), one permutation pi; x~ = lam x + (1 - lam) x[pi], y~ likewise with one-hot
  labels; loss = CE(f(x~), y~) (`mixup_cross_entropy_loss`). The default a = 1 is Zhang et al.'s
  CIFAR-10 setting.

  The clean logits in ``aux`` (the harness's training accuracy) come from an extra forward pass in
  inference mode under ``stop_gradient``: no dropout, BatchNorm running statistics, no gradient and
  no state update. It costs one forward pass per step and does not change the training.
  """
  x, y = batch["x"], batch["y"]
  key_mix, key_drop = jax.random.split(key)
  clean = jax.lax.stop_gradient(model(x, train=False))
  mix = sample_mixup(key_mix, x, jax.nn.one_hot(y, clean.shape[-1]), num_mixes=1, alpha=mixup_alpha)
  mixed_logits = model(mix.inputs[0], train=True, key=key_drop)
  loss = mixup_cross_entropy_loss(logits=mixed_logits, labels=mix.labels[0])
  return loss, {"logits": clean, "mixup_lam": mix.lam[0]}


@register("objective", "rankmixup")
def rankmixup(
    model,
    batch,
    *,
    key,
    method: str = "mndcg",
    alpha: float = 0.1,
    mixup_alpha: float = 2.0,
    num_mixes: int | None = None,
    margin: float = 2.0,
    official_compat: bool = False,
):
  """RankMixup (Noh et al., ICCV 2023): CE(f(x), y) + alpha * ranking loss on M mixed copies.

  Per step: clean logits z = f(x) (dropout from one sub-key); M mixed copies from
  `sample_mixup` (lam_m ~ Beta(a, a), a permutation each); their logits z~ = f(x~) from a second
  forward pass; loss = `rankmixup_loss` = CE(z, y) + alpha * (MRL or M-NDCG). No CE on the mixed
  samples; nothing is detached, so the ranking loss reaches the parameters through both passes.

  The M mixed copies are reshaped to one (M * B, ...) batch and go through the model in a single
  forward pass, so normalisation layers (BatchNorm) see one batch of M * B mixed samples, separate
  from the clean batch of B, and update their running statistics once per pass (twice per step).

  Args:
    model: the merged NNX model in training mode.
    batch: ``{"x": (B, ...), "y": (B,)}``.
    key: the step's `jax.random` key (split into mixing and two dropout keys).
    method: "mndcg" (M-NDCG) or "mrl" (MRL).
    alpha: weight of the ranking loss (0.1 in the paper).
    mixup_alpha: a of Beta(a, a) (2 on CIFAR, 1 on Tiny-ImageNet in the paper).
    num_mixes: M; None gives the paper's 1 for MRL and 3 for M-NDCG.
    margin: MRL hinge margin on logits (2.0 on CIFAR, 1.0 on Tiny-ImageNet).
    official_compat: MRL only: the authors' code's reduction mean(mask) * mean(hinge) instead of
      the paper's masked mean (see `jaxdyn.calibration.mrl_loss`).

  Returns:
    ``(loss, aux)`` with the clean logits, the CE and ranking terms and the mean lam.

  References:
    Noh et al., "RankMixup: Ranking-Based Mixup Training for Network Calibration", ICCV 2023,
    https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.
  """
  _validation.check_choice("method", method, _METHODS)
  if num_mixes is None:
    num_mixes = 1 if method == "mrl" else 3
  x, y = batch["x"], batch["y"]
  key_mix, key_clean, key_mixed = jax.random.split(key, 3)
  logits = model(x, train=True, key=key_clean)
  num_classes = logits.shape[-1]
  mix = sample_mixup(key_mix, x, jax.nn.one_hot(y, num_classes, dtype=logits.dtype),
                     num_mixes=num_mixes, alpha=mixup_alpha)
  batch_size = y.shape[0]
  flat = mix.inputs.reshape((num_mixes * batch_size, *mix.inputs.shape[2:]))
  mixed_logits = model(flat, train=True, key=key_mixed).reshape(num_mixes, batch_size, num_classes)
  loss = rankmixup_loss(logits=logits, labels=y, mixed_logits=mixed_logits,
                        mixed_labels=mix.labels, method=method, alpha=alpha, margin=margin,
                        official_compat=official_compat)
  if method == "mrl":
    rank = mrl_loss(logits=logits, mixed_logits=mixed_logits, mixed_labels=mix.labels,
                    margin=margin, official_compat=official_compat)
  else:
    rank = mndcg_loss(logits=logits, mixed_logits=mixed_logits, mixed_labels=mix.labels)
  aux = {"logits": logits, "rank_loss": rank, "ce_loss": loss - alpha * rank,
         "mixup_lam": jnp.mean(mix.lam)}
  return loss, aux


def _crossfit_temperature(logits: np.ndarray, labels: np.ndarray, num_bins: int):
  """2-fold cross-fitted temperature scaling on one split: each half is scaled by the T fitted on
  the other half (even / odd indices), so no logit is scored with a T fitted on itself."""
  idx = np.arange(len(labels))
  folds = (idx % 2 == 0, idx % 2 == 1)
  scaled = np.empty_like(logits)
  temps = []
  for fit, score in (folds, folds[::-1]):
    t = fit_temperature(logits[fit], labels[fit])
    scaled[score] = np.asarray(apply_temperature(logits[score], t))
    temps.append(float(t))
  return float(expected_calibration_error(scaled, labels, num_bins=num_bins)), float(np.mean(temps))


@register("callback", "calibration")
class CalibrationCallback(Callback):
  """Scores calibration on the eval split; ``on_end`` returns the final metrics and saves a PNG.

  ``on_end()`` returns (as ``final_<key>`` in results.json) ``ece``, ``adaptive_ece``,
  ``classwise_ece`` (15 bins each, `calibration_metrics`), ``nll``, ``brier``, ``accuracy``, and
  ``ece_ts`` / ``temperature``: the ECE after temperature scaling and the fitted T. It writes
  ``reliability_diagram.png`` into the workdir (process 0 only). With ``every_steps`` set, the same
  eval metrics (without temperature scaling) are also logged as ``eval_<key>`` every that many steps.

  Temperature scaling needs logits the model was not trained on, and the harness trains on the whole
  train split (no validation split), so by default (``temperature_source="eval_crossfit"``) T is
  cross-fitted on the eval split: T fitted on the even-indexed half scales the odd half and vice
  versa, and ``ece_ts`` is the ECE of the scaled eval logits. ``temperature_source="train_tail"``
  fits T on the last ``temperature_fraction`` of the train split instead; those samples were trained
  on, so the fit sees the model's training-set confidence (for a model that fits its training set T
  shrinks and ``ece_ts`` rises): it is not the usual held-out protocol.

  Metrics are over this process's share of the eval split (`Context.eval_outputs`): exact in a
  single-process run.
  """

  def __init__(self, *, num_bins: int = 15, every_steps: int | None = None,
               temperature_source: str = "eval_crossfit", temperature_fraction: float = 0.1):
    super().__init__(every_steps=1 if every_steps is None else every_steps)
    self.periodic = every_steps is not None
    self.num_bins = _validation.check_int("num_bins", num_bins, lower=1)
    self.temperature_source = _validation.check_choice("temperature_source", temperature_source,
                                                       _TEMPERATURE_SOURCES)
    self.temperature_fraction = _validation.check_real("temperature_fraction", temperature_fraction, lower=0.0,
                                                       upper=1.0, lower_open=True)

  def _metrics(self, logits, labels) -> dict[str, float]:
    m = calibration_metrics(logits, labels, num_bins=self.num_bins)
    return {k: float(v) for k, v in jax.device_get(m).items()}

  def on_step(self, step: int) -> None:
    if self.periodic:
      super().on_step(step)

  def run(self, step: int) -> None:
    logits, _, labels = self.ctx.eval_outputs()
    self.ctx.writer.write(step, {f"eval_{k}": v for k, v in self._metrics(logits, labels).items()})

  def on_end(self) -> dict[str, float]:
    logits, _, labels = self.ctx.eval_outputs()
    out = self._metrics(logits, labels)
    if not np.isfinite(logits).all():  # a diverged model: its metrics are NaN; nothing to fit or draw
      warnings.warn(f"calibration: the final model's eval logits are not finite; temperature scaling and "
                    f"{RELIABILITY_PNG} are skipped", RuntimeWarning, stacklevel=2)
      return {**out, "ece_ts": float("nan"), "temperature": float("nan")}
    if self.temperature_source == "eval_crossfit":
      out["ece_ts"], out["temperature"] = _crossfit_temperature(logits, labels, self.num_bins)
    else:
      tr_logits, _, tr_labels = self.ctx.eval_outputs(split="train")
      n = max(1, int(round(self.temperature_fraction * len(tr_labels))))
      t = fit_temperature(tr_logits[-n:], tr_labels[-n:])
      out["temperature"] = float(t)
      out["ece_ts"] = float(expected_calibration_error(
          apply_temperature(logits, t), labels, num_bins=self.num_bins))
    if self.ctx.is_main:
      c = self.ctx.config
      reliability_diagram(logits, labels, self.ctx.workdir / RELIABILITY_PNG, num_bins=self.num_bins,
                          title=f"{self.ctx.label} ({c.model} on {c.dataset}), step {int(self.ctx.state.step)}")
    return out
