"""Per-step callbacks: the base class every registered callback derives from."""

from __future__ import annotations


class Callback:
  """Called after every training step with the host-side step number.

  Subclass it, register it with ``@registry.register("callback", name)``, and name it in
  ``config.callbacks`` as ``{"name": name, **kwargs}``; ``kwargs`` go to ``__init__`` after the context
  (:class:`experiments.train.Context`), which gives the config, workdir, dataset, metric writer and the
  current train state (``ctx.state``, ``ctx.model()``, ``ctx.features(x)``, ``ctx.eval_outputs()``).
  Scalars it logs go through ``ctx.writer.write(step, {...})`` (JSONL and TensorBoard, process 0).
  """

  def __init__(self, ctx, *, every_steps: int = 100):
    if every_steps < 1:
      raise ValueError(f"every_steps: must be >= 1, got {every_steps}")
    self.ctx = ctx
    self.every_steps = every_steps

  def on_step(self, step: int) -> None:
    if step % self.every_steps == 0:
      self.run(step)

  def run(self, step: int) -> None:
    """The periodic work; override it."""

  def on_end(self) -> dict[str, float] | None:
    """Called once after the last step; returned scalars join the results as ``final_<key>``."""
