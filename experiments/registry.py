"""Registries through which a technique plugs into the harness without forking the training loop.

- ``objective``: ``fn(model, batch, *, key, **kwargs) -> (loss, aux)``, where ``model`` is the merged
  NNX model in training mode, ``batch`` is ``{"x", "y"}`` and ``aux`` is a dict holding at least
  ``"logits"`` (used for training accuracy) plus any scalar metrics to log. An objective that has a
  ``step`` parameter also gets the (traced) step number, e.g. for a KL warm-up. Chosen by
  ``config.objective`` with keyword arguments from ``config.objective_kwargs``.
- ``optimizer``: ``fn(learning_rate, **kwargs) -> optax.GradientTransformation``; ``config.optimizer``.
- ``transform``: ``fn(tx, **kwargs) -> optax.GradientTransformation`` wrapping the optimizer; applied
  in order from ``config.transforms`` (a list of ``{"name": ..., **kwargs}``).
- ``callback``: a class ``Callback(ctx, **kwargs)`` with ``on_step(step)`` and ``on_end()``; named in
  ``config.callbacks`` (a list of ``{"name": ..., **kwargs}``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

_REGISTRIES: dict[str, dict[str, Any]] = {"objective": {}, "optimizer": {}, "transform": {}, "callback": {}}


def register(kind: str, name: str) -> Callable[[Any], Any]:
  """Decorator: registers ``fn`` as the ``kind`` called ``name``."""

  def deco(fn):
    reg = _REGISTRIES[kind]
    if name in reg and reg[name] is not fn:
      raise ValueError(f"{kind} {name!r} is already registered")
    reg[name] = fn
    return fn

  return deco


def get(kind: str, name: str) -> Any:
  reg = _REGISTRIES[kind]
  if name not in reg:
    raise ValueError(f"{kind}: unknown name {name!r}; valid names are {sorted(reg)}")
  return reg[name]


def names(kind: str) -> list[str]:
  return sorted(_REGISTRIES[kind])


def check_kwargs(kind: str, name: str, kwargs: Mapping[str, Any], *, skip: int = 0) -> None:
  """Fails before training if ``kwargs`` holds a key the registered function does not take."""
  fn = get(kind, name)
  sig = inspect.signature(fn.__init__ if inspect.isclass(fn) else fn)
  params = list(sig.parameters.values())[skip:]
  if any(p.kind is p.VAR_KEYWORD for p in params):
    return
  accepted = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
  if kind == "objective":
    accepted -= {"key", "step"}  # given by the harness, never by the config
  unknown = sorted(set(kwargs) - accepted)
  if unknown:
    raise ValueError(f"{kind} {name!r}: unknown argument(s) {unknown}; it accepts {sorted(accepted)}")
