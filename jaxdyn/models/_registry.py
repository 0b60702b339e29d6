"""Build a reference model by name from a dataset's input shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flax import nnx

from jaxdyn.models._base import Classifier
from jaxdyn.models._cnn import CNN
from jaxdyn.models._mlp import MLP
from jaxdyn.models._resnet import ResNet18, ResNet50
from jaxdyn.models._vit import ViT


def _mlp(shape, num_classes, rngs, **kw):
  n = 1
  for s in shape:
    n *= s
  return MLP(n, num_classes, rngs=rngs, **kw)


def _cnn(shape, num_classes, rngs, **kw):
  spatial = 1 if len(shape) <= 2 else 2
  cin = 1 if len(shape) == 1 else shape[-1]
  return CNN(cin, num_classes, spatial_dims=spatial, rngs=rngs, **kw)


def _image(ctor):
  def build(shape, num_classes, rngs, **kw):
    if len(shape) != 3:
      raise ValueError(f"model: needs (height, width, channels) inputs, the dataset gives {tuple(shape)}")
    return ctor(shape[-1], num_classes, rngs=rngs, **kw)
  return build


def _vit(shape, num_classes, rngs, **kw):
  if len(shape) != 3 or shape[0] != shape[1]:
    raise ValueError(f"model: vit needs square (size, size, channels) inputs, got {tuple(shape)}")
  return ViT(shape[-1], num_classes, image_size=shape[0], rngs=rngs, **kw)


MODELS = {
    "mlp": _mlp,
    "cnn": _cnn,
    "resnet18": _image(ResNet18),
    "resnet50": _image(ResNet50),
    "vit": _vit,
}


def register_model(name: str, builder) -> None:
  """Adds a model: ``builder(input_shape, num_classes, rngs, **kwargs) -> Classifier``-like module.

  The module must accept ``(x, *, train=False, key=None, return_features=False)`` and return logits
  (and penultimate features on request), as :class:`Classifier` does.
  """
  if name in MODELS and MODELS[name] is not builder:
    raise ValueError(f"name: model {name!r} is already registered")
  MODELS[name] = builder


def create_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    rngs: nnx.Rngs,
    kwargs: Mapping[str, Any] | None = None,
) -> Classifier:
  """Builds the model ``name`` (one of ``MODELS``) for inputs of ``input_shape`` (no batch axis)."""
  if name not in MODELS:
    raise ValueError(f"model: unknown name {name!r}; valid names are {sorted(MODELS)}")
  try:
    return MODELS[name](tuple(input_shape), num_classes, rngs, **dict(kwargs or {}))
  except TypeError as e:
    if "unexpected keyword argument" in str(e):
      raise ValueError(f"model_kwargs: {e} (model {name!r})") from e
    raise
