"""Convolution speed on CPU: spiking VGG-11 SLTT / BPTT and ResNet-18 train steps against the sgemm rate.

Measured side by side in one run:
1. the machine's float32 sgemm rate: a jitted 2048 x 2048 matmul, 2 * 2048^3 FLOPs per call;
2. the per-layer table: every distinct convolution of the spiking VGG-11 (batch 32, inside a two-step
   `jax.lax.scan`, as in its time loop) and of ResNet-18 (batch 128, at the top level), forward and
   backward, under each lowering of `jaxdyn.models.conv2d` (``xla`` is what ``nnx.Conv`` runs;
   ``winograd`` on the 3x3 stride-1 layers only), with the one `jaxdyn.models.conv_lowering` picks
   marked; the VGG rows also time the layer's BatchNorm
   (batch statistics) and LIF neuron, forward and backward;
3. the spiking VGG-11 (width 64, 32x32x3 input, batch 32, T = 6) SLTT and BPTT train steps, alternated,
   and the temp memory XLA reports for each compiled step;
4. the ResNet-18 (CIFAR stem, batch 128) train step.

FLOPs are counted by hand (``cost_analysis`` counts a scan body once): a convolution's forward is
2 B H' W' kh kw C_in C_out, a dense layer's 2 B d_in d_out; a train step does the forward, the kernel
gradient and the input gradient (none for the first layer, whose input needs no gradient), i.e. 3x
the forward less the first layer's input gradient; the spiking steps do this at each of the T steps.
A rate is FLOPs / step time (hand-counted direct-convolution FLOPs: Winograd layers multiply 2.25x
less, so its rate can pass the sgemm rate). "Over sgemm" is paired: each timed round of a whole
step is preceded by an sgemm measurement, and the ratio is the median over rounds of the round's
rate over its sgemm rate (`paired_ratio`; this machine's speed drifts by tens of percent within
minutes).

Measured on a 2-core machine (``.venv/bin/python benchmarks/conv_speed.py``), before and after the
``winograd`` lowering (2026-12-02; before: im2col for all of ResNet-18's 3x3 layers):

  =============================  =============  ===================
  goal                           before         after
  =============================  =============  ===================
  vgg11_sltt_rate_over_sgemm     0.82 (>= 0.5)  0.81
  resnet18_rate_over_sgemm       0.56-0.63      0.73 (0.80, 0.84
                                                with --skip layers)
  vgg11_sltt_over_bptt_time      0.92 (< 0.95)  0.91
  vgg11_sltt_over_bptt_mem_T6    0.293 (<= 0.3) 0.295
  =============================  =============  ===================

Goals (issue 14): vgg11_sltt_rate_over_sgemm >= 0.5, resnet18_rate_over_sgemm >= 0.7,
vgg11_sltt_over_bptt_time < 0.95, vgg11_sltt_over_bptt_mem_T6 <= 0.3.

Run: .venv/bin/python benchmarks/conv_speed.py [--reps 3] [--skip layers] (the last lines are
machine-readable).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed  # noqa: E402
from sltt_memory import make_step  # noqa: E402  (the SLTT benchmark's train step)

from jaxdyn import models, snn  # noqa: E402

SECTIONS = ("sgemm", "layers", "vgg", "resnet")


def sgemm_rate(reps: int) -> float:
  n = 2048
  a = jax.random.normal(jax.random.key(0), (n, n))
  b = jax.random.normal(jax.random.key(1), (n, n))
  return 2 * n**3 / timed(jax.jit(jnp.matmul), a, b, reps=max(reps, 5))


def paired_ratio(step_seconds: list[float], sgemm_rates: list[float], flops: float) -> float:
  """Median over rounds of (FLOPs / the round's step time) / the sgemm rate measured just before it.

  This machine's speed drifts by tens of percent over minutes (other tenants: the sgemm rate alone
  read 120-180 GFLOP/s in one hour), so a rate divided by an sgemm rate taken minutes earlier is
  noise; paired rounds cancel the drift, as the other benchmarks' ABBA rounds do.
  """
  return statistics.median(flops / t / r for t, r in zip(step_seconds, sgemm_rates))


# --------------------------------------------------------------------------------------------------
# Hand-counted FLOPs.

# (input map, C_in, C_out, stride, kernel) of each convolution, and the dense head (d_in, d_out).
def vgg11_convs(size: int = 32, width: int = 64):
  convs, cin, h = [], 3, size
  for stage in ((1,), (2,), (4, 4), (8, 8), (8, 8)):
    for mult in stage:
      convs.append((h, cin, mult * width, 1, 3))
      cin = mult * width
    h = h // 2 if h > 1 else h
  return convs, (cin, 10)


def resnet18_convs(size: int = 32, width: int = 64):
  convs, cin, h = [(size, 3, width, 1, 3)], width, size
  for i in range(4):
    for j in range(2):
      cout, stride = width * 2**i, 2 if (i > 0 and j == 0) else 1
      convs.append((h, cin, cout, stride, 3))
      ho = -(-h // stride)
      convs.append((ho, cout, cout, 1, 3))
      if stride != 1 or cin != cout:
        convs.append((h, cin, cout, stride, 1))
      cin, h = cout, ho
  return convs, (cin, 10)


def train_flops(convs, dense, batch: int) -> float:
  total = 0.0
  for n, (h, cin, cout, stride, k) in enumerate(convs):
    ho = -(-h // stride)
    fwd = 2.0 * batch * ho * ho * k * k * cin * cout
    total += fwd * (2 if n == 0 else 3)
  total += 3 * 2.0 * batch * dense[0] * dense[1]
  return total


# --------------------------------------------------------------------------------------------------
# Per-layer table.


def layer_fn(kind: str, lowering: str | None, shape, k: int, stride: int, cout: int, in_scan: bool):
  """A jitted forward + backward of one layer (``kind``: conv, bn or lif) on a (B, H, W, C) input."""
  key = jax.random.key(0)
  x = jax.random.normal(key, shape)
  if kind == "conv":
    params = jax.random.normal(key, (k, k, shape[-1], cout)) * 0.05

    def f(p, x):
      return models.conv2d(x, p, strides=stride, lowering=lowering)
  elif kind == "bn":
    params = (jnp.ones(shape[-1]), jnp.zeros(shape[-1]))

    def f(p, x):
      mean = jnp.mean(x, axis=(0, 1, 2))
      var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
      return (x - mean) * jax.lax.rsqrt(var + 1e-5) * p[0] + p[1]
  else:  # lif
    params = jnp.ones(())
    lif = snn.LIF()

    def f(p, x):
      s, v = lif(None, x * p)
      return s + 0.01 * v

  cot = jax.random.normal(jax.random.key(1), jax.eval_shape(f, params, x).shape)

  def loss(p, x):  # a fixed cotangent: the backward pass receives a dense gradient
    if not in_scan:
      return jnp.sum(f(p, x) * cot)

    def body(c, _):
      return c, jnp.sum(f(p, c) * cot)
    return jnp.sum(jax.lax.scan(body, x, None, length=2)[1]) / 2

  return jax.jit(jax.grad(loss, (0, 1))), (params, x)


def layer_table(reps: int) -> list[str]:
  rows = ["| model | layer (map, C_in -> C_out, stride, k) | batch | xla ms | xla_canonical ms | im2col ms | "
          "winograd ms | chosen | chosen / xla | BN ms | LIF ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for name, (convs, _), batch, in_scan in (("spiking VGG-11", vgg11_convs(), 32, True),
                                           ("ResNet-18", resnet18_convs(), 128, False)):
    seen = set()
    for h, cin, cout, stride, k in convs:
      if (h, cin, cout, stride, k) in seen:
        continue
      seen.add((h, cin, cout, stride, k))
      shape = (batch, h, h, cin)
      ms = {}
      for lowering in models.LOWERINGS:
        if lowering == "winograd" and (k != 3 or stride != 1):  # 3x3 stride-1 layers only
          continue
        fn, args = layer_fn("conv", lowering, shape, k, stride, cout, in_scan)
        ms[lowering] = timed(fn, *args, reps=reps) * 1e3 / (2 if in_scan else 1)
      chosen = models.conv_lowering(shape, (k, k, cin, cout), strides=stride)
      extra = ["", ""]
      if in_scan:
        out = (batch, -(-h // stride), -(-h // stride), cout)
        extra = [f"{timed(*_unpack(layer_fn(kind, None, out, k, 1, cout, True)), reps=reps) * 1e3 / 2:.1f}"
                 for kind in ("bn", "lif")]
      wino = f"{ms['winograd']:.1f}" if "winograd" in ms else "-"
      rows.append(f"| {name} | {h}x{h}, {cin} -> {cout}, s{stride}, {k}x{k} | {batch} | {ms['xla']:.1f} | "
                  f"{ms['xla_canonical']:.1f} | {ms['im2col']:.1f} | "
                  f"{wino} | {chosen} | {ms[chosen] / ms['xla']:.2f} | "
                  f"{extra[0]} | {extra[1]} |")
      print(rows[-1], flush=True)
  return rows


def _unpack(fn_args):
  fn, args = fn_args
  return (fn, *args)


# --------------------------------------------------------------------------------------------------
# Whole steps.


def vgg_steps(reps: int, num_steps: int = 6, batch: int = 32):
  """(median seconds, temp bytes) of the SLTT and BPTT steps, alternated."""
  model = snn.SpikingVGG11(3, 10, width=64, num_steps=num_steps, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.sgd(0.1, momentum=0.9)
  opt_state = tx.init(params)
  x = jax.random.uniform(jax.random.key(0), (batch, 32, 32, 3))
  y = jnp.arange(batch) % 10
  compiled, mem = {}, {}
  for mode in ("sltt", "bptt"):
    step = make_step(graphdef, tx, mode, None)
    compiled[mode] = step.lower(params, rest, opt_state, x, y, jax.random.key(1)).compile()
    mem[mode] = compiled[mode].memory_analysis().temp_size_in_bytes
    jax.block_until_ready(compiled[mode](params, rest, opt_state, x, y, jax.random.key(1)))
  times = {m: [] for m in compiled}
  sgemm = []
  for r in range(reps):
    sgemm.append(sgemm_rate(1))
    for mode, fn in compiled.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(params, rest, opt_state, x, y, jax.random.key(2 + r)))
      times[mode].append(time.perf_counter() - t0)
  return times, sgemm, mem


def resnet_step(reps: int, batch: int = 128) -> float:
  model = models.ResNet18(3, 10, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.sgd(0.1, momentum=0.9)
  opt_state = tx.init(params)
  x = jax.random.uniform(jax.random.key(0), (batch, 32, 32, 3))
  y = jnp.arange(batch) % 10

  @jax.jit
  def step(params, rest, opt_state, x, y):
    def loss_fn(p):
      m = nnx.merge(graphdef, p, rest, copy=True)
      logits = m(x, train=True)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, nnx.split(m, nnx.Param, ...)[2]

    (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), rest, opt_state, loss

  jax.block_until_ready(step(params, rest, opt_state, x, y))  # compile and warm up
  times, sgemm = [], []
  for _ in range(reps):
    sgemm.append(sgemm_rate(1))
    t0 = time.perf_counter()
    jax.block_until_ready(step(params, rest, opt_state, x, y))
    times.append(time.perf_counter() - t0)
  return times, sgemm


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--reps", type=int, default=3, help="timed calls of each step (median)")
  ap.add_argument("--skip", default="", help=f"comma-separated sections to skip, of {SECTIONS}")
  args = ap.parse_args()
  skip = {s for s in args.skip.split(",") if s}
  if not skip <= set(SECTIONS):
    raise ValueError(f"--skip: must name sections of {SECTIONS}, got {sorted(skip)}")
  print(f"backend {jax.default_backend()}, jax {jax.__version__}, {jax.device_count()} device(s)", flush=True)

  sgemm = sgemm_rate(args.reps)
  print(f"sgemm 2048^3 float32: {sgemm / 1e9:.1f} GFLOP/s", flush=True)
  if "layers" not in skip:
    print("\nPer-layer forward + backward (VGG rows: per time step inside a 2-step scan):", flush=True)
    layer_table(args.reps)
  results = {}
  # The whole-step rates are paired with an sgemm measured just before each round (`paired_ratio`).
  if "vgg" not in skip:
    times, sgemms, mem = vgg_steps(args.reps)
    flops = 6 * train_flops(*vgg11_convs(), 32)
    print(f"\nspiking VGG-11, T = 6, batch 32: {flops / 1e9:.1f} GFLOP per step; sgemm before each round "
          f"{', '.join(f'{r / 1e9:.0f}' for r in sgemms)} GFLOP/s", flush=True)
    for mode in ("sltt", "bptt"):
      sec = statistics.median(times[mode])
      print(f"  {mode}: {sec:.3f} s, {flops / sec / 1e9:.1f} GFLOP/s "
            f"({paired_ratio(times[mode], sgemms, flops):.2f} of sgemm), temp {mem[mode] / 2**20:.1f} MiB", flush=True)
    results["vgg11_sltt_rate_over_sgemm"] = paired_ratio(times["sltt"], sgemms, flops)
    results["vgg11_sltt_over_bptt_time"] = statistics.median(a / b for a, b in zip(times["sltt"], times["bptt"]))
    results["vgg11_sltt_over_bptt_mem_T6"] = mem["sltt"] / mem["bptt"]
  if "resnet" not in skip:
    times, sgemms = resnet_step(max(args.reps, 5))
    flops = train_flops(*resnet18_convs(), 128)
    sec = statistics.median(times)
    print(f"\nResNet-18, batch 128: {flops / 1e9:.1f} GFLOP per step, {sec:.3f} s, "
          f"{flops / sec / 1e9:.1f} GFLOP/s; per round (step s, sgemm GFLOP/s): "
          f"{', '.join(f'({t:.2f}, {r / 1e9:.0f})' for t, r in zip(times, sgemms))}", flush=True)
    results["resnet18_rate_over_sgemm"] = paired_ratio(times, sgemms, flops)
  goals = {"vgg11_sltt_rate_over_sgemm": (">=", 0.5), "resnet18_rate_over_sgemm": (">=", 0.7),
           "vgg11_sltt_over_bptt_time": ("<", 0.95), "vgg11_sltt_over_bptt_mem_T6": ("<=", 0.3)}
  print()
  for name in ("vgg11_sltt_rate_over_sgemm", "resnet18_rate_over_sgemm", "vgg11_sltt_over_bptt_time",
               "vgg11_sltt_over_bptt_mem_T6"):
    if name in results:
      op, bar = goals[name]
      met = {">=": results[name] >= bar, "<": results[name] < bar, "<=": results[name] <= bar}[op]
      print(f"goal {name} {op} {bar}: {'met' if met else 'NOT met'}")
  for name, value in results.items():
    print(f"{name}={value:.3f}")


if __name__ == "__main__":
  main()
