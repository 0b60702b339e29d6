"""Eager argument validation shared by the dynamics family (private)."""

from __future__ import annotations

import math
import numbers

import jax
import numpy as np

from jaxdyn import _validation


def check_sigma(sigma) -> float:
  """Returns ``sigma`` as a float; raises unless it is a finite number > 0."""
  if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
    raise ValueError(f"sigma: expected a finite number > 0, got {sigma!r}")
  sigma = float(sigma)
  if not math.isfinite(sigma) or sigma <= 0.0:
    raise ValueError(f"sigma: expected a finite number > 0, got {sigma!r}")
  return sigma


def check_int(name: str, value, minimum: int) -> int:
  """Returns ``value`` as an int; raises unless it is an integer >= ``minimum``."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
    raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
  return int(value)


def check_t(t) -> int:
  """The diffusion time: an integer >= 1."""
  return check_int("t", t, 1)


def check_points(name: str, Z, *, min_points: int = 2) -> jax.Array:
  """Checks that ``Z`` is a 2-D array of at least ``min_points`` finite-dtype rows; returns it."""
  shape = np.shape(Z)
  if len(shape) != 2:
    raise ValueError(f"{name}: expected a 2-D array of shape (N, D), got shape {shape}")
  if shape[0] < min_points:
    raise ValueError(f"{name}: expected at least {min_points} points (rows), got N = {shape[0]}")
  if shape[1] < 1:
    raise ValueError(f"{name}: expected at least 1 feature (column), got D = {shape[1]}")
  arr = jax.numpy.asarray(Z)
  if not jax.numpy.issubdtype(arr.dtype, jax.numpy.floating):
    arr = arr.astype(jax.numpy.result_type(float))
  return arr


def check_key(key, *, why: str) -> jax.Array:
  """Raises a ValueError naming ``key`` when it is None but randomness is needed, a TypeError when
  it is not a `jax.random` key."""
  return _validation.check_key("key", key, why=f" {why}")
