"""Sparse training on MNIST-1D: GraNet against GMP, RigL, SET and static ERK masks (Liu et al., 2021).

    python -m experiments.main --config=configs/granet_mnist1d.py --workdir=runs/granet
    python -m experiments.main --config=configs/granet_mnist1d.py --workdir=runs/gmp \\
        --config.transforms='({"name": "gmp", "final_density": 0.1},)'
    make repro CLAIM=granet_vs_gmp_s90
    make repro CLAIM=granet_vs_gmp_s95

The 1-D CNN is widened to channels (64, 128) and a 256-unit dense layer (60k weights, 4,000 training
signals): the dense model is over-parameterised for MNIST-1D, so a 90-95% sparse one can still fit
it, as a ResNet-50 can at ImageNet scale. Every method ends at the same density of the sparse
kernels (all convolution and dense kernels; biases dense): dense-to-sparse GraNet and GMP prune from
step 0 to 70% of the run on the cubic schedule every 50 steps; RigL, SET and static start from ERK
masks at the final density (RigL and SET move 30% of each layer's active weights, cosine-decayed,
until 75% of the run). Adam with a cosine schedule; the sparsity wrapper is the last transform.
"""

from configs import default
from experiments.claims import Arm, Claim, Expect

STEPS = 1500
UPDATE_EVERY = 50
METHODS = ("granet", "gmp", "rigl", "set", "static_sparse")
PAPER = ("Liu et al., Sparse Training via Boosting Pruning Plasticity with Neuroregeneration, NeurIPS 2021, "
         "https://arxiv.org/abs/2106.10404")


def transform(method: str, density: float) -> dict:
  if method in ("granet", "gmp"):
    return {"name": method, "final_density": density, "update_every": UPDATE_EVERY}
  if method == "static_sparse":
    return {"name": method, "density": density}
  return {"name": method, "density": density, "update_every": UPDATE_EVERY}


def get_config():
  c = default.get_config()
  c.model = "cnn"
  c.model_kwargs = {"channels": (64, 128), "hidden": 256, "dropout_rate": 0.0}
  c.optimizer.learning_rate = 3e-3
  c.num_train_steps = STEPS
  c.transforms = (transform("granet", 0.1),)
  c.callbacks = ({"name": "sparsity_eval", "every_steps": 100},)
  c.log_every_steps = 100
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 1000
  return c


def _claim(density: float):
  sparsity = round(100 * (1 - density))
  return Claim(
      name=f"granet_vs_gmp_s{sparsity}",
      paper=PAPER,
      statement=("GraNet (gradual global magnitude pruning with zero-cost neuroregeneration) beats gradual "
                 "magnitude pruning and RigL, most at high sparsity."),
      setting=(f"MNIST-1D, the over-parameterised 1-D CNN (60k weights), {STEPS} Adam steps, every method at "
               f"{sparsity}% sparsity of the kernels at the end; test accuracy, mean of 3 seeds."),
      get_config=get_config,
      arms=[Arm(m, {"transforms": (transform(m, density),)}) for m in METHODS],
      metric="eval_accuracy",
      metric_name="test accuracy",
      expects=[Expect("greater", "granet", "gmp"), Expect("greater", "granet", "rigl")],
      report={"train FLOPs / dense": "final_train_flop_ratio", "active params": "final_active_params"},
  )


def get_claims():
  return [_claim(0.1), _claim(0.05)]
