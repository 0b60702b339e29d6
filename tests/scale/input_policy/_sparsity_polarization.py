"""Input-policy declarations for the polarization consensus sub-network (``jaxdyn.sparsity``).

Merged into ``sparsity.py``'s lists; the vocabulary is in ``spec.py``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import RAISES, Case, Spec, collector, fn

SP = "jaxdyn.sparsity"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

PROBS = np.asarray(jax.random.uniform(jax.random.key(11), (B, 4)), np.float32)  # gate probabilities
SIGNALS = np.asarray(jax.random.normal(jax.random.key(12), (B, 8)), np.float32)  # 1-D model inputs
FEATURES = np.asarray(jax.random.normal(jax.random.key(13), (B, 5, 2)), np.float32)  # a gate's input
MASKS = [np.array([True, False]), np.array([True, True, False])]

bad_probability = st.one_of(st.floats(min_value=1.000001), st.floats(max_value=-1e-6, allow_nan=False))
bad_target = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0), st.just(math.nan), st.booleans())
bad_weight = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.01e30), st.just(math.nan), st.booleans())
bad_unit_interval = st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.000001), st.just(math.nan),
                              st.booleans())  # (0, 1]: quorum, keep_fraction
bad_finite = st.sampled_from([math.nan, math.inf, -math.inf, "2", True, None])
bad_model = st.sampled_from([None, 3, "cnn", (1, 2)])
_BAD_MASKS = ["ab", [np.ones(2, bool)], [np.ones(3, bool), np.ones(3, bool)], [np.ones(2), np.full(3, 0.5)],
              [np.ones(2, bool), np.array(["a", "b", "c"])]]
bad_masks = st.sampled_from(_BAD_MASKS)  # for a forward pass, where all-off blocks are valid
bad_prune_masks = st.sampled_from([None, [np.zeros(2, bool), np.ones(3, bool)], *_BAD_MASKS])
_LAYERS: dict = {}


def _cached(name, build):
  """One module per name; each call gets a fresh copy (nnx.merge), so no call changes the next."""
  if name not in _LAYERS:
    with jax.ensure_compile_time_eval():  # concrete even when first asked for inside a jit trace
      _LAYERS[name] = nnx.split(build())
  return nnx.merge(*_LAYERS[name], copy=True)


def _gate():
  return _cached("gate", lambda: fn(f"{SP}.ChannelGate")(2, 4, hidden=3, rngs=nnx.Rngs(0)))


def _gated():
  return _cached("gated", lambda: fn(f"{SP}.GatedCNN")(1, C, spatial_dims=1, channels=(2, 3), hidden=4,
                                                        rngs=nnx.Rngs(0)))


def _gated_res():
  return _cached("gated_res", lambda: fn(f"{SP}.GatedResNet")(3, C, stage_sizes=(1,), width=2, gate_hidden=3,
                                                               rngs=nnx.Rngs(0)))


def _cnn():
  return _cached("cnn", lambda: fn("jaxdyn.models.CNN")(1, C, spatial_dims=1, channels=(2, 3), hidden=4,
                                                         rngs=nnx.Rngs(0)))


def _pruned_or(value):
  """``"bigger"``: a CNN that is not a pruned copy of `_cnn` (more channels); anything else as given."""
  if value == "bigger":
    return fn("jaxdyn.models.CNN")(1, C, spatial_dims=1, channels=(4, 3), hidden=4, rngs=nnx.Rngs(0))
  return value


def _with(x, value):
  x = np.array(x, copy=True)
  x.flat[0] = value
  return x


def _floats(*values):
  return np.asarray(values, np.float64)


# --- bad arguments ---------------------------------------------------------------------------------
case(f"{SP}.binary_gate", "probs", bad_probability)(lambda v: fn(f"{SP}.binary_gate")(np.full(3, v, np.float32)))
case(f"{SP}.binary_gate", "key", st.sampled_from(["key", 0, 1.5, (0, 1), np.zeros(2, np.float32)]))(
    lambda v: fn(f"{SP}.binary_gate")(PROBS, key=v))

_REG = f"{SP}.polarization_regularizer"
case(_REG, "target_sparsity", bad_target)(lambda v: fn(_REG)(PROBS, target_sparsity=v))
for _name in ("polarization_weight", "consensus_weight", "sparsity_weight"):
  case(_REG, _name, bad_weight)(lambda v, n=_name: fn(_REG)(PROBS, target_sparsity=0.5, **{n: v}))
case(_REG, "gates", bad_probability)(lambda v: fn(_REG)(_with(PROBS, v), target_sparsity=0.5))
case(_REG, "gates", st.integers(1, 3).filter(lambda n: n != 2))(
    lambda n: fn(_REG)(np.full((2,) * n, 0.5, np.float32), target_sparsity=0.5))
case(_REG, "gates", st.integers(1, 3 * B).filter(lambda n: n != B))(
    lambda n: fn(_REG)([PROBS, np.full((n, 2), 0.5, np.float32)], target_sparsity=0.5))


_GATE = f"{SP}.ChannelGate"
case(_GATE, "in_features", bad_count)(lambda v: fn(_GATE)(v, 4, rngs=nnx.Rngs(0)))
case(_GATE, "units", bad_count)(lambda v: fn(_GATE)(2, v, rngs=nnx.Rngs(0)))
case(_GATE, "hidden", bad_count)(lambda v: fn(_GATE)(2, 4, hidden=v, rngs=nnx.Rngs(0)))
case(_GATE, "bias_init", bad_finite)(lambda v: fn(_GATE)(2, 4, bias_init=v, rngs=nnx.Rngs(0)))
case(_GATE, "x", st.integers(1, 9).filter(lambda n: n != 2))(
    lambda n: _gate()(np.ones((B, 5, n), np.float32)))

_NET = f"{SP}.GatedCNN"
_net = lambda **kw: fn(_NET)(**{"in_channels": 1, "num_classes": C, "spatial_dims": 1, "channels": (2,),  # noqa: E731
                                "hidden": 4, **kw, "rngs": nnx.Rngs(0)})
case(_NET, "in_channels", bad_count)(lambda v: _net(in_channels=v))
case(_NET, "num_classes", bad_count)(lambda v: _net(num_classes=v))
case(_NET, "spatial_dims", st.integers().filter(lambda d: d not in (1, 2)))(lambda v: _net(spatial_dims=v))
case(_NET, "channels", st.one_of(st.just(()), st.tuples(nonpositive_int), st.just(2), st.just("ab")))(
    lambda v: _net(channels=v))
case(_NET, "hidden", bad_count)(lambda v: _net(hidden=v))
case(_NET, "dropout_rate", bad_rate)(lambda v: _net(dropout_rate=v))
case(_NET, "gate_hidden", bad_count)(lambda v: _net(gate_hidden=v))
case(_NET, "gate_bias", bad_finite)(lambda v: _net(gate_bias=v))
case(_NET, "x", st.integers(1, 9).filter(lambda n: n != 1))(lambda n: _gated()(np.ones((B, 8, n), np.float32)))
case(_NET, "masks", bad_masks)(lambda v: _gated()(SIGNALS, masks=v))

_RES = f"{SP}.GatedResNet"
_res = lambda **kw: fn(_RES)(**{"in_channels": 3, "num_classes": C, "stage_sizes": (1,), "width": 2,  # noqa: E731
                                **kw, "rngs": nnx.Rngs(0)})
IMAGES = np.asarray(jax.random.normal(jax.random.key(14), (B, 4, 4, 3)), np.float32)
case(_RES, "in_channels", bad_count)(lambda v: _res(in_channels=v))
case(_RES, "num_classes", bad_count)(lambda v: _res(num_classes=v))
case(_RES, "stage_sizes", st.sampled_from([(0,), (1, -1), (1.5,)]))(lambda v: _res(stage_sizes=v))
case(_RES, "width", bad_count)(lambda v: _res(width=v))
case(_RES, "dropout_rate", bad_rate)(lambda v: _res(dropout_rate=v))
case(_RES, "gate_hidden", bad_count)(lambda v: _res(gate_hidden=v))
case(_RES, "gate_bias", bad_finite)(lambda v: _res(gate_bias=v))
case(_RES, "x", st.integers(1, 9).filter(lambda n: n != 3))(lambda n: _gated_res()(np.ones((B, 4, 4, n), np.float32)))
case(_RES, "masks", st.sampled_from(["ab", [np.ones(3, bool)], [np.ones(2, bool), np.ones(2, bool)],
                                     [np.full(2, 0.5)]]))(lambda v: _gated_res()(IMAGES, masks=v))
case(f"{SP}.prune_channels", "masks", st.sampled_from([None, [np.zeros(2, bool)], [np.ones(3, bool)]]))(
    lambda v: fn(f"{SP}.prune_channels")(_gated_res(), v))

for _f in ("consensus_masks", "extract_subnetwork"):
  case(f"{SP}.{_f}", "model", st.sampled_from([None, 3, "cnn", "a CNN"]))(
      lambda v, f=_f: fn(f"{SP}.{f}")(_cnn() if v == "a CNN" else v, SIGNALS))
  case(f"{SP}.{_f}", "quorum", bad_unit_interval)(lambda v, f=_f: fn(f"{SP}.{f}")(_gated(), SIGNALS, quorum=v))
  case(f"{SP}.{_f}", "x_calib", st.integers(2, 9))(
      lambda n, f=_f: fn(f"{SP}.{f}")(_gated(), np.ones((B, 8, n), np.float32)))
case(f"{SP}.prune_channels", "model", bad_model)(lambda v: fn(f"{SP}.prune_channels")(v, MASKS))
case(f"{SP}.prune_channels", "masks", bad_prune_masks)(lambda v: fn(f"{SP}.prune_channels")(_gated(), v))
_MAG = f"{SP}.prune_channels_by_magnitude"
case(_MAG, "cnn", st.sampled_from([None, 3, "cnn", "a GatedCNN"]))(
    lambda v: fn(_MAG)(_gated() if v == "a GatedCNN" else v, 0.5))
case(_MAG, "keep_fraction", bad_unit_interval)(lambda v: fn(_MAG)(_cnn(), v))
case(f"{SP}.cnn_flops", "model", bad_model)(lambda v: fn(f"{SP}.cnn_flops")(v, SIGNALS))
case(f"{SP}.cnn_flops", "example_input", st.integers(2, 9))(
    lambda n: fn(f"{SP}.cnn_flops")(_cnn(), np.ones((B, 8, n), np.float32)))
_REP = f"{SP}.compression_report"
case(_REP, "dense", bad_model)(lambda v: fn(_REP)(v, _cnn(), SIGNALS))
case(_REP, "pruned", st.sampled_from([None, 3, "cnn", "bigger"]))(lambda v: fn(_REP)(_cnn(), _pruned_or(v), SIGNALS))
case(_REP, "example_input", st.integers(2, 9))(lambda n: fn(_REP)(_cnn(), _cnn(), np.ones((B, 8, n), np.float32)))


# --- clause specs ---------------------------------------------------------------------------------
_MODEL_ARG = "a module: anything but the kind the docstring names is a Case"
_SHAPE_ONLY = "only its shape is read: its values never enter the result; a wrong shape is a Case"
_EMPTY_GATES = lambda out: np.shape(out) == (0, 4)  # noqa: E731  elementwise / per-row: empty in, empty out
_REG_INPUTS = dict(gates=PROBS, target_sparsity=0.5, polarization_weight=1.0, consensus_weight=2.0,
                   sparsity_weight=2.0)

SPECS += [
    Spec(f"{SP}.binary_gate", dict(probs=PROBS), floats=("probs",), jit=True, batch=("probs",), empty=_EMPTY_GATES,
         not_applicable={"key": "optional (None: the threshold at 1/2), so a missing key is valid; a wrong key "
                                "is a Case"}),
    Spec(f"{SP}.binary_gate", dict(probs=PROBS), call=lambda probs: fn(f"{SP}.binary_gate")(probs, key=KEY),
         floats=("probs",), jit=True, batch=("probs",), empty=_EMPTY_GATES),
    Spec(_REG, _REG_INPUTS, floats=("gates",), jit=True, batch=("gates",), empty=RAISES,
         numbers=("target_sparsity", "polarization_weight", "consensus_weight", "sparsity_weight"),
         ranges={w: st.floats(0.0, 1e30) for w in ("polarization_weight", "consensus_weight", "sparsity_weight")}),
    Spec(_REG, dict(gates=PROBS, extra=PROBS[:, :2]),  # a sequence of blocks
         call=lambda gates, extra: fn(_REG)([gates, extra], target_sparsity=0.25), floats=("gates",), jit=True,
         batch=("gates", "extra"), empty=RAISES),
    # The gating module: construction, then a forward pass.
    Spec(_GATE, dict(in_features=2, units=4, hidden=3, bias_init=2.0),
         call=lambda **kw: fn(_GATE)(**kw, rngs=nnx.Rngs(0)), numbers=("in_features", "units", "hidden", "bias_init"),
         ranges={"bias_init": st.floats(-1e30, 1e30)}),
    Spec(_GATE, dict(x=FEATURES), call=lambda x: _gate()(x), floats=("x",), jit=True, batch=("x",),
         empty=_EMPTY_GATES),
    # The gated CNN: construction (NumPy numbers) and a forward pass; then the forward pass under jit.
    Spec(_NET, dict(x=SIGNALS, dropout_rate=0.1, hidden=4, spatial_dims=1, gate_hidden=3, gate_bias=2.0),
         call=lambda x, **kw: fn(_NET)(1, C, channels=(2,), **kw, rngs=nnx.Rngs(0))(x), floats=("x",),
         batch=("x",), empty=lambda out: np.shape(out) == (0, C),
         numbers=("dropout_rate", "hidden", "spatial_dims", "gate_hidden", "gate_bias"),
         ranges={"gate_bias": st.floats(-1e30, 1e30)}),
    Spec(_NET, dict(x=SIGNALS), call=lambda x: _gated()(x, return_gates=True), floats=("x",), jit=True,
         not_applicable={"batch": "the empty batch is the eager Spec's"}),
    # The gated ResNet: construction and a forward pass, eager and under jit.
    Spec(_RES, dict(x=IMAGES, dropout_rate=0.1, width=2, gate_hidden=3, gate_bias=2.0),
         call=lambda x, **kw: fn(_RES)(3, C, stage_sizes=(1,), **kw, rngs=nnx.Rngs(0))(x, train=False),
         floats=("x",), batch=("x",), empty=lambda out: np.shape(out) == (0, C),
         numbers=("dropout_rate", "width", "gate_hidden", "gate_bias"), ranges={"gate_bias": st.floats(-1e30, 1e30)},
         not_applicable={"in_channels": "a size, checked by a Case", "num_classes": "a size, checked by a Case",
                         "stage_sizes": "sizes, checked by a Case"}),
    Spec(_RES, dict(x=IMAGES), call=lambda x: _gated_res()(x, return_gates=True, train=False), floats=("x",),
         jit=True, not_applicable={"batch": "the empty batch is the eager Spec's"}),
    # Consensus and extraction.
    Spec(f"{SP}.consensus_masks", dict(x_calib=SIGNALS, quorum=0.5),
         call=lambda **kw: np.concatenate(fn(f"{SP}.consensus_masks")(_gated(), **kw)).astype(np.float64),
         floats=("x_calib",), batch=("x_calib",), empty=RAISES, numbers=("quorum",),
         not_applicable={"model": _MODEL_ARG}),
    Spec(f"{SP}.extract_subnetwork", dict(x_calib=SIGNALS, quorum=0.5),
         call=lambda **kw: fn(f"{SP}.extract_subnetwork")(_gated(), **kw), floats=("x_calib",), batch=("x_calib",),
         empty=RAISES, numbers=("quorum",), not_applicable={"model": _MODEL_ARG}),
    Spec(f"{SP}.prune_channels", dict(masks=MASKS), call=lambda masks: fn(f"{SP}.prune_channels")(_gated(), masks),
         not_applicable={"model": _MODEL_ARG, "masks": "boolean (or 0/1) masks: no non-finite values; wrong "
                                                       "shapes, values and empty blocks are Cases"}),
    Spec(_MAG, dict(keep_fraction=0.5), call=lambda keep_fraction: fn(_MAG)(_cnn(), keep_fraction),
         numbers=("keep_fraction",), ranges={"keep_fraction": st.floats(1e-30, 1.0)},
         not_applicable={"cnn": _MODEL_ARG + " (a non-finite kernel raises, naming cnn: tests/sparsity)"}),
    # FLOPs.
    Spec(f"{SP}.cnn_flops", dict(example_input=SIGNALS),
         call=lambda example_input: _floats(fn(f"{SP}.cnn_flops")(_cnn(), example_input)),
         not_applicable={"model": _MODEL_ARG, "example_input": _SHAPE_ONLY}),
    Spec(_REP, dict(example_input=SIGNALS),
         call=lambda example_input: _floats(*dataclasses.astuple(fn(_REP)(
             _gated(), fn(f"{SP}.prune_channels")(_gated(), MASKS), example_input))[2:]),
         not_applicable={"dense": _MODEL_ARG, "pruned": _MODEL_ARG + " (or not a pruned copy of dense)",
                         "example_input": _SHAPE_ONLY}),
]

EXEMPT = {
    f"{SP}.CompressionReport": "a result record that compression_report fills in (its fields are computed, "
                               "not user input)",
}
