"""Input-policy declarations for `jaxdyn.snn` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

SNN = "jaxdyn.snn"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

# --- snn -----------------------------------------------------------------------------------------
T = 3
CURRENTS = np.ones((T, B, 4), np.float32)
bad_tau = st.one_of(st.floats(max_value=1.0, allow_infinity=False), st.just(math.nan))
for name in ("spike", "surrogate_derivative"):
  f = f"{SNN}.{name}"
  case(f, "surrogate", bad_name)(lambda v, f=f: fn(f)(CURRENTS[0], surrogate=v))
  case(f, "alpha", nonpositive)(lambda v, f=f: fn(f)(CURRENTS[0], alpha=v))
case(f"{SNN}.register_surrogate", "name", st.sampled_from(["", "triangle", "rectangle", "sigmoid"]) | st.integers())(
    lambda v: fn(f"{SNN}.register_surrogate")(v, lambda x, a: x))
case(f"{SNN}.register_surrogate", "derivative", st.one_of(st.integers(), st.text(), st.none()))(
    lambda v: fn(f"{SNN}.register_surrogate")("bad_input_test", v))
for name in ("lif_step", "lif_multistep", "lif_multistep_pallas"):
  f = f"{SNN}.{name}"
  args = (lambda: (None, CURRENTS[0])) if name == "lif_step" else (lambda: (CURRENTS,))
  case(f, "tau", bad_tau)(lambda v, f=f, a=args: fn(f)(*a(), tau=v))
  case(f, "v_th", nonpositive)(lambda v, f=f, a=args: fn(f)(*a(), v_th=v))
  case(f, "reset", bad_name)(lambda v, f=f, a=args: fn(f)(*a(), reset=v))
  case(f, "surrogate", bad_name)(lambda v, f=f, a=args: fn(f)(*a(), surrogate=v))
case(f"{SNN}.lif_step", "v", wrong_feature)(
    lambda n: fn(f"{SNN}.lif_step")(np.zeros((B, n), np.float32), CURRENTS[0]))
for name in ("lif_multistep", "lif_multistep_pallas"):
  case(f"{SNN}.{name}", "v0", wrong_feature)(
      lambda n, name=name: fn(f"{SNN}.{name}")(CURRENTS, np.zeros((B, n), np.float32)))
case(f"{SNN}.lif_multistep_pallas", "block_size", st.integers(-64, 1000).filter(lambda b: b < 1 or b & (b - 1)))(
    lambda v: fn(f"{SNN}.lif_multistep_pallas")(CURRENTS, block_size=v, interpret=True))
case(f"{SNN}.LIF", "tau", bad_tau)(lambda v: fn(f"{SNN}.LIF")(tau=v))
case(f"{SNN}.LIF", "surrogate", bad_name)(lambda v: fn(f"{SNN}.LIF")(surrogate=v))
case(f"{SNN}.LIFConfig", "v_th", nonpositive)(lambda v: fn(f"{SNN}.LIFConfig")(v_th=v))
case(f"{SNN}.LIFConfig", "alpha", nonpositive)(lambda v: fn(f"{SNN}.LIFConfig")(alpha=v))
case(f"{SNN}.encode", "encoder", bad_name)(lambda v: fn(f"{SNN}.encode")(H, 0, encoder=v))
case(f"{SNN}.poisson_encode", "key", bad_key)(
    lambda v: fn(f"{SNN}.poisson_encode")(v, H, 0))
case(f"{SNN}.fixed_dropout_masks", "rate", bad_rate)(lambda v: fn(f"{SNN}.fixed_dropout_masks")(KEY, H, v))
case(f"{SNN}.sample_steps", "k", st.one_of(nonpositive_int, st.integers(T + 1, 100)))(
    lambda v: fn(f"{SNN}.sample_steps")(KEY, T, v))
case(f"{SNN}.sample_steps", "key", bad_key)(lambda v: fn(f"{SNN}.sample_steps")(v, T, 1))
case(f"{SNN}.fixed_dropout_masks", "key", bad_key)(lambda v: fn(f"{SNN}.fixed_dropout_masks")(v, H, 0.5))
case(f"{SNN}.sample_steps", "num_steps", bad_count)(lambda v: fn(f"{SNN}.sample_steps")(KEY, v, 1))
case(f"{SNN}.sltt_step_loss", "lam_l", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.000001),
                                                 st.just(math.nan)))(
    lambda v: fn(f"{SNN}.sltt_step_loss")(logits=LOGITS, labels=LABELS, lam_l=v))
case(f"{SNN}.sltt_step_loss", "labels", wrong_batch)(
    lambda n: fn(f"{SNN}.sltt_step_loss")(logits=LOGITS, labels=np.arange(n, dtype=np.int32) % C))
case(f"{SNN}.sltt_step_loss", "labels", bad_label_value)(
    lambda v: fn(f"{SNN}.sltt_step_loss")(logits=LOGITS, labels=labels_with(v)))


def _tt_step(params, state, carry, inputs, t):
  return inputs @ params, carry, state


def _through_time(**kw):
  kw = {"num_steps": T, **kw}
  return fn(f"{SNN}.through_time_loss")(_tt_step, W, None, H, LABELS, key=KEY, **kw)


case(f"{SNN}.through_time_loss", "mode", bad_name)(lambda v: _through_time(mode=v))
case(f"{SNN}.through_time_loss", "num_steps", bad_count)(lambda v: _through_time(num_steps=v))
case(f"{SNN}.through_time_loss", "k", st.one_of(nonpositive_int, st.integers(T + 1, 100)))(
    lambda v: _through_time(mode="sltt_k", k=v))
case(f"{SNN}.through_time_loss", "lam_l", st.floats(min_value=1.000001) | st.floats(max_value=-1e-6))(
    lambda v: _through_time(lam_l=v))
case(f"{SNN}.through_time_loss", "labels", wrong_batch)(
    lambda n: fn(f"{SNN}.through_time_loss")(_tt_step, W, None, H, np.arange(n, dtype=np.int32) % C,
                                              num_steps=T))
case(f"{SNN}.through_time_loss", "step_fn", st.one_of(st.integers(), st.none(), st.text(max_size=4)))(
    lambda v: fn(f"{SNN}.through_time_loss")(v, W, None, H, LABELS, num_steps=T))
_SNN_MODEL = {}


def _snn_mlp():
  if "m" not in _SNN_MODEL:
    _SNN_MODEL["m"] = fn(f"{SNN}.SpikingMLP")(4, C, hidden=(8,), num_steps=T, rngs=nnx.Rngs(0))
  return _SNN_MODEL["m"]


case(f"{SNN}.spiking_loss", "model", st.one_of(st.integers(), st.none(), st.just(head)))(
    lambda v: fn(f"{SNN}.spiking_loss")(v, H, LABELS))
case(f"{SNN}.spiking_loss", "mode", bad_name)(lambda v: fn(f"{SNN}.spiking_loss")(_snn_mlp(), H, LABELS, mode=v))
case(f"{SNN}.spiking_loss", "x", wrong_feature)(
    lambda n: fn(f"{SNN}.spiking_loss")(_snn_mlp(), np.ones((B, n), np.float32), LABELS))
case(f"{SNN}.spiking_loss", "labels", wrong_batch)(
    lambda n: fn(f"{SNN}.spiking_loss")(_snn_mlp(), H, np.arange(n, dtype=np.int32) % C))
case(f"{SNN}.step_function", "graphdef", st.one_of(st.integers(), st.none(), st.text(max_size=4)))(
    lambda v: fn(f"{SNN}.step_function")(v))
case(f"{SNN}.conv2d", "stride", bad_count)(
    lambda v: fn(f"{SNN}.conv2d")(np.ones((1, 4, 4, 2), np.float32), np.ones((3, 3, 2, 2), np.float32), stride=v))
case(f"{SNN}.conv2d", "kernel", wrong_feature)(
    lambda n: fn(f"{SNN}.conv2d")(np.ones((1, 4, 4, 4), np.float32), np.ones((3, 3, n, 2), np.float32)))
case(f"{SNN}.Conv2d", "out_features", bad_count)(
    lambda v: fn(f"{SNN}.Conv2d")(2, v, (3, 3), rngs=nnx.Rngs(0)))
case(f"{SNN}.Conv2d", "strides", bad_count)(
    lambda v: fn(f"{SNN}.Conv2d")(2, 2, (3, 3), strides=v, rngs=nnx.Rngs(0)))
case(f"{SNN}.SpikingMLP", "hidden", st.one_of(st.just(()), st.tuples(nonpositive_int)))(
    lambda v: fn(f"{SNN}.SpikingMLP")(4, C, hidden=v, rngs=nnx.Rngs(0)))
case(f"{SNN}.SpikingMLP", "num_steps", bad_count)(
    lambda v: fn(f"{SNN}.SpikingMLP")(4, C, hidden=(8,), num_steps=v, rngs=nnx.Rngs(0)))
case(f"{SNN}.SpikingMLP", "tau", bad_tau)(
    lambda v: fn(f"{SNN}.SpikingMLP")(4, C, hidden=(8,), tau=v, rngs=nnx.Rngs(0)))
for name in ("SpikingVGG11", "SpikingPreActResNet18"):
  f = f"{SNN}.{name}"
  case(f, "width", bad_count)(lambda v, f=f: fn(f)(3, C, width=v, rngs=nnx.Rngs(0)))
  case(f, "dropout_rate", bad_rate)(lambda v, f=f: fn(f)(3, C, width=2, dropout_rate=v, rngs=nnx.Rngs(0)))
  case(f, "encoder", bad_name)(lambda v, f=f: fn(f)(3, C, width=2, encoder=v, rngs=nnx.Rngs(0)))

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{SNN}.SpikingClassifier": "an abstract base class",
    f"{SNN}.ThroughTimeAux": "a NamedTuple of results",
    f"{SNN}.direct_encode": "the identity on any array (t is unused)",
}
