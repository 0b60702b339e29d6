"""Multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from jaxdyn.models._base import Classifier, check_positive_int, check_rate


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
    check_positive_int("in_features", in_features)
    check_positive_int("num_classes", num_classes)
    if not hidden:
      raise ValueError("hidden: need at least one hidden layer")
    for w in hidden:
      check_positive_int("hidden", w)
    widths = (in_features, *hidden)
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
    self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)
    self.dropout_rate = check_rate("dropout_rate", dropout_rate)

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    del train, key  # no dropout or normalisation statistics in the trunk
    h = x.reshape(x.shape[0], -1)
    for layer in self.layers:
      h = nnx.relu(layer(h))
    return h
