"""Multi-sample dropout overhead: train-step time and FLOPs of a small CNN with M = 8 against M = 1.

Only the head (dropout + linear + loss) is repeated M times; the conv trunk runs once, so the step
time should barely grow with M. Both steps are jitted, compiled and warmed up first, then timed
interleaved (M = 1, M = 8, M = 1, ...) and compared by their medians, so machine load affects both
alike. FLOPs come from XLA's cost analysis of the compiled step.

Run: .venv/bin/python benchmarks/msd_overhead.py   (the last line is machine-readable)
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import optax
from flax import nnx

from jaxdyn.regularization import MultiSampleDropoutHead


class SmallCNN(nnx.Module):
  """Three 3x3 conv layers with max pooling, global average pooling, then the MSD head."""

  def __init__(self, *, num_samples: int, rate: float = 0.5, num_classes: int = 10,
               rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
    self.conv3 = nnx.Conv(64, 128, (3, 3), rngs=rngs)
    self.head = MultiSampleDropoutHead(128, num_classes, num_samples=num_samples, rate=rate,
                                       rngs=rngs)

  def features(self, x):  # (B, 28, 28, 1) -> (B, 128): the trunk, run once per step.
    x = nnx.max_pool(jax.nn.relu(self.conv1(x)), (2, 2), (2, 2))  # 14x14x32
    x = nnx.max_pool(jax.nn.relu(self.conv2(x)), (2, 2), (2, 2))  # 7x7x64
    x = jax.nn.relu(self.conv3(x))  # 7x7x128
    return x.mean(axis=(1, 2))

  def __call__(self, x):  # Evaluation: no dropout.
    return self.head(self.features(x))


def make_train_step(graphdef, tx):
  """Forward + backward + optax update over the split state; the key is a raw jax.random key."""

  def step(params, opt_state, x, y, key):
    def loss_fn(p):
      model = nnx.merge(graphdef, p)
      return model.head.loss(model.features(x), y, key=key)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=40, help="interleaved timings per M")
  parser.add_argument("--steps_per_timing", type=int, default=1)
  args = parser.parse_args()

  kx, ky = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (args.batch, 28, 28, 1))
  y = jax.random.randint(ky, (args.batch,), 0, 10)
  tx = optax.adam(1e-3)

  runs = {}
  for m in (1, 8):
    graphdef, params = nnx.split(SmallCNN(num_samples=m, rngs=nnx.Rngs(0)))  # Same init for both.
    opt_state = tx.init(params)
    step = make_train_step(graphdef, tx)
    t0 = time.perf_counter()
    compiled = step.lower(params, opt_state, x, y, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    runs[m] = dict(step=compiled, state=(params, opt_state), flops=float(cost["flops"]),
                   compile_s=compile_s, times=[])

  def run_steps(m, key):
    r = runs[m]
    params, opt_state = r["state"]
    for i in range(args.steps_per_timing):
      params, opt_state, loss = r["step"](params, opt_state, x, y, jax.random.fold_in(key, i))
    jax.block_until_ready((params, opt_state, loss))
    r["state"] = (params, opt_state)
    return loss

  for m in runs:  # Warm-up after compilation.
    run_steps(m, jax.random.key(2))
  for rep in range(args.repeats):
    for m in (1, 8) if rep % 2 == 0 else (8, 1):
      t0 = time.perf_counter()
      run_steps(m, jax.random.key(100 + rep))
      runs[m]["times"].append((time.perf_counter() - t0) / args.steps_per_timing)

  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), batch {args.batch}, "
        f"28x28x1, 3 conv + GAP + MSD head (128 -> 10), Adam; {args.repeats} interleaved timings "
        f"of {args.steps_per_timing} steps each")
  print(f"{'M':>3} {'median ms/step':>15} {'min ms/step':>12} {'GFLOP/step':>11} {'compile s':>10}")
  for m, r in runs.items():
    print(f"{m:>3} {1e3 * statistics.median(r['times']):>15.2f} {1e3 * min(r['times']):>12.2f} "
          f"{r['flops'] / 1e9:>11.4f} {r['compile_s']:>10.2f}")
  step_ratio = statistics.median(runs[8]["times"]) / statistics.median(runs[1]["times"])
  paired = statistics.median(a / b for a, b in zip(runs[8]["times"], runs[1]["times"]))
  print(f"median of the {args.repeats} paired ratios (M = 8 / M = 1, adjacent timings): "
        f"{paired:.3f}")
  flop_ratio = runs[8]["flops"] / runs[1]["flops"]
  print(f"msd_step_ratio_M8_M1={step_ratio:.3f} msd_flop_ratio_M8_M1={flop_ratio:.3f}")


if __name__ == "__main__":
  main()
