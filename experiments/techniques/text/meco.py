"""MeCo (metadata conditioning then cooldown) against plain pre-training on the standard library, as a claim ``runner``.

`meco_runner(config, workdir)` follows Gao et al. ("Metadata Conditioning Accelerates Language Model
Pre-training", ICML 2025, https://arxiv.org/abs/2501.01956) at toy scale, with ``d = config.data``,
``t = config.train`` and ``e = config.meco``. One seed trains the same byte-level
`jaxdyn.models.Transformer` (`lm.make_model`) in three arms, in lockstep (`lm.train_lockstep`):

- ``"plain"``: ``t.steps`` steps of plain packed rows (`jaxdyn.text.concat_and_chunk` with the document
  mask, ``d.seq_len`` tokens, ``d.rows`` rows a step);
- ``"meco"``: MeCo on ``e.token_fraction`` of the plain arm's steps (its own warmup-cosine schedule over
  those steps): rows of documents prefixed with ``"package: {name}\\n\\n"`` (`jaxdyn.text.meco_pack`,
  prefix tokens carry no loss) before `jaxdyn.text.meco_switch_step`, plain rows after it (the last
  ``e.cooldown_fraction`` of its steps), the optimizer state kept across the switch;
- ``"meco_full"``: the same with the plain arm's steps (reported, not in the declared claim).

Documents: the top-level pieces (`decomposition.split_top_level`) of a seeded random subset of the
training split's files, about ``d.pass_fraction`` times the run's tokens, shuffled; a piece's metadata
is its file's package (`jaxdyn.data.TextCorpus.packages`). Every step holds ``d.rows x d.seq_len``
tokens whatever the arm (MeCo's prefixes included: the comparison counts the tokens a step processes).

Evaluation every ``t.eval_every`` steps: the validation split's pieces packed plain with the document
mask (``d.eval_rows`` rows), nats per byte (`lm.evaluate`), i.e. **without** metadata, the paper's
criterion. At the end, MeCo's conditional inference: the same validation pieces with their true package
prefix (loss on the document tokens only), ``val_loss_conditioned``. Reported per arm: the final
validation loss, and its excess over the plain arm's (``val_excess_over_plain``, the declared metric).

The arms of a seed share one run: ``<runs dir>/meco-shared-<hash>/seed<k>/results.json``.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np

from experiments.claims import caches_results, shared_run
from experiments.techniques.text import lm
from experiments.techniques.text.decomposition import split_top_level
from jaxdyn import text
from jaxdyn.data import load_stdlib_corpus

ARMS = ("plain", "meco", "meco_full")
EVAL_SHUFFLE_SEED = 1234


def pieces_with_packages(split: str, order_seed, total_tokens: float | None = None):
  """``(pieces, packages)``: top-level pieces of the split's files in a seeded order (a subset of about
  ``total_tokens`` tokens when given), shuffled, with their files' packages."""
  corpus = load_stdlib_corpus(split)
  order = np.random.default_rng(order_seed).permutation(len(corpus))
  if total_tokens is not None:
    keep = int(np.searchsorted(np.cumsum(corpus.lengths[order]), total_tokens)) + 1
    order = order[:keep]
  pairs = [(p, corpus.packages[i]) for i in order for p in split_top_level(corpus.documents[i])]
  perm = np.random.default_rng(order_seed).permutation(len(pairs))
  return [pairs[j][0] for j in perm], [pairs[j][1] for j in perm]


def meco_batches(pieces, packages, d, *, steps: int, cooldown_fraction: float, seed: int):
  """MeCo's stream: prefixed rows before `meco_switch_step`, plain rows after it."""
  switch = text.meco_switch_step(steps, cooldown_fraction=cooldown_fraction)
  cond = text.meco_pack(pieces, packages, d.seq_len, condition=True)
  plain = text.concat_and_chunk(pieces, d.seq_len, document_mask=True)
  conditioned = lm.row_batches(cond, d.rows, [seed, 21], weights=cond.loss_mask)
  cooldown = lm.row_batches(plain, d.rows, [seed, 22])
  for step in range(steps):
    yield next(conditioned) if step < switch else next(cooldown)


def validation_batches(d, *, condition: bool) -> list[dict[str, np.ndarray]]:
  """The validation pieces packed plain (or with their package prefix, loss on the documents only)."""
  pieces, packages = pieces_with_packages("validation", EVAL_SHUFFLE_SEED)
  if condition:
    packed = text.meco_pack(pieces, packages, d.seq_len, condition=True)
    w = packed.loss_mask
  else:
    packed, w = text.concat_and_chunk(pieces, d.seq_len, document_mask=True), None
  rows = min(d.eval_rows, len(packed.tokens))
  return [lm.shifted(packed.tokens[i:i + 16], segment_ids=packed.segment_ids[i:i + 16],
                     positions=packed.positions[i:i + 16], weights=None if w is None else w[i:i + 16, 1:])
          for i in range(0, rows, 16)]


def arm_steps(config, arm: str) -> int:
  if arm not in ARMS:
    raise ValueError(f"meco.arm: must be one of {list(ARMS)}, got {arm!r}")
  return int(round(config.meco.token_fraction * config.train.steps)) if arm == "meco" else config.train.steps


def run_all(config) -> dict[str, Any]:
  """Every arm of one seed."""
  d, t, e = config.data, config.train, config.meco
  pieces, packages = pieces_with_packages("train", [config.seed, 11], d.pass_fraction * t.steps * d.rows * d.seq_len)
  val = validation_batches(d, condition=False)
  trainers, streams = {}, {}
  for arm in ARMS:
    steps = arm_steps(config, arm)
    trainers[arm] = lm.Trainer(lm.make_model(config.model, config.seed), steps=steps, learning_rate=t.learning_rate,
                               warmup=t.warmup, log_every=t.eval_every, eval_every=t.eval_every,
                               eval_fn=lambda mod: {"val_loss": lm.evaluate(mod, val)})
    if arm == "plain":
      streams[arm] = lm.row_batches(text.concat_and_chunk(pieces, d.seq_len, document_mask=True), d.rows,
                                   [config.seed, 22])
    else:
      streams[arm] = meco_batches(pieces, packages, d, steps=steps, cooldown_fraction=e.cooldown_fraction,
                                  seed=config.seed)
  t0 = time.monotonic()
  histories = lm.train_lockstep(trainers, streams)
  val_cond = validation_batches(d, condition=True)
  arms = {}
  for arm, history in histories.items():
    model = trainers[arm].model
    arms[arm] = {"history": history, "val_loss": history[-1]["val_loss"], "steps": trainers[arm].steps,
                 "tokens": history[-1]["tokens"], "val_loss_conditioned": lm.evaluate(model, val_cond),
                 "switch_step": (text.meco_switch_step(trainers[arm].steps, cooldown_fraction=e.cooldown_fraction)
                                 if arm != "plain" else None)}
  for arm in arms.values():
    arm["val_excess_over_plain"] = arm["val_loss"] - arms["plain"]["val_loss"]
    arm["step_fraction"] = arm["steps"] / arms["plain"]["steps"]
  return {"per_arm": arms, "wall_seconds": round(time.monotonic() - t0, 2), "documents": len(pieces),
          "python_version": platform.python_version()}


def run(config, workdir: str) -> dict[str, Any]:
  """One arm (``config.meco.arm``) for one seed, from the seed's shared run of every arm."""
  arm_steps(config, config.meco.arm)  # checks the arm
  shared, path = shared_run(run_all, config, workdir, prefix="meco", arm_keys=('meco.arm',),
                            share=config.meco.share_runs)
  return {**{k: v for k, v in shared.items() if k != "per_arm"}, **shared["per_arm"][config.meco.arm],
          "arm": config.meco.arm, "shared_results": str(path)}


meco_runner = caches_results(run)
