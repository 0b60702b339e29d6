# ---
# jupyter:
#   accelerator: GPU
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
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
# Setup. In a jaxdyn checkout (`make notebooks`, the tests) this cell does nothing. Elsewhere (Colab) it
# clones jaxdyn, pip-installs it with the runtime's jax, jaxlib and jax plugins pinned to their
# installed versions (so its GPU/TPU build is never replaced) and moves into the checkout, so that
# `configs/` and `experiments/` import.
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

JAXDYN_REPO = "https://github.com/jaxdyn/jaxdyn"  # pyproject.toml: [project.urls] Repository
ACCELERATOR_PACKAGES = r"jax|jaxlib|jax[-_](cuda|rocm)\d*[-_](plugin|pjrt)|libtpu.*"

if not (importlib.util.find_spec("configs") and importlib.util.find_spec("experiments")):
  in_colab = "google.colab" in sys.modules
  checkout = "/content/jaxdyn" if in_colab else os.path.join(tempfile.gettempdir(), "jaxdyn")
  if not os.path.isdir(checkout):
    subprocess.run(["git", "clone", "--quiet", "--depth=1", JAXDYN_REPO, checkout], check=True)
  pins = sorted({f"{d.name}=={d.version}" for d in importlib.metadata.distributions()
                 if re.fullmatch(ACCELERATOR_PACKAGES, (d.name or "").lower())})
  constraints = os.path.join(tempfile.gettempdir(), "jaxdyn-constraints.txt")
  with open(constraints, "w") as f:
    f.write("".join(p + "\n" for p in pins))
  print(f"Installing jaxdyn from {checkout}, keeping {', '.join(pins)} ...", flush=True)
  pip = subprocess.run([sys.executable, "-m", "pip", "install", "-c", constraints, checkout],
                       capture_output=True, text=True)
  if pip.returncode:
    log = "\n".join(l for l in (pip.stdout + pip.stderr).splitlines() if "already satisfied" not in l)
    raise RuntimeError(
        f"pip could not install jaxdyn with this runtime's {', '.join(pins)} kept as they are (so "
        "that its GPU/TPU build stays). If pip names a conflict on jax or jaxlib, this runtime's jax "
        "is older than jaxdyn needs (pyproject.toml): pick a newer Colab runtime version. pip said:\n"
        + log)
  importlib.invalidate_caches()
  sys.path.insert(0, checkout)
  os.chdir(checkout)

# %%
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

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
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
    """Keeps each run's final test logits and labels under its tag (the run's context comes in setup)."""

    outputs = {}

    def __init__(self, *, tag: str):
      super().__init__()
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
  config.callbacks = (*config.callbacks, {"name": KEEP, "tag": arm.label})
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
