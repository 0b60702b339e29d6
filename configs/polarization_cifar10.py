"""Polarization (Zhi et al., 2023) on CIFAR-10 with a CIFAR ResNet-18: one pass, then the consensus sub-network.

    python -m experiments.main --config=configs/polarization_cifar10.py --workdir=runs/polarization_cifar10 \\
        --config.data_dir=$HOME/tensorflow_datasets
    # another target: --config.objective_kwargs.target_sparsity=0.3

The CIFAR ResNet-18 gets a binary gate (`jaxdyn.sparsity.GatedResNet`) on the inner channels of each
residual block (the output channels of its first convolution and BatchNorm, the input channels of its
second; the residual stream is not pruned). One training pass minimises CE + the polarization
regularizer with half of each block's inner channels as the target; at the end `subnetwork_eval`
keeps the channels whose gates agree on 512 training images and removes the rest physically, giving
a plain `jaxdyn.models.ResNet` with smaller ``inner_widths``, and reports its test accuracy, the
fraction of channels and of FLOPs it keeps.

Recipe: the paper's training recipe could not be read (only its abstract: 50% of the connections
removed with < 1% accuracy drop on CIFAR); this config uses the standard CIFAR ResNet recipe the
GraNet config uses (SGD with momentum 0.9, learning rate 0.1 with a cosine decay over 160 epochs,
weight decay 5e-4, batch 128, random crop and flip). Far too slow for the 2-core CPU machines;
meant for a GPU. The MNIST-1D claim (`configs/polarization_mnist1d.py`) is the one run here.
"""

from configs import _cifar10

STEPS_PER_EPOCH = 390
EPOCHS = 160


def get_config():
  c = _cifar10.get_config(model="gated_resnet18", steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS, learning_rate=0.1,
                          weight_decay=5e-4)
  c.model_kwargs = {"gate_hidden": 16}
  c.objective = "polarization"
  c.objective_kwargs = {"target_sparsity": 0.5, "weight": 1.0}
  c.callbacks = ({"name": "subnetwork_eval", "calibration_size": 512},)
  return c
