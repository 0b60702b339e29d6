"""The learning-rate schedule and the optimizer a config describes (registered pieces, composed)."""

from __future__ import annotations

from typing import Any

import optax

from experiments import config_schema, registry

# Schedules whose values depend on the run's length (a resume that changes num_train_steps changes them).
DECAYING = ("cosine", "warmup_cosine")


def make_schedule(name: str, *, base: float, total_steps: int, warmup_steps: int = 0,
                  boundaries=(), decay: float = 0.1) -> optax.Schedule:
  """Learning-rate schedule: constant, cosine, warmup_cosine, or piecewise (x decay at boundaries)."""
  if name == "constant":
    return optax.constant_schedule(base)
  if name == "cosine":
    return optax.cosine_decay_schedule(base, max(total_steps, 1))
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, base, warmup_steps, max(total_steps, warmup_steps + 1))
  if name == "piecewise":
    return optax.piecewise_constant_schedule(base, {int(b): decay for b in boundaries})
  raise ValueError(f"schedule: must be one of {', '.join(config_schema.SCHEDULES)}, got {name!r}")


def schedule(config) -> optax.Schedule:
  opt = config.optimizer
  return make_schedule(opt.schedule, base=opt.learning_rate, total_steps=config.num_train_steps,
                       warmup_steps=opt.warmup_steps, boundaries=tuple(opt.boundaries), decay=opt.decay)


def transform_kwargs(config) -> list[tuple[str, dict[str, Any]]]:
  """``config.transforms`` as ``(name, kwargs)``, with ``total_steps`` (``config.num_train_steps``) and
  ``seed`` (``config.seed``) filled in where a transform takes them and the config does not set them
  (so ``--config.num_train_steps`` moves its schedule and each seed of a claim draws its own masks)."""
  run = {"total_steps": config.num_train_steps, "seed": config.seed}
  out = []
  for name, kwargs in config_schema.entries(config, "transform"):
    for n in registry.entry("transform", name).run_values():
      kwargs.setdefault(n, run[n])
    out.append((name, kwargs))
  return out


def build_optimizer(config) -> optax.GradientTransformation:
  """The configured optimizer over `schedule`, wrapped by each of ``config.transforms`` in order.

  Errors name the config key they come from (`config_schema.ConfigError`).
  """
  opt = config.optimizer
  kwargs = dict(opt.kwargs)
  try:
    tx = registry.get("optimizer", opt.name)(schedule(config), **kwargs)
  except (TypeError, ValueError) as e:
    raise config_schema.from_library_error("config.optimizer.kwargs", e, kwargs) from None
  for i, (name, kwargs) in enumerate(transform_kwargs(config)):
    try:
      tx = registry.get("transform", name)(tx, **kwargs)
    except (TypeError, ValueError) as e:
      raise config_schema.from_library_error(f"config.transforms[{i}]", e, kwargs, piece=name) from None
  return tx
