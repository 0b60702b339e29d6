"""GraNet and its baselines on CIFAR-10 with a CIFAR ResNet-18: the paper's recipe (needs TFDS cifar10).

    python -m experiments.main --config=configs/granet_cifar10.py --workdir=runs/granet_cifar10 \\
        --config.data_dir=$HOME/tensorflow_datasets
    # the other methods, same recipe: --config=configs/granet_cifar10.py:gmp (or :rigl, :set, :static_sparse)
    # sparse to sparse (GraNet from ERK masks at 50%): --config=configs/granet_cifar10.py:granet_s2s
    # other final densities: --config.transforms='({"name": "granet", "final_density": 0.05, ...},)'

Recipe (GraNet's paper, Sec. 4, and its CIFAR code, ``CIFAR/main.py`` and ``sparselearning/core.py``):
SGD with momentum 0.9, learning rate 0.1 decayed by 10x at epochs 80 and 120 of 160, weight decay
5e-4, batch 128; the sparse kernels are every convolution and the linear head (biases and BatchNorm
dense); pruning from epoch 0 to epoch 110 on the cubic schedule, a mask update every 1,000 steps,
final density 0.1 (the paper also reports 0.05 and 0.02); regeneration drops 50% of the survivors at
first, cosine-decayed to 0.005; dense to sparse (d_i = 1) by default, sparse to sparse from ERK masks
at d_i = 0.5. RigL and SET use their paper's schedule (30% of each layer, cosine-decayed, until 75%
of the run); static ERK masks never change. Random crop with 4-pixel padding and horizontal flip;
the paper's ResNet-50 / VGG-19 are replaced by the ResNet-18 the other CIFAR configs use. Far too
slow for the 2-core CPU machines; meant for a GPU.
"""

from configs import _cifar10

STEPS_PER_EPOCH = 390
EPOCHS = 160
ARMS = ("granet", "granet_s2s", "gmp", "rigl", "set", "static_sparse")


def get_config(arm: str = "granet"):
  """The GraNet config; ``arm`` (``--config=<this file>:<arm>``) picks a baseline instead."""
  arm = arm or "granet"
  if arm not in ARMS:
    raise ValueError(f"arm: must be one of {ARMS}, got {arm!r}")
  c = _cifar10.get_config(model="resnet18", steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS, learning_rate=0.1,
                          weight_decay=5e-4, schedule="piecewise")
  c.model_kwargs = {}
  c.optimizer.boundaries = (80 * STEPS_PER_EPOCH, 120 * STEPS_PER_EPOCH)
  c.optimizer.decay = 0.1
  window = {"start_fraction": 0.0, "end_fraction": 110 / EPOCHS}
  if arm in ("granet", "granet_s2s"):
    t = {"name": "granet", "final_density": 0.1, "update_every": 1000, "drop_fraction": 0.5,
         "min_drop_fraction": 0.005, **window}
    if arm == "granet_s2s":
      t["init_density"] = 0.5
  elif arm == "gmp":
    t = {"name": "gmp", "final_density": 0.1, "update_every": 1000, **window}
  elif arm == "static_sparse":
    t = {"name": "static_sparse", "density": 0.1}
  else:
    t = {"name": arm, "density": 0.1, "update_every": 1000, "drop_fraction": 0.3, "end_fraction": 0.75}
  c.transforms = (t,)
  c.callbacks = ({"name": "sparsity_eval", "every_steps": 1000},)
  return c
