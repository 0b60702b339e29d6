"""LaCLIP against CLIP at equal steps on rendered, captioned digits, as a claim ``runner``.

`laclip_runner(config, workdir)` trains `jaxdyn.models.CLIP` on `jaxdyn.data.paired_digits` (train split) with
`jaxdyn.multimodal.clip_loss`, ``c = config.clip``. One seed:

1. Data: the train split (1,437 digits x ``c.train_copies`` renderings) with ``c.num_rewrites`` grammar
   rewrites per caption, the eval split (360 held-out digits x ``c.eval_copies``), both drawn with
   ``c.data_seed`` (the dataset is fixed across seeds, as a web dataset would be).
2. Each arm trains a CLIP model from the same initialisation (``config.seed``) on the same image batches
   (`jaxdyn.multimodal.laclip_pipeline` with one seed: the image order depends on the seed alone) for
   ``c.steps`` steps: ``"clip"`` pairs every image with its original caption, ``"laclip"`` with a caption
   variant drawn uniformly from {original, rewrites} per image and step. AdamW (decoupled weight decay on the
   matrices only, as CLIP), linear warmup then cosine decay, gradient clipping at norm 1; the logit scale's
   parameter is clamped to [0, log 100] after every step as LaCLIP's and OpenAI's training code do (the loss
   clips it at 100 as well).
3. Evaluation on the held-out images every ``c.eval_every`` steps and at the end: zero-shot accuracy with
   `ZERO_SHOT_TEMPLATES` (`zero_shot`: every template in word and numeral form, averaged per class as CLIP
   does), the same with the original-style and the rewrite-style templates alone, and retrieval recall@1
   image->text and text->image against the eval images' original captions (`jaxdyn.multimodal.clip_recall_at_k`).

Both arms of a seed run in one call (`experiments.claims.one_arm`): the same data and initial model.
"""

from __future__ import annotations

import math
import time
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results, one_arm
from jaxdyn import multimodal
from jaxdyn.data import PairedData, paired_digits
from jaxdyn.data._paired import CLASS_NAMES, CLASS_NUMERALS
from jaxdyn.models import CLIP

ARMS = ("clip", "laclip")
VERBOSE = False  # print each evaluation as it is made (probes); not part of the config

# Zero-shot prompts, each filled with a class's word ("three") and its numeral ("3"). They are chosen to be
# balanced between the two caption styles, not to favour either arm: every one is a caption the grammar of
# `jaxdyn.data.paired_digits` can produce with no attribute and no tail, two in the templates of the original
# captions (TEMPLATES[0] and [1], which CLIP trains on) and two in templates only the rewrites use
# (TEMPLATES[2] and [3]). The filler "a photo of" and the noun "digit" are among the grammar's draws.
ORIGINAL_STYLE_TEMPLATES = ("a photo of a digit {}", "a photo of {} , a digit")
REWRITE_STYLE_TEMPLATES = ("a photo of the digit {}", "the digit {}")
ZERO_SHOT_TEMPLATES = ORIGINAL_STYLE_TEMPLATES + REWRITE_STYLE_TEMPLATES
CLASS_WORDS = tuple(zip(CLASS_NAMES, CLASS_NUMERALS))


def load_data(c) -> tuple[PairedData, PairedData, int]:
  """``(train, eval, max_len)``: the splits of step 1 and the token length that fits every text and prompt."""
  train = paired_digits("train", copies=c.train_copies, num_rewrites=c.num_rewrites, keep_prob=c.keep_prob,
                        seed=c.data_seed)
  ev = paired_digits("eval", copies=c.eval_copies, num_rewrites=c.num_rewrites, keep_prob=c.keep_prob,
                     seed=c.data_seed)
  prompts = multimodal.clip_zero_shot_prompts(ZERO_SHOT_TEMPLATES, CLASS_WORDS)
  max_len = max(train.max_words(), ev.max_words(), max(len(p.split()) for p in prompts)) + 2
  return train, ev, max_len


def make_model(c, vocab_size: int, seed: int) -> CLIP:
  m = c.model
  return CLIP((c.canvas, c.canvas, 1), vocab_size, embed_dim=m.embed_dim, image_width=m.image_width,
              image_kind=m.image_kind, text_width=m.text_width, text_depth=m.text_depth, num_heads=m.num_heads,
              temperature=m.temperature, rngs=nnx.Rngs(seed))


def make_optimizer(c) -> optax.GradientTransformation:
  """AdamW with decay on matrices only, warmup then cosine decay to 0, after global-norm clipping at 1."""
  sched = optax.warmup_cosine_decay_schedule(0.0, c.learning_rate, min(c.warmup, c.steps // 2), max(c.steps, 2))
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # noqa: E731
  return optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(sched, weight_decay=c.weight_decay, mask=decay_mask))


def make_train_step(graphdef, opt):
  """The jitted ``(params, opt_state, images, tokens) -> (params, opt_state, loss, logit scale)``."""

  @jax.jit
  def step(params, opt_state, images, tokens):
    def loss_fn(p):
      u, v, log_scale = nnx.merge(graphdef, p)(images, tokens)
      return multimodal.clip_loss(u, v, log_scale)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    # LaCLIP's train.py (after SLIP / OpenAI): clamp the logit scale's parameter to [0, log 100].
    model = nnx.merge(graphdef, params)
    model.log_scale[...] = jnp.clip(model.log_scale[...], 0.0, math.log(100.0))
    return nnx.state(model), opt_state, loss, jnp.exp(model.log_scale[...])

  return step


@nnx.jit
def _encode_image(model: CLIP, images: jax.Array) -> jax.Array:
  return model.encode_image(images)


@nnx.jit
def _encode_text(model: CLIP, tokens: jax.Array) -> jax.Array:
  return model.encode_text(tokens)


def _encode(fn, x, batch: int = 512) -> np.ndarray:
  return np.concatenate([np.asarray(fn(x[i:i + batch])) for i in range(0, len(x), batch)])


def zero_shot(model: CLIP, images_emb: np.ndarray, labels: np.ndarray, vocab, max_len: int,
              templates=ZERO_SHOT_TEMPLATES) -> float:
  """Zero-shot accuracy of ``images_emb`` with the class embeddings of ``templates`` x `CLASS_WORDS`."""
  prompts = multimodal.clip_zero_shot_prompts(templates, CLASS_WORDS)
  emb = np.asarray(_encode_text(model, jnp.asarray(vocab.encode(prompts, max_len))))
  weights = multimodal.clip_zero_shot_weights(emb.reshape(len(CLASS_WORDS), -1, emb.shape[-1]))
  return float(multimodal.clip_zero_shot_accuracy(images_emb, weights, labels))


def evaluate(model: CLIP, ev: PairedData, max_len: int) -> dict[str, float]:
  """Step 3 of the module docstring on the eval split."""
  model.eval()
  u = _encode(lambda x: _encode_image(model, jnp.asarray(x)), ev.images)
  t = _encode(lambda x: _encode_text(model, jnp.asarray(x)), ev.vocab.encode(ev.captions, max_len))
  i2t, t2i = multimodal.clip_recall_at_k(u, t, 1)
  i2t5, t2i5 = multimodal.clip_recall_at_k(u, t, 5)
  out = {"zero_shot_accuracy": zero_shot(model, u, ev.labels, ev.vocab, max_len),
         "zero_shot_original_style": zero_shot(model, u, ev.labels, ev.vocab, max_len, ORIGINAL_STYLE_TEMPLATES),
         "zero_shot_rewrite_style": zero_shot(model, u, ev.labels, ev.vocab, max_len, REWRITE_STYLE_TEMPLATES),
         "recall1_image_to_text": float(i2t), "recall1_text_to_image": float(t2i),
         "recall5_image_to_text": float(i2t5), "recall5_text_to_image": float(t2i5)}
  out["recall1_mean"] = 0.5 * (out["recall1_image_to_text"] + out["recall1_text_to_image"])
  model.train()
  return out


def train_arm(c, arm: str, seed: int, train: PairedData, ev: PairedData, max_len: int, step=None) -> dict[str, Any]:
  """Step 2 for one arm: the trained model's final evaluation and its curve (``step``: a `make_train_step` of the
  same model and optimizer, to compile once for both arms)."""
  model = make_model(c, train.vocab.size, seed)
  graphdef, params = nnx.split(model)  # every variable of CLIP is a parameter
  opt = make_optimizer(c)
  opt_state = opt.init(params)
  step = make_train_step(graphdef, opt) if step is None else step
  pipeline = multimodal.laclip_pipeline(train, batch_size=c.batch_size, seed=seed, max_len=max_len,
                                       rewrites=arm == "laclip")
  # A short prefetch: grain's default (500 batches on 16 threads) computes batches the run never uses.
  it = iter(pipeline.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=8)))
  history, losses, t0 = [], [], time.monotonic()
  train_seconds = 0.0
  for i in range(c.steps):
    batch = next(it)
    t1 = time.monotonic()
    params, opt_state, loss, scale = step(params, opt_state, jnp.asarray(batch["image"]), jnp.asarray(batch["text"]))
    losses.append(float(loss))
    train_seconds += time.monotonic() - t1
    if (i + 1) % c.eval_every == 0 or i + 1 == c.steps:
      nnx.update(model, params)
      row = {"step": i + 1, "train_loss": float(np.mean(losses[-c.eval_every:])), "logit_scale": float(scale),
             **evaluate(model, ev, max_len)}
      history.append(row)
      if VERBOSE:
        print(arm, f"{time.monotonic() - t0:.1f}s", {k: round(x, 4) for k, x in row.items()}, flush=True)
  nnx.update(model, params)
  final = dict(history[-1])
  final.pop("step")
  return {**final, "history": history, "seconds": round(time.monotonic() - t0, 2),
          "step_seconds": round(train_seconds, 2)}


def run_all(config) -> dict[str, Any]:
  """Both arms of one seed (the same data, initial model and image batches)."""
  c = config.clip
  t0 = time.monotonic()
  train, ev, max_len = load_data(c)
  data_seconds = time.monotonic() - t0
  graphdef, _ = nnx.split(make_model(c, train.vocab.size, int(config.seed)))
  step = make_train_step(graphdef, make_optimizer(c))  # one compiled step for both arms
  arms = {arm: train_arm(c, arm, int(config.seed), train, ev, max_len, step) for arm in ARMS}
  for res in arms.values():
    res["zero_shot_minus_clip"] = res["zero_shot_accuracy"] - arms["clip"]["zero_shot_accuracy"]
    res["recall1_minus_clip"] = res["recall1_mean"] - arms["clip"]["recall1_mean"]
  return {"per_arm": arms, "data_seconds": round(data_seconds, 2), "max_len": max_len,
          "num_train": len(train), "num_eval": len(ev)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.clip.arm``) for one seed, from the seed's shared run of both arms."""
  return one_arm(run_all, config, workdir, arm_key="clip.arm", arms=ARMS, prefix="laclip")


laclip_runner = caches_results(run)
