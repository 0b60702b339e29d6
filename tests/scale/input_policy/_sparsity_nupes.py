"""Input-policy declarations for NUPES in `jaxdyn.sparsity` (``jaxdyn/sparsity/_nupes.py``).

``tests/scale/input_policy/sparsity.py`` imports ``CASES``, ``SPECS`` and ``EXEMPT`` from here; the
vocabulary is in ``spec.py``. The learned quantizers run a few steps only (``steps=5``): the clauses
check argument handling, not the optimisation (``tests/sparsity/test_nupes.py`` does).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import (KEY, Case, Spec, bad_count, bad_name, collector, fn, non_integral,
                                           nonpositive, nonpositive_int)

SP = "jaxdyn.sparsity"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)


_RNG = np.random.default_rng(0)
KERNEL = (_RNG.normal(size=(8, 4)) / 3).astype(np.float32)  # a Dense kernel (in=8, out=4)
CALIB = _RNG.normal(size=(16, 8)).astype(np.float32)  # calibration inputs: 16 examples
BIAS = np.zeros(4, np.float32)
CODES = np.array([[-3, 0, 1, 3], [2, -1, 0, 1]], np.int8)  # values of a 3-bit QuantizedTensor (2, 4)
SCALES = np.array([0.5, 1.0, 0.25, 2.0], np.float32)

bad_bits = st.one_of(st.integers(max_value=1), st.integers(min_value=9), non_integral, st.booleans())
bad_exponent = st.one_of(st.floats(max_value=0.0999), st.floats(min_value=10.001), st.just(math.nan), st.booleans())
bad_kernel_shape = st.sampled_from([(), (4,), (2, 2, 2, 2, 2, 2), (1, 1, 1, 1, 1, 1, 1)])  # 2 to 5 dimensions only
not_callable = st.sampled_from([3, "conv", (1, 2), 1.5])
wrong_in = st.integers(1, 12).filter(lambda n: n != 8)  # KERNEL has 8 inputs
bad_grid = st.sampled_from([(), (0.0,), (0.5, 11.0), "ab", (math.nan,), ((0.5, 1.0),), (True, True)])
scaled_kernel = st.floats(1e-30, 1e30).map(lambda c: KERNEL * np.float32(c))


def _empty(out) -> bool:
  """An empty kernel quantizes to empty codes."""
  return np.size(out.values) == 0


# --- the automorphism ------------------------------------------------------------------------------
for name, arg in (("power_transform", "w"), ("inverse_power_transform", "t")):
  f = f"{SP}.{name}"
  case(f, "exponent", bad_exponent)(lambda v, f=f: fn(f)(KERNEL, v))
  SPECS.append(Spec(f, {arg: KERNEL, "exponent": 0.5}, floats=(arg,), jit=True, batch=(arg,),
                    empty=lambda out: np.shape(out) == (0, 4), numbers=("exponent",),
                    ranges={"exponent": st.floats(0.1, 10.0)}))

# --- the quantizers --------------------------------------------------------------------------------
for name in ("quantize_uniform", "quantize_power"):
  f = f"{SP}.{name}"
  case(f, "bits", bad_bits)(lambda v, f=f: fn(f)(KERNEL, v))
  case(f, "w", bad_kernel_shape)(lambda s, f=f: fn(f)(np.ones(s, np.float32), 4))
case(f"{SP}.quantize_power", "exponent", bad_exponent)(lambda v: fn(f"{SP}.quantize_power")(KERNEL, 4, exponent=v))
SPECS += [
    Spec(f"{SP}.quantize_uniform", dict(w=KERNEL, bits=4), floats=("w",), jit=True, batch=("w",), empty=_empty,
         numbers=("bits",), ranges={"w": scaled_kernel}),
    # The exponent is traced under jit: a NaN exponent must come out as NaN scales too.
    Spec(f"{SP}.quantize_power", dict(w=KERNEL, bits=4, exponent=0.5), floats=("w", "exponent"), jit=True,
         batch=("w",), empty=_empty, numbers=("bits", "exponent"),
         ranges={"w": scaled_kernel, "exponent": st.floats(0.1, 10.0)}),
    Spec(f"{SP}.quantize_power", dict(w=KERNEL, bits=8, exponent=1.0), floats=("w",), jit=True, batch=("w",),
         empty=_empty),  # the uniform path
]


def _dequantize(scale, exponent):
  return fn(f"{SP}.dequantize")(fn(f"{SP}.QuantizedTensor")(CODES, scale, np.float32(exponent), 3))


case(f"{SP}.dequantize", "qt", st.sampled_from([None, 3, "qt", (CODES, SCALES)]))(lambda v: fn(f"{SP}.dequantize")(v))
SPECS += [
    Spec(f"{SP}.dequantize", dict(scale=SCALES, exponent=a), call=_dequantize, floats=("scale",), jit=True,
         not_applicable={"batch": "the codes of one kernel: no batch axis"})
    for a in (0.5, 1.0)
]

# --- the exponent search ---------------------------------------------------------------------------
SE = f"{SP}.search_exponent"
case(SE, "bits", bad_bits)(lambda v: fn(SE)(KERNEL, v))
case(SE, "w", bad_kernel_shape)(lambda s: fn(SE)(np.ones(s, np.float32), 4))
case(SE, "exponents", bad_grid)(lambda g: fn(SE)(KERNEL, 4, exponents=g))
case(SE, "x", wrong_in)(lambda n: fn(SE)(KERNEL, 4, x=np.ones((16, n), np.float32)))
case(SE, "apply", not_callable)(lambda v: fn(SE)(KERNEL, 4, x=CALIB, apply=v))
SPECS += [
    Spec(SE, dict(w=KERNEL, bits=4), floats=("w",), jit=True, numbers=("bits",), ranges={"w": scaled_kernel},
         not_applicable={"batch": "a kernel: no batch axis (the calibration inputs' is the next Spec's)",
                         "exponents": "a concrete grid of exponents; its values and shape are a Case"}),
    Spec(SE, dict(w=KERNEL, x=CALIB, bits=3), floats=("w", "x"), jit=True, batch=("x",),
         not_applicable={"apply": "any callable (w, x) -> y; a non-callable is a Case"}),
]

# --- the learned quantizers ------------------------------------------------------------------------
_LEARNED = {
    "nupes_layer": dict(exponent=0.8, learning_rate=0.01, exponent_learning_rate=0.01, damping=30.0),
    "adaround_layer": dict(learning_rate=0.01, regularization=3.0),
}
for name, hyper in _LEARNED.items():
  f = f"{SP}.{name}"
  base = dict(w=KERNEL, x=CALIB, bits=4, steps=5)
  case(f, "bits", bad_bits)(lambda v, f=f: fn(f)(KERNEL, CALIB, bits=v, steps=5))
  case(f, "steps", bad_count)(lambda v, f=f: fn(f)(KERNEL, CALIB, bits=4, steps=v))
  case(f, "learning_rate", nonpositive)(lambda v, f=f: fn(f)(KERNEL, CALIB, bits=4, steps=5, learning_rate=v))
  case(f, "batch_size", st.one_of(nonpositive_int, non_integral, st.booleans()))(
      lambda v, f=f: fn(f)(KERNEL, CALIB, bits=4, steps=5, batch_size=v, key=KEY))
  case(f, "x", wrong_in)(lambda n, f=f: fn(f)(KERNEL, np.ones((16, n), np.float32), bits=4, steps=5))
  case(f, "w", bad_kernel_shape)(lambda s, f=f: fn(f)(np.ones(s, np.float32), CALIB, bits=4, steps=5))
  case(f, "apply", not_callable)(lambda v, f=f: fn(f)(KERNEL, CALIB, bits=4, steps=5, apply=v))
  ranges = {"learning_rate": st.floats(1e-8, 1e3)}
  if name == "nupes_layer":
    ranges.update(damping=st.floats(0.0, 1e12), exponent_learning_rate=st.floats(1e-8, 1e3),
                  exponent=st.floats(0.1, 10.0))
  else:
    ranges.update(regularization=st.floats(0.0, 1e12))
  SPECS += [
      # Non-finite inputs raise naming them eagerly, and give NaN scales under jit.
      Spec(f, dict(base, **hyper), floats=("w", "x"), jit=True, batch=("x",), numbers=("bits", "steps", *hyper),
           ranges=ranges, not_applicable={"apply": "any callable (w, x) -> y; a non-callable is a Case"}),
      # Minibatches (batch_size < len(x)) need a key.
      Spec(f, dict(base, batch_size=4, key=KEY), keys=("key",)),
  ]
case(f"{SP}.nupes_layer", "exponent", bad_exponent)(
    lambda v: fn(f"{SP}.nupes_layer")(KERNEL, CALIB, bits=4, steps=5, exponent=v))
case(f"{SP}.nupes_layer", "exponent_learning_rate", nonpositive)(
    lambda v: fn(f"{SP}.nupes_layer")(KERNEL, CALIB, bits=4, steps=5, exponent_learning_rate=v))
case(f"{SP}.nupes_layer", "damping", st.one_of(st.floats(max_value=-1e-6, allow_infinity=False), st.just(math.nan)))(
    lambda v: fn(f"{SP}.nupes_layer")(KERNEL, CALIB, bits=4, steps=5, damping=v))
case(f"{SP}.nupes_layer", "learn_exponent", st.sampled_from(["yes", 1, None, 0.0]))(
    lambda v: fn(f"{SP}.nupes_layer")(KERNEL, CALIB, bits=4, steps=5, learn_exponent=v))
case(f"{SP}.adaround_layer", "regularization", st.one_of(st.floats(max_value=-1e-6, allow_infinity=False),
                                                          st.just(math.nan)))(
    lambda v: fn(f"{SP}.adaround_layer")(KERNEL, CALIB, bits=4, steps=5, regularization=v))

# --- whole trees -----------------------------------------------------------------------------------
QT = f"{SP}.quantize_tree"


def _tree(params, bits, **kw):
  """The dequantized kernel of a Dense layer's parameters (the bias is left as it is)."""
  return fn(QT)({"dense": {"kernel": params, "bias": BIAS}}, bits, **kw)[0]["dense"]["kernel"]


case(QT, "bits", bad_bits)(lambda v: fn(QT)({"k": KERNEL}, v))
case(QT, "method", bad_name.filter(lambda s: s not in ("rtn", "power")))(lambda v: fn(QT)({"k": KERNEL}, 4, method=v))
case(QT, "exponent", bad_exponent)(lambda v: fn(QT)({"k": KERNEL}, 4, method="power", exponent=v))
case(QT, "exponent", st.floats(0.1, 10.0))(lambda v: fn(QT)({"k": KERNEL}, 4, method="rtn", exponent=v))  # rtn: none
case(QT, "predicate", not_callable)(lambda v: fn(QT)({"k": KERNEL}, 4, predicate=v))
case(QT, "params", st.sampled_from([(3,), (5,), ()]))(  # a selected leaf that is no kernel
    lambda s: fn(QT)({"k": np.ones(s, np.float32)}, 4, predicate=lambda path, leaf: True))
SPECS += [
    Spec(QT, dict(params=KERNEL, bits=4), call=_tree, floats=("params",), jit=True, numbers=("bits",),
         ranges={"params": scaled_kernel},
         not_applicable={"batch": "a parameter tree: no batch axis",
                         "predicate": "any callable (path, leaf) -> bool; a non-callable is a Case"}),
    Spec(QT, dict(params=KERNEL, bits=3, method="power", exponent=0.5), call=_tree, floats=("params",), jit=True,
         numbers=("exponent",), ranges={"exponent": st.floats(0.1, 10.0)},
         not_applicable={"batch": "a parameter tree: no batch axis"}),
    Spec(QT, dict(params=KERNEL, bits=4, method="power"), call=_tree, floats=("params",), jit=True,
         not_applicable={"batch": "a parameter tree: no batch axis"}),  # the exponent searched per kernel
]

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{SP}.QuantizedTensor": "a frozen PyTree of results (codes, scales, exponent); `dequantize` checks what it reads",
}
