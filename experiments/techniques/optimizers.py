"""Optimizers and generic gradient transforms by name, for ``config.optimizer`` and ``config.transforms``."""

from __future__ import annotations

import optax

from experiments.registry import register
from jaxdyn import _validation


@register("optimizer", "sgd")
def sgd(learning_rate, *, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0):
  """SGD with (Nesterov) momentum and coupled L2 weight decay, as in the papers' CIFAR recipes."""
  momentum = _validation.check_real("momentum", momentum, lower=0.0, upper=1.0, upper_open=True)
  weight_decay = _validation.check_real("weight_decay", weight_decay, lower=0.0)
  return optax.chain(
      optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
      optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov),
  )


@register("optimizer", "adam")
def adam(learning_rate, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
  """Adam (Kingma and Ba, 2015)."""
  for name, v in (("b1", b1), ("b2", b2)):
    _validation.check_real(name, v, lower=0.0, upper=1.0, upper_open=True)
  return optax.adam(learning_rate, b1=b1, b2=b2, eps=_validation.check_real("eps", eps, lower=0.0, lower_open=True))


@register("optimizer", "adamw")
def adamw(learning_rate, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 1e-4):
  """AdamW: Adam with decoupled weight decay (Loshchilov and Hutter, 2019)."""
  for name, v in (("b1", b1), ("b2", b2)):
    _validation.check_real(name, v, lower=0.0, upper=1.0, upper_open=True)
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=_validation.check_real("eps", eps, lower=0.0, lower_open=True),
                     weight_decay=_validation.check_real("weight_decay", weight_decay, lower=0.0))


@register("transform", "clip_by_global_norm", tiny={"max_norm": 1.0})
def clip_by_global_norm(tx, *, max_norm: float):
  """Clips the gradient to a global norm before the optimizer (``optax.clip_by_global_norm``)."""
  max_norm = _validation.check_real("max_norm", max_norm, lower=0.0, lower_open=True)
  return optax.chain(optax.clip_by_global_norm(max_norm), tx)
