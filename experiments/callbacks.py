"""The base class of every registered callback, and its lifecycle.

1. ``__init__(**kwargs)``: the config's keyword arguments, validated here, before the workdir exists
   (a bad value is a one-line configuration error). No work, no I/O.
2. ``setup(ctx)``: once the run is built and its state restored. ``ctx`` is the
   `experiments.context.Context` the loop builds once: the resolved config, the workdir, the dataset,
   the model's graphdef, the built optimizer, the compiled train step, the metric writer and the
   current state. Callbacks read what they need from it and never import the training loop.
3. ``on_step(step)`` after every training step (``run(step)`` every ``every_steps``).
4. ``on_end()`` once after the last step; returned scalars join the results as ``final_<key>``.

Scalars a callback logs go through ``ctx.writer.write(step, {...})`` (JSONL and TensorBoard, process 0).
Callbacks observe: they must not change the training trajectory (a changed callback list resumes).
"""

from __future__ import annotations

from typing import Any

from jaxdyn import _validation


class Callback:
  """Periodic work during training; subclass it and ``@registry.register("callback", name)`` it."""

  ctx: Any = None

  def __init__(self, *, every_steps: int = 100):
    self.every_steps = _validation.check_int("every_steps", every_steps, lower=1)

  def setup(self, ctx) -> None:
    """Called once with the run's context after the state is restored."""
    self.ctx = ctx

  def on_step(self, step: int) -> None:
    if step % self.every_steps == 0:
      self.run(step)

  def run(self, step: int) -> None:
    """The periodic work; override it."""

  def on_end(self) -> dict[str, float] | None:
    """Called once after the last step; returned scalars join the results as ``final_<key>``."""
