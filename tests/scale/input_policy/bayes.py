"""Input-policy declarations for `jaxdyn.bayes` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import optax
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

BAY = "jaxdyn.bayes"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

# --- bayes ----------------------------------------------------------------------------------------
bad_density = st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.floats(min_value=1.000001),
                        st.just(math.nan))
bad_sigma_init = st.one_of(st.tuples(st.floats(max_value=0.0, allow_infinity=False), st.floats(0, 1)),
                           st.tuples(st.floats(0.001, 1), st.floats(max_value=-1e-6, allow_infinity=False)),
                           st.tuples(st.floats(0.001, 1)))
for name in ("GaussianDense", "GaussianConv"):
  f = f"{BAY}.{name}"
  args = (4, 3) if name == "GaussianDense" else (4, 3, (3,))
  case(f, "density", bad_density)(lambda v, f=f, a=args: fn(f)(*a, density=v, rngs=nnx.Rngs(0)))
  case(f, "mu_init_std", nonpositive)(lambda v, f=f, a=args: fn(f)(*a, mu_init_std=v, rngs=nnx.Rngs(0)))
  case(f, "sigma_init", bad_sigma_init)(lambda v, f=f, a=args: fn(f)(*a, sigma_init=v, rngs=nnx.Rngs(0)))
  case(f, "in_features", bad_count)(lambda v, f=f, a=args: fn(f)(v, *a[1:], rngs=nnx.Rngs(0)))
case(f"{BAY}.GaussianConv", "kernel_size", st.one_of(st.just(()), st.tuples(nonpositive_int),
                                                    st.lists(st.integers(1, 3), min_size=4, max_size=6)))(
    lambda v: fn(f"{BAY}.GaussianConv")(4, 3, v, rngs=nnx.Rngs(0)))
case(f"{BAY}.GaussianConv", "strides", st.one_of(nonpositive_int, st.tuples(st.integers(1, 2), st.integers(1, 2))))(
    lambda v: fn(f"{BAY}.GaussianConv")(4, 3, (3,), strides=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesMLP", "hidden", st.one_of(st.just(()), st.tuples(nonpositive_int)))(
    lambda v: fn(f"{BAY}.BayesMLP")(4, C, hidden=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesMLP", "density", bad_density)(
    lambda v: fn(f"{BAY}.BayesMLP")(4, C, hidden=(8,), density=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesCNN", "spatial_dims", st.integers().filter(lambda d: d not in (1, 2)))(
    lambda v: fn(f"{BAY}.BayesCNN")(1, C, spatial_dims=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesCNN", "channels", st.one_of(st.just(()), st.tuples(nonpositive_int)))(
    lambda v: fn(f"{BAY}.BayesCNN")(1, C, channels=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesResNet18", "width", bad_count)(lambda v: fn(f"{BAY}.BayesResNet18")(3, C, width=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesResNet18", "stage_sizes", st.sampled_from([(), (0,), (1, -1), (1.5,), (True,)]))(
    lambda v: fn(f"{BAY}.BayesResNet18")(3, C, width=2, stage_sizes=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesResNet18", "density", bad_density)(
    lambda v: fn(f"{BAY}.BayesResNet18")(3, C, width=2, density=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.LayerCost", "num_active", st.one_of(st.integers(max_value=-1), st.integers(11, 10**6)))(
    lambda v: fn(f"{BAY}.LayerCost")("dense", 10, v))
case(f"{BAY}.LayerCost", "kind", bad_name)(lambda v: fn(f"{BAY}.LayerCost")(v, 10, 5))
case(f"{BAY}.LayerCost", "positions", nonpositive_int)(lambda v: fn(f"{BAY}.LayerCost")("conv", 10, 5, v))
MU = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
RHO = np.full((3, 4), -3.0, np.float32)
wrong_shape = st.tuples(st.integers(1, 5), st.integers(1, 5)).filter(lambda s: s != (3, 4))
case(f"{BAY}.active_mean", "rho", wrong_shape)(lambda s: fn(f"{BAY}.active_mean")(MU, np.ones(s, np.float32)))
case(f"{BAY}.drop_and_grow", "criterion", bad_name)(
    lambda v: fn(f"{BAY}.drop_and_grow")(MU, RHO, MU, RHO != 0, 0.2, criterion=v))
case(f"{BAY}.drop_and_grow", "grad_mu", wrong_shape)(
    lambda s: fn(f"{BAY}.drop_and_grow")(MU, RHO, np.ones(s, np.float32), RHO != 0, 0.2))
case(f"{BAY}.drop_and_grow", "fraction", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0),
                                                  st.just(math.nan)))(
    lambda v: fn(f"{BAY}.drop_and_grow")(MU, RHO, MU, RHO != 0, v))
case(f"{BAY}.folded_normal_moments", "sigma", st.floats(-1e30, -1e-6) | st.just(math.nan))(
    lambda v: fn(f"{BAY}.folded_normal_moments")(MU, np.full((3, 4), v, np.float32)))
case(f"{BAY}.removal_score", "criterion", bad_name)(
    lambda v: fn(f"{BAY}.removal_score")(MU, np.ones((3, 4), np.float32), criterion=v))
case(f"{BAY}.removal_score", "sigma", st.floats(-1e30, -1e-6) | st.just(math.nan))(
    lambda v: fn(f"{BAY}.removal_score")(MU, np.full((3, 4), v, np.float32)))
case(f"{BAY}.gaussian_kl", "prior_std", nonpositive)(
    lambda v: fn(f"{BAY}.gaussian_kl")(MU, np.ones((3, 4), np.float32), prior_std=v))
case(f"{BAY}.gaussian_kl", "sigma", st.floats(-1e30, -1e-6) | st.just(math.nan))(
    lambda v: fn(f"{BAY}.gaussian_kl")(MU, np.full((3, 4), v, np.float32), prior_std=1.0))
case(f"{BAY}.gaussian_kl", "mask", wrong_shape.filter(lambda s: not (s[0] in (1, 3) and s[1] in (1, 4))))(
    lambda s: fn(f"{BAY}.gaussian_kl")(MU, np.ones((3, 4), np.float32), prior_std=1.0, mask=np.ones(s, bool)))
case(f"{BAY}.rho_from_std", "sigma", st.floats(-1e30, 0.0) | st.just(math.nan))(
    lambda v: fn(f"{BAY}.rho_from_std")(np.full((3,), v, np.float32)))
case(f"{BAY}.posterior_std", "rho", st.sampled_from([np.int32, np.bool_, np.uint8]))(
    lambda d: fn(f"{BAY}.posterior_std")(np.ones((3,), d)))
case(f"{BAY}.kl_warmup", "steps_per_epoch", bad_count)(
    lambda v: fn(f"{BAY}.kl_warmup")(0, steps_per_epoch=v, num_epochs=2))
case(f"{BAY}.kl_warmup", "num_epochs", bad_count)(
    lambda v: fn(f"{BAY}.kl_warmup")(0, steps_per_epoch=2, num_epochs=v))
case(f"{BAY}.random_mask", "density", bad_density)(lambda v: fn(f"{BAY}.random_mask")(KEY, (3, 4), v))
case(f"{BAY}.random_mask", "shape", st.tuples(st.integers(-5, 0), st.integers(1, 3)))(
    lambda v: fn(f"{BAY}.random_mask")(KEY, v, 0.5))
_BAYES_MLP = {}


def _bayes_mlp():
  if "m" not in _BAYES_MLP:
    with jax.ensure_compile_time_eval():  # concrete even when first asked for inside a jit trace
      _BAYES_MLP["m"] = fn(f"{BAY}.BayesMLP")(4, C, hidden=(8,), density=0.5, rngs=nnx.Rngs(0))
  return _BAYES_MLP["m"]


case(f"{BAY}.model_kl", "prior_std", nonpositive)(lambda v: fn(f"{BAY}.model_kl")(_bayes_mlp(), prior_std=v))
case(f"{BAY}.model_kl", "model", st.sampled_from(["mlp", None, 3]))(
    lambda v: fn(f"{BAY}.model_kl")(v, prior_std=1.0))
case(f"{BAY}.layer_costs", "model", st.sampled_from([None, 3, "mlp"]))(
    lambda v: fn(f"{BAY}.layer_costs")(v, H))
case(f"{BAY}.layer_costs", "example_input", wrong_feature)(
    lambda n: fn(f"{BAY}.layer_costs")(_bayes_mlp(), np.ones((B, n), np.float32)))
case(f"{BAY}.mc_predictive", "num_samples", bad_count)(
    lambda v: fn(f"{BAY}.mc_predictive")(lambda k, x: x, H, key=KEY, num_samples=v))
case(f"{BAY}.mc_predictive", "key", bad_key)(
    lambda v: fn(f"{BAY}.mc_predictive")(lambda k, x: x, H, key=v, num_samples=2))
for name in ("ssvi", "ssvi_sgd"):
  f = f"{BAY}.{name}"
  first = (lambda: (__import__("optax").sgd(0.1),)) if name == "ssvi" else (lambda: (0.1,))
  case(f, "total_steps", bad_count)(lambda v, f=f, a=first: fn(f)(*a(), total_steps=v))
  case(f, "update_every", bad_count)(lambda v, f=f, a=first: fn(f)(*a(), total_steps=100, update_every=v))
  case(f, "drop_fraction", st.one_of(st.floats(max_value=0.0), st.floats(min_value=0.500001), st.just(math.nan)))(
      lambda v, f=f, a=first: fn(f)(*a(), total_steps=100, drop_fraction=v))
  case(f, "criterion", bad_name)(lambda v, f=f, a=first: fn(f)(*a(), total_steps=100, criterion=v))
  case(f, "end_step", st.one_of(st.integers(max_value=-1), st.integers(101, 10**6)))(
      lambda v, f=f, a=first: fn(f)(*a(), total_steps=100, end_step=v))
case(f"{BAY}.ssvi", "inner", st.one_of(st.integers(), st.none(), st.text(max_size=3)))(
    lambda v: fn(f"{BAY}.ssvi")(v, total_steps=100))
case(f"{BAY}.ssvi_sgd", "weight_decay", negative)(lambda v: fn(f"{BAY}.ssvi_sgd")(0.1, total_steps=100, weight_decay=v))
case(f"{BAY}.ssvi_sgd", "momentum", bad_rate)(lambda v: fn(f"{BAY}.ssvi_sgd")(0.1, total_steps=100, momentum=v))
case(f"{BAY}.TopologySchedule", "drop_fraction", st.one_of(st.floats(max_value=0.0), st.floats(min_value=0.500001),
                                                          st.just(math.nan)))(
    lambda v: fn(f"{BAY}.TopologySchedule")(10, 100, v))
case(f"{BAY}.TopologySchedule", "update_every", bad_count)(lambda v: fn(f"{BAY}.TopologySchedule")(v, 100))
case(f"{BAY}.topology_update_count", "update_every", bad_count)(
    lambda v: fn(f"{BAY}.topology_update_count")(100, update_every=v, end_step=50))
case(f"{BAY}.topology_update_count", "num_steps", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: fn(f"{BAY}.topology_update_count")(v, update_every=10, end_step=50))
_COSTS = [("dense", 10, 5)]
case(f"{BAY}.training_flops", "num_steps", bad_count)(
    lambda v: fn(f"{BAY}.training_flops")([fn(f"{BAY}.LayerCost")(*_COSTS[0])], num_steps=v, batch_size=8))
case(f"{BAY}.training_flops", "batch_size", bad_count)(
    lambda v: fn(f"{BAY}.training_flops")([fn(f"{BAY}.LayerCost")(*_COSTS[0])], num_steps=10, batch_size=v))
case(f"{BAY}.training_flops", "topology_steps", st.one_of(st.integers(max_value=-1), st.integers(11, 10**6)))(
    lambda v: fn(f"{BAY}.training_flops")([fn(f"{BAY}.LayerCost")(*_COSTS[0])], num_steps=10, batch_size=8,
                                           topology_steps=v))
case(f"{BAY}.training_flops", "layers", st.one_of(st.just([]), st.lists(st.integers(), min_size=1, max_size=3)))(
    lambda v: fn(f"{BAY}.training_flops")(v, num_steps=10, batch_size=8))

case(f"{BAY}.random_mask", "key", bad_key)(lambda v: fn(f"{BAY}.random_mask")(v, (3, 4), 0.5))

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{BAY}.SSVIState": "a NamedTuple of optimizer state",
}

# --- cases added with the specs -------------------------------------------------------------------
bad_present_key = st.sampled_from(["key", 0, 1.5, (0, 1), np.zeros(2, np.float32)])  # None is valid here
case(f"{BAY}.GaussianDense", "key", bad_present_key)(
    lambda v: fn(f"{BAY}.GaussianDense")(4, 3, rngs=nnx.Rngs(0))(H, key=v))
case(f"{BAY}.GaussianConv", "key", bad_present_key)(
    lambda v: fn(f"{BAY}.GaussianConv")(4, 3, (3,), rngs=nnx.Rngs(0))(np.ones((B, 5, 4), np.float32), key=v))
case(f"{BAY}.GaussianDense", "x", wrong_feature)(
    lambda n: fn(f"{BAY}.GaussianDense")(4, 3, rngs=nnx.Rngs(0))(np.ones((B, n), np.float32)))
case(f"{BAY}.GaussianDense", "sampling", bad_name)(
    lambda v: fn(f"{BAY}.GaussianDense")(4, 3, rngs=nnx.Rngs(0))(H, key=KEY, sampling=v))
bad_padding = st.one_of(bad_name.filter(lambda s: s.upper() not in ("SAME", "VALID", "SAME_LOWER")),
                        st.just(((1, 1), (1, 1))), st.just(((1, 2, 3),)))
case(f"{BAY}.GaussianConv", "padding", bad_padding)(
    lambda v: fn(f"{BAY}.GaussianConv")(4, 3, (3,), padding=v, rngs=nnx.Rngs(0)))
for name, args in (("BayesMLP", (4, C)), ("BayesCNN", (1, C)), ("BayesResNet18", (3, C))):
  f = f"{BAY}.{name}"
  kw = ({"hidden": (8,)} if name == "BayesMLP" else {"width": 2, "stage_sizes": (1, 1)} if name == "BayesResNet18"
        else {"channels": (2,)})
  case(f, "mu_init_std", nonpositive)(lambda v, f=f, a=args, kw=kw: fn(f)(*a, mu_init_std=v, rngs=nnx.Rngs(0), **kw))
  case(f, "sigma_init", bad_sigma_init)(lambda v, f=f, a=args, kw=kw: fn(f)(*a, sigma_init=v, rngs=nnx.Rngs(0), **kw))
  case(f, "num_classes", bad_count)(lambda v, f=f, a=args, kw=kw: fn(f)(a[0], v, rngs=nnx.Rngs(0), **kw))
for name in ("BayesCNN", "BayesResNet18"):
  f = f"{BAY}.{name}"
  kw = {"width": 2, "stage_sizes": (1, 1)} if name == "BayesResNet18" else {"channels": (2,)}
  case(f, "in_channels", bad_count)(lambda v, f=f, kw=kw: fn(f)(v, C, rngs=nnx.Rngs(0), **kw))
case(f"{BAY}.BayesCNN", "hidden", bad_count)(lambda v: fn(f"{BAY}.BayesCNN")(1, C, hidden=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.kl_warmup", "step", st.integers(max_value=-1) | st.floats(0, 100).map(np.float32))(
    lambda v: fn(f"{BAY}.kl_warmup")(v, steps_per_epoch=10, num_epochs=4))
case(f"{BAY}.mc_predictive", "apply_fn", st.sampled_from([None, 3, "f", (1, 2)]))(
    lambda v: fn(f"{BAY}.mc_predictive")(v, H, key=KEY, num_samples=2))
for name in ("ssvi", "ssvi_sgd"):
  f = f"{BAY}.{name}"
  first = (lambda: (optax.sgd(0.1),)) if name == "ssvi" else (lambda: (0.1,))
  for arg, same in (("mu_name", "kernel_rho"), ("rho_name", "kernel_mu")):  # same: the other's default
    case(f, arg, st.sampled_from([None, 3, "", b"kernel_mu", same]))(
        lambda v, f=f, a=first, arg=arg: fn(f)(*a(), total_steps=100, **{arg: v}))
case(f"{BAY}.TopologySchedule", "end_step", st.one_of(nonpositive_int, non_integral))(
    lambda v: fn(f"{BAY}.TopologySchedule")(10, v))


# --- clause specs ---------------------------------------------------------------------------------
SIGMA = np.full((3, 4), 0.5, np.float32)
ACTIVE_RHO = np.where(np.arange(12).reshape(3, 4) % 3, -3.0, 0.0).astype(np.float32)  # a third inactive
X_CONV = np.ones((B, 5, 2), np.float32)
KERNEL_MU = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)  # a GaussianDense(4, 3) kernel
KERNEL_RHO = np.full((4, 3), -3.0, np.float32)
_LAYERS = {}


def _cached(name, build):
  """One module per name; each call gets a fresh copy (nnx.merge), so no call changes the next."""
  if name not in _LAYERS:
    with jax.ensure_compile_time_eval():  # concrete even when first asked for inside a jit trace
      _LAYERS[name] = nnx.split(build())
  return nnx.merge(*_LAYERS[name], copy=True)


_JITTED = {}


def _jitted(name, build, call):
  """``x -> call(module, x)`` jitted once per name (one compile per session): the module is built
  eagerly, outside the trace, and merged fresh inside it."""
  if name not in _JITTED:
    _cached(name, build)
    graphdef, state = _LAYERS[name]
    _JITTED[name] = (jax.jit(lambda state, x: call(nnx.merge(graphdef, state, copy=True), x)), state)
  f, state = _JITTED[name]
  return lambda x: f(state, x)


_MC = jax.jit(lambda x: fn(f"{BAY}.mc_predictive")(_mc_apply, x, key=KEY, num_samples=3))


def _dense():
  return _cached("dense", lambda: fn(f"{BAY}.GaussianDense")(4, 3, density=0.5, rngs=nnx.Rngs(0)))


def _build_conv():
  return fn(f"{BAY}.GaussianConv")(2, 3, (3,), density=0.5, use_bias=True, rngs=nnx.Rngs(0))


_MODELS = {
    "BayesMLP": (lambda: fn(f"{BAY}.BayesMLP")(4, C, hidden=(8,), density=0.5, rngs=nnx.Rngs(0)), H),
    "BayesCNN": (lambda: fn(f"{BAY}.BayesCNN")(1, C, channels=(2,), hidden=4, density=0.5, rngs=nnx.Rngs(0)),
                 np.ones((B, 8), np.float32)),
    "BayesResNet18": (lambda: fn(f"{BAY}.BayesResNet18")(3, C, width=2, stage_sizes=(1, 1), density=0.5,
                                                         rngs=nnx.Rngs(0)),
                      np.ones((2, 4, 4, 3), np.float32)),
}


def _model_kl(kernel_mu, kernel_rho, prior_std):
  _dense()
  graphdef, state = _LAYERS["dense"]
  state = jax.tree.map(lambda a: a, state)  # a copy whose kernels are the (possibly traced) inputs
  state["kernel_mu"] = state["kernel_mu"].replace(kernel_mu)
  state["kernel_rho"] = state["kernel_rho"].replace(kernel_rho)
  return fn(f"{BAY}.model_kl")(nnx.merge(graphdef, state), prior_std=prior_std)


def _mc_apply(x, k):
  return x @ W + 0.1 * jax.random.normal(k, (x.shape[0], C))


def _floats(*values):
  return np.asarray(values, np.float64)


_PARAMS = {"d": {"kernel_mu": MU * (ACTIVE_RHO != 0), "kernel_rho": ACTIVE_RHO, "bias": np.zeros(4, np.float32)}}


def _ssvi_state(tx):
  """The schedule a transform records at init, as floats (the types clause compares floats)."""
  state = tx.init(_PARAMS)
  return _floats(state.topology_every, state.topology_end_step, *np.asarray(state.masks[0]).ravel())


_EMPTY_OUT = lambda out: all(np.size(x) == 0 for x in jax.tree.leaves(out))  # noqa: E731
_SCALE = st.floats(1e-30, 1e30)
_SSVI = dict(total_steps=10, update_every=2, drop_fraction=0.15, end_step=8)

SPECS += [
    # KL and the warm-up.
    Spec(f"{BAY}.gaussian_kl", dict(mu=MU, sigma=SIGMA, prior_std=1.0), floats=("mu", "sigma"), jit=True,
         batch=("mu", "sigma"), empty=0.0, numbers=("prior_std",),
         not_applicable={"mask": "a boolean mask: no non-finite values; its shape is a Case"}),
    Spec(f"{BAY}.gaussian_kl", dict(mu=MU, sigma=SIGMA, prior_std=1.0, scale=1.0),  # KL is scale-invariant
         call=lambda mu, sigma, prior_std, scale: fn(f"{BAY}.gaussian_kl")(
             mu * np.float32(scale), sigma * np.float32(scale), prior_std=prior_std * scale),
         ranges={"scale": _SCALE}),
    Spec(f"{BAY}.kl_warmup", dict(step=np.arange(0, 40, 7), steps_per_epoch=10, num_epochs=4),
         numbers=("steps_per_epoch", "num_epochs"),
         ranges={"num_epochs": st.integers(1, 2**62), "steps_per_epoch": st.integers(1, 2**62)},
         not_applicable={"step": "integer iteration numbers (no NaN); a negative or float step is a Case, "
                                 "and clips to weight 0 under jit (tests/bayes)"}),
    Spec(f"{BAY}.model_kl", dict(kernel_mu=KERNEL_MU, kernel_rho=KERNEL_RHO, prior_std=1.0), call=_model_kl,
         floats=("kernel_mu", "kernel_rho"), jit=True, numbers=("prior_std",),
         not_applicable={"batch": "a model's parameters: no batch axis"}),
    # Scores.
    Spec(f"{BAY}.folded_normal_moments", dict(mu=MU, sigma=SIGMA), floats=("mu", "sigma"), jit=True,
         batch=("mu", "sigma"), empty=_EMPTY_OUT),
    Spec(f"{BAY}.folded_normal_moments", dict(mu=MU, sigma=SIGMA, scale=1.0),  # the variance is ~ sigma^2
         call=lambda mu, sigma, scale: fn(f"{BAY}.folded_normal_moments")(mu * np.float32(scale),
                                                                            sigma * np.float32(scale)),
         ranges={"scale": st.floats(1e-15, 1e15)}),
    *[Spec(f"{BAY}.removal_score", dict(mu=MU, sigma=SIGMA, criterion=c, scale=1.0),
           call=lambda mu, sigma, criterion, scale: fn(f"{BAY}.removal_score")(
               mu * np.float32(scale), sigma * np.float32(scale), criterion=criterion),
           floats=("mu", "sigma"), jit=True, batch=("mu", "sigma"), empty=_EMPTY_OUT, ranges={"scale": _SCALE})
      for c in ("snr_abs", "abs_mu", "abs_mu_over_sigma", "mean_abs")],
    # Layer helpers.
    Spec(f"{BAY}.rho_from_std", dict(sigma=SIGMA), floats=("sigma",), jit=True, batch=("sigma",), empty=_EMPTY_OUT,
         ranges={"sigma": st.floats(1e-38, 1e30).map(lambda v: np.full(3, v, np.float32))}),
    Spec(f"{BAY}.posterior_std", dict(rho=ACTIVE_RHO), floats=("rho",), jit=True, batch=("rho",), empty=_EMPTY_OUT,
         ranges={"rho": st.floats(-1e30, 1e30).map(lambda v: np.full(3, v, np.float32))}),
    Spec(f"{BAY}.active_mean", dict(mu=MU, rho=ACTIVE_RHO), floats=("mu", "rho"), jit=True, batch=("mu", "rho"),
         empty=_EMPTY_OUT),
    Spec(f"{BAY}.random_mask", dict(key=KEY, shape=(3, 4), density=0.5),
         call=lambda **kw: fn(f"{BAY}.random_mask")(**kw).astype(np.float32), numbers=("density",), keys=("key",)),
    Spec(f"{BAY}.drop_and_grow", dict(mu=MU, rho=ACTIVE_RHO, grad_mu=MU[::-1].copy(), mask=ACTIVE_RHO != 0,
                                      fraction=0.6),
         floats=("mu", "rho", "grad_mu", "fraction"), jit=True, batch=("mu", "rho", "grad_mu", "mask"),
         empty=_EMPTY_OUT, numbers=("fraction",),
         not_applicable={"mask": "a boolean mask: no non-finite values; its shape is checked (like grad_mu's Case)"}),
    # Layers: construction, then the forward pass.
    Spec(f"{BAY}.GaussianDense", dict(in_features=4, out_features=3, density=0.5, mu_init_std=0.01),
         call=lambda **kw: fn(f"{BAY}.GaussianDense")(**kw, rngs=nnx.Rngs(0)),
         numbers=("in_features", "out_features", "density", "mu_init_std")),
    Spec(f"{BAY}.GaussianDense", dict(x=H, key=KEY), call=lambda x, key: _dense()(x, key=key), floats=("x",),
         jit=True, batch=("x",), empty=lambda out: np.shape(out) == (0, 3)),
    Spec(f"{BAY}.GaussianConv", dict(in_features=2, out_features=3, kernel_size=(3,), strides=2, density=0.5,
                                     mu_init_std=0.01),
         call=lambda **kw: fn(f"{BAY}.GaussianConv")(**kw, rngs=nnx.Rngs(0)),
         numbers=("in_features", "out_features", "strides", "density", "mu_init_std")),
    Spec(f"{BAY}.GaussianConv", dict(x=X_CONV),  # the call is jitted (one compile)
         call=lambda x: _jitted("conv", _build_conv, lambda m, x: m(x, key=KEY))(x),
         floats=("x",), batch=("x",), empty=lambda out: np.shape(out) == (0, 5, 3)),
    Spec(f"{BAY}.model_kl", dict(prior_std=0.5),
         call=lambda prior_std: _model_kl(KERNEL_MU, KERNEL_RHO, prior_std),
         ranges={"prior_std": st.floats(1e-3, 1e30)}),
    # Models: construction (NumPy numbers), then a training-mode forward pass (key required).
    Spec(f"{BAY}.BayesMLP", dict(in_features=4, num_classes=C, hidden=(8,), density=0.5),
         call=lambda **kw: fn(f"{BAY}.BayesMLP")(**kw, rngs=nnx.Rngs(0)),
         numbers=("in_features", "num_classes", "density")),
    Spec(f"{BAY}.BayesCNN", dict(in_channels=1, num_classes=C, spatial_dims=1, channels=(2,), hidden=4, density=0.5),
         call=lambda **kw: fn(f"{BAY}.BayesCNN")(**kw, rngs=nnx.Rngs(0)),
         numbers=("spatial_dims", "hidden", "density")),
    Spec(f"{BAY}.BayesResNet18", dict(in_channels=3, num_classes=C, width=2, density=0.5, mu_init_std=0.01),
         call=lambda **kw: fn(f"{BAY}.BayesResNet18")(**kw, rngs=nnx.Rngs(0)),
         numbers=("width", "density", "mu_init_std"), not_applicable={"stage_sizes": "sizes, checked by a Case"}),
    *[Spec(f"{BAY}.{name}", dict(x=x, key=KEY),
           call=lambda x, key, name=name, build=build: _cached(name, build)(x, train=True, key=key),
           batch=("x",), keys=("key",))  # both checked before any computation
      for name, (build, x) in _MODELS.items()],
    *[Spec(f"{BAY}.{name}", dict(x=x),  # the call is jitted (one compile), in training mode
           call=lambda x, name=name, build=build: _jitted(name, build, lambda m, x: m(x, train=True, key=KEY))(x),
           floats=("x",), not_applicable={"batch": "the empty batch is the eager Spec's"})
      for name, (build, x) in _MODELS.items() if name != "BayesResNet18"],  # its compile alone takes a minute
    # Prediction and FLOP accounting.
    Spec(f"{BAY}.mc_predictive", dict(apply_fn=_mc_apply, x=H, key=KEY, num_samples=3), batch=("x",),
         empty=lambda out: np.shape(out) == (0, C), numbers=("num_samples",), keys=("key",),
         not_applicable={"apply_fn": "any callable (x, key) -> logits; a non-callable is a Case"}),
    Spec(f"{BAY}.mc_predictive", dict(x=H), call=_MC,  # the call is jitted (one compile)
         floats=("x",), ranges={"x": st.floats(-1e30, 1e30).map(lambda v: np.full((B, 4), v, np.float32))},
         not_applicable={"batch": "the empty batch is the eager Spec's"}),
    Spec(f"{BAY}.LayerCost", dict(kind="conv", num_weights=10, num_active=5, positions=3),
         call=lambda **kw: _floats(*dataclasses.astuple(fn(f"{BAY}.LayerCost")(**kw))[1:]),
         numbers=("num_weights", "num_active", "positions")),
    Spec(f"{BAY}.layer_costs", dict(example_input=H),
         call=lambda example_input: _floats(*[c.num_active for c in fn(f"{BAY}.layer_costs")(
             _cached("BayesMLP", _MODELS["BayesMLP"][0]), example_input)]),
         not_applicable={"example_input": "only its shape and dtype are read (jax.eval_shape): its values never "
                                          "enter the result; a wrong shape is a Case"}),
    Spec(f"{BAY}.training_flops", dict(layers=[fn(f"{BAY}.LayerCost")("dense", 10, 5)], num_steps=10, batch_size=8,
                                       topology_steps=2),
         numbers=("num_steps", "batch_size", "topology_steps"), ranges={"num_steps": st.integers(2, 2**62)}),
    Spec(f"{BAY}.topology_update_count", dict(num_steps=1000, update_every=100, end_step=750),
         call=lambda **kw: float(fn(f"{BAY}.topology_update_count")(**kw)),
         numbers=("num_steps", "update_every", "end_step")),
    # SSVI.
    Spec(f"{BAY}.TopologySchedule", dict(update_every=10, end_step=100, drop_fraction=0.15),
         call=lambda **kw: _floats(fn(f"{BAY}.TopologySchedule")(**kw).fraction(30),
                                   fn(f"{BAY}.TopologySchedule")(**kw).is_update_step(30)),
         numbers=("update_every", "end_step", "drop_fraction")),
    Spec(f"{BAY}.ssvi", dict(_SSVI), call=lambda **kw: _ssvi_state(fn(f"{BAY}.ssvi")(optax.sgd(0.1), **kw)),
         numbers=tuple(_SSVI)),
    Spec(f"{BAY}.ssvi_sgd", dict(_SSVI, learning_rate=0.05, momentum=0.9, weight_decay=5e-4),
         call=lambda **kw: _ssvi_state(fn(f"{BAY}.ssvi_sgd")(**kw)),
         numbers=(*_SSVI, "learning_rate", "momentum", "weight_decay")),
]
