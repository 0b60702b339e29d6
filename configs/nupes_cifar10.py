"""NUPES post-training quantization (Yvinec et al., 2023) of a CIFAR-10 ResNet-18 (needs TFDS cifar10).

    python -m experiments.main --config=configs/nupes_cifar10.py --workdir=runs/nupes_cifar10 \\
        --config.data_dir=$HOME/tensorflow_datasets
    # the comparators, same trained model (same seed): --config=configs/nupes_cifar10.py:rtn (or :adaround)

The CIFAR ResNet-18 is trained in float with the shared CIFAR recipe (SGD with momentum 0.9,
learning rate 0.1 with a cosine decay over 160 epochs, weight decay 5e-4, batch 128, random crop and
flip); at the end `quantize_eval` puts every kernel (stem, blocks, shortcuts, head) on a 4-bit and a
3-bit grid, layer by layer in forward order, each layer calibrated on 1,024 training images under
the layers quantized before it (BatchNorm stays in float, unfolded), and reports the test accuracy
of each. The paper quantizes ImageNet-pretrained networks with a small calibration set; 1,024 images
is AdaRound's calibration size, which NUPES compares against. Far too slow for the 2-core CPU
machines; meant for a GPU. The MNIST-1D claims (`configs/nupes_mnist1d.py`) are the ones run here.
"""

from configs import _cifar10

STEPS_PER_EPOCH = 390
EPOCHS = 160
METHODS = ("nupes", "rtn", "adaround")


def get_config(method: str = "nupes"):
  """``method`` (``--config=<this file>:<method>``): the quantizer applied to the trained network."""
  method = method or "nupes"
  if method not in METHODS:
    raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
  c = _cifar10.get_config(model="resnet18", steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS, learning_rate=0.1,
                          weight_decay=5e-4)
  c.model_kwargs = {}
  c.callbacks = ({"name": "quantize_eval", "method": method, "bits": (4, 3), "calibration_size": 1024},)
  return c
