"""Dataset decomposition against concat-and-chunk on the standard library's source, run as a claim's ``runner``.

`dd_runner(config, workdir)` follows Pouransari et al. ("Dataset Decomposition", NeurIPS 2024,
https://arxiv.org/abs/2405.13226) at toy scale, with ``d = config.data``, ``t = config.train`` and
``m = config.model``. One seed trains the same byte-level `jaxdyn.models.Transformer` (`lm.make_model`)
three ways, for the same steps and the same tokens per step (``d.tokens_per_step``), on the same
documents:

- ``"concat"``: the training documents shuffled, joined with ``EOS_ID`` and cut into rows of
  ``2^d.kmax`` tokens (`jaxdyn.text.concat_and_chunk`, no document mask: attention crosses documents),
  rows taken in a shuffled order without replacement;
- ``"concat_mask"``: the same rows with the document-boundary mask (segment ids and per-document
  positions, no loss on a document's first token);
- ``"dd"``: the documents decomposed into buckets ``D_kmin .. D_kmax`` (`jaxdyn.text.decompose`), batches
  of ``d.tokens_per_step / 2^k`` chunks of ``2^k`` tokens drawn by the variable-sequence-length sampler
  with the ``d.curriculum`` length curriculum over ``d.cycles`` cycles (`jaxdyn.text.dd_dataset`, a
  grain dataset).

**Documents.** A document here is one top-level piece of a standard-library file (`split_top_level`: a
cut before every top-level ``def`` / ``class`` and its decorators; the module-level statements between
them stay with the piece before), so lengths run from tens of bytes to tens of kilobytes (train split:
6,048 pieces, median 487 bytes, 69% shorter than 1,024; 22% of the tokens fall outside the 1,024-token
chunks). Whole files (median 8 kB) would put almost every token in the longest bucket at a context
CPU training can afford, where decomposition and concat-and-chunk hardly differ; the paper's regime is
a corpus whose typical document is shorter than the context (RefinedWeb at 8,192 tokens), and pieces at
``2^d.kmax = 1024`` keep that ratio. The training documents are the pieces of a seeded random subset of
the training split's files holding about ``d.pass_fraction`` times the run's tokens, so that one pass
over them (the DD curriculum's cycles) spans the run, as in the paper's one-epoch schedule.
Validation: the validation split's pieces, shuffled once (seed-independent), packed into
``d.eval_rows`` rows of ``2^d.kmax`` tokens with the document mask; the loss is nats per byte over
tokens predicted from their own document (`lm.evaluate`), every ``t.eval_every`` steps.

The arms are trained in lockstep (`lm.train_lockstep`: one step of each in turn), so whatever else runs
on the machine slows them alike. Per arm it records the validation curve, the attention FLOPs of every step
(`jaxdyn.text.attention_flops`
on the step's segment lengths: ``rows x 2^k`` for DD, whole rows for concat, document pieces with the
mask) and the seconds spent in steps (compiles excluded: each bucket shape compiles once). Against the
concat arm's final validation loss it reports, per arm, the attention FLOPs and step seconds spent
before the first evaluation at or below it, each as a fraction of the concat arm's totals
(``flops_to_concat_loss``, ``seconds_to_concat_loss``; infinite when never reached), and the final
validation loss minus concat's (``val_excess_over_concat``).

The three arms of a seed share one run: ``<runs dir>/dd-shared-<hash>/seed<k>/results.json`` (the hash of
the config without the seed and the arm), so the claims on this setting read the same curves.
"""

from __future__ import annotations

import ast
import math
import platform
import time
from typing import Any

import numpy as np

from experiments.claims import caches_results, shared_run
from experiments.techniques.text import lm
from jaxdyn import text
from jaxdyn.data import load_stdlib_corpus

METHODS = ("concat", "concat_mask", "dd")
EVAL_SHUFFLE_SEED = 1234


def split_top_level(doc: np.ndarray) -> list[np.ndarray]:
  """A Python source file's bytes cut before each top-level ``def`` / ``class`` (and its decorators).

  The pieces are views of ``doc`` and cover it exactly, in order; a file that does not parse is one piece.
  """
  src = bytes(doc)
  try:
    tree = ast.parse(src)
  except (SyntaxError, ValueError):
    return [doc]
  defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
  starts = {min([n.lineno] + [x.lineno for x in n.decorator_list]) for n in tree.body if isinstance(n, defs)}
  line_offsets = np.concatenate([[0], np.cumsum([len(x) for x in src.splitlines(keepends=True)])]).astype(int)
  cuts = sorted({0, len(src), *(int(line_offsets[s - 1]) for s in starts)})
  return [doc[a:b] for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def training_documents(d, seed: int, total_tokens: int) -> list[np.ndarray]:
  """The pieces (`split_top_level`) of a seeded random subset of the training split's files holding about
  ``d.pass_fraction * total_tokens`` tokens, in the drawn order."""
  corpus = load_stdlib_corpus("train")
  order = np.random.default_rng([seed, 11]).permutation(len(corpus))
  lengths = corpus.lengths[order]
  keep = int(np.searchsorted(np.cumsum(lengths), d.pass_fraction * total_tokens)) + 1
  return [p for i in order[:keep] for p in split_top_level(corpus.documents[i])]


def validation_batches(d) -> list[dict[str, np.ndarray]]:
  """The validation pieces packed into ``d.eval_rows`` rows with the document mask, in batches of 8 rows."""
  corpus = load_stdlib_corpus("validation")
  order = np.random.default_rng(EVAL_SHUFFLE_SEED).permutation(len(corpus))
  pieces = [p for i in order for p in split_top_level(corpus.documents[i])]
  packed = text.concat_and_chunk(pieces, 1 << d.kmax, document_mask=True)
  rows = min(d.eval_rows, len(packed.tokens))
  return [lm.shifted(packed.tokens[i:i + 8], segment_ids=packed.segment_ids[i:i + 8],
                     positions=packed.positions[i:i + 8]) for i in range(0, rows, 8)]


def _flops(lengths, m) -> float:
  return float(text.attention_flops(np.asarray(lengths, np.int64), dim=m.dim, depth=m.depth))


def concat_batches(docs, d, m, *, seed: int, document_mask: bool):
  """Rows of concat-and-chunk (``2^kmax`` tokens) in a shuffled order, ``tokens_per_step`` tokens a step."""
  seq = 1 << d.kmax
  packed = text.concat_and_chunk(docs, seq, document_mask=document_mask)
  rows = d.tokens_per_step // seq
  rng = np.random.default_rng([seed, 12])
  order = rng.permutation(len(packed.tokens))
  i = 0
  while True:
    if i + rows > len(order):
      order, i = rng.permutation(len(packed.tokens)), 0
    idx = np.sort(order[i:i + rows])
    i += rows
    tok, seg, pos = packed.tokens[idx], packed.segment_ids[idx], packed.positions[idx]
    if document_mask:
      batch = lm.shifted(tok, segment_ids=seg, positions=pos)
      batch["_attention_flops"] = _flops(text.segment_lengths(seg[:, :-1]), m)
    else:
      batch = lm.shifted(tok)
      batch["_attention_flops"] = _flops([seq - 1] * rows, m)
    yield batch


def dd_batches(docs, d, m, *, seed: int):
  """Dataset-decomposition batches from `jaxdyn.text.dd_dataset` (grain), as next-token batches."""
  dec = text.decompose([len(x) for x in docs], kmin=d.kmin, kmax=d.kmax)
  ds = text.dd_dataset(docs, dec, tokens_per_step=d.tokens_per_step, curriculum=d.curriculum, cycles=d.cycles,
                       seed=seed)
  for item in iter(ds):
    tok = np.asarray(item["tokens"])
    batch = lm.shifted(tok)
    batch["_attention_flops"] = _flops([tok.shape[1] - 1] * tok.shape[0], m)
    batch[f"_steps_k{int(item['k'])}"] = 1.0  # history: cum_steps_k<k>, the bucket histogram so far
    yield batch


def arm_batches(config, method: str, docs):
  """The batch iterator of one arm."""
  d, m = config.data, config.model
  if method not in METHODS:
    raise ValueError(f"dd.method: must be one of {list(METHODS)}, got {method!r}")
  if method == "dd":
    return dd_batches(docs, d, m, seed=config.seed)
  return concat_batches(docs, d, m, seed=config.seed, document_mask=method == "concat_mask")


def _first_reaching(history, target: float, key: str) -> float:
  for rec in history:
    if "val_loss" in rec and rec["val_loss"] <= target:
      return float(rec[key])
  return math.inf


def run_all(config) -> dict[str, Any]:
  """Every arm of one seed, and the numbers each reports against the concat arm."""
  d, t = config.data, config.train
  docs = training_documents(d, config.seed, t.steps * d.tokens_per_step)
  val = validation_batches(d)
  trainers = {method: lm.Trainer(lm.make_model(config.model, config.seed), steps=t.steps,
                                 learning_rate=t.learning_rate, warmup=t.warmup, log_every=t.eval_every,
                                 eval_fn=lambda mod: {"val_loss": lm.evaluate(mod, val)}, eval_every=t.eval_every)
              for method in METHODS}
  t0 = time.monotonic()
  histories = lm.train_lockstep(trainers, {method: arm_batches(config, method, docs) for method in METHODS})
  arms = {}
  for method, history in histories.items():
    last = history[-1]
    arms[method] = {"history": history, "val_loss": last["val_loss"], "attention_flops": last["cum_attention_flops"],
                    "step_seconds": last["step_seconds"], "compile_seconds": last["compile_seconds"],
                    "tokens": last["tokens"]}
  base = arms["concat"]
  for arm in arms.values():
    arm["flops_to_concat_loss"] = _first_reaching(arm["history"], base["val_loss"], "cum_attention_flops") / base[
        "attention_flops"]
    arm["seconds_to_concat_loss"] = _first_reaching(arm["history"], base["val_loss"], "step_seconds") / base[
        "step_seconds"]
    arm["val_excess_over_concat"] = arm["val_loss"] - base["val_loss"]
    arm["attention_flops_ratio"] = arm["attention_flops"] / base["attention_flops"]
  return {"per_method": arms, "wall_seconds": round(time.monotonic() - t0, 2), "documents": len(docs),
          "document_tokens": int(sum(len(x) for x in docs)),
          "python_version": platform.python_version()}


def run(config, workdir: str) -> dict[str, Any]:
  """One arm (``config.dd.method``) for one seed, from the seed's shared run of every arm."""
  method = config.dd.method
  if method not in METHODS:
    raise ValueError(f"dd.method: must be one of {list(METHODS)}, got {method!r}")
  shared, path = shared_run(run_all, config, workdir, prefix="dd", arm_keys=('dd.method',),
                            share=config.dd.share_runs)
  arm = shared["per_method"][method]
  return {**{k: v for k, v in shared.items() if k != "per_method"}, **arm, "method": method,
          "shared_results": str(path)}


dd_runner = caches_results(run)
