"""What every config can use whatever its family: the ``ce`` objective and the base capabilities.

- objective ``ce``: cross-entropy of the model's logits, optionally label-smoothed.
- capability ``model``: any `jaxdyn.models.Model` (logits, and penultimate features on request).
"""

from __future__ import annotations

import jax
import optax

from experiments.registry import register
from jaxdyn import _validation
from jaxdyn.models import Model


@register("capability", "model")
def is_model(model) -> bool:
  """logits from model(x, train=, key=), penultimate features with return_features=True"""
  return isinstance(model, Model)


@register("objective", "ce")
def cross_entropy(model, batch, *, key, label_smoothing: float = 0.0):
  """Cross-entropy of the model's logits (dropout from ``key``), with optional label smoothing."""
  label_smoothing = _validation.check_real("label_smoothing", label_smoothing, lower=0.0, upper=1.0,
                                           upper_open=True)
  logits = model(batch["x"], train=True, key=key)
  targets = optax.smooth_labels(jax.nn.one_hot(batch["y"], logits.shape[-1]), label_smoothing)
  loss = optax.softmax_cross_entropy(logits, targets).mean()
  return loss, {"logits": logits}
