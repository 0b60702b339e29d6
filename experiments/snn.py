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

Callback ``train_step_memory``: ``on_end()`` compiles the harness's own train step for this config and
returns XLA's ``memory_analysis()`` sizes (``temp_bytes``, ``argument_bytes``, ``output_bytes``), which
become ``final_temp_bytes`` etc. in results.json.

References:
  Meng et al., "Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural
  Networks", ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from experiments.callbacks import Callback
from experiments.registry import register
from jaxdyn.models import register_model
from jaxdyn.snn import SpikingMLP, SpikingPreActResNet18, SpikingVGG11, spiking_loss


def _spiking_mlp(shape, num_classes, rngs, **kw):
  return SpikingMLP(math.prod(shape), num_classes, rngs=rngs, **kw)


def _image(ctor, name):
  def build(shape, num_classes, rngs, **kw):
    if len(shape) != 3:
      raise ValueError(f"model: {name} needs (height, width, channels) inputs, the dataset gives {tuple(shape)}")
    return ctor(shape[-1], num_classes, rngs=rngs, **kw)
  return build


register_model("spiking_mlp", _spiking_mlp)
register_model("spiking_vgg11", _image(SpikingVGG11, "spiking_vgg11"))
register_model("spiking_resnet18", _image(SpikingPreActResNet18, "spiking_resnet18"))


@register("objective", "sltt")
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
  """``on_end()``: XLA's memory analysis of this config's compiled train step (bytes, deterministic).

  The step is rebuilt exactly as `experiments.train.train_and_evaluate` builds it (objective,
  optimizer, transforms) and lowered for one global batch, so the numbers compare arms of a claim.
  """

  def __init__(self, ctx):
    super().__init__(ctx, every_steps=1)

  def on_step(self, step: int) -> None:
    del step

  def on_end(self) -> dict[str, float]:
    from experiments import registry, train  # pylint: disable=g-import-not-at-top  (avoids a cycle)

    c = self.ctx.config
    tx = train.build_optimizer(c, c.num_train_steps)
    objective = registry.get("objective", c.objective)
    kwargs = train.objective_kwargs(c, objective, len(self.ctx.dataset.train))
    step = train.make_train_step(self.ctx.graphdef, tx, objective, kwargs,
                                 nonfinite=c.nonfinite)
    abstract = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)  # noqa: E731
    state = jax.tree.map(abstract, self.ctx.state)
    batch = {"x": jax.ShapeDtypeStruct((c.batch_size, *self.ctx.dataset.input_shape), jnp.float32),
             "y": jax.ShapeDtypeStruct((c.batch_size,), jnp.int32)}
    m = jax.jit(step).lower(state, batch).compile().memory_analysis()
    return {"temp_bytes": float(m.temp_size_in_bytes), "argument_bytes": float(m.argument_size_in_bytes),
            "output_bytes": float(m.output_size_in_bytes)}
