"""Regularization techniques: functions over arrays and PyTrees, thin Flax NNX wrappers."""

from jaxdyn.regularization._multi_sample_dropout import LossFn
from jaxdyn.regularization._multi_sample_dropout import multi_sample_dropout_logits
from jaxdyn.regularization._multi_sample_dropout import multi_sample_dropout_loss
from jaxdyn.regularization._multi_sample_dropout import multi_sample_dropout_masks
from jaxdyn.regularization._multi_sample_dropout import MultiSampleDropoutHead
from jaxdyn.regularization._multi_sample_dropout import softmax_cross_entropy_loss

__all__ = [
    "LossFn",
    "MultiSampleDropoutHead",
    "multi_sample_dropout_logits",
    "multi_sample_dropout_loss",
    "multi_sample_dropout_masks",
    "softmax_cross_entropy_loss",
]
