"""Grain input pipelines: seeded per-epoch shuffling, per-process sharding, batching."""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from jaxdyn import _validation
from jaxdyn.data._augment import AUGMENTATIONS, get_augmentation


def _check_sharding(source: Any, batch_size: Any, process_index: Any, process_count: Any) -> tuple[int, int, int]:
  """Validated ``(batch_size, process_index, process_count)`` for a non-empty ``source``."""
  if not hasattr(source, "__len__") or not hasattr(source, "__getitem__"):
    raise TypeError(f"source: must be a random-access source (len and indexing), got {type(source).__name__}")
  if len(source) == 0:
    raise ValueError("source: has no examples")
  process_count = _validation.check_int("process_count", process_count, lower=1)
  process_index = _validation.check_int("process_index", process_index, lower=0, upper=process_count - 1)
  batch_size = _validation.check_int("batch_size", batch_size, lower=1)
  if batch_size % process_count:
    raise ValueError(f"batch_size: must be a positive multiple of process_count={process_count}, got {batch_size}")
  return batch_size, process_index, process_count


def _gather(source: Any, idx: np.ndarray) -> dict[str, np.ndarray]:
  if hasattr(source, "gather"):
    return source.gather(idx)
  recs = [source[int(i)] for i in idx]
  return {k: np.stack([r[k] for r in recs]) for k in recs[0]}


def train_pipeline(
    source: Any,
    *,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    augment: str = "",
) -> grain.MapDataset:
  """An endless, reshuffled-every-epoch stream of this process's share of global batches.

  Example indices are shuffled with ``seed`` (a new permutation each epoch), the stream is split
  round-robin between processes (``process_index`` takes every ``process_count``-th example), and each
  process batches its share into ``batch_size // process_count`` examples. Element ``s`` of the result
  is the batch of step ``s``, so the pipeline is deterministic given the seed and resumes from grain's
  iterator state (``{"next_index": step}``).

  Args:
    source: random-access source of ``{"x", "y"}`` records (``len`` and ``__getitem__``; a ``gather``
      method for vectorised batch reads is used when present).
    batch_size: global batch size, divisible by ``process_count``.
    seed: shuffle seed.
    process_index: this process's index in ``[0, process_count)``.
    process_count: number of processes sharing the stream.
    augment: a name from `AUGMENTATIONS` (e.g. ``"crop_flip"``) applied to each batch's ``x``, or
      ``""`` for none. Its draws come from a generator seeded by (``seed``, ``process_index``, step):
      deterministic and resumable; with several processes the draws differ from a one-process run's.
  """
  batch_size, process_index, process_count = _check_sharding(source, batch_size, process_index, process_count)
  seed = _validation.check_int("seed", seed)
  if len(source) < batch_size:
    raise ValueError(f"batch_size: {batch_size} exceeds the dataset's {len(source)} examples")
  ds = grain.MapDataset.range(len(source)).shuffle(seed=seed).repeat(None)
  ds = ds[process_index::process_count]
  ds = ds.batch(batch_size // process_count, batch_fn=np.asarray)
  ds = ds.map(lambda idx: _gather(source, idx))
  if augment:
    try:
      fn = get_augmentation(augment)
    except ValueError:
      raise ValueError(f"augment: must be one of {', '.join(AUGMENTATIONS)} or empty, got {augment!r}") from None
    aug_seed = int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])
    ds = ds.random_map(lambda batch, rng: {**batch, "x": fn(rng, batch["x"])}, seed=aug_seed)
  return ds


def eval_batches(source: Any, *, batch_size: int, process_index: int = 0, process_count: int = 1):
  """Yields ``{"x", "y", "mask"}`` batches of fixed size over this process's share of ``source``.

  The last batch is padded (``mask`` is 0 on padding) so that one compiled eval step serves all.
  """
  batch_size, process_index, process_count = _check_sharding(source, batch_size, process_index, process_count)
  n = len(source)
  idx = np.arange(process_index, n, process_count)
  local = batch_size // process_count
  for start in range(0, len(idx), local):
    chunk = idx[start:start + local]
    b = _gather(source, chunk)
    pad = local - len(chunk)
    mask = np.concatenate([np.ones(len(chunk), np.float32), np.zeros(pad, np.float32)])
    if pad:
      b = {k: np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) for k, v in b.items()}
    b["mask"] = mask
    yield b
