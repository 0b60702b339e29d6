"""Input-policy declarations for `jaxdyn.sparsity` (the vocabulary is in ``spec.py``).

The quantization and polarization modules declare theirs in ``_sparsity_nupes.py`` and
``_sparsity_polarization.py`` beside this file; they are merged here.
"""

from __future__ import annotations

import importlib
import math

import jax
import numpy as np
import optax
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

SP = "jaxdyn.sparsity"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

PARAMS = {"a": {"kernel": np.linspace(-1, 1, 48, dtype=np.float32).reshape(6, 8), "bias": np.zeros(8, np.float32)},
          "b": {"kernel": np.linspace(1, -1, 40, dtype=np.float32).reshape(8, 5)}}
GRADS = jax.tree.map(lambda x: np.cos(np.arange(x.size, dtype=np.float32)).reshape(x.shape), PARAMS)
W = np.array([[0.5, -0.05, 0.0], [2.0, 0.2, 0.0]], np.float32)
G = np.array([[9.0, 0.0, 0.3], [0.0, 0.0, 4.0]], np.float32)
M = np.array([[True, True, False], [True, True, False]])
bad_density = st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.floats(min_value=1.000001),
                        st.just(math.nan))
bad_fraction = st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.floats(min_value=1.0), st.just(math.nan))
bad_step = st.one_of(nonpositive_int, non_integral, st.booleans())
bad_paths = st.sampled_from([3, [""], (None,), ("",)])
not_a_tx = st.sampled_from([None, 3, "adam", (1, 2)])


def _sched(**kw):
  return fn(f"{SP}.PruningSchedule")(**{"final_density": 0.2, "end_step": 4, "update_every": 1, **kw})


# --- bad arguments ---------------------------------------------------------------------------------
case(f"{SP}.PruningSchedule", "final_density", bad_density)(lambda v: _sched(final_density=v))
case(f"{SP}.PruningSchedule", "init_density", st.one_of(st.floats(max_value=0.19), st.floats(min_value=1.000001),
                                                       st.just(math.nan)))(lambda v: _sched(init_density=v))
case(f"{SP}.PruningSchedule", "end_step", bad_count)(lambda v: _sched(end_step=v))
case(f"{SP}.PruningSchedule", "start_step", st.one_of(st.integers(max_value=-1), st.integers(4, 10**6), non_integral))(
    lambda v: _sched(start_step=v))
case(f"{SP}.PruningSchedule", "update_every", bad_count)(lambda v: _sched(update_every=v))
_DS = fn(f"{SP}.DropSchedule")
case(f"{SP}.DropSchedule", "end_step", bad_count)(lambda v: _DS(end_step=v))
case(f"{SP}.DropSchedule", "drop_fraction", bad_fraction)(lambda v: _DS(end_step=10, drop_fraction=v))
case(f"{SP}.DropSchedule", "min_fraction", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=0.300001),
                                                    st.just(math.nan)))(
    lambda v: _DS(end_step=10, drop_fraction=0.3, min_fraction=v))
case(f"{SP}.DropSchedule", "start_step", st.one_of(st.integers(max_value=-1), st.integers(10, 10**6)))(
    lambda v: _DS(end_step=10, start_step=v))
case(f"{SP}.DropSchedule", "update_every", bad_count)(lambda v: _DS(end_step=10, update_every=v))
case(f"{SP}.DropSchedule", "continue_after_end", st.sampled_from([0, 1, "yes", None]))(
    lambda v: _DS(end_step=10, continue_after_end=v))
case(f"{SP}.PruningSchedule", "num_steps", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: _sched().num_updates(v))

for name in ("layer_counts", "random_masks"):
  f = f"{SP}.{name}"
  first = (lambda: (KEY,)) if name == "random_masks" else (lambda: ())
  case(f, "density", bad_density)(lambda v, f=f, a=first: fn(f)(*a(), PARAMS, v))
  case(f, "distribution", bad_name)(lambda v, f=f, a=first: fn(f)(*a(), PARAMS, 0.5, distribution=v))
  case(f, "erk_power_scale", negative)(lambda v, f=f, a=first: fn(f)(*a(), PARAMS, 0.5, erk_power_scale=v))
  case(f, "predicate", st.sampled_from([3, "kernel", (1,)]))(lambda v, f=f, a=first: fn(f)(*a(), PARAMS, 0.5, predicate=v))
  case(f, "exclude", bad_paths)(lambda v, f=f, a=first: fn(f)(*a(), PARAMS, 0.5, exclude=v))
  case(f, "params", st.sampled_from([{"b": np.zeros(3)}, {}, {"a": np.zeros((3,))}]))(
      lambda v, f=f, a=first: fn(f)(*a(), v, 0.5))
case(f"{SP}.random_masks", "key", bad_key)(lambda v: fn(f"{SP}.random_masks")(v, PARAMS, 0.5))
for name in ("prunable", "dense_masks"):
  f = f"{SP}.{name}"
  case(f, "predicate", st.sampled_from([3, "kernel", (1,)]))(lambda v, f=f: fn(f)(PARAMS, v))
  case(f, "exclude", bad_paths)(lambda v, f=f: fn(f)(PARAMS, exclude=v))
  case(f, "params", st.sampled_from([{"b": np.zeros(3)}, {}, np.zeros(3)]))(lambda v, f=f: fn(f)(v))
case(f"{SP}.apply_masks", "masks", st.sampled_from([{"a": 1}, {}, None, {"x": np.ones(2, bool)}]))(
    lambda v: fn(f"{SP}.apply_masks")(PARAMS, v))
case(f"{SP}.mask_stats", "masks", st.sampled_from([{"w": np.ones(3)}, {"w": np.zeros((2, 2), np.int32)},
                                                   {"w": np.array([1.5, 2.0])}]))(
    lambda v: fn(f"{SP}.mask_stats")(v))
case(f"{SP}.mask_stats", "params", st.sampled_from([{"w": np.ones(3)}, {"a": 1, "b": 2}, {"w": np.ones((3, 2))}]))(
    lambda v: fn(f"{SP}.mask_stats")({"w": np.ones((2, 2), bool)}, v))
wrong = st.tuples(st.integers(1, 4), st.integers(1, 4)).filter(lambda s: s != (2, 3))
case(f"{SP}.drop_and_regrow", "grow_score", wrong)(
    lambda s: fn(f"{SP}.drop_and_regrow")(W, np.ones(s, np.float32), M, 1))
case(f"{SP}.drop_and_regrow", "mask", wrong)(lambda s: fn(f"{SP}.drop_and_regrow")(W, G, np.ones(s, bool), 1))
case(f"{SP}.drop_and_regrow", "num", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: fn(f"{SP}.drop_and_regrow")(W, G, M, v))
case(f"{SP}.drop_and_regrow", "weights", st.sampled_from([math.nan, math.inf, -math.inf]))(
    lambda v: fn(f"{SP}.drop_and_regrow")(np.where(M, v, W).astype(np.float32), G, M, 1))

_SGD = lambda: optax.sgd(0.1)  # noqa: E731
_TX = {
    "static_sparse": lambda **kw: fn(f"{SP}.static_sparse")(_SGD(), **{"density": 0.5, "key": KEY, **kw}),
    "gmp": lambda **kw: fn(f"{SP}.gmp")(_SGD(), **{"schedule": _sched(), **kw}),
    "rigl": lambda **kw: fn(f"{SP}.rigl")(_SGD(), **{"density": 0.5, "key": KEY, "end_step": 4, "update_every": 1,
                                                    **kw}),
    "set_sparse": lambda **kw: fn(f"{SP}.set_sparse")(_SGD(), **{"density": 0.5, "key": KEY, "end_step": 4,
                                                                "update_every": 1, **kw}),
    "granet": lambda **kw: fn(f"{SP}.granet")(_SGD(), **{"schedule": _sched(), **kw}),
}
for name, make in _TX.items():
  f = f"{SP}.{name}"
  case(f, "inner", not_a_tx)(lambda v, f=f, make=make: fn(f)(v, **{k: a for k, a in _defaults(f).items()}))
  case(f, "predicate", st.sampled_from([3, "kernel", (1,)]))(lambda v, make=make: make(predicate=v))
  case(f, "exclude", st.sampled_from([3, 1.5, "", [None]]))(lambda v, make=make: make(exclude=v))
  if name != "gmp":
    case(f, "distribution", bad_name)(lambda v, make=make: make(distribution=v))
  if name in ("static_sparse", "rigl", "set_sparse"):
    case(f, "density", bad_density)(lambda v, make=make: make(density=v))
    case(f, "key", bad_key)(lambda v, make=make: make(key=v))
  if name in ("rigl", "set_sparse"):
    case(f, "end_step", bad_count)(lambda v, make=make: make(end_step=v))
    case(f, "update_every", bad_count)(lambda v, make=make: make(update_every=v))
    case(f, "drop_fraction", bad_fraction)(lambda v, make=make: make(drop_fraction=v))
    case(f, "schedule", st.sampled_from([3, "cosine", _sched()]))(lambda v, make=make: make(schedule=v))
  if name in ("gmp", "granet"):
    case(f, "schedule", st.sampled_from([3, "cubic", None, _DS(end_step=4)]))(lambda v, make=make: make(schedule=v))
case(f"{SP}.gmp", "scope", bad_name.filter(lambda s: s not in ("layer", "global")))(lambda v: _TX["gmp"](scope=v))
case(f"{SP}.granet", "key", st.sampled_from(["key", 0, 1.5, (0, 1), np.zeros(2, np.float32)]))(
    lambda v: _TX["granet"](key=v))
case(f"{SP}.granet", "drop_fraction", bad_fraction)(lambda v: _TX["granet"](drop_fraction=v))
case(f"{SP}.granet", "min_drop_fraction", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=0.500001),
                                                   st.just(math.nan)))(
    lambda v: _TX["granet"](official_compat=True, total_steps=10, min_drop_fraction=v))
case(f"{SP}.granet", "total_steps", bad_count)(lambda v: _TX["granet"](official_compat=True, total_steps=v))
case(f"{SP}.granet", "official_compat", st.sampled_from([0, 1, "yes", None]))(lambda v: _TX["granet"](official_compat=v))


def _defaults(f):
  name = f.rsplit(".", 1)[1]
  return {"static_sparse": {"density": 0.5, "key": KEY}, "gmp": {"schedule": _sched()},
          "rigl": {"density": 0.5, "key": KEY, "end_step": 4}, "set_sparse": {"density": 0.5, "key": KEY, "end_step": 4},
          "granet": {"schedule": _sched()}}[name]


def _apply(p, x):
  return x @ p["a"]["kernel"] @ p["b"]["kernel"]


case(f"{SP}.sparse_flops", "apply_fn", st.sampled_from([None, 3, "f"]))(
    lambda v: fn(f"{SP}.sparse_flops")(v, PARAMS, fn(f"{SP}.dense_masks")(PARAMS), np.ones((2, 6), np.float32)))
case(f"{SP}.sparse_flops", "example_input", st.sampled_from([np.ones((0, 6), np.float32), np.ones((2, 7), np.float32),
                                                            np.float32(1.0)]))(
    lambda v: fn(f"{SP}.sparse_flops")(_apply, PARAMS, fn(f"{SP}.dense_masks")(PARAMS), v))
case(f"{SP}.sparse_flops", "masks", st.sampled_from([{"a": 1}, {}, None]))(
    lambda v: fn(f"{SP}.sparse_flops")(_apply, PARAMS, v, np.ones((2, 6), np.float32)))
_LF = lambda: [fn(f"{SP}.LayerFlops")("w", 100.0, 0.5)]  # noqa: E731
case(f"{SP}.training_flops", "num_steps", bad_count)(lambda v: fn(f"{SP}.training_flops")(_LF(), num_steps=v, batch_size=2))
case(f"{SP}.training_flops", "batch_size", bad_count)(lambda v: fn(f"{SP}.training_flops")(_LF(), num_steps=2, batch_size=v))
case(f"{SP}.training_flops", "layers", st.sampled_from([[], [1, 2], None]))(
    lambda v: fn(f"{SP}.training_flops")(v, num_steps=2, batch_size=2))
case(f"{SP}.training_flops", "mean_density", st.sampled_from([[0.5, 0.5], [1.5], [-0.1], [math.nan]]))(
    lambda v: fn(f"{SP}.training_flops")(_LF(), num_steps=2, batch_size=2, mean_density=v))
case(f"{SP}.training_flops", "dense_gradient_steps", st.one_of(st.integers(max_value=-1), st.integers(3, 10**6)))(
    lambda v: fn(f"{SP}.training_flops")(_LF(), num_steps=2, batch_size=2, dense_gradient_steps=v))

EXEMPT = {
    f"{SP}.SparseState": "a NamedTuple of optimizer state",
    f"{SP}.LayerFlops": "a record of numbers that sparse_flops builds (its `sparse` is dense * density)",
    f"{SP}.default_predicate": "the default predicate: any (path, leaf) gives a bool (ndim and names only)",
}


# --- clause specs ---------------------------------------------------------------------------------
def _one_update(name, **kw):
  """One update of a wrapper from a fixed state: the new params (non-finite grads must show)."""
  def call(grads=None, **hyper):
    tx = _TX[name](**{**kw, **hyper})
    state = tx.init(PARAMS)
    g = GRADS if grads is None else {"a": {"kernel": grads, "bias": GRADS["a"]["bias"]}, "b": GRADS["b"]}
    updates, _ = tx.update(g, state, PARAMS)
    return optax.apply_updates(PARAMS, updates)
  return call


_NA_TX = {"inner": "an optax transform (its kind is a Case)", "predicate": "a callable (its kind is a Case)",
          "exclude": "path substrings (a Case)", "batch": "optimizer inputs are parameter trees: no batch axis"}
SPECS += [
    Spec(f"{SP}.PruningSchedule", dict(final_density=0.2, end_step=10, init_density=0.9, start_step=2,
                                       update_every=3),
         call=lambda **kw: np.asarray([fn(f"{SP}.PruningSchedule")(**kw).density(t) for t in (0, 5, 10)]),
         numbers=("final_density", "end_step", "init_density", "start_step", "update_every")),
    Spec(f"{SP}.DropSchedule", dict(end_step=10, drop_fraction=0.3, min_fraction=0.01, start_step=1, update_every=2,
                                    continue_after_end=False),
         call=lambda **kw: np.asarray([_DS(**kw).fraction(t) for t in (0, 5, 10)]),
         numbers=("end_step", "drop_fraction", "min_fraction", "start_step", "update_every"),
         not_applicable={"continue_after_end": "a bool (its kind is a Case)"}),
    Spec(f"{SP}.layer_counts", dict(params=PARAMS, density=0.3, erk_power_scale=1.0),
         call=lambda **kw: np.asarray(jax.tree.leaves(fn(f"{SP}.layer_counts")(**kw)), np.float64),
         numbers=("density", "erk_power_scale"), ranges={"density": st.floats(1e-12, 1.0)},
         not_applicable={"distribution": "a name (a Case)", "predicate": "a callable (a Case)",
                         "exclude": "path substrings (a Case)",
                         "params": "a parameter tree: only its shapes are read (no values)"}),
    Spec(f"{SP}.random_masks", dict(key=KEY, params=PARAMS, density=0.3),
         call=lambda **kw: np.asarray([float(np.sum(m)) for m in jax.tree.leaves(fn(f"{SP}.random_masks")(**kw))]),
         numbers=("density",), keys=("key",),
         not_applicable={"distribution": "a name (a Case)", "predicate": "a callable (a Case)",
                         "exclude": "path substrings (a Case)", "erk_power_scale": "as layer_counts (a Case)",
                         "params": "only its shapes are read (no values)"}),
    Spec(f"{SP}.prunable", dict(params=PARAMS), call=lambda **kw: np.asarray(jax.tree.leaves(fn(f"{SP}.prunable")(**kw)),
                                                                            np.float64),
         not_applicable={"params": "only shapes and names are read", "predicate": "a callable (a Case)",
                         "exclude": "path substrings (a Case)"}),
    Spec(f"{SP}.dense_masks", dict(params=PARAMS),
         call=lambda **kw: np.asarray([float(np.sum(m)) for m in jax.tree.leaves(fn(f"{SP}.dense_masks")(**kw))]),
         not_applicable={"params": "only shapes and names are read", "predicate": "a callable (a Case)",
                         "exclude": "path substrings (a Case)"}),
    Spec(f"{SP}.apply_masks", dict(x=PARAMS["a"]["kernel"]),
         call=lambda x: fn(f"{SP}.apply_masks")({"w": x}, {"w": np.ones(x.shape, bool)}), floats=("x",),
         not_applicable={"params": "a tree; its floats are the x clause", "masks": "booleans (a Case)",
                         "batch": "parameter trees: no batch axis"}),
    Spec(f"{SP}.mask_stats", dict(masks={"w": M}),
         call=lambda masks: np.asarray(list(fn(f"{SP}.mask_stats")(masks).values()), np.float64),
         not_applicable={"params": "only shapes are read (a Case)"}),
    Spec(f"{SP}.drop_and_regrow", dict(weights=W, grow_score=G, mask=M, num=1),
         call=lambda **kw: np.asarray(fn(f"{SP}.drop_and_regrow")(**kw), np.float64),
         floats=("weights", "grow_score"), batch=("weights", "grow_score", "mask"),
         empty=lambda out: np.size(out) == 0, numbers=("num",),
         not_applicable={"mask": "booleans: no non-finite values; its shape is a Case",
                         "num": "an integer count (the numbers clause; its range is a Case)"}),
    Spec(f"{SP}.sparse_flops", dict(example_input=np.ones((2, 6), np.float32)),
         call=lambda example_input: np.asarray([l.dense for l in fn(f"{SP}.sparse_flops")(
             _apply, PARAMS, fn(f"{SP}.dense_masks")(PARAMS), example_input)]),
         batch=("example_input",),
         not_applicable={"apply_fn": "a callable (a Case)", "params": "only shapes are read (traced to a jaxpr)",
                         "masks": "booleans (a Case)",
                         "example_input": "only its shape is read (a jaxpr is traced, nothing runs)"}),
    Spec(f"{SP}.training_flops", dict(num_steps=10, batch_size=4, dense_gradient_steps=2),
         call=lambda **kw: np.asarray(list(fn(f"{SP}.training_flops")(_LF(), **kw).values())),
         numbers=("num_steps", "batch_size", "dense_gradient_steps"),
         ranges={"num_steps": st.integers(2, 2**62), "batch_size": st.integers(1, 2**62)},
         not_applicable={"layers": "LayerFlops records (a Case)", "mean_density": "densities in [0, 1] (a Case)"}),
]
for name in _TX:
  extra = {"static_sparse": ("density",), "rigl": ("density", "end_step", "update_every", "drop_fraction"),
           "set_sparse": ("density", "end_step", "update_every", "drop_fraction"), "gmp": (),
           "granet": ("drop_fraction", "min_drop_fraction")}[name]
  inputs = {"grads": GRADS["a"]["kernel"], **{k: _defaults(f"{SP}.{name}").get(k, {
      "drop_fraction": 0.3 if name != "granet" else 0.5, "update_every": 1, "min_drop_fraction": 0.005}.get(k))
      for k in extra}}
  na = dict(_NA_TX)
  if "key" in _defaults(f"{SP}.{name}"):
    na["key"] = "its validation is a Case"
  if name in ("gmp", "granet"):
    na["schedule"] = "a PruningSchedule (a Case; its numbers are PruningSchedule's clauses)"
  if name in ("rigl", "set_sparse"):
    na["schedule"] = "a DropSchedule (a Case; its numbers are DropSchedule's clauses)"
  if name != "gmp":
    na["distribution"] = "a name (a Case)"
  if name == "gmp":
    na["scope"] = "a name (a Case)"
  if name == "granet":
    na.update(key="a key (a Case)", total_steps="an int (a Case)", official_compat="a bool (a Case)")
  na["grads"] = "the update's gradients"
  SPECS.append(Spec(f"{SP}.{name}", inputs, call=_one_update(name), floats=("grads",), numbers=extra,
                    not_applicable={k: v for k, v in na.items() if k != "grads"}))


# The quantization and polarization declarations, where those modules exist.
for _sub in ("_sparsity_nupes", "_sparsity_polarization"):
  try:
    _mod = importlib.import_module(f"tests.scale.input_policy.{_sub}")
  except ModuleNotFoundError:
    continue
  CASES += _mod.CASES
  SPECS += _mod.SPECS
  EXEMPT.update(_mod.EXEMPT)
