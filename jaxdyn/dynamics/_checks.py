"""Argument checks specific to the dynamics family (private), built on `jaxdyn._validation`."""

from __future__ import annotations

import math

import jax
import numpy as np

from jaxdyn import _validation

# The diffusion time is traced as an int32 (a new t does not recompile).
MAX_T = 2**31 - 1


def check_points_shape(name: str, Z, *, min_points: int = 2) -> None:
  """Raises naming ``Z`` unless it is an ``(N, D)`` array with N >= ``min_points`` and D >= 1."""
  _validation.check_ndim(name, Z, 2)
  shape = np.shape(Z)
  if shape[0] < min_points:
    what = "points (rows)" if min_points > 1 else "point (row)"
    raise ValueError(f"{name}: must hold at least {min_points} {what}, got shape {shape}")
  if shape[1] < 1:
    raise ValueError(f"{name}: must have at least 1 feature (column), got shape {shape}")


def check_points(name: str, Z, *, min_points: int = 2) -> jax.Array:
  """``Z`` as an ``(N, D)`` floating JAX array (`check_points_shape`); raises naming it.

  Integers become the default float and float16 / bfloat16 become float32
  (`_validation.check_floating`: the eigensolvers downstream have no half-precision kernels).
  """
  check_points_shape(name, Z, min_points=min_points)
  return _validation.check_floating(name, Z)


def check_bandwidth(sigma) -> tuple[float, int]:
  """Checks a kernel bandwidth ``sigma > 0``; returns ``(m, e)`` with ``sigma = m * 2**e``.

  The split is exact (``math.frexp``), so a bandwidth that the array dtype cannot hold
  (``1e39`` or ``1e-50`` in float32) still reaches the kernel, which works at a scale where
  ``m`` is representable. A traced ``sigma`` is returned as ``(sigma, 0)``.
  """
  sigma = _validation.check_real("sigma", sigma, lower=0.0, lower_open=True)
  if not _validation.is_concrete(sigma):
    return sigma, 0
  return math.frexp(sigma)

