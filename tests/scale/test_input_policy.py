"""BUILD.md's input policy, checked for every public jaxdyn callable with hypothesis.

The declarations live in ``tests/scale/input_policy/<family>.py`` (see its ``spec`` module). Here:

- bad arguments: each :class:`Case` must raise a ValueError or TypeError naming its argument;
- labels: an out-of-range class id raises naming the input, and gives NaN under ``jit``;
- non-finite inputs: a NaN or +-Inf raises naming the input or comes out as a non-finite value;
- empty batches: rejected naming an input, or the documented value;
- numeric ranges: values a check accepts compute to finite results (or raise naming the input);
- types: NumPy scalars are numbers; a bad `jax.random` key is named;
- completeness: every family has a module, every public callable a spec (or an exemption with a
  reason), and every parameter of it a clause (or a reason why none applies).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import math
import pkgutil

import jax
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxdyn
from tests.scale.input_policy import spec as spec_lib
from tests.scale.input_policy.spec import RAISES, float_leaves, names_argument

EXAMPLES = 8  # bad-argument cases
CLAUSE_EXAMPLES = 4  # clause checks: each compiles and runs the function, so fewer draws per input
MIN_EXAMPLES = 3  # per case, asserted; small finite strategies may not reach EXAMPLES distinct values
POLICY = "tests.scale.input_policy"
FAMILY_MODULES = {f: importlib.import_module(f"{POLICY}.{f}") for f in jaxdyn.FAMILIES
                  if importlib.util.find_spec(f"{POLICY}.{f}") is not None}
CASES = [c for m in FAMILY_MODULES.values() for c in m.CASES]
SPECS = [s for m in FAMILY_MODULES.values() for s in m.SPECS]
EXEMPT = {k: v for m in FAMILY_MODULES.values() for k, v in m.EXEMPT.items()}


def _settings(fn, examples=CLAUSE_EXAMPLES):
  return settings(max_examples=examples, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])(fn)


def _expect_named_error(call, argument, *, also=()):
  """``call()`` must raise a ValueError/TypeError naming ``argument`` (or one of ``also``)."""
  with pytest.raises((ValueError, TypeError)) as info:
    jax.block_until_ready(call())  # a silent result fails here, not later
  message = str(info.value)
  assert any(names_argument(message, a) for a in (argument, *also)), (
      f"the message does not name {argument!r}: {message}")


def _params(attr):
  return [pytest.param(s, a, id=f"{s.id}[{a}]") for s in SPECS for a in getattr(s, attr)]


def _module_state(out):
  return nnx.state(out) if isinstance(out, nnx.Module) else out


# --- bad arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("c", CASES, ids=lambda c: f"{c.function.split('.', 1)[1]}[{c.argument}]")
def test_invalid_argument_is_named(c):
  generated = {"n": 0}

  @functools.partial(_settings, examples=EXAMPLES)
  @given(c.strategy)
  def run(value):
    generated["n"] += 1
    _expect_named_error(lambda: c.call(value), c.argument)

  run()
  assert generated["n"] >= MIN_EXAMPLES, generated["n"]


# --- labels ----------------------------------------------------------------------------------------

def _bad_labels(s):
  return st.one_of(st.integers(min_value=s.num_classes, max_value=10**6), st.integers(-10**6, -1))


@pytest.mark.parametrize("s,arg", _params("labels"))
def test_out_of_range_labels_are_named(s, arg):
  @_settings
  @given(_bad_labels(s))
  def run(value):
    _expect_named_error(lambda: s.run(**{arg: spec_lib.labels_with(value, s.inputs[arg])}), arg)

  run()


@pytest.mark.parametrize("s,arg", [p for p in _params("labels") if p.values[0].jit])
def test_out_of_range_labels_give_nan_under_jit(s, arg):
  f = jax.jit(lambda y: s.call_with(**{arg: y}))

  @_settings
  @given(_bad_labels(s))
  def run(value):
    out = f(spec_lib.labels_with(value, s.inputs[arg]))
    assert any(np.isnan(x).any() for x in float_leaves(out)), f"label {value}: finite output {out}"

  run()


# --- non-finite inputs -----------------------------------------------------------------------------

def _poisoned(s, arg):
  base = np.asarray(s.inputs[arg])
  return st.tuples(st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(0, max(base.size - 1, 0)))


def _with_value(x, index, value):
  x = np.array(x, copy=True)
  x.flat[index] = value
  return x


@pytest.mark.parametrize("s,arg", _params("floats"))
def test_nonfinite_input_is_named_or_propagates(s, arg):
  @_settings
  @given(_poisoned(s, arg))
  def run(bad):
    value, index = bad
    try:
      out = s.run(**{arg: _with_value(s.inputs[arg], index, value)})
    except (ValueError, TypeError) as e:
      assert names_argument(str(e), arg), f"the message does not name {arg!r}: {e}"
      return
    leaves = float_leaves(_module_state(out))
    assert any(not np.isfinite(x).all() for x in leaves), (
        f"{value} at {arg}[{index}] gave a finite result: {out}")

  run()


@pytest.mark.parametrize("s,arg", [p for p in _params("floats") if p.values[0].jit])
def test_nonfinite_input_propagates_under_jit(s, arg):
  f = jax.jit(lambda x: s.call_with(**{arg: x}))

  @_settings
  @given(_poisoned(s, arg))
  def run(bad):
    value, index = bad
    out = f(_with_value(s.inputs[arg], index, value))
    assert any(not np.isfinite(x).all() for x in float_leaves(out)), (
        f"{value} at {arg}[{index}] gave a finite result under jit: {out}")

  run()


# --- empty batches ---------------------------------------------------------------------------------

@pytest.mark.parametrize("s", [s for s in SPECS if s.batch], ids=lambda s: s.id)
def test_empty_batch_is_rejected_or_defined(s):
  empty = {a: np.asarray(s.inputs[a])[:0] for a in s.batch}
  if s.empty is RAISES:
    _expect_named_error(lambda: s.run(**empty), s.batch[0], also=s.batch[1:])
    return
  out = s.run(**empty)
  if callable(s.empty):
    assert s.empty(out), f"empty batch gave {out}"
  else:
    np.testing.assert_allclose(np.asarray(out, dtype=np.float64), s.empty)


# --- numeric ranges --------------------------------------------------------------------------------

@pytest.mark.parametrize("s,arg", [pytest.param(s, a, id=f"{s.id}[{a}]") for s in SPECS for a in s.ranges])
def test_accepted_values_compute(s, arg):
  @_settings
  @given(s.ranges[arg])
  def run(value):
    try:
      out = s.run(**{arg: value})
    except (ValueError, TypeError) as e:
      assert names_argument(str(e), arg), f"the message does not name {arg!r}: {e}"
      return
    leaves = float_leaves(_module_state(out))
    assert leaves and all(np.isfinite(x).all() for x in leaves), f"{arg}={value!r} gave {out}"

  run()


# --- types -----------------------------------------------------------------------------------------

def _numpy_versions(value):
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise TypeError(f"Spec.numbers must name Python int or float inputs, got {value!r}")
  if isinstance(value, int):
    return st.sampled_from([np.int32(value), np.int64(value), np.asarray(value)])
  return st.sampled_from([np.float64(value), np.float32(value), np.asarray(value, np.float32)])


@pytest.mark.parametrize("s,arg", _params("numbers"))
def test_numpy_scalars_are_numbers(s, arg):
  expected = [np.asarray(x) for x in float_leaves(_module_state(s.run()))]

  @_settings
  @given(_numpy_versions(s.inputs[arg]))
  def run(value):
    got = float_leaves(_module_state(s.run(**{arg: value})))
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

  run()


@pytest.mark.parametrize("s,arg", _params("keys"))
def test_bad_key_is_named(s, arg):
  @_settings
  @given(spec_lib.bad_key)
  def run(value):
    _expect_named_error(lambda: s.run(**{arg: value}), arg)

  run()


# --- completeness ----------------------------------------------------------------------------------

def test_families_are_every_public_subpackage_and_each_has_a_policy_module():
  found = {m.name for m in pkgutil.iter_modules(jaxdyn.__path__) if m.ispkg and not m.name.startswith("_")}
  assert found == set(jaxdyn.FAMILIES), "list a new family in jaxdyn.FAMILIES (and give it a policy module)"
  missing = sorted(set(jaxdyn.FAMILIES) - set(FAMILY_MODULES))
  assert not missing, f"add tests/scale/input_policy/<family>.py for {missing}"


def _public_callables():
  for fam in jaxdyn.FAMILIES:
    mod = importlib.import_module(f"jaxdyn.{fam}")
    for name in mod.__all__:
      obj = getattr(mod, name)
      home = getattr(obj, "__module__", "") or ""
      if home.startswith("jaxdyn.") and home.split(".")[1] in jaxdyn.FAMILIES and home.split(".")[1] != fam:
        continue  # a re-export (jaxdyn.snn.conv2d is jaxdyn.models.conv2d): its home family's specs cover it
      if callable(obj):
        yield f"jaxdyn.{fam}.{name}", obj


def _is_key_param(name):
  return name == "key" or name.endswith("_key") or name == "rng"


def test_every_public_callable_has_a_spec_and_every_parameter_a_clause():
  by_function = {}
  for s in SPECS:
    by_function.setdefault(s.function, []).append(s)
  case_args = {}
  for c in CASES:
    case_args.setdefault(c.function, set()).add(c.argument)
  problems = []
  for full, obj in _public_callables():
    if full in EXEMPT:
      continue
    specs = by_function.get(full)
    if not specs:
      problems.append(f"{full}: no Spec (declare one in {POLICY}.<family>, or exempt it with a reason)")
      continue
    covered = {k: set() for k in ("floats", "labels", "batch", "numbers", "keys", "ranges")}
    reasons = {}
    for s in specs:
      for k in covered:
        covered[k] |= set(getattr(s, k))
      reasons.update(s.not_applicable)
    every = set().union(*covered.values(), case_args.get(full, ()), reasons)
    sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    for p in sig.parameters.values():
      if (p.name in ("self", "rngs") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
          or isinstance(p.default, bool)):  # flags: their two values are both valid
        continue
      where = f"{full}({p.name})"
      if p.name not in every:
        problems.append(f"{where}: no clause covers it and no reason is given (Spec.not_applicable)")
      if _is_key_param(p.name) and p.name not in covered["keys"] | set(reasons):
        problems.append(f"{where}: a key argument not in Spec.keys")
      default = p.default
      if (isinstance(default, (int, float)) and not isinstance(default, bool) and p.name not in
          covered["numbers"] | set(reasons)):
        problems.append(f"{where}: a numeric hyperparameter not in Spec.numbers")
      if ("Array" in str(p.annotation) and not _is_key_param(p.name)
          and p.name not in covered["floats"] | covered["labels"] | set(reasons)):
        problems.append(f"{where}: an array input in neither Spec.floats nor Spec.labels")
    for s in specs:
      if s.floats and not s.batch and "batch" not in s.not_applicable:
        problems.append(f"{full}: floats without a batch (Spec.batch, or not_applicable['batch'])")
  stale = sorted(set(EXEMPT) - {f for f, _ in _public_callables()})
  problems += [f"{f}: exempt but not public" for f in stale]
  assert not problems, "\n".join(problems)


def test_at_least_200_generated_cases_per_run():
  # Each case above checks that hypothesis generated at least MIN_EXAMPLES invalid inputs for it.
  assert len(CASES) * MIN_EXAMPLES >= 200, len(CASES)
