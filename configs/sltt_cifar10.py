"""SLTT on CIFAR-10 with the paper's spiking pre-activation ResNet-18, T = 6 (needs TFDS cifar10 prepared).

    python -m experiments.main --config=configs/sltt_cifar10.py --workdir=runs/sltt_cifar10 \\
        --config.data_dir=$HOME/tensorflow_datasets
    # BPTT and SLTT-K baselines:
    ... --config.objective_kwargs.mode=bptt
    ... --config.objective_kwargs.mode=sltt_k --config.objective_kwargs.k=2

The authors' CIFAR-10 command (github.com/qymeng94/SLTT README): spiking_resnet18, T = 6, tau = 1.1,
triangle surrogate, loss (1/T) sum_t [0.95 CE + 0.05 MSE(o_t, 1)], SGD lr 0.1 momentum 0.9, weight
decay 5e-5 (coupled L2, as PyTorch's SGD), cosine over 200 epochs of 391 steps, batch 128. Random
crop with 4-pixel padding and horizontal flips as the authors (``augment="crop_flip"``). Not here:
their Cutout, per-channel normalisation (inputs are in [0, 1]; the BatchNorm that follows the
stem conv absorbs most of it) and mixed precision; expect lower accuracy than the paper's. Far
too slow for the 2-core CPU machines (a ResNet-18 forward and backward pass per time step); meant
for a GPU or TPU. Append ``{"name": "train_step_memory"}`` to ``config.callbacks`` to record the
train step's XLA memory in results.json.
"""

from ml_collections import config_dict

from configs import _cifar10

STEPS_PER_EPOCH = 391  # 50,000 / 128, rounded up (the authors keep the last partial batch)
EPOCHS = 200


def get_config():
  c = _cifar10.get_config(model="spiking_resnet18", steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS,
                          learning_rate=0.1, weight_decay=5e-5)
  c.model_kwargs = {"num_steps": 6, "width": 64, "dropout_rate": 0.0, "tau": 1.1, "surrogate": "triangle"}
  c.objective = "sltt"
  # k: SLTT-K's K (an int with mode="sltt_k", else None); a typed placeholder so the flag can set it.
  c.objective_kwargs = {"mode": "sltt", "k": config_dict.placeholder(int), "lam_l": 0.05}
  c.eval_batch_size = 500
  return c
