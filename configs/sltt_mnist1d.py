"""SLTT against BPTT on MNIST-1D: a spiking MLP, T = 6, trained with bptt, sltt and sltt_k (K = 2).

    python -m experiments.main --config=configs/sltt_mnist1d.py --workdir=runs/sltt_mnist1d
    python -m experiments.main --config=configs/sltt_mnist1d.py --workdir=runs/bptt_mnist1d \\
        --config.objective_kwargs.mode=bptt
    make repro CLAIM=sltt_accuracy_close_to_bptt
    make repro CLAIM=sltt_less_memory_than_bptt

Spiking MLP 40 -> 256 -> 256 -> 10 (Linear, per-step BatchNorm, LIF with tau = 1.1, V_th = 1, soft
reset, triangle surrogate), direct encoding (the 40 analog inputs at every step), T = 6, the authors'
loss (lam_L = 0.05). Adam 1e-3 with cosine decay, batch 128, 40 epochs of 31 steps. The
``train_step_memory`` callback puts XLA's temp bytes of the compiled train step into results.json
(``final_temp_bytes``).
"""

from ml_collections import config_dict

from configs import default
from experiments.claims import Arm, Claim, Expect

STEPS_PER_EPOCH = 31  # 4,000 training signals / batch 128
EPOCHS = 40
NUM_STEPS = 6  # T


def get_config():
  c = default.get_config()
  c.dataset = "mnist1d"
  c.model = "spiking_mlp"
  c.model_kwargs = {"hidden": (256, 256), "num_steps": NUM_STEPS, "dropout_rate": 0.0}
  c.objective = "sltt"
  # k: SLTT-K's K (an int with mode="sltt_k", else None); a typed placeholder so the flag can set it.
  c.objective_kwargs = {"mode": "sltt", "k": config_dict.placeholder(int), "lam_l": 0.05}
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "cosine"
  c.batch_size = 128
  c.num_train_steps = STEPS_PER_EPOCH * EPOCHS
  c.log_every_steps = STEPS_PER_EPOCH
  c.eval_every_steps = STEPS_PER_EPOCH * 2
  c.checkpoint_every_steps = STEPS_PER_EPOCH * 20
  c.callbacks = ("train_step_memory",)
  return c


def get_memory_config():
  """The same step for one epoch: only the compiled train step's memory is read from this run."""
  c = get_config()
  c.num_train_steps = c.eval_every_steps = c.log_every_steps = c.checkpoint_every_steps = STEPS_PER_EPOCH
  return c


ARMS = [
    Arm("bptt", {"objective_kwargs.mode": "bptt"}),
    Arm("sltt", {"objective_kwargs.mode": "sltt"}),
    Arm("sltt_k2", {"objective_kwargs.mode": "sltt_k", "objective_kwargs.k": 2}),
]
PAPER = ("Meng et al., Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural "
         "Networks, ICCV 2023, https://arxiv.org/abs/2302.14311 (code: https://github.com/qymeng94/SLTT)")
SETTING = (f"MNIST-1D (4,000 train / 1,000 test), spiking MLP 40-256-256-10 with per-step BatchNorm, "
           f"LIF tau 1.1, T = {NUM_STEPS}, direct encoding, loss (1/T) sum_t [0.95 CE + 0.05 MSE(o_t, 1)], "
           f"Adam 1e-3 cosine, batch 128, {EPOCHS} epochs; arms differ only in how the gradient is "
           f"computed (same seed = same init and batches).")


def get_claims():
  return [
      Claim(
          name="sltt_accuracy_close_to_bptt",
          paper=PAPER,
          statement="SLTT (and SLTT-K) train spiking networks to accuracy comparable to BPTT.",
          setting=SETTING + " Metric: final test accuracy.",
          get_config=get_config,
          arms=ARMS,
          metric="eval_accuracy",
          metric_name="test accuracy",
          expects=[Expect("within", "sltt", "bptt", 0.01)],
          report={"train-step temp MiB": lambda r: r["final_temp_bytes"] / 2**20,
                  "wall s": "wall_time_s"},
      ),
      Claim(
          name="sltt_less_memory_than_bptt",
          paper=PAPER,
          statement="SLTT needs much less training memory than BPTT (more than 70% less on ImageNet).",
          setting=SETTING.replace(f"{EPOCHS} epochs", "1 epoch") + " Metric: XLA temp bytes of the "
          "compiled train step (memory_analysis), a deterministic function of the config, so one seed "
          "and one epoch suffice.",
          get_config=get_memory_config,
          arms=ARMS,
          metric=lambda r: r["final_temp_bytes"] / 2**20,
          metric_name="train-step temp MiB",
          expects=[Expect("less", "sltt", "bptt"), Expect("less", "sltt_k2", "bptt")],
          seeds=(0,),
      ),
  ]
