"""The reference models of `jaxdyn.models`, built from a dataset's input shape, and the head split.

Models (``config.model``; ``config.model_kwargs`` go to the class):
``mlp`` (flattened inputs), ``cnn`` (1-D signals or 2-D images), ``resnet18`` / ``resnet50`` (CIFAR
stem; images), ``vit`` (square images). Capability ``head_split``: the model exposes ``features``,
``head`` and ``apply_head`` (`jaxdyn.models.HeadSplit`).
"""

from __future__ import annotations

import math

from experiments.registry import register
from jaxdyn.models import CNN, MLP, HeadSplit, ResNet18, ResNet50, ViT


def image_channels(shape, name: str) -> int:
  """The channel count of (height, width, channels) inputs; an ``input_shape:`` error otherwise."""
  if len(shape) != 3:
    raise ValueError(f"input_shape: {name} needs (height, width, channels) images, got {tuple(shape)}")
  return shape[-1]


def signal_or_image(input_shape, name: str) -> tuple[int, int]:
  """``(spatial_dims, channels)`` of 1-D signals ``(length,)`` / ``(length, channels)`` or 2-D images."""
  if len(input_shape) > 3:
    raise ValueError(f"input_shape: {name} needs 1-D signals or 2-D images, got {tuple(input_shape)}")
  return (1 if len(input_shape) <= 2 else 2), (1 if len(input_shape) == 1 else input_shape[-1])


@register("capability", "head_split")
def has_head_split(model) -> bool:
  """features(x), head and apply_head(h): the model splits at its penultimate layer"""
  return isinstance(model, HeadSplit)


@register("model", "mlp", tiny={"hidden": (8,)})
def mlp(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.models.MLP` on flattened inputs."""
  return MLP(math.prod(input_shape), num_classes, rngs=rngs, **kwargs)


@register("model", "cnn", tiny={"channels": (4,), "hidden": 8})
def cnn(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.models.CNN`: 1-D convolutions on (length,) or (length, channels), 2-D on images."""
  spatial, cin = signal_or_image(input_shape, "cnn")
  return CNN(cin, num_classes, spatial_dims=spatial, rngs=rngs, **kwargs)


@register("model", "resnet18", tiny={"stage_sizes": (1,), "width": 4})
def resnet18(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.models.ResNet18` with the CIFAR stem."""
  return ResNet18(image_channels(input_shape, "resnet18"), num_classes, rngs=rngs, **kwargs)


@register("model", "resnet50", tiny={"stage_sizes": (1,), "width": 4})
def resnet50(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.models.ResNet50` with the CIFAR stem."""
  return ResNet50(image_channels(input_shape, "resnet50"), num_classes, rngs=rngs, **kwargs)


@register("model", "vit", tiny={"depth": 1, "dim": 16, "num_heads": 2})
def vit(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.models.ViT` on square images."""
  channels = image_channels(input_shape, "vit")
  if input_shape[0] != input_shape[1]:
    raise ValueError(f"input_shape: vit needs square images, got {tuple(input_shape)}")
  return ViT(channels, num_classes, image_size=input_shape[0], rngs=rngs, **kwargs)
