"""Multi-sample dropout in the harness (Inoue 2019): the ``msd`` objective.

Objective ``msd`` (requires ``head_split``): the model's trunk once, its head on ``num_samples``
independent dropout masks at ``rate``, the mean of the per-mask losses
(`jaxdyn.regularization.multi_sample_dropout_loss`). The model's own dropout before the head is
bypassed (set its ``dropout_rate`` to 0 and use ``rate`` here). Training accuracy is read from the
mean of the samples' logits.

References:
  Inoue, "Multi-Sample Dropout for Accelerated Training and Better Generalization", 2019,
  https://arxiv.org/abs/1905.09788.
"""

from __future__ import annotations

import jax
from flax import nnx

from experiments.registry import register
from jaxdyn.regularization import multi_sample_dropout_loss


@register("objective", "msd", requires=("head_split",))
def multi_sample_dropout(model, batch, *, key, num_samples: int = 8, rate: float = 0.5):
  """Multi-sample dropout: the trunk once, the model's head on ``num_samples`` dropout masks."""
  h = model.features(batch["x"], train=True, key=jax.random.fold_in(key, 1))
  head_graphdef, head_params = nnx.split(model.head)
  loss, mean_logits = multi_sample_dropout_loss(
      lambda p, x: nnx.merge(head_graphdef, p)(x), head_params, h, batch["y"], key=key,
      num_samples=num_samples, rate=rate, return_mean_logits=True)
  return loss, {"logits": mean_logits}
