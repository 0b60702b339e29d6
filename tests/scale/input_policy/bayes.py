"""Input-policy declarations for `jaxdyn.bayes` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import math

import jax
import numpy as np
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
