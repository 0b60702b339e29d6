"""Every public jaxdyn function, driven with invalid hyperparameters and shapes by hypothesis.

Each case changes one argument of an otherwise valid call to an invalid value and requires a
ValueError or TypeError whose message names that argument: never a crash inside XLA, never a silent
NaN. ``test_every_public_callable_is_covered`` keeps the table complete as families grow.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
case(f"{DATA}.ArraySource", "y", wrong_batch)(
    lambda n: _fn(f"{DATA}.ArraySource")(np.zeros((B, 2), np.float32), np.zeros(n, np.int32)))

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
}
FAMILIES = ("jaxdyn.calibration", "jaxdyn.regularization", "jaxdyn.models", "jaxdyn.data")


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
    assert c.argument in str(info.value), f"{c.function}: message does not name {c.argument!r}: {info.value}"

  run()
  assert generated["n"] >= MIN_EXAMPLES, generated["n"]


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
