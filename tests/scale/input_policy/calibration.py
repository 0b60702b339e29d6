"""Input-policy declarations for `jaxdyn.calibration` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import atexit
import pathlib
import shutil
import tempfile

import numpy as np
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
case(f"{CAL}.reliability_diagram", "path", st.sampled_from([None, 3, 2.5, ["a.png"], {"p": 1}]))(
    lambda v: fn(f"{CAL}.reliability_diagram")(LOGITS, LABELS, v))
case(f"{CAL}.reliability_diagram", "title", st.sampled_from([3, 2.5, ["t"], b"bytes"]))(
    lambda v: fn(f"{CAL}.reliability_diagram")(LOGITS, LABELS, "/tmp/never_written.png", title=v))
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
case(f"{CAL}.mndcg_loss", "reduction", bad_name)(
    lambda v: fn(f"{CAL}.mndcg_loss")(logits=LOGITS, mixed_logits=MIXED, mixed_labels=MIXED_Y, reduction=v))

# --- clause specs ---------------------------------------------------------------------------------
# Mixed labels of two copies that really mix (lam 0.7 and 0.4), so that MRL's mask keeps pairs.
MIX_Y = np.stack([0.7 * ONEHOT + 0.3 * ONEHOT[::-1], 0.4 * ONEHOT + 0.6 * np.roll(ONEHOT, 1, axis=0)])
_PNG_DIR = tempfile.mkdtemp(prefix="jaxdyn_input_policy_")
atexit.register(shutil.rmtree, _PNG_DIR, ignore_errors=True)
_PNG = pathlib.Path(_PNG_DIR) / "reliability.png"
_METRIC = dict(logits=LOGITS, labels=LABELS)
_RANK = dict(logits=LOGITS, mixed_logits=MIXED, mixed_labels=MIX_Y)
_RANK_FLOATS = ("logits", "mixed_logits", "mixed_labels")
for name in ("expected_calibration_error", "adaptive_calibration_error", "classwise_calibration_error",
             "calibration_metrics", "reliability_bins"):
  SPECS.append(Spec(f"{CAL}.{name}", dict(_METRIC, num_bins=15), floats=("logits",), labels=("labels",), jit=True,
                    batch=("logits", "labels"), numbers=("num_bins",)))
SPECS.append(Spec(f"{CAL}.adaptive_calibration_error", dict(_METRIC, num_bins=4, official_compat=True),
                  floats=("logits",), labels=("labels",), jit=True, batch=("logits", "labels")))  # authors' bins
for name in ("negative_log_likelihood", "brier_score", "accuracy"):
  SPECS.append(Spec(f"{CAL}.{name}", _METRIC, floats=("logits",), labels=("labels",), jit=True,
                    batch=("logits", "labels")))
SPECS += [
    # Host-side: a PNG is written, so non-finite logits must raise (the output has no floats).
    Spec(f"{CAL}.reliability_diagram", dict(_METRIC, path=_PNG, num_bins=15), floats=("logits",),
         labels=("labels",), batch=("logits", "labels"), numbers=("num_bins",)),
    Spec(f"{CAL}.fit_temperature", dict(_METRIC, bounds=(0.05, 20.0), num_iters=50), floats=("logits",),
         labels=("labels",), jit=True, batch=("logits", "labels"), numbers=("num_iters",),
         ranges={"bounds": st.tuples(st.floats(1e-30, 1.0), st.floats(1.0, 1e30)).filter(lambda t: t[0] < t[1])}),
    Spec(f"{CAL}.apply_temperature", dict(logits=LOGITS, temperature=2.0), floats=("logits", "temperature"),
         jit=True, batch=("logits",), empty=lambda out: np.shape(out) == (0, C), numbers=("temperature",)),
    Spec(f"{CAL}.cross_entropy_loss", _METRIC, floats=("logits",), labels=("labels",), jit=True,
         batch=("logits", "labels")),
    Spec(f"{CAL}.cross_entropy_loss", dict(logits=LOGITS, labels=ONEHOT), floats=("logits", "labels"), jit=True,
         batch=("logits", "labels")),  # soft labels
    Spec(f"{CAL}.label_smoothing_loss", dict(_METRIC, smoothing=0.1), floats=("logits",), labels=("labels",),
         jit=True, batch=("logits", "labels"), numbers=("smoothing",)),
    Spec(f"{CAL}.focal_loss", dict(_METRIC, gamma=3.0), floats=("logits",), labels=("labels",), jit=True,
         batch=("logits", "labels"), numbers=("gamma",), ranges={"gamma": st.floats(0.0, 1e30)}),
    Spec(f"{CAL}.mixup_cross_entropy_loss", dict(logits=MIXED, labels=MIX_Y), floats=("logits", "labels"),
         jit=True, batch=("logits", "labels")),
    Spec(f"{CAL}.mrl_loss", dict(_RANK, margin=2.0), floats=_RANK_FLOATS, jit=True, batch=_RANK_FLOATS,
         numbers=("margin",)),
    Spec(f"{CAL}.mrl_loss", dict(_RANK, official_compat=True, space="probs"), floats=_RANK_FLOATS, jit=True,
         batch=_RANK_FLOATS),
    Spec(f"{CAL}.mndcg_loss", _RANK, floats=_RANK_FLOATS, jit=True, batch=_RANK_FLOATS),
    Spec(f"{CAL}.mndcg_loss", dict(_RANK, reduction="none"), floats=_RANK_FLOATS, jit=True, batch=_RANK_FLOATS),
    Spec(f"{CAL}.rankmixup_loss", dict(_RANK, labels=LABELS, alpha=0.1, margin=2.0), floats=_RANK_FLOATS,
         labels=("labels",), jit=True, batch=(*_RANK_FLOATS, "labels"), numbers=("alpha", "margin")),
    Spec(f"{CAL}.rankmixup_loss", dict(_RANK, labels=LABELS, method="mrl"), labels=("labels",), jit=True),
    # jit=False: the eager call runs the same jitted mixing (there is no eager-only check to skip), and
    # tracing it again under jit recompiles the Beta sampler (seconds) for nothing new.
    Spec(f"{CAL}.sample_mixup", dict(key=KEY, inputs=LOGITS, labels=ONEHOT, num_mixes=2, alpha=1.0),
         floats=("inputs", "labels"), batch=("inputs", "labels"), numbers=("num_mixes", "alpha"),
         keys=("key",), ranges={"alpha": st.floats(1e-6, 1e6)}),
]

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{CAL}.MixupSample": "a NamedTuple of results",
    f"{CAL}.ReliabilityBins": "a NamedTuple of results",
}
