"""Frozen-spatial ViViT in the harness: the model, the freezing transform, a step-time callback, the claim runner.

Model ``vivit`` (``config.model_kwargs`` go to `jaxdyn.models.ViViT`, the clip length and frame size
come from the dataset's ``(frames, H, W, C)``), plus two keyword arguments of its own:
``spatial_init`` (the path of a spatial `ViT` pre-trained on frames, written by `pretrain_spatial`;
``""``: random spatial initialisation) and ``init_temporal`` (initialise the temporal transformer from
that ViT's blocks, `jaxdyn.memory.init_from_image_model`; needs ``spatial_init``).

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
from jaxdyn.memory import freeze_spatial, init_from_image_model
from jaxdyn.models import ViT, ViViT

# The spatial ViT's architecture keys among the ViViT's keyword arguments, and their ViT names.
_SPATIAL = {"patch_size": "patch_size", "dim": "dim", "spatial_depth": "depth", "num_heads": "num_heads",
            "mlp_ratio": "mlp_ratio", "frame_classes": "num_classes"}
_VIVIT_DEFAULTS = {"patch_size": 4, "dim": 64, "spatial_depth": 4, "num_heads": 4, "mlp_ratio": 2,
                   "frame_classes": 16}
PRETRAIN = {"steps": 400, "batch_size": 64, "learning_rate": 3e-3}
PRETRAIN_DATASET = "clip_frames"


def _spatial_vit(in_channels: int, image_size: int, spatial: dict[str, Any], rngs: nnx.Rngs) -> ViT:
  kw = {_SPATIAL[k]: v for k, v in spatial.items() if k != "frame_classes"}
  return ViT(in_channels, spatial["frame_classes"], image_size=image_size, **kw, rngs=rngs)


def _flat(tree) -> dict[str, np.ndarray]:
  return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def load_spatial(path: str, template: dict[str, Any]) -> dict[str, Any]:
  """The pure-dict ViT parameters saved at ``path``, laid out as ``template``; raises on any mismatch."""
  with np.load(path) as f:
    saved = dict(f)
  want = _flat(template)
  if set(saved) != set(want) or any(saved[k].shape != want[k].shape for k in want):
    raise ValueError(f"spatial_init: {path} does not hold this model's spatial ViT (its keys or shapes differ)")
  leaves = [jnp.asarray(saved[jax.tree_util.keystr(p)]) for p, _ in jax.tree_util.tree_flatten_with_path(template)[0]]
  return jax.tree.unflatten(jax.tree.structure(template), leaves)


@register("model", "vivit", tiny={"dim": 16, "spatial_depth": 1, "temporal_depth": 1, "num_heads": 2,
                                  "adapter_dim": 4, "freeze_spatial": True})  # frozen: so freeze_spatial composes
def vivit(input_shape, num_classes, rngs, *, spatial_init: str = "", init_temporal: bool = False, **kwargs):
  """`jaxdyn.models.ViViT` on clips (frames, H, W, C), optionally from a frame-pretrained spatial ViT."""
  if len(input_shape) != 4 or input_shape[1] != input_shape[2]:
    raise ValueError(f"input_shape: vivit needs clips of square frames (frames, H, H, C), got {tuple(input_shape)}")
  if not isinstance(spatial_init, str):
    raise TypeError(f"spatial_init: must be a path string ('' for random initialisation), got {spatial_init!r}")
  if not isinstance(init_temporal, bool):
    raise TypeError(f"init_temporal: must be a bool, got {init_temporal!r}")
  if init_temporal and not spatial_init:
    raise ValueError("init_temporal: needs spatial_init (the pre-trained ViT whose blocks seed the temporal transformer)")
  frames, size, _, channels = input_shape
  model = ViViT(channels, num_classes, num_frames=frames, image_size=size, rngs=rngs, **kwargs)
  if spatial_init:
    if not os.path.isfile(spatial_init):
      raise ValueError(f"spatial_init: no such file {spatial_init!r}")
    state = nnx.state(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    image = load_spatial(spatial_init, params["spatial"])
    nnx.replace_by_pure_dict(state, init_from_image_model(params, image, init_temporal=init_temporal))
    nnx.update(model, state)
  return model


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

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = nnx.merge(graphdef, p, rest)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

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


def vivit_runner(config: ml_collections.ConfigDict, workdir: str, *, pretrain: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
  """Pre-trains (or reads) the seed's spatial ViT, points ``model_kwargs.spatial_init`` at it, trains the arm.

  ``pretrain``: ``steps``, ``batch_size``, ``learning_rate`` of `pretrain_spatial` (default `PRETRAIN`).
  A finished run is read back by `experiments.train.train_and_evaluate` itself (it resumes).
  """
  from experiments.train import train_and_evaluate  # pylint: disable=import-outside-toplevel  (no cycle at import)

  settings = {**PRETRAIN, **(pretrain or {})}
  path, meta = pretrain_spatial(_spatial_settings(config), seed=config.seed, cache_dir=config.cache_dir or None,
                                **settings)
  config = ml_collections.ConfigDict(config.to_dict())
  config.model_kwargs.spatial_init = path
  results = dict(train_and_evaluate(config, workdir))
  results.update(meta)
  return results
