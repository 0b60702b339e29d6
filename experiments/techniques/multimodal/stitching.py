"""Visual stitching (Zhou et al., 2025) at toy scale: a captioner fine-tuned only on (patch, ID) pairs.

`stitching_runner(config, workdir)` is a claim ``runner`` (``c = config.stitching``) following "VLMs Can
Aggregate Scattered Training Patches" (https://arxiv.org/abs/2506.03614, code ZHZisZZ/visual-stitching). One
seed:

1. **Pre-training (the "VLM")**. A `jaxdyn.models.Captioner` (CNN image prefix + causal decoder) is trained by
   next-token prediction on `jaxdyn.data.paired_digits` (train split, ``c.copies`` renderings per digit), each
   image's text drawn uniformly from its caption and rewrites at every step, ``c.pretrain_steps`` Adam steps of
   ``c.pretrain_batch``. Its zero-shot class accuracy on the eval split (`pretrain_class_accuracy`: the class
   name ranked by the likelihood of ``"the digit <name>"``, measured with `jaxdyn.multimodal.stitching_measure`)
   says whether it "knows" the digits.
2. **The study's data**. From the eval split (images the VLM never saw), ``c.per_class`` images per class with
   distinct sizes (small, large), ``K = 10 * per_class`` images, each with a unique ID of ``c.id_length`` tokens
   (`jaxdyn.multimodal.stitching_ids`, `ID_WORDS`). Each image is split into ``s x s`` patches
   (`jaxdyn.multimodal.stitching_patches`, ``mode=c.patch_mode``: by default each patch upsampled to the full
   canvas, as a VLM's processor resizes a standalone patch image). The text of a pair is the authors' template
   at small scale: ``"the digit shown is associated with id <ID>"`` (theirs: ``"<image>The animal shown is
   associated with ID ar413"``), the loss on every token as in their ``train.py`` (``mask_prompt=False``).
3. **Fine-tuning**, per arm (``s`` = 1, 2, 3, 4; ``"1x1"`` is the whole image, the authors' ``config_image``),
   from a copy of the seed's VLM, ``c.finetune_steps`` Adam steps of ``c.finetune_batch`` pairs drawn uniformly
   from the arm's ``K s^2`` (patch, ID) pairs. Every arm takes the same number of steps (the authors fix the
   epochs instead, so their finer splits take more steps).
4. **Evaluation** (every ``c.eval_every`` steps and at the end) with `jaxdyn.multimodal.stitching_measure`, each
   ID scored by the sum of its tokens' log-probabilities after the prompt: *image-based*, the full image with
   the same prompt; *reference-based*, no image (`Captioner(None, tokens)`) and the text ``"the <size> <class>
   is associated with id"`` (the authors': ``"The {animal_name} is associated with ID"``). Mean rank of the true
   ID (chance ``(K - 1) / 2``) and top-1 accuracy (chance ``1 / K``).

The arms of a seed share one run (`experiments.claims.shared_run`): one VLM, one image set, one ID draw.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results, one_arm
from jaxdyn import data as jdata
from jaxdyn import models
from jaxdyn import multimodal as mm
from jaxdyn.data import _paired

ARMS = ("1x1", "2x2", "3x3", "4x4")
PROMPT = "the digit shown is associated with id"
REFERENCE = "the {size} {cls} is associated with id"


def split_factor(arm: str) -> int:
  if arm not in ARMS:
    raise ValueError(f"arm: must be one of {list(ARMS)}, got {arm!r}")
  return int(arm.split("x")[0])


def build_vocab() -> _paired.CaptionVocab:
  """The grammar's words plus the study's prompt words and `ID_WORDS` (so the VLM's table has rows for them)."""
  clash = set(mm.ID_WORDS) & set(_paired.CaptionVocab.build().words)
  if clash:
    raise ValueError(f"ID_WORDS: overlap the caption grammar: {sorted(clash)}")
  return _paired.CaptionVocab.build([PROMPT, REFERENCE.format(size="small", cls="zero"), " ".join(mm.ID_WORDS)])


def make_model(c, vocab_size: int, seed: int) -> models.Captioner:
  m = c.model
  return models.Captioner((c.canvas, c.canvas, 1), vocab_size, dim=m.dim, depth=m.depth, num_heads=m.num_heads,
                          prefix_len=m.prefix_len, image_width=m.image_width, image_kind=m.image_kind,
                          rngs=nnx.Rngs(seed))


def _loss_fn(graphdef, rest):
  def loss(params, images, tokens):
    model = nnx.merge(graphdef, params, rest)
    logp = models.token_log_probs(model(images, tokens[:, :-1]), tokens[:, 1:])
    w = (tokens[:, 1:] != _paired.PAD).astype(jnp.float32)
    return -jnp.sum(logp * w) / jnp.maximum(jnp.sum(w), 1.0)
  return loss


class LMTrainer:
  """Adam on the image-conditioned next-token loss (every non-pad token), parameters passed as arguments."""

  def __init__(self, model: models.Captioner, *, learning_rate: float, steps: int):
    self.graphdef, self.params, self.rest = nnx.split(model, nnx.Param, ...)
    sched = optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(1, min(50, steps // 10)), max(steps, 2),
                                               learning_rate * 0.1)
    self.opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))
    self.opt_state = self.opt.init(self.params)
    loss = _loss_fn(self.graphdef, self.rest)

    @jax.jit
    def step(params, opt_state, images, tokens):
      value, grads = jax.value_and_grad(loss)(params, images, tokens)
      updates, opt_state = self.opt.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, value

    self._step = step

  def step(self, images: np.ndarray, tokens: np.ndarray) -> float:
    self.params, self.opt_state, value = self._step(self.params, self.opt_state, jnp.asarray(images),
                                                    jnp.asarray(tokens))
    return float(value)

  def model(self) -> models.Captioner:
    return nnx.merge(self.graphdef, self.params, self.rest)


@jax.jit(static_argnums=(0,))
def _score(graphdef, state, images, prefix, candidates):
  m = nnx.merge(graphdef, state)
  b, p = prefix.shape
  k, length = candidates.shape
  tokens = jnp.concatenate([jnp.repeat(prefix, k, axis=0), jnp.tile(candidates, (b, 1)),
                            jnp.full((b * k, 1), _paired.EOS, prefix.dtype)], axis=1)
  imgs = None if images is None else jnp.repeat(images, k, axis=0)
  logits = m(imgs, tokens)
  logp = models.token_log_probs(logits[:, p - 1:p + length - 1], tokens[:, p:p + length])
  return jnp.sum(logp, axis=-1).reshape(b, k)


def make_scorer(model: models.Captioner):
  """``score(images | None, prefix (B, P), candidates (K, L)) -> (B, K)``: sum of log p(candidate tokens | image,
  prefix), the candidate followed by ``<eos>`` (which is not scored). One compiled program per shape."""
  graphdef, state = nnx.split(model)

  def score(images, prefix, candidates):
    return _score(graphdef, state, None if images is None else jnp.asarray(images), jnp.asarray(prefix),
                  jnp.asarray(candidates))

  return score


def prefix_tokens(vocab, texts: list[str]) -> np.ndarray:
  """``[<bos>, words...]`` of texts with the same number of words (no ``<eos>``, no padding)."""
  lengths = {len(_paired._words(t)) for t in texts}  # pylint: disable=protected-access
  if len(lengths) != 1:
    raise ValueError(f"texts: must have the same number of words, got lengths {sorted(lengths)}")
  n = lengths.pop()
  return vocab.encode(texts, n + 2)[:, :n + 1]


def pretrain(c, seed: int, vocab) -> tuple[models.Captioner, list[dict[str, float]], float]:
  """Step 1: the seed's VLM, its loss log and its zero-shot class accuracy on the eval split."""
  d = jdata.paired_digits("train", canvas=c.canvas, copies=c.copies, num_rewrites=c.num_rewrites, seed=seed)
  texts = [d.texts(i) for i in range(len(d))]
  max_len = d.max_words() + 2
  encoded = [vocab.encode(t, max_len) for t in texts]  # per image: (variants, max_len)
  trainer = LMTrainer(make_model(c, vocab.size, seed), learning_rate=c.pretrain_learning_rate,
                      steps=c.pretrain_steps)
  rng = np.random.default_rng([seed, 1])
  log = []
  for i in range(c.pretrain_steps):
    idx = rng.integers(0, len(d), c.pretrain_batch)
    tokens = np.stack([encoded[j][rng.integers(len(encoded[j]))] for j in idx])
    loss = trainer.step(d.images[idx], tokens)
    if (i + 1) % max(1, c.pretrain_steps // 10) == 0 or i + 1 == c.pretrain_steps:
      log.append({"step": i + 1, "loss": loss})
  model = trainer.model()
  ev = jdata.paired_digits("eval", canvas=c.canvas, num_rewrites=0, seed=seed)
  n = min(len(ev), c.class_eval_images)
  score = make_scorer(model)
  prefix = prefix_tokens(vocab, ["the digit"])
  names = vocab.encode(list(_paired.CLASS_NAMES), 3)[:, 1:2]
  res = mm.stitching_measure(lambda x: score(x, np.repeat(prefix, len(x), 0), names), ev.images[:n], ev.labels[:n],
                             batch_size=100)
  return model, log, res.accuracy


def study_set(c, seed: int) -> dict[str, Any]:
  """Step 2: ``per_class`` eval images per class with distinct sizes, their IDs and text references."""
  if c.per_class not in (1, 2):
    raise ValueError(f"per_class: must be 1 or 2 (one image per size), got {c.per_class}")
  ev = jdata.paired_digits("eval", canvas=c.canvas, num_rewrites=0, seed=seed)
  order = np.random.default_rng([seed, 2]).permutation(len(ev))
  chosen, sizes = [], []
  for cls in range(10):
    for size in range(c.per_class):
      size = size if c.per_class == 2 else int(np.random.default_rng([seed, 3, cls]).integers(2))
      j = next(int(i) for i in order if ev.labels[i] == cls and ev.attributes["size"][i] == size)
      chosen.append(j)
      sizes.append(size)
  chosen = np.asarray(chosen)
  ids = np.asarray(mm.stitching_ids(jax.random.key(seed), len(chosen), id_length=c.id_length))
  size_names = _paired.ATTRIBUTE_VALUES["size"]
  refs = [REFERENCE.format(size=size_names[s], cls=_paired.CLASS_NAMES[int(ev.labels[j])])
          for j, s in zip(chosen, sizes)]
  return {"images": ev.images[chosen], "labels": ev.labels[chosen], "index": chosen, "ids": ids,
          "id_texts": mm.stitching_id_texts(ids), "references": refs}


def evaluate(model: models.Captioner, study: dict[str, Any], id_tokens: np.ndarray, vocab) -> dict[str, float]:
  """Step 4: image-based and reference-based ID naming (mean rank and accuracy)."""
  score = make_scorer(model)
  k = len(id_tokens)
  prompt = prefix_tokens(vocab, [PROMPT])
  refs = prefix_tokens(vocab, study["references"])
  targets = np.arange(k)
  image = mm.stitching_measure(lambda x: score(x, np.repeat(prompt, len(x), 0), id_tokens), study["images"], targets)
  ref = mm.stitching_measure(lambda r: score(None, r, id_tokens), refs, targets)
  return {"image_accuracy": image.accuracy, "image_rank": image.mean_rank, "reference_accuracy": ref.accuracy,
          "reference_rank": ref.mean_rank, "chance_accuracy": image.chance_accuracy, "chance_rank": image.chance_rank}


def finetune(vlm: models.Captioner, c, arm: str, seed: int, study: dict[str, Any], id_tokens: np.ndarray,
             vocab) -> dict[str, Any]:
  """Step 3 for one arm, evaluated along the way (step 4)."""
  s = split_factor(arm)
  patches = np.asarray(mm.stitching_patches(study["images"], s, mode=c.patch_mode))
  k = len(id_tokens)
  inputs = patches.reshape(k * s * s, *patches.shape[2:])
  owner = np.repeat(np.arange(k), s * s)
  prompt = prefix_tokens(vocab, [PROMPT])[0]
  seqs = np.concatenate([np.tile(prompt, (k, 1)), id_tokens, np.full((k, 1), _paired.EOS, np.int32)], axis=1)
  trainer = LMTrainer(nnx.clone(vlm), learning_rate=c.finetune_learning_rate, steps=c.finetune_steps)
  rng = np.random.default_rng([seed, 4, s])
  curve = [{"step": 0, **evaluate(vlm, study, id_tokens, vocab)}]
  losses = []
  for i in range(c.finetune_steps):
    idx = rng.integers(0, len(inputs), c.finetune_batch)
    losses.append(trainer.step(inputs[idx], seqs[owner[idx]]))
    if (i + 1) % c.eval_every == 0 or i + 1 == c.finetune_steps:
      curve.append({"step": i + 1, "train_loss": float(np.mean(losses[-c.eval_every:])),
                    **evaluate(trainer.model(), study, id_tokens, vocab)})
  final = curve[-1]
  return {**{key: final[key] for key in ("image_accuracy", "image_rank", "reference_accuracy", "reference_rank",
                                         "chance_accuracy", "chance_rank", "train_loss")},
          "num_pairs": int(len(inputs)), "curve": curve}


def run_all(config) -> dict[str, Any]:
  """The seed's VLM, study set and every arm (steps 1-4)."""
  c = config.stitching
  seed = int(config.seed)
  t0 = time.monotonic()
  vocab = build_vocab()
  vlm, log, class_acc = pretrain(c, seed, vocab)
  pre_seconds = time.monotonic() - t0
  study = study_set(c, seed)
  id_tokens = vocab.encode(list(study["id_texts"]), c.id_length + 2)[:, 1:1 + c.id_length]
  arms = {}
  for arm in c.arms:
    t1 = time.monotonic()
    arms[arm] = {**finetune(vlm, c, arm, seed, study, id_tokens, vocab),
                 "finetune_seconds": round(time.monotonic() - t1, 2)}
  return {"per_arm": arms, "pretrain_class_accuracy": class_acc, "pretrain_log": log,
          "pretrain_seconds": round(pre_seconds, 2), "id_texts": list(study["id_texts"]),
          "references": study["references"], "image_index": study["index"].tolist()}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.stitching.arm``) for one seed, from the seed's shared run of every arm."""
  return one_arm(run_all, config, workdir, arm_key="stitching.arm", arms=ARMS, prefix="stitching",
                 drop=("pretrain_log",))


stitching_runner = caches_results(run)
