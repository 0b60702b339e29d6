r"""PRIOR against plain next-token prediction for a small image-conditioned captioner on `paired_digits`.

`prior_runner(config, workdir)` is a claim ``runner`` (``c = config.prior``) for Chen et al.'s PRIOR
(https://arxiv.org/abs/2505.08971; `jaxdyn.multimodal.prior_loss`). One seed:

1. **Data.** `jaxdyn.data.paired_digits` train (1,437 digits x ``c.copies`` renderings) and eval (360) splits,
   drawn with the run's seed, original captions only (no rewrites), ``c.keep_prob`` per stated attribute.
   Captions are word-level tokens (`CaptionVocab.encode`: ``<bos>`` words ``<eos>`` ``<pad>``...); a target is
   valid when it is not ``<pad>`` (``<eos>`` is predicted).
2. **Reference LM** (`train_reference`): a `jaxdyn.models.Captioner` called with ``images=None`` (the same decoder
   without the image prefix: a caption-only LM), from the seed's initial parameters, trained by plain next-token
   cross-entropy on the train captions for ``c.ref_steps`` steps. Its log-probabilities of every train
   caption's tokens are computed once (`reference_log_probs`) and fixed.
3. **Captioner arms**, each from the same initial parameters as the reference (the same ``nnx.Rngs(seed)``
   model) and on the same batches (``c.batch`` images per step, one seeded shuffle per pass, shared by the
   arms), ``c.steps`` Adam steps (warmup then cosine, ``c.learning_rate``): ``"ntp"``: plain masked mean
   next-token cross-entropy; ``"prior"``: `jaxdyn.multimodal.prior_loss` with the reference's log-probabilities
   and ``c.alpha``.
4. **Evaluation** on the eval images with their own captions, teacher forced (`evaluate`):
   ``image_token_accuracy``: top-1 next-token accuracy over the targets that are image-related words
   (``vocab.image_related``: class names and numerals, size, thickness and position words);
   ``other_token_accuracy`` over the rest; ``image_fact_accuracy``: over the same image-related targets, whether
   the predicted word states the same fact (the same class as a name or a numeral, a synonym of the same
   attribute value: "big" for "large"), since the grammar draws the form and the synonym at random;
   ``caption_class_accuracy``: caption-based classification by ranking the 10 classes at the caption's class
   slot (the first class word of the caption) by the probability the captioner puts on the class's word or
   numeral there, ``log(p(name_c) + p(numeral_c))``, given the image and the caption's words before the slot;
   ``eval_loss``: nats per valid token.
   Also logged every ``c.eval_every`` steps (the training curve).

Per-token weights: `token_weights(ref_model, vocab, tokens, alpha=...)` gives, for captions, each word with
``p_ref`` and its PRIOR weight (`format_token_weights` prints them); the runner stores them for
``c.num_sample_captions`` eval captions (``sample_weights``) and the mean weight of image-related and other train
tokens (``mean_weight_image``, ``mean_weight_other``, ``weight_share_image``).

The arms of a seed share one run (`experiments.claims.shared_run`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results, one_arm
from jaxdyn import data as jdata
from jaxdyn import multimodal as mm
from jaxdyn.data import _paired
from jaxdyn.models import Captioner, token_log_probs

ARMS = ("ntp", "prior")


# --- data -------------------------------------------------------------------------------------------------------
def load_data(c, seed: int) -> dict[str, Any]:
  """Train and eval `PairedData` of one seed, encoded (step 1 of the module docstring)."""
  train = jdata.paired_digits("train", copies=c.copies, num_rewrites=0, keep_prob=c.keep_prob, seed=seed)
  ev = jdata.paired_digits("eval", num_rewrites=0, keep_prob=c.keep_prob, seed=seed)
  vocab = train.vocab
  max_len = max(train.max_words(), ev.max_words()) + 2
  return {"train": train, "eval": ev, "vocab": vocab, "max_len": max_len,
          "train_tokens": vocab.encode(train.captions, max_len), "eval_tokens": vocab.encode(ev.captions, max_len)}


def make_captioner(c, image_shape: Sequence[int], vocab_size: int, seed: int) -> Captioner:
  m = c.model
  return Captioner(tuple(image_shape), vocab_size, dim=m.dim, depth=m.depth, num_heads=m.num_heads,
                   prefix_len=m.prefix_len, image_width=m.image_width, image_kind=m.image_kind, rngs=nnx.Rngs(seed))


def fact_table(vocab: _paired.CaptionVocab) -> np.ndarray:
  """``(V, F)`` bool: the facts each word can state (a class, or an attribute's value; "middle" states two)."""
  facts = [("class", k) for k in range(10)]
  tables = {"size": _paired.SIZES, "thickness": _paired.THICKNESS, "horizontal": _paired.HORIZONTAL,
            "vertical": _paired.VERTICAL}
  for name, table in tables.items():
    facts += [(name, value) for value in table]
  index = {f: i for i, f in enumerate(facts)}
  out = np.zeros((vocab.size, len(facts)), bool)
  for i, word in enumerate(vocab.words):
    for k in range(10):
      if word in (_paired.CLASS_NAMES[k], _paired.CLASS_NUMERALS[k]):
        out[i, index[("class", k)]] = True
    for name, table in tables.items():
      for value, synonyms in table.items():
        if word in synonyms:
          out[i, index[(name, value)]] = True
  return out


def class_ids(vocab: _paired.CaptionVocab) -> tuple[np.ndarray, np.ndarray]:
  """Token ids of the class names and of the class numerals, each ``(10,)``."""
  idx = {w: i for i, w in enumerate(vocab.words)}
  return (np.array([idx[w] for w in _paired.CLASS_NAMES]), np.array([idx[w] for w in _paired.CLASS_NUMERALS]))


# --- losses and training ----------------------------------------------------------------------------------------
def ntp_loss(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
  """Plain next-token prediction: the masked mean cross-entropy ``sum(m * nll) / sum(m)``."""
  nll = -token_log_probs(logits, targets)
  m = mask.astype(nll.dtype)
  return jnp.sum(m * nll) / jnp.maximum(jnp.sum(m), 1.0)


def reference_log_probs(ref_model: Captioner, tokens: np.ndarray, batch: int = 512) -> np.ndarray:
  """``(N, L - 1)`` log-probabilities of each caption's targets ``tokens[:, 1:]`` under the caption-only LM."""
  graphdef, state = nnx.split(ref_model)

  @jax.jit
  def f(state, tok):
    return token_log_probs(nnx.merge(graphdef, state)(None, tok[:, :-1]), tok[:, 1:])

  return np.concatenate([np.asarray(f(state, jnp.asarray(tokens[i:i + batch])))
                         for i in range(0, len(tokens), batch)])


def batches(n: int, batch: int, seed: int):
  """Endless index batches: seeded shuffled passes without replacement (the same for every arm of a seed)."""
  rng = np.random.default_rng([seed, 11])
  order, i = rng.permutation(n), 0
  while True:
    if i + batch > n:
      order, i = rng.permutation(n), 0
    yield order[i:i + batch]
    i += batch


def train(model: Captioner, d: dict[str, Any], c, *, arm: str, seed: int, ref_lp: np.ndarray | None = None,
          steps: int, eval_fn=None) -> list[dict[str, float]]:
  """Trains ``model`` in place: ``arm`` ``"reference"`` (no images, plain NTP), ``"ntp"`` or ``"prior"``."""
  if arm not in ("reference",) + ARMS:
    raise ValueError(f"arm: must be 'reference', 'ntp' or 'prior', got {arm!r}")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  sched = optax.warmup_cosine_decay_schedule(0.0, c.learning_rate, max(1, min(c.warmup, steps // 2)),
                                             max(steps, 2), c.learning_rate * 0.1)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))
  opt_state = opt.init(params)
  images_all, tokens_all = d["train"].images, d["train_tokens"]
  alpha = float(c.alpha)

  def loss_fn(p, images, tokens, lp):
    m = nnx.merge(graphdef, p, rest)
    logits = m(None if arm == "reference" else images, tokens[:, :-1])
    targets = tokens[:, 1:]
    mask = targets != _paired.PAD
    if arm == "prior":
      return mm.prior_loss(logits, targets, lp, mask=mask, alpha=alpha)
    return ntp_loss(logits, targets, mask)

  @jax.jit
  def step(p, s, images, tokens, lp):
    loss, g = jax.value_and_grad(loss_fn)(p, images, tokens, lp)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  if ref_lp is None:
    ref_lp = np.zeros(tokens_all[:, 1:].shape, np.float32)
  history, losses = [], []
  it = batches(len(tokens_all), c.batch, seed)
  for i in range(steps):
    idx = next(it)
    params, opt_state, loss = step(params, opt_state, jnp.asarray(images_all[idx]), jnp.asarray(tokens_all[idx]),
                                   jnp.asarray(ref_lp[idx]))
    losses.append(loss)
    if eval_fn is not None and ((i + 1) % c.eval_every == 0 or i + 1 == steps):
      nnx.update(model, params)
      history.append({"step": i + 1, "train_loss": float(np.mean(jax.device_get(losses))), **eval_fn(model)})
      losses = []
  nnx.update(model, params)
  return history


def train_reference(c, d: dict[str, Any], seed: int) -> tuple[Captioner, list[dict[str, float]]]:
  """Step 2: the caption-only reference LM of one seed, from the seed's initial parameters."""
  model = make_captioner(c, d["train"].images.shape[1:], d["vocab"].size, seed)
  ev = lambda m: {"eval_loss": evaluate(m, d, images=False)["eval_loss"]}  # noqa: E731
  history = train(model, d, c, arm="reference", seed=seed, steps=c.ref_steps, eval_fn=ev)
  return model, history


# --- evaluation -------------------------------------------------------------------------------------------------
def evaluate(model: Captioner, d: dict[str, Any], *, images: bool = True) -> dict[str, float]:
  """Step 4 of the module docstring on the eval split (``images=False``: the model run without images)."""
  vocab, tokens = d["vocab"], d["eval_tokens"]
  graphdef, state = nnx.split(model)
  x = jnp.asarray(d["eval"].images) if images else None

  @jax.jit
  def f(state, x, tok):
    return jax.nn.log_softmax(nnx.merge(graphdef, state)(x, tok[:, :-1]).astype(jnp.float32), axis=-1)

  logp = np.asarray(f(state, x, jnp.asarray(tokens)))
  targets = tokens[:, 1:]
  mask = targets != _paired.PAD
  related = vocab.image_related[targets] & mask
  other = ~vocab.image_related[targets] & mask
  pred = logp.argmax(-1)
  hit = pred == targets
  facts = fact_table(vocab)
  fact_hit = (facts[pred] & facts[targets]).any(-1)
  nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  names, numerals = class_ids(vocab)
  is_class = np.isin(targets, np.concatenate([names, numerals]))
  slot = is_class.argmax(1)
  if not is_class.any(1).all():
    raise ValueError("eval_tokens: every caption must name its class")
  rows = np.arange(len(tokens))
  at_slot = logp[rows, slot]
  scores = np.logaddexp(at_slot[:, names], at_slot[:, numerals])
  return {
      "image_token_accuracy": float(hit[related].mean()),
      "other_token_accuracy": float(hit[other].mean()),
      "token_accuracy": float(hit[mask].mean()),
      "image_fact_accuracy": float(fact_hit[related].mean()),
      "caption_class_accuracy": float((scores.argmax(1) == d["eval"].labels).mean()),
      "eval_loss": float(nll[mask].mean()),
      "image_token_loss": float(nll[related].mean()),
  }


# --- per-token weights (also for notebooks) ---------------------------------------------------------------------
def token_weights(ref_model: Captioner, vocab: _paired.CaptionVocab, tokens: np.ndarray, *,
                  alpha: float = 1.0) -> list[list[dict[str, Any]]]:
  """Each caption's words with ``p_ref`` (the caption-only LM's probability of the word given the words before it)
  and PRIOR's weight (`jaxdyn.multimodal.prior_token_weights`, normalised over the caption's words and
  ``<eos>``): one list of ``{"word", "p_ref", "weight", "image_related"}`` per row of ``tokens`` (encoded captions,
  ``vocab.encode``)."""
  tokens = np.asarray(tokens)
  lp = reference_log_probs(ref_model, tokens)
  targets = tokens[:, 1:]
  mask = targets != _paired.PAD
  w = np.asarray(mm.prior_token_weights(jnp.asarray(lp), jnp.asarray(mask), alpha=alpha))
  out = []
  for b in range(len(tokens)):
    out.append([{"word": vocab.words[t], "p_ref": round(float(np.exp(lp[b, i])), 4), "weight": round(float(w[b, i]), 4),
                 "image_related": bool(vocab.image_related[t])} for i, t in enumerate(targets[b]) if mask[b, i]])
  return out


def format_token_weights(rows: list[list[dict[str, Any]]]) -> str:
  """One line per caption, ``word:weight`` with image-related words in capitals (for logs and notebooks)."""
  lines = []
  for row in rows:
    lines.append(" ".join(f"{r['word'].upper() if r['image_related'] else r['word']}:{r['weight']:.2f}" for r in row))
  return "\n".join(lines)


def weight_summary(ref_lp: np.ndarray, tokens: np.ndarray, vocab: _paired.CaptionVocab, alpha: float) -> dict:
  """Mean PRIOR weight of image-related and of other valid train tokens, and the image tokens' share of it."""
  targets = tokens[:, 1:]
  mask = targets != _paired.PAD
  w = np.asarray(mm.prior_token_weights(jnp.asarray(ref_lp), jnp.asarray(mask), alpha=alpha))
  related = vocab.image_related[targets] & mask
  other = ~vocab.image_related[targets] & mask
  return {"mean_weight_image": float(w[related].mean()), "mean_weight_other": float(w[other].mean()),
          "weight_share_image": float(w[related].sum() / w[mask].sum()),
          "token_share_image": float(related.sum() / mask.sum()),
          "mean_p_ref_image": float(np.exp(ref_lp[related]).mean()),
          "mean_p_ref_other": float(np.exp(ref_lp[other]).mean())}


# --- the claim runner -------------------------------------------------------------------------------------------
def run_all(config) -> dict[str, Any]:
  """The reference LM of one seed and both captioner arms from the same initial parameters."""
  c, seed = config.prior, int(config.seed)
  t0 = time.monotonic()
  d = load_data(c, seed)
  ref, ref_history = train_reference(c, d, seed)
  ref_lp = reference_log_probs(ref, d["train_tokens"])
  ref_seconds = time.monotonic() - t0
  summary = weight_summary(ref_lp, d["train_tokens"], d["vocab"], c.alpha)
  samples = token_weights(ref, d["vocab"], d["eval_tokens"][:c.num_sample_captions], alpha=c.alpha)
  print(f"PRIOR seed {seed}: reference LM in {ref_seconds:.1f} s, eval loss {ref_history[-1]['eval_loss']:.3f}; "
        f"mean weight image {summary['mean_weight_image']:.2f} / other {summary['mean_weight_other']:.2f}\n"
        + format_token_weights(samples), flush=True)
  arms = {}
  for arm in ARMS:
    t1 = time.monotonic()
    model = make_captioner(c, d["train"].images.shape[1:], d["vocab"].size, seed)  # the reference's init
    history = train(model, d, c, arm=arm, seed=seed, ref_lp=ref_lp if arm == "prior" else None, steps=c.steps,
                    eval_fn=lambda m: evaluate(m, d))
    arms[arm] = {**history[-1], "history": history, "train_seconds": round(time.monotonic() - t1, 2)}
    print(f"PRIOR seed {seed} {arm}: " + ", ".join(f"{k} {v:.4f}" for k, v in history[-1].items() if k != "step"),
          flush=True)
  base = arms["ntp"]
  for arm in arms.values():
    arm["image_accuracy_rel_to_ntp"] = arm["image_token_accuracy"] / max(base["image_token_accuracy"], 1e-9) - 1.0
    arm["class_accuracy_minus_ntp"] = arm["caption_class_accuracy"] - base["caption_class_accuracy"]
  ref_eval = evaluate(ref, d, images=False)
  return {"per_arm": arms, "reference": {"history": ref_history, **ref_eval}, "sample_weights": samples,
          "reference_seconds": round(ref_seconds, 2), "reference_eval_loss": ref_eval["eval_loss"],
          "reference_image_token_accuracy": ref_eval["image_token_accuracy"], **summary}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.prior.arm``) for one seed, from the seed's shared run of both arms."""
  return one_arm(run_all, config, workdir, arm_key="prior.arm", arms=ARMS, prefix="prior", drop=("reference",))


prior_runner = caches_results(run)
