"""Declared claims: which arms to compare, on what metric, in which direction, over which seeds.

A config module declares a claim with ``get_claim() -> Claim``; ``make repro`` (``experiments/repro.py``)
runs every arm for every seed through ``train_and_evaluate`` and writes its section of
``REPRODUCTION.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

Metric = str | Callable[[Mapping[str, Any]], float]


@dataclasses.dataclass(frozen=True)
class Arm:
  """One configuration in a comparison: the base config with dotted-key ``overrides``."""

  label: str
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Expect:
  """An expected relation between two arms' seed-means of the claim's metric, or of one arm's to a value.

  ``kind``: ``"greater"`` (a > b + margin), ``"less"`` (a < b - margin), ``"within"``
  (|a - b| <= margin) or ``"at_least"`` (a >= b - margin: at most ``margin`` worse, e.g. "under 1
  point of accuracy lost"); ``"above"`` (a > value) and ``"below"`` (a < value) compare one arm
  with a declared number (e.g. "R^2 above 0.9") and take no ``b``.
  """

  kind: str
  a: str
  b: str | None = None
  margin: float = 0.0
  value: float | None = None

  def __post_init__(self):
    if self.kind not in ("greater", "less", "within", "at_least", "above", "below"):
      raise ValueError(f"kind: must be 'greater', 'less', 'within', 'at_least', 'above' or 'below', got {self.kind!r}")
    if self.margin < 0:
      raise ValueError(f"margin: must be >= 0, got {self.margin}")
    if self.kind in ("above", "below"):
      if self.value is None or self.b is not None:
        raise ValueError(f"value: kind {self.kind!r} compares arm a with a value (and takes no b)")
    elif self.b is None:
      raise ValueError(f"b: kind {self.kind!r} compares two arms")

  @property
  def arms(self) -> tuple[str, ...]:
    return (self.a,) if self.b is None else (self.a, self.b)

  def holds(self, means: Mapping[str, float]) -> bool:
    a = means[self.a]
    if self.kind == "above":
      return a > self.value
    if self.kind == "below":
      return a < self.value
    b = means[self.b]
    if self.kind == "greater":
      return a > b + self.margin
    if self.kind == "less":
      return a < b - self.margin
    if self.kind == "at_least":
      return a >= b - self.margin
    return abs(a - b) <= self.margin

  def describe(self, metric_name: str) -> str:
    if self.kind in ("above", "below"):
      return f"{metric_name}({self.a}) {'>' if self.kind == 'above' else '<'} {self.value:g}"
    rel = {"greater": ">", "less": "<", "within": "within", "at_least": ">="}[self.kind]
    if self.kind == "within":
      return f"{metric_name}({self.a}) within {self.margin:g} of {metric_name}({self.b})"
    if self.kind == "at_least":
      return f"{metric_name}({self.a}) >= {metric_name}({self.b}) - {self.margin:g}"
    m = f" by more than {self.margin:g}" if self.margin else ""
    return f"{metric_name}({self.a}) {rel} {metric_name}({self.b}){m}"


@dataclasses.dataclass(frozen=True)
class Claim:
  """A paper's claim, sized to run on 2 CPU cores in about 10 minutes."""

  name: str
  paper: str  # citation with link
  statement: str  # the claim as the paper makes it
  setting: str  # what is run here, in words
  get_config: Callable[[], ml_collections.ConfigDict]
  arms: Sequence[Arm]
  metric: Metric  # a key of results.json, or a function of the results dict
  metric_name: str
  expects: Sequence[Expect]
  seeds: Sequence[int] = (0, 1, 2)
  report: Mapping[str, Metric] = dataclasses.field(default_factory=dict)  # extra columns
  # What runs one arm for one seed: (config, workdir) -> results dict. Default: train_and_evaluate.
  # A claim about a measurement rather than a training run (e.g. on synthetic data) passes its own,
  # which should also skip work already done in ``workdir``.
  runner: Callable[[ml_collections.ConfigDict, str], Mapping[str, Any]] | None = None

  def __post_init__(self):
    labels = [a.label for a in self.arms]
    if len(set(labels)) != len(labels):
      raise ValueError(f"arms: labels must be unique, got {labels}")
    for e in self.expects:
      for lab in e.arms:
        if lab not in labels:
          raise ValueError(f"expects: unknown arm {lab!r}; arms are {labels}")
    if not self.seeds:
      raise ValueError("seeds: need at least one seed")


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Sets dotted keys (``"optimizer.learning_rate"``) on a copy; an unknown key is an error."""
  config = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise ValueError(f"overrides: unknown config key {dotted!r}")
    node[leaf] = value
  return config


def metric_value(metric: Metric, results: Mapping[str, Any]) -> float:
  return float(metric(results) if callable(metric) else results[metric])


def steps_to(key: str, threshold: float) -> Callable[[Mapping[str, Any]], float]:
  """Metric: the first evaluated step at which ``key`` reaches ``threshold`` (inf if never)."""

  def f(results):
    for r in results["history"]:
      if r.get(key) is not None and r[key] >= threshold:
        return r["step"]
    return float("inf")

  f.__name__ = f"steps_to_{key}_{threshold:g}"
  return f


def at_step(key: str, step: int) -> Callable[[Mapping[str, Any]], float]:
  """Metric: the value of ``key`` logged at ``step`` (an error if it was not logged there)."""

  def f(results):
    for r in results["history"]:
      if r["step"] == step and key in r:
        return r[key]
    raise ValueError(f"step: {key} was not logged at step {step}")

  f.__name__ = f"{key}_at_{step}"
  return f


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes ``obj`` as JSON atomically (a temporary file, then a rename), creating the folder."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".tmp{os.getpid()}")
  tmp.write_text(json.dumps(obj, indent=1))
  os.replace(tmp, path)


def caches_results(runner: Callable[[ml_collections.ConfigDict, str], Mapping[str, Any]]):
  """Makes a claim runner resumable: ``workdir/results.json`` when it exists, else run and write it.

  For runners that are not `train_and_evaluate` (which resumes from its own checkpoints): a claim
  re-run, or another claim sharing the arm's config, reads the finished run instead of repeating it.
  """
  @functools.wraps(runner)
  def run(config, workdir: str):
    path = pathlib.Path(workdir) / "results.json"
    if path.exists():
      return json.loads(path.read_text())
    results = runner(config, workdir)
    write_json(path, results)
    return results

  return run


def shared_run(run_all: Callable[[ml_collections.ConfigDict], Mapping[str, Any]], config: ml_collections.ConfigDict,
               workdir: str, *, prefix: str, arm_keys: Sequence[str], share: bool,
               checkpoints: bool = False) -> tuple[dict[str, Any], pathlib.Path]:
  """The results every arm of one seed reads, computed once: ``(results, path of their results.json)``.

  For claim runners whose arms are cheapest computed together (one trained model, one noise draw,
  arms trained in lockstep): ``run_all(config)`` computes every arm, and each arm's runner picks its
  own part. With ``share`` the results go to ``<runs dir>/<prefix>-shared-<hash>/seed<k>/results.json``
  beside the arms' workdirs (``<runs dir>/<arm>/seed<k>``), the hash of the config without ``seed`` and
  the dotted ``arm_keys`` (what differs between the arms), so every arm of the seed reads the same run;
  without it (smoke tests) into ``<workdir>/shared``, nothing outside the workdir. With ``checkpoints``,
  ``run_all(config, checkpoint_dir=<that folder>/checkpoints)`` may checkpoint its long loops there, so a
  crashed run resumes where it stopped; the folder is removed once the results are written.
  """
  if share:
    d = config.to_dict()
    d.pop("seed")
    for key in arm_keys:
      section, field = key.rsplit(".", 1)
      functools.reduce(lambda node, k: node[k], section.split("."), d).pop(field)
    digest = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]
    folder = pathlib.Path(workdir).parent.parent / f"{prefix}-shared-{digest}" / f"seed{int(config.seed)}"
  else:
    folder = pathlib.Path(workdir) / "shared"
  path = folder / "results.json"
  if path.exists():
    return json.loads(path.read_text()), path
  if checkpoints:
    results = dict(run_all(config, checkpoint_dir=folder / "checkpoints"))
  else:
    results = dict(run_all(config))
  write_json(path, results)
  if checkpoints:
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
  return results, path


def one_arm(run_all: Callable[..., Mapping[str, Any]], config: ml_collections.ConfigDict, workdir: str, *,
            arm_key: str, arms: Sequence[str], prefix: str, drop: Sequence[str] = (),
            checkpoints: bool = False) -> dict[str, Any]:
  """One arm's results for one seed, from the seed's `shared_run` of every arm: a claim runner's ``run``.

  ``arm_key`` is the dotted config key naming the arm (``"rl.arm"``); it must be one of ``arms``, and its
  section's ``share_runs`` says whether the run is shared. ``run_all(config)`` returns ``{"per_arm": {arm:
  results}, ...}``; the arm's results are its entry merged with the seed-level entries (except ``per_arm``
  and those in ``drop``, e.g. training histories), plus ``arm`` and ``shared_results`` (the shared file).
  """
  section, field = arm_key.rsplit(".", 1)
  node = functools.reduce(lambda n, k: n[k], section.split("."), config)
  arm = node[field]
  if arm not in arms:
    raise ValueError(f"{arm_key}: must be one of {list(arms)}, got {arm!r}")
  shared, path = shared_run(run_all, config, workdir, prefix=prefix, arm_keys=(arm_key,), share=node.share_runs,
                            checkpoints=checkpoints)
  return {**{k: v for k, v in shared.items() if k != "per_arm" and k not in drop}, **shared["per_arm"][arm],
          "arm": arm, "shared_results": str(path)}
