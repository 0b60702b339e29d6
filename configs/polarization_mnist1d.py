"""A consensus sub-network in one training pass: polarization regularization on MNIST-1D (Zhi et al., 2023).

    python -m experiments.main --config=configs/polarization_mnist1d.py --workdir=runs/polarization
    make repro CLAIM=polarization_half_channels

The reference 1-D CNN (channels 32, 64) gets a binary gate on every output channel of its conv blocks
(`jaxdyn.sparsity.GatedCNN`, straight-through gates from a small module on each block's pooled
input). One training pass of the default recipe (3,000 Adam steps) minimises CE + the polarization
regularizer, which drives the gate probabilities to 0/1, to agreement across samples and half the
channels of each block off; at the end the channels whose gate is on for most of 512 training signals
are kept and the rest physically removed (`extract_subnetwork`), giving a plain CNN of half the
channels and about a quarter of the convolution FLOPs. Compared with the dense CNN trained the same
way, and with the dense CNN pruned to the same channels by filter L1 norm and fine-tuned for 300
steps (`magnitude_prune_eval`).
"""

from configs import default
from experiments.claims import Arm, Claim, Expect

TARGET_SPARSITY = 0.5


def get_config():
  c = default.get_config()
  c.model = "gated_cnn"
  c.model_kwargs = {"channels": (32, 64), "hidden": 128, "dropout_rate": 0.0, "gate_hidden": 16}
  c.objective = "polarization"
  c.objective_kwargs = {"target_sparsity": TARGET_SPARSITY, "weight": 1.0}
  c.callbacks = ({"name": "subnetwork_eval", "calibration_size": 512},)
  return c


def _accuracy(results) -> float:
  """The arm's test accuracy: the extracted sub-network, the fine-tuned pruned CNN, or the dense CNN."""
  for key in ("final_subnet_accuracy", "final_finetuned_accuracy"):
    if key in results:
      return results[key]
  return results["eval_accuracy"]


def get_claim():
  dense = {"model": "cnn", "model_kwargs": {"channels": (32, 64), "hidden": 128, "dropout_rate": 0.0},
           "objective": "ce", "objective_kwargs": {"label_smoothing": 0.0}}
  return Claim(
      name="polarization_half_channels",
      paper=("Zhi et al., Learning a Consensus Sub-Network with Polarization Regularization and One Pass Training, "
             "2023, https://arxiv.org/abs/2302.10798"),
      statement=("Pruning and training in one pass removes 50% of the connections with less than 1% accuracy drop "
                 "(CIFAR), and loses less accuracy than other pruning methods at equal computational cost."),
      setting=("MNIST-1D, the reference 1-D CNN (32, 64 channels), 3,000 Adam steps; half of each conv block's "
               "channels removed (polarization: gates trained in the same pass; baseline: filter-L1 channel "
               "pruning of the trained dense CNN, fine-tuned 300 steps); test accuracy, mean of 3 seeds."),
      get_config=get_config,
      arms=[Arm("dense", {**dense, "callbacks": ()}),
            Arm("polarization", {}),
            Arm("magnitude+finetune", {**dense, "callbacks": ({"name": "magnitude_prune_eval", "keep_fraction": 0.5,
                                                              "finetune_steps": 300},)})],
      metric=_accuracy,
      metric_name="test accuracy",
      expects=[Expect("at_least", "polarization", "dense", margin=0.01),
               Expect("greater", "polarization", "magnitude+finetune")],
      report={"channels kept": lambda r: r.get("final_channel_fraction", 1.0),
              "FLOPs kept": lambda r: r.get("final_flop_fraction", 1.0)},
  )
