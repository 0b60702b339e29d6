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
    with jax.ensure_compile_time_eval():  # concrete even when first asked for inside a jit trace
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

# Cases for the arguments the declarations above leave out.
case(f"{SNN}.LIF", "reset", bad_name)(lambda v: fn(f"{SNN}.LIF")(reset=v))
case(f"{SNN}.LIF", "v_th", nonpositive)(lambda v: fn(f"{SNN}.LIF")(v_th=v))
case(f"{SNN}.LIF", "alpha", nonpositive)(lambda v: fn(f"{SNN}.LIF")(alpha=v))
case(f"{SNN}.LIFConfig", "tau", bad_tau)(lambda v: fn(f"{SNN}.LIFConfig")(tau=v))
case(f"{SNN}.LIFConfig", "reset", bad_name)(lambda v: fn(f"{SNN}.LIFConfig")(reset=v))
case(f"{SNN}.LIFConfig", "surrogate", bad_name)(lambda v: fn(f"{SNN}.LIFConfig")(surrogate=v))
case(f"{SNN}.lif_step", "v_th", st.sampled_from([math.inf, 1e39, 1e300]))(  # inf, or overflowing float32
    lambda v: fn(f"{SNN}.lif_step")(None, CURRENTS[0], v_th=v))
case(f"{SNN}.register_surrogate", "default_alpha", nonpositive)(
    lambda v: fn(f"{SNN}.register_surrogate")("bad_input_test", lambda x, a: x, default_alpha=v))
case(f"{SNN}.poisson_encode", "t", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: fn(f"{SNN}.poisson_encode")(KEY, H, v))
case(f"{SNN}.sltt_step_loss", "mse_target", st.sampled_from([math.nan, math.inf, -math.inf]))(
    lambda v: fn(f"{SNN}.sltt_step_loss")(logits=LOGITS, labels=LABELS, mse_target=v))
case(f"{SNN}.sltt_step_loss", "logits", st.sampled_from([(), (B,), (B, C, 2), (1, B, C)]))(
    lambda shape: fn(f"{SNN}.sltt_step_loss")(logits=np.ones(shape, np.float32), labels=LABELS))
case(f"{SNN}.through_time_loss", "loss_fn", st.one_of(st.integers(), st.text(max_size=4)))(
    lambda v: _through_time(loss_fn=v))
case(f"{SNN}.through_time_loss", "unroll", st.one_of(nonpositive_int, non_integral))(
    lambda v: _through_time(unroll=v))
bad_steps = st.one_of(
    st.lists(st.integers(T, 50), min_size=2, max_size=2),  # out of range
    st.lists(st.integers(-50, -1), min_size=2, max_size=2),  # negative
    st.sampled_from([[0, 0], [1], [0, 1, 2], [], np.array([True, False, True, True]), np.zeros(T, bool),
                     np.ones(T, bool), [0.0, 1.0], "01"]))
case(f"{SNN}.through_time_loss", "steps", bad_steps)(lambda v: _through_time(mode="sltt_k", k=2, steps=v))
case(f"{SNN}.through_time_loss", "steps", st.sampled_from([[0, 1], [2], np.array([True, True, False])]))(
    lambda v: _through_time(mode="sltt", steps=v))  # steps without mode='sltt_k'
case(f"{SNN}.spiking_loss", "steps", bad_steps)(
    lambda v: fn(f"{SNN}.spiking_loss")(_snn_mlp(), H, LABELS, mode="sltt_k", k=2, steps=v))
case(f"{SNN}.spiking_loss", "k", st.one_of(nonpositive_int, st.integers(T + 1, 100), non_integral))(
    lambda v: fn(f"{SNN}.spiking_loss")(_snn_mlp(), H, LABELS, key=KEY, mode="sltt_k", k=v))
case(f"{SNN}.spiking_loss", "lam_l", st.one_of(st.floats(min_value=1.000001), st.floats(max_value=-1e-6)))(
    lambda v: fn(f"{SNN}.spiking_loss")(_snn_mlp(), H, LABELS, lam_l=v))
for name in ("SpikingMLP", "SpikingVGG11", "SpikingPreActResNet18"):
  f = f"{SNN}.{name}"
  first = (4,) if name == "SpikingMLP" else (3,)
  kw = {"hidden": (8,)} if name == "SpikingMLP" else {"width": 2}
  for arg, strategy in (("reset", bad_name), ("surrogate", bad_name), ("v_th", nonpositive),
                        ("alpha", nonpositive), ("num_classes", bad_count)):
    if arg == "num_classes":
      case(f, arg, strategy)(lambda v, f=f, a=first, kw=kw: fn(f)(*a, v, **kw, rngs=nnx.Rngs(0)))
    else:
      case(f, arg, strategy)(lambda v, f=f, a=first, arg=arg, kw=kw: fn(f)(*a, C, **kw, **{arg: v},
                                                                          rngs=nnx.Rngs(0)))
case(f"{SNN}.SpikingMLP", "encoder", bad_name)(
    lambda v: fn(f"{SNN}.SpikingMLP")(4, C, hidden=(8,), encoder=v, rngs=nnx.Rngs(0)))
case(f"{SNN}.SpikingMLP", "dropout_rate", bad_rate)(
    lambda v: fn(f"{SNN}.SpikingMLP")(4, C, hidden=(8,), dropout_rate=v, rngs=nnx.Rngs(0)))


# --- clause specs ---------------------------------------------------------------------------------
def _empty_shaped(*shapes):
  """An empty-batch predicate: the output's arrays have these shapes."""
  return lambda out: [np.shape(o) for o in jax.tree.leaves(out)] == [tuple(sh) for sh in shapes]


_CURRENTS_BATCH_MAJOR = np.linspace(0.2, 1.6, B * T * 4, dtype=np.float32).reshape(B, T, 4)
_V = np.full((B, 4), 0.3, np.float32)
tau_range = st.one_of(st.floats(1.0, 1e300, exclude_min=True), st.just(math.inf))
v_th_range = st.floats(1e-300, 1e300)  # beyond float32's range: must raise naming v_th
alpha_range = st.floats(1e-4, 1e4)
_LIF = dict(tau=1.5, v_th=1.0, alpha=1.0)
_LIF_CLAUSES = dict(numbers=("tau", "v_th", "alpha"), ranges={"tau": tau_range, "v_th": v_th_range,
                                                              "alpha": alpha_range})


def _batch_major(name):
  """The multistep LIF with a batch-major ``currents`` (B, T, ...), so that clause *empty* empties the
  neurons (N = 0), not the time axis (T = 0 raises, see the cases)."""
  return lambda currents, **kw: fn(f"{SNN}.{name}")(jax.numpy.swapaxes(currents, 0, 1), **kw)


def _config_numbers(cfg):
  """What a LIF configuration computes with: the decay (finite also for tau = inf), V_th and alpha."""
  return np.array([cfg.lam, cfg.v_th, -1.0 if cfg.alpha is None else cfg.alpha])


def _built(name, **kw):
  """A model built abstractly (no initialiser runs): its hyperparameters and parameter count."""
  m = nnx.eval_shape(lambda: fn(f"{SNN}.{name}")(**kw, rngs=nnx.Rngs(0)))
  size = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nnx.state(m, nnx.Param)))
  return np.array([m.num_steps, m.dropout_rate, size, *_config_numbers(m.lif.config)], np.float64)


_MODEL_CACHE = {}


def _fresh_mlp():
  """A new SpikingMLP module from fixed arrays (spiking_loss writes state back into its model)."""
  if "split" not in _MODEL_CACHE:
    _MODEL_CACHE["split"] = nnx.split(_snn_mlp(), nnx.Param, ...)
  return nnx.merge(*_MODEL_CACHE["split"], copy=True)


def _one_step(graphdef, inputs):
  """Step 0 of the cached SpikingMLP through `step_function` (``graphdef=None``: the model's own)."""
  g, params, state = nnx.split(_snn_mlp(), nnx.Param, ...)
  step = fn(f"{SNN}.step_function")(g if graphdef is None else graphdef, train=False)
  return step(params, state, None, {"x": inputs, "masks": None, "key": None}, 0)[0]


_TT = dict(step_fn=_tt_step, params=W, state=None, inputs=H, labels=LABELS, num_steps=T, lam_l=0.05, unroll=1)
_STEPS = "a bool (T,) mask or step indices, not a floating input (cases cover bad ones)"
_TT_FREE = {"state": "non-trainable PyTree threaded through step_fn as it is; what it holds is step_fn's",
            "carry": "step_fn's own membrane PyTree, handed to its first step unchanged (None: zeros)",
            "loss_fn": "a user per-step loss callable (a case covers a non-callable one; the default loss is "
                       "covered here)",
            "steps": _STEPS}
_SL = dict(x=H, labels=LABELS, mode="bptt", lam_l=0.05, unroll=1)  # bptt: the quickest to compile
_SL_FREE = {"loss_fn": "a user per-step loss; its labels and result are its own business (the default "
                       "loss is covered)", "steps": _STEPS}
_T_STEP = {"t": "an int time step (Spec.numbers and a case cover it), not a floating input"}
_NEURON = ("tau", "v_th", "alpha", "num_steps", "dropout_rate", "num_classes")

SPECS += [
    Spec(f"{SNN}.spike", dict(x=CURRENTS[0] - 0.5, alpha=1.0), floats=("x",), jit=True, batch=("x",),
         empty=_empty_shaped((0, 4)), numbers=("alpha",)),
    Spec(f"{SNN}.surrogate_derivative", dict(x=CURRENTS[0] - 0.5, alpha=1.0, surrogate="triangle"),
         floats=("x",), jit=True, batch=("x",), empty=_empty_shaped((0, 4)), numbers=("alpha",),
         ranges={"alpha": alpha_range, "x": st.floats(-3e38, 3e38)}),
    Spec(f"{SNN}.surrogate_derivative", dict(x=CURRENTS[0] - 0.5, alpha=1e4, surrogate="rectangle"),
         ranges={"alpha": alpha_range, "x": st.floats(-3e38, 3e38)}),
    Spec(f"{SNN}.surrogate_derivative", dict(x=CURRENTS[0] - 0.5, alpha=1.0, surrogate="sigmoid"),
         floats=("x",), batch=("x",), empty=_empty_shaped((0, 4)),
         ranges={"alpha": alpha_range, "x": st.floats(-3e38, 3e38)}),
    Spec(f"{SNN}.register_surrogate",
         dict(name="policy_test_box", derivative=lambda x, a: jax.numpy.where(abs(x) <= 1 / a, a / 2, 0.0),
              default_alpha=2.0),
         call=lambda **kw: (fn(f"{SNN}.register_surrogate")(**kw),
                            fn(f"{SNN}.surrogate_derivative")(np.array([0.1, 0.7]), surrogate=kw["name"]))[1],
         numbers=("default_alpha",)),
    Spec(f"{SNN}.LIFConfig", _LIF, call=lambda **kw: _config_numbers(fn(f"{SNN}.LIFConfig")(**kw)),
         **_LIF_CLAUSES),
    Spec(f"{SNN}.LIF", _LIF, call=lambda **kw: _config_numbers(fn(f"{SNN}.LIF")(**kw).config), **_LIF_CLAUSES),
    Spec(f"{SNN}.lif_step", dict(_LIF, v=_V, current=CURRENTS[0]), floats=("v", "current"), jit=True,
         batch=("v", "current"), empty=_empty_shaped((0, 4), (0, 4)), **_LIF_CLAUSES),
    Spec(f"{SNN}.lif_multistep", dict(_LIF, currents=_CURRENTS_BATCH_MAJOR, v0=_V), call=_batch_major("lif_multistep"),
         floats=("currents", "v0"), jit=True, batch=("currents", "v0"), empty=_empty_shaped((T, 0, 4), (0, 4)),
         numbers=("tau", "v_th", "alpha")),  # ranges: the same LIFConfig and update as lif_step
    Spec(f"{SNN}.lif_multistep_pallas", dict(_LIF, currents=_CURRENTS_BATCH_MAJOR, v0=_V, block_size=16,
                                             interpret=True),
         call=_batch_major("lif_multistep_pallas"), floats=("currents", "v0"), jit=True, batch=("currents", "v0"),
         empty=_empty_shaped((T, 0, 4), (0, 4)), numbers=("tau", "v_th", "alpha", "block_size"),
         not_applicable={"interpret": "a mode switch (None: by backend); both modes compute the same values"}),
    Spec(f"{SNN}.poisson_encode", dict(key=KEY, x=H * 0.5, t=1), floats=("x",), jit=True, batch=("x",),
         empty=_empty_shaped((0, 4)), numbers=("t",), keys=("key",), not_applicable=_T_STEP),
    Spec(f"{SNN}.encode", dict(x=H * 0.5, t=1, encoder="poisson", key=KEY), floats=("x",), jit=True,
         batch=("x",), empty=_empty_shaped((0, 4)), numbers=("t",), keys=("key",), not_applicable=_T_STEP),
    Spec(f"{SNN}.encode", dict(x=H * 0.5, t=1, encoder="direct"), floats=("x",), jit=True, batch=("x",),
         empty=_empty_shaped((0, 4))),
    Spec(f"{SNN}.fixed_dropout_masks", dict(key=KEY, like=H, rate=0.5), numbers=("rate",), keys=("key",),
         not_applicable={"like": "only its shapes and dtypes are read"}),
    Spec(f"{SNN}.sample_steps", dict(key=KEY, num_steps=T, k=2),
         call=lambda **kw: np.asarray(fn(f"{SNN}.sample_steps")(**kw), np.float32),
         numbers=("num_steps", "k"), keys=("key",)),
    Spec(f"{SNN}.sltt_step_loss", dict(logits=LOGITS, labels=LABELS, lam_l=0.05, mse_target=1.0),
         floats=("logits",), labels=("labels",), jit=True, batch=("logits", "labels"),
         numbers=("lam_l", "mse_target")),
    Spec(f"{SNN}.sltt_step_loss", dict(logits=LOGITS, labels=LABELS, lam_l=0.0),  # CE alone: -inf logits
         floats=("logits",), jit=True, batch=("logits", "labels")),
    Spec(f"{SNN}.through_time_loss", _TT, floats=("params", "inputs"), labels=("labels",), jit=True,
         batch=("inputs", "labels"), numbers=("num_steps", "lam_l", "unroll"), not_applicable=_TT_FREE),
    Spec(f"{SNN}.through_time_loss", dict(_TT, mode="sltt_k", k=2, key=KEY), numbers=("k",), keys=("key",)),
    Spec(f"{SNN}.spiking_loss", _SL, call=lambda **kw: fn(f"{SNN}.spiking_loss")(_fresh_mlp(), **kw),
         floats=("x",), labels=("labels",), jit=True, batch=("x", "labels"), numbers=("lam_l", "unroll"),
         not_applicable=_SL_FREE),
    Spec(f"{SNN}.spiking_loss", dict(_SL, mode="sltt_k", k=2, key=KEY),
         call=lambda **kw: fn(f"{SNN}.spiking_loss")(_fresh_mlp(), **kw), keys=("key",)),  # k: a case
    Spec(f"{SNN}.step_function", dict(graphdef=None, inputs=H), call=_one_step, floats=("inputs",), jit=True,
         batch=("inputs",)),
    Spec(f"{SNN}.SpikingMLP", dict(in_features=4, num_classes=C, hidden=(8,), num_steps=T, dropout_rate=0.5,
                                   **_LIF),
         call=lambda **kw: _built("SpikingMLP", **kw), numbers=("in_features", *_NEURON)),
    Spec(f"{SNN}.SpikingMLP", dict(x=H), call=lambda x: _snn_mlp()(x), floats=("x",), jit=True, batch=("x",)),
]
for _name in ("SpikingVGG11", "SpikingPreActResNet18"):  # in_channels, num_classes, alpha: cases
  SPECS.append(Spec(f"{SNN}.{_name}", dict(in_channels=3, num_classes=C, width=2, num_steps=T, dropout_rate=0.5,
                                           **_LIF),
                    call=lambda _n=_name, **kw: _built(_n, **kw),
                    numbers=("width", "num_steps", "dropout_rate", "tau", "v_th")))
  case(f"{SNN}.{_name}", "in_channels", bad_count)(
      lambda v, _n=_name: fn(f"{SNN}.{_n}")(v, C, width=2, rngs=nnx.Rngs(0)))

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{SNN}.SpikingClassifier": "an abstract base class",
    f"{SNN}.ThroughTimeAux": "a NamedTuple of results",
    f"{SNN}.direct_encode": "the identity on any array (t is unused)",
}
