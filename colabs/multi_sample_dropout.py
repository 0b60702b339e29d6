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
# # Multi-sample dropout (Inoue 2019)
#
# One trunk pass, M dropout masks on its penultimate features, the shared head on each, and the mean
# of the M losses (not the loss of the mean logits). Here: single dropout (M = 1) against M = 2, 4, 8
# on MNIST-1D with the `configs/msd_mnist1d.py` experiment, then the loss and accuracy curves.

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
import optax

from configs import msd_mnist1d
from experiments.metrics_io import read_metrics
from experiments.train import train_and_evaluate
from jaxdyn.regularization import multi_sample_dropout_logits, multi_sample_dropout_loss

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
EPOCHS = 4 if SMALL else msd_mnist1d.EPOCHS
ARMS = (1, 8) if SMALL else (1, 2, 4, 8)

# %% [markdown]
# ## The loss itself
# The mean of per-sample losses is at least the loss of the averaged logits (cross-entropy is convex),
# so the two objectives differ:

# %%
head = lambda w, h: h @ w
w = jax.random.normal(jax.random.key(0), (16, 10))
h = jax.random.normal(jax.random.key(1), (32, 16))
y = jnp.arange(32) % 10
key = jax.random.key(2)
msd = multi_sample_dropout_loss(head, w, h, y, key=key, num_samples=8, rate=0.5)
mean_logits = multi_sample_dropout_logits(head, w, h, key=key, num_samples=8, rate=0.5).mean(0)
avg = optax.softmax_cross_entropy_with_integer_labels(mean_logits, y).mean()
print(f"mean of losses {msd:.4f}  vs  loss of mean logits {avg:.4f}")

# %% [markdown]
# ## Training: M = 1 against M > 1

# %%
runs = {}
for m in ARMS:
  config = msd_mnist1d.get_config()
  config.objective_kwargs.num_samples = m
  config.num_train_steps = msd_mnist1d.STEPS_PER_EPOCH * EPOCHS
  config.progress_every_seconds = 60.0
  workdir = tempfile.mkdtemp(prefix=f"msd_m{m}_")
  train_and_evaluate(config, workdir)
  runs[m] = read_metrics(workdir)

# %%
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
spe = msd_mnist1d.STEPS_PER_EPOCH
for m, rows in runs.items():
  tr = [r for r in rows if "train_loss" in r]
  ev = [r for r in rows if "eval_accuracy" in r]
  a.plot([r["step"] / spe for r in tr], [r["train_loss"] for r in tr], label=f"M = {m}")
  b.plot([r["step"] / spe for r in ev], [r["eval_accuracy"] for r in ev], label=f"M = {m}")
a.set(xlabel="epoch", ylabel="training loss (dropout on)", yscale="log")
b.set(xlabel="epoch", ylabel="test accuracy")
a.legend(); b.legend(); fig.tight_layout()
plt.show()
