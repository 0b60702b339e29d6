"""Harness overhead: steps/s of ``train_and_evaluate`` against a minimal hand-written flax+optax loop.

Both train the default config's model (1-D CNN on MNIST-1D, batch 128, Adam with a cosine schedule) on
batches from the same grain pipeline; the harness also logs, evaluates and checkpoints at the default
config's cadence. Each side's time is measured over the same window of steps (after compilation),
alternating the two sides for several repetitions; the medians are compared.

    python benchmarks/loop_overhead.py [--steps 1500 --reps 3]

Last line: ``loop_overhead_ratio=<harness time / minimal time>`` (goal <= 1.10).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import optax
from absl import logging
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: configs/ and experiments/
from configs import default  # noqa: E402
from experiments import callbacks, registry  # noqa: E402
from experiments.optim import make_schedule  # noqa: E402
from experiments.train import train_and_evaluate  # noqa: E402
from jaxdyn.data import load_dataset, train_pipeline  # noqa: E402


@registry.register("callback", "window_timer_for_benchmark")
class WindowTimer(callbacks.Callback):
  """Records the wall time between the end of step ``start`` and the end of step ``stop``."""

  times: dict[str, float] = {}

  def __init__(self, *, start: int, stop: int):
    super().__init__(every_steps=1)
    self.start, self.stop = start, stop

  def run(self, step):
    if step in (self.start, self.stop):
      jax.block_until_ready(self.ctx.state)
      WindowTimer.times[step] = time.perf_counter()


def harness_seconds(config, start, stop) -> float:
  config.callbacks = ({"name": "window_timer_for_benchmark", "start": start, "stop": stop},)
  config.progress_every_seconds = 1e9
  with tempfile.TemporaryDirectory() as wd:
    train_and_evaluate(config, wd)
  return WindowTimer.times[stop] - WindowTimer.times[start]


def minimal_seconds(config, start, stop) -> float:
  ds = load_dataset(config.dataset)
  model = registry.get("model", config.model)(tuple(ds.input_shape), ds.num_classes, nnx.Rngs(params=config.seed),
                                              **config.model_kwargs)
  graphdef, params = nnx.split(model, nnx.Param)
  lr = make_schedule("cosine", base=config.optimizer.learning_rate, total_steps=config.num_train_steps)
  tx = optax.adam(lr)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = nnx.merge(graphdef, p)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  it = iter(train_pipeline(ds.train, batch_size=config.batch_size, seed=config.seed))
  t = {}
  for s in range(1, stop + 1):
    b = next(it)
    params, opt_state, loss = step(params, opt_state, b["x"], b["y"])
    if s in (start, stop):
      jax.block_until_ready(params)
      t[s] = time.perf_counter()
  return t[stop] - t[start]


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=1500)
  p.add_argument("--reps", type=int, default=3)
  args = p.parse_args()
  logging.set_verbosity(logging.WARNING)
  config = default.get_config()
  config.num_train_steps = args.steps
  start, stop = 200, args.steps
  harness, minimal = [], []
  for r in range(args.reps):
    minimal.append(minimal_seconds(config, start, stop))
    harness.append(harness_seconds(config, start, stop))
    print(f"rep {r}: minimal {minimal[-1]:.3f} s, harness {harness[-1]:.3f} s "
          f"({stop - start} steps each)", flush=True)
  h, m = statistics.median(harness), statistics.median(minimal)
  n = stop - start
  print(f"\n| loop | median s for {n} steps | steps/s |\n|---|---|---|")
  print(f"| minimal flax+optax | {m:.3f} | {n / m:.1f} |\n| jaxdyn harness | {h:.3f} | {n / h:.1f} |")
  print(f"(harness window includes its logging every {config.log_every_steps}, eval every "
        f"{config.eval_every_steps} and checkpoint every {config.checkpoint_every_steps} steps)")
  print(f"loop_overhead_ratio={h / m:.3f}")


if __name__ == "__main__":
  main()
