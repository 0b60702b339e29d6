"""Imports every module that registers objectives, optimizers, transforms or callbacks."""

from experiments import objectives  # noqa: F401  (ce, msd)
from experiments import optimizers  # noqa: F401
from experiments import calibration  # noqa: F401  (label_smoothing, focal, mixup, rankmixup; calibration callback)
from experiments import bayes  # noqa: F401  (SSVI: bayes_mlp, bayes_cnn, bayes_resnet18, vi, sgd_vi, ssvi, bayes_eval)
from experiments import snn  # noqa: F401  (spiking models; sltt objective; train_step_memory callback)
from experiments import dynamics  # noqa: F401  (dse callback: DSE / DSMI of penultimate features)
