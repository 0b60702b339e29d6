"""SortedNet: a sorted ladder of 8 nested MLPs in one set of weights, on scikit-learn's 8x8 digits.

    python -m experiments.main --config=configs/sortednet_digits.py --workdir=runs/sortednet_digits
    make repro CLAIM=sortednet_ladder_digits

`jaxdyn.schemes.SortedMLP` (2 hidden ReLU layers of 64 units) trains with Adam on the 1,437 training
digits with the ``sortednet`` objective: each step draws sub-models uniformly from the sorted ladder
of 8 widths (8, 16, ..., 64 leading hidden units of both layers; `jaxdyn.schemes.sorted_ladder`) and
accumulates their gradients (`jaxdyn.schemes.sortednet_loss`). At the end ``submodel_eval`` reports
the test accuracy (360 digits) of every sub-model from the one set of weights.

The claim's runner also trains, per seed, a separate MLP of each ladder width with the same recipe
and plain cross-entropy (shared by both arms, cached under the runs folder), and divides each
sub-model's accuracy by its separately trained counterpart's. The transformer (`SortedViT`) is in the
library and its tests; the claim uses the MLP because 8 separately trained baselines x 3 seeds must
fit in the claim's 10 minutes on 2 CPU cores.
"""

import hashlib
import json
import pathlib

from configs import default
from experiments.claims import Arm, Claim, Expect, apply_overrides

PAPER = ("Valipour, Rezagholizadeh, Rajabzadeh, Kavehzadeh, Tahaei, Chen, Ghodsi, SortedNet, a Place for Every "
         "Network and Every Network in its Place: Towards a Generalized Solution for Training Many-in-One Neural "
         "Networks, 2023, https://arxiv.org/abs/2309.00255")
HIDDEN, DEPTH, LADDER = 64, 2, 8
NUM_STEPS = 600
BATCH = 128
NUM_SAMPLES = 4
WIDTHS = tuple(-(-HIDDEN * k // LADDER) for k in range(1, LADDER + 1))  # sorted_ladder's widths


def get_config():
  c = default.get_config()
  c.dataset = "digits"
  c.model = "sorted_mlp"
  c.model_kwargs = {"hidden": HIDDEN, "depth": DEPTH, "dropout_rate": 0.0}
  c.objective = "sortednet"
  c.objective_kwargs = {"num_submodels": LADDER, "along": ("width",), "num_samples": NUM_SAMPLES,
                        "share_batch": True}
  c.callbacks = ({"name": "submodel_eval", "num_submodels": LADDER, "along": ("width",)},)
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.schedule = "cosine"
  c.batch_size = BATCH
  c.num_train_steps = NUM_STEPS
  c.log_every_steps = 100
  c.eval_every_steps = NUM_STEPS
  c.checkpoint_every_steps = NUM_STEPS
  return c


def _separate_config(config, width: int):
  """The same recipe for a plain MLP of ``width`` hidden units (cross-entropy, no sub-models)."""
  return apply_overrides(config, {"model_kwargs": {**dict(config.model_kwargs), "hidden": width}, "objective": "ce",
                                  "objective_kwargs": {}, "callbacks": ()})


def _hash(config) -> str:
  d = config.to_dict()
  d.pop("seed")
  return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]


def runner(config, workdir: str):
  """Trains the arm, then (once per seed, shared) one separate MLP per ladder width; adds the ratios.

  Results gain ``separate_acc_sub<k>`` (the separately trained MLP of width k's test accuracy),
  ``ratio_sub<k>`` (``final_acc_sub<k>`` over it) and ``min_ratio`` (the smallest ratio).
  """
  from experiments.train import train_and_evaluate  # noqa: PLC0415  (a config module stays light to import)

  results = dict(train_and_evaluate(config, workdir))
  runs = pathlib.Path(workdir).parent.parent
  ratios = []
  for k, width in enumerate(WIDTHS, start=1):
    sep = _separate_config(config, width)
    r = train_and_evaluate(sep, str(runs / f"sortednet_separate_w{width}-{_hash(sep)}" / f"seed{config.seed}"))
    results[f"separate_acc_sub{k}"] = r["eval_accuracy"]
    ratios.append(results[f"final_acc_sub{k}"] / r["eval_accuracy"])
    results[f"ratio_sub{k}"] = ratios[-1]
  results["min_ratio"] = min(ratios)
  return results


def get_claims():
  return [
      Claim(
          name="sortednet_ladder_digits",
          paper=PAPER,
          statement=("Sorted training of nested sub-models with shared parameters (random sub-model sampling with "
                     "gradient accumulation) trains many sub-models at once, each keeping at least 96% of the "
                     "performance of a separately trained model; sub-models truncated from a normally trained "
                     "network collapse."),
          setting=(f"digits (1,437 train / 360 test, 8x8), SortedMLP with {DEPTH} hidden ReLU layers of {HIDDEN} "
                   f"units, sorted ladder of {LADDER} widths {WIDTHS} (leading units of both layers, the head's "
                   f"leading rows), Adam 3e-3 (cosine), batch {BATCH}, {NUM_STEPS} steps; SortedNet draws "
                   f"{NUM_SAMPLES} sub-models uniformly per step, each on the whole batch, and averages their "
                   f"gradients into one update; 'truncated' is the same 64-unit MLP trained with plain "
                   f"cross-entropy, then cut to each width. Each sub-model's test accuracy is divided by that of a "
                   f"separate MLP of its width trained with the same recipe and cross-entropy (per seed). The MLP "
                   f"rather than the library's SortedViT, so that 8 separate baselines x 3 seeds fit the budget. "
                   f"Declared: the smallest ratio over the ladder above 0.96 for SortedNet and below 0.7 for the "
                   f"truncated network."),
          get_config=get_config,
          arms=[Arm("SortedNet", {}),
                Arm("truncated", {"objective": "ce", "objective_kwargs": {}})],
          metric="min_ratio",
          metric_name="min over the ladder of acc(sub-model) / acc(separately trained)",
          expects=[Expect("above", "SortedNet", value=0.96), Expect("below", "truncated", value=0.7),
                   Expect("greater", "SortedNet", "truncated")],
          report={f"w={w}": (lambda r, k=k: r[f"ratio_sub{k}"]) for k, w in enumerate(WIDTHS, start=1)},
          runner=runner,
      ),
  ]
