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
# # Sparse subspace variational inference (SSVI, Li et al., ICML 2024)
#
# A mean-field Gaussian posterior N(mu, sigma^2) per weight, but only a sparse set of weights is ever
# active: mu and rho are exactly 0 elsewhere. Every dT steps the `ssvi` Optax transform removes the
# active weights with the lowest signal-to-noise ratio of |theta| and adds as many inactive ones by
# the magnitude of the dense gradient. Here: accuracy and NLL against density on MNIST-1D with the
# `configs/ssvi_mnist1d.py` experiment (one seed; `make repro` runs three).
# Paper: https://arxiv.org/abs/2402.11025, code: https://github.com/ljb121002/SSVI.

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

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from configs import ssvi_mnist1d
from experiments.train import train_and_evaluate
from jaxdyn.bayes import drop_and_grow, removal_score, rho_from_std

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
EPOCHS = 2 if SMALL else ssvi_mnist1d.EPOCHS
UPDATE_EVERY = 20 if SMALL else ssvi_mnist1d.UPDATE_EVERY
DENSITIES = (1.0, 0.1) if SMALL else (1.0, *ssvi_mnist1d.DENSITIES)

# %% [markdown]
# ## The removal score
# For theta ~ N(mu, sigma^2), SNR(|theta|) = E|theta| / sd|theta| depends on a = |mu| / sigma only and
# grows with it (about 1.32 at a = 0, then towards a): it ranks weights as |mu| / sigma does, but
# unlike |mu| it keeps a small mean that is certain and drops a large one that is not.

# %%
a = np.linspace(0, 5, 101)
plt.figure(figsize=(4, 3))
plt.plot(a, removal_score(a, np.ones_like(a)), label="SNR(|theta|)")
plt.plot(a, a, "--", label="|mu| / sigma")
plt.xlabel("|mu| / sigma"); plt.legend(); plt.tight_layout(); plt.show()

# One removal/addition on a toy layer of 6 weights, 4 active, half of them moved.
mu = jnp.array([0.5, 0.01, -0.3, 0.02, 0.0, 0.0])
rho = jnp.where(jnp.arange(6) < 4, rho_from_std(jnp.array([0.1, 0.1, 0.1, 0.001, 1.0, 1.0])), 0.0)
grad = jnp.array([9.0, -0.2, 5.0, 0.1, -1.0, 0.3])
mask, new_mu, new_rho = drop_and_grow(mu, rho, grad, rho != 0, 0.5)
print("mask", np.asarray(mask), "\nmu  ", np.asarray(new_mu), "\nrho ", np.asarray(new_rho).round(2))

# %% [markdown]
# ## Training: dense VI against SSVI at several densities

# %%
results = {}
for d in DENSITIES:
  config = ssvi_mnist1d.get_config()
  steps = ssvi_mnist1d.STEPS_PER_EPOCH * EPOCHS
  config.num_train_steps = steps
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = steps
  config.progress_every_seconds = 60.0
  config.model_kwargs.density = d
  transform = ssvi_mnist1d.ssvi_transform()  # the harness passes total_steps = num_train_steps
  transform["update_every"] = UPDATE_EVERY
  config.transforms = () if d == 1.0 else (transform,)
  results[d] = train_and_evaluate(config, tempfile.mkdtemp(prefix=f"ssvi_d{d:g}_"))

# %%
ds = list(results)
fig, (ax_acc, ax_nll) = plt.subplots(1, 2, figsize=(11, 4))
ax_acc.plot(ds, [results[d]["final_mean_accuracy"] for d in ds], "o-", label="mean weights")
ax_acc.plot(ds, [results[d]["final_mc_accuracy"] for d in ds], "s--", label="MC predictive (16 samples)")
ax_nll.plot(ds, [results[d]["final_mean_nll"] for d in ds], "o-", label="mean weights")
ax_nll.plot(ds, [results[d]["final_mc_nll"] for d in ds], "s--", label="MC predictive")
for ax, name in ((ax_acc, "test accuracy"), (ax_nll, "test NLL")):
  ax.set(xscale="log", xlabel="density (1 = dense VI)", ylabel=name)
  ax.legend()
fig.tight_layout()
plt.show()
for d in ds:
  r = results[d]
  print(f"density {d:<5g} accuracy {r['final_mean_accuracy']:.3f}  NLL {r['final_mc_nll']:.3f}  "
        f"ECE {r['final_mc_ece']:.3f}  training FLOPs / dense VI {r['final_flop_ratio']:.3f}")
