"""Eager argument checks shared by jaxdyn's families (private)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
  """True when `x` holds values, i.e. it is not a tracer under `jit`, `grad` or `vmap`."""
  return not isinstance(x, jax.core.Tracer)


def check_real(value: Any, name: str, *, lower: float, strict: bool) -> None:
  """Raises unless the concrete `value` is > `lower` (strict) or >= `lower`; NaN is rejected."""
  if not is_concrete(value):
    return  # A traced hyperparameter: nothing to check eagerly.
  bound = f"> {lower}" if strict else f">= {lower}"
  try:
    v = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f"`{name}` must be a real number {bound}, got {value!r}.") from e
  ok = v > lower if strict else v >= lower
  if v.ndim != 0 or not bool(ok):  # `not (nan > x)` is True, so NaN is rejected too.
    raise ValueError(f"`{name}` must be a real scalar {bound}, got {value!r}.")


def check_int(value: Any, name: str, *, lower: int) -> int:
  """Returns `int(value)` or raises unless it is an integer >= `lower`."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"`{name}` must be an int >= {lower}, got {value!r}.")
  if value < lower:
    raise ValueError(f"`{name}` must be an int >= {lower}, got {value!r}.")
  return int(value)


def check_ndim(x: Any, ndims: int | tuple[int, ...], name: str) -> None:
  ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
  if np.ndim(x) not in ndims:
    want = " or ".join(str(d) for d in ndims)
    raise ValueError(f"`{name}` must have {want} dimensions, got shape {np.shape(x)}.")


def check_same_shape(a: Any, b: Any, name_a: str, name_b: str) -> None:
  if np.shape(a) != np.shape(b):
    raise ValueError(
        f"`{name_a}` and `{name_b}` must have the same shape, got {np.shape(a)} and "
        f"{np.shape(b)}.")


def check_integer_labels(labels: Any, logits: Any, name: str = "labels") -> None:
  """Checks integer class ids of shape `logits.shape[:-1]` in [0, logits.shape[-1]).

  The range is checked only when `labels` is concrete (not a tracer).
  """
  num_classes = np.shape(logits)[-1]
  if np.shape(labels) != np.shape(logits)[:-1]:
    raise ValueError(
        f"`{name}` must be integer class ids of shape logits.shape[:-1] = "
        f"{np.shape(logits)[:-1]}, got shape {np.shape(labels)}.")
  dtype = labels.dtype if hasattr(labels, "dtype") else jnp.asarray(labels).dtype
  if not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(
        f"`{name}` must be integer class ids in [0, {num_classes}), got dtype {dtype}.")
  if is_concrete(labels) and np.size(labels):
    values = np.asarray(labels)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= num_classes:
      raise ValueError(
          f"`{name}` must lie in [0, {num_classes}) (num_classes = logits.shape[-1]), got "
          f"values in [{lo}, {hi}].")


def check_soft_labels(labels: Any, logits: Any, name: str = "labels") -> None:
  """Checks floating per-class probabilities with the shape of `logits`."""
  dtype = labels.dtype if hasattr(labels, "dtype") else jnp.asarray(labels).dtype
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"`{name}` must be floating per-class probabilities (soft labels), got dtype {dtype}.")
  check_same_shape(labels, logits, name, "logits")


def check_key(key: Any, name: str = "key", *, why: str = "") -> Any:
  """Returns ``key`` or raises unless it is a `jax.random` key (typed, or a raw uint32 pair).

  Args:
    key: the candidate key; a tracer is fine (only its dtype and shape are read).
    name: the argument's name in the message.
    why: appended to the message for a missing key, e.g. ``" for method='slq'"``.
  """
  if key is None:
    raise ValueError(f"{name}: a jax.random key is required{why}, got None")
  dtype = getattr(key, "dtype", None)
  typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
  raw = dtype == np.uint32 and np.shape(key)[-1:] == (2,)
  if not (typed or raw):
    raise TypeError(f"{name}: expected a jax.random key (jax.random.key(seed)), got {type(key).__name__} "
                    f"{getattr(key, 'dtype', '')}".rstrip())
  return key


def check_nonnegative(x: Any, name: str, *, strict: bool = False) -> None:
  """Raises unless every value of the concrete array ``x`` is >= 0 (> 0 when ``strict``); NaN fails.

  A tracer is not checked: its values are unknown until run time.
  """
  if not is_concrete(x) or not np.size(x):
    return
  v = np.asarray(x, dtype=np.float64)
  ok = v > 0 if strict else v >= 0
  if not np.all(ok):
    bad = v[~ok].flat[0]
    raise ValueError(f"{name}: every entry must be {'> 0' if strict else '>= 0'}, found {bad!r}")
