"""Input-policy declarations for `jaxdyn.calibration` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

CAL = "jaxdyn.calibration"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

# --- calibration: metrics -------------------------------------------------------------------------
for name in ("expected_calibration_error", "adaptive_calibration_error", "classwise_calibration_error",
             "calibration_metrics", "reliability_bins"):
  f = f"{CAL}.{name}"
  case(f, "num_bins", bad_count)(lambda v, f=f: fn(f)(LOGITS, LABELS, num_bins=v))
for name in ("expected_calibration_error", "adaptive_calibration_error", "classwise_calibration_error",
             "calibration_metrics", "reliability_bins", "negative_log_likelihood", "brier_score", "accuracy",
             "fit_temperature"):
  f = f"{CAL}.{name}"
  case(f, "labels", bad_label_value)(lambda v, f=f: fn(f)(LOGITS, labels_with(v)))
  case(f, "labels", wrong_batch)(lambda n, f=f: fn(f)(LOGITS, np.arange(n, dtype=np.int32) % C))
case(f"{CAL}.reliability_diagram", "num_bins", bad_count)(
    lambda v: fn(f"{CAL}.reliability_diagram")(LOGITS, LABELS, "/tmp/never_written.png", num_bins=v))
case(f"{CAL}.apply_temperature", "temperature", nonpositive)(
    lambda v: fn(f"{CAL}.apply_temperature")(LOGITS, v))
case(f"{CAL}.fit_temperature", "num_iters", bad_count)(
    lambda v: fn(f"{CAL}.fit_temperature")(LOGITS, LABELS, num_iters=v))
case(f"{CAL}.fit_temperature", "bounds", st.tuples(st.floats(0.01, 10), st.floats(0.0, 1.0)).map(
    lambda t: (t[0], t[0] * t[1])))(lambda v: fn(f"{CAL}.fit_temperature")(LOGITS, LABELS, bounds=v))

# --- calibration: losses and mixup ----------------------------------------------------------------
for name in ("cross_entropy_loss", "label_smoothing_loss", "focal_loss", "mixup_cross_entropy_loss"):
  f = f"{CAL}.{name}"
  case(f, "labels", bad_label_value)(lambda v, f=f: fn(f)(logits=LOGITS, labels=labels_with(v)))
  case(f, "labels", wrong_batch)(lambda n, f=f: fn(f)(logits=LOGITS, labels=np.arange(n, dtype=np.int32) % C))
case(f"{CAL}.label_smoothing_loss", "smoothing", bad_rate)(
    lambda v: fn(f"{CAL}.label_smoothing_loss")(logits=LOGITS, labels=LABELS, smoothing=v))
case(f"{CAL}.focal_loss", "gamma", negative)(
    lambda v: fn(f"{CAL}.focal_loss")(logits=LOGITS, labels=LABELS, gamma=v))
MIXED = np.stack([LOGITS, LOGITS[::-1]])
MIXED_Y = np.stack([ONEHOT, ONEHOT[::-1]])
case(f"{CAL}.mrl_loss", "margin", negative)(
    lambda v: fn(f"{CAL}.mrl_loss")(logits=LOGITS, mixed_logits=MIXED[:1], mixed_labels=MIXED_Y[:1], margin=v))
case(f"{CAL}.mrl_loss", "space", st.text(max_size=8).filter(lambda s: s not in ("logits", "probs")))(
    lambda v: fn(f"{CAL}.mrl_loss")(logits=LOGITS, mixed_logits=MIXED[:1], mixed_labels=MIXED_Y[:1], space=v))
case(f"{CAL}.mrl_loss", "mixed_logits", wrong_batch)(
    lambda n: fn(f"{CAL}.mrl_loss")(logits=LOGITS, mixed_logits=np.zeros((1, n, C)), mixed_labels=MIXED_Y[:1]))
case(f"{CAL}.mndcg_loss", "mixed_labels", wrong_batch)(
    lambda n: fn(f"{CAL}.mndcg_loss")(logits=LOGITS, mixed_logits=MIXED, mixed_labels=np.zeros((2, n, C))))
case(f"{CAL}.rankmixup_loss", "alpha", nonpositive)(
    lambda v: fn(f"{CAL}.rankmixup_loss")(logits=LOGITS, labels=LABELS, mixed_logits=MIXED,
                                           mixed_labels=MIXED_Y, alpha=v))
case(f"{CAL}.rankmixup_loss", "method", st.text(max_size=8).filter(lambda s: s not in ("mrl", "mndcg")))(
    lambda v: fn(f"{CAL}.rankmixup_loss")(logits=LOGITS, labels=LABELS, mixed_logits=MIXED,
                                           mixed_labels=MIXED_Y, method=v))
case(f"{CAL}.rankmixup_loss", "labels", bad_label_value)(
    lambda v: fn(f"{CAL}.rankmixup_loss")(logits=LOGITS, labels=labels_with(v), mixed_logits=MIXED,
                                           mixed_labels=MIXED_Y))
case(f"{CAL}.sample_mixup", "num_mixes", bad_count)(
    lambda v: fn(f"{CAL}.sample_mixup")(KEY, LOGITS, ONEHOT, num_mixes=v))
case(f"{CAL}.sample_mixup", "alpha", nonpositive)(
    lambda v: fn(f"{CAL}.sample_mixup")(KEY, LOGITS, ONEHOT, alpha=v))
case(f"{CAL}.sample_mixup", "labels", wrong_batch)(
    lambda n: fn(f"{CAL}.sample_mixup")(KEY, LOGITS, np.eye(C, dtype=np.float32)[np.arange(n) % C]))

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{CAL}.MixupSample": "a NamedTuple of results",
    f"{CAL}.ReliabilityBins": "a NamedTuple of results",
}
