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

from configs import _cifar10


def get_config():
  c = _cifar10.get_config(model="resnet18", steps_per_epoch=390, epochs=200, learning_rate=0.1,
                          weight_decay=5e-4)
  c.model_kwargs = {"dropout_rate": 0.0}
  c.objective = "msd"
  c.objective_kwargs = {"num_samples": 8, "rate": 0.5}
  return c
