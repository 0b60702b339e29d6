"""Multi-sample dropout on MNIST-1D: single dropout (M = 1) against M = 2, 4, 8 (Inoue 2019).

    python -m experiments.main --config=configs/msd_mnist1d.py --workdir=runs/msd_m8
    python -m experiments.main --config=configs/msd_mnist1d.py --workdir=runs/msd_m1 \\
        --config.objective_kwargs.num_samples=1
    make repro CLAIM=msd_fewer_steps_to_target
    make repro CLAIM=msd_lower_train_loss

The 1-D CNN's penultimate features (128) go through dropout p = 0.5 and the linear head M times; the
trunk runs once. Adam at a constant 1e-3 so that speed of learning, not the schedule, decides; one epoch
is 31 steps of 128 examples, and the model is evaluated every epoch.
"""

from configs import default
from experiments.claims import Arm, Claim, Expect, at_step, steps_to

STEPS_PER_EPOCH = 31  # 4,000 training signals / batch 128
EPOCHS = 40
TARGET_ACCURACY = 0.85
LOSS_EPOCH = 10


def get_config():
  c = default.get_config()
  c.model = "cnn"
  c.model_kwargs = {"channels": (32, 64), "hidden": 128, "dropout_rate": 0.0}
  c.objective = "msd"
  c.objective_kwargs = {"num_samples": 8, "rate": 0.5}
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "constant"
  c.num_train_steps = STEPS_PER_EPOCH * EPOCHS
  c.log_every_steps = STEPS_PER_EPOCH
  c.eval_every_steps = STEPS_PER_EPOCH
  c.checkpoint_every_steps = STEPS_PER_EPOCH * 10
  return c


ARMS = [Arm(f"M={m}", {"objective_kwargs.num_samples": m}) for m in (1, 2, 4, 8)]
PAPER = ("Inoue, Multi-Sample Dropout for Accelerated Training and Better Generalization, 2019, "
         "https://arxiv.org/abs/1905.09788")
SETTING = (f"MNIST-1D, 1-D CNN (conv 32-64, dense 128), dropout p = 0.5 before the linear head, "
           f"Adam 1e-3 constant, batch 128, {EPOCHS} epochs of {STEPS_PER_EPOCH} steps; M = 1 is "
           f"ordinary dropout.")


def _claim(name: str, statement: str, metric_text: str, metric, metric_name: str, report) -> Claim:
  """Both claims compare the same arms in the same direction (M = 8 and M = 4 below M = 1)."""
  return Claim(name=name, paper=PAPER, statement=statement, setting=f"{SETTING} Metric: {metric_text}.",
               get_config=get_config, arms=ARMS, metric=metric, metric_name=metric_name,
               expects=[Expect("less", "M=8", "M=1"), Expect("less", "M=4", "M=1")], report=report)


def get_claims():
  return [
      _claim("msd_fewer_steps_to_target",
             "Multi-sample dropout reaches a given accuracy in fewer epochs than single-sample dropout.",
             f"first evaluated step with test accuracy >= {TARGET_ACCURACY}",
             steps_to("eval_accuracy", TARGET_ACCURACY), f"steps to {TARGET_ACCURACY:.0%} test accuracy",
             {"final test accuracy": "eval_accuracy"}),
      _claim("msd_lower_train_loss",
             "Multi-sample dropout has a lower training loss than single-sample dropout at equal epochs.",
             f"mean training loss (dropout on) over epoch {LOSS_EPOCH}",
             at_step("train_loss", STEPS_PER_EPOCH * LOSS_EPOCH), f"train loss, epoch {LOSS_EPOCH}",
             {"final train loss": "train_loss"}),
  ]
