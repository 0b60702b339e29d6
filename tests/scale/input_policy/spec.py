"""The input policy's test vocabulary: bad-argument cases and per-function clause specs.

Each family has a module here (``tests/scale/input_policy/<family>.py``) that declares, for every
public callable of ``jaxdyn.<family>``:

- ``CASES``: :class:`Case` rows, one invalid argument each (a hypothesis strategy of bad values); the
  call must raise a ValueError or TypeError whose message names the argument.
- ``SPECS``: one :class:`Spec` per callable: a valid call and which of its inputs each clause of
  BUILD.md's input policy covers (labels, non-finite inputs, empty batches, numeric ranges, types).
- ``EXEMPT``: callables with nothing to validate, each with the reason.

``tests/scale/test_input_policy.py`` drives them all and checks that every parameter of every public
callable is accounted for, so a new function or family cannot skip the policy silently.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from hypothesis import strategies as st

B, C = 8, 5
LOGITS = np.asarray(jax.random.normal(jax.random.key(0), (B, C)))
LABELS = np.arange(B, dtype=np.int32) % C
ONEHOT = np.eye(C, dtype=np.float32)[LABELS]
KEY = jax.random.key(0)

# Invalid-value strategies.
nonpositive_int = st.integers(max_value=0)
non_integral = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x))
bad_count = st.one_of(nonpositive_int, non_integral, st.booleans())
bad_rate = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0), st.just(math.nan))
negative = st.one_of(st.floats(max_value=-1e-6, allow_infinity=False), st.just(math.nan))
nonpositive = st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.just(math.nan))
bad_label_value = st.one_of(st.integers(min_value=C, max_value=10**6), st.integers(max_value=-1, min_value=-10**6))
wrong_batch = st.integers(1, 3 * B).filter(lambda n: n != B)
wrong_feature = st.integers(1, 12).filter(lambda n: n != 4)  # H has 4 features
bad_key = st.sampled_from([None, "key", 0, 1.5, (0, 1), np.zeros(2, np.float32)])
# Not a valid value of any name-valued argument (surrogates, resets, encoders, modes, criteria,
# methods, kinds, augmentations).
VALID_NAMES = {"triangle", "rectangle", "sigmoid", "soft", "hard", "direct", "poisson", "sltt", "sltt_k", "bptt",
               "snr_abs", "abs_mu", "abs_mu_over_sigma", "mean_abs", "exact", "slq", "auto", "discrete",
               "scalar", "vector", "dense", "conv", "crop_flip", "flip", "none", "mean", "sum"}
bad_name = st.text(max_size=8).filter(lambda s: s not in VALID_NAMES)


def labels_with(value, labels=LABELS):
  y = np.array(labels, copy=True)
  y.flat[3] = value
  return y


def fn(path: str) -> Callable[..., Any]:
  """The public object ``"jaxdyn.<family>.<name>"``."""
  mod, name = path.rsplit(".", 1)
  return getattr(importlib.import_module(mod), name)


@dataclasses.dataclass(frozen=True)
class Case:
  """One invalid argument: ``call(value)`` must raise naming ``argument``."""

  function: str  # "jaxdyn.<family>.<name>"
  argument: str  # what the error message must name
  strategy: st.SearchStrategy
  call: Callable[[Any], Any]  # invalid value -> the call


RAISES = "raises"  # Spec.empty: an empty batch must be rejected, naming one of the batch inputs


@dataclasses.dataclass(frozen=True)
class Spec:
  """A valid call of one public callable, and the inputs each policy clause covers.

  Attributes:
    function: ``"jaxdyn.<family>.<name>"``.
    inputs: a valid value for every argument ``call`` takes (by name).
    call: ``call(**inputs) -> output``; default: the function itself with keyword arguments.
    floats: floating array inputs; clause *non-finite*: a NaN or +-Inf in any of them must raise
      (naming it) or give a non-finite value somewhere in the output, never a finite result.
    labels: integer class-id inputs, in ``[0, num_classes)``; clause *labels*: an out-of-range value
      must raise naming the input (eager) and, when ``jit`` is True, give NaN under ``jax.jit``.
    num_classes: the number of classes the ``labels`` inputs index.
    jit: the function is traceable with its array inputs traced: the *labels* and *non-finite*
      clauses are also checked under ``jax.jit`` (NaN comes out, as nothing can raise there).
    batch: inputs whose leading axis is the batch; clause *empty*: with all of them of size 0 the
      call must raise naming one of them, or return ``empty`` when that is a defined value.
    empty: ``RAISES``, or the documented result for an empty batch (compared with allclose), or a
      predicate ``empty(output) -> bool``.
    numbers: scalar hyperparameters; clause *types*: NumPy scalars (np.float32 / np.int64 ...)
      must be accepted and give the Python number's result.
    keys: `jax.random` key inputs; clause *keys*: a wrong key must raise naming the input.
    ranges: input -> strategy of values the checks accept but that stress the numerics (extreme
      scales, tiny or huge bandwidths, half precision); clause *ranges*: the output must be finite,
      or the call must raise naming the input.
    not_applicable: parameter -> why no clause covers it (read by the completeness test).
  """

  function: str
  inputs: Mapping[str, Any]
  call: Callable[..., Any] | None = None
  floats: tuple[str, ...] = ()
  labels: tuple[str, ...] = ()
  num_classes: int = C
  jit: bool = False
  batch: tuple[str, ...] = ()
  empty: Any = RAISES
  numbers: tuple[str, ...] = ()
  keys: tuple[str, ...] = ()
  ranges: Mapping[str, st.SearchStrategy] = dataclasses.field(default_factory=dict)
  not_applicable: Mapping[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    named = set(self.floats) | set(self.labels) | set(self.batch) | set(self.numbers) | set(self.keys) | set(
        self.ranges)
    missing = named - set(self.inputs)
    if missing:
      raise ValueError(f"{self.function}: clause inputs {sorted(missing)} have no valid value in `inputs`")

  def call_with(self, **overrides) -> Any:
    """Calls the function with ``inputs`` updated by ``overrides`` (traceable: nothing blocks)."""
    kwargs = {**self.inputs, **overrides}
    return self.call(**kwargs) if self.call is not None else fn(self.function)(**kwargs)

  def run(self, **overrides) -> Any:
    """`call_with`, then waits for the result, so a failure surfaces here."""
    return jax.block_until_ready(self.call_with(**overrides))

  @property
  def id(self) -> str:
    return self.function.split(".", 1)[1]


def float_leaves(out: Any) -> list[np.ndarray]:
  """The floating arrays in an output PyTree (Python floats included)."""
  leaves = []
  for leaf in jax.tree.leaves(out):
    if isinstance(leaf, (bool, np.bool_, int)):
      continue
    try:
      a = np.asarray(leaf)
    except Exception:  # pylint: disable=broad-except  (a module, a graph, ...: not numeric output)
      continue
    if a.dtype.kind == "f" or a.dtype == jax.numpy.bfloat16:
      leaves.append(a.astype(np.float64))
  return leaves


def names_argument(message: str, argument: str) -> bool:
  """Whether an error message names ``argument`` as jaxdyn's messages do (``"rate: ..."``)."""
  return f"{argument}:" in message or f"`{argument}`" in message


def collector(cases: list[Case]) -> Callable[..., Any]:
  """``case(function, argument, strategy)(call)`` appends a :class:`Case` to ``cases``."""

  def case(function: str, argument: str, strategy: st.SearchStrategy):
    def deco(call):
      cases.append(Case(function, argument, strategy, call))
      return call
    return deco

  return case


# A linear head and features shared by several families' declarations.
def head(w, h):
  return h @ w


W = np.ones((4, C), np.float32) / 4
H = np.ones((B, 4), np.float32)
