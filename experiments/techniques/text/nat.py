"""Noise-Aware Training on identifier kinds in the standard library, run as a claim's ``runner``.

`nat_runner(config, workdir)` follows Sarkhel et al. (NAT, arXiv 2404.00488) at toy scale, with
``c = config.nat``; one seed computes every arm (the methods ``"human"``, ``"weak"``, ``"nat"``,
``"nat_noise_aware"``) from one data draw:

1. data (`jaxdyn.text.identifier_task` on `jaxdyn.data.load_stdlib_corpus` files, ``c.window``-byte windows, at most
   ``c.max_windows`` per file, drawn at random): from the training split, shuffled by the seed, ``c.human_files``
   files with their exact (`ast`) labels (the few human-labelled documents H), the next ``c.calibration_files``
   files with exact labels for the temperature fit only, and the next ``c.weak_files`` files with the regex
   heuristic's weak labels (U); ``c.validation_files`` files of the validation split (first by name) with exact
   labels for evaluation;
2. the weak annotator ("human", the transfer-learning baseline of the paper): the classifier trained on H
   alone for ``c.teacher_steps`` steps; its temperature is fitted on the calibration files
   (`jaxdyn.text.calibrate_temperature`) and its confidence in each weak label of U is
   `jaxdyn.text.label_confidence` (per byte);
3. the arms train a fresh classifier on H (exact labels, confidence 1) plus U (weak labels) for ``c.steps``
   steps with the same initialisation and batch order: ``"weak"`` with every confidence 1 (plain
   cross-entropy), ``"nat"`` with the annotator's confidences (`confidence_weighted_cross_entropy`,
   ``form="weighted"``), ``"nat_noise_aware"`` the same with ``form="noise_aware"``;
4. metric: macro-F1 over the six identifier kinds on the validation files, per identifier occurrence (the
   kind with the largest summed log-probability over its bytes).

The classifier is the shared `jaxdyn.models.Transformer` with bidirectional attention
(`jaxdyn.text.bidirectional_attention`: an identifier's kind depends on what follows it, ``=`` or ``(``) and
its head replaced by a ``dim x 6`` linear layer. All arms are computed once per seed into
``<runs dir>/nat-shared-<hash>/seed<k>/results.json`` (``c.share_runs`` False: the arm's own workdir).
"""

from __future__ import annotations

import functools
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results, shared_run
from experiments.techniques.text import lm
from jaxdyn import text
from jaxdyn.data import VOCAB_SIZE, load_stdlib_corpus
from jaxdyn.models import Transformer

METHODS = ("human", "weak", "nat", "nat_noise_aware")
NUM_KINDS = len(text.IDENTIFIER_KINDS)


def make_classifier(c, seed: int) -> Transformer:
  """A bidirectional `Transformer` over byte ids with a ``dim x NUM_KINDS`` head (logits per byte)."""
  model = Transformer(vocab_size=VOCAB_SIZE, dim=c.dim, depth=c.depth, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio,
                      attention_fns=text.bidirectional_attention, rngs=nnx.Rngs(seed))
  model.head = nnx.Linear(c.dim, NUM_KINDS, use_bias=True, rngs=nnx.Rngs(seed + 1))
  return model


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, params, tokens):
  return nnx.merge(graphdef, params)(tokens)


def predict_logits(model: Transformer, tokens: np.ndarray, batch: int = 64) -> np.ndarray:
  """Logits ``(N, window, NUM_KINDS)`` in batches of ``batch`` (the last padded: one compiled shape)."""
  graphdef, params = nnx.split(model)
  out = []
  for i in range(0, len(tokens), batch):
    chunk = tokens[i:i + batch]
    pad = np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)
    out.append(np.asarray(_apply(graphdef, params, jnp.asarray(np.concatenate([chunk, pad]))))[:len(chunk)])
  return np.concatenate(out)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _train_step(graphdef, opt, form, params, opt_state, tok, lab, conf, m):
  def loss_fn(p):
    logits = nnx.merge(graphdef, p)(tok)
    return text.confidence_weighted_cross_entropy(logits, lab, conf, mask=m, form=form)
  loss, g = jax.value_and_grad(loss_fn)(params)
  u, opt_state = opt.update(g, opt_state, params)
  return optax.apply_updates(params, u), opt_state, loss


@functools.lru_cache(maxsize=None)
def _optimizer(learning_rate: float, steps: int, warmup: int) -> optax.GradientTransformation:
  return lm.make_optimizer(learning_rate, steps, warmup)  # one object per setting: the step compiles once


def train_classifier(c, seed: int, tokens, labels, confidence, *, steps: int, form: str = "weighted"
                     ) -> tuple[Transformer, list[float]]:
  """``steps`` Adam steps of `confidence_weighted_cross_entropy` on random batches of windows (seeded)."""
  graphdef, params = nnx.split(make_classifier(c, seed))
  opt = _optimizer(float(c.learning_rate), int(steps), int(c.warmup))
  opt_state = opt.init(params)
  mask = (labels >= 0).astype(np.float32)
  safe = np.where(labels >= 0, labels, 0).astype(np.int32)
  rng = np.random.default_rng(seed)
  losses = []
  for _ in range(steps):
    idx = rng.integers(0, len(tokens), c.batch)
    params, opt_state, loss = _train_step(graphdef, opt, form, params, opt_state, jnp.asarray(tokens[idx]),
                                          jnp.asarray(safe[idx]), jnp.asarray(confidence[idx]),
                                          jnp.asarray(mask[idx]))
    losses.append(float(loss))
  return nnx.merge(graphdef, params), losses


def identifier_predictions(logits: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per identifier occurrence: ``(predicted kind, true kind)``, the prediction maximising the summed
  log-probabilities of its bytes."""
  on = ids >= 0
  logp = np.asarray(jax.nn.log_softmax(jnp.asarray(logits[on]), axis=-1))
  uniq, inv = np.unique(ids[on], return_inverse=True)
  total = np.zeros((len(uniq), NUM_KINDS))
  np.add.at(total, inv, logp)
  truth = np.zeros(len(uniq), np.int64)
  truth[inv] = labels[on]
  return total.argmax(-1), truth


def macro_f1(pred: np.ndarray, truth: np.ndarray, num_classes: int = NUM_KINDS) -> tuple[float, list[float]]:
  """Mean over classes of ``2 TP / (2 TP + FP + FN)`` (a class absent from both counts as F1 = 0), and the list."""
  f1 = []
  for k in range(num_classes):
    tp = np.sum((pred == k) & (truth == k))
    den = 2 * tp + np.sum((pred == k) & (truth != k)) + np.sum((pred != k) & (truth == k))
    f1.append(float(2 * tp / den) if den else 0.0)
  return float(np.mean(f1)), f1


def _data(c, seed: int):
  train = load_stdlib_corpus("train")
  order = np.random.default_rng(seed).permutation(len(train.documents))
  n_h, n_c, n_u = c.human_files, c.calibration_files, c.weak_files
  pick = lambda sl: [train.documents[i] for i in order[sl]]  # noqa: E731
  rng = np.random.default_rng([seed, 1])

  def task(docs):  # every window, then at most c.max_windows per file drawn at random (not just the file's head)
    t = text.identifier_task(docs, window=c.window)
    keep = np.concatenate([rng.permutation(np.flatnonzero(t.documents == d))[:c.max_windows]
                           for d in np.unique(t.documents)])
    keep.sort()
    return t._replace(tokens=t.tokens[keep], labels=t.labels[keep], weak_labels=t.weak_labels[keep],
                      identifier_ids=t.identifier_ids[keep], documents=t.documents[keep])

  human = task(pick(slice(0, n_h)))
  calib = task(pick(slice(n_h, n_h + n_c)))
  weak = task(pick(slice(n_h + n_c, n_h + n_c + n_u)))
  val = task(list(load_stdlib_corpus("validation").documents[:c.validation_files]))
  if not (val.labels >= 0).any():
    raise ValueError(f"nat.validation_files: the {c.validation_files} validation files hold no identifier")
  return human, calib, weak, val, train.python_version


def run_all(config) -> dict[str, Any]:
  c, seed = config.nat, int(config.seed)
  t0 = time.perf_counter()
  human, calib, weak, val, version = _data(c, seed)
  m_u = weak.labels >= 0
  per_method: dict[str, Any] = {}

  def evaluate(model):
    pred, truth = identifier_predictions(predict_logits(model, val.tokens), val.labels, val.identifier_ids)
    f1, per = macro_f1(pred, truth)
    return {"macro_f1": f1, "f1_per_kind": dict(zip(text.IDENTIFIER_KINDS, per)),
            "identifier_accuracy": float(np.mean(pred == truth))}

  t1 = time.perf_counter()
  teacher, _ = train_classifier(c, seed, human.tokens, human.labels, np.ones(human.labels.shape, np.float32),
                                steps=c.teacher_steps)
  per_method["human"] = {**evaluate(teacher), "train_seconds": time.perf_counter() - t1}
  cal_logits = predict_logits(teacher, calib.tokens)
  m_c = calib.labels >= 0
  temperature = text.calibrate_temperature(cal_logits, np.where(m_c, calib.labels, 0), mask=m_c.astype(np.float32))
  conf_u = np.asarray(text.label_confidence(predict_logits(teacher, weak.tokens), np.where(m_u, weak.weak_labels, 0),
                                            temperature=temperature))
  conf_u = np.where(m_u, conf_u, 1.0).astype(np.float32)
  right = m_u & (weak.weak_labels == weak.labels)
  wrong = m_u & (weak.weak_labels != weak.labels)
  tokens = np.concatenate([human.tokens, weak.tokens])
  labels = np.concatenate([human.labels, weak.weak_labels])
  ones = np.ones(human.labels.shape, np.float32)
  for method, conf, form in (("weak", np.ones_like(conf_u), "weighted"), ("nat", conf_u, "weighted"),
                             ("nat_noise_aware", conf_u, "noise_aware")):
    t1 = time.perf_counter()
    model, losses = train_classifier(c, seed + 100, tokens, labels, np.concatenate([ones, conf]), steps=c.steps,
                                     form=form)
    per_method[method] = {**evaluate(model), "final_train_loss": float(np.mean(losses[-20:])),
                          "train_seconds": time.perf_counter() - t1}
  vm = val.labels >= 0
  # the heuristic itself on the validation files, per identifier (its kind is constant over an identifier's bytes)
  pred, truth = identifier_predictions(np.log(np.eye(NUM_KINDS)[np.where(vm, val.weak_labels, 0)] + 1e-9),
                                       val.labels, val.identifier_ids)
  return {
      "per_method": per_method,
      "python_version": version, "platform": platform.platform(),
      "windows": {"human": len(human.tokens), "calibration": len(calib.tokens), "weak": len(weak.tokens),
                  "validation": len(val.tokens)},
      "skipped_files": len(human.skipped) + len(calib.skipped) + len(weak.skipped) + len(val.skipped),
      "weak_label_accuracy": float(np.mean(weak.weak_labels[m_u] == weak.labels[m_u])),
      "heuristic_val_macro_f1": macro_f1(pred, truth)[0],
      "temperature": temperature,
      "confidence_on_right_weak_labels": float(conf_u[right].mean()) if right.any() else float("nan"),
      "confidence_on_wrong_weak_labels": float(conf_u[wrong].mean()) if wrong.any() else float("nan"),
      "wall_seconds": time.perf_counter() - t0,
  }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.nat.method``) for one seed, from the seed's shared run of every arm."""
  method = config.nat.method
  if method not in METHODS:
    raise ValueError(f"nat.method: must be one of {list(METHODS)}, got {method!r}")
  shared, path = shared_run(run_all, config, workdir, prefix="nat", arm_keys=('nat.method',),
                            share=config.nat.share_runs)
  arm = shared["per_method"][method]
  f1 = arm.pop("f1_per_kind")
  return {**{k: v for k, v in shared.items() if k != "per_method"}, **arm,
          **{f"f1_{k}": v for k, v in f1.items()}, "method": method, "shared_results": str(path)}


nat_runner = caches_results(run)
nat_runner.__name__ = "nat_runner"
