"""Value drift through SFT then DPO on synthetic preference data with a controlled value, as a claim ``runner``.

`drift_runner(config, workdir)` follows the synthetic-data study of "Value Drifts: Tracing Value Alignment During
LLM Post-Training" (Bhatia et al., 2025, https://arxiv.org/abs/2510.26707) at toy scale, with ``c = config.drift``.
One seed:

0. **A base model.** A byte-level `jaxdyn.models.Transformer` (`experiments.techniques.text.lm.make_model`) is
   trained for ``c.base_steps`` steps on demonstrations of which half answer each way (value rate 0.5), so that,
   like a pre-trained base model on value-laden prompts, it knows the answers' form but holds no stance (a freshly
   initialised model prefers one option by the accident of its initialisation: 0.88 on one seed).
1. **SFT.** The base model is trained by next-token prediction on the completions of `jaxdyn.rl.value_sft_data`
   demonstrations (a pool of ``c.sft_pool`` of them, a share ``c.sft_value_rate`` answering with the value-laden
   ``b"safe"``, the rest ``b"bold"``), ``c.sft_steps`` Adam steps of ``c.batch`` rows (`lm.make_optimizer`,
   ``c.sft_learning_rate``; a fresh optimizer).
2. **Preference optimization**, from that policy, for each arm (both arms of a seed share the SFT policy):
   ``c.dpo_steps`` jitted DPO steps (`jaxdyn.rl.dpo_step`, ``beta = c.beta``, the SFT policy the reference,
   ``c.dpo_learning_rate``) on batches of ``c.batch`` pairs from a pool of ``c.pref_pool``
   `jaxdyn.rl.value_preferences` pairs. Every pair contrasts the two options; the arms differ only in the share
   of pairs that prefer the value:
   - ``"no_gap"``: ``c.no_gap_value_rate`` (0.5): as many pairs prefer ``b"safe"`` as ``b"bold"``, so the data
     carries no net value: the analogue of the paper's standard preference datasets, whose chosen and
     rejected answers hardly differ in stance (its "value gap");
   - ``"gap"``: ``c.gap_value_rate``: a value gap against the SFT data's value (the paper's synthetic dataset
     that "enables controlled manipulation of values").
3. **Probing.** Every ``c.record_every`` steps of both phases the probe set (`jaxdyn.rl.value_probes`: 200
   held-out prompt ids) is scored with `jaxdyn.rl.probe_value_probs`; `jaxdyn.rl.value_drift` reduces the
   records of the post-training run (SFT then DPO; step 0 is the base model) to the drift's path length ``D``,
   its per-interval parts and the step by which half of it had happened. Reported per arm: ``sft_net`` /
   ``po_net`` (the drift magnitude of each phase: the mean total variation between the probe's choice
   probabilities at the phase's first record and at its last), ``sft_share_of_net`` (``sft_net / (sft_net +
   po_net)``), ``sft_drift`` / ``po_drift`` (the phases' path lengths, which also add up the step-to-step jitter
   of minibatch training), ``sft_share_of_drift`` (``sft_drift / D``), ``step_50`` and the mean probability of
   the value option at the start, after SFT and at the end.

What is derived here: the task (one two-option value, prompts ``Q<id>?``), the drift metrics (the paper's exact
metric was not read: `jaxdyn.rl.value_drift`), a randomly initialised model instead of a pre-trained base, and
the learning rates (DPO's ten times lower than SFT's, as post-training recipes set it; the paper's were not read).
"""

from __future__ import annotations

import time
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from experiments.claims import caches_results, one_arm
from experiments.techniques.text import lm
from jaxdyn import rl

ARMS = ("no_gap", "gap")


def sft_batches(c, seed: int, value_rate: float):
  """Endless SFT batches of ``c.batch`` rows drawn from a pool of ``c.sft_pool`` demonstrations."""
  demos = rl.value_sft_data(c.sft_pool, value_rate=value_rate, seed=seed)
  tokens = demos.tokens
  weights = np.asarray(rl.completion_mask(jnp.asarray(tokens), rl.value_probes(1).prompt_len))
  rng = np.random.default_rng([seed, 1])
  while True:
    rows = rng.integers(0, len(tokens), c.batch)
    yield {"inputs": tokens[rows, :-1], "targets": tokens[rows, 1:], "weights": weights[rows]}


def _probe(model, probes) -> np.ndarray:
  return np.asarray(rl.probe_value_probs(model, probes.tokens, prompt_len=probes.prompt_len))


def train_sft(c, seed: int, probes):
  """The base model and SFT policy of one seed, the SFT phase's probe records ``(steps, probs)`` and its log."""
  model = lm.make_model(c.model, seed)
  lm.train(model, sft_batches(c, seed + 7, 0.5), steps=c.base_steps, learning_rate=c.sft_learning_rate,
           warmup=c.base_steps // 10, log_every=c.base_steps)
  steps, probs = [], []

  def record(i, m):
    if i % c.record_every == 0:
      steps.append(i)
      probs.append(_probe(m, probes))

  history = lm.train(model, sft_batches(c, seed, c.sft_value_rate), steps=c.sft_steps,
                     learning_rate=c.sft_learning_rate,
                     warmup=c.sft_steps // 10, log_every=max(1, c.sft_steps // 4), on_step=record)
  steps.append(c.sft_steps)
  probs.append(_probe(model, probes))
  return model, steps, probs, history


def train_dpo(model, c, value_rate: float, seed: int, probes, start: int):
  """DPO from ``model`` (in place); probe records at steps ``start + k * c.record_every`` and the log."""
  prefs = rl.value_preferences(c.pref_pool, value_rate=value_rate, seed=seed + 1)
  tx = lm.make_optimizer(c.dpo_learning_rate, c.dpo_steps, c.dpo_steps // 10)
  state = rl.dpo_init(model, tx)
  rng = np.random.default_rng([seed, 2])  # the same pair rows in both arms
  steps, probs, log = [], [], []
  for i in range(1, c.dpo_steps + 1):
    rows = rng.integers(0, c.pref_pool, c.batch)
    state, m = rl.dpo_step(model, tx, state, prefs.chosen_tokens[rows], prefs.rejected_tokens[rows],
                           prompt_len=probes.prompt_len, beta=c.beta)
    if i % c.record_every == 0 or i == c.dpo_steps:
      nnx.update(model, state.params)
      steps.append(start + i)
      probs.append(_probe(model, probes))
      log.append({"step": start + i, **{k: float(v) for k, v in m.items()}})
  return steps, probs, log


def drift_summary(steps: list[int], probs: list[np.ndarray], sft_end: int) -> dict[str, float]:
  """The drift metrics of one run's records (SFT records at steps <= ``sft_end``, DPO records after)."""
  m = rl.value_drift(jnp.asarray(np.stack(probs)), steps=steps, fractions=(0.5, 0.9))
  d = np.asarray(m.per_interval)
  in_sft = np.asarray(steps[1:]) <= sft_end  # interval t ends at record t
  k = int(np.sum(np.asarray(steps) <= sft_end)) - 1  # index of the last SFT record
  tv = lambda a, b: float(0.5 * np.abs(a - b).sum(-1).mean())  # noqa: E731
  total, sft_net, po_net = float(m.total), tv(probs[k], probs[0]), tv(probs[-1], probs[k])
  return {"drift_total": total, "sft_drift": float(d[in_sft].sum()), "po_drift": float(d[~in_sft].sum()),
          "sft_share_of_drift": float(d[in_sft].sum() / total) if total > 0 else float("nan"),
          "sft_net": sft_net, "po_net": po_net, "net": float(m.net),
          "sft_share_of_net": sft_net / max(sft_net + po_net, 1e-12),
          "step_50": int(m.steps_at[0]), "step_90": int(m.steps_at[1]),
          "value_prob_start": float(probs[0][:, 0].mean()), "value_prob_after_sft": float(probs[k][:, 0].mean()),
          "value_prob_end": float(probs[-1][:, 0].mean())}


def run_all(config) -> dict[str, Any]:
  """The SFT policy of one seed and both preference-optimization arms from it."""
  c = config.drift
  probes = rl.value_probes(c.num_probes)
  t0 = time.monotonic()
  sft, sft_steps, sft_probs, sft_history = train_sft(c, config.seed, probes)
  sft_seconds = time.monotonic() - t0
  rates = {"no_gap": c.no_gap_value_rate, "gap": c.gap_value_rate}
  arms = {}
  for arm in ARMS:
    t1 = time.monotonic()
    model = nnx.clone(sft, arrays=True)
    steps, probs, log = train_dpo(model, c, rates[arm], config.seed, probes, c.sft_steps)
    all_steps, all_probs = sft_steps + steps, sft_probs + probs
    arms[arm] = {**drift_summary(all_steps, all_probs, c.sft_steps), "log": log, "value_rate": rates[arm],
                 "probe_value_prob": [float(p[:, 0].mean()) for p in all_probs], "probe_steps": all_steps,
                 "dpo_seconds": round(time.monotonic() - t1, 2)}
  return {"per_arm": arms, "sft_history": sft_history, "sft_seconds": round(sft_seconds, 2)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.drift.arm``) for one seed, from the seed's shared run of both arms."""
  return one_arm(run_all, config, workdir, arm_key="drift.arm", arms=ARMS, prefix="value_drift", drop=("sft_history",))


drift_runner = caches_results(run)
