"""Where metrics go: JSONL lines, TensorBoard event files, PNG learning curves, a progress line."""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"


def _scalar(v: Any) -> Any:
  """A JSON-ready Python scalar; non-finite floats become None (strict JSON has no NaN)."""
  if isinstance(v, (np.generic, np.ndarray)):
    v = v.item()
  if isinstance(v, float) and not math.isfinite(v):
    return None
  return v


def dumps(obj: Any, **kwargs) -> str:
  """Strict JSON (no bare NaN/Infinity tokens): non-finite floats are written as null."""
  def clean(o):
    if isinstance(o, dict):
      return {k: clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
      return [clean(v) for v in o]
    return _scalar(o)
  return json.dumps(clean(obj), allow_nan=False, **kwargs)


class MetricWriter:
  """Writes one JSONL line per logged step and the same scalars to TensorBoard event files.

  Everything logged for one step (train metrics, evaluation, callbacks) is merged into that step's
  one line, written when a later step is logged or on `flush` (the loop flushes before every
  checkpoint, so the lines up to a checkpoint are on disk when it is).

  ``resume_step`` is the step the run continues from (None for a fresh start): lines logged after it
  by an earlier, interrupted run are dropped from ``metrics.jsonl`` (all of them on a fresh start) and
  TensorBoard is told to purge its events after it, so every step appears at most once.
  """

  def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True, resume_step: int | None = None):
    self.enabled = enabled
    self.path = pathlib.Path(workdir) / METRICS_FILE
    self._tb = None
    self._pending: dict[str, Any] | None = None
    if enabled:
      self._truncate_after(-1 if resume_step is None else resume_step)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"), flush_secs=10,
                               purge_step=0 if resume_step is None else resume_step + 1)

  def _truncate_after(self, step: int) -> None:
    if not self.path.exists():
      return
    keep = [r for r in read_metrics(self.path) if r["step"] <= step]
    tmp = self.path.with_suffix(".tmp")
    tmp.write_text("".join(dumps(r) + "\n" for r in keep))
    os.replace(tmp, self.path)

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    values = {k: _scalar(v) for k, v in scalars.items()}
    if self._pending is not None and self._pending["step"] != int(step):
      self.flush()
    if self._pending is None:
      self._pending = {"step": int(step)}
    self._pending.update(values)
    for k, v in values.items():
      if isinstance(v, (int, float)) and not isinstance(v, bool):
        self._tb.add_scalar(k, v, int(step))

  def flush(self) -> None:
    """Appends the pending step's line to ``metrics.jsonl``."""
    if self._pending is not None:
      with self.path.open("a") as f:
        f.write(dumps(self._pending) + "\n")
      self._pending = None

  def close(self) -> None:
    self.flush()
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
  path = pathlib.Path(path)
  if path.is_dir():
    path = path / METRICS_FILE
  if not path.exists():
    return []
  rows = []
  for line in path.read_text().splitlines():
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      break  # a line cut short by a crash: everything before it is intact
  return rows


def figure(**kwargs):
  """A matplotlib Figure drawn by the Agg canvas, outside pyplot: writing PNGs never switches the
  process's backend (a notebook keeps its inline figures) and leaves no figure open."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(**kwargs)
  FigureCanvasAgg(fig)
  return fig


def plot_learning_curves(rows: list[dict[str, Any]], path: str | os.PathLike, *, title: str = "") -> None:
  """Loss and accuracy against step, train and eval, as one PNG."""
  fig = figure(figsize=(10, 3.8))
  axes = fig.subplots(1, 2)
  for ax, metric in zip(axes, ("loss", "accuracy")):
    for split, style in (("train", "-"), ("eval", "o-")):
      pts = [(r["step"], r[f"{split}_{metric}"]) for r in rows if r.get(f"{split}_{metric}") is not None]
      if pts:
        s, v = zip(*pts)
        ax.plot(s, v, style, label=split, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a run without this metric draws an empty panel, no legend
      ax.legend()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


class Progress:
  """Prints ``step/total, loss, steps/s, ETA`` at most every ``every_seconds`` (clu's ReportProgress).

  Timing starts at `start`, which the loop calls after its first step: the first step compiles, and
  counting it would make the first ETA hours long for a run of seconds.
  """

  def __init__(self, total_steps: int, *, every_seconds: float = 10.0, enabled: bool = True, stream=None):
    self.total = total_steps
    self.every = every_seconds
    self.enabled = enabled
    self.stream = stream or sys.stdout
    self._t0 = self._last_t = None
    self._last_step = None

  def start(self, step: int) -> None:
    self._t0 = self._last_t = time.monotonic()
    self._last_step = step

  @property
  def started(self) -> bool:
    return self._t0 is not None

  def due(self) -> bool:
    return self.enabled and self.started and time.monotonic() - self._last_t >= self.every

  def rate(self, step: int) -> float:
    """Steps per second since the last report."""
    return (step - self._last_step) / max(time.monotonic() - self._last_t, 1e-9)

  def report(self, step: int, loss: float | None) -> None:
    now = time.monotonic()
    rate = (step - self._last_step) / max(now - self._last_t, 1e-9)
    eta = datetime.timedelta(seconds=round((self.total - step) / rate)) if rate > 0 else "?"
    pct = 100.0 * step / self.total
    loss_s = "nan" if loss is None else f"{loss:.4f}"
    print(f"step {step}/{self.total} ({pct:.1f}%) loss {loss_s} | {rate:.1f} steps/s | ETA {eta}",
          file=self.stream, flush=True)
    self._last_t, self._last_step = now, step

  def eval_line(self, step: int, metrics: Mapping[str, float]) -> None:
    if self.enabled:
      parts = ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in metrics.items())
      print(f"eval at step {step}/{self.total}: {parts}", file=self.stream, flush=True)


def results_table(results: Mapping[str, Any]) -> str:
  """A Markdown table of the final metrics."""
  rows = [
      ("train loss", results.get("train_loss")),
      ("train accuracy", results.get("train_accuracy")),
      ("eval loss", results.get("eval_loss")),
      ("eval accuracy", results.get("eval_accuracy")),
      ("steps", results.get("steps")),
      ("wall time (s)", results.get("wall_time_s")),
  ]
  extra = [(k, v) for k, v in results.items() if k.startswith("final_")]
  out = ["| metric | value |", "|---|---|"]
  for k, v in rows + extra:
    out.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
  return "\n".join(out)
