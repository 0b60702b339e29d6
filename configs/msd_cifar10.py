"""Multi-sample dropout on CIFAR-10 with a CIFAR ResNet-18 (needs TFDS cifar10 prepared).

    python -m experiments.main --config=configs/msd_cifar10.py --workdir=runs/msd_cifar10 \\
        --config.data_dir=$HOME/tensorflow_datasets
    # single-sample dropout baseline:
    ... --config.objective_kwargs.num_samples=1

Recipe: SGD 0.1, momentum 0.9, weight decay 5e-4, cosine over 200 epochs of 390 steps, batch 128;
M = 8 dropout samples at p = 0.5 on the 512 pooled features before the head; standard CIFAR
augmentation (4-pixel padded random crop, horizontal flip: ``augment="crop_flip"``). Far too slow for
the 2-core CPU machines; meant for a GPU or TPU.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.dataset = "tfds:cifar10"
  c.augment = "crop_flip"
  c.model = "resnet18"
  c.model_kwargs = {"dropout_rate": 0.0}
  c.objective = "msd"
  c.objective_kwargs = {"num_samples": 8, "rate": 0.5}
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1
  c.optimizer.kwargs = {"momentum": 0.9, "weight_decay": 5e-4}
  c.optimizer.schedule = "cosine"
  c.batch_size = 128
  c.num_train_steps = 390 * 200
  c.log_every_steps = 100
  c.eval_every_steps = 390 * 5
  c.checkpoint_every_steps = 390 * 5
  return c
