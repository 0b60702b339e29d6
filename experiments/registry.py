"""One registry for everything the harness builds by name (jaxpruner's ``ALGORITHM_REGISTRY`` shape).

Kinds, and what a registered object is:

- ``model``: ``build(input_shape, num_classes, rngs, **kwargs) -> nnx.Module`` following
  `jaxdyn.models.Model`; ``config.model`` / ``config.model_kwargs``. A builder raises a ValueError
  starting ``"input_shape:"`` when the dataset's inputs do not fit the model.
- ``objective``: ``fn(model, batch, *, key, **kwargs) -> (loss, aux)``: ``model`` is the merged NNX
  model, ``batch`` is ``{"x", "y"}``, ``aux`` a dict with at least ``"logits"`` (training accuracy)
  and any scalars to log. Parameters the run determines (``step``, ``num_train``,
  ``steps_per_epoch``, ``num_epochs``) are filled in unless the config sets them.
  ``config.objective`` / ``config.objective_kwargs``.
- ``optimizer``: ``fn(learning_rate, **kwargs) -> optax.GradientTransformation``; ``config.optimizer``.
- ``transform``: ``fn(tx, **kwargs) -> optax.GradientTransformation`` wrapping the optimizer, applied in
  the order of ``config.transforms``; ``total_steps`` (the run's steps) and ``seed`` (``config.seed``)
  are filled in where it takes them, unless the config sets them.
- ``callback``: a `experiments.callbacks.Callback` subclass; ``config.callbacks``.
- ``capability``: ``predicate(model) -> bool``: what a model can do (``head_split``, ``spiking``,
  ...). Objectives, transforms and callbacks name the capabilities they ``require``; config
  validation checks them against the built (abstract) model before anything compiles.

Any piece may give ``tiny`` keyword arguments: the smallest setting that still runs every code path
(the composition tests, ``tests/experiments/test_composition.py``, use them).

Adapters register their pieces at import; `load_all` imports every module of
``experiments.techniques`` (found with ``pkgutil``), so a new family needs no central import list.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

KINDS = ("model", "objective", "optimizer", "transform", "callback", "capability")
# Parameters of an objective or transform that the run fills in; a config may still set them.
RUN_VALUES = {"objective": ("step", "num_train", "steps_per_epoch", "num_epochs"), "transform": ("total_steps", "seed")}
# Parameters a config never sets: the harness passes them on every call.
CALL_ARGS = {"model": ("input_shape", "num_classes", "rngs"), "objective": ("model", "batch", "key"),
             "optimizer": ("learning_rate",), "transform": ("tx",), "callback": (), "capability": ("model",)}


@dataclasses.dataclass(frozen=True)
class Entry:
  """One registered piece: its kind, name, object, the module that registered it and its needs."""

  kind: str
  name: str
  obj: Any
  module: str
  requires: tuple[str, ...] = ()  # capabilities of the model this piece needs
  tiny: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # smallest kwargs (tests)
  doc: str = ""

  @property
  def signature(self) -> inspect.Signature:
    return inspect.signature(self.obj.__init__ if inspect.isclass(self.obj) else self.obj)

  def parameters(self) -> dict[str, inspect.Parameter]:
    """The parameters a config may set (the harness's own call arguments removed)."""
    skip = {"self", *CALL_ARGS[self.kind]}
    return {n: p for n, p in self.signature.parameters.items()
            if n not in skip and p.kind not in (p.VAR_POSITIONAL,)}

  def run_values(self) -> tuple[str, ...]:
    """The run-determined parameters this piece takes (filled in by the harness)."""
    return tuple(n for n in RUN_VALUES.get(self.kind, ()) if n in self.signature.parameters)


_REGISTRY: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
_LOADED = False


def register(kind: str, name: str, *, requires: Sequence[str] = (), tiny: Mapping[str, Any] | None = None
             ) -> Callable[[Any], Any]:
  """Decorator: registers ``obj`` as the ``kind`` called ``name`` (see the module docstring)."""
  if kind not in KINDS:
    raise ValueError(f"kind: must be one of {list(KINDS)}, got {kind!r}")

  def deco(obj):
    reg = _REGISTRY[kind]
    if name in reg and reg[name].obj is not obj:
      raise ValueError(f"name: {kind} {name!r} is already registered (by {reg[name].module})")
    doc = (inspect.getdoc(obj) or "").split("\n", 1)[0]
    reg[name] = Entry(kind, name, obj, getattr(obj, "__module__", "?"), tuple(requires), dict(tiny or {}), doc)
    return obj

  return deco


def load_all() -> None:
  """Imports every adapter module under ``experiments.techniques`` (each registers its pieces)."""
  global _LOADED
  if _LOADED:
    return
  package = importlib.import_module("experiments.techniques")
  for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
    if not info.name.startswith("_"):
      importlib.import_module(f"{package.__name__}.{info.name}")
  _LOADED = True


def entry(kind: str, name: str) -> Entry:
  load_all()
  reg = _REGISTRY[kind]
  if name not in reg:
    raise ValueError(f"unknown {kind} {name!r}; valid names are {sorted(reg)}")
  return reg[name]


def get(kind: str, name: str) -> Any:
  """The registered object (a function or class)."""
  return entry(kind, name).obj


def names(kind: str) -> list[str]:
  load_all()
  return sorted(_REGISTRY[kind])


def entries(kind: str) -> list[Entry]:
  load_all()
  return [_REGISTRY[kind][n] for n in sorted(_REGISTRY[kind])]


def check_kwargs(kind: str, name: str, kwargs: Mapping[str, Any]) -> None:
  """Raises unless every key of ``kwargs`` is a parameter of the registered piece.

  Also raises when a required parameter is missing and the run does not fill it in.
  """
  e = entry(kind, name)
  params = e.parameters()
  if any(p.kind is p.VAR_KEYWORD for p in params.values()):
    return
  accepted = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
  accepted -= {"step"} if kind == "objective" else set()  # the traced step is never set by a config
  unknown = sorted(set(kwargs) - accepted)
  if unknown:
    raise ValueError(f"{kind} {name!r} does not take {', '.join(unknown)}; it takes "
                     f"{', '.join(sorted(accepted)) or 'no arguments'}")
  required = {n for n, p in params.items() if p.default is p.empty and p.kind is not p.VAR_KEYWORD}
  missing = sorted(required - set(kwargs) - set(e.run_values()))
  if missing:
    raise ValueError(f"{kind} {name!r} needs {', '.join(missing)}")


def capability(name: str, model: Any) -> bool:
  """Whether ``model`` has the registered capability ``name``."""
  return bool(get("capability", name)(model))
