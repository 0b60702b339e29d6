"""Network calibration: RankMixup losses, mixup sampling, baseline losses, metrics, temperature.

A RankMixup step: clean logits z = f(x); `sample_mixup(key, x, onehot(y), num_mixes=M)` gives M
mixed copies; z~ = f(mixed inputs); `rankmixup_loss(logits=z, labels=y, mixed_logits=z~,
mixed_labels=mix.labels)`. Evaluate with `calibration_metrics` and `reliability_diagram`, and
post-hoc with `fit_temperature` / `apply_temperature`.
"""

from jaxdyn.calibration._losses import cross_entropy_loss
from jaxdyn.calibration._losses import focal_loss
from jaxdyn.calibration._losses import label_smoothing_loss
from jaxdyn.calibration._losses import mixup_cross_entropy_loss
from jaxdyn.calibration._metrics import accuracy
from jaxdyn.calibration._metrics import adaptive_calibration_error
from jaxdyn.calibration._metrics import brier_score
from jaxdyn.calibration._metrics import calibration_metrics
from jaxdyn.calibration._metrics import classwise_calibration_error
from jaxdyn.calibration._metrics import expected_calibration_error
from jaxdyn.calibration._metrics import negative_log_likelihood
from jaxdyn.calibration._metrics import reliability_bins
from jaxdyn.calibration._metrics import reliability_diagram
from jaxdyn.calibration._metrics import ReliabilityBins
from jaxdyn.calibration._mixup import MixupSample
from jaxdyn.calibration._mixup import sample_mixup
from jaxdyn.calibration._rankmixup import mndcg_loss
from jaxdyn.calibration._rankmixup import mrl_loss
from jaxdyn.calibration._rankmixup import rankmixup_loss
from jaxdyn.calibration._temperature import apply_temperature
from jaxdyn.calibration._temperature import fit_temperature

__all__ = [
    "MixupSample",
    "ReliabilityBins",
    "accuracy",
    "adaptive_calibration_error",
    "apply_temperature",
    "brier_score",
    "calibration_metrics",
    "classwise_calibration_error",
    "cross_entropy_loss",
    "expected_calibration_error",
    "fit_temperature",
    "focal_loss",
    "label_smoothing_loss",
    "mixup_cross_entropy_loss",
    "mndcg_loss",
    "mrl_loss",
    "negative_log_likelihood",
    "rankmixup_loss",
    "reliability_bins",
    "reliability_diagram",
    "sample_mixup",
]
