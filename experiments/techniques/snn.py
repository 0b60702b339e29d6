"""Spiking networks in the harness: models, the SLTT/BPTT objective, and a train-step memory callback.

Models (``config.model``; keyword arguments from ``config.model_kwargs``, T is ``num_steps``):

- ``spiking_mlp``: `jaxdyn.snn.SpikingMLP` on flattened inputs.
- ``spiking_vgg11``: `jaxdyn.snn.SpikingVGG11` on (H, W, C) images.
- ``spiking_resnet18``: `jaxdyn.snn.SpikingPreActResNet18` on (H, W, C) images.

Evaluation calls ``model(x, train=False)``: all T steps, the mean output over steps as logits.

Objective ``sltt`` (``config.objective_kwargs``: ``mode`` bptt | sltt | sltt_k, ``k``, ``lam_l``,
``unroll``): the authors' loss (1/T) sum_t [(1 - lam_L) CE(o_t, y) + lam_L MSE(o_t, 1)] through
`jaxdyn.snn.spiking_loss`. In ``sltt``/``sltt_k`` the gradient is accumulated inside the forward scan
by a `jax.custom_vjp`, which plugs into the harness's ``jax.value_and_grad`` unchanged. BatchNorm
statistics, updated at each of the T steps, come back through the model's non-parameter state.

Capability ``spiking``: the model is a `jaxdyn.snn.SpikingClassifier` (what ``sltt`` needs).

Callback ``train_step_memory``: ``on_end()`` returns XLA's ``memory_analysis()`` sizes of the run's own
compiled train step (``temp_bytes``, ``argument_bytes``, ``output_bytes``), which become
``final_temp_bytes`` etc. in results.json.

References:
  Meng et al., "Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural
  Networks", ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
"""

from __future__ import annotations

import math

from experiments.callbacks import Callback
from experiments.registry import register
from experiments.techniques.models import image_channels
from jaxdyn.snn import SpikingClassifier, SpikingMLP, SpikingPreActResNet18, SpikingVGG11, spiking_loss

_TINY_IMAGE = {"num_steps": 2, "width": 2}


@register("capability", "spiking")
def is_spiking(model) -> bool:
  """a jaxdyn.snn.SpikingClassifier: T time steps with an explicit membrane carry"""
  return isinstance(model, SpikingClassifier)


@register("model", "spiking_mlp", tiny={"hidden": (8,), "num_steps": 2})
def spiking_mlp(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.snn.SpikingMLP` on flattened inputs."""
  return SpikingMLP(math.prod(input_shape), num_classes, rngs=rngs, **kwargs)


@register("model", "spiking_vgg11", tiny=_TINY_IMAGE)
def spiking_vgg11(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.snn.SpikingVGG11` on (H, W, C) images."""
  return SpikingVGG11(image_channels(input_shape, "spiking_vgg11"), num_classes, rngs=rngs, **kwargs)


@register("model", "spiking_resnet18", tiny=_TINY_IMAGE)
def spiking_resnet18(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.snn.SpikingPreActResNet18` on (H, W, C) images."""
  return SpikingPreActResNet18(image_channels(input_shape, "spiking_resnet18"), num_classes, rngs=rngs, **kwargs)


@register("objective", "sltt", requires=("spiking",))
def sltt(model, batch, *, key, mode: str = "sltt", k: int | None = None, lam_l: float = 0.05,
         unroll: int | bool = 1):
  """Spiking-network loss trained with BPTT, SLTT or SLTT-K (`jaxdyn.snn.spiking_loss`).

  Training accuracy is read from the mean step output (argmax equal to the authors' sum over steps).
  """
  loss, logits = spiking_loss(model, batch["x"], batch["y"], key=key, mode=mode, k=k, lam_l=lam_l,
                              unroll=unroll)
  return loss, {"logits": logits}


@register("callback", "train_step_memory")
class TrainStepMemory(Callback):
  """``on_end()``: XLA's memory analysis of the run's compiled train step (bytes, deterministic)."""

  def __init__(self):
    super().__init__(every_steps=1)

  def on_step(self, step: int) -> None:
    del step

  def on_end(self) -> dict[str, float]:
    m = self.ctx.train_step.memory_analysis()
    return {"temp_bytes": float(m.temp_size_in_bytes), "argument_bytes": float(m.argument_size_in_bytes),
            "output_bytes": float(m.output_size_in_bytes)}
