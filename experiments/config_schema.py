"""Validates an experiment config before any training starts."""

from __future__ import annotations

import errno
import os
import pathlib

import ml_collections

from experiments import registry
from experiments.optimizers import SCHEDULES
from experiments.sharding import MODES
from jaxdyn.data import AUGMENTATIONS, check_dataset_name
from jaxdyn.models import MODELS

# Every experiment config has exactly these top-level keys (configs/default.py defines them all;
# technique configs start from it and change values, plus the *_kwargs dicts).
KEYS = frozenset({
    "seed", "dataset", "data_dir", "cache_dir", "augment", "model", "model_kwargs", "objective",
    "objective_kwargs", "optimizer", "transforms", "callbacks", "batch_size", "eval_batch_size",
    "num_train_steps", "log_every_steps", "eval_every_steps", "checkpoint_every_steps",
    "max_checkpoints", "progress_every_seconds", "nonfinite", "sharding",
})
OPTIMIZER_KEYS = frozenset({"name", "learning_rate", "schedule", "warmup_steps", "boundaries", "decay",
                            "kwargs"})
NONFINITE = ("fail", "skip")


def _positive_int(config, key):
  v = config[key]
  if isinstance(v, bool) or not isinstance(v, int) or v < 1:
    raise ValueError(f"config.{key}: must be a positive integer, got {v!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ``ValueError`` naming the first bad key or value. Imports the registered techniques first."""
  import experiments.techniques  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

  keys = set(config.keys())
  if keys - KEYS:
    raise ValueError(f"config: unknown key(s) {sorted(keys - KEYS)}; valid keys are {sorted(KEYS)}")
  if KEYS - keys:
    raise ValueError(f"config: missing key(s) {sorted(KEYS - keys)}; start from configs/default.py")
  for k in ("num_train_steps", "batch_size", "eval_batch_size", "log_every_steps", "eval_every_steps",
            "checkpoint_every_steps", "max_checkpoints"):
    _positive_int(config, k)
  if config.progress_every_seconds <= 0:
    raise ValueError(f"config.progress_every_seconds: must be > 0, got {config.progress_every_seconds}")
  if config.sharding not in MODES:
    raise ValueError(f"config.sharding: must be one of {list(MODES)}, got {config.sharding!r}")
  if config.nonfinite not in NONFINITE:
    raise ValueError(f"config.nonfinite: must be one of {list(NONFINITE)}, got {config.nonfinite!r}")
  try:
    check_dataset_name(config.dataset)
  except ValueError as e:
    raise ValueError(f"config.{e}") from None
  if config.augment and config.augment not in AUGMENTATIONS:
    raise ValueError(f"config.augment: must be one of {list(AUGMENTATIONS)} or empty, got {config.augment!r}")
  if config.model not in MODELS:
    raise ValueError(f"config.model: unknown name {config.model!r}; valid names are {sorted(MODELS)}")
  try:
    registry.check_kwargs("objective", config.objective, config.objective_kwargs, skip=2)
  except ValueError as e:
    raise ValueError(f"config.objective: {e}") from None
  opt = config.optimizer
  if set(opt.keys()) != OPTIMIZER_KEYS:
    raise ValueError(f"config.optimizer: keys must be {sorted(OPTIMIZER_KEYS)}, got {sorted(opt.keys())}")
  try:
    registry.check_kwargs("optimizer", opt.name, opt.kwargs, skip=1)
  except ValueError as e:
    raise ValueError(f"config.optimizer.name: {e}") from None
  if not opt.learning_rate > 0:
    raise ValueError(f"config.optimizer.learning_rate: must be > 0, got {opt.learning_rate}")
  if opt.schedule not in SCHEDULES:
    raise ValueError(f"config.optimizer.schedule: must be one of {list(SCHEDULES)}, got {opt.schedule!r}")
  for kind, items in (("transform", config.transforms), ("callback", config.callbacks)):
    for item in items:
      item = dict(item)
      if "name" not in item:
        raise ValueError(f"config.{kind}s: each entry needs a 'name', got {item}")
      name = item.pop("name")
      try:
        registry.check_kwargs(kind, name, item, skip=1 if kind == "transform" else 2)
      except ValueError as e:
        raise ValueError(f"config.{kind}s: {e}") from None


def check_workdir(workdir: str | os.PathLike, *, min_free_bytes: int = 50 * 2**20) -> pathlib.Path:
  """Creates ``workdir`` and fails clearly if it cannot be written or its disk is (nearly) full."""
  path = pathlib.Path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_probe_{os.getpid()}"
    probe.write_bytes(b"x")
    probe.unlink()
  except OSError as e:
    raise ValueError(f"workdir: {path} is not writable ({e.strerror or e})") from e
  free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
  if free < min_free_bytes:
    raise ValueError(
        f"workdir: only {free / 2**20:.1f} MiB free on the disk of {path} "
        f"(need {min_free_bytes / 2**20:.0f} MiB): {os.strerror(errno.ENOSPC)}"
    )
  return path
