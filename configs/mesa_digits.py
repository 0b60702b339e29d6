"""Mesa (8-bit saved activations, exact forward) on a small ViT for scikit-learn's 8x8 digits.

    python -m experiments.main --config=configs/mesa_digits.py --workdir=runs/mesa_digits
    python -m experiments.main --config=configs/mesa_digits.py --workdir=runs/mesa_digits_fp32 \\
        --config.model_kwargs.mesa=False
    make repro CLAIM=mesa_memory
    make repro CLAIM=mesa_accuracy

The ViT (2x2 patches, 17 tokens, width 64, 4 blocks, 4 heads, MLP ratio 2) trains with Adam on the
1,437 training digits and is tested on the 360 others. ``mesa=True`` builds it from
`jaxdyn.memory`'s Mesa layers: every LayerNorm, attention (projections, q k^T, softmax, p v), MLP
dense layer and GELU computes exactly the float output and keeps 8-bit copies (per-group running
ranges, stochastic rounding) for the backward pass. The ``train_step_memory`` callback reports
XLA's memory analysis of the run's own compiled train step: ``final_temp_bytes`` is the memory the
step allocates beyond its arguments and outputs, i.e. the activations and the backward's buffers.
The float arm is `jaxdyn.models.ViT` (separate q, k, v projections, flax's attention); the Mesa
ViT takes q, k, v from one fused projection (DeiT's layout), the same function with a different
initialisation stream.
"""

import math

from configs import default
from experiments.claims import Arm, Claim, Expect

PAPER = ("Pan, Chen, He, Liu, Cai, Zhuang, Mesa: A Memory-saving Training Framework for Transformers, 2021, "
         "https://arxiv.org/abs/2111.11124 (code https://github.com/ziplab/Mesa)")
NUM_STEPS = 500
BATCH = 128


def get_config():
  c = default.get_config()
  c.dataset = "digits"
  c.model = "vit"
  c.model_kwargs = {"patch_size": 2, "dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2,
                    "dropout_rate": 0.0, "mesa": True}
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "cosine"
  c.batch_size = BATCH
  c.num_train_steps = NUM_STEPS
  c.log_every_steps = 50
  c.eval_every_steps = 250
  c.checkpoint_every_steps = NUM_STEPS
  c.callbacks = ("train_step_memory",)
  return c


ARMS = [Arm("fp32", {"model_kwargs.mesa": False}), Arm("Mesa", {"model_kwargs.mesa": True})]
SETTING = (f"digits (1,437 train / 360 test, 8x8), ViT 2x2 patches, width 64, depth 4, 4 heads, MLP ratio 2, "
           f"Adam 1e-3 (cosine), batch {BATCH}, {NUM_STEPS} steps; Mesa with channel groups = "
           f"heads, EMA ranges (decay 0.9), stochastic rounding. Memory: XLA's temp bytes of the compiled train "
           f"step (CPU), identical across seeds.")
REPORT = {"temp MiB": lambda r: r["final_temp_bytes"] / 2**20, "test accuracy": "eval_accuracy"}


def get_claims():
  return [
      Claim(
          name="mesa_memory",
          paper=PAPER,
          statement=("Keeping 8-bit copies of the activations for the backward pass saves up to half of the "
                     "training memory (DeiT-Ti at batch 128: 4,171 -> 1,858 MB)."),
          setting=SETTING + " Declared: the Mesa step's temp memory at most half the float step's "
                            "(log2 of the bytes lower by at least 1).",
          get_config=get_config,
          arms=ARMS,
          metric=lambda r: math.log2(r["final_temp_bytes"]),
          metric_name="log2 train-step temp bytes",
          expects=[Expect("less", "Mesa", "fp32", margin=1.0)],
          report=REPORT,
      ),
      Claim(
          name="mesa_accuracy",
          paper=PAPER,
          statement="Mesa trains to comparable or better accuracy than the float model (DeiT-Ti 71.9 -> 72.1).",
          setting=SETTING + " Declared: Mesa's test accuracy at most 1 point below the float model's.",
          get_config=get_config,
          arms=ARMS,
          metric="eval_accuracy",
          metric_name="test accuracy",
          expects=[Expect("at_least", "Mesa", "fp32", margin=0.01)],
          report=REPORT,
      ),
  ]
