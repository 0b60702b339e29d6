"""Transformer training schemes in the harness: Experts Weights Averaging (Huang, Ye et al., 2023).

Model ``vit_moe``: `jaxdyn.models.ViT` with MoE feed-forward layers (`jaxdyn.schemes.MoEFeedForward`,
random uniform token partition) in ``moe_layers`` (default: every other block from the second).
Transform ``ewa`` (requires ``moe``): `jaxdyn.schemes.experts_weights_averaging` chained after the
configured optimizer, with the share rate rising linearly to ``share_rate`` over ``warmup_fraction``
of the run. The harness evaluates the model in inference mode, where each MoE computes its mean
expert: exactly the plain ViT that `jaxdyn.schemes.collapse_experts` exports, at its cost. A naive
MoE (no ``ewa``) is evaluated as it trained with ``model_kwargs.moe_inference="partition"``.

References:
  Huang, Ye, Huang, Li, Chen, Chen, Ouyang, "Experts Weights Averaging: A New General Training Scheme
  for Vision Transformers", 2023, https://arxiv.org/abs/2308.06093.
"""

from __future__ import annotations

import optax
from flax import nnx

from experiments.registry import register
from experiments.techniques.models import image_channels
from jaxdyn import _validation
from jaxdyn.models import ViT
from jaxdyn.schemes import MoEFeedForward, experts_weights_averaging, share_rate_warmup


@register("capability", "moe")
def has_moe(model) -> bool:
  """MoE feed-forward layers (jaxdyn.schemes.MoEFeedForward)"""
  return any(isinstance(m, MoEFeedForward) for _, m in nnx.iter_modules(model))


@register("model", "vit_moe", tiny={"depth": 2, "dim": 16, "num_heads": 2, "num_experts": 2})
def vit_moe(input_shape, num_classes, rngs, *, depth: int = 4, num_experts: int = 4, moe_layers=None, **kwargs):
  """`jaxdyn.models.ViT` whose blocks ``moe_layers`` (default 1, 3, ...) have ``num_experts``-expert MoE FFNs."""
  channels = image_channels(input_shape, "vit_moe")
  if input_shape[0] != input_shape[1]:
    raise ValueError(f"input_shape: vit_moe needs square images, got {tuple(input_shape)}")
  depth = _validation.check_int("depth", depth, lower=1)
  layers = tuple(range(1, depth, 2)) if moe_layers is None else tuple(moe_layers)
  return ViT(channels, num_classes, image_size=input_shape[0], depth=depth, num_experts=num_experts,
             moe_layers=layers, rngs=rngs, **kwargs)


@register("transform", "ewa", requires=("moe",), tiny={"share_rate": 0.3})
def ewa_transform(tx, *, share_rate: float, total_steps: int, warmup_fraction: float = 0.0):
  """`jaxdyn.schemes.experts_weights_averaging` after the optimizer (share rate warm-up over a fraction)."""
  share_rate = _validation.check_real("share_rate", share_rate, lower=0.0, upper=1.0)
  warmup_fraction = _validation.check_real("warmup_fraction", warmup_fraction, lower=0.0, upper=1.0)
  warmup = int(round(warmup_fraction * total_steps))
  rate = share_rate_warmup(share_rate, warmup) if warmup > 0 else share_rate
  return optax.chain(tx, experts_weights_averaging(rate))
