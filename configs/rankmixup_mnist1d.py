"""RankMixup on MNIST-1D with an MLP: calibration of CE, label smoothing, focal, mixup, MRL, M-NDCG.

    python -m experiments.main --config=configs/rankmixup_mnist1d.py --workdir=runs/rankmixup_mndcg
    python -m experiments.main --config=configs/rankmixup_mnist1d.py --workdir=runs/rankmixup_mrl \\
        --config.objective_kwargs.method=mrl
    make repro CLAIM=rankmixup_lower_ece
    make repro CLAIM=rankmixup_same_accuracy

Why an MLP: on MNIST-1D the harness's 1-D CNN generalises well and is already calibrated under
plain CE (ECE about 1% on seed 0 after 1,500-3,000 steps), which leaves nothing for a calibration
method to fix. The MLP (256-256) fits its 4,000 training signals exactly within about 20 epochs
while its test accuracy stays near 66-68%, so CE becomes overconfident (ECE about 18% on seed 0):
the regime RankMixup targets (the paper's ResNet-50 also fits CIFAR's training set). Adam 3e-3 with
cosine decay (the harness's default optimizer), batch 128, 1,500 steps (48 epochs). No data
augmentation.

Hyperparameters are the paper's CIFAR ones, fixed before any run: RankMixup alpha = 0.1, mixup
Beta(2, 2), MRL margin 2.0 with M = 1, M-NDCG with M = 3; the mixup baseline uses the same Beta(2, 2)
so that it differs from RankMixup only in its loss; label smoothing 0.1; focal gamma 3. Temperature
scaling is cross-fitted on the eval split (the harness has no validation split; see the
`calibration` callback).

Noh et al., "RankMixup: Ranking-Based Mixup Training for Network Calibration", ICCV 2023,
https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.
"""

from configs import default
from experiments.claims import Arm, Claim, Expect

STEPS_PER_EPOCH = 4000 / 128  # 31.25: the harness streams batches across epoch boundaries
EPOCHS = 48
NUM_STEPS = 1500  # 48 epochs
MIXUP_ALPHA = 2.0  # Beta(a, a) of RankMixup on CIFAR, also used by the mixup baseline here


def get_config():
  c = default.get_config()
  c.dataset = "mnist1d"
  c.model = "mlp"
  c.model_kwargs = {"hidden": (256, 256), "dropout_rate": 0.0}
  c.objective = "rankmixup"
  c.objective_kwargs = {"method": "mndcg", "alpha": 0.1, "mixup_alpha": MIXUP_ALPHA, "num_mixes": 3,
                        "margin": 2.0, "official_compat": False}
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.schedule = "cosine"
  c.num_train_steps = NUM_STEPS
  c.log_every_steps = 50
  c.eval_every_steps = 250
  c.checkpoint_every_steps = NUM_STEPS
  c.callbacks = ({"name": "calibration", "num_bins": 15},)
  return c


ARMS = [
    Arm("CE", {"objective": "ce", "objective_kwargs": {"label_smoothing": 0.0}}),
    Arm("LS-0.1", {"objective": "label_smoothing", "objective_kwargs": {"smoothing": 0.1}}),
    Arm("focal-3", {"objective": "focal", "objective_kwargs": {"gamma": 3.0}}),
    Arm("mixup", {"objective": "mixup", "objective_kwargs": {"mixup_alpha": MIXUP_ALPHA}}),
    Arm("RankMixup-MRL", {"objective_kwargs": {
        "method": "mrl", "alpha": 0.1, "mixup_alpha": MIXUP_ALPHA, "num_mixes": 1, "margin": 2.0,
        "official_compat": False}}),
    Arm("RankMixup-MNDCG", {"objective_kwargs": {
        "method": "mndcg", "alpha": 0.1, "mixup_alpha": MIXUP_ALPHA, "num_mixes": 3, "margin": 2.0,
        "official_compat": False}}),
]
RANKMIXUP = ("RankMixup-MRL", "RankMixup-MNDCG")
PAPER = ("Noh et al., RankMixup: Ranking-Based Mixup Training for Network Calibration, ICCV 2023, "
         "https://arxiv.org/abs/2308.11990 (code https://github.com/cvlab-yonsei/RankMixup)")
SETTING = (f"MNIST-1D (4,000 train / 1,000 test), MLP 256-256, Adam 3e-3 cosine, batch 128, "
           f"{NUM_STEPS} steps ({EPOCHS} epochs), no augmentation. RankMixup alpha 0.1, "
           f"Beta({MIXUP_ALPHA:g}, {MIXUP_ALPHA:g}) mixing, MRL margin 2 (M = 1, paper's masked mean), "
           f"M-NDCG M = 3; mixup baseline with the same Beta; label smoothing 0.1; focal gamma 3. "
           f"Metrics on the test split, 15 bins; ECE after temperature scaling cross-fitted on two "
           f"halves of the test split. Both RankMixup arms are tested (declared before any run).")
REPORT = {
    "AECE": "final_adaptive_ece",
    "class-wise ECE": "final_classwise_ece",
    "NLL": "final_nll",
    "accuracy": "final_accuracy",
    "ECE after TS": "final_ece_ts",
}


def get_claims():
  return [
      Claim(
          name="rankmixup_lower_ece",
          paper=PAPER,
          statement="RankMixup (MRL and M-NDCG) gives a lower expected calibration error than "
          "cross-entropy and than plain mixup, at similar accuracy.",
          setting=SETTING,
          get_config=get_config,
          arms=ARMS,
          metric="final_ece",
          metric_name="ECE (15 bins)",
          expects=[Expect("less", rm, base) for rm in RANKMIXUP for base in ("CE", "mixup")],
          report=REPORT,
      ),
      Claim(
          name="rankmixup_same_accuracy",
          paper=PAPER,
          statement="RankMixup keeps the accuracy of cross-entropy training (within 1 point).",
          setting=SETTING + " Same runs as rankmixup_lower_ece, for the CE and RankMixup arms.",
          get_config=get_config,
          arms=[a for a in ARMS if a.label in ("CE", *RANKMIXUP)],
          metric="eval_accuracy",
          metric_name="test accuracy",
          expects=[Expect("within", rm, "CE", margin=0.01) for rm in RANKMIXUP],
          report={"ECE": "final_ece"},
      ),
  ]
