"""CTVIS's contrastive items against one-reference-frame items on a synthetic instance-association task.

`ctvis_runner(config, workdir)` is a claim ``runner`` (``c = config.ctvis``). One seed:

1. **Task** (`make_videos`). Each video has ``c.num_objects`` objects over ``c.num_frames`` frames. An
   object's observation at frame t is a fixed random orthogonal mix (drawn once per seed: the "renderer")
   of three parts: its identity appearance (a Gaussian vector fixed per object, ``c.id_dim`` dims) plus
   per-frame noise of scale ``c.id_noise``; a pose/state part (``c.state_dim`` dims) that starts Gaussian
   and random-walks with step ``c.drift`` (deformation, motion: close in adjacent frames, not an
   identity); and ``c.nuisance_dim`` dims of per-frame noise of scale ``c.nuisance_scale`` (clutter that
   dominates raw dot products, so the embedding has to be learned). Objects are occluded by a Markov chain
   (hide with probability ``c.p_hide`` per frame, come back with ``c.p_return``; every object is visible in
   frame 0), so some come back after gaps.
2. **Training**, per arm, from the same initial MLP embedding network (``c.width`` hidden units, two hidden
   layers, ``c.embed_dim`` outputs) on the same batches (``c.batch_videos`` fresh videos per step,
   ``c.steps`` Adam steps at ``c.learning_rate``), loss `jaxdyn.multimodal.ctvis_contrastive_loss` over:
   ``"ctvis"``: `jaxdyn.multimodal.ctvis_contrastive_items` (memory bank, similarity-guided momentum, the
   positive the average or the last embedding with probability 1/2, noise rate ``c.noise_rate``);
   ``"ctvis_no_noise"``: the same without noise; ``"reference"``: `jaxdyn.multimodal.ctvis_reference_items`
   (frame t against frame t-1).
3. **Evaluation** on ``c.eval_videos`` held-out videos: online association with `jaxdyn.multimodal.ctvis_track`
   (memory bank, bi-softmax, greedy, threshold 0.2, as at inference for every arm). ``association_accuracy``:
   of the detections of an object seen before, the share given the track id its previous detection got (an id
   switch or a new track is an error); ``reappear_accuracy``: the same over detections whose previous
   detection was 2 or more frames earlier (back after an occlusion); ``adjacent_accuracy``: over those seen in
   the frame before.

The arms of a seed share one run (`experiments.claims.shared_run`).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.claims import caches_results, one_arm
from jaxdyn import multimodal as mm

ARMS = ("ctvis", "ctvis_no_noise", "reference")


def renderer(seed: int, c) -> np.ndarray:
  """The seed's fixed random orthogonal mix of (identity, state) into the observation."""
  d = c.id_dim + c.state_dim + c.nuisance_dim
  q, _ = np.linalg.qr(np.random.default_rng([seed, 7]).normal(size=(d, d)))
  return q.astype(np.float32)


def make_videos(rng: np.random.Generator, num_videos: int, c, mix: np.ndarray) -> dict[str, np.ndarray]:
  """``num_videos`` videos: ``x`` (V, T, N, id_dim + state_dim + nuisance_dim), ``present`` (V, T, N) bool.

  Step 1 of the module docstring.
  """
  v, t, n = num_videos, c.num_frames, c.num_objects
  ident = rng.normal(size=(v, 1, n, c.id_dim))
  id_obs = ident + c.id_noise * rng.normal(size=(v, t, n, c.id_dim))
  steps = c.drift * rng.normal(size=(v, t, n, c.state_dim))
  steps[:, 0] = rng.normal(size=(v, n, c.state_dim))
  state = np.cumsum(steps, axis=1)
  nuisance = c.nuisance_scale * rng.normal(size=(v, t, n, c.nuisance_dim))
  x = np.concatenate([id_obs, state, nuisance], axis=-1) @ mix
  present = np.ones((v, t, n), bool)
  u = rng.uniform(size=(v, t, n))
  for k in range(1, t):
    present[:, k] = np.where(present[:, k - 1], u[:, k] >= c.p_hide, u[:, k] < c.p_return)
  return {"x": x.astype(np.float32), "present": present}


def init_params(key: jax.Array, din: int, c) -> dict[str, jax.Array]:
  sizes = [din, c.width, c.width, c.embed_dim]
  params = {}
  for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
    key, sub = jax.random.split(key)
    params[f"w{i}"] = jax.random.normal(sub, (a, b)) * np.sqrt(1.0 / a)
    params[f"b{i}"] = jnp.zeros((b,))
  return params


def embed(params, x):
  h = jax.nn.gelu(x @ params["w0"] + params["b0"])
  h = jax.nn.gelu(h @ params["w1"] + params["b1"])
  return h @ params["w2"] + params["b2"]


def make_train_step(reference: bool, average_prob: float, aux_weight: float, learning_rate: float):
  """The jitted step ``(params, opt_state, x, present, key, noise_rate) -> (params, opt_state, loss)``.

  Cached, and the noise rate is an argument: both CTVIS arms run one compiled program.
  """
  return _train_step(bool(reference), float(average_prob), float(aux_weight), float(learning_rate))


@functools.lru_cache(maxsize=8)
def _train_step(reference, average_prob, aux_weight, learning_rate):
  opt = optax.adam(learning_rate)

  def video_loss(params, x, present, key, noise_rate):
    e = embed(params, x)
    if reference:
      items = mm.ctvis_reference_items(e, present)
    else:
      items = mm.ctvis_contrastive_items(e, present, key=key, noise_rate=noise_rate, average_prob=average_prob)
    return mm.ctvis_contrastive_loss(items, aux_weight=aux_weight)

  def loss_fn(params, x, present, key, noise_rate):
    keys = jax.random.split(key, x.shape[0])
    return jnp.mean(jax.vmap(video_loss, in_axes=(None, 0, 0, 0, None))(params, x, present, keys, noise_rate))

  @jax.jit
  def step(params, opt_state, x, present, key, noise_rate):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, present, key, noise_rate)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


@functools.lru_cache(maxsize=8)
def make_tracker(num_slots: int, threshold: float):
  """The jitted tracker over a batch of videos (cached: every arm's evaluation reuses one compiled program)."""
  @jax.jit
  def track(params, x, present):
    e = embed(params, x) if params is not None else x
    return jax.vmap(lambda ei, pi: mm.ctvis_track(ei, pi, num_slots=num_slots, threshold=threshold))(e, present)
  return track


def association_accuracy(ids: np.ndarray, present: np.ndarray) -> dict[str, float]:
  """Step 3's accuracies from predicted ids (V, T, N) and the true presence (identity = column n)."""
  ids, present = np.asarray(ids), np.asarray(present)
  v, t, n = present.shape
  last_id = np.full((v, n), -2)
  last_t = np.full((v, n), -1)
  hits = {"all": [0, 0], "reappear": [0, 0], "adjacent": [0, 0]}
  for k in range(t):
    p = present[:, k]
    seen = p & (last_t >= 0)
    ok = seen & (ids[:, k] == last_id) & (ids[:, k] >= 0)
    gap = k - last_t
    for name, sel in (("all", seen), ("reappear", seen & (gap >= 2)), ("adjacent", seen & (gap == 1))):
      hits[name][0] += int(np.sum(ok & sel))
      hits[name][1] += int(np.sum(sel))
    last_id = np.where(p, ids[:, k], last_id)
    last_t = np.where(p, k, last_t)
  return {f"{name}_accuracy" if name != "all" else "association_accuracy": h / max(c, 1)
          for name, (h, c) in hits.items()} | {"num_reappear": hits["reappear"][1], "num_scored": hits["all"][1]}


def evaluate(params, data, c) -> dict[str, float]:
  track = make_tracker(c.num_objects * c.num_frames, c.threshold)
  ids = track(params, jnp.asarray(data["x"]), jnp.asarray(data["present"]))
  return association_accuracy(np.asarray(ids), data["present"])


def train_arm(arm: str, c, seed: int, mix: np.ndarray) -> tuple[dict[str, jax.Array], list[dict[str, float]]]:
  din = c.id_dim + c.state_dim + c.nuisance_dim
  params = init_params(jax.random.key(seed), din, c)
  opt_state = optax.adam(c.learning_rate).init(params)
  step = make_train_step(arm == "reference", c.average_prob, c.aux_weight, c.learning_rate)
  noise_rate = jnp.float32(c.noise_rate if arm == "ctvis" else 0.0)
  rng = np.random.default_rng([seed, 1])  # the same batches in every arm
  key = jax.random.key(seed + 1000)
  log = []
  for s in range(c.steps):
    batch = make_videos(rng, c.batch_videos, c, mix)
    params, opt_state, loss = step(params, opt_state, batch["x"], batch["present"], jax.random.fold_in(key, s),
                                   noise_rate)
    if s % max(c.steps // 10, 1) == 0 or s == c.steps - 1:
      log.append({"step": s, "loss": float(loss)})
  return params, log


def run_all(config) -> dict[str, Any]:
  """Every arm of one seed from the same initial network and batches, evaluated on the same videos."""
  c, seed = config.ctvis, int(config.seed)
  mix = renderer(seed, c)
  eval_data = make_videos(np.random.default_rng([seed, 99]), c.eval_videos, c, mix)
  raw = evaluate(None, eval_data, c)  # the tracker on the raw observations (no training): the task's floor
  arms = {}
  for arm in ARMS:
    t0 = time.monotonic()
    params, log = train_arm(arm, c, seed, mix)
    arms[arm] = {**evaluate(params, eval_data, c), "log": log, "train_seconds": round(time.monotonic() - t0, 2)}
  for res in arms.values():
    res["accuracy_minus_reference"] = res["association_accuracy"] - arms["reference"]["association_accuracy"]
  return {"per_arm": arms, "raw_association_accuracy": raw["association_accuracy"],
          "raw_reappear_accuracy": raw["reappear_accuracy"]}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.ctvis.arm``) for one seed, from the seed's shared run of every arm."""
  return one_arm(run_all, config, workdir, arm_key="ctvis.arm", arms=ARMS, prefix="ctvis")


ctvis_runner = caches_results(run)
