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
# # Diffusion Spectral Entropy and Mutual Information (Liao, Liu et al. 2023)
#
# DSE(Z) is the entropy of the normalised eigenvalue spectrum of the diffusion operator built on the
# points Z (a Gaussian kernel with fixed bandwidth sigma); DSMI(Z; Y) compares DSE of random subsets
# with DSE within each class of Y. Paper: https://arxiv.org/abs/2312.04823; authors' code:
# https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
#
# Part 1: the synthetic manifolds of `configs/dse_synthetic.py` (DSE and binned Shannon entropy against
# intrinsic dimension and noise). Part 2: DSE / DSMI of an MLP's penultimate features during training on
# MNIST-1D with true and with random labels (`configs/dse_mnist1d.py`, the `dse` callback of
# `experiments/techniques/dynamics/__init__.py`).

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

import matplotlib.pyplot as plt
import ml_collections

from configs import dse_mnist1d, dse_synthetic
from experiments.metrics_io import read_metrics
from experiments.techniques.dynamics import KEYS
from experiments.techniques.dynamics.synthetic import synthetic_measurements
from experiments.train import train_and_evaluate

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %% [markdown]
# ## 1. Synthetic manifolds: DSE against intrinsic dimension and noise

# %%
s = ml_collections.ConfigDict(dse_synthetic.get_synthetic_config().synthetic.to_dict())
if SMALL:
  s.num_points, s.intrinsic_dims, s.noise_stds = 200, (1, 2, 4), (0.0, 0.1, 0.2)
vals = synthetic_measurements(0, s)
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
    config.callbacks = ({**config.callbacks[0], "every_steps": 30, "probe_size": 150, "num_repeats": 2},)
  workdir = tempfile.mkdtemp(prefix=f"dse_{dataset}_")
  train_and_evaluate(config, workdir)
  runs[dataset] = [r for r in read_metrics(workdir) if "dse" in r]

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for label, rows in runs.items():
  for ax, k in zip(axes, KEYS):
    ax.plot([r["step"] for r in rows], [r[k] for r in rows], marker=".", label=label)
for ax, name in zip(axes, ("DSE(Z)", "DSMI(Z; Y)", "DSMI(Z; X)")):
  ax.set(xlabel="step", ylabel="bits", title=name)
axes[0].legend(fontsize=8)
fig.suptitle("MLP on MNIST-1D: true vs random train labels (probe: eval data)")
fig.tight_layout()
plt.show()
