"""A run's directory: checked before use, locked while a run holds it, and bound to one config.

- `check_workdir`: creates it and fails clearly when it cannot be written or its disk is nearly full.
- `WorkdirLock`: an exclusive ``flock`` on ``<workdir>/.lock`` for the life of the run. A second run on
  the same workdir is refused naming the holder's pid; the kernel drops the lock of a process that
  dies (even by SIGKILL), so a stale lock never blocks a resume.
- `bind_config`: ``config.json`` holds the resolved config of the run that created the workdir. A
  resume with a config that would change the training trajectory is refused, naming each differing
  key; keys that only observe or place the run (logging, evaluation and checkpoint intervals,
  callbacks, data locations, sharding) may change, and so may ``num_train_steps`` when nothing the run
  derives from it (a decaying schedule, a transform's ``total_steps``, an objective's epochs) changes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from experiments.config_schema import ConfigError

CONFIG_JSON = "config.json"
LOCK_FILE = ".lock"
# Keys whose change never alters the training trajectory.
NEUTRAL = ("log_every_steps", "eval_every_steps", "checkpoint_every_steps", "max_checkpoints",
           "progress_every_seconds", "eval_batch_size", "callbacks", "data_dir", "cache_dir", "sharding",
           "nonfinite")


def check_workdir(workdir: str | os.PathLike, *, min_free_bytes: int = 50 * 2**20) -> pathlib.Path:
  """Creates ``workdir`` and fails clearly if it cannot be written or its disk is (nearly) full."""
  path = pathlib.Path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_probe_{os.getpid()}"
    probe.write_bytes(b"x")
    probe.unlink()
  except OSError as e:
    raise ConfigError(f"workdir: {path} is not writable ({e.strerror or e})") from e
  st = os.statvfs(path)
  free = st.f_bavail * st.f_frsize
  if free < min_free_bytes:
    raise ConfigError(
        f"workdir: only {free / 2**20:.1f} MiB free on the disk of {path} "
        f"(need {min_free_bytes / 2**20:.0f} MiB): {os.strerror(errno.ENOSPC)}")
  return path


class WorkdirLock:
  """Holds an exclusive lock on ``<workdir>/.lock`` until `release` (or the process's end)."""

  def __init__(self, workdir: pathlib.Path):
    self.path = workdir / LOCK_FILE
    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
      os.close(self._fd)
      raise ConfigError(f"workdir: {workdir} is in use by another run (pid {holder}); wait for it to "
                        f"finish, or use another --workdir") from None
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, Mapping) and v:
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _canonical(v: Any) -> Any:
  return json.loads(json.dumps(v, default=str))  # tuples as lists, numbers as JSON has them


def trajectory_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  """``key: old -> new`` for each difference between two resolved configs that alters training."""
  a, b = _flatten(_canonical(saved["config"])), _flatten(_canonical(current["config"]))
  out = []
  for key in sorted(set(a) | set(b)):
    top = key.split(".", 1)[0]
    if top in NEUTRAL or a.get(key, "<unset>") == b.get(key, "<unset>"):
      continue
    if key == "num_train_steps" and saved.get("derived") == current.get("derived"):
      continue  # more (or fewer) steps of the same trajectory
    out.append(f"{key} {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}")
  if not out and saved.get("derived") != current.get("derived"):
    da, db = _flatten(saved.get("derived", {})), _flatten(current.get("derived", {}))
    out = [f"{k} {da.get(k)!r} -> {db.get(k)!r} (derived from num_train_steps)"
           for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)]
  return out


def bind_config(workdir: pathlib.Path, resolved: Mapping[str, Any], *, has_checkpoints: bool,
                write: bool) -> None:
  """Writes ``config.json`` for a new run, or refuses a resume whose config changes the trajectory.

  ``resolved`` is ``{"config": <config dict>, "derived": <values the run derives>}``. A workdir with
  checkpoints but no ``config.json`` (made before the file existed) is adopted as it is.
  """
  path = workdir / CONFIG_JSON
  if path.exists() and has_checkpoints:
    try:
      saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise ConfigError(f"workdir: {path} is unreadable ({e}); move it aside to resume without the check")
    diff = trajectory_differences(saved, resolved)
    if diff:
      raise ConfigError(
          f"config: {workdir} holds a run with a different configuration ({', '.join(diff)}); resuming "
          f"would mix two runs. Start fresh with another --workdir (or delete this one), or restore the "
          f"original values")
  if write:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_canonical(resolved), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
