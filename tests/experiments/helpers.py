"""What the harness tests share: a tiny config, a crashing callback, a NaN objective, a poisoned batch."""

from __future__ import annotations

import grain
import jax.numpy as jnp
import numpy as np

from configs import default
from experiments import callbacks, registry
from experiments.techniques.common import cross_entropy
from jaxdyn.data import _pipeline, load_dataset


def tiny(**overrides):
  """The default config at test size: a 16-unit MLP (dropout 0.1) on MNIST-1D, 20 steps of 32."""
  c = default.get_config()
  c.model, c.model_kwargs = "mlp", {"hidden": (16,), "dropout_rate": 0.1}
  c.batch_size, c.num_train_steps = 32, 20
  c.log_every_steps, c.eval_every_steps, c.checkpoint_every_steps = 5, 10, 5
  for k, v in overrides.items():
    c[k] = v
  return c


class Crash(Exception):
  """What `CrashAt` raises."""


@registry.register("callback", "crash_for_tests")
class CrashAt(callbacks.Callback):
  """Raises at ``step``, or in ``on_end`` with ``at_end=True`` (after the last checkpoint)."""

  def __init__(self, *, step: int = -1, at_end: bool = False):
    super().__init__(every_steps=1)
    self.crash_step, self.at_end = step, at_end

  def run(self, step):
    if step == self.crash_step:
      raise Crash(f"crash at {step}")

  def on_end(self):
    if self.at_end:
      raise Crash("crash after the last checkpoint")


def crash(**kw):
  """``config.callbacks`` that crash (see `CrashAt`)."""
  return ({"name": "crash_for_tests", **kw},)


@registry.register("objective", "nan_on_big_inputs_for_tests")
def nan_on_big_inputs(model, batch, *, key):
  """Cross-entropy, but NaN for a batch holding an input above 1e6 (see `poison_batch`)."""
  loss, aux = cross_entropy(model, batch, key=key)
  return jnp.where(jnp.any(batch["x"] > 1e6), jnp.nan, loss), aux


def poison_batch(monkeypatch, step: int, *, batch_size: int = 32, seed: int = 0) -> None:
  """Makes the MNIST-1D training batch of ``step`` (1-based) hold 1e7 everywhere, whenever it is read."""
  orig = _pipeline._gather
  n = len(load_dataset("mnist1d").train)
  # The example indices of that step's batch, from the pipeline's own seeded shuffle.
  idx = grain.MapDataset.range(n).shuffle(seed=seed).repeat(None).batch(batch_size, batch_fn=np.asarray)[step - 1]

  def poisoned(source, i):
    b = orig(source, i)
    return dict(b, x=np.full_like(b["x"], 1e7)) if np.array_equal(i, idx) else b

  monkeypatch.setattr(_pipeline, "_gather", poisoned)
