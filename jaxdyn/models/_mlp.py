"""Multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import math

from jaxdyn import _validation
from jaxdyn.models._base import Classifier


class MLP(Classifier):
  """ReLU MLP on flattened inputs; the last hidden layer is the penultimate feature.

  Args:
    in_features: size of a flattened input.
    num_classes: number of logits.
    hidden: widths of the hidden layers (at least one).
    dropout_rate: dropout before the head, in [0, 1).
    rngs: ``nnx.Rngs`` for initialisation.
  """

  def __init__(
      self,
      in_features: int,
      num_classes: int,
      *,
      hidden: Sequence[int] = (256, 256),
      dropout_rate: float = 0.0,
      rngs: nnx.Rngs,
  ):
    in_features = _validation.check_int("in_features", in_features, lower=1)
    num_classes = _validation.check_int("num_classes", num_classes, lower=1)
    if not hidden:
      raise ValueError("hidden: need at least one hidden layer")
    hidden = tuple(_validation.check_int("hidden", w, lower=1) for w in hidden)
    self.in_features = in_features
    widths = (in_features, *hidden)
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
    self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)

  def check_input(self, x: jax.Array) -> None:
    super().check_input(x)
    if math.prod(jnp.shape(x)[1:]) != self.in_features:
      raise ValueError(f"x: must flatten to in_features={self.in_features} per example, got shape "
                       f"{tuple(jnp.shape(x))}")

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    del train, key  # no dropout or normalisation statistics in the trunk
    h = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # explicit: -1 is undefined for an empty batch
    for layer in self.layers:
      h = nnx.relu(layer(h))
    return h
