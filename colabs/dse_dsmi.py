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
# # Diffusion Spectral Entropy and Mutual Information (Liao, Liu et al. 2023)
#
# DSE(Z) is the entropy of the normalised eigenvalue spectrum of the diffusion operator built on the
# points Z (a Gaussian kernel with fixed bandwidth sigma); DSMI(Z; Y) compares DSE of random subsets
# with DSE within each class of Y. Paper: https://arxiv.org/abs/2312.04823; authors' code:
# https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
#
# Part 1: the synthetic manifolds of `configs/dse_synthetic.py` (DSE and binned Shannon entropy against
# intrinsic dimension and noise). Part 2: DSE / DSMI of an MLP's penultimate features during training on
# MNIST-1D with true and with random labels (`configs/dse_mnist1d.py`, the `dse` callback).

# %%
import os
import tempfile

import jax
import matplotlib.pyplot as plt
import ml_collections

from configs import dse_mnist1d, dse_synthetic
from experiments import dynamics
from experiments.metrics_io import read_metrics
from experiments.train import train_and_evaluate

print("backend:", jax.default_backend())
SMALL = os.environ.get("JAXDYN_NOTEBOOK_SMALL") == "1"  # set by `make notebooks` and the tests

# %% [markdown]
# ## 1. Synthetic manifolds: DSE against intrinsic dimension and noise

# %%
s = ml_collections.ConfigDict(dse_synthetic.get_synthetic_config().synthetic.to_dict())
if SMALL:
  s.num_points, s.intrinsic_dims, s.noise_stds = 200, (1, 2, 4), (0.0, 0.1, 0.2)
vals = dynamics.synthetic_measurements(0, s)
print("d  " + "  ".join(f"DSE s={n:<4g} Shannon s={n:<4g}" for n in s.noise_stds))
for d in s.intrinsic_dims:
  print(f"{d:<2} " + "  ".join(f"{vals[f'dse_d{d}_noise{n:g}']:>9.3f} {vals[f'shannon_d{d}_noise{n:g}']:>13.3f}"
                             for n in s.noise_stds))

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, est in zip(axes, ("dse", "shannon")):
  for n in s.noise_stds:
    ax.plot(s.intrinsic_dims, [vals[f"{est}_d{d}_noise{n:g}"] for d in s.intrinsic_dims], marker="o",
            label=f"noise s = {n:g}")
  ax.set(xlabel="intrinsic dimension d", ylabel="bits", title={"dse": "DSE", "shannon": "binned Shannon"}[est],
         xscale="log", xticks=list(s.intrinsic_dims), xticklabels=[str(d) for d in s.intrinsic_dims])
axes[0].legend(fontsize=8); fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Training curves on MNIST-1D: true labels against random labels

# %%
runs = {}
for dataset in ("mnist1d", "mnist1d_random_labels"):
  config = dse_mnist1d.get_config()
  config.dataset = dataset
  config.progress_every_seconds = 60.0
  if SMALL:
    config.num_train_steps = 60
    config.eval_every_steps = config.log_every_steps = config.checkpoint_every_steps = 30
    config.callbacks = [{**config.callbacks[0], "every_steps": 30, "probe_size": 150, "num_repeats": 2}]
  workdir = tempfile.mkdtemp(prefix=f"dse_{dataset}_")
  train_and_evaluate(config, workdir)
  runs[dataset] = [r for r in read_metrics(workdir) if "dse" in r]

# %%
path = os.path.join(tempfile.mkdtemp(), "dynamics.png")
dynamics.plot_dynamics(runs, path, title="MLP on MNIST-1D: true vs random train labels (probe: eval data)")
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for label, rows in runs.items():
  for ax, k in zip(axes, dynamics.KEYS):
    ax.plot([r["step"] for r in rows], [r[k] for r in rows], marker=".", label=label)
for ax, name in zip(axes, ("DSE(Z)", "DSMI(Z; Y)", "DSMI(Z; X)")):
  ax.set(xlabel="step", ylabel="bits", title=name)
axes[0].legend(fontsize=8); fig.tight_layout()
plt.show()
