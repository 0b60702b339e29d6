"""Random patch masking for deferred-masking diffusion training (micro-budget diffusion).

Sehwag, Kong, Li, Spranger, Lyu, "Stretching Each Dollar: Diffusion Training from Scratch on a Micro-Budget",
2024, https://arxiv.org/abs/2407.15811.

Each training image keeps a uniformly random subset of ``K = max(1, floor((1 - r) T))`` of its ``T`` patches
(mask ratio ``r``; the authors' code keeps ``int(T (1 - r))``, the same count whenever that is >= 1). ``K``
depends only on ``T`` and ``r``, so under ``jit`` every batch has the same shapes. The indices come sorted,
so a mask ratio of 0 keeps every patch in raster order and `jaxdyn.models.DiT` computes exactly its
unmasked output; the last, unmasked fine-tuning phase of the paper is mask ratio 0.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxdyn import _validation

__all__ = ["num_kept_patches", "random_keep_indices"]


def num_kept_patches(num_patches: int, mask_ratio: float) -> int:
  """``K = max(1, floor((1 - mask_ratio) num_patches))``, the patches kept per image.

  Args:
    num_patches: ``T >= 1``.
    mask_ratio: ``r`` in [0, 1).

  Example:
    >>> num_kept_patches(16, 0.75), num_kept_patches(16, 0.0), num_kept_patches(10, 0.99)
    (4, 16, 1)
  """
  t = _validation.check_int("num_patches", num_patches, lower=1)
  r = _validation.check_rate("mask_ratio", mask_ratio)
  return max(1, math.floor((1.0 - r) * t + 1e-9))


def random_keep_indices(key: jax.Array, batch: int, num_patches: int, mask_ratio: float) -> jax.Array:
  """Per row, a uniformly random ``K``-subset of ``range(num_patches)``, sorted: int32 ``(batch, K)``.

  The subset is the ``K`` smallest of ``T`` i.i.d. uniform draws' ranks (a uniform random permutation
  truncated), independently per row; ``K`` is `num_kept_patches`.

  Args:
    key: a `jax.random` key.
    batch: rows ``B >= 0``.
    num_patches: ``T >= 1``.
    mask_ratio: ``r`` in [0, 1); 0 gives ``arange(T)`` in every row.

  Example:
    >>> import jax
    >>> k = random_keep_indices(jax.random.key(0), 2, 16, 0.75)
    >>> k.shape, bool((k[:, 1:] > k[:, :-1]).all())
    ((2, 4), True)
  """
  _validation.check_key("key", key)
  b = _validation.check_int("batch", batch, lower=0)
  t = _validation.check_int("num_patches", num_patches, lower=1)
  k = num_kept_patches(t, mask_ratio)
  order = jnp.argsort(jax.random.uniform(key, (b, t)), axis=1)
  return jnp.sort(order[:, :k], axis=1).astype(jnp.int32)
