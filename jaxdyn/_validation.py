"""Eager argument checks shared by every jaxdyn family (private): one place, one message style.

Every check raises with a message that starts with the argument's name, ``"rate: must be ..."``,
as BUILD.md's input policy asks. The checks are eager: they read concrete values (Python numbers,
NumPy scalars and arrays, concrete JAX arrays) and let tracers through unchecked, because a traced
value is unknown until run time. Hyperparameters therefore accept any real number type, NumPy
scalars (``np.float32(0.05)``) and 0-d arrays included; booleans are never numbers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
  """True when ``x`` holds values, i.e. it is not a tracer under ``jit``, ``grad`` or ``vmap``."""
  return not isinstance(x, jax.core.Tracer)


def _fmt(v) -> str:
  return f"{v:g}" if isinstance(v, float) else str(v)


def _bounds(lower, upper, lower_open: bool = False, upper_open: bool = False) -> str:
  """The accepted range in words: "in [0, 1)", ">= 1", "< 5" or ""."""
  if lower is not None and upper is not None:
    return f"in {'(' if lower_open else '['}{_fmt(lower)}, {_fmt(upper)}{')' if upper_open else ']'}"
  if lower is not None:
    return f"{'>' if lower_open else '>='} {_fmt(lower)}"
  if upper is not None:
    return f"{'<' if upper_open else '<='} {_fmt(upper)}"
  return ""


def _scalar(value: Any, kind: str) -> Any:
  """``value`` as a Python int/float (``kind`` "int"/"real"), the tracer itself, or None if neither."""
  if not is_concrete(value):
    return value
  if isinstance(value, (bool, np.bool_)):
    return None
  if kind == "int" and isinstance(value, numbers.Integral):
    return int(value)
  if kind == "real" and isinstance(value, numbers.Real):
    return float(value)
  if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
    dtype = np.asarray(value).dtype
    if np.issubdtype(dtype, np.integer) or (kind == "real" and np.issubdtype(dtype, np.floating)):
      return int(value) if kind == "int" else float(value)
  return None


def check_int(name: str, value: Any, *, lower: int | None = None, upper: int | None = None) -> Any:
  """Returns ``int(value)``, or raises unless it is an integer in ``[lower, upper]``.

  Python ints, NumPy integer scalars and 0-d integer arrays count; bools and floats (even 2.0) do
  not. A tracer is returned unchecked.
  """
  v = _scalar(value, "int")
  if v is not None and not isinstance(v, int):
    return value  # a tracer
  rng = _bounds(lower, upper)
  if v is None or (lower is not None and v < lower) or (upper is not None and v > upper):
    raise ValueError(f"{name}: must be an int{' ' + rng if rng else ''}, got {value!r}")
  return v


def check_real(name: str, value: Any, *, lower: float | None = None, upper: float | None = None,
               lower_open: bool = False, upper_open: bool = False, finite: bool = True) -> Any:
  """Returns ``float(value)``, or raises unless it is a real number within the bounds.

  ``lower_open`` / ``upper_open`` make a bound strict. NaN is always rejected; infinities unless
  ``finite=False``. Python and NumPy numbers and 0-d arrays count; bools do not. A tracer is
  returned unchecked.
  """
  v = _scalar(value, "real")
  if v is not None and not isinstance(v, float):
    return value  # a tracer
  rng = _bounds(lower, upper, lower_open, upper_open)
  want = f"a {'finite ' if finite else ''}real number{' ' + rng if rng else ''}"
  if v is None or math.isnan(v) or (finite and math.isinf(v)):
    raise ValueError(f"{name}: must be {want}, got {value!r}")
  if lower is not None and (v <= lower if lower_open else v < lower):
    raise ValueError(f"{name}: must be {want}, got {value!r}")
  if upper is not None and (v >= upper if upper_open else v > upper):
    raise ValueError(f"{name}: must be {want}, got {value!r}")
  return v


def check_rate(name: str, value: Any) -> Any:
  """A probability of dropping: a real number in [0, 1)."""
  return check_real(name, value, lower=0.0, upper=1.0, upper_open=True)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
  """Returns ``value`` if it is one of ``choices``, else raises listing them."""
  choices = list(choices)
  try:
    ok = not isinstance(value, bool) and value in choices
  except (TypeError, ValueError):  # e.g. an unhashable or array value
    ok = False
  if not ok:
    raise ValueError(f"{name}: must be one of {choices}, got {value!r}")
  return value


def check_key(name: str, key: Any, *, why: str = "") -> Any:
  """Returns ``key`` or raises unless it is a `jax.random` key (typed, or a raw uint32 pair).

  Args:
    name: the argument's name in the message.
    key: the candidate key; a tracer is fine (only its dtype and shape are read).
    why: appended to the message for a missing key, e.g. ``" for method='slq'"``.
  """
  if key is None:
    raise ValueError(f"{name}: a jax.random key is required{why}, got None")
  dtype = getattr(key, "dtype", None)
  typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
  raw = dtype == np.uint32 and np.shape(key)[-1:] == (2,)
  if not (typed or raw):
    raise TypeError(f"{name}: must be a jax.random key (jax.random.key(seed)), got "
                    f"{type(key).__name__} {getattr(key, 'dtype', '')}".rstrip())
  return key


def check_ndim(name: str, x: Any, ndims: int | tuple[int, ...]) -> None:
  ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
  if np.ndim(x) not in ndims:
    want = " or ".join(str(d) for d in ndims)
    raise ValueError(f"{name}: must have {want} dimension{'' if ndims == (1,) else 's'}, got shape {np.shape(x)}")


def check_same_shape(name_a: str, a: Any, name_b: str, b: Any) -> None:
  if np.shape(a) != np.shape(b):
    raise ValueError(f"{name_a}: must have the shape of {name_b}, got {np.shape(a)} and {np.shape(b)}")


def check_nonempty(name: str, x: Any, *, axis: int = 0, what: str = "examples") -> None:
  """Raises when ``x`` has no entries along ``axis`` (an empty batch)."""
  shape = np.shape(x)
  if len(shape) > axis and shape[axis] == 0:
    raise ValueError(f"{name}: must hold at least one of its {what} (axis {axis}), got shape {shape}")


def check_floating(name: str, x: Any) -> jax.Array:
  """``x`` as a JAX array of a floating dtype that linear algebra supports.

  Integers and bools become the default float; float16 and bfloat16 are upcast to float32 (LAPACK
  has no half-precision kernels; a silent NotImplementedError from an eigensolver is worse).
  """
  arr = jnp.asarray(x)
  if jnp.issubdtype(arr.dtype, jnp.complexfloating):
    raise TypeError(f"{name}: must be real, got dtype {arr.dtype}")
  if not jnp.issubdtype(arr.dtype, jnp.floating):
    return arr.astype(jnp.result_type(float))
  if arr.dtype in (jnp.float16, jnp.bfloat16):
    return arr.astype(jnp.float32)
  return arr


def check_finite(name: str, x: Any) -> None:
  """Raises when the concrete array ``x`` holds a NaN or an infinity (tracers are not checked).

  The eager half of the non-finite policy: under ``jit`` the function must propagate NaN instead.
  """
  if not is_concrete(x) or not np.size(x):
    return
  v = np.asarray(x)
  if not (np.issubdtype(v.dtype, np.floating) or v.dtype == jnp.bfloat16):
    return
  bad = ~np.isfinite(v.astype(np.float64))
  if bad.any():
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(f"{name}: must be finite, found {float(v[idx])} at index {idx}")


def check_integer_labels(name: str, labels: Any, num_classes: int, *, shape: tuple[int, ...] | None = None
                         ) -> None:
  """Checks integer class ids in [0, num_classes) (of ``shape`` if given).

  The range is checked only when ``labels`` is concrete; under ``jit`` use `labels_valid` to turn
  the loss of an out-of-range label into NaN.
  """
  if shape is not None and tuple(np.shape(labels)) != tuple(shape):
    raise ValueError(f"{name}: must be integer class ids of shape {tuple(shape)}, got shape "
                     f"{np.shape(labels)}")
  dtype = labels.dtype if hasattr(labels, "dtype") else np.asarray(labels).dtype
  if not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(f"{name}: must be integer class ids in [0, {num_classes}), got dtype {dtype}")
  if is_concrete(labels) and np.size(labels):
    values = np.asarray(labels)
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= num_classes:
      raise ValueError(f"{name}: must lie in [0, {num_classes}) (num_classes = {num_classes}), got "
                       f"values in [{lo}, {hi}]")


def check_labels_for_logits(name: str, labels: Any, logits: Any) -> None:
  """Integer class ids of shape ``logits.shape[:-1]`` in ``[0, logits.shape[-1])``."""
  check_integer_labels(name, labels, np.shape(logits)[-1], shape=np.shape(logits)[:-1])


def check_soft_labels(name: str, labels: Any, logits: Any) -> None:
  """Checks floating per-class probabilities with the shape of ``logits``."""
  dtype = labels.dtype if hasattr(labels, "dtype") else np.asarray(labels).dtype
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"{name}: must be floating per-class probabilities (soft labels), got dtype {dtype}")
  check_same_shape(name, labels, "logits", logits)


def labels_valid(labels: jax.Array, num_classes: int) -> jax.Array:
  """Traced half of the label policy: a boolean array, False where a label is out of range.

  Use it as ``jnp.where(labels_valid(y, k), loss, jnp.nan)`` so that an out-of-range label gives a
  NaN loss under ``jit`` (where it cannot be checked eagerly), never a plausible finite number.
  """
  return (labels >= 0) & (labels < num_classes)


def nan_unless(ok: jax.Array, x: jax.Array) -> jax.Array:
  """``x`` where ``ok``, NaN elsewhere (broadcast); a scalar ``ok`` poisons the whole result."""
  return jnp.where(ok, x, jnp.asarray(jnp.nan, x.dtype))


def check_nonnegative(name: str, x: Any, *, strict: bool = False) -> None:
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
