"""Default experiment: a small 1-D CNN on MNIST-1D (offline), about a minute on 2 CPU cores.

    python -m experiments.main --config=configs/default.py --workdir=runs/default

This file defines every config key; other configs start from ``get_config()`` here and change values.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = "mnist1d"  # mnist1d | digits | synthetic | clips | clip_frames | tfds:<name>
  c.data_dir = ""  # TFDS data directory ("" = TFDS's default)
  c.cache_dir = ""  # where generated datasets are cached ("" = $JAXDYN_CACHE or ~/.cache/jaxdyn)
  c.augment = ""  # training-batch augmentation: "" (none) | crop_flip | flip (jaxdyn.data.AUGMENTATIONS)
  c.model = "cnn"  # mlp | cnn | resnet18 | resnet50 | vit
  c.model_kwargs = ml_collections.ConfigDict({"channels": (32, 64), "hidden": 128, "dropout_rate": 0.0})
  c.objective = "ce"  # a registered objective (experiments/registry.py)
  c.objective_kwargs = ml_collections.ConfigDict({"label_smoothing": 0.0})
  c.optimizer = ml_collections.ConfigDict({
      "name": "adam",
      "learning_rate": 3e-3,
      "schedule": "cosine",  # constant | cosine | warmup_cosine | piecewise
      "warmup_steps": 0,
      "boundaries": (),  # piecewise: steps at which the rate is multiplied by `decay`
      "decay": 0.1,
      "kwargs": ml_collections.ConfigDict(),
  })
  c.transforms = ()  # ({"name": "clip_by_global_norm", "max_norm": 2.0}, ...) or ("name", ...)
  c.callbacks = ()  # ({"name": ..., **kwargs}, ...) or ("name", ...)
  c.batch_size = 128
  c.eval_batch_size = 512
  c.num_train_steps = 3000
  c.log_every_steps = 50
  c.eval_every_steps = 250
  c.checkpoint_every_steps = 500
  c.max_checkpoints = 3
  c.progress_every_seconds = 10.0
  c.nonfinite = "fail"  # fail | skip
  c.sharding = "data"  # data (replicated state, batch split over devices) | fsdp (state split too)
  return c
