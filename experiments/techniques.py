"""Imports every module that registers objectives, optimizers, transforms or callbacks."""

from experiments import objectives  # noqa: F401
from experiments import optimizers  # noqa: F401
