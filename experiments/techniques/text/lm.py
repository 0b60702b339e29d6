"""The small byte-level language model every text experiment shares: model, training loop, weighted loss.

A batch is a dict of numpy or jax arrays:

- ``inputs`` ``(B, L)`` int token ids, ``targets`` ``(B, L)`` the ids each position predicts,
  ``weights`` ``(B, L)`` float loss weights (0 for padding, prefixes excluded from the loss, ...);
- optional ``segment_ids`` / ``positions`` ``(B, L)`` int32 for `jaxdyn.models.Transformer`'s
  document-boundary mask and per-document positions;
- optional bookkeeping entries whose key starts with ``_`` (numbers such as ``_attention_flops``): never
  passed to the model, summed over the steps into the history (``cum_attention_flops``).

The loss is the weighted mean token cross-entropy in nats,

.. math::
   \\mathcal{L} = \\frac{\\sum_{b,t} w_{bt} \\, (-\\log p_\\theta(y_{bt} \\mid x_{b, \\le t}))}{\\sum_{b,t} w_{bt}},

and `evaluate` returns the same ratio pooled over all its batches (weights summed first: nats per
weighted token). Shapes may change from step to step (dataset decomposition's buckets): ``jit``
compiles one step per shape, and `train` reports the seconds spent in steps separately from the
seconds spent in evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdyn.data import VOCAB_SIZE
from jaxdyn.models import Transformer

MODEL_KEYS = ("inputs", "segment_ids", "positions")


def make_model(c, seed: int) -> Transformer:
  """A causal `Transformer` from ``c.dim``, ``c.depth``, ``c.num_heads``, ``c.mlp_ratio`` and
  ``c.vocab_size`` (default `jaxdyn.data.VOCAB_SIZE`: bytes and the BOS / EOS / PAD ids)."""
  return Transformer(vocab_size=c.get("vocab_size", VOCAB_SIZE), dim=c.dim, depth=c.depth, num_heads=c.num_heads,
                     mlp_ratio=c.mlp_ratio, rngs=nnx.Rngs(seed))


def _model_inputs(batch: Mapping[str, Any]) -> dict[str, jax.Array]:
  out = {k: jnp.asarray(batch[k]) for k in ("segment_ids", "positions") if batch.get(k) is not None}
  return out


def weighted_nll(model: Transformer, batch: Mapping[str, Any]) -> tuple[jax.Array, jax.Array]:
  """``(sum of w * nll, sum of w)`` of one batch (the numerator and denominator of the loss)."""
  logits = model(jnp.asarray(batch["inputs"]), **_model_inputs(batch)).astype(jnp.float32)
  targets = jnp.asarray(batch["targets"])
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0]
  w = jnp.asarray(batch["weights"], jnp.float32)
  return jnp.sum(nll * w), jnp.sum(w)


def make_optimizer(learning_rate: float, steps: int, warmup: int, *, weight_decay: float = 0.0,
                   clip: float = 1.0) -> optax.GradientTransformation:
  """Adam(W) with linear warmup then cosine decay to 10% over ``steps``, after global-norm clipping."""
  sched = optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(1, min(warmup, steps // 2)), max(steps, 2),
                                             learning_rate * 0.1)
  return optax.chain(optax.clip_by_global_norm(clip), optax.adamw(sched, weight_decay=weight_decay))


class Trainer:
  """One model's training state, stepped one batch at a time (`train` runs one; `train_lockstep` several).

  ``step(batch)`` takes one Adam step (`make_optimizer`) on the weighted loss and returns a history
  record when ``log_every`` / ``eval_every`` / the last step says so: ``{"step", "loss", "tokens",
  "step_seconds", "compile_seconds", "cum_<name>"...}``: the mean training loss since the last record, the
  cumulative weighted tokens (sum of ``weights``), the cumulative seconds spent in train steps (blocking
  on the loss) except the first step of each batch shape, which compiles it (``compile_seconds``), the
  cumulative ``_<name>`` bookkeeping entries, and at evaluation steps ``eval_fn(model)`` (its time not
  counted). ``model`` holds the trained parameters after each evaluation and after `finish`.
  """

  def __init__(self, model: Transformer, *, steps: int, learning_rate: float, warmup: int = 50,
               weight_decay: float = 0.0, log_every: int = 50,
               eval_fn: Callable[[Transformer], Mapping[str, float]] | None = None, eval_every: int | None = None):
    self.model, self.steps, self.log_every = model, steps, log_every
    self.eval_fn, self.eval_every = eval_fn, eval_every or log_every
    graphdef, self.params, rest = nnx.split(model, nnx.Param, ...)
    opt = make_optimizer(learning_rate, steps, warmup, weight_decay=weight_decay)
    self.opt_state = opt.init(self.params)

    def loss_fn(p, batch):
      num, den = weighted_nll(nnx.merge(graphdef, p, rest), batch)
      return num / jnp.maximum(den, 1e-9)

    @jax.jit
    def step(p, s, batch):
      loss, g = jax.value_and_grad(loss_fn)(p, batch)
      u, s = opt.update(g, s, p)
      return optax.apply_updates(p, u), s, loss

    self._step = step
    self.history: list[dict[str, float]] = []
    self.i, self.tokens, self.seconds, self.compile_seconds = 0, 0.0, 0.0, 0.0
    self._cum: dict[str, float] = {}
    self._losses: list[float] = []
    self._seen: set = set()

  def sync(self) -> Transformer:
    """Writes the current parameters into ``model`` and returns it."""
    nnx.update(self.model, self.params)
    return self.model

  def step(self, batch: Mapping[str, Any]) -> dict[str, float] | None:
    for k, v in batch.items():
      if k.startswith("_"):
        self._cum["cum" + k] = self._cum.get("cum" + k, 0.0) + float(v)
    arrays = {k: jnp.asarray(v) for k, v in batch.items() if not k.startswith("_") and v is not None}
    self.tokens += float(np.sum(np.asarray(batch["weights"])))
    signature = tuple(sorted((k, v.shape) for k, v in arrays.items()))
    t0 = time.perf_counter()
    self.params, self.opt_state, loss = self._step(self.params, self.opt_state, arrays)
    self._losses.append(float(loss))
    if signature in self._seen:
      self.seconds += time.perf_counter() - t0
    else:  # the first step of a shape compiles it
      self._seen.add(signature)
      self.compile_seconds += time.perf_counter() - t0
    self.i += 1
    last, evaluate_now = self.i == self.steps, self.i % self.eval_every == 0
    if not (last or evaluate_now or self.i % self.log_every == 0):
      return None
    rec = {"step": self.i, "loss": float(np.mean(self._losses)), "tokens": self.tokens,
           "step_seconds": round(self.seconds, 3), "compile_seconds": round(self.compile_seconds, 3), **self._cum}
    self._losses = []
    if self.eval_fn is not None and (last or evaluate_now):
      rec.update({k: float(v) for k, v in self.eval_fn(self.sync()).items()})
    self.history.append(rec)
    return rec

  def finish(self) -> list[dict[str, float]]:
    self.sync()
    return self.history


def train(model: Transformer, batches: Iterator[Mapping[str, Any]], *, steps: int, learning_rate: float,
          warmup: int = 50, weight_decay: float = 0.0, log_every: int = 50,
          eval_fn: Callable[[Transformer], Mapping[str, float]] | None = None, eval_every: int | None = None,
          on_step: Callable[[int, Transformer], None] | None = None) -> list[dict[str, float]]:
  """Trains ``model`` in place for ``steps`` steps on ``batches``; returns the history (`Trainer`).

  ``on_step(i, model)`` runs before step ``i`` (0-based) with the current parameters in ``model``, e.g.
  to switch data.
  """
  trainer = Trainer(model, steps=steps, learning_rate=learning_rate, warmup=warmup, weight_decay=weight_decay,
                    log_every=log_every, eval_fn=eval_fn, eval_every=eval_every)
  for i in range(steps):
    if on_step is not None:
      on_step(i, trainer.sync())
    trainer.step(next(batches))
  return trainer.finish()


def train_lockstep(trainers: Mapping[str, Trainer], batches: Mapping[str, Iterator[Mapping[str, Any]]]
                   ) -> dict[str, list[dict[str, float]]]:
  """Steps several `Trainer`\ s in turn, one step each per round, until all are done; their histories.

  Alternating the arms step by step makes their ``step_seconds`` comparable on a shared, noisy machine:
  whatever else runs slows every arm alike.
  """
  while any(t.i < t.steps for t in trainers.values()):
    for name, t in trainers.items():
      if t.i < t.steps:
        t.step(next(batches[name]))
  return {name: t.finish() for name, t in trainers.items()}


def evaluate(model: Transformer, batches) -> float:
  """Weighted mean nats per token over ``batches`` (an iterable of batch dicts), pooled."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def f(state, batch):
    return weighted_nll(nnx.merge(graphdef, state), batch)

  num, den = 0.0, 0.0
  for batch in batches:
    arrays = {k: jnp.asarray(v) for k, v in batch.items() if not k.startswith("_") and v is not None}
    n, d = f(state, arrays)
    num, den = num + float(n), den + float(d)
  if den <= 0:
    raise ValueError("batches: hold no token with a positive weight")
  return num / den


def shifted(tokens: np.ndarray, *, segment_ids: np.ndarray | None = None, positions: np.ndarray | None = None,
            weights: np.ndarray | None = None, pad_id: int | None = None) -> dict[str, np.ndarray]:
  """A batch dict of next-token prediction on rows of ``tokens`` ``(B, L)``: inputs ``[:, :-1]``, targets
  ``[:, 1:]``; ``weights`` (over the targets, default 1) are zeroed where the target is ``pad_id`` and, with
  ``segment_ids``, where the target starts a new segment (a document's first token is not predicted from
  another document's)."""
  tokens = np.asarray(tokens)
  w = np.ones(tokens[:, 1:].shape, np.float32) if weights is None else np.asarray(weights, np.float32).copy()
  if pad_id is not None:
    w = w * (tokens[:, 1:] != pad_id)
  out = {"inputs": tokens[:, :-1].astype(np.int32), "targets": tokens[:, 1:].astype(np.int32)}
  if segment_ids is not None:
    segment_ids = np.asarray(segment_ids)
    w = w * (segment_ids[:, 1:] == segment_ids[:, :-1])
    out["segment_ids"] = segment_ids[:, :-1].astype(np.int32)
    out["positions"] = np.asarray(positions)[:, :-1].astype(np.int32)
  out["weights"] = w.astype(np.float32)
  return out


def row_batches(packed, rows: int, seed, weights=None):
  """Endless batches of ``rows`` rows of a packed corpus (``tokens`` / ``segment_ids`` / ``positions``) in
  seeded shuffled passes without replacement, as next-token batches (`shifted`); ``weights``: optional
  per-token ``(num_rows, seq_len)`` loss masks (their targets' entries are used)."""
  rng = np.random.default_rng(seed)
  order, i = rng.permutation(len(packed.tokens)), 0
  while True:
    if i + rows > len(order):
      order, i = rng.permutation(len(packed.tokens)), 0
    idx = np.sort(order[i:i + rows])
    i += rows
    w = None if weights is None else weights[idx][:, 1:]
    yield shifted(packed.tokens[idx], segment_ids=packed.segment_ids[idx], positions=packed.positions[idx],
                     weights=w)
