"""Crafted-shift validation against source validation for model selection on digits, as a claim ``runner``.

`crafted_shifts_runner(config, workdir)` follows the model-selection experiment of Efthymiadis, Tolias, Chum
("Crafting Distribution Shifts for Validation and Training in Single Source Domain Generalization", WACV 2025,
https://arxiv.org/abs/2409.19774) at toy scale, with ``c = config.shifts``. One seed:

1. **Data.** scikit-learn's 8x8 digits (`jaxdyn.data.load_dataset("digits")`), upsampled bilinearly to
   ``c.size`` pixels. The training split is cut (seeded) into a source training set and ``c.num_val`` source
   validation images; the evaluation split is the test set.
2. **Validation sets.** Source validation: the clean validation images. Augmented validation: one copy of them
   per augmentation family (`jaxdyn.multimodal.crafted_validation_set`, all ten families, or ``c.families``
   where the config sets it: the smoke config's cheap subset).
3. **Held-out shifted test domains**, built here and not among the validation augmentations (`SHIFTS`): thick
   strokes (3x3 grey dilation), a sinusoidal grating background, striped (texture-filled) strokes. Shifted
   accuracy = the mean over the three domains.
4. **Models** (the paper's model-selection setting: a family of methods times a learning-rate grid): every
   method of ``c.methods`` x learning rate of ``c.learning_rates``, an MLP (``c.hidden`` x 2, ReLU) trained
   with Adam for ``c.steps`` steps of ``c.batch`` images. Methods: ``plain`` (clean images), ``sobel`` /
   ``edges`` (the image plus its `crafted_sobel_magnitude` / `crafted_edge_map` as a second channel), and
   ``aug_*`` (the same, trained on augmented images). An ``aug_*`` model is trained once per fold of the k-fold split over families
   (`jaxdyn.multimodal.crafted_folds`, ``c.folds``): on a pool of ``c.copies`` copies of the training
   set, each image clean or augmented by one of the fold's training families with equal probability (the
   authors draw each training image from the original or one of the augmented datasets); it is validated on
   the fold's held-out families only. A method's augmented-validation accuracy, source-validation accuracy
   and shifted accuracy are the means over its fold models (a method without augmentation is trained once and
   validated on all families, which is the same mean over folds).
5. **Selection.** Across the models (method x learning rate), the Spearman rank correlation
   (`scipy.stats.spearmanr`) of each validation accuracy with the shifted accuracy, and the shifted accuracy of
   the model each validation picks (ties: the mean over the tied models).

Arms: ``"source"`` and ``"augmented"`` (the validation used); both read one shared run per seed.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import scipy.stats

from experiments.claims import caches_results, one_arm
from jaxdyn import data as jdata
from jaxdyn import multimodal as mm

ARMS = ("source", "augmented")
METHODS = ("plain", "sobel", "edges", "aug_plain", "aug_sobel", "aug_edges")
SHIFTS = ("thick_strokes", "grating_background", "striped_strokes")


# --- data ------------------------------------------------------------------------------------------------------

def load_digits(size: int, num_val: int, seed: int):
  """(train_x, train_y, val_x, val_y, test_x, test_y), images (N, size, size, 1) in [0, 1]."""
  ds = jdata.load_dataset("digits")

  def up(x):
    x = jnp.asarray(x, jnp.float32)
    return np.asarray(jnp.clip(jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), "bilinear"), 0, 1))

  x, y = ds.train.x, np.asarray(ds.train.y)
  perm = np.random.default_rng([seed, 17]).permutation(len(y))
  tr, va = perm[num_val:], perm[:num_val]
  return up(x[tr]), y[tr], up(x[va]), y[va], up(ds.eval.x), np.asarray(ds.eval.y)


def shift(images: np.ndarray, name: str, key: jax.Array) -> np.ndarray:
  """One held-out test domain (`SHIFTS`), each image with its own draw (``fold_in(key, i)``)."""
  x = jnp.asarray(images)
  n, h, w, _ = x.shape
  if name == "thick_strokes":
    out = jax.lax.reduce_window(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), -jnp.inf, jax.lax.max,
                                (1, 3, 3, 1), (1, 1, 1, 1), "VALID")
    return np.asarray(out)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n))
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")

  def wave(k, fmin, fmax):
    k1, k2, k3 = jax.random.split(k, 3)
    f = jax.random.uniform(k1, minval=fmin, maxval=fmax)
    th = jax.random.uniform(k2, maxval=jnp.pi)
    ph = jax.random.uniform(k3, maxval=2 * jnp.pi)
    return jnp.sin(2 * jnp.pi * f * (rows * jnp.cos(th) + cols * jnp.sin(th)) + ph)[..., None]

  if name == "grating_background":
    out = jax.vmap(lambda im, k: jnp.maximum(im, 0.6 * (0.5 + 0.5 * wave(k, 0.15, 0.3))))(x, keys)
  elif name == "striped_strokes":
    out = jax.vmap(lambda im, k: im * (0.25 + 0.75 * (wave(k, 0.2, 0.35) > 0)))(x, keys)
  else:
    raise ValueError(f"name: must be one of {list(SHIFTS)}, got {name!r}")
  return np.asarray(out)


def features(images: np.ndarray, method: str) -> np.ndarray:
  """The model's input: the image, plus its Sobel magnitude (/ 4) or its edge map as a second channel."""
  x = jnp.asarray(images)
  if method.endswith("sobel"):
    x = jnp.concatenate([x, mm.crafted_sobel_magnitude(x) / 4.0], -1)
  elif method.endswith("edges"):
    x = jnp.concatenate([x, mm.crafted_edge_map(x)], -1)
  return np.asarray(x).reshape(len(images), -1)


def training_pool(x: np.ndarray, y: np.ndarray, families: tuple[str, ...], copies: int, key: jax.Array):
  """``copies`` copies of the training set, each image clean or augmented by one of ``families`` (equal odds)."""
  xs = []
  for j in range(copies):
    kj = jax.random.fold_in(key, j)
    keys = jax.random.split(kj, len(x))
    aug = np.asarray(mm.crafted_augment(jnp.asarray(x), keys, families))
    clean = np.asarray(jax.random.bernoulli(jax.random.fold_in(kj, 1 << 20), 1.0 / (len(families) + 1), (len(x),)))
    xs.append(np.where(clean[:, None, None, None], x, aug))
  return np.concatenate(xs), np.tile(y, copies)


# --- model -----------------------------------------------------------------------------------------------------

def init_mlp(key, d_in: int, hidden: int, num_classes: int = 10):
  dims = (d_in, hidden, hidden, num_classes)
  params = []
  for i, k in enumerate(jax.random.split(key, 3)):
    params.append({"w": jax.random.normal(k, dims[i:i + 2]) * np.sqrt(2.0 / dims[i]), "b": jnp.zeros(dims[i + 1])})
  return params


def mlp(params, x):
  for layer in params[:-1]:
    x = jax.nn.relu(x @ layer["w"] + layer["b"])
  return x @ params[-1]["w"] + params[-1]["b"]


def train_mlp(x: np.ndarray, y: np.ndarray, *, hidden: int, learning_rate: float, steps: int, batch: int,
              seed: int):
  """Adam on the cross-entropy, minibatches drawn with replacement; the trained parameters."""
  key = jax.random.key(seed)
  params = init_mlp(key, x.shape[1], hidden)
  opt = optax.adam(learning_rate)
  state = opt.init(params)

  @jax.jit
  def step(params, state, xb, yb):
    def loss(p):
      return optax.softmax_cross_entropy_with_integer_labels(mlp(p, xb), yb).mean()
    g = jax.grad(loss)(params)
    upd, state = opt.update(g, state, params)
    return optax.apply_updates(params, upd), state

  idx = np.random.default_rng([seed, 5]).integers(0, len(y), (steps, batch))
  xj, yj = jnp.asarray(x), jnp.asarray(y)
  for i in range(steps):
    params, state = step(params, state, xj[idx[i]], yj[idx[i]])
  return params


_accuracy = jax.jit(lambda p, x, y: jnp.mean(jnp.argmax(mlp(p, x), -1) == y))


def accuracy(params, x: np.ndarray, y: np.ndarray) -> float:
  return float(_accuracy(params, jnp.asarray(x), jnp.asarray(y)))


# --- selection -------------------------------------------------------------------------------------------------

def chosen_score(val: np.ndarray, target: np.ndarray) -> float:
  """The ``target`` of the model with the highest ``val``; the mean over the tied models."""
  val, target = np.asarray(val, np.float64), np.asarray(target, np.float64)
  best = np.isclose(val, val.max(), rtol=0.0, atol=1e-9)
  return float(target[best].mean())


def rank_correlation(val, target) -> float:
  """Spearman's rho between two score lists (`scipy.stats.spearmanr`)."""
  return float(scipy.stats.spearmanr(val, target).statistic)


# --- the run ---------------------------------------------------------------------------------------------------

def prepare(c, seed: int) -> dict[str, Any]:
  """Steps 1-3 of the module docstring and the training pools: everything before the models are trained."""
  key = jax.random.key(seed)
  tr_x, tr_y, va_x, va_y, te_x, te_y = load_digits(c.size, c.num_val, seed)
  families = tuple(c.families) if "families" in c else mm.CRAFTED_FAMILIES  # smoke tests: a cheap subset
  folds = mm.crafted_folds(c.folds, families)
  av_x, av_y, av_f = (np.asarray(a) for a in mm.crafted_validation_set(va_x, va_y, jax.random.fold_in(key, 1),
                                                                         families))
  shifted = {s: shift(te_x, s, jax.random.fold_in(key, 2 + i)) for i, s in enumerate(SHIFTS)}
  pools = {j: training_pool(tr_x, tr_y, folds[j][0], c.copies, jax.random.fold_in(key, 100 + j))
           for j in range(len(folds))}
  kinds = sorted({m.replace("aug_", "") for m in c.methods})
  feats = {}
  for kind in kinds:
    feats[kind] = {"val": features(va_x, kind), "augval": features(av_x, kind), "test": features(te_x, kind),
                   **{s: features(v, kind) for s, v in shifted.items()},
                   **{("pool", j): features(p[0], kind) for j, p in pools.items()}, "train": features(tr_x, kind)}
  return {"tr_y": tr_y, "va_y": va_y, "te_y": te_y, "av_y": av_y, "av_f": av_f, "families": families, "folds": folds,
          "pools": pools, "feats": feats}


def run_all(config) -> dict[str, Any]:
  """Every model of one seed and both arms' selection results."""
  c, seed = config.shifts, int(config.seed)
  t0 = time.monotonic()
  p = prepare(c, seed)
  tr_y, va_y, te_y, av_y, av_f = p["tr_y"], p["va_y"], p["te_y"], p["av_y"], p["av_f"]
  families, folds, pools, feats = p["families"], p["folds"], p["pools"], p["feats"]
  prep_seconds = time.monotonic() - t0

  models = []
  for mi, (method, lr) in enumerate(itertools.product(c.methods, c.learning_rates)):
    t1 = time.monotonic()
    kind, augmented = method.replace("aug_", ""), method.startswith("aug_")
    f = feats[kind]
    runs = []
    for j in range(len(folds)) if augmented else [None]:
      x, y = (f[("pool", j)], pools[j][1]) if augmented else (f["train"], tr_y)
      params = train_mlp(x, y, hidden=c.hidden, learning_rate=lr, steps=c.steps, batch=c.batch,
                         seed=seed * 1000 + mi)
      if augmented:  # the fold's held-out families only
        held = np.isin(av_f, [families.index(fam) for fam in folds[j][1]])
        aug_acc = accuracy(params, f["augval"][held], av_y[held])
      else:  # every family is held out: the mean over the folds' held-out families
        aug_acc = float(np.mean([accuracy(params, f["augval"][np.isin(av_f, [families.index(fam) for fam in fo[1]])],
                                          av_y[np.isin(av_f, [families.index(fam) for fam in fo[1]])])
                                 for fo in folds]))
      runs.append({"source_val": accuracy(params, f["val"], va_y), "augmented_val": aug_acc,
                   "clean_test": accuracy(params, f["test"], te_y),
                   **{s: accuracy(params, f[s], te_y) for s in SHIFTS}})
    row = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    row["shifted"] = float(np.mean([row[s] for s in SHIFTS]))
    models.append({"method": method, "learning_rate": lr, **row, "seconds": round(time.monotonic() - t1, 2)})

  shifted_acc = np.array([m["shifted"] for m in models])
  per_arm = {}
  for arm, col in (("source", "source_val"), ("augmented", "augmented_val")):
    val = np.array([m[col] for m in models])
    per_arm[arm] = {"rank_correlation": rank_correlation(val, shifted_acc),
                    "chosen_shifted_accuracy": chosen_score(val, shifted_acc),
                    "chosen_clean_test_accuracy": chosen_score(val, [m["clean_test"] for m in models]),
                    "chosen": [f"{m['method']}@{m['learning_rate']:g}" for m, v in zip(models, val)
                               if np.isclose(v, val.max(), rtol=0.0, atol=1e-9)]}
  return {"per_arm": per_arm, "models": models, "best_shifted_accuracy": float(shifted_acc.max()),
          "mean_shifted_accuracy": float(shifted_acc.mean()), "prep_seconds": round(prep_seconds, 2),
          "seconds": round(time.monotonic() - t0, 2)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.shifts.arm``) for one seed, from the seed's shared run of both."""
  return one_arm(run_all, config, workdir, arm_key="shifts.arm", arms=ARMS, prefix="crafted_shifts")


crafted_shifts_runner = caches_results(run)
