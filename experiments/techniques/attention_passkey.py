"""LongGen on a small byte-level LM: passkey retrieval at 4x the pre-training length, run as a claim's ``runner``.

`passkey_runner(config, workdir)` follows Ge et al. (LongGen, arXiv 2410.01485) at toy scale:

1. pre-train a `jaxdyn.models.Transformer` with full attention on passkey text
   (`jaxdyn.attention._passkey.passkey_batch`) at ``L = config.passkey.length`` for
   ``pretrain_steps`` Adam steps (cached per seed and pre-training settings under
   ``<workdir>/../../_passkey_pretrain/<hash>-seed<k>.npz``, so the arms of one seed share it), and
   measure its passkey accuracy at ``L``;
2. fine-tune it at ``L_ft = scale * L`` for ``finetune_steps`` steps with the arm's plan
   (``config.passkey.plan``): ``"full"`` (every layer full attention), ``"hybrid"``
   (`layer_plan(depth)`: the middle third full, the rest `sink_window_attention(sink, window)`) or
   ``"sparse"`` (every layer sink + window);
3. measure exact-match passkey accuracy at ``L_ft`` by greedy decoding with the plan's ring-buffer
   caches (`hybrid_cache_sizes`), over distance buckets, and the plan's KV-cache bytes at ``L_ft``
   (`kv_cache_bytes`) against all-full.

It writes ``results.json`` in ``workdir`` and returns what is there if it exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results
from jaxdyn.attention._longgen import hybrid_attention_fns, hybrid_cache_sizes, kv_cache_bytes, layer_plan
from jaxdyn.attention._passkey import passkey_accuracy, passkey_batch, passkey_overhead
from jaxdyn.models import Transformer

PLANS = ("full", "hybrid", "sparse")


def plan_of(kind: str, depth: int) -> tuple[str, ...]:
  """The layer plan of an arm: all ``"full"``, LongGen's `layer_plan(depth)`, or all ``"sparse"``."""
  if kind not in PLANS:
    raise ValueError(f"plan: must be one of {PLANS}, got {kind!r}")
  if kind == "hybrid":
    return layer_plan(depth)
  return (kind if kind == "full" else "sparse",) * depth


def _model(c, plan, seed):
  fns = hybrid_attention_fns(plan, sink=c.sink, window=c.window)
  return Transformer(dim=c.dim, depth=c.depth, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, attention_fns=fns,
                     rngs=nnx.Rngs(seed))


def train(model, *, steps: int, batch: int, length: int, learning_rate: float, seed: int, other_weight: float,
          warmup: int = 100, curriculum: int = 0, log_every: int = 100) -> list[dict]:
  """Adam (warmup then cosine decay to 10%) on passkey batches, in place; returns the loss history
  (``{"step", "loss", "answer_loss"}`` every ``log_every`` steps, the last the answer digits' mean NLL).

  ``curriculum``: over the first ``curriculum`` steps the largest distance grows linearly from 16
  bytes to the full filler (0: no curriculum). The loss is the weighted next-token cross-entropy
  ``sum_t w_t (-log p(x_{t+1} | x_{<=t})) / sum_t w_t`` of `passkey_batch`.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  sched = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(warmup, max(1, steps // 2)), max(steps, 2),
                                             learning_rate * 0.1)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=0.0))
  opt_state = opt.init(params)

  def loss_fn(p, tokens, weights):
    m = nnx.merge(graphdef, p, rest)
    logits = m(tokens[:, :-1]).astype(jnp.float32)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], axis=-1)[..., 0]
    answer = weights >= 1.0
    return jnp.sum(nll * weights) / jnp.sum(weights), jnp.sum(nll * answer) / jnp.maximum(jnp.sum(answer), 1)

  @jax.jit
  def step(p, s, tokens, weights):
    (loss, answer_loss), g = jax.value_and_grad(loss_fn, has_aux=True)(p, tokens, weights)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, loss, answer_loss

  rng = np.random.default_rng([seed, length, 7])
  filler = length - passkey_overhead()
  history = []
  for i in range(steps):
    max_d = None
    if curriculum and i < curriculum:
      max_d = int(16 + (filler - 16) * i / curriculum)
    tokens, weights = passkey_batch(rng, batch, length, other_weight=other_weight, max_distance=max_d)
    params, opt_state, loss, answer_loss = step(params, opt_state, jnp.asarray(tokens), jnp.asarray(weights))
    if (i + 1) % log_every == 0 or i == steps - 1:
      history.append({"step": i + 1, "loss": float(loss), "answer_loss": float(answer_loss)})
  nnx.update(model, params)
  return history


def _save(path: pathlib.Path, model, extra: dict) -> None:
  leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
  np.savez(tmp, *[np.asarray(x) for x in leaves], meta=np.frombuffer(json.dumps(extra).encode(), np.uint8))
  os.replace(tmp, path)


def _load(path: pathlib.Path, model) -> dict:
  state = nnx.state(model, nnx.Param)
  with np.load(path) as f:
    leaves = [jnp.asarray(f[f"arr_{i}"]) for i in range(len(jax.tree.leaves(state)))]
    meta = json.loads(bytes(f["meta"]).decode())
  nnx.update(model, jax.tree.unflatten(jax.tree.structure(state), leaves))
  return meta


def _pretrain_path(config, workdir: str) -> pathlib.Path:
  c = config.passkey.to_dict()
  keys = ("dim", "depth", "num_heads", "mlp_ratio", "length", "pretrain_steps", "batch", "learning_rate",
          "other_weight", "curriculum", "warmup")
  h = hashlib.sha256(json.dumps({k: c[k] for k in keys}, sort_keys=True).encode()).hexdigest()[:10]
  return pathlib.Path(workdir).resolve().parent.parent / "_passkey_pretrain" / f"{h}-seed{config.seed}.npz"


def pretrain(config, workdir: str) -> tuple[Transformer, dict]:
  """The seed's pre-trained full-attention model and its record (loss history, accuracy at L, time)."""
  c = config.passkey
  model = _model(c, ("full",) * c.depth, config.seed)
  path = _pretrain_path(config, workdir)
  if path.exists():
    return model, _load(path, model)
  t0 = time.monotonic()
  history = train(model, steps=c.pretrain_steps, batch=c.batch, length=c.length, learning_rate=c.learning_rate,
                  seed=config.seed, other_weight=c.other_weight, warmup=c.warmup, curriculum=c.curriculum,
                  log_every=c.log_every)
  seconds = time.monotonic() - t0
  acc = passkey_accuracy(model, length=c.length, num_examples=c.eval_examples, seed=10_000 + config.seed,
                         batch_size=c.eval_batch)
  meta = {"history": history, "accuracy": acc["accuracy"], "seconds": round(seconds, 2)}
  _save(path, model, meta)
  return model, meta


@caches_results
def passkey_runner(config, workdir: str) -> dict[str, Any]:
  """One (plan, seed) run of the LongGen passkey study; see the module docstring."""
  c = config.passkey
  t_start = time.monotonic()
  base, pre = pretrain(config, workdir)
  plan = plan_of(c.plan, c.depth)
  model = _model(c, plan, config.seed)
  nnx.update(model, nnx.state(base, nnx.Param))
  long_len = c.scale * c.length
  t0 = time.monotonic()
  ft_history = train(model, steps=c.finetune_steps, batch=c.finetune_batch, length=long_len,
                     learning_rate=c.finetune_learning_rate, seed=1000 + config.seed, other_weight=c.other_weight,
                     warmup=min(c.warmup, max(1, c.finetune_steps // 4)), log_every=c.log_every)
  ft_seconds = time.monotonic() - t0
  lens, sinks = hybrid_cache_sizes(plan, long_len, sink=c.sink, window=c.window)
  t0 = time.monotonic()
  acc = passkey_accuracy(model, length=long_len, num_examples=c.eval_examples, seed=20_000 + config.seed,
                         buckets=tuple(c.buckets), batch_size=c.eval_batch, cache_len=lens, sink_tokens=sinks)
  eval_seconds = time.monotonic() - t0
  cache = kv_cache_bytes(plan, long_len, num_heads=c.num_heads, head_dim=c.dim // c.num_heads, sink=c.sink,
                         window=c.window)
  results = {
      "plan": list(plan),
      "accuracy": acc["accuracy"],
      "bucket_accuracy": acc["bucket_accuracy"],
      "buckets": acc["buckets"],
      "bucket_count": acc["bucket_count"],
      "pretrain_accuracy": pre["accuracy"],
      "pretrain_seconds": pre["seconds"],
      "pretrain_final_loss": pre["history"][-1]["loss"],
      "finetune_final_loss": ft_history[-1]["loss"],
      "finetune_answer_loss": ft_history[-1]["answer_loss"],
      "finetune_seconds": round(ft_seconds, 2),
      "eval_seconds": round(eval_seconds, 2),
      "cache_bytes": cache["total"],
      "full_cache_bytes": cache["full_total"],
      "cache_saving": cache["saving"],
      "wall_seconds": round(time.monotonic() - t_start, 2),
      "finetune_history": ft_history,
  }
  for (lo, hi), a in zip(acc["buckets"], acc["bucket_accuracy"]):
    results[f"accuracy_d{lo}_{hi}"] = a
  return results
