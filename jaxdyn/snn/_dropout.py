"""Dropout whose mask is drawn once per sample and kept for all T time steps."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxdyn import _validation

__all__ = ["fixed_dropout_masks"]


def fixed_dropout_masks(key: jax.Array, like: Any, rate: float) -> Any:
  """Inverted-dropout masks, one per leaf of ``like``, to reuse unchanged at every time step.

  m ~ Bernoulli(1 - p) / (1 - p) elementwise; the layer output at every step t is m * s[t]. Drawing
  the mask once per iteration (not per step) is what SpikingJelly's ``layer.Dropout``, used by the SLTT
  code, does: a neuron dropped for a sample stays dropped for all T steps.

  Args:
    key: a `jax.random` key (checked even when p = 0).
    like: a PyTree of arrays (or `jax.ShapeDtypeStruct`) giving the masks' shapes and dtypes, e.g. the
      membrane carry of a spiking model; only shapes and dtypes are read.
    rate: the drop probability p in [0, 1) (a Python or NumPy number).

  Returns:
    A PyTree like ``like`` of masks with values 0 and 1 / (1 - p); None if p = 0.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> m = fixed_dropout_masks(jax.random.key(0), {"h": jnp.zeros((2, 4))}, 0.5)
    >>> sorted(set(m["h"].ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  rate = _validation.check_rate("rate", rate)
  _validation.check_key("key", key)
  if rate == 0.0:
    return None
  leaves, treedef = jax.tree.flatten(like)
  keys = jax.random.split(key, max(len(leaves), 1))
  masks = [
      jax.random.bernoulli(k, 1.0 - rate, leaf.shape).astype(leaf.dtype) / jnp.asarray(1.0 - rate, leaf.dtype)
      for k, leaf in zip(keys, leaves)
  ]
  return jax.tree.unflatten(treedef, masks)
