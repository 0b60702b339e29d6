"""Experts Weights Averaging on a small ViT for scikit-learn's 8x8 digits.

    python -m experiments.main --config=configs/ewa_digits.py --workdir=runs/ewa_digits
    make repro CLAIM=ewa_vit_digits

The ViT (2x2 patches, 17 tokens, width 64, 4 blocks, 4 heads, MLP ratio 2) trains with Adam on the
1,437 training digits and is tested on the 360 others. Blocks 1 and 3 have 4-expert MoE feed-forward
layers with tokens dealt to experts by a random uniform partition (``vit_moe``); after every Adam step
the ``ewa`` transform moves each expert toward the others with a share rate rising to 0.3. The test
accuracy is the model in inference mode, where each MoE computes its mean expert: the plain ViT that
`jaxdyn.schemes.collapse_experts` exports, with the plain ViT's parameters and cost.
"""

from configs import default
from experiments.claims import Arm, Claim, Expect

PAPER = ("Huang, Ye, Huang, Li, Chen, Chen, Ouyang, Experts Weights Averaging: A New General Training Scheme for "
         "Vision Transformers, 2023, https://arxiv.org/abs/2308.06093")
NUM_STEPS = 1000
BATCH = 128


def get_config():
  c = default.get_config()
  c.dataset = "digits"
  c.model = "vit_moe"
  c.model_kwargs = {"patch_size": 2, "dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2, "dropout_rate": 0.0,
                    "num_experts": 4, "moe_layers": (1, 3), "moe_inference": "mean"}
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "cosine"
  c.transforms = ({"name": "ewa", "share_rate": 0.3, "warmup_fraction": 0.3},)
  c.batch_size = BATCH
  c.num_train_steps = NUM_STEPS
  c.log_every_steps = 100
  c.eval_every_steps = 500
  c.checkpoint_every_steps = NUM_STEPS
  return c


ARMS = [
    Arm("ViT", {"model_kwargs.moe_layers": (), "transforms": ()}),  # the same ViT with plain FFNs
    Arm("naive MoE", {"transforms": (), "model_kwargs.moe_inference": "partition"}),
    Arm("EWA", {}),
]


def get_claims():
  return [
      Claim(
          name="ewa_vit_digits",
          paper=PAPER,
          statement=("Training some FFNs of a ViT as random-partition MoEs with Experts Weights Averaging after each "
                     "step, then averaging the experts back into FFNs, improves the ViT at identical inference cost, "
                     "and improves on a naive MoE on small datasets."),
          setting=(f"digits (1,437 train / 360 test, 8x8), ViT 2x2 patches, width 64, depth 4, 4 heads, MLP ratio 2, "
                   f"Adam 1e-3 (cosine), batch {BATCH}, {NUM_STEPS} steps; MoE FFNs with 4 experts in blocks 1 and 3; "
                   f"EWA share rate rising linearly to 0.3 over the first 30% of steps (the rule with beta / (N - 1) "
                   f"over the other experts, from a public re-implementation: the paper's text was not readable "
                   f"here); EWA evaluated collapsed (mean experts), naive MoE evaluated with a fixed random "
                   f"partition as in training. Declared: EWA's test accuracy above the plain ViT's and above the "
                   f"naive MoE's."),
          get_config=get_config,
          arms=ARMS,
          metric="eval_accuracy",
          metric_name="test accuracy",
          expects=[Expect("greater", "EWA", "ViT"), Expect("greater", "EWA", "naive MoE")],
      ),
  ]
