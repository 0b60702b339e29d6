"""DSE / DSMI of penultimate features during training on MNIST-1D: true labels against random labels.

    python -m experiments.main --config=configs/dse_mnist1d.py --workdir=runs/dse_true
    python -m experiments.main --config=configs/dse_mnist1d.py --workdir=runs/dse_random \\
        --config.dataset=mnist1d_random_labels
    make repro CLAIM=dse_increases_during_training
    make repro CLAIM=dsmi_zy_true_vs_random_labels

An MLP (40 -> 256 -> 256 -> 10; the 256 penultimate features are Z), Adam 1e-3 constant, batch 128,
15 epochs of 31 steps. The ``dse`` callback (experiments/techniques/dynamics/__init__.py) measures DSE(Z), DSMI(Z; Y) and
DSMI(Z; X) on a fixed probe of 500 eval examples at step 0 and every 3 epochs, on RMS-normalised
features with one fixed sigma = 0.5 (chosen before any run; see experiments/techniques/dynamics/__init__.py for why Z is
normalised). The random-labels arm trains on ``mnist1d_random_labels`` (train labels permuted with a
fixed seed); its probe is the same eval data with true labels, so DSMI(Z; Y) asks whether the
representation of held-out inputs carries label information.

Liao, Liu et al., arXiv 2312.04823, https://arxiv.org/abs/2312.04823;
https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
"""

from configs import default
from experiments.claims import Arm, Claim, Expect

STEPS_PER_EPOCH = 31  # 4,000 training signals / batch 128
EPOCHS = 15
MEASURE_EVERY_EPOCHS = 3
PROBE_SIZE = 500
SIGMA = 0.5
# Declared before running: margins in bits.
DSE_MARGIN = 0.1  # final-minus-initial DSE must beat the one-step change by this much
DSMI_MARGIN = 0.2  # DSMI(Z;Y) change: true labels must beat random labels by this much
FLAT_MARGIN = 0.2  # random labels: DSMI(Z;Y) change within this of the one-step change ("flat")


def get_config():
  c = default.get_config()
  c.model = "mlp"
  c.model_kwargs = {"hidden": (256, 256), "dropout_rate": 0.0}
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "constant"
  c.num_train_steps = STEPS_PER_EPOCH * EPOCHS
  c.log_every_steps = STEPS_PER_EPOCH
  c.eval_every_steps = STEPS_PER_EPOCH * MEASURE_EVERY_EPOCHS
  c.checkpoint_every_steps = STEPS_PER_EPOCH * EPOCHS
  c.callbacks = ({"name": "dse", "every_steps": STEPS_PER_EPOCH * MEASURE_EVERY_EPOCHS,
                  "probe_size": PROBE_SIZE, "sigma": SIGMA, "t": 1, "normalize": "rms"},)
  return c


TRUE = Arm("true labels")
RANDOM = Arm("random labels", {"dataset": "mnist1d_random_labels"})
ONE_STEP = Arm("one step", {"num_train_steps": 1})
PAPER = ("Liao, Liu et al., Assessing Neural Network Representations During Training Using "
         "Noise-Resilient Diffusion Spectral Entropy, 2023, https://arxiv.org/abs/2312.04823")
SETTING = (f"MNIST-1D, MLP 256-256 (Z = the 256 penultimate features), Adam 1e-3 constant, batch 128, "
           f"{EPOCHS} epochs of {STEPS_PER_EPOCH} steps; DSE/DSMI on a fixed probe of {PROBE_SIZE} eval "
           f"examples, Z centred and divided by its RMS radius, sigma = {SIGMA}, t = 1, exact "
           f"eigendecomposition, measured at step 0 and every {MEASURE_EVERY_EPOCHS} epochs. 'one step' is "
           f"the same model trained for a single step: the change a measurement sees without training. "
           f"'random labels' trains on train labels permuted with a fixed seed (eval labels true).")


def get_claims():
  return [
      Claim(
          name="dse_increases_during_training",
          paper=PAPER,
          statement="DSE of the learned representation increases during training.",
          setting=SETTING + " Metric: DSE(Z) at the last step minus DSE(Z) at step 0.",
          get_config=get_config,
          arms=[TRUE, RANDOM, ONE_STEP],
          metric="final_dse_change",
          metric_name="DSE(Z) change [bits]",
          expects=[Expect("greater", "true labels", "one step", DSE_MARGIN)],
          report={"DSE(Z) at step 0": "final_dse_first", "DSE(Z) final": "final_dse",
                  "test accuracy": "eval_accuracy"},
      ),
      Claim(
          name="dsmi_zy_true_vs_random_labels",
          paper=PAPER,
          statement="DSMI(Z; Y) rises during training on true labels and stays flat when the network "
          "fits random labels.",
          setting=SETTING + " Metric: DSMI(Z; Y) (true eval labels) at the last step minus at step 0.",
          get_config=get_config,
          arms=[TRUE, RANDOM, ONE_STEP],
          metric="final_dsmi_zy_change",
          metric_name="DSMI(Z;Y) change [bits]",
          expects=[Expect("greater", "true labels", "random labels", DSMI_MARGIN),
                   Expect("within", "random labels", "one step", FLAT_MARGIN)],
          report={"DSMI(Z;Y) at step 0": "final_dsmi_zy_first", "DSMI(Z;Y) final": "final_dsmi_zy",
                  "DSMI(Z;X) change": "final_dsmi_zx_change", "train accuracy": "train_accuracy",
                  "test accuracy": "eval_accuracy"},
      ),
  ]
