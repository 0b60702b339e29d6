"""Training objectives registered with the harness."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from experiments.registry import register
from jaxdyn.regularization import multi_sample_dropout_loss


@register("objective", "ce")
def cross_entropy(model, batch, *, key, label_smoothing: float = 0.0):
  """Cross-entropy of the model's logits (dropout from ``key``), with optional label smoothing."""
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f"label_smoothing: must be in [0, 1), got {label_smoothing}")
  logits = model(batch["x"], train=True, key=key)
  num_classes = logits.shape[-1]
  targets = optax.smooth_labels(jax.nn.one_hot(batch["y"], num_classes), label_smoothing)
  loss = optax.softmax_cross_entropy(logits, targets).mean()
  return loss, {"logits": logits}


def eval_metrics(model, batch):
  """Masked sums of loss and correct predictions on an eval batch (model in inference mode)."""
  logits = model(batch["x"], train=False)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
  correct = (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
  m = batch["mask"]
  return {"loss": jnp.sum(loss * m), "correct": jnp.sum(correct * m), "count": jnp.sum(m)}


@register("objective", "msd")
def multi_sample_dropout(model, batch, *, key, num_samples: int = 8, rate: float = 0.5):
  """Multi-sample dropout (Inoue 2019): the trunk once, the model's head on ``num_samples`` masks.

  Works with any jaxdyn model (each has ``features`` and ``head``); the model's own dropout before the
  head is bypassed (set its ``dropout_rate`` to 0 and use ``rate`` here). Training accuracy is read
  from the mean of the samples' logits.
  """
  h = model.features(batch["x"], train=True)
  head_graphdef, head_params = nnx.split(model.head)
  loss, mean_logits = multi_sample_dropout_loss(
      lambda p, x: nnx.merge(head_graphdef, p)(x), head_params, h, batch["y"], key=key,
      num_samples=num_samples, rate=rate, return_mean_logits=True)
  return loss, {"logits": mean_logits}
