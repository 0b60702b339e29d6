"""SortedNet in the harness: sorted models, the sampled sub-models' objective, every sub-model's accuracy.

Models ``sorted_mlp`` (`jaxdyn.schemes.SortedMLP` on flattened inputs) and ``sorted_vit``
(`jaxdyn.schemes.SortedViT` on square images), capability ``sortable``. Objective ``sortednet``
(requires ``sortable``): `jaxdyn.schemes.sortednet_loss` over the sorted ladder
(`jaxdyn.schemes.sorted_ladder` of ``num_submodels`` along ``along``) with ``num_samples`` sub-models
accumulated per update; it logs ``submodel_index`` (the mean sampled ladder position). Callback
``submodel_eval`` (requires ``sortable``): at the end, the test accuracy of every sub-model of the
ladder from the one set of trained weights, as ``final_acc_sub<k>`` (``k = 1`` the smallest, ``n``
the full model), with ``final_min_acc``. A normally trained sorted model (objective ``ce``) with the
callback gives the accuracies of sub-models truncated from a network that was not trained sorted.

References:
  Valipour et al., "SortedNet, a Place for Every Network and Every Network in its Place", 2023,
  https://arxiv.org/abs/2309.00255.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.callbacks import Callback
from experiments.registry import register
from experiments.techniques.models import image_channels
from jaxdyn import _validation
from jaxdyn.data import eval_batches
from jaxdyn.schemes import SortedMLP, SortedViT, sorted_ladder, sortednet_loss


@register("capability", "sortable")
def is_sortable(model) -> bool:
  """a `jaxdyn.schemes.SortedMLP` or `SortedViT`: nested sub-models sliced from shared parameters"""
  return isinstance(model, (SortedMLP, SortedViT))


@register("model", "sorted_mlp", tiny={"hidden": 8, "depth": 1})
def sorted_mlp(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.schemes.SortedMLP` on flattened inputs (sub-models: leading hidden layers and units)."""
  return SortedMLP(math.prod(input_shape), num_classes, rngs=rngs, **kwargs)


@register("model", "sorted_vit", tiny={"dim": 8, "depth": 1, "num_heads": 2, "mlp_dim": 8})
def sorted_vit(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.schemes.SortedViT` on square images (sub-models: leading blocks, heads and FFN units)."""
  channels = image_channels(input_shape, "sorted_vit")
  if input_shape[0] != input_shape[1]:
    raise ValueError(f"input_shape: sorted_vit needs square images, got {tuple(input_shape)}")
  return SortedViT(channels, num_classes, image_size=input_shape[0], rngs=rngs, **kwargs)


def _ladder(model, num_submodels, along):
  return sorted_ladder(model.full_submodel, num_submodels, along=tuple(along) if isinstance(along, list) else along)


@register("objective", "sortednet", requires=("sortable",), tiny={"num_submodels": 2})
def sortednet(model, batch, *, key, num_submodels: int = 8, along=("width",), num_samples: int = 1,
              share_batch: bool = False):
  """`jaxdyn.schemes.sortednet_loss`: mean CE of ``num_samples`` uniformly sampled ladder sub-models."""
  ladder = _ladder(model, num_submodels, along)
  loss, aux = sortednet_loss(model, batch["x"], batch["y"], ladder, key, num_samples=num_samples,
                             share_batch=bool(share_batch))
  return loss, {"logits": aux["logits"], "submodel_index": jnp.mean(aux["indices"].astype(jnp.float32))}


@register("callback", "submodel_eval", requires=("sortable",), tiny={"num_submodels": 2})
class SubmodelEval(Callback):
  """At the end: test accuracy of every sub-model of the sorted ladder, from the one set of weights.

  ``on_end()`` returns ``acc_sub<k>`` for ``k = 1 .. num_submodels`` (the ladder's order, smallest
  first; the last is the full model) and ``min_acc``.
  """

  def __init__(self, *, num_submodels: int = 8, along=("width",)):
    super().__init__(every_steps=1)
    self.num_submodels = _validation.check_int("num_submodels", num_submodels, lower=1)
    if isinstance(along, str) or not isinstance(along, (tuple, list)):
      raise TypeError(f"along: must be a tuple of dimension names, got {along!r}")
    self.along = tuple(along)

  def on_step(self, step: int) -> None:
    del step

  def on_end(self) -> dict[str, float]:
    model, ds = self.ctx.model(), self.ctx.dataset
    ladder = _ladder(model, self.num_submodels, self.along)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def predict(params, rest, x):
      m = nnx.merge(graphdef, params, rest)
      return jnp.stack([jnp.argmax(m(x, train=False, submodel=s), -1) for s in ladder])

    correct, total = np.zeros(len(ladder)), 0
    for b in eval_batches(ds.eval, batch_size=self.ctx.config.eval_batch_size):
      keep = np.asarray(b["mask"]) > 0
      pred = np.asarray(predict(params, rest, jnp.asarray(b["x"])))
      correct += (pred[:, keep] == np.asarray(b["y"])[keep]).sum(1)
      total += int(keep.sum())
    accs = correct / total
    out = {f"acc_sub{k + 1}": float(a) for k, a in enumerate(accs)}
    out["min_acc"] = float(accs.min())
    return out
