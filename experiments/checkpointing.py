"""Orbax checkpoints that are checked on restore: a damaged latest checkpoint falls back to an older one.

Each checkpoint holds the train state (``StandardSave``) and a JSON ``meta`` item with the data
iterator position, elapsed time and a fingerprint of every state leaf. On restore, a checkpoint whose
files cannot be read, or whose restored arrays do not match their fingerprints (a flipped bit, a
truncated file that still parses), is skipped with a warning naming its step and the reason, moved
aside to ``checkpoints/damaged_<step>_<time>`` (kept for inspection, and so the step can be saved
again), and the next older one is tried.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


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


class DamagedCheckpointWarning(UserWarning):
  """A checkpoint could not be restored intact and was skipped."""


@dataclasses.dataclass
class Restored:
  step: int
  state: Any
  meta: dict[str, Any]
  skipped: list[tuple[int, str]]


class Checkpointer:
  """Saves ``(state, meta)`` every so often and restores the newest intact checkpoint."""

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int):
    self.directory = pathlib.Path(directory).absolute()
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def save(self, step: int, state, meta: dict[str, Any]) -> None:
    meta = dict(meta, fingerprint=[int(v) for v in jax.device_get(fingerprint(state))])
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   meta=ocp.args.JsonSave(meta)))

  def restore_latest(self, abstract_state) -> Restored | None:
    """The newest checkpoint that restores intact, or None if there is none; warns about each skipped."""
    skipped = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        r = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        state, meta = r["state"], r["meta"]
        expected = meta.get("fingerprint")
        if expected is None:
          raise ValueError("no fingerprint in its metadata")
        got = [int(v) for v in jax.device_get(fingerprint(state))]
        if got != expected:
          bad = [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]
          raise ValueError(f"{len(bad)} array(s) do not match their saved fingerprints")
      except Exception as e:  # pylint: disable=broad-except  (any failure means: not this checkpoint)
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        skipped.append((step, reason))
        aside = self._set_aside(step)
        msg = (f"Skipping damaged checkpoint at step {step} in {self.directory}: {reason}; "
               f"moved to {aside.name}")
        warnings.warn(msg, DamagedCheckpointWarning, stacklevel=2)
        logging.warning(msg)
        continue
      return Restored(step, state, meta, skipped)
    return None

  def _set_aside(self, step: int) -> pathlib.Path:
    """Renames a damaged step directory out of the manager's sight (kept for inspection)."""
    src = self.directory / str(step)
    dst = self.directory / f"damaged_{step}_{int(time.time())}"
    if jax.process_index() == 0 and src.exists():
      src.rename(dst)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"jaxdyn_checkpoint_set_aside_{step}")
    self.manager.reload()
    return dst

  def wait_until_finished(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
