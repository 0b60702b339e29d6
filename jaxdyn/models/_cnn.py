"""A small convolutional network for 1-D signals or 2-D images."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn import _validation
from jaxdyn.models._base import Classifier


class CNN(Classifier):
  """Conv-ReLU-MaxPool blocks, global average pooling, a dense layer, then the head.

  Inputs are ``(batch, *spatial, channels)`` with ``spatial_dims`` spatial axes; a 1-D signal given as
  ``(batch, length)`` gets a channel axis added.

  Args:
    in_channels: input channels.
    num_classes: number of logits.
    spatial_dims: 1 for signals, 2 for images.
    channels: output channels of each conv block.
    hidden: width of the dense layer that gives the penultimate features.
    dropout_rate: dropout before the head, in [0, 1).
    rngs: ``nnx.Rngs`` for initialisation.
  """

  def __init__(
      self,
      in_channels: int,
      num_classes: int,
      *,
      spatial_dims: int = 2,
      channels: Sequence[int] = (32, 64),
      hidden: int = 128,
      dropout_rate: float = 0.0,
      rngs: nnx.Rngs,
  ):
    in_channels = _validation.check_int("in_channels", in_channels, lower=1)
    num_classes = _validation.check_int("num_classes", num_classes, lower=1)
    spatial_dims = _validation.check_int("spatial_dims", spatial_dims, lower=1, upper=2)
    channels = tuple(_validation.check_int("channels", c, lower=1) for c in channels)
    hidden = _validation.check_int("hidden", hidden, lower=1)
    self.spatial_dims = spatial_dims
    self.in_channels = in_channels
    k = (3,) * spatial_dims
    widths = (in_channels, *channels)
    self.convs = nnx.List(
        [nnx.Conv(a, b, kernel_size=k, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])]
    )
    self.dense = nnx.Linear(widths[-1], hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)

  def check_input(self, x: jax.Array) -> None:
    super().check_input(x)
    d, c = self.spatial_dims, self.in_channels
    spatial = jnp.ndim(x) - 1
    if not (spatial == d + 1 and jnp.shape(x)[-1] == c) and not (spatial == d and c == 1):
      want = "(batch, length" if d == 1 else "(batch, height, width"
      raise ValueError(f"x: must be {want}, {c}) inputs{' (or without the channel axis)' if c == 1 else ''}, "
                       f"got shape {tuple(jnp.shape(x))}")

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    del train, key  # no dropout or normalisation statistics in the trunk
    if x.ndim == self.spatial_dims + 1:
      x = x[..., None]
    window = (2,) * self.spatial_dims
    for conv in self.convs:
      x = nnx.relu(conv(x))
      x = nnx.max_pool(x, window_shape=window, strides=window, padding="SAME")
    x = jnp.mean(x, axis=tuple(range(1, 1 + self.spatial_dims)))
    return nnx.relu(self.dense(x))
