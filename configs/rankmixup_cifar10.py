"""RankMixup (M-NDCG) on CIFAR-10 with a CIFAR ResNet-50, the paper's recipe (needs TFDS cifar10).

    python -m experiments.main --config=configs/rankmixup_cifar10.py --workdir=runs/rankmixup_cifar10 \\
        --config.data_dir=$HOME/tensorflow_datasets
    # MRL instead of M-NDCG:
    ... --config.objective_kwargs.method=mrl --config.objective_kwargs.num_mixes=1
    # baselines: --config.objective=ce --config.objective_kwargs='{"label_smoothing": 0.0}', or
    # objective label_smoothing / focal / mixup with their own objective_kwargs.

Recipe (Noh et al., Sec. 5 and the authors' CIFAR script): ResNet-50 with the CIFAR stem (3x3, no
max-pool), SGD lr 0.1, momentum 0.9, weight decay 5e-4, lr x0.1 at epochs 80 and 120, 200 epochs (78,125
steps) at batch 128, gradient-norm clipping at 2; M-NDCG with M = 3 mixes from Beta(2, 2),
alpha = 0.1 (MRL: M = 1, margin 2). Calibration is scored on the test split by the `calibration`
callback (ECE, adaptive and class-wise ECE with 15 bins, NLL, Brier, accuracy, ECE after
temperature scaling cross-fitted on the test split) with a reliability diagram.

Training batches get the paper's random crop and horizontal flip (``augment="crop_flip"``).
Differences from the paper, stated plainly: it trains on all 50k training images and reports the
final model, whereas the paper holds out a 45k/5k train/validation split and reports the checkpoint
with the best validation accuracy (and fits temperature scaling on that validation set). Far too
slow for the 2-core CPU machines; meant for a GPU or TPU.

Noh et al., "RankMixup: Ranking-Based Mixup Training for Network Calibration", ICCV 2023,
https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.
"""

from configs import _cifar10

BATCH_SIZE = 128
EPOCHS = 200
STEPS_PER_EPOCH = _cifar10.TRAIN_SIZE / BATCH_SIZE  # the harness streams batches: 390.6 steps an epoch


def epochs_to_steps(epochs: int) -> int:
  return int(epochs * STEPS_PER_EPOCH)


def get_config():
  c = _cifar10.get_config(model="resnet50", steps_per_epoch=STEPS_PER_EPOCH, epochs=EPOCHS, learning_rate=0.1,
                          weight_decay=5e-4, schedule="piecewise", batch_size=BATCH_SIZE)
  c.model_kwargs = {"dropout_rate": 0.0}
  c.objective = "rankmixup"
  c.objective_kwargs = {"method": "mndcg", "alpha": 0.1, "mixup_alpha": 2.0, "num_mixes": 3,
                        "margin": 2.0, "official_compat": False}
  c.optimizer.boundaries = (epochs_to_steps(80), epochs_to_steps(120))  # 31,250 and 46,875
  c.optimizer.decay = 0.1
  c.transforms = ({"name": "clip_by_global_norm", "max_norm": 2.0},)
  c.callbacks = ({"name": "calibration", "num_bins": 15},)
  return c
