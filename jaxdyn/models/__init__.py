"""Reference models (Flax NNX). Each maps inputs to logits and, on request, penultimate features."""

from jaxdyn.models._base import Classifier, HeadSplit, Model, is_training
from jaxdyn.models._cnn import CNN
from jaxdyn.models._mlp import MLP
from jaxdyn.models._registry import MODELS, create_model, register_model
from jaxdyn.models._resnet import ResNet, ResNet18, ResNet50
from jaxdyn.models._vit import ViT

__all__ = [
    "CNN",
    "Classifier",
    "HeadSplit",
    "Model",
    "is_training",
    "MLP",
    "MODELS",
    "ResNet",
    "ResNet18",
    "ResNet50",
    "ViT",
    "create_model",
    "register_model",
]
