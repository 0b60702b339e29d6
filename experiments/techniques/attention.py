"""Attention experiments: the in-context linear regression study, run as a claim's ``runner``.

`icl_runner(config, workdir)` trains the one-layer multi-head softmax attention model of
`jaxdyn.attention.train_icl` on fresh regression tasks (``config.icl``: heads, d, L, steps, batch,
learning rate, noise), then measures it on ``test_tasks`` fresh tasks (a key of its own per seed):
its test MSE beside those of debiased gradient descent (step fitted on another fresh sample), plain
one-step GD / linear attention (fitted likewise) and the Bayes-optimal predictor; how well debiased GD
explains the model's own predictions (R^2 of debiased GD with the step fitted to the model's outputs);
the per-head KQ diagonal and OV last entry, the OV sum relative to the OV mass
(|sum_h ov_h| / sum_h |ov_h|, about 0 when the heads cancel) and the share of the OV mass outside the
two largest heads (about 0 when the extra heads are dummies). It writes ``results.json`` (with the
per-head history) and ``heads.png`` (per-head KQ and OV against training steps) in ``workdir``, and
returns what is there if ``results.json`` exists. It is not a training run of the harness (there is
no dataset or model of the registry in it), which is why it is a runner (`experiments.claims`).

References:
  He, Pan, Chen & Yang, "In-Context Linear Regression Demystified", ICML 2025,
  https://arxiv.org/abs/2503.12734.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.claims import caches_results
from jaxdyn.attention import (
    bayes_predict,
    debiased_gd_predict,
    fit_debiased_gd_step,
    fit_linear_attention_step,
    icl_attention,
    icl_tokens,
    kq_diagonal,
    linear_attention_predict,
    ov_last_entry,
    r_squared,
    sample_tasks,
    train_icl,
)


def _mse(pred, target) -> float:
  return float(jnp.mean((jnp.asarray(pred) - jnp.asarray(target)) ** 2))


def head_shares(ov: np.ndarray) -> tuple[float, float]:
  """(|sum ov| / sum |ov|, share of sum |ov| outside the two largest |ov|); (0, 0) when all are 0."""
  a = np.abs(np.asarray(ov, np.float64))
  mass = a.sum()
  if mass == 0:
    return 0.0, 0.0
  return float(abs(np.sum(ov)) / mass), float(np.sort(a)[:-2].sum() / mass)


def _plot(history: dict, path: pathlib.Path, title: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
  for ax, key, label in ((axes[0], "kq", "KQ diagonal mean"), (axes[1], "ov", "OV last entry")):
    values = np.asarray(history[key])
    for h in range(values.shape[1]):
      ax.plot(history["step"], values[:, h], label=f"head {h}")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.axhline(0.0, color="k", lw=0.5)
  axes[1].legend(fontsize=7)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


@caches_results
def icl_runner(config, workdir: str) -> dict[str, Any]:
  """One (heads, seed) run of the in-context regression study; see the module docstring."""
  out = pathlib.Path(workdir)
  c = config.icl
  t0 = time.monotonic()
  params, history = train_icl(jax.random.key(config.seed), num_heads=c.num_heads, d=c.d, context=c.context,
                              steps=c.steps, batch=c.batch, learning_rate=c.learning_rate, noise_var=c.noise_var,
                              log_every=c.log_every)
  train_s = time.monotonic() - t0
  task = dict(d=c.d, context=c.context, noise_var=c.noise_var)
  test = sample_tasks(jax.random.key(1_000_000 + config.seed), c.test_tasks, **task)
  fit = sample_tasks(jax.random.key(2_000_000 + config.seed), c.test_tasks, **task)
  ctx = (test.x, test.y, test.x_query)
  pred = icl_attention(params, icl_tokens(*ctx))
  dgd = debiased_gd_predict(*ctx, fit_debiased_gd_step(fit.x, fit.y, fit.x_query, fit.y_query))
  gd = linear_attention_predict(*ctx, fit_linear_attention_step(fit.x, fit.y, fit.x_query, fit.y_query))
  own_step = fit_debiased_gd_step(*ctx, pred)
  ov = np.asarray(ov_last_entry(params), np.float64)
  ov_sum_ratio, extra_share = head_shares(ov)
  results = {
      "num_heads": c.num_heads,
      "test_mse": _mse(pred, test.y_query),
      "debiased_gd_mse": _mse(dgd, test.y_query),
      "gd_mse": _mse(gd, test.y_query),
      "bayes_mse": _mse(bayes_predict(*ctx, d=c.d, noise_var=c.noise_var), test.y_query),
      "trivial_mse": _mse(jnp.zeros_like(test.y_query), test.y_query),
      "r2_debiased_gd": float(r_squared(debiased_gd_predict(*ctx, own_step), pred)),
      "model_gd_step": float(own_step),
      "kq": np.asarray(kq_diagonal(params), np.float64).tolist(),
      "ov": ov.tolist(),
      "ov_sum_ratio": ov_sum_ratio,
      "extra_head_share": extra_share,
      "train_seconds": round(train_s, 2),
      "history": {k: np.asarray(v).tolist() for k, v in history.items() if k != "train_loss"},
  }
  out.mkdir(parents=True, exist_ok=True)
  _plot(history, out / "heads.png", f"H = {c.num_heads}, seed {config.seed}")
  return results
