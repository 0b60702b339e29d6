"""Batch-scheduled sampling (self-generated tokens) against teacher forcing on the standard library, as a ``runner``.

`self_generated_runner(config, workdir)` follows Cen et al. ("Bridging the Training-Inference Gap in
LLMs by Leveraging Self-Generated Tokens", TMLR 2025, https://arxiv.org/abs/2410.14655) at toy scale,
with ``d = config.data``, ``t = config.train`` and ``s = config.sampling``. One seed trains the same
byte-level `jaxdyn.models.Transformer` (`lm.make_model`) two ways, in lockstep (`lm.train_lockstep`), on
the same packed rows (`jaxdyn.text.concat_and_chunk` of top-level pieces of standard-library files,
document mask, ``d.seq_len`` bytes, ``d.rows`` rows a step):

- ``"teacher_forcing"``: plain next-token prediction;
- ``"scheduled"``: Batch-Scheduled Sampling: before each step an offline teacher-forced pass of the
  current model over the batch gives its argmax tokens, and each input token is replaced by the model's
  own token with probability ``p`` (`jaxdyn.text.self_generated_inputs`, the first token of every document
  piece kept), the targets unchanged; ``p`` follows `jaxdyn.text.sampling_probability` (``s.schedule``,
  ``s.p_max``, ``s.stages``) over the steps.

Free-running evaluation (the training-inference gap the paper targets): ``d.eval_prompts`` prompts of
``d.prompt_len`` bytes cut from held-out files' pieces at a line start (each followed by at least
``d.continuation_len`` bytes of the same piece), the model's greedy continuation of ``d.continuation_len``
bytes (`jaxdyn.models.generate`), compared position by position with the true continuation:
``free_running_accuracy`` (the share of matching bytes) and ``matched_prefix`` (bytes before the first
mismatch). Also the teacher-forced validation loss on the same continuations (``val_loss``).

The arms of a seed share one run: ``<runs dir>/selfgen-shared-<hash>/seed<k>/results.json``.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.claims import caches_results, one_arm
from experiments.techniques.text import lm
from experiments.techniques.text.meco import EVAL_SHUFFLE_SEED, pieces_with_packages
from jaxdyn import text
from jaxdyn.models import generate

ARMS = ("teacher_forcing", "scheduled")
EVAL_SEED = 4321


def eval_prompts(d) -> tuple[np.ndarray, np.ndarray]:
  """``(prompts, continuations)``: ``(n, prompt_len)`` and ``(n, continuation_len)`` int32 from held-out pieces."""
  pieces, _ = pieces_with_packages("validation", EVAL_SHUFFLE_SEED)
  rng = np.random.default_rng(EVAL_SEED)
  need = d.prompt_len + d.continuation_len
  prompts, conts = [], []
  for j in rng.permutation(len(pieces)):
    p = pieces[j]
    starts = [i + 1 for i in np.flatnonzero(p[:len(p) - need] == ord("\n")) if i + 1 + need <= len(p)]
    if not starts:
      continue
    s = int(starts[rng.integers(len(starts))])
    prompts.append(p[s:s + d.prompt_len])
    conts.append(p[s + d.prompt_len:s + need])
    if len(prompts) == d.eval_prompts:
      break
  return np.stack(prompts).astype(np.int32), np.stack(conts).astype(np.int32)


def free_running(model, prompts: np.ndarray, continuations: np.ndarray) -> dict[str, float]:
  """Greedy continuations against the truth, and the teacher-forced loss of the true continuations."""
  n_new = continuations.shape[1]
  out = generate(model, jnp.asarray(prompts), max_new_tokens=n_new, key=jax.random.key(0), greedy=True)
  gen = np.asarray(out)[:, -n_new:]
  match = gen == continuations
  matched = np.where(match.all(axis=1), n_new, np.argmin(match, axis=1))
  full = np.concatenate([prompts, continuations], axis=1)
  w = np.zeros((full.shape[0], full.shape[1] - 1), np.float32)
  w[:, prompts.shape[1] - 1:] = 1.0
  val = lm.evaluate(model, [lm.shifted(full, weights=w)])
  return {"free_running_accuracy": float(match.mean()), "matched_prefix": float(matched.mean()), "val_loss": val}


def scheduled_batches(trainer: lm.Trainer, rows, s, *, steps: int, seed: int):
  """Batch-scheduled sampling: each batch's inputs partly replaced by the current model's argmax tokens."""
  graphdef, _, rest = nnx.split(trainer.model, nnx.Param, ...)

  @jax.jit
  def replace(params, inputs, segment_ids, positions, p, key):
    m = nnx.merge(graphdef, params, rest)
    logits = m(inputs, segment_ids=segment_ids, positions=positions)
    return text.self_generated_inputs(inputs, logits, p, key=key, segment_ids=segment_ids).inputs

  key = jax.random.key(seed)
  for step in range(steps):
    batch = dict(next(rows))
    p = text.sampling_probability(step, steps, schedule=s.schedule, p_max=s.p_max, stages=s.stages)
    if p > 0:  # the offline pass reads the trainer's current parameters directly (no copy into the model)
      batch["inputs"] = np.asarray(replace(trainer.params, jnp.asarray(batch["inputs"]),
                                           jnp.asarray(batch["segment_ids"]),
                                           jnp.asarray(batch["positions"]), jnp.float32(p),
                                           jax.random.fold_in(key, step)))
    batch["_p"] = p
    yield batch


def run_all(config) -> dict[str, Any]:
  """Both arms of one seed."""
  d, t, s = config.data, config.train, config.sampling
  pieces, _ = pieces_with_packages("train", [config.seed, 11], d.pass_fraction * t.steps * d.rows * d.seq_len)
  packed = text.concat_and_chunk(pieces, d.seq_len, document_mask=True)
  prompts, conts = eval_prompts(d)
  trainers = {arm: lm.Trainer(lm.make_model(config.model, config.seed), steps=t.steps, learning_rate=t.learning_rate,
                              warmup=t.warmup, log_every=t.eval_every, eval_every=t.eval_every,
                              eval_fn=lambda mod: free_running(mod, prompts, conts))
              for arm in ARMS}
  rows = {arm: lm.row_batches(packed, d.rows, [config.seed, 22]) for arm in ARMS}  # the same rows in both arms
  streams = {"teacher_forcing": rows["teacher_forcing"],
             "scheduled": scheduled_batches(trainers["scheduled"], rows["scheduled"], s, steps=t.steps,
                                            seed=config.seed)}
  t0 = time.monotonic()
  histories = lm.train_lockstep(trainers, streams)
  arms = {arm: {"history": h, **{k: h[-1][k] for k in ("free_running_accuracy", "matched_prefix", "val_loss")}}
          for arm, h in histories.items()}
  return {"per_arm": arms, "wall_seconds": round(time.monotonic() - t0, 2), "documents": len(pieces),
          "eval_prompts": int(len(prompts)), "python_version": platform.python_version()}


def run(config, workdir: str) -> dict[str, Any]:
  """One arm (``config.sampling.arm``) for one seed, from the seed's shared run of both arms."""
  return one_arm(run_all, config, workdir, arm_key="sampling.arm", arms=ARMS, prefix="selfgen")


self_generated_runner = caches_results(run)
