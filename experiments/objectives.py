"""Training objectives registered with the harness."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from experiments.registry import register


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
