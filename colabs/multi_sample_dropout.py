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
# # Multi-sample dropout (Inoue 2019)
#
# One trunk pass, M dropout masks on its penultimate features, the shared head on each, and the mean
# of the M losses (not the loss of the mean logits). Here: single dropout (M = 1) against M = 2, 4, 8
# on MNIST-1D with the `configs/msd_mnist1d.py` experiment, then the loss and accuracy curves.

# %%
import os
import tempfile

import jax
import matplotlib.pyplot as plt

from configs import msd_mnist1d
from experiments.metrics_io import read_metrics
from experiments.train import train_and_evaluate

print("backend:", jax.default_backend())
SMALL = os.environ.get("JAXDYN_NOTEBOOK_SMALL") == "1"  # set by `make notebooks` and the tests
EPOCHS = 4 if SMALL else msd_mnist1d.EPOCHS
ARMS = (1, 8) if SMALL else (1, 2, 4, 8)

# %% [markdown]
# ## The loss itself
# The mean of per-sample losses is at least the loss of the averaged logits (cross-entropy is convex),
# so the two objectives differ:

# %%
import jax.numpy as jnp
from jaxdyn.regularization import multi_sample_dropout_logits, multi_sample_dropout_loss
import optax

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
