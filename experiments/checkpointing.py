"""Orbax checkpoints that are checked on restore: a damaged checkpoint falls back to an older one.

Each checkpoint holds the train state (``StandardSave``) and a JSON ``meta`` item: the data iterator
position, elapsed time, a fingerprint of every state leaf, and a digest of all of that, so that the
metadata is covered too (a changed iterator position or a removed field is damage, not a silent
resume on other batches).

On restore, newest first:
- a checkpoint whose saved tree (shapes, dtypes, structure) differs from the run's state belongs to
  another configuration: that is a `ConfigError`, never damage, and nothing is moved;
- a checkpoint whose files cannot be read, whose metadata does not match its digest, or whose
  restored arrays do not match their fingerprints is skipped with a warning naming its step and the
  reason, moved aside to ``checkpoints/damaged_<step>_<time>`` when the folder is writable (kept for
  inspection, and so the step can be saved again), and the next older one is tried.
The same holds for a step whose ``_CHECKPOINT_METADATA`` is so broken that orbax cannot even open the
folder. A save that fails (read-only folder, full disk) raises `CheckpointWriteError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import re
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from experiments.config_schema import ConfigError

_META_DIGEST = "meta_digest"


@jax.jit
def fingerprint(tree) -> list[jax.Array]:
  """One uint32 per leaf: sum_i (i + 1) * bits(x_i) mod 2**32, over the leaf's raw bytes as uint32.

  Position-weighted, so swapped or flipped entries change it; computed on device, so sharded arrays
  need no gathering.
  """
  out = []
  for x in jax.tree.leaves(tree):
    x = jnp.ravel(x)
    if x.dtype.itemsize == 4:
      bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    elif x.dtype.itemsize == 8:
      bits = jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
    elif x.dtype == jnp.bool_:
      bits = x.astype(jnp.uint32)
    else:
      bits = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}")).astype(jnp.uint32)
    weights = jnp.arange(1, bits.size + 1, dtype=jnp.uint32)
    out.append(jnp.sum(bits * weights, dtype=jnp.uint32))
  return out


def meta_digest(meta: dict[str, Any]) -> str:
  """SHA-256 of the metadata's canonical JSON, without the digest field itself."""
  body = {k: v for k, v in meta.items() if k != _META_DIGEST}
  return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


class DamagedCheckpointWarning(UserWarning):
  """A checkpoint could not be restored intact and was skipped."""


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (read-only folder, full disk, ...)."""


@dataclasses.dataclass
class Restored:
  step: int
  state: Any
  meta: dict[str, Any]
  skipped: list[tuple[int, str]]


def _handlers():
  return {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}


def _step_dirs(directory: pathlib.Path) -> list[pathlib.Path]:
  if not directory.is_dir():
    return []
  return sorted((p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: -int(p.name))


def _unreadable_step_metadata(step_dir: pathlib.Path) -> str | None:
  """Why orbax cannot read ``<step>/_CHECKPOINT_METADATA``, or None if it can."""
  path = step_dir / "_CHECKPOINT_METADATA"
  if not path.exists():
    return None
  try:
    data = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    return f"_CHECKPOINT_METADATA is not JSON ({e})"
  try:  # orbax's own parser, where this orbax version has it where we expect it
    from orbax.checkpoint._src.metadata import step_metadata_serialization as sms  # pylint: disable=g-import-not-at-top
    sms.deserialize(data)
  except ImportError:
    if data is not None and not isinstance(data, dict):
      return f"_CHECKPOINT_METADATA is not a JSON object: {type(data).__name__}"
  except Exception as e:  # pylint: disable=broad-except
    return f"_CHECKPOINT_METADATA: {e}"
  return None


def _named_leaves(tree) -> dict[str, Any]:
  """``{"params.head.kernel.value": leaf, ...}``: dotted paths as orbax names saved arrays."""
  def part(k):
    return str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k))))
  return {".".join(part(k) for k in path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _same_tree(saved, target) -> str | None:
  """Why the saved array tree differs from ``target`` (arrays, shapes or dtypes), or None."""
  a, b = _named_leaves(saved), _named_leaves(target)
  if set(a) != set(b):
    only_saved, only_run = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    return (f"saved arrays not in this run's state: {only_saved[:3]}; arrays of this run not saved: "
            f"{only_run[:3]}")
  for name in sorted(b):
    x, y = a[name], b[name]
    if tuple(x.shape) != tuple(y.shape) or jnp.dtype(x.dtype) != jnp.dtype(y.dtype):
      return f"{name}: saved {jnp.dtype(x.dtype)}{list(x.shape)}, this run's {jnp.dtype(y.dtype)}{list(y.shape)}"
  return None


class Checkpointer:
  """Saves ``(state, meta)`` every so often and restores the newest intact checkpoint."""

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int):
    self.directory = pathlib.Path(directory).absolute()
    self._skip: set[int] = set()  # damaged steps that could not be moved aside (read-only folder)
    self.manager = self._open(max_to_keep)

  def _open(self, max_to_keep: int) -> ocp.CheckpointManager:
    """The manager; steps whose metadata orbax cannot parse are set aside first (with a warning)."""
    for step_dir in _step_dirs(self.directory):
      reason = _unreadable_step_metadata(step_dir)
      if reason is not None:
        self._damaged(int(step_dir.name), reason, reload=False)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    try:
      return ocp.CheckpointManager(self.directory, options=options, item_handlers=_handlers())
    except OSError as e:
      raise CheckpointWriteError(f"checkpoints: cannot open {self.directory} ({e.strerror or e})") from e

  def _write_error(self, e: Exception) -> CheckpointWriteError:
    """The failure in words: the OS error when there is one (tensorstore wraps it in a long message)."""
    if isinstance(e, OSError) and e.strerror:
      cause = e.strerror
    elif m := re.search(r"os_error_code='?(\d+)", str(e)):
      cause = os.strerror(int(m.group(1)))
    else:
      cause = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
    return CheckpointWriteError(f"checkpoints: cannot write to {self.directory} ({cause})")

  def save(self, step: int, state, meta: dict[str, Any]) -> None:
    """Starts an asynchronous save; a failure of this or an earlier save raises `CheckpointWriteError`.

    ``meta`` is copied (through JSON) before the call returns: the write happens in the background, and a
    caller that goes on changing a list or dict it passed (a growing log) must not change what is saved.
    """
    meta = json.loads(json.dumps(dict(meta, fingerprint=[int(v) for v in jax.device_get(fingerprint(state))])))
    meta[_META_DIGEST] = meta_digest(meta)
    try:
      self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)))
    except Exception as e:  # pylint: disable=broad-except  (tensorstore reports a full disk as ValueError)
      raise self._write_error(e) from e

  def check(self) -> None:
    """Raises `CheckpointWriteError` if an asynchronous save has failed (cheap; call it often)."""
    try:
      self.manager.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_error(e) from e

  def steps(self) -> list[int]:
    return sorted(s for s in self.manager.all_steps() if s not in self._skip)

  def restore_latest(self, abstract_state) -> Restored | None:
    """The newest checkpoint that restores intact, or None if there is none; warns about each skipped.

    Raises `ConfigError` when a checkpoint holds another configuration's state.
    """
    skipped = []
    for step in sorted(self.steps(), reverse=True):
      try:
        saved = self.manager.item_metadata(step)["state"]
      except Exception:  # pylint: disable=broad-except  (unreadable metadata: the restore below decides)
        saved = None
      if saved is not None:
        tree = getattr(saved, "tree", saved)
        mismatch = _same_tree(tree, abstract_state)
        if mismatch is not None:
          raise ConfigError(
              f"config: the checkpoint at step {step} in {self.directory} was written by a run with another "
              f"model, optimizer or data ({mismatch}); start fresh with another --workdir")
      try:
        r = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        state, meta = r["state"], dict(r["meta"])
        if meta.get(_META_DIGEST) != meta_digest(meta):
          raise ValueError("its metadata does not match its digest")
        for field in ("data", "elapsed_s", "fingerprint"):
          if field not in meta:
            raise ValueError(f"its metadata has no {field!r}")
        got = [int(v) for v in jax.device_get(fingerprint(state))]
        if got != meta["fingerprint"]:
          bad = [i for i, (a, b) in enumerate(zip(got, meta["fingerprint"])) if a != b]
          raise ValueError(f"{len(bad) or 'some'} array(s) do not match their saved fingerprints")
      except Exception as e:  # pylint: disable=broad-except  (any failure means: not this checkpoint)
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        skipped.append((step, reason))
        self._damaged(step, reason)
        continue
      return Restored(step, state, meta, skipped)
    return None

  def _damaged(self, step: int, reason: str, *, reload: bool = True) -> None:
    """Warns, and renames a damaged step directory out of the manager's sight when it can."""
    src = self.directory / str(step)
    dst = self.directory / f"damaged_{step}_{int(time.time())}"
    where = f"moved to {dst.name}"
    if jax.process_index() == 0 and src.exists():
      try:
        src.rename(dst)
      except OSError as e:
        where = f"left in place: it cannot be moved ({e.strerror or e})"
        self._skip.add(step)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"jaxdyn_checkpoint_set_aside_{step}")
    if reload:
      self.manager.reload()
    msg = f"Skipping damaged checkpoint at step {step} in {self.directory}: {reason}; {where}"
    warnings.warn(msg, DamagedCheckpointWarning, stacklevel=3)
    logging.warning(msg)

  def wait_until_finished(self) -> None:
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_error(e) from e

  def close(self) -> None:
    self.manager.close()
