# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # RankMixup: calibration by ranking mixed samples below clean ones (Noh et al., ICCV 2023)
#
# [arXiv 2308.11990](https://arxiv.org/abs/2308.11990) ·
# [authors' code](https://github.com/cvlab-yonsei/RankMixup)
#
# A mixed sample `lam x_i + (1 - lam) x_j` carries less evidence than either clean sample, so a
# calibrated network should be less confident on it. RankMixup adds to the clean cross-entropy a
# ranking loss on M mixed copies of the batch (alpha = 0.1):
#
# * **MRL** (M = 1): hinge `relu(max z~ - max z + margin)`: the mixed top logit should trail the clean
#   one by a margin;
# * **M-NDCG** (M = 3): the clean confidence and the M mixed confidences, ordered by their mixing
#   coefficient, should have the discounted sum of the ideal gains `[1, max(lam, 1 - lam), ...]`.
#
# This notebook trains the experiment of `configs/rankmixup_mnist1d.py` (an MLP on MNIST-1D that
# overfits under plain cross-entropy) for each arm (CE, label smoothing, focal, mixup, RankMixup-MRL,
# RankMixup-M-NDCG), then shows the calibration metrics and the reliability diagrams side by side.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from configs import rankmixup_mnist1d
from experiments import callbacks, registry
from experiments.claims import apply_overrides
from experiments.train import train_and_evaluate
from jaxdyn.calibration import mndcg_loss, mrl_loss, reliability_bins, sample_mixup

print("backend:", jax.default_backend())
SMALL = os.environ.get("JAXDYN_NOTEBOOK_SMALL") == "1"  # set by `make notebooks` and the tests
STEPS = 60 if SMALL else rankmixup_mnist1d.NUM_STEPS

# %% [markdown]
# ## The ranking losses on a toy batch
# Two clean samples, predicted with confidence 0.99 (as after memorising the training set), and
# M = 3 mixes of them. If the network is as confident on the mixes as on the clean samples, both
# losses are large; if each mix's confidence equals the largest entry of its mixed label, they
# shrink. MRL works on logits (here log-probabilities) with margin 2, so its hinge stays positive
# until the mixed top logit trails the clean one by 2. M-NDCG compares discounted *sums* of
# confidences with those of the ideal gains [1, max-label of each mix], so it is zero exactly when
# the two sums agree.

# %%
def probs_with_top(top, cls):  # (..., 3) probabilities with `top` on class `cls`
  return jax.nn.one_hot(cls, 3) * (top - (1 - top) / 2)[..., None] + (1 - top)[..., None] / 2

clean = jnp.log(probs_with_top(jnp.array([0.99, 0.99]), jnp.array([0, 1])))
onehot = jax.nn.one_hot(jnp.array([0, 1]), 3)
mix = sample_mixup(jax.random.key(0), clean, onehot, num_mixes=3, alpha=2.0)
top_label = mix.labels.max(-1)  # (M, B): max(lam, 1 - lam), or 1 for a same-class pair
print("lam:", np.round(mix.lam, 3), " pairings:", mix.perms.tolist())
for name, top in [("as confident as clean", jnp.full((3, 2), 0.99)),
                  ("confidence = mixed label", top_label)]:
  z_mix = jnp.log(probs_with_top(top, mix.labels.argmax(-1)))
  mrl = mrl_loss(logits=clean, mixed_logits=z_mix[:1], mixed_labels=mix.labels[:1])
  ndcg = mndcg_loss(logits=clean, mixed_logits=z_mix, mixed_labels=mix.labels)
  print(f"{name:>26}:  MRL {float(mrl):.3f}   M-NDCG {float(ndcg):.4f}")

# %% [markdown]
# ## Training every arm
# The `calibration` callback scores the final model on the test split and saves a reliability
# diagram into each workdir; a small callback defined here also keeps the test logits, to draw the
# diagrams side by side below.

# %%
KEEP = "colab_keep_eval_outputs"
if KEEP not in registry.names("callback"):  # re-running the cell keeps the first registration

  @registry.register("callback", KEEP)
  class KeepEvalOutputs(callbacks.Callback):
    outputs = {}

    def __init__(self, ctx, *, tag: str):
      super().__init__(ctx)
      self.tag = tag

    def on_end(self):
      logits, _, labels = self.ctx.eval_outputs()
      type(self).outputs[self.tag] = (logits, labels)

keep = registry.get("callback", KEEP)

results = {}
for arm in rankmixup_mnist1d.ARMS:
  config = apply_overrides(rankmixup_mnist1d.get_config(), arm.overrides)
  config.num_train_steps = config.checkpoint_every_steps = STEPS
  config.eval_every_steps = min(config.eval_every_steps, STEPS)
  config.progress_every_seconds = 60.0
  config.callbacks = [*config.callbacks, {"name": KEEP, "tag": arm.label}]
  workdir = tempfile.mkdtemp(prefix=f"rankmixup_{arm.label}_")
  results[arm.label] = train_and_evaluate(config, workdir)

# %%
cols = [("accuracy", "acc"), ("ece", "ECE"), ("adaptive_ece", "AECE"), ("classwise_ece", "CW-ECE"),
        ("nll", "NLL"), ("brier", "Brier"), ("ece_ts", "ECE after TS"), ("temperature", "T")]
print(f"{'arm':<16}" + "".join(f"{h:>13}" for _, h in cols))
for label, r in results.items():
  print(f"{label:<16}" + "".join(f"{r['final_' + k]:>13.4f}" for k, _ in cols))

# %% [markdown]
# ## Reliability diagrams
# Bars: accuracy in each of 15 equal-width confidence bins; the hatched part is the gap to the bin's
# mean confidence. Bars below the diagonal mean overconfidence, above it underconfidence.

# %%
fig, axes = plt.subplots(2, 3, figsize=(13, 8.5), sharex=True, sharey=True)
for ax, (label, (logits, labels)) in zip(axes.ravel(), keep.outputs.items()):
  bins = jax.device_get(reliability_bins(logits, labels, num_bins=15))
  edges, counts = np.asarray(bins.edges), np.asarray(bins.counts)
  centers, width, full = edges[:-1] + 0.5 / 15, 1 / 15, counts > 0
  acc, conf = np.asarray(bins.accuracy)[full], np.asarray(bins.confidence)[full]
  ax.plot([0, 1], [0, 1], "k--", lw=1)
  ax.bar(centers[full], acc, width=width, edgecolor="k", color="tab:blue", label="accuracy")
  ax.bar(centers[full], np.abs(conf - acc), bottom=np.minimum(acc, conf), width=width,
         fill=False, hatch="//", edgecolor="tab:red", label="gap to mean confidence")
  ax.set_title(f"{label}: ECE {100 * results[label]['final_ece']:.1f}%, "
               f"acc {100 * results[label]['final_accuracy']:.1f}%")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
for ax in axes[-1]:
  ax.set_xlabel("confidence")
for ax in axes[:, 0]:
  ax.set_ylabel("accuracy")
axes[0, 0].legend(loc="upper left")
fig.suptitle(f"MNIST-1D test split, MLP 256-256, {STEPS} steps, seed 0")
fig.tight_layout()
plt.show()
