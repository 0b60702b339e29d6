"""MaskSearch's retrieval-augmented mask prediction (RAMP) on the standard library's source, as a claim's ``runner``.

`masksearch_runner(config, workdir)` follows Wu et al. ("MaskSearch", 2025, https://arxiv.org/abs/2505.20285)
at toy scale with ``d = config.data``, ``t = config.train``, ``m = config.model``. One seed trains the same
byte-level `jaxdyn.models.Transformer` (`lm.make_model`, vocabulary `jaxdyn.text.RAMP_VOCAB_SIZE`: bytes,
BOS / EOS / PAD and the mask id) on mask prediction two ways, for the same steps and batch size, both with
the number of masked spans following `jaxdyn.text.span_curriculum` (equal stages 1 .. ``d.max_spans``):

- ``"retrieval"``: each example is the masked window preceded by the ``d.top_n`` passages that
  `jaxdyn.text.LexicalRetriever` returns for it (TF-IDF over the corpus's passages, the window's own file
  excluded);
- ``"no_retrieval"``: the same examples (same windows, same spans) without passages.

(A third arm, ``d.max_spans`` spans throughout against the curriculum, did not fit the CPU budget.)

**Examples.** A window of ``d.window`` bytes of a file, placed around a random salient span
(`jaxdyn.text.salient_spans` of kinds ``d.kinds``: identifiers that are not keywords or builtins and numbers,
of at most ``d.max_span_len`` bytes, whose text occurs once among the file's candidates), holding at least ``k``
of them; ``k`` of those are masked (`choose_spans`, `mask_spans`) and the sequence is `ramp_example`'s
(``seq_len = d.seq_len``, each passage cut to ``d.passage_len``; the loss is on the answers alone). Training
windows come from the training split's files, drawn with odds proportional to file length, from a
generator seeded by the run's seed. **Passages**: every file of the corpus (both splits) cut into
``d.passage_len``-byte chunks, tagged with their file, so a query never sees a passage of its own file.
**Held-out evaluation**: ``d.eval_examples`` windows from the *validation* split's files (seed-independent),
the ``i``-th with ``1 + i mod K`` masked spans; each arm is scored with the passages it was trained with
(retrieval arms with them, ``no_retrieval`` without). Metrics: span exact match (`span_exact_match` on the
argmax of one teacher-forced pass: a span is right when every byte and its end token are the argmax, which
is what greedy decoding of that span gives after correct earlier spans), its value per ``k``, and the
answer-token loss in nats (`lm.evaluate`). A diagnostic per seed: the share of held-out answers whose bytes
occur in the retrieved passages (``answer_in_passages``), i.e. how often retrieval could help at all.

The arms of a seed share one run: ``<runs dir>/masksearch-shared-<hash>/seed<k>/results.json``.
"""

from __future__ import annotations

import functools
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.claims import caches_results, shared_run
from experiments.techniques.text import lm
from jaxdyn import text
from jaxdyn.data import load_stdlib_corpus

METHODS = ("retrieval", "no_retrieval")
EVAL_SEED = 4321


@functools.lru_cache(maxsize=4)
def _corpus(max_span_len: int, passage_len: int, kinds: tuple[str, ...], max_files: int = 0):
  """All files (or the first ``max_files // 2`` of each split by name, for smoke tests), their salient spans, the
  split of each, and the retriever over their passages (cached per process)."""
  corpus = load_stdlib_corpus("all")
  val_names = set(load_stdlib_corpus("validation").names)
  keep = np.arange(len(corpus))
  if max_files:
    is_v = np.array([n in val_names for n in corpus.names])
    keep = np.sort(np.concatenate([np.flatnonzero(is_v)[:max_files // 2], np.flatnonzero(~is_v)[:max_files // 2]]))
  docs = [corpus.documents[i] for i in keep]
  names = [corpus.names[i] for i in keep]
  spans = []
  for d in docs:
    try:
      spans.append(text.salient_spans(d, kinds=kinds, max_len=max_span_len))
    except ValueError:  # not UTF-8 / not tokenizable: no candidates (the file still gives passages)
      spans.append(np.zeros((0, 2), np.int64))
  passages, groups = [], []
  for i, d in enumerate(docs):
    for s in range(0, len(d), passage_len):
      passages.append(d[s:s + passage_len])
      groups.append(i)
  retriever = text.LexicalRetriever(passages, groups=np.asarray(groups))
  is_val = np.array([n in val_names for n in names])
  return docs, spans, is_val, passages, retriever


def _window(docs, spans, files, probs, rng, k: int, width: int):
  """A window of ``width`` bytes of a file holding >= ``k`` salient spans: (file, masked text, answers)."""
  while True:
    f = int(files[rng.choice(len(files), p=probs)])
    s = spans[f]
    anchor = s[rng.integers(len(s))]
    start = int(max(0, anchor[0] - rng.integers(0, width // 2)))
    end = min(len(docs[f]), start + width)
    inside = s[(s[:, 0] >= start) & (s[:, 1] <= end)] - start
    if len(inside) >= k:
      chosen = text.choose_spans(inside, k, seed=int(rng.integers(2**31)))
      m = text.mask_spans(docs[f][start:end], chosen)
      return f, m


def _example(m, f, d, passages, retriever, with_passages: bool):
  ps = []
  if with_passages:
    idx, _ = retriever.search(m.tokens, d.top_n, exclude=f)
    ps = [passages[i] for i in idx]
  return text.ramp_example(m.tokens, list(m.answers), ps, seq_len=d.seq_len, passage_len=d.passage_len), ps


def _batch(examples):
  return {"inputs": np.stack([e.inputs for e in examples]), "targets": np.stack([e.targets for e in examples]),
          "weights": np.stack([e.weights for e in examples]), "answer_ids": np.stack([e.answer_ids for e in examples])}


def _sampler(files, docs):
  lengths = np.array([len(docs[f]) for f in files], np.float64)
  return files, lengths / lengths.sum()


def train_batches(config, method: str, corpus):
  """The training batches of ``method``: the seed's windows (the same for both methods), ``k`` from the curriculum."""
  d, t = config.data, config.train
  docs, spans, is_val, passages, retriever = corpus
  files = np.array([i for i in range(len(docs)) if not is_val[i] and len(spans[i]) >= d.max_spans])
  files, probs = _sampler(files, docs)
  rng = np.random.default_rng([config.seed, 20])
  for step in range(t.steps):
    k = text.span_curriculum(step, t.steps, max_spans=d.max_spans)
    exs = []
    for _ in range(t.batch):
      f, m = _window(docs, spans, files, probs, rng, k, d.window)
      exs.append(_example(m, f, d, passages, retriever, method != "no_retrieval")[0])
    b = _batch(exs)
    b.pop("answer_ids")
    b["_spans"] = float(k)
    yield b


def eval_set(config, corpus):
  """The held-out examples (validation files, seed-independent), with and without passages."""
  d = config.data
  docs, spans, is_val, passages, retriever = corpus
  files = np.array([i for i in range(len(docs)) if is_val[i] and len(spans[i]) >= d.max_spans])
  files, probs = _sampler(files, docs)
  rng = np.random.default_rng(EVAL_SEED)
  with_p, without_p, ks, hits, total = [], [], [], 0, 0
  for i in range(d.eval_examples):
    k = 1 + i % d.max_spans
    f, m = _window(docs, spans, files, probs, rng, k, d.window)
    ex, ps = _example(m, f, d, passages, retriever, True)
    with_p.append(ex)
    without_p.append(_example(m, f, d, passages, retriever, False)[0])
    ks.append(k)
    joined = b"\x00".join(bytes(p.astype(np.uint8)) for p in ps)
    hits += sum(bytes(a.astype(np.uint8)) in joined for a in m.answers)
    total += len(m.answers)
  return with_p, without_p, np.array(ks), hits / total


def evaluate_spans(model, examples, ks, batch: int) -> dict[str, float]:
  """Span exact match (overall and per k) and answer-token loss on ``examples``."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def predict(state, inputs):
    return jnp.argmax(nnx.merge(graphdef, state)(inputs), axis=-1)

  out: dict[str, float] = {}
  per_k: dict[int, list[int]] = {}
  batches = []
  for i in range(0, len(examples), batch):
    b = _batch(examples[i:i + batch])
    pred = np.asarray(predict(state, jnp.asarray(b["inputs"])))
    for row in range(len(pred)):
      c, n = text.span_exact_match(pred[row], b["targets"][row], b["answer_ids"][row])
      acc = per_k.setdefault(int(ks[i + row]), [0, 0])
      acc[0] += c
      acc[1] += n
    batches.append({k: v for k, v in b.items() if k != "answer_ids"})
  out["span_exact_match"] = sum(c for c, _ in per_k.values()) / sum(n for _, n in per_k.values())
  for k, (c, n) in sorted(per_k.items()):
    out[f"span_exact_match_k{k}"] = c / n
  out["answer_loss"] = lm.evaluate(model, batches)
  return out


def train_arm(config, method: str, corpus, evals) -> dict[str, Any]:
  t = config.train
  with_p, without_p, ks, _ = evals
  examples = without_p if method == "no_retrieval" else with_p
  model = lm.make_model(config.model, config.seed)
  t0 = time.monotonic()
  history = lm.train(model, train_batches(config, method, corpus), steps=t.steps, learning_rate=t.learning_rate,
                     warmup=t.warmup, log_every=t.log_every)
  res = evaluate_spans(model, examples, ks, t.batch)
  last = history[-1]
  return {"history": history, **res, "train_loss": last["loss"], "step_seconds": last["step_seconds"],
          "wall_seconds": round(time.monotonic() - t0, 2)}


def run_all(config) -> dict[str, Any]:
  d = config.data
  t0 = time.monotonic()
  corpus = _corpus(d.max_span_len, d.passage_len, tuple(d.kinds), d.max_files)
  evals = eval_set(config, corpus)
  data_seconds = round(time.monotonic() - t0, 2)
  arms = {method: train_arm(config, method, corpus, evals) for method in METHODS}
  return {"per_method": arms, "answer_in_passages": evals[3], "passages": len(corpus[3]),
          "data_seconds": data_seconds, "python_version": platform.python_version()}


def run(config, workdir: str) -> dict[str, Any]:
  """One arm (``config.masksearch.method``) for one seed, from the seed's shared run of every arm."""
  method = config.masksearch.method
  if method not in METHODS:
    raise ValueError(f"masksearch.method: must be one of {list(METHODS)}, got {method!r}")
  shared, path = shared_run(run_all, config, workdir, prefix="masksearch", arm_keys=('masksearch.method',),
                            share=config.masksearch.share_runs)
  arm = shared["per_method"][method]
  return {**{k: v for k, v in shared.items() if k != "per_method"}, **arm, "method": method,
          "shared_results": str(path)}


masksearch_runner = caches_results(run)
