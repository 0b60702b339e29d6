"""Optimizers and schedules by name, for configs."""

from __future__ import annotations

import optax

from experiments.registry import register


@register("optimizer", "sgd")
def sgd(learning_rate, *, momentum: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0):
  """SGD with (Nesterov) momentum and coupled L2 weight decay, as in the papers' CIFAR recipes."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
      optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov),
  )


@register("optimizer", "adam")
def adam(learning_rate, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
  return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)


@register("optimizer", "adamw")
def adamw(learning_rate, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 1e-4):
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


@register("transform", "clip_by_global_norm")
def clip_by_global_norm(tx, *, max_norm: float):
  if max_norm <= 0:
    raise ValueError(f"max_norm: must be > 0, got {max_norm}")
  return optax.chain(optax.clip_by_global_norm(max_norm), tx)


SCHEDULES = ("constant", "cosine", "warmup_cosine", "piecewise")


def make_schedule(name: str, *, base: float, total_steps: int, warmup_steps: int = 0,
                  boundaries=(), decay: float = 0.1):
  """Learning-rate schedule: constant, cosine, warmup_cosine, or piecewise (x decay at boundaries)."""
  if name == "constant":
    return optax.constant_schedule(base)
  if name == "cosine":
    return optax.cosine_decay_schedule(base, max(total_steps, 1))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, base, warmup_steps, max(total_steps, warmup_steps + 1))
  if name == "piecewise":
    return optax.piecewise_constant_schedule(base, {int(b): decay for b in boundaries})
  raise ValueError(f"optimizer.schedule: unknown {name!r}; valid are {list(SCHEDULES)}")
