"""Every public jaxdyn function, driven with invalid hyperparameters and shapes by hypothesis.

Each case changes one argument of an otherwise valid call to an invalid value and requires a
ValueError or TypeError whose message names that argument: never a crash inside XLA, never a silent
NaN. ``test_every_public_callable_is_covered`` keeps the table complete as families grow.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxdyn

B, C = 8, 5
LOGITS = np.asarray(jax.random.normal(jax.random.key(0), (B, C)))
LABELS = np.arange(B, dtype=np.int32) % C
ONEHOT = np.eye(C, dtype=np.float32)[LABELS]
KEY = jax.random.key(0)
EXAMPLES = 8
MIN_EXAMPLES = 3  # per case, asserted; small finite strategies may not reach EXAMPLES distinct values

# Invalid-value strategies.
nonpositive_int = st.integers(max_value=0)
non_integral = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x))
bad_count = st.one_of(nonpositive_int, non_integral, st.booleans())
bad_rate = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0), st.just(math.nan))
negative = st.one_of(st.floats(max_value=-1e-6, allow_infinity=False), st.just(math.nan))
nonpositive = st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.just(math.nan))
bad_label_value = st.one_of(st.integers(min_value=C, max_value=10**6), st.integers(max_value=-1, min_value=-10**6))
wrong_batch = st.integers(1, 3 * B).filter(lambda n: n != B)
bad_key = st.sampled_from([None, "key", 0, 1.5, (0, 1), np.zeros(2, np.float32)])
# Not a valid value of any name-valued argument below (surrogates, resets, encoders, modes, criteria,
# methods, kinds).
VALID_NAMES = {"triangle", "rectangle", "sigmoid", "soft", "hard", "direct", "poisson", "sltt", "sltt_k", "bptt",
               "snr_abs", "abs_mu", "abs_mu_over_sigma", "mean_abs", "exact", "slq", "auto", "discrete",
               "scalar", "vector", "dense", "conv", "crop_flip", "flip"}
bad_name = st.text(max_size=8).filter(lambda s: s not in VALID_NAMES)


def labels_with(value):
  y = LABELS.copy()
  y[3] = value
  return y


@dataclasses.dataclass(frozen=True)
class Case:
  function: str  # "<module>.<name>"
  argument: str  # what the error message must name
  strategy: st.SearchStrategy
  call: Callable[[Any], Any]  # invalid value -> the call


def _fn(path):
  mod, name = path.rsplit(".", 1)
  return getattr(importlib.import_module(mod), name)


CAL = "jaxdyn.calibration"
REG = "jaxdyn.regularization"
MOD = "jaxdyn.models"
DATA = "jaxdyn.data"
SNN = "jaxdyn.snn"
BAY = "jaxdyn.bayes"
DYN = "jaxdyn.dynamics"

head = lambda w, h: h @ w
W = np.ones((4, C), np.float32) / 4
H = np.ones((B, 4), np.float32)

CASES: list[Case] = []


def case(function, argument, strategy):
  def deco(call):
    CASES.append(Case(function, argument, strategy, call))
    return call
  return deco


# --- calibration: metrics -------------------------------------------------------------------------
for name in ("expected_calibration_error", "adaptive_calibration_error", "classwise_calibration_error",
             "calibration_metrics", "reliability_bins"):
  f = f"{CAL}.{name}"
  case(f, "num_bins", bad_count)(lambda v, f=f: _fn(f)(LOGITS, LABELS, num_bins=v))
for name in ("expected_calibration_error", "adaptive_calibration_error", "classwise_calibration_error",
             "calibration_metrics", "reliability_bins", "negative_log_likelihood", "brier_score", "accuracy",
             "fit_temperature"):
  f = f"{CAL}.{name}"
  case(f, "labels", bad_label_value)(lambda v, f=f: _fn(f)(LOGITS, labels_with(v)))
  case(f, "labels", wrong_batch)(lambda n, f=f: _fn(f)(LOGITS, np.arange(n, dtype=np.int32) % C))
case(f"{CAL}.reliability_diagram", "num_bins", bad_count)(
    lambda v: _fn(f"{CAL}.reliability_diagram")(LOGITS, LABELS, "/tmp/never_written.png", num_bins=v))
case(f"{CAL}.apply_temperature", "temperature", nonpositive)(
    lambda v: _fn(f"{CAL}.apply_temperature")(LOGITS, v))
case(f"{CAL}.fit_temperature", "num_iters", bad_count)(
    lambda v: _fn(f"{CAL}.fit_temperature")(LOGITS, LABELS, num_iters=v))
case(f"{CAL}.fit_temperature", "bounds", st.tuples(st.floats(0.01, 10), st.floats(0.0, 1.0)).map(
    lambda t: (t[0], t[0] * t[1])))(lambda v: _fn(f"{CAL}.fit_temperature")(LOGITS, LABELS, bounds=v))

# --- calibration: losses and mixup ----------------------------------------------------------------
for name in ("cross_entropy_loss", "label_smoothing_loss", "focal_loss", "mixup_cross_entropy_loss"):
  f = f"{CAL}.{name}"
  case(f, "labels", bad_label_value)(lambda v, f=f: _fn(f)(logits=LOGITS, labels=labels_with(v)))
  case(f, "labels", wrong_batch)(lambda n, f=f: _fn(f)(logits=LOGITS, labels=np.arange(n, dtype=np.int32) % C))
case(f"{CAL}.label_smoothing_loss", "smoothing", bad_rate)(
    lambda v: _fn(f"{CAL}.label_smoothing_loss")(logits=LOGITS, labels=LABELS, smoothing=v))
case(f"{CAL}.focal_loss", "gamma", negative)(
    lambda v: _fn(f"{CAL}.focal_loss")(logits=LOGITS, labels=LABELS, gamma=v))
MIXED = np.stack([LOGITS, LOGITS[::-1]])
MIXED_Y = np.stack([ONEHOT, ONEHOT[::-1]])
case(f"{CAL}.mrl_loss", "margin", negative)(
    lambda v: _fn(f"{CAL}.mrl_loss")(logits=LOGITS, mixed_logits=MIXED[:1], mixed_labels=MIXED_Y[:1], margin=v))
case(f"{CAL}.mrl_loss", "space", st.text(max_size=8).filter(lambda s: s not in ("logits", "probs")))(
    lambda v: _fn(f"{CAL}.mrl_loss")(logits=LOGITS, mixed_logits=MIXED[:1], mixed_labels=MIXED_Y[:1], space=v))
case(f"{CAL}.mrl_loss", "mixed_logits", wrong_batch)(
    lambda n: _fn(f"{CAL}.mrl_loss")(logits=LOGITS, mixed_logits=np.zeros((1, n, C)), mixed_labels=MIXED_Y[:1]))
case(f"{CAL}.mndcg_loss", "mixed_labels", wrong_batch)(
    lambda n: _fn(f"{CAL}.mndcg_loss")(logits=LOGITS, mixed_logits=MIXED, mixed_labels=np.zeros((2, n, C))))
case(f"{CAL}.rankmixup_loss", "alpha", nonpositive)(
    lambda v: _fn(f"{CAL}.rankmixup_loss")(logits=LOGITS, labels=LABELS, mixed_logits=MIXED,
                                           mixed_labels=MIXED_Y, alpha=v))
case(f"{CAL}.rankmixup_loss", "method", st.text(max_size=8).filter(lambda s: s not in ("mrl", "mndcg")))(
    lambda v: _fn(f"{CAL}.rankmixup_loss")(logits=LOGITS, labels=LABELS, mixed_logits=MIXED,
                                           mixed_labels=MIXED_Y, method=v))
case(f"{CAL}.rankmixup_loss", "labels", bad_label_value)(
    lambda v: _fn(f"{CAL}.rankmixup_loss")(logits=LOGITS, labels=labels_with(v), mixed_logits=MIXED,
                                           mixed_labels=MIXED_Y))
case(f"{CAL}.sample_mixup", "num_mixes", bad_count)(
    lambda v: _fn(f"{CAL}.sample_mixup")(KEY, LOGITS, ONEHOT, num_mixes=v))
case(f"{CAL}.sample_mixup", "alpha", nonpositive)(
    lambda v: _fn(f"{CAL}.sample_mixup")(KEY, LOGITS, ONEHOT, alpha=v))
case(f"{CAL}.sample_mixup", "labels", wrong_batch)(
    lambda n: _fn(f"{CAL}.sample_mixup")(KEY, LOGITS, np.eye(C, dtype=np.float32)[np.arange(n) % C]))

# --- regularization -------------------------------------------------------------------------------
for name in ("multi_sample_dropout_loss", "multi_sample_dropout_logits"):
  f = f"{REG}.{name}"
  extra = (LABELS,) if name.endswith("loss") else ()
  case(f, "rate", bad_rate)(lambda v, f=f, e=extra: _fn(f)(head, W, H, *e, key=KEY, rate=v))
  case(f, "num_samples", bad_count)(lambda v, f=f, e=extra: _fn(f)(head, W, H, *e, key=KEY, num_samples=v))
case(f"{REG}.multi_sample_dropout_masks", "rate", bad_rate)(
    lambda v: _fn(f"{REG}.multi_sample_dropout_masks")(KEY, (B, 4), rate=v))
case(f"{REG}.multi_sample_dropout_masks", "num_samples", bad_count)(
    lambda v: _fn(f"{REG}.multi_sample_dropout_masks")(KEY, (B, 4), num_samples=v))
case(f"{REG}.MultiSampleDropoutHead", "rate", bad_rate)(
    lambda v: _fn(f"{REG}.MultiSampleDropoutHead")(4, C, rate=v, rngs=nnx.Rngs(0)))
case(f"{REG}.softmax_cross_entropy_loss", "labels", wrong_batch)(
    lambda n: _fn(f"{REG}.softmax_cross_entropy_loss")(logits=LOGITS, labels=np.arange(n, dtype=np.int32) % C))

# --- models and data ------------------------------------------------------------------------------
case(f"{MOD}.MLP", "dropout_rate", bad_rate)(lambda v: _fn(f"{MOD}.MLP")(4, C, dropout_rate=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.MLP", "in_features", bad_count)(lambda v: _fn(f"{MOD}.MLP")(v, C, rngs=nnx.Rngs(0)))
case(f"{MOD}.CNN", "spatial_dims", st.integers().filter(lambda d: d not in (1, 2)))(
    lambda v: _fn(f"{MOD}.CNN")(1, C, spatial_dims=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.CNN", "num_classes", bad_count)(lambda v: _fn(f"{MOD}.CNN")(1, v, rngs=nnx.Rngs(0)))
case(f"{MOD}.ViT", "patch_size", st.integers(2, 7).filter(lambda p: 8 % p))(
    lambda v: _fn(f"{MOD}.ViT")(3, C, image_size=8, patch_size=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.ResNet", "block", st.text(max_size=8).filter(lambda s: s not in ("basic", "bottleneck")))(
    lambda v: _fn(f"{MOD}.ResNet")(3, C, block=v, rngs=nnx.Rngs(0)))
for name in ("ResNet18", "ResNet50"):
  case(f"{MOD}.{name}", "width", bad_count)(lambda v, n=name: _fn(f"{MOD}.{n}")(3, C, width=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.create_model", "model", st.text(max_size=10).filter(lambda s: s not in ("mlp", "cnn", "vit", "resnet18", "resnet50")))(
    lambda v: _fn(f"{MOD}.create_model")(v, input_shape=(4,), num_classes=C, rngs=nnx.Rngs(0)))
case(f"{DATA}.load_dataset", "dataset", st.text(max_size=12).filter(lambda s: s not in ("mnist1d", "digits", "synthetic")))(
    lambda v: _fn(f"{DATA}.load_dataset")(v))
case(f"{DATA}.check_dataset_name", "dataset", st.text(max_size=12).filter(lambda s: s not in ("mnist1d", "digits", "synthetic")))(
    lambda v: _fn(f"{DATA}.check_dataset_name")(v))
_SRC = None


def _src():
  global _SRC
  if _SRC is None:
    _SRC = _fn(f"{DATA}.ArraySource")(np.zeros((64, 2), np.float32), np.zeros(64, np.int32))
  return _SRC


case(f"{DATA}.train_pipeline", "batch_size", st.one_of(nonpositive_int, st.integers(65, 10**6)))(
    lambda v: _fn(f"{DATA}.train_pipeline")(_src(), batch_size=v, seed=0))
case(f"{DATA}.train_pipeline", "process_index", st.one_of(st.integers(max_value=-1), st.integers(min_value=2)))(
    lambda v: _fn(f"{DATA}.train_pipeline")(_src(), batch_size=8, seed=0, process_index=v, process_count=2))
case(f"{DATA}.train_pipeline", "augment", bad_name.filter(bool))(
    lambda v: _fn(f"{DATA}.train_pipeline")(_src(), batch_size=8, seed=0, augment=v))
case(f"{DATA}.get_augmentation", "augment", bad_name)(
    lambda v: _fn(f"{DATA}.get_augmentation")(v))
case(f"{DATA}.random_crop_flip", "x", st.sampled_from([(4,), (4, 5), (4, 5, 5), (1, 2, 3, 4, 5)]))(
    lambda s: _fn(f"{DATA}.random_crop_flip")(np.random.default_rng(0), np.ones(s, np.float32)))
case(f"{DATA}.random_crop_flip", "padding", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: _fn(f"{DATA}.random_crop_flip")(np.random.default_rng(0), np.ones((2, 4, 4, 1), np.float32),
                                             padding=v))
case(f"{DATA}.ArraySource", "y", wrong_batch)(
    lambda n: _fn(f"{DATA}.ArraySource")(np.zeros((B, 2), np.float32), np.zeros(n, np.int32)))

# --- snn -----------------------------------------------------------------------------------------
T = 3
CURRENTS = np.ones((T, B, 4), np.float32)
bad_tau = st.one_of(st.floats(max_value=1.0, allow_infinity=False), st.just(math.nan))
wrong_feature = st.integers(1, 12).filter(lambda n: n != 4)
for name in ("spike", "surrogate_derivative"):
  f = f"{SNN}.{name}"
  case(f, "surrogate", bad_name)(lambda v, f=f: _fn(f)(CURRENTS[0], surrogate=v))
  case(f, "alpha", nonpositive)(lambda v, f=f: _fn(f)(CURRENTS[0], alpha=v))
case(f"{SNN}.register_surrogate", "name", st.sampled_from(["", "triangle", "rectangle", "sigmoid"]) | st.integers())(
    lambda v: _fn(f"{SNN}.register_surrogate")(v, lambda x, a: x))
case(f"{SNN}.register_surrogate", "derivative", st.one_of(st.integers(), st.text(), st.none()))(
    lambda v: _fn(f"{SNN}.register_surrogate")("bad_input_test", v))
for name in ("lif_step", "lif_multistep", "lif_multistep_pallas"):
  f = f"{SNN}.{name}"
  args = (lambda: (None, CURRENTS[0])) if name == "lif_step" else (lambda: (CURRENTS,))
  case(f, "tau", bad_tau)(lambda v, f=f, a=args: _fn(f)(*a(), tau=v))
  case(f, "v_th", nonpositive)(lambda v, f=f, a=args: _fn(f)(*a(), v_th=v))
  case(f, "reset", bad_name)(lambda v, f=f, a=args: _fn(f)(*a(), reset=v))
  case(f, "surrogate", bad_name)(lambda v, f=f, a=args: _fn(f)(*a(), surrogate=v))
case(f"{SNN}.lif_step", "v", wrong_feature)(
    lambda n: _fn(f"{SNN}.lif_step")(np.zeros((B, n), np.float32), CURRENTS[0]))
for name in ("lif_multistep", "lif_multistep_pallas"):
  case(f"{SNN}.{name}", "v0", wrong_feature)(
      lambda n, name=name: _fn(f"{SNN}.{name}")(CURRENTS, np.zeros((B, n), np.float32)))
case(f"{SNN}.lif_multistep_pallas", "block_size", st.integers(-64, 1000).filter(lambda b: b < 1 or b & (b - 1)))(
    lambda v: _fn(f"{SNN}.lif_multistep_pallas")(CURRENTS, block_size=v, interpret=True))
case(f"{SNN}.LIF", "tau", bad_tau)(lambda v: _fn(f"{SNN}.LIF")(tau=v))
case(f"{SNN}.LIF", "surrogate", bad_name)(lambda v: _fn(f"{SNN}.LIF")(surrogate=v))
case(f"{SNN}.LIFConfig", "v_th", nonpositive)(lambda v: _fn(f"{SNN}.LIFConfig")(v_th=v))
case(f"{SNN}.LIFConfig", "alpha", nonpositive)(lambda v: _fn(f"{SNN}.LIFConfig")(alpha=v))
case(f"{SNN}.encode", "encoder", bad_name)(lambda v: _fn(f"{SNN}.encode")(H, 0, encoder=v))
case(f"{SNN}.poisson_encode", "key", bad_key)(
    lambda v: _fn(f"{SNN}.poisson_encode")(v, H, 0))
case(f"{SNN}.fixed_dropout_masks", "rate", bad_rate)(lambda v: _fn(f"{SNN}.fixed_dropout_masks")(KEY, H, v))
case(f"{SNN}.sample_steps", "k", st.one_of(nonpositive_int, st.integers(T + 1, 100)))(
    lambda v: _fn(f"{SNN}.sample_steps")(KEY, T, v))
case(f"{SNN}.sample_steps", "key", bad_key)(lambda v: _fn(f"{SNN}.sample_steps")(v, T, 1))
case(f"{SNN}.fixed_dropout_masks", "key", bad_key)(lambda v: _fn(f"{SNN}.fixed_dropout_masks")(v, H, 0.5))
case(f"{BAY}.random_mask", "key", bad_key)(lambda v: _fn(f"{BAY}.random_mask")(v, (3, 4), 0.5))
case(f"{SNN}.sample_steps", "num_steps", bad_count)(lambda v: _fn(f"{SNN}.sample_steps")(KEY, v, 1))
case(f"{SNN}.sltt_step_loss", "lam_l", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.000001),
                                                 st.just(math.nan)))(
    lambda v: _fn(f"{SNN}.sltt_step_loss")(logits=LOGITS, labels=LABELS, lam_l=v))
case(f"{SNN}.sltt_step_loss", "labels", wrong_batch)(
    lambda n: _fn(f"{SNN}.sltt_step_loss")(logits=LOGITS, labels=np.arange(n, dtype=np.int32) % C))
case(f"{SNN}.sltt_step_loss", "labels", bad_label_value)(
    lambda v: _fn(f"{SNN}.sltt_step_loss")(logits=LOGITS, labels=labels_with(v)))


def _tt_step(params, state, carry, inputs, t):
  return inputs @ params, carry, state


def _through_time(**kw):
  kw = {"num_steps": T, **kw}
  return _fn(f"{SNN}.through_time_loss")(_tt_step, W, None, H, LABELS, key=KEY, **kw)


case(f"{SNN}.through_time_loss", "mode", bad_name)(lambda v: _through_time(mode=v))
case(f"{SNN}.through_time_loss", "num_steps", bad_count)(lambda v: _through_time(num_steps=v))
case(f"{SNN}.through_time_loss", "k", st.one_of(nonpositive_int, st.integers(T + 1, 100)))(
    lambda v: _through_time(mode="sltt_k", k=v))
case(f"{SNN}.through_time_loss", "lam_l", st.floats(min_value=1.000001) | st.floats(max_value=-1e-6))(
    lambda v: _through_time(lam_l=v))
case(f"{SNN}.through_time_loss", "labels", wrong_batch)(
    lambda n: _fn(f"{SNN}.through_time_loss")(_tt_step, W, None, H, np.arange(n, dtype=np.int32) % C,
                                              num_steps=T))
case(f"{SNN}.through_time_loss", "step_fn", st.one_of(st.integers(), st.none(), st.text(max_size=4)))(
    lambda v: _fn(f"{SNN}.through_time_loss")(v, W, None, H, LABELS, num_steps=T))
_SNN_MODEL = {}


def _snn_mlp():
  if "m" not in _SNN_MODEL:
    _SNN_MODEL["m"] = _fn(f"{SNN}.SpikingMLP")(4, C, hidden=(8,), num_steps=T, rngs=nnx.Rngs(0))
  return _SNN_MODEL["m"]


case(f"{SNN}.spiking_loss", "model", st.one_of(st.integers(), st.none(), st.just(head)))(
    lambda v: _fn(f"{SNN}.spiking_loss")(v, H, LABELS))
case(f"{SNN}.spiking_loss", "mode", bad_name)(lambda v: _fn(f"{SNN}.spiking_loss")(_snn_mlp(), H, LABELS, mode=v))
case(f"{SNN}.spiking_loss", "x", wrong_feature)(
    lambda n: _fn(f"{SNN}.spiking_loss")(_snn_mlp(), np.ones((B, n), np.float32), LABELS))
case(f"{SNN}.spiking_loss", "labels", wrong_batch)(
    lambda n: _fn(f"{SNN}.spiking_loss")(_snn_mlp(), H, np.arange(n, dtype=np.int32) % C))
case(f"{SNN}.step_function", "graphdef", st.one_of(st.integers(), st.none(), st.text(max_size=4)))(
    lambda v: _fn(f"{SNN}.step_function")(v))
case(f"{SNN}.conv2d", "stride", bad_count)(
    lambda v: _fn(f"{SNN}.conv2d")(np.ones((1, 4, 4, 2), np.float32), np.ones((3, 3, 2, 2), np.float32), stride=v))
case(f"{SNN}.conv2d", "kernel", wrong_feature)(
    lambda n: _fn(f"{SNN}.conv2d")(np.ones((1, 4, 4, 4), np.float32), np.ones((3, 3, n, 2), np.float32)))
case(f"{SNN}.Conv2d", "out_features", bad_count)(
    lambda v: _fn(f"{SNN}.Conv2d")(2, v, (3, 3), rngs=nnx.Rngs(0)))
case(f"{SNN}.Conv2d", "strides", bad_count)(
    lambda v: _fn(f"{SNN}.Conv2d")(2, 2, (3, 3), strides=v, rngs=nnx.Rngs(0)))
case(f"{SNN}.SpikingMLP", "hidden", st.one_of(st.just(()), st.tuples(nonpositive_int)))(
    lambda v: _fn(f"{SNN}.SpikingMLP")(4, C, hidden=v, rngs=nnx.Rngs(0)))
case(f"{SNN}.SpikingMLP", "num_steps", bad_count)(
    lambda v: _fn(f"{SNN}.SpikingMLP")(4, C, hidden=(8,), num_steps=v, rngs=nnx.Rngs(0)))
case(f"{SNN}.SpikingMLP", "tau", bad_tau)(
    lambda v: _fn(f"{SNN}.SpikingMLP")(4, C, hidden=(8,), tau=v, rngs=nnx.Rngs(0)))
for name in ("SpikingVGG11", "SpikingPreActResNet18"):
  f = f"{SNN}.{name}"
  case(f, "width", bad_count)(lambda v, f=f: _fn(f)(3, C, width=v, rngs=nnx.Rngs(0)))
  case(f, "dropout_rate", bad_rate)(lambda v, f=f: _fn(f)(3, C, width=2, dropout_rate=v, rngs=nnx.Rngs(0)))
  case(f, "encoder", bad_name)(lambda v, f=f: _fn(f)(3, C, width=2, encoder=v, rngs=nnx.Rngs(0)))

# --- bayes ----------------------------------------------------------------------------------------
bad_density = st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.floats(min_value=1.000001),
                        st.just(math.nan))
bad_sigma_init = st.one_of(st.tuples(st.floats(max_value=0.0, allow_infinity=False), st.floats(0, 1)),
                           st.tuples(st.floats(0.001, 1), st.floats(max_value=-1e-6, allow_infinity=False)),
                           st.tuples(st.floats(0.001, 1)))
for name in ("GaussianDense", "GaussianConv"):
  f = f"{BAY}.{name}"
  args = (4, 3) if name == "GaussianDense" else (4, 3, (3,))
  case(f, "density", bad_density)(lambda v, f=f, a=args: _fn(f)(*a, density=v, rngs=nnx.Rngs(0)))
  case(f, "mu_init_std", nonpositive)(lambda v, f=f, a=args: _fn(f)(*a, mu_init_std=v, rngs=nnx.Rngs(0)))
  case(f, "sigma_init", bad_sigma_init)(lambda v, f=f, a=args: _fn(f)(*a, sigma_init=v, rngs=nnx.Rngs(0)))
  case(f, "in_features", bad_count)(lambda v, f=f, a=args: _fn(f)(v, *a[1:], rngs=nnx.Rngs(0)))
case(f"{BAY}.GaussianConv", "kernel_size", st.one_of(st.just(()), st.tuples(nonpositive_int),
                                                    st.lists(st.integers(1, 3), min_size=4, max_size=6)))(
    lambda v: _fn(f"{BAY}.GaussianConv")(4, 3, v, rngs=nnx.Rngs(0)))
case(f"{BAY}.GaussianConv", "strides", st.one_of(nonpositive_int, st.tuples(st.integers(1, 2), st.integers(1, 2))))(
    lambda v: _fn(f"{BAY}.GaussianConv")(4, 3, (3,), strides=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesMLP", "hidden", st.one_of(st.just(()), st.tuples(nonpositive_int)))(
    lambda v: _fn(f"{BAY}.BayesMLP")(4, C, hidden=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesMLP", "density", bad_density)(
    lambda v: _fn(f"{BAY}.BayesMLP")(4, C, hidden=(8,), density=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesCNN", "spatial_dims", st.integers().filter(lambda d: d not in (1, 2)))(
    lambda v: _fn(f"{BAY}.BayesCNN")(1, C, spatial_dims=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesCNN", "channels", st.one_of(st.just(()), st.tuples(nonpositive_int)))(
    lambda v: _fn(f"{BAY}.BayesCNN")(1, C, channels=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesResNet18", "width", bad_count)(lambda v: _fn(f"{BAY}.BayesResNet18")(3, C, width=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.BayesResNet18", "density", bad_density)(
    lambda v: _fn(f"{BAY}.BayesResNet18")(3, C, width=2, density=v, rngs=nnx.Rngs(0)))
case(f"{BAY}.LayerCost", "num_active", st.one_of(st.integers(max_value=-1), st.integers(11, 10**6)))(
    lambda v: _fn(f"{BAY}.LayerCost")("dense", 10, v))
case(f"{BAY}.LayerCost", "kind", bad_name)(lambda v: _fn(f"{BAY}.LayerCost")(v, 10, 5))
case(f"{BAY}.LayerCost", "positions", nonpositive_int)(lambda v: _fn(f"{BAY}.LayerCost")("conv", 10, 5, v))
MU = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
RHO = np.full((3, 4), -3.0, np.float32)
wrong_shape = st.tuples(st.integers(1, 5), st.integers(1, 5)).filter(lambda s: s != (3, 4))
case(f"{BAY}.active_mean", "rho", wrong_shape)(lambda s: _fn(f"{BAY}.active_mean")(MU, np.ones(s, np.float32)))
case(f"{BAY}.drop_and_grow", "criterion", bad_name)(
    lambda v: _fn(f"{BAY}.drop_and_grow")(MU, RHO, MU, RHO != 0, 0.2, criterion=v))
case(f"{BAY}.drop_and_grow", "grad_mu", wrong_shape)(
    lambda s: _fn(f"{BAY}.drop_and_grow")(MU, RHO, np.ones(s, np.float32), RHO != 0, 0.2))
case(f"{BAY}.drop_and_grow", "fraction", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0),
                                                  st.just(math.nan)))(
    lambda v: _fn(f"{BAY}.drop_and_grow")(MU, RHO, MU, RHO != 0, v))
case(f"{BAY}.folded_normal_moments", "sigma", st.floats(-1e30, -1e-6) | st.just(math.nan))(
    lambda v: _fn(f"{BAY}.folded_normal_moments")(MU, np.full((3, 4), v, np.float32)))
case(f"{BAY}.removal_score", "criterion", bad_name)(
    lambda v: _fn(f"{BAY}.removal_score")(MU, np.ones((3, 4), np.float32), criterion=v))
case(f"{BAY}.removal_score", "sigma", st.floats(-1e30, -1e-6) | st.just(math.nan))(
    lambda v: _fn(f"{BAY}.removal_score")(MU, np.full((3, 4), v, np.float32)))
case(f"{BAY}.gaussian_kl", "prior_std", nonpositive)(
    lambda v: _fn(f"{BAY}.gaussian_kl")(MU, np.ones((3, 4), np.float32), prior_std=v))
case(f"{BAY}.gaussian_kl", "sigma", st.floats(-1e30, -1e-6) | st.just(math.nan))(
    lambda v: _fn(f"{BAY}.gaussian_kl")(MU, np.full((3, 4), v, np.float32), prior_std=1.0))
case(f"{BAY}.gaussian_kl", "mask", wrong_shape.filter(lambda s: not (s[0] in (1, 3) and s[1] in (1, 4))))(
    lambda s: _fn(f"{BAY}.gaussian_kl")(MU, np.ones((3, 4), np.float32), prior_std=1.0, mask=np.ones(s, bool)))
case(f"{BAY}.rho_from_std", "sigma", st.floats(-1e30, 0.0) | st.just(math.nan))(
    lambda v: _fn(f"{BAY}.rho_from_std")(np.full((3,), v, np.float32)))
case(f"{BAY}.posterior_std", "rho", st.sampled_from([np.int32, np.bool_, np.uint8]))(
    lambda d: _fn(f"{BAY}.posterior_std")(np.ones((3,), d)))
case(f"{BAY}.kl_warmup", "steps_per_epoch", bad_count)(
    lambda v: _fn(f"{BAY}.kl_warmup")(0, steps_per_epoch=v, num_epochs=2))
case(f"{BAY}.kl_warmup", "num_epochs", bad_count)(
    lambda v: _fn(f"{BAY}.kl_warmup")(0, steps_per_epoch=2, num_epochs=v))
case(f"{BAY}.random_mask", "density", bad_density)(lambda v: _fn(f"{BAY}.random_mask")(KEY, (3, 4), v))
case(f"{BAY}.random_mask", "shape", st.tuples(st.integers(-5, 0), st.integers(1, 3)))(
    lambda v: _fn(f"{BAY}.random_mask")(KEY, v, 0.5))
_BAYES_MLP = {}


def _bayes_mlp():
  if "m" not in _BAYES_MLP:
    _BAYES_MLP["m"] = _fn(f"{BAY}.BayesMLP")(4, C, hidden=(8,), density=0.5, rngs=nnx.Rngs(0))
  return _BAYES_MLP["m"]


case(f"{BAY}.model_kl", "prior_std", nonpositive)(lambda v: _fn(f"{BAY}.model_kl")(_bayes_mlp(), prior_std=v))
case(f"{BAY}.model_kl", "model", st.sampled_from(["mlp", None, 3]))(
    lambda v: _fn(f"{BAY}.model_kl")(v, prior_std=1.0))
case(f"{BAY}.layer_costs", "model", st.sampled_from([None, 3, "mlp"]))(
    lambda v: _fn(f"{BAY}.layer_costs")(v, H))
case(f"{BAY}.layer_costs", "example_input", wrong_feature)(
    lambda n: _fn(f"{BAY}.layer_costs")(_bayes_mlp(), np.ones((B, n), np.float32)))
case(f"{BAY}.mc_predictive", "num_samples", bad_count)(
    lambda v: _fn(f"{BAY}.mc_predictive")(lambda k, x: x, H, key=KEY, num_samples=v))
case(f"{BAY}.mc_predictive", "key", bad_key)(
    lambda v: _fn(f"{BAY}.mc_predictive")(lambda k, x: x, H, key=v, num_samples=2))
for name in ("ssvi", "ssvi_sgd"):
  f = f"{BAY}.{name}"
  first = (lambda: (__import__("optax").sgd(0.1),)) if name == "ssvi" else (lambda: (0.1,))
  case(f, "total_steps", bad_count)(lambda v, f=f, a=first: _fn(f)(*a(), total_steps=v))
  case(f, "update_every", bad_count)(lambda v, f=f, a=first: _fn(f)(*a(), total_steps=100, update_every=v))
  case(f, "drop_fraction", st.one_of(st.floats(max_value=0.0), st.floats(min_value=0.500001), st.just(math.nan)))(
      lambda v, f=f, a=first: _fn(f)(*a(), total_steps=100, drop_fraction=v))
  case(f, "criterion", bad_name)(lambda v, f=f, a=first: _fn(f)(*a(), total_steps=100, criterion=v))
  case(f, "end_step", st.one_of(st.integers(max_value=-1), st.integers(101, 10**6)))(
      lambda v, f=f, a=first: _fn(f)(*a(), total_steps=100, end_step=v))
case(f"{BAY}.ssvi", "inner", st.one_of(st.integers(), st.none(), st.text(max_size=3)))(
    lambda v: _fn(f"{BAY}.ssvi")(v, total_steps=100))
case(f"{BAY}.ssvi_sgd", "weight_decay", negative)(lambda v: _fn(f"{BAY}.ssvi_sgd")(0.1, total_steps=100, weight_decay=v))
case(f"{BAY}.ssvi_sgd", "momentum", bad_rate)(lambda v: _fn(f"{BAY}.ssvi_sgd")(0.1, total_steps=100, momentum=v))
case(f"{BAY}.TopologySchedule", "drop_fraction", st.one_of(st.floats(max_value=0.0), st.floats(min_value=0.500001),
                                                          st.just(math.nan)))(
    lambda v: _fn(f"{BAY}.TopologySchedule")(10, 100, v))
case(f"{BAY}.TopologySchedule", "update_every", bad_count)(lambda v: _fn(f"{BAY}.TopologySchedule")(v, 100))
case(f"{BAY}.topology_update_count", "update_every", bad_count)(
    lambda v: _fn(f"{BAY}.topology_update_count")(100, update_every=v, end_step=50))
case(f"{BAY}.topology_update_count", "num_steps", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: _fn(f"{BAY}.topology_update_count")(v, update_every=10, end_step=50))
_COSTS = [("dense", 10, 5)]
case(f"{BAY}.training_flops", "num_steps", bad_count)(
    lambda v: _fn(f"{BAY}.training_flops")([_fn(f"{BAY}.LayerCost")(*_COSTS[0])], num_steps=v, batch_size=8))
case(f"{BAY}.training_flops", "batch_size", bad_count)(
    lambda v: _fn(f"{BAY}.training_flops")([_fn(f"{BAY}.LayerCost")(*_COSTS[0])], num_steps=10, batch_size=v))
case(f"{BAY}.training_flops", "topology_steps", st.one_of(st.integers(max_value=-1), st.integers(11, 10**6)))(
    lambda v: _fn(f"{BAY}.training_flops")([_fn(f"{BAY}.LayerCost")(*_COSTS[0])], num_steps=10, batch_size=8,
                                           topology_steps=v))
case(f"{BAY}.training_flops", "layers", st.one_of(st.just([]), st.lists(st.integers(), min_size=1, max_size=3)))(
    lambda v: _fn(f"{BAY}.training_flops")(v, num_steps=10, batch_size=8))

# --- dynamics -------------------------------------------------------------------------------------
Z = np.asarray(jax.random.normal(jax.random.key(1), (16, 3)))
bad_points = st.sampled_from([(16,), (1, 3), (16, 0), (2, 3, 4), ()])
bad_sigma = st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.just(math.nan), st.just(math.inf))
for name in ("gaussian_affinity", "diffusion_kernel", "diffusion_spectral_entropy"):
  f = f"{DYN}.{name}"
  case(f, "sigma", bad_sigma)(lambda v, f=f: _fn(f)(Z, sigma=v))
  # One point has a 1x1 affinity and kernel; its spectral entropy needs two.
  shapes = bad_points if name == "diffusion_spectral_entropy" else bad_points.filter(lambda s: s != (1, 3))
  case(f, "Z", shapes)(lambda s, f=f: _fn(f)(np.ones(s, np.float32)))
case(f"{DYN}.diffusion_spectral_entropy", "t", bad_count)(lambda v: _fn(f"{DYN}.diffusion_spectral_entropy")(Z, t=v))
case(f"{DYN}.diffusion_spectral_entropy", "method", bad_name)(
    lambda v: _fn(f"{DYN}.diffusion_spectral_entropy")(Z, method=v))
case(f"{DYN}.diffusion_spectral_entropy", "max_n", st.one_of(st.integers(max_value=1), non_integral))(
    lambda v: _fn(f"{DYN}.diffusion_spectral_entropy")(Z, max_n=v))
case(f"{DYN}.diffusion_spectral_entropy", "num_probes", bad_count)(
    lambda v: _fn(f"{DYN}.diffusion_spectral_entropy")(Z, method="slq", key=KEY, num_probes=v))
case(f"{DYN}.diffusion_spectral_entropy", "key", bad_key)(
    lambda v: _fn(f"{DYN}.diffusion_spectral_entropy")(Z, method="slq", key=v))
case(f"{DYN}.spectral_entropy", "eigenvalues", st.sampled_from([(), (0,), (3, 3)]))(
    lambda s: _fn(f"{DYN}.spectral_entropy")(np.ones(s, np.float32)))
case(f"{DYN}.spectral_entropy", "t", bad_count)(lambda v: _fn(f"{DYN}.spectral_entropy")(np.ones(4), t=v))
K16 = np.eye(16, dtype=np.float32)
case(f"{DYN}.spectral_entropy_slq", "K", st.sampled_from([(16, 15), (16,), (1, 1)]))(
    lambda s: _fn(f"{DYN}.spectral_entropy_slq")(np.ones(s, np.float32), key=KEY))
for arg in ("num_probes", "lanczos_steps", "head_blocks"):
  case(f"{DYN}.spectral_entropy_slq", arg, bad_count)(
      lambda v, arg=arg: _fn(f"{DYN}.spectral_entropy_slq")(K16, key=KEY, **{arg: v}))
case(f"{DYN}.spectral_entropy_slq", "key", bad_key)(lambda v: _fn(f"{DYN}.spectral_entropy_slq")(K16, key=v))
Y16 = np.arange(16) % 3


def _dsmi(**kw):
  kw = {"key": KEY, **kw}
  return _fn(f"{DYN}.diffusion_spectral_mutual_information")(Z, kw.pop("Y", Y16), **kw)


case(f"{DYN}.diffusion_spectral_mutual_information", "Y", st.integers(1, 40).filter(lambda n: n != 16))(
    lambda n: _dsmi(Y=np.arange(n) % 3))
case(f"{DYN}.diffusion_spectral_mutual_information", "num_repeats", bad_count)(lambda v: _dsmi(num_repeats=v))
case(f"{DYN}.diffusion_spectral_mutual_information", "sigma", bad_sigma)(lambda v: _dsmi(sigma=v))
case(f"{DYN}.diffusion_spectral_mutual_information", "y_kind", bad_name)(lambda v: _dsmi(y_kind=v))
case(f"{DYN}.diffusion_spectral_mutual_information", "key", bad_key)(lambda v: _dsmi(key=v))
case(f"{DYN}.reference_classes", "kind", bad_name)(lambda v: _fn(f"{DYN}.reference_classes")(Y16, kind=v))
case(f"{DYN}.reference_classes", "num_bins", bad_count)(
    lambda v: _fn(f"{DYN}.reference_classes")(Z[:, 0], kind="scalar", num_bins=v))
case(f"{DYN}.reference_classes", "num_clusters", st.one_of(bad_count, st.integers(16, 100)))(
    lambda v: _fn(f"{DYN}.reference_classes")(Z, kind="vector", num_clusters=v))
case(f"{DYN}.binned_shannon_entropy", "num_bins_per_dim", bad_count)(
    lambda v: _fn(f"{DYN}.binned_shannon_entropy")(Z, num_bins_per_dim=v))
case(f"{DYN}.binned_shannon_entropy", "Z", bad_points)(
    lambda s: _fn(f"{DYN}.binned_shannon_entropy")(np.ones(s, np.float32)))
case(f"{DYN}.knn_mutual_information_discrete", "k", bad_count)(
    lambda v: _fn(f"{DYN}.knn_mutual_information_discrete")(Z, Y16, k=v))
case(f"{DYN}.knn_mutual_information_discrete", "labels", st.integers(1, 40).filter(lambda n: n != 16))(
    lambda n: _fn(f"{DYN}.knn_mutual_information_discrete")(Z, np.arange(n) % 3))
case(f"{DYN}.ksg_mutual_information", "k", st.one_of(bad_count, st.integers(16, 100)))(
    lambda v: _fn(f"{DYN}.ksg_mutual_information")(Z, Z, k=v))
case(f"{DYN}.ksg_mutual_information", "Y", st.integers(1, 40).filter(lambda n: n != 16))(
    lambda n: _fn(f"{DYN}.ksg_mutual_information")(Z, np.ones((n, 2), np.float32)))


def _mine(**kw):
  kw = {"key": KEY, **kw}
  return _fn(f"{DYN}.mine_mutual_information")(Z, Z, **kw)


case(f"{DYN}.mine_mutual_information", "learning_rate", bad_sigma)(lambda v: _mine(learning_rate=v))
case(f"{DYN}.mine_mutual_information", "ema_rate", st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.000001),
                                                             st.just(math.nan)))(lambda v: _mine(ema_rate=v))
case(f"{DYN}.mine_mutual_information", "steps", bad_count)(lambda v: _mine(steps=v))
case(f"{DYN}.mine_mutual_information", "batch_size", bad_count)(lambda v: _mine(batch_size=v))
case(f"{DYN}.mine_mutual_information", "hidden", st.tuples(st.integers(1, 8), nonpositive_int))(
    lambda v: _mine(hidden=v))
case(f"{DYN}.mine_mutual_information", "key", bad_key)(lambda v: _mine(key=v))
case(f"{DYN}.mine_mutual_information", "Y", st.integers(1, 40).filter(lambda n: n != 16))(
    lambda n: _fn(f"{DYN}.mine_mutual_information")(Z, np.ones((n, 2), np.float32), key=KEY))

# Public names with nothing to validate (types, protocols, exceptions, helpers without arguments to
# get wrong), each with the reason.
EXEMPT = {
    f"{CAL}.MixupSample": "a NamedTuple of results",
    f"{CAL}.ReliabilityBins": "a NamedTuple of results",
    f"{REG}.LossFn": "a typing Protocol",
    f"{MOD}.Classifier": "an abstract base class",
    f"{MOD}.register_model": "a registry; duplicate names are tested in tests/models",
    f"{DATA}.Dataset": "a plain record of already-built sources",
    f"{DATA}.DatasetNotPreparedError": "an exception type",
    f"{DATA}.default_cache_dir": "takes no arguments",
    f"{DATA}.eval_batches": "a generator over an already-validated source (covered through the harness)",
    f"{SNN}.SpikingClassifier": "an abstract base class",
    f"{SNN}.ThroughTimeAux": "a NamedTuple of results",
    f"{SNN}.direct_encode": "the identity on any array (t is unused)",
    f"{BAY}.SSVIState": "a NamedTuple of optimizer state",
}
FAMILIES = tuple(f"jaxdyn.{f}" for f in jaxdyn.FAMILIES)


@pytest.mark.parametrize("c", CASES, ids=lambda c: f"{c.function.split('.', 1)[1]}[{c.argument}]")
def test_invalid_argument_is_named(c):
  generated = {"n": 0}

  @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
  @given(c.strategy)
  def run(value):
    generated["n"] += 1
    with pytest.raises((ValueError, TypeError)) as info:
      out = c.call(value)
      jax.block_until_ready(out)  # a silent result would fail here, not later
    message = str(info.value)
    # Named as jaxdyn's messages name arguments ("rate: must be ..." or "`rate` must be ..."), so a
    # word that merely occurs in some library's message (say "key" in "PRNG key") does not count.
    assert f"{c.argument}:" in message or f"`{c.argument}`" in message, (
        f"{c.function}: message does not name {c.argument!r}: {message}")

  run()
  assert generated["n"] >= MIN_EXAMPLES, generated["n"]


def test_families_are_every_public_subpackage():
  found = {m.name for m in pkgutil.iter_modules(jaxdyn.__path__) if m.ispkg and not m.name.startswith("_")}
  assert found == set(jaxdyn.FAMILIES), "list a new family in jaxdyn.FAMILIES (and give it bad-input cases)"


def test_every_public_callable_is_covered():
  covered = {c.function for c in CASES}
  missing = []
  for fam in FAMILIES:
    mod = importlib.import_module(fam)
    for name in mod.__all__:
      full = f"{fam}.{name}"
      if callable(getattr(mod, name)) and full not in covered and full not in EXEMPT:
        missing.append(full)
  assert not missing, f"add invalid-input cases (or an exemption with a reason) for {missing}"


def test_at_least_200_generated_cases_per_run():
  # Each case above checks that hypothesis generated at least MIN_EXAMPLES invalid inputs for it.
  assert len(CASES) * MIN_EXAMPLES >= 200, len(CASES)
