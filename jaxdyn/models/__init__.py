"""Reference models (Flax NNX) and the model contract.

Each model maps inputs to logits and, on request, penultimate features (`Model`); the classifiers here
also split at their head (`HeadSplit`). ``model.train()`` / ``model.eval()`` switch dropout and
BatchNorm as NNX's own modules do (`is_training`). `conv2d` / `Conv2d` is the convolution every model
here uses, lowered per backend and shape (`conv_lowering`). `Transformer` is a decoder-only language
model (rotary positions, one pluggable attention function per layer, a position-addressed `KVCache`)
with `generate` (jitted sampling with the cache) and `token_log_probs`. `CLIP` (an `ImageEncoder` and a
`TextEncoder`) and `Captioner` (an image prefix before a `Transformer`) are small image-text models.
"""

from jaxdyn.models._base import Classifier, HeadSplit, Model, is_training
from jaxdyn.models._clip import CLIP, Captioner, ImageEncoder, TextEncoder
from jaxdyn.models._cnn import CNN
from jaxdyn.models._conv import LOWERINGS, Conv2d, conv2d, conv_lowering
from jaxdyn.models._detector import TinyDetector
from jaxdyn.models._dit import DiT
from jaxdyn.models._mlp import MLP
from jaxdyn.models._resnet import ResNet, ResNet18, ResNet50
from jaxdyn.models._temporal_detector import TemporalDetector
from jaxdyn.models._transformer import (KVCache, LayerKVCache, Transformer, causal_attention, generate,
                                        token_log_probs)
from jaxdyn.models._vit import ViT
from jaxdyn.models._vivit import ViViT

__all__ = [
    "CLIP",
    "CNN",
    "Captioner",
    "Classifier",
    "Conv2d",
    "DiT",
    "HeadSplit",
    "ImageEncoder",
    "KVCache",
    "LOWERINGS",
    "LayerKVCache",
    "MLP",
    "Model",
    "ResNet",
    "ResNet18",
    "ResNet50",
    "TemporalDetector",
    "TextEncoder",
    "TinyDetector",
    "Transformer",
    "ViT",
    "ViViT",
    "causal_attention",
    "conv2d",
    "conv_lowering",
    "generate",
    "is_training",
    "token_log_probs",
]
