"""The interface every jaxdyn reference model shares."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class Classifier(nnx.Module):
  """A trunk that maps inputs to penultimate features, then dropout and a linear head.

  Subclasses implement :meth:`features`; the head is ``self.head`` (an ``nnx.Linear``) and the dropout
  before it has rate ``self.dropout_rate``. Splitting the model at the penultimate layer is what lets
  techniques act on the head alone (multi-sample dropout) or read the representation (DSE/DSMI).

  Call it as ``model(x, train=..., key=..., return_features=...)``. Dropout is drawn from the raw
  ``jax.random`` key ``key`` (required when ``train`` and the rate is positive), so a model can be
  merged inside a jitted step without carrying an ``nnx.Rngs`` across traces.
  """

  head: nnx.Linear
  dropout_rate: float = 0.0

  def features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    raise NotImplementedError

  def apply_head(self, h: jax.Array, *, train: bool = False, key: jax.Array | None = None) -> jax.Array:
    """Dropout (in training) then the linear head, on penultimate features ``h``."""
    if train and self.dropout_rate > 0.0:
      if key is None:
        raise ValueError("key: a jax.random key is required when train=True and dropout_rate > 0")
      keep = jax.random.bernoulli(key, 1.0 - self.dropout_rate, h.shape)
      h = jnp.where(keep, h / (1.0 - self.dropout_rate), 0.0)
    return self.head(h)

  def __call__(
      self,
      x: jax.Array,
      *,
      train: bool = False,
      key: jax.Array | None = None,
      return_features: bool = False,
  ):
    h = self.features(x, train=train)
    logits = self.apply_head(h, train=train, key=key)
    return (logits, h) if return_features else logits


def check_rate(name: str, rate: float) -> float:
  if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
    raise ValueError(f"{name}: must be a float in [0, 1), got {rate!r}")
  return float(rate)


def check_positive_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{name}: must be a positive integer, got {value!r}")
  return value
