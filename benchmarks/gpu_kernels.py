"""jaxdyn's Pallas kernels compiled for a GPU: correctness against the references, and speed.

CI and the project's machines have no GPU; this is the check to run where one is present. Sections:

1. ``attention``: `jaxdyn.attention.block_sparse_attention` compiled (Pallas -> Triton) against
   `dense_masked_attention` (float32, HIGHEST), values and q/k/v gradients, for every pattern (one per
   head: causal, sliding window, sink + window, dkernel block-sparse, an arbitrary mask with empty
   rows) on a ragged length, several block sizes, float32 at ``precision="highest"`` and
   ``"default"`` (TF32) and bfloat16 inputs; max abs errors relative to the reference's max abs.
2. ``lif``: `jaxdyn.snn.lif_multistep_pallas` compiled against the `jax.lax.scan` path
   (`lif_multistep`): spikes, v_T and gradients (BPTT and SLTT's detached membrane), and the forward +
   backward time of each at T = 6 on the spiking VGG-11's first-layer size (32 x 64 x 32 x 32 neurons).
3. ``attention_speed``: forward + backward of sink + window attention (64 sink tokens, a 1,024
   window, batch 1, 8 heads, head dim 64, bfloat16) by the compiled kernel and the jnp path, against
   full causal attention by cuDNN's flash attention (``jax.nn.dot_product_attention(implementation=
   "cudnn")``), XLA's, and the kernel itself on the causal mask; median times and compiled temp
   memory per sequence length.
4. ``transformer``: a training step (loss and gradients) of a LongGen hybrid `jaxdyn.models.Transformer`
   (6 layers, the middle 2 full, dim 256, 4 heads of 64, float32, batch 1) whose sparse layers run
   the whole-sequence kernel (``implementation="pallas"``) against the same model with dense masked
   sparse layers (``"dense"``): the loss and gradients' agreement, step time and compiled temp memory.

Run: ``python benchmarks/gpu_kernels.py [--sections attention,lif,attention_speed] [--json F]``;
``--small`` runs tiny sizes (in interpret mode on a CPU, to check the script).
Results measured on an H200 are in the docstrings of `jaxdyn/attention/_kernel.py` and
`jaxdyn/snn/_pallas_lif.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import timed  # noqa: E402

from jaxdyn import snn  # noqa: E402
from jaxdyn.attention import (  # noqa: E402
    block_sparse_attention,
    block_sparse_mask,
    causal_mask,
    dense_masked_attention,
    sink_window_mask,
    sliding_window_mask,
)

SECTIONS = ("attention", "lif", "attention_speed", "transformer")


def log(*a):
  print(*a, flush=True)


@contextlib.contextmanager
def recorded(row: dict, rows: list[dict]):
  """Runs the block; a failure becomes the row's ``error`` (a report, not a library path). Logs the row."""
  try:
    yield
  except Exception as e:  # noqa: BLE001
    row["error"] = f"{type(e).__name__}: {str(e)[:2000]}"
    traceback.print_exc()
  log(json.dumps(row))
  rows.append(row)


def patterns(length: int) -> np.ndarray:
  """One head per pattern; the last an arbitrary mask with empty rows."""
  rng = np.random.default_rng(1)
  arbitrary = rng.random((length, length)) < 0.05
  arbitrary[[0, 5, length - 1]] = False
  return np.stack([causal_mask(length), sliding_window_mask(length, window=100),
                   sink_window_mask(length, sink=16, window=64),
                   block_sparse_mask(length, block_size=32, local_blocks=2, vertical_stride=3), arbitrary])


def value_and_grads(attend, w):
  return jax.jit(lambda q, k, v: (lambda o, vjp: (o, *vjp(w)))(*jax.vjp(attend, q, k, v)))


def attention_check(small: bool) -> list[dict]:
  length, dim = (40, 16) if small else (1000, 64)  # 1000: a ragged last block for every block size
  mask = patterns(length)
  rng = np.random.default_rng(0)
  q, k, v, w = (jnp.asarray(rng.standard_normal((2, length, len(mask), dim)), jnp.float32) for _ in range(4))
  ref = value_and_grads(lambda q, k, v: dense_masked_attention(q, k, v, mask), w)(q, k, v)
  scales = [float(jnp.max(jnp.abs(r))) for r in ref]
  rows = []
  cases = [(16, 16, jnp.float32, "highest")] if small else [
      (64, 64, jnp.float32, "highest"), (32, 64, jnp.float32, "highest"), (128, 32, jnp.float32, "highest"),
      (64, 64, jnp.float32, "default"), (64, 64, jnp.bfloat16, "default"), (128, 64, jnp.bfloat16, "default")]
  for bq, bk, dtype, precision in cases:
    row = dict(block_q=bq, block_k=bk, dtype=jnp.dtype(dtype).name, precision=precision)
    with recorded(row, rows):
      args = tuple(a.astype(dtype) for a in (q, k, v))
      fn = value_and_grads(lambda q, k, v: block_sparse_attention(
          q, k, v, mask, block_q=bq, block_k=bk, precision=precision), w.astype(dtype))
      t0 = time.perf_counter()
      got = jax.block_until_ready(fn(*args))
      row["compile_and_run_s"] = round(time.perf_counter() - t0, 2)
      if dtype != jnp.float32:  # the reference on the same rounded inputs
        r = value_and_grads(lambda q, k, v: dense_masked_attention(q, k, v, mask), w.astype(dtype).astype(
            jnp.float32))(*(a.astype(jnp.float32) for a in args))
      else:
        r = ref
      for name, a, b, s in zip(("out", "dq", "dk", "dv"), got, r, scales):
        row[f"{name}_max_rel_err"] = float(jnp.max(jnp.abs(a.astype(jnp.float32) - b))) / s
        row[f"{name}_finite"] = bool(jnp.all(jnp.isfinite(a)))
      row["empty_rows_zero"] = bool(jnp.all(got[0][:, [0, 5, length - 1], -1] == 0))
  return rows


def lif_check(small: bool, reps: int) -> list[dict]:
  shape = (6, 2, 8, 4, 4) if small else (6, 32, 64, 32, 32)
  rng = np.random.default_rng(0)
  currents = jnp.asarray(rng.standard_normal(shape) * 0.8 + 0.5, jnp.float32)
  w = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  rows = []
  for detach in (False, True):
    def loss(impl):
      return jax.jit(jax.value_and_grad(lambda c: jnp.sum(impl(c, detach_membrane=detach)[0] * w)))
    row = dict(shape=list(shape), detach_membrane=detach)
    with recorded(row, rows):
      (l_ref, g_ref), (l, g) = loss(snn.lif_multistep)(currents), loss(snn.lif_multistep_pallas)(currents)
      s_ref, s = snn.lif_multistep(currents)[0], snn.lif_multistep_pallas(currents)[0]
      row.update(spikes_equal=bool(jnp.all(s == s_ref)), spike_rate=float(s.mean()),
                 loss_rel_err=float(abs(l - l_ref) / abs(l_ref)),
                 grad_max_rel_err=float(jnp.max(jnp.abs(g - g_ref)) / jnp.max(jnp.abs(g_ref))))
      row["scan_ms"] = timed(loss(snn.lif_multistep), currents, reps=reps) * 1e3
      row["pallas_ms"] = timed(loss(snn.lif_multistep_pallas), currents, reps=reps) * 1e3
  return rows


def attention_speed(small: bool, reps: int) -> list[dict]:
  heads, dim, sink, window = (2, 16, 8, 32) if small else (8, 64, 64, 1024)
  lengths = (128,) if small else (4096, 16384, 32768)
  rows = []
  for length in lengths:
    rng = np.random.default_rng(0)
    q, k, v, g = (jnp.asarray(rng.standard_normal((1, length, heads, dim)), jnp.bfloat16) for _ in range(4))
    sparse = sink_window_mask(length, sink=sink, window=window)
    variants = {
        "sparse_pallas": lambda q, k, v: block_sparse_attention(q, k, v, sparse, precision="default"),
        "sparse_jnp": lambda q, k, v: block_sparse_attention(q, k, v, sparse, implementation="jnp",
                                                             precision="default"),
        "full_cudnn": lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                                                   implementation="cudnn"),
    }
    if length <= 16384:
      variants["full_xla"] = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                                                          implementation="xla")
      full = causal_mask(length)
      variants["full_pallas"] = lambda q, k, v: block_sparse_attention(q, k, v, full, precision="default")
    for name, attend in variants.items():
      row = dict(length=length, heads=heads, head_dim=dim, variant=name)
      with recorded(row, rows):
        step = jax.jit(jax.grad(lambda q, k, v: jnp.sum((attend(q, k, v) * g).astype(jnp.float32)),
                                argnums=(0, 1, 2)))
        t0 = time.perf_counter()
        compiled = step.lower(q, k, v).compile()
        row["compile_s"] = round(time.perf_counter() - t0, 2)
        row["temp_mib"] = compiled.memory_analysis().temp_size_in_bytes / 2**20
        row["fwd_bwd_ms"] = timed(compiled, q, k, v, reps=reps) * 1e3
  return rows


def transformer_check(small: bool, reps: int) -> list[dict]:
  from flax import nnx  # noqa: PLC0415

  from jaxdyn.attention import hybrid_attention_fns, layer_plan  # noqa: PLC0415
  from jaxdyn.models import Transformer  # noqa: PLC0415

  dim, heads, lengths, sink, window = (32, 2, (64,), 4, 16) if small else (256, 4, (4096, 16384), 64, 1024)
  rows = []
  for length in lengths:
    tokens = jax.random.randint(jax.random.key(0), (1, length + 1), 0, 256)
    results = {}
    for impl in ("dense", "pallas"):
      row = dict(length=length, sparse_layers=impl)
      with recorded(row, rows):
        fns = hybrid_attention_fns(layer_plan(6), sink=sink, window=window, implementation=impl)
        model = Transformer(vocab_size=256, dim=dim, depth=6, num_heads=heads, attention_fns=fns,
                            rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(model)

        @jax.jit
        def step(params, tokens, graphdef=graphdef):
          def loss(p):
            logits = nnx.merge(graphdef, p)(tokens[:, :-1])
            return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, tokens[:, 1:, None], -1)[..., 0])
          return jax.value_and_grad(loss)(params)

        compiled = step.lower(params, tokens).compile()
        row["temp_mib"] = compiled.memory_analysis().temp_size_in_bytes / 2**20
        results[impl] = jax.block_until_ready(compiled(params, tokens))
        row["step_ms"] = timed(compiled, params, tokens, reps=reps) * 1e3
        row["loss"] = float(results[impl][0])
    if len(results) == 2:
      (la, ga), (lb, gb) = results["dense"], results["pallas"]
      err = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30))
                for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)))
      rows.append(dict(length=length, loss_abs_diff=float(abs(la - lb)), grad_max_rel_err=err))
      log(json.dumps(rows[-1]))
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}")
  ap.add_argument("--reps", type=int, default=10)
  ap.add_argument("--small", action="store_true", help="tiny sizes (a smoke run of this script)")
  ap.add_argument("--json", default="", help="write the results here")
  args = ap.parse_args()
  sections = [s for s in args.sections.split(",") if s]
  if bad := set(sections) - set(SECTIONS):
    ap.error(f"--sections: unknown {sorted(bad)}; choose from {SECTIONS}")
  if jax.default_backend() == "cpu" and not args.small:  # `make bench` on a CPU machine: nothing to measure
    print("gpu_kernels=skipped (jax.default_backend() is 'cpu'; --small runs a smoke test)")
    return
  results = {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}
  log(json.dumps(results))
  for section in sections:
    t0 = time.perf_counter()
    log(f"== {section}")
    if section == "attention":
      results[section] = attention_check(args.small)
    elif section == "lif":
      results[section] = lif_check(args.small, args.reps)
    elif section == "transformer":
      results[section] = transformer_check(args.small, args.reps)
    else:
      results[section] = attention_speed(args.small, args.reps)
    log(f"== {section} done in {time.perf_counter() - t0:.1f} s")
    if args.json:
      with open(args.json, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
