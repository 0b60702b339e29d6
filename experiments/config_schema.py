"""Validation of an experiment config, before anything is built, compiled or written.

`validate` checks what can be checked from the config alone: its keys, every value's type and range,
registered names and the keyword arguments each named piece takes. What needs the built objects (a
model's capabilities, a value an objective checks when it is traced) is checked by
`experiments.train.build`, still before the workdir is touched. Every failure is a `ConfigError`:
one line naming the config key, which ``experiments.main`` prints without a traceback (exit code 2).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import ml_collections

from experiments import registry
from experiments.sharding import MODES
from jaxdyn.data import AUGMENTATIONS, check_dataset_name

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
SCHEDULES = ("constant", "cosine", "warmup_cosine", "piecewise")
NONFINITE = ("fail", "skip")


class ConfigError(ValueError):
  """A configuration mistake, named by its config key; printed as one line, exit code 2."""


def _is_int(v: Any) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(config, key: str, *, lower: int, upper: int | None = None, where: str = "config") -> int:
  v = config[key]
  rng = f">= {lower}" if upper is None else f"in [{lower}, {upper}]"
  if not _is_int(v) or v < lower or (upper is not None and v > upper):
    raise ConfigError(f"{where}.{key}: must be an integer {rng}, got {v!r}")
  return v


def _real(config, key: str, *, positive: bool, where: str = "config") -> float:
  v = config[key]
  ok = _is_real(v) and math.isfinite(v) and (v > 0 if positive else v >= 0)
  if not ok:
    raise ConfigError(f"{where}.{key}: must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
  return float(v)


def from_library_error(where: str, error: Exception, kwargs: Mapping[str, Any] | None = None, *,
                       piece: str = "") -> ConfigError:
  """A library's ``"name: must be ..."`` error as a `ConfigError` naming the config key.

  ``where`` is the config key of the piece (``config.objective_kwargs``); when the message names one
  of ``kwargs``, the key becomes ``<where>.<name>``. ``piece`` (a registered name) is added in
  parentheses.
  """
  message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  tag = f" ({piece})" if piece else ""
  m = re.match(r"^`?([A-Za-z_][A-Za-z0-9_]*)`?:\s*(.*)$", message)
  if m and kwargs is not None and m.group(1) in kwargs:
    return ConfigError(f"{where}.{m.group(1)}{tag}: {m.group(2)}")
  return ConfigError(f"{where}{tag}: {message}")


def entries(config, kind: str) -> list[tuple[str, dict[str, Any]]]:
  """``config.transforms`` or ``config.callbacks`` as ``(name, kwargs)`` pairs.

  Each entry is a registered name (``"dse"``) or a dict ``{"name": ..., **kwargs}``; the list must be
  a tuple, so that ``--config.callbacks='({"name": "dse", "every_steps": 50},)'`` can set it.
  """
  key = f"{kind}s"
  items = config[key]
  if not isinstance(items, tuple):
    raise ConfigError(f"config.{key}: must be a tuple (so the command line can set it), got "
                      f"{type(items).__name__} {items!r}")
  out = []
  for i, item in enumerate(items):
    if isinstance(item, str):
      item = {"name": item}
    if isinstance(item, ml_collections.ConfigDict):
      item = item.to_dict()
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
      raise ConfigError(f"config.{key}[{i}]: must be a registered name or a dict with a 'name', got {item!r}")
    kwargs = dict(item)
    out.append((kwargs.pop("name"), kwargs))
  return out


def _check_piece(kind: str, name: str, kwargs: Mapping[str, Any], where: str) -> None:
  try:
    registry.check_kwargs(kind, name, kwargs)
  except ValueError as e:
    raise ConfigError(f"{where}: {e}") from None


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` naming the first bad key or value; loads the registered techniques first."""
  registry.load_all()
  keys = set(config.keys())
  if keys - KEYS:
    raise ConfigError(f"config: unknown key(s) {', '.join(sorted(keys - KEYS))}; valid keys are "
                      f"{', '.join(sorted(KEYS))}")
  if KEYS - keys:
    raise ConfigError(f"config: missing key(s) {', '.join(sorted(KEYS - keys))}; start from configs/default.py")
  if not _is_int(config.seed):
    raise ConfigError(f"config.seed: must be an integer, got {config.seed!r}")
  steps = _int(config, "num_train_steps", lower=1)
  for k in ("batch_size", "eval_batch_size", "log_every_steps", "eval_every_steps", "checkpoint_every_steps",
            "max_checkpoints"):
    _int(config, k, lower=1)
  _real(config, "progress_every_seconds", positive=True)
  for key, choices in (("sharding", MODES), ("nonfinite", NONFINITE)):
    if config[key] not in choices:
      raise ConfigError(f"config.{key}: must be one of {', '.join(choices)}, got {config[key]!r}")
  try:
    check_dataset_name(config.dataset)
  except ValueError as e:
    raise ConfigError(f"config.dataset: {str(e).split(': ', 1)[1]}") from None
  if config.augment and config.augment not in AUGMENTATIONS:
    raise ConfigError(f"config.augment: must be one of {', '.join(AUGMENTATIONS)} or empty, got {config.augment!r}")
  for key in ("data_dir", "cache_dir"):
    if not isinstance(config[key], str):
      raise ConfigError(f"config.{key}: must be a path string ('' for the default), got {config[key]!r}")

  for kind, key in (("model", "model"), ("objective", "objective")):
    if config[key] not in registry.names(kind):
      raise ConfigError(f"config.{key}: unknown {kind} {config[key]!r}; valid names are "
                        f"{', '.join(registry.names(kind))}")
    _check_piece(kind, config[key], config[f"{key}_kwargs"], f"config.{key}_kwargs")

  opt = config.optimizer
  if set(opt.keys()) != OPTIMIZER_KEYS:
    raise ConfigError(f"config.optimizer: keys must be {', '.join(sorted(OPTIMIZER_KEYS))}, got "
                      f"{', '.join(sorted(opt.keys()))}")
  if opt.name not in registry.names("optimizer"):
    raise ConfigError(f"config.optimizer.name: unknown optimizer {opt.name!r}; valid names are "
                      f"{', '.join(registry.names('optimizer'))}")
  _check_piece("optimizer", opt.name, opt.kwargs, "config.optimizer.kwargs")
  _real(opt, "learning_rate", positive=True, where="config.optimizer")
  if opt.schedule not in SCHEDULES:
    raise ConfigError(f"config.optimizer.schedule: must be one of {', '.join(SCHEDULES)}, got {opt.schedule!r}")
  warmup = _int(opt, "warmup_steps", lower=0, upper=steps, where="config.optimizer")
  if warmup and opt.schedule != "warmup_cosine":
    raise ConfigError(f"config.optimizer.warmup_steps: only the warmup_cosine schedule warms up; got "
                      f"{warmup} with schedule {opt.schedule!r} (set it to 0)")
  boundaries = opt.boundaries
  if not isinstance(boundaries, (tuple, list)) or not all(_is_int(b) for b in boundaries):
    raise ConfigError(f"config.optimizer.boundaries: must be a tuple of integer steps, got {boundaries!r}")
  if opt.schedule == "piecewise":
    if list(boundaries) != sorted(set(boundaries)) or any(not 0 < b <= steps for b in boundaries):
      raise ConfigError(f"config.optimizer.boundaries: must be increasing steps in [1, num_train_steps="
                        f"{steps}], got {tuple(boundaries)}")
  elif boundaries:
    raise ConfigError(f"config.optimizer.boundaries: only the piecewise schedule uses them; got "
                      f"{tuple(boundaries)} with schedule {opt.schedule!r}")
  _real(opt, "decay", positive=True, where="config.optimizer")

  for kind in ("transform", "callback"):
    for i, (name, kwargs) in enumerate(entries(config, kind)):
      if name not in registry.names(kind):
        raise ConfigError(f"config.{kind}s[{i}]: unknown {kind} {name!r}; valid names are "
                          f"{', '.join(registry.names(kind))}")
      _check_piece(kind, name, kwargs, f"config.{kind}s[{i}] ({name})")
