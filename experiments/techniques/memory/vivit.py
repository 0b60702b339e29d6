"""Frozen-spatial ViViT in the harness: the model, the freezing transform, a step-time callback, the claim runner.

Model ``vivit`` (``config.model_kwargs`` go to `jaxdyn.models.ViViT`, the clip length and frame size
come from the dataset's ``(frames, H, W, C)``), plus two keyword arguments of its own:
``spatial_init`` (the path of a spatial `ViT` pre-trained on frames, written by `pretrain_spatial`;
``""``: random spatial initialisation) and ``init_temporal`` (initialise the temporal transformer from
that ViT's blocks, `jaxdyn.memory.init_from_image_model`; needs ``spatial_init``); and for the two-stage
scheme ``stage1_steps`` / ``stage1_frames`` (read by `vivit_runner`, which trains stage 1 and sets) and
``short_clip_init`` (the path of the stage-1 short-clip ViViT's parameters, written by
`train_short_clips`; the model is initialised from it by `jaxdyn.memory.init_from_short_clip_model`).

Capability ``frozen_spatial``: the model is a ViViT built with ``freeze_spatial=True`` (the
``stop_gradient`` at the spatial output). Transform ``freeze_spatial`` (requires it): zero updates and
no optimizer state for the spatial parameters (`jaxdyn.memory.freeze_spatial`), so a config cannot
freeze the optimizer's view without stopping the gradient.

Callback ``step_time``: the median wall time of the run's own training steps (each step waited for;
the first ``skip`` steps after compilation dropped), ``final_median_step_s`` in results.json. With
``train_step_memory`` (`experiments.techniques.snn`) it gives the claim's time and memory.

Runner `vivit_runner(config, workdir)`: pre-trains the spatial ViT on single frames (``clip_frames``:
frames of the clips' generator labelled by the digit's cell on a 4 x 4 grid; `pretrain_spatial`, cached
on disk under ``<cache>/vivit_spatial/<hash of the settings and seed>.npz``, so every arm of a seed
shares one pre-trained encoder), points ``model_kwargs.spatial_init`` at it and runs
`experiments.train.train_and_evaluate`; the results gain ``pretrain_accuracy`` (the frame classifier's
eval accuracy) and ``pretrain_seconds``.

Two-stage arm (``model_kwargs.stage1_steps > 0``; the reading of a third-party study note, see
`jaxdyn.memory.init_from_short_clip_model`): before the run, `train_short_clips` fine-tunes a whole
ViViT (spatial from the same pre-trained ViT, no adapter, nothing frozen) on the first
``stage1_frames`` frames of each clip for ``stage1_steps`` Adam steps (cached on disk like the frame
pre-training, under ``<cache>/vivit_short/``); the run itself (``num_train_steps``, all frames) is
stage 2, initialised from it. Its results gain ``stage1_*`` (accuracy on the short eval clips, median
step time, temp bytes, seconds) and ``stage2_median_step_s`` / ``stage2_temp_bytes`` (the run's own);
``final_median_step_s`` becomes the mean of the two stages' median step times weighted by their steps,
and ``final_temp_bytes`` the larger of the two stages' (the memory the scheme needs).

References:
  Gowda, Arnab & Huang, "Optimizing ViViT Training: Time and Memory Reduction for Action Recognition",
  2023, https://arxiv.org/abs/2306.04822.
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
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments.callbacks import Callback
from experiments.registry import register
from jaxdyn import _validation
from jaxdyn.data import default_cache_dir, load_dataset
from jaxdyn.memory import freeze_spatial, init_from_image_model, init_from_short_clip_model
from jaxdyn.models import ViT, ViViT

# The spatial ViT's architecture keys among the ViViT's keyword arguments, and their ViT names.
_SPATIAL = {"patch_size": "patch_size", "dim": "dim", "spatial_depth": "depth", "num_heads": "num_heads",
            "mlp_ratio": "mlp_ratio", "frame_classes": "num_classes"}
_VIVIT_DEFAULTS = {"patch_size": 4, "dim": 64, "spatial_depth": 4, "num_heads": 4, "mlp_ratio": 2,
                   "frame_classes": 16}
PRETRAIN = {"steps": 400, "batch_size": 64, "learning_rate": 3e-3}
PRETRAIN_DATASET = "clip_frames"
# Stage 1 of the two-stage arm is full fine-tuning: the full_finetune arm's learning rate (cosine, Adam).
STAGE1 = {"learning_rate": 1e-3}


def _spatial_vit(in_channels: int, image_size: int, spatial: dict[str, Any], rngs: nnx.Rngs) -> ViT:
  kw = {_SPATIAL[k]: v for k, v in spatial.items() if k != "frame_classes"}
  return ViT(in_channels, spatial["frame_classes"], image_size=image_size, **kw, rngs=rngs)


def _flat(tree) -> dict[str, np.ndarray]:
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def load_spatial(path: str, template: dict[str, Any], *, name: str = "spatial_init",
                 what: str = "this model's spatial ViT") -> dict[str, Any]:
  """The pure-dict parameters saved at ``path``, laid out as ``template``; raises (naming ``name``) on any mismatch."""
  with np.load(path) as f:
    saved = dict(f)
  want = _flat(template)
  if set(saved) != set(want) or any(saved[k].shape != want[k].shape for k in want):
    raise ValueError(f"{name}: {path} does not hold {what} (its keys or shapes differ)")
  leaves = [jnp.asarray(saved[jax.tree_util.keystr(p)]) for p, _ in jax.tree_util.tree_flatten_with_path(template)[0]]
  return jax.tree.unflatten(jax.tree.structure(template), leaves)


@register("model", "vivit", tiny={"dim": 16, "spatial_depth": 1, "temporal_depth": 1, "num_heads": 2,
                                  "adapter_dim": 4, "freeze_spatial": True})  # frozen: so freeze_spatial composes
def vivit(input_shape, num_classes, rngs, *, spatial_init: str = "", init_temporal: bool = False,
          short_clip_init: str = "", stage1_steps: int = 0, stage1_frames: int = 0, **kwargs):
  """`jaxdyn.models.ViViT` on clips (frames, H, W, C), optionally from a frame-pretrained spatial ViT and
  (two-stage scheme) from a ViViT trained on the clips' first ``stage1_frames`` frames."""
  if len(input_shape) != 4 or input_shape[1] != input_shape[2]:
    raise ValueError(f"input_shape: vivit needs clips of square frames (frames, H, H, C), got {tuple(input_shape)}")
  if not isinstance(spatial_init, str):
    raise TypeError(f"spatial_init: must be a path string ('' for random initialisation), got {spatial_init!r}")
  if not isinstance(init_temporal, bool):
    raise TypeError(f"init_temporal: must be a bool, got {init_temporal!r}")
  if init_temporal and not spatial_init:
    raise ValueError("init_temporal: needs spatial_init (the pre-trained ViT whose blocks seed the temporal transformer)")
  frames, size, _, channels = input_shape
  stage1_steps = _validation.check_int("stage1_steps", stage1_steps, lower=0)
  if not isinstance(short_clip_init, str):
    raise TypeError(f"short_clip_init: must be a path string ('' for none), got {short_clip_init!r}")
  if stage1_steps or short_clip_init:
    stage1_frames = _validation.check_int("stage1_frames", stage1_frames, lower=1, upper=frames)
    if not short_clip_init:
      raise ValueError("stage1_steps: the two-stage scheme is run by the claim runner (vivit_runner), which trains "
                       "stage 1 and sets short_clip_init; got stage1_steps > 0 without it")
  model = ViViT(channels, num_classes, num_frames=frames, image_size=size, rngs=rngs, **kwargs)
  if spatial_init:
    if not os.path.isfile(spatial_init):
      raise ValueError(f"spatial_init: no such file {spatial_init!r}")
    state = nnx.state(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    image = load_spatial(spatial_init, params["spatial"])
    nnx.replace_by_pure_dict(state, init_from_image_model(params, image, init_temporal=init_temporal))
    nnx.update(model, state)
  if short_clip_init:
    if not os.path.isfile(short_clip_init):
      raise ValueError(f"short_clip_init: no such file {short_clip_init!r}")
    state = nnx.state(model, nnx.Param)
    short = nnx.to_pure_dict(nnx.state(_short_vivit(channels, num_classes, stage1_frames, size, kwargs,
                                                    nnx.Rngs(0)), nnx.Param))  # a template
    short = load_spatial(short_clip_init, short, name="short_clip_init",
                         what=f"a ViViT of this architecture on {stage1_frames} frames")
    nnx.replace_by_pure_dict(state, init_from_short_clip_model(nnx.to_pure_dict(state), short))
    nnx.update(model, state)
  return model


def _short_vivit(channels: int, num_classes: int, frames: int, size: int, kwargs: dict[str, Any],
                 rngs: nnx.Rngs) -> ViViT:
  """The stage-1 ViViT: the architecture of ``kwargs`` on ``frames`` frames, no adapter, nothing frozen."""
  kw = {**kwargs, "adapter_dim": 0, "freeze_spatial": False}
  return ViViT(channels, num_classes, num_frames=frames, image_size=size, rngs=rngs, **kw)


@register("capability", "frozen_spatial")
def has_frozen_spatial(model) -> bool:
  """a ViViT built with freeze_spatial=True (no gradient reaches its spatial transformer)"""
  return isinstance(model, ViViT) and model.freeze_spatial


@register("transform", "freeze_spatial", requires=("frozen_spatial",))
def freeze_spatial_transform(tx, *, prefix: str = "spatial"):
  """`jaxdyn.memory.freeze_spatial`: zero updates and no optimizer state for the spatial transformer."""
  return freeze_spatial(tx, prefix=prefix)


@register("callback", "step_time", tiny={"skip": 0})
class StepTime(Callback):
  """``on_end()``: the median wall time of a training step (``median_step_s``), each step waited for."""

  def __init__(self, *, skip: int = 5):
    super().__init__(every_steps=1)
    self.skip = _validation.check_int("skip", skip, lower=0)
    self._last: float | None = None
    self._times: list[float] = []
    self._seen = 0

  def on_step(self, step: int) -> None:
    del step
    jax.block_until_ready(self.ctx.state.params)
    now = time.perf_counter()
    if self._last is not None and self._seen > self.skip:
      self._times.append(now - self._last)
    self._last = now
    self._seen += 1

  def on_end(self) -> dict[str, float]:
    if not self._times:
      return {}
    return {"median_step_s": float(np.median(self._times)), "timed_steps": float(len(self._times))}


def _spatial_settings(config) -> dict[str, Any]:
  kw = dict(config.model_kwargs)
  return {k: kw.get(k, d) for k, d in _VIVIT_DEFAULTS.items()}


def _cross_entropy_step(graphdef, rest, tx):
  """A train step (params, opt_state, x, y) -> (params, opt_state) on the mean softmax cross-entropy; not jitted."""
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = nnx.merge(graphdef, p, rest)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
  return step


def pretrain_spatial(spatial: dict[str, Any], *, seed: int, steps: int, batch_size: int, learning_rate: float,
                     cache_dir: str | os.PathLike | None = None) -> tuple[str, dict[str, float]]:
  """Trains the spatial ViT on ``clip_frames`` (cell of the digit, 16 classes) and saves its parameters.

  Adam with a cosine-decayed ``learning_rate``, ``batch_size`` frames a step drawn with ``seed``; the
  ViT is initialised from ``seed`` too. Cached: a second call with the same settings reads the file.

  Returns:
    ``(path, {"pretrain_accuracy": eval accuracy, "pretrain_seconds": time spent (0 when cached)})``.
  """
  data = load_dataset(PRETRAIN_DATASET, cache_dir=cache_dir)
  size, channels = data.input_shape[0], data.input_shape[-1]
  if spatial["frame_classes"] != data.num_classes:
    raise ValueError(f"frame_classes: the frame pre-training has {data.num_classes} classes, got "
                     f"{spatial['frame_classes']}")
  settings = {"dataset": PRETRAIN_DATASET, "spatial": spatial, "seed": seed, "steps": steps,
              "batch_size": batch_size, "learning_rate": learning_rate}
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
  root = pathlib.Path(cache_dir) if cache_dir else default_cache_dir()
  path = root / "vivit_spatial" / f"{digest}.npz"
  meta_path = path.with_suffix(".json")
  if path.exists() and meta_path.exists():
    return str(path), {**json.loads(meta_path.read_text()), "pretrain_seconds": 0.0}

  t0 = time.monotonic()
  model = _spatial_vit(channels, size, spatial, nnx.Rngs(params=seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  opt_state = tx.init(params)

  step = jax.jit(_cross_entropy_step(graphdef, rest, tx))

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    idx = rng.integers(len(data.train), size=batch_size)
    b = data.train.gather(idx)
    params, opt_state = step(params, opt_state, b["x"], b["y"])
  predict = jax.jit(lambda p, x: jnp.argmax(nnx.merge(graphdef, p, rest)(x), -1))
  correct = sum(int(np.sum(np.asarray(predict(params, data.eval.x[i:i + 500])) == data.eval.y[i:i + 500]))
                for i in range(0, len(data.eval), 500))
  meta = {"pretrain_accuracy": correct / len(data.eval)}
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
  np.savez(tmp, **_flat(nnx.to_pure_dict(params)))
  os.replace(tmp, path)
  meta_path.write_text(json.dumps(meta))
  return str(path), {**meta, "pretrain_seconds": round(time.monotonic() - t0, 2)}


# model_kwargs that are not the ViViT's architecture (the factory's own, and the stage-2-only pieces).
_NOT_ARCH = ("spatial_init", "init_temporal", "short_clip_init", "stage1_steps", "stage1_frames", "adapter_dim",
             "freeze_spatial")


def train_short_clips(config: ml_collections.ConfigDict, spatial_init: str, *, steps: int, frames: int,
                      learning_rate: float, skip: int = 5) -> tuple[str, dict[str, float]]:
  """Stage 1 of the two-stage arm: a whole ViViT fine-tuned on the clips' first ``frames`` frames; saved.

  The model is ``config.model_kwargs``' architecture on ``frames`` frames, no adapter, nothing frozen,
  the spatial ViT from ``spatial_init`` and the temporal transformer from random (as the
  ``full_finetune`` arm), initialised from ``config.seed``; Adam with a cosine-decayed
  ``learning_rate``, ``config.batch_size`` clips a step drawn with ``config.seed``, softmax cross-entropy
  (the config's ``ce`` without label smoothing). Cached: a second call with the same settings reads the
  file (``<cache>/vivit_short/<hash>.npz`` and ``.json``).

  Returns:
    ``(path, meta)``, meta: ``stage1_accuracy`` (eval accuracy on the short eval clips),
    ``stage1_median_step_s`` (median wall time of a step, each waited for, the first ``skip`` dropped),
    ``stage1_temp_bytes`` (XLA temp bytes of the compiled step), ``stage1_seconds`` (the training's
    wall time when it ran), ``stage1_steps``.
  """
  steps = _validation.check_int("steps", steps, lower=1)
  data = load_dataset(config.dataset, cache_dir=config.cache_dir or None)
  all_frames, size, _, channels = data.input_shape
  frames = _validation.check_int("frames", frames, lower=1, upper=all_frames)
  arch = {k: v for k, v in dict(config.model_kwargs).items() if k not in _NOT_ARCH}
  settings = {"dataset": config.dataset, "arch": arch, "seed": config.seed, "steps": steps, "frames": frames,
              "batch_size": config.batch_size, "learning_rate": learning_rate,
              "spatial_init": os.path.basename(spatial_init)}  # the file name is the pre-training's hash
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
  root = pathlib.Path(config.cache_dir) if config.cache_dir else default_cache_dir()
  path = root / "vivit_short" / f"{digest}.npz"
  meta_path = path.with_suffix(".json")
  if path.exists() and meta_path.exists():
    return str(path), json.loads(meta_path.read_text())

  t0 = time.monotonic()
  model = _short_vivit(channels, data.num_classes, frames, size, arch, nnx.Rngs(params=config.seed))
  state = nnx.state(model, nnx.Param)
  params = nnx.to_pure_dict(state)
  image = load_spatial(spatial_init, params["spatial"])
  nnx.replace_by_pure_dict(state, init_from_image_model(params, image, init_temporal=False))
  nnx.update(model, state)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
  opt_state = tx.init(params)

  step = _cross_entropy_step(graphdef, rest, tx)
  train_x, train_y = data.train.x[:, :frames], data.train.y
  x0 = jnp.asarray(train_x[:config.batch_size])
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, x0, jnp.asarray(train_y[:config.batch_size])
                                                        ).compile()
  temp_bytes = float(compiled.memory_analysis().temp_size_in_bytes)
  rng = np.random.default_rng(config.seed)
  times, last = [], None
  for i in range(steps):
    idx = rng.integers(len(train_y), size=config.batch_size)
    params, opt_state = compiled(params, opt_state, jnp.asarray(train_x[idx]), jnp.asarray(train_y[idx]))
    jax.block_until_ready(params)
    now = time.perf_counter()
    if last is not None and i > skip:
      times.append(now - last)
    last = now
  predict = jax.jit(lambda p, x: jnp.argmax(nnx.merge(graphdef, p, rest)(x), -1))
  ex, ey = data.eval.x[:, :frames], data.eval.y
  correct = sum(int(np.sum(np.asarray(predict(params, ex[i:i + config.eval_batch_size])) ==
                           ey[i:i + config.eval_batch_size])) for i in range(0, len(ey), config.eval_batch_size))
  meta = {"stage1_accuracy": correct / len(ey), "stage1_median_step_s": float(np.median(times)) if times else 0.0,
          "stage1_temp_bytes": temp_bytes, "stage1_seconds": round(time.monotonic() - t0, 2),
          "stage1_steps": float(steps)}
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
  np.savez(tmp, **_flat(nnx.to_pure_dict(params)))
  os.replace(tmp, path)
  meta_path.write_text(json.dumps(meta))
  return str(path), meta


def vivit_runner(config: ml_collections.ConfigDict, workdir: str, *, pretrain: dict[str, Any] | None = None,
                 stage1: dict[str, Any] | None = None) -> dict[str, Any]:
  """Pre-trains (or reads) the seed's spatial ViT, points ``model_kwargs.spatial_init`` at it, trains the arm.

  ``pretrain``: ``steps``, ``batch_size``, ``learning_rate`` of `pretrain_spatial` (default `PRETRAIN`).
  With ``model_kwargs.stage1_steps > 0`` (the two-stage arm) stage 1 (`train_short_clips`, with
  ``stage1``'s ``learning_rate``, default `STAGE1`) runs first and ``model_kwargs.short_clip_init`` points
  at it; the results then combine both stages (module docstring).
  A finished run is read back by `experiments.train.train_and_evaluate` itself (it resumes).
  """
  from experiments.train import train_and_evaluate  # pylint: disable=import-outside-toplevel  (no cycle at import)

  settings = {**PRETRAIN, **(pretrain or {})}
  path, meta = pretrain_spatial(_spatial_settings(config), seed=config.seed, cache_dir=config.cache_dir or None,
                                **settings)
  config = ml_collections.ConfigDict(config.to_dict())
  config.model_kwargs.spatial_init = path
  stage1_steps = int(config.model_kwargs.get("stage1_steps", 0))
  if stage1_steps:
    short_path, short_meta = train_short_clips(config, path, steps=stage1_steps,
                                               frames=config.model_kwargs.get("stage1_frames", 0),
                                               **{**STAGE1, **(stage1 or {})})
    config.model_kwargs.short_clip_init = short_path
    meta = {**meta, **short_meta}
  results = dict(train_and_evaluate(config, workdir))
  results.update(meta)
  if stage1_steps and "final_median_step_s" in results and "final_temp_bytes" in results:
    s2_steps = config.num_train_steps
    results["stage2_median_step_s"] = results["final_median_step_s"]
    results["stage2_temp_bytes"] = results["final_temp_bytes"]
    results["final_median_step_s"] = ((stage1_steps * meta["stage1_median_step_s"]
                                       + s2_steps * results["stage2_median_step_s"]) / (stage1_steps + s2_steps))
    results["final_temp_bytes"] = max(meta["stage1_temp_bytes"], results["stage2_temp_bytes"])
  return results
