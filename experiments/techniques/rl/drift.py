"""Value-drift tracking as a harness callback: a classifier's choices on a fixed probe set across checkpoints.

`ProbeDrift` (registered as the callback ``"probe_drift"``) keeps the first ``num_probes`` examples of the
eval split as a fixed probe set, records the model's class probabilities on them at the start of the run
and every ``every_steps`` steps (and at the last step), and at the end reduces the sequence with
`jaxdyn.rl.value_drift`: the drift's path length, its net size, and the steps by which half and 90% of it
had happened. For a classifier the "choices" are its classes; a language-model runner computes the same
metrics from `jaxdyn.rl.probe_value_probs` directly.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.callbacks import Callback
from experiments.registry import register
from jaxdyn import _validation
from jaxdyn.data import eval_batches
from jaxdyn.rl import value_drift

PROBE_FILE = "probe_drift.jsonl"  # one line per recorded checkpoint: {"step": s, "probs": [[...], ...]}


@register("callback", "probe_drift", tiny={"every_steps": 1, "num_probes": 4})
class ProbeDrift(Callback):
  """Records a model's class probabilities on a fixed probe set per checkpoint; ``value_drift`` at the end.

  The probe set is the first ``num_probes`` eval examples (this process's share). A record is taken at
  ``setup`` (the initial or restored state), every ``every_steps`` steps and at the last step; each
  record after the first logs ``probe_drift_interval``, the mean total-variation distance to the previous
  record. Records are appended to ``probe_drift.jsonl`` in the workdir (process 0), so a resumed run keeps
  the history up to its restored step. ``on_end()`` returns (as ``final_<key>`` in results.json) and logs
  ``value_drift_total`` (the path length ``D``), ``value_drift_net`` (first to last record),
  ``value_drift_step_50`` / ``value_drift_step_90`` (the first recorded step by which 50% / 90% of ``D``
  had happened) and ``value_drift_records``. Exact in a single-process run.

  Args:
    every_steps: steps between records.
    num_probes: the probe set's size (at most the eval split's size).
  """

  def __init__(self, *, every_steps: int = 100, num_probes: int = 64):
    super().__init__(every_steps=every_steps)
    if isinstance(num_probes, bool):
      raise TypeError(f"num_probes: must be an integer, got {num_probes!r}")
    self.num_probes = _validation.check_int("num_probes", num_probes, lower=1)
    self.steps: list[int] = []
    self.probs: list[np.ndarray] = []

  def setup(self, ctx) -> None:
    super().setup(ctx)
    n_eval = len(ctx.dataset.eval)
    if self.num_probes > n_eval:
      raise ValueError(f"num_probes: must be at most the eval split's size {n_eval}, got {self.num_probes}")
    batch = next(iter(eval_batches(ctx.dataset.eval, batch_size=self.num_probes * jax.process_count(),
                                   process_index=jax.process_index(), process_count=jax.process_count())))
    self.x = batch["x"][batch["mask"] > 0]
    graphdef = ctx.graphdef

    @jax.jit
    def probs(params, rest, x):
      logits = nnx.merge(graphdef, params, rest)(x, train=False)
      return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    self._probs_fn = probs
    self.path = pathlib.Path(ctx.workdir) / PROBE_FILE
    start = int(ctx.state.step)
    self.steps, self.probs = [], []
    if self.path.exists():  # a resumed run: keep the history up to the restored step
      for line in self.path.read_text().splitlines():
        row = json.loads(line)
        if row["step"] <= start:
          self.steps.append(int(row["step"]))
          self.probs.append(np.asarray(row["probs"], np.float32))
    if ctx.is_main:
      self.path.write_text("".join(json.dumps({"step": s, "probs": p.tolist()}) + "\n"
                                   for s, p in zip(self.steps, self.probs)))
    if not self.steps or self.steps[-1] != start:
      self.run(start)

  def run(self, step: int) -> None:
    if self.steps and self.steps[-1] == step:
      return
    p = np.asarray(self._probs_fn(self.ctx.state.params, self.ctx.state.rest, self.x), np.float32)
    if self.probs:
      d = 0.5 * np.abs(p - self.probs[-1]).sum(-1).mean()
      self.ctx.writer.write(step, {"probe_drift_interval": float(d)})
    self.steps.append(int(step))
    self.probs.append(p)
    if self.ctx.is_main:
      with self.path.open("a") as f:
        f.write(json.dumps({"step": int(step), "probs": p.tolist()}) + "\n")

  def on_end(self) -> dict[str, float] | None:
    self.run(int(self.ctx.state.step))
    if len(self.steps) < 2:
      return {"value_drift_records": float(len(self.steps))}
    if not all(np.isfinite(p).all() for p in self.probs):  # a diverged model: NaN, not a crash at the end
      out = {k: float("nan") for k in ("value_drift_total", "value_drift_net", "value_drift_step_50",
                                       "value_drift_step_90")}
      return {**out, "value_drift_records": float(len(self.steps))}
    m = value_drift(jnp.asarray(np.stack(self.probs)), steps=self.steps, fractions=(0.5, 0.9))
    out = {"value_drift_total": float(m.total), "value_drift_net": float(m.net),
           "value_drift_step_50": float(m.steps_at[0]), "value_drift_step_90": float(m.steps_at[1]),
           "value_drift_records": float(len(self.steps))}
    self.ctx.writer.write(self.steps[-1], out)
    return out
