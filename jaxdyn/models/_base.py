"""The model contract every jaxdyn model follows, and the shared training-mode switch.

The contract is written as `typing.Protocol`s (as optax writes ``GradientTransformation``), so a
harness or a technique can check a model before anything compiles:

- `Model`: ``model(x, *, train=None, key=None, return_features=False)`` gives logits, and the
  penultimate features on request.
- `HeadSplit`: also ``features(x, *, train=None, key=None)`` (the trunk up to the penultimate layer),
  ``head`` (the final layer, a module) and ``apply_head(h, *, train=None, key=None)``; techniques
  that act on the head alone (multi-sample dropout) or read the representation (DSE) need it. A
  model that cannot be split at its head (a spiking network, whose output is a mean over time
  steps) simply does not provide ``features``/``apply_head``.

Training mode, as in Flax NNX: ``model.train()`` and ``model.eval()`` switch every jaxdyn model
(and NNX's own submodules) between training and inference; an explicit ``train=`` argument of a
call overrides the mode. Unlike ``nnx.Dropout``, which starts in training mode, jaxdyn models start
in inference mode, so ``model(x)`` always evaluates (no dropout, BatchNorm running statistics).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn import _validation


@runtime_checkable
class Model(Protocol):
  """A classifier: inputs to logits (and penultimate features with ``return_features=True``)."""

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               return_features: bool = False) -> Any:
    ...


@runtime_checkable
class HeadSplit(Protocol):
  """A `Model` that can be split at its head: ``apply_head(features(x)) == model(x)``."""

  head: Any

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    ...

  def apply_head(self, h: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    ...


def is_training(module: Any, train: bool | None) -> bool:
  """The mode a call runs in: ``train`` when given, else the module's NNX mode.

  ``model.train()`` / ``model.eval()`` set the ``deterministic`` attribute of every submodule that
  has one (`nnx.Module.set_attributes`); jaxdyn models declare it, defaulting to inference.
  """
  if train is None:
    return not getattr(module, "deterministic", True)
  return bool(train)


class Classifier(nnx.Module):
  """A trunk that maps inputs to penultimate features, then dropout and a linear head (`HeadSplit`).

  Subclasses implement :meth:`features`; the head is ``self.head`` (an ``nnx.Linear``) and the dropout
  before it has rate ``self.dropout_rate``. Splitting the model at the penultimate layer is what lets
  techniques act on the head alone (multi-sample dropout) or read the representation (DSE/DSMI).

  Call it as ``model(x, train=..., key=..., return_features=...)``. Dropout is drawn from the raw
  ``jax.random`` key ``key`` (required in training when the rate is positive), so a model can be
  merged inside a jitted step without carrying an ``nnx.Rngs`` across traces. ``train=None`` (the
  default) follows ``model.train()`` / ``model.eval()``; a new model is in inference mode.

  Inputs are checked against the shape the model was built for (`check_input`, static, so free under
  ``jit``). An empty batch gives empty logits; a NaN or infinity in ``x`` comes out as NaN logits.
  """

  head: nnx.Linear
  dropout_rate: float = 0.0
  deterministic: bool = True  # NNX's mode attribute: model.train() sets False, model.eval() True

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    raise NotImplementedError

  def check_input(self, x: jax.Array) -> None:
    """Raises a ValueError naming ``x`` unless it is a batch of the inputs the model was built for."""
    if jnp.ndim(x) < 1:
      raise ValueError(f"x: must be a batch with a leading batch axis, got shape {jnp.shape(x)}")

  def apply_head(self, h: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    """Dropout (in training) then the linear head, on penultimate features ``h``."""
    if is_training(self, train) and self.dropout_rate > 0.0:
      _validation.check_key("key", key, why=" in training with dropout_rate > 0")
      keep = jax.random.bernoulli(key, 1.0 - self.dropout_rate, h.shape)
      h = jnp.where(keep, h / (1.0 - self.dropout_rate), 0.0)
    return self.head(h)

  def __call__(
      self,
      x: jax.Array,
      *,
      train: bool | None = None,
      key: jax.Array | None = None,
      return_features: bool = False,
  ):
    self.check_input(x)
    train = is_training(self, train)
    h = self.features(x, train=train)
    logits = self.apply_head(h, train=train, key=key)
    return (logits, h) if return_features else logits


def check_input_shape(x, expected: tuple, what: str) -> None:
  """``x`` must be ``(batch, *expected)``; ``None`` in ``expected`` matches any size."""
  shape = tuple(jnp.shape(x))[1:]
  if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
    want = ", ".join("any" if e is None else str(e) for e in expected)
    raise ValueError(f"x: must be a batch of {what} of shape (batch, {want}), got {tuple(jnp.shape(x))}")
