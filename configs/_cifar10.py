"""The CIFAR-10 recipe the papers share: what every ``configs/*_cifar10.py`` starts from.

TFDS ``cifar10`` (prepare it first: the error says how), the standard 4-pixel padded random crop and
horizontal flip, batch 128, SGD with momentum 0.9 and coupled weight decay, logging every 100 steps,
evaluation and checkpoints every 5 epochs. Each paper's config changes what its paper changes.
"""

from __future__ import annotations

from configs import default

TRAIN_SIZE = 50_000


def get_config(*, model: str, steps_per_epoch: float, epochs: int, learning_rate: float, weight_decay: float,
               optimizer: str = "sgd", schedule: str = "cosine", batch_size: int = 128):
  """The shared recipe; ``steps_per_epoch`` may be fractional (50,000 / 128 = 390.6 streamed steps)."""
  c = default.get_config()
  c.dataset = "tfds:cifar10"
  c.augment = "crop_flip"
  c.model = model
  c.optimizer.name = optimizer
  c.optimizer.learning_rate = learning_rate
  c.optimizer.kwargs = {"momentum": 0.9, "weight_decay": weight_decay}
  c.optimizer.schedule = schedule
  c.batch_size = batch_size
  c.num_train_steps = int(epochs * steps_per_epoch)
  c.log_every_steps = 100
  c.eval_every_steps = c.checkpoint_every_steps = int(5 * steps_per_epoch)
  return c
