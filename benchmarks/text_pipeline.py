"""Dataset decomposition against concat-and-chunk: input-pipeline throughput and train-step time at equal tokens.

Both pipelines read the same documents: the top-level pieces (`experiments.techniques.text.decomposition
.split_top_level`) of every file of the standard library's training split (``jaxdyn.data.load_stdlib_corpus``).

1. **Build**: `jaxdyn.text.decompose` + one `BucketSource` per bucket, against `jaxdyn.text.concat_and_chunk`
   (with the document mask) of the whole corpus, in seconds.
2. **Input pipeline**: tokens per second delivered by `jaxdyn.text.dd_dataset` (grain, the Grow-P2 VSL
   sampler) and by shuffled rows of the packed corpus (`experiments.techniques.text.lm.row_batches`, the
   claim's loader), over ``--batches`` batches of ``--tokens_per_step`` tokens, next-token batches built.
3. **Train step at equal tokens**: one Adam step of the claim's `jaxdyn.models.Transformer` (``--dim``,
   ``--depth``) on a batch of each DD bucket shape (``tokens_per_step / 2^k`` rows of ``2^k``) and on
   concat's (``tokens_per_step / 2^kmax`` rows of ``2^kmax``, without and with the document mask; the
   claim's baseline is without it); each compiled and warmed up, then
   ``--rounds`` rounds time every shape in turn (`benchmarks._timing.timed`, median of ``--reps``) and a
   shape's time is its median over rounds. DD's step time at equal tokens is the mean over buckets
   weighted by the share of DD's steps each bucket takes in one pass (``b_k``, `VSLSampler`), the number
   the claim's wall time depends on.

Measured here (2 cores, 2026-12-01, machine otherwise idle; the claim's settings: kmin 5, kmax 10, 2,048 tokens
a step, width 64, 2 layers; about a minute):

  build: decompose + bucket sources 0.07 s; concat_and_chunk with document mask 1.55 s
  input pipeline, tokens/s: dataset decomposition 16.5 M (grain, one gather per step); concat-and-chunk 99.8 M
  shape                 share of DD steps   ms / step
  DD 2^5  (64 x 32)                 0.009       44.7
  DD 2^6  (32 x 64)                 0.018       47.0
  DD 2^7  (16 x 128)                0.038       52.9
  DD 2^8  (8 x 256)                 0.059       72.0
  DD 2^9  (4 x 512)                 0.091       95.2
  DD 2^10 (2 x 1024)                0.785      171.4
  concat (2 x 1024)                            178.0
  concat + document mask                       169.0
  DD, weighted by steps                        150.7   -> dd_over_concat_time_equal_tokens=0.846

Both pipelines feed far more tokens than the step consumes (about 14 k tokens/s). The step time falls with
the sequence length (a 32-byte row costs a quarter of a 1,024-byte one per token at this width), but most of
DD's steps are 1,024-byte chunks: a quarter of the pieces are longer than that, and they hold most of the
bytes. Same shapes differ by the noise of the machine (DD 2^10 and concat: 4%).

Run: .venv/bin/python benchmarks/text_pipeline.py   (the last line is machine-readable: DD's step time at equal
tokens over concat-and-chunk's, goal < 1)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _timing
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the claim's runner

from _timing import timed  # noqa: E402
from experiments.techniques.text import lm  # noqa: E402
from experiments.techniques.text.decomposition import split_top_level  # noqa: E402
from jaxdyn import text  # noqa: E402
from jaxdyn.data import load_stdlib_corpus  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("kmin", 5, "log2 of the shortest DD chunk")
flags.DEFINE_integer("kmax", 10, "log2 of the longest DD chunk and of concat's rows")
flags.DEFINE_integer("tokens_per_step", 2048, "tokens per step")
flags.DEFINE_integer("dim", 64, "model width")
flags.DEFINE_integer("depth", 2, "layers")
flags.DEFINE_integer("batches", 300, "batches timed per input pipeline")
flags.DEFINE_integer("rounds", 5, "timing rounds over the step shapes")
flags.DEFINE_integer("reps", 5, "steps timed per shape per round")


def _throughput(it, n: int, tokens_per_step: int) -> float:
  next(it)
  t0 = time.perf_counter()
  for _ in range(n):
    next(it)
  return n * tokens_per_step / (time.perf_counter() - t0)


def _dd_iter(docs, dec, tps):
  for item in iter(text.dd_dataset(docs, dec, tokens_per_step=tps, curriculum="grow_p2", cycles=4, seed=0)):
    yield lm.shifted(np.asarray(item["tokens"]))


def _step_fn(model):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt = lm.make_optimizer(1e-3, 100, 10)
  state = opt.init(params)

  @jax.jit
  def step(p, s, batch):
    def loss_fn(p):
      num, den = lm.weighted_nll(nnx.merge(graphdef, p, rest), batch)
      return num / den
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  return lambda batch: step(params, state, batch)


def main(argv):
  del argv
  kmin, kmax, tps = FLAGS.kmin, FLAGS.kmax, FLAGS.tokens_per_step
  corpus = load_stdlib_corpus("train")
  docs = [p for d in corpus.documents for p in split_top_level(d)]
  print(f"corpus: {len(corpus)} files of Python {corpus.python_version} -> {len(docs)} top-level pieces, "
        f"{sum(len(d) for d in docs):,} bytes")

  t0 = time.perf_counter()
  dec = text.decompose([len(d) for d in docs], kmin=kmin, kmax=kmax)
  sources = [text.BucketSource(docs, dec, k) for k in range(kmin, kmax + 1)]
  dd_build = time.perf_counter() - t0
  t0 = time.perf_counter()
  packed = text.concat_and_chunk(docs, 1 << kmax, document_mask=True)
  concat_build = time.perf_counter() - t0
  sizes = dec.bucket_sizes()
  print(f"build: decompose + bucket sources {dd_build:.2f} s; concat_and_chunk with document mask {concat_build:.2f} s")
  print("buckets: " + ", ".join(f"2^{k}: {int(n)}" for k, n in zip(range(kmin, kmax + 1), sizes)))
  del sources

  dd_tps = _throughput(_dd_iter(docs, dec, tps), FLAGS.batches, tps)
  concat_tps = _throughput(lm.row_batches(packed, tps >> kmax, 0), FLAGS.batches, tps)
  print(f"input pipeline, tokens/s: dataset decomposition {dd_tps:,.0f}; concat-and-chunk {concat_tps:,.0f} "
        f"(ratio {dd_tps / concat_tps:.2f})")

  sampler = text.VSLSampler(sizes, tokens_per_step=tps, kmin=kmin, curriculum="grow_p2", cycles=4, seed=0)
  share = sampler.batches_per_cycle / sampler.batches_per_cycle.sum()
  cfg = ml_collections.ConfigDict(dict(dim=FLAGS.dim, depth=FLAGS.depth, num_heads=4, mlp_ratio=4))
  rng = np.random.default_rng(0)
  steps, batches = {}, {}
  for k in range(kmin, kmax + 1):
    tok = rng.integers(0, 256, (tps >> k, 1 << k)).astype(np.int32)
    batches[k] = {key: jnp.asarray(v) for key, v in lm.shifted(tok).items()}
    steps[k] = _step_fn(lm.make_model(cfg, 0))
  rows = tps >> kmax
  batches["concat"] = {key: jnp.asarray(v) for key, v in lm.shifted(packed.tokens[:rows]).items()}
  batches["concat_mask"] = {key: jnp.asarray(v) for key, v in lm.shifted(
      packed.tokens[:rows], segment_ids=packed.segment_ids[:rows], positions=packed.positions[:rows]).items()}
  steps["concat"] = _step_fn(lm.make_model(cfg, 0))
  steps["concat_mask"] = _step_fn(lm.make_model(cfg, 0))
  for name in steps:
    jax.block_until_ready(steps[name](batches[name]))
  times = {name: [] for name in steps}
  for _ in range(FLAGS.rounds):
    for name in steps:
      times[name].append(timed(steps[name], batches[name], reps=FLAGS.reps))
  med = {name: statistics.median(v) for name, v in times.items()}
  print(f"{'shape':<28}{'share of DD steps':>18}{'ms / step':>12}")
  for i, k in enumerate(range(kmin, kmax + 1)):
    print(f"{f'DD 2^{k} ({tps >> k} x {1 << k})':<28}{share[i]:>18.3f}{1e3 * med[k]:>12.2f}")
  dd_time = float(sum(share[i] * med[k] for i, k in enumerate(range(kmin, kmax + 1))))
  print(f"{f'concat ({rows} x {1 << kmax})':<28}{'':>18}{1e3 * med['concat']:>12.2f}")
  print(f"{f'concat + document mask':<28}{'':>18}{1e3 * med['concat_mask']:>12.2f}")
  print(f"{'DD, weighted by steps':<28}{'':>18}{1e3 * dd_time:>12.2f}")
  print(f"dd_over_concat_time_equal_tokens={dd_time / med['concat']:.3f}")


if __name__ == "__main__":
  app.run(main)
