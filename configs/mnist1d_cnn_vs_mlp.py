"""MNIST-1D: a small 1-D CNN against an MLP, the foundation's own claim (about 2 minutes).

    python -m experiments.main --config=configs/mnist1d_cnn_vs_mlp.py --workdir=runs/cnn_vs_mlp
    make repro CLAIM=mnist1d_cnn_beats_mlp
"""

from configs import default
from experiments.claims import Arm, Claim, Expect


def get_config():
  return default.get_config()


def get_claim() -> Claim:
  return Claim(
      name="mnist1d_cnn_beats_mlp",
      paper="Greydanus & Kobak, Scaling down deep learning with MNIST-1D, ICML 2024, "
      "https://arxiv.org/abs/2011.14439",
      statement="On MNIST-1D a small CNN generalises far better than an MLP (paper: ~94% vs ~68% test "
      "accuracy), because the signals' features are translated.",
      setting="4,000 train / 1,000 test MNIST-1D signals; CNN (conv 32-64, dense 128) vs MLP (256-256), "
      "Adam 3e-3 cosine, batch 128, 3,000 steps.",
      get_config=get_config,
      arms=[Arm("cnn", {"model": "cnn"}),
            Arm("mlp", {"model": "mlp", "model_kwargs": {"hidden": (256, 256), "dropout_rate": 0.0}})],
      metric="eval_accuracy",
      metric_name="test accuracy",
      expects=[Expect("greater", "cnn", "mlp", margin=0.1)],
      report={"test loss": "eval_loss", "train accuracy": "train_accuracy"},
  )
