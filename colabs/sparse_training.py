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
# # Sparse training: GraNet against GMP, RigL, SET and static ERK masks
#
# jaxdyn's sparse-training wrappers keep a boolean mask per kernel next to any Optax optimizer.
# GraNet (Liu et al., NeurIPS 2021) prunes globally by magnitude on the cubic schedule and, at each
# pruning step, drops the smallest survivors of each layer and regrows as many where the gradient is
# largest. Here: the layer-wise ERK densities of the MNIST-1D CNN, then density and accuracy of the
# five methods side by side (one seed; `make repro CLAIM=granet_vs_gmp_s90` runs three).
# Paper: https://arxiv.org/abs/2106.10404, code: https://github.com/VITA-Group/GraNet.

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
import json
import os
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from configs import granet_mnist1d
from experiments.train import train_and_evaluate
from jaxdyn import models
from jaxdyn.sparsity import layer_counts, prunable

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
STEPS = 60 if SMALL else granet_mnist1d.STEPS
DENSITY = 0.1
METHODS = ("granet", "gmp") if SMALL else granet_mnist1d.METHODS

# %% [markdown]
# ## Layer-wise densities at 10%
# ERK gives each kernel a density proportional to (sum of its dims) / (its size): the small first
# convolution stays nearly dense, the large dense layer gets the fewest weights. Uniform gives every
# layer the same density; both sum to exactly 10% of the kernel entries.

# %%
kw = granet_mnist1d.get_config().model_kwargs
_, params = nnx.split(models.CNN(1, 10, spatial_dims=1, rngs=nnx.Rngs(0), **kw), nnx.Param)
flags = jax.tree.leaves(prunable(params))
paths = jax.tree_util.tree_flatten_with_path(params)[0]
names = ["/".join(str(getattr(k, "key", k)) for k in path[:-1]) for (path, _), f in zip(paths, flags) if f]
sizes = [int(np.prod(leaf.shape)) for (_, leaf), f in zip(paths, flags) if f]
fig, ax = plt.subplots(figsize=(7, 3))
for shift, dist in ((-0.2, "erk"), (0.2, "uniform")):
  counts = [c for c, f in zip(jax.tree.leaves(layer_counts(params, DENSITY, distribution=dist)), flags) if f]
  ax.bar(np.arange(len(names)) + shift, [c / n for c, n in zip(counts, sizes)], width=0.4, label=dist)
ax.set_xticks(range(len(names)), names, rotation=20)
ax.set_ylabel("density"); ax.legend(); fig.tight_layout(); plt.show()

# %% [markdown]
# ## Training the five methods to 90% sparsity

# %%
results, curves = {}, {}
for method in METHODS:
  config = granet_mnist1d.get_config()
  config.num_train_steps = STEPS
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = max(STEPS // 10, 1)
  config.progress_every_seconds = 60.0
  t = granet_mnist1d.transform(method, DENSITY)
  if "update_every" in t:
    t["update_every"] = max(STEPS // 30, 1)
  config.transforms = (t,)
  config.callbacks = ({"name": "sparsity_eval", "every_steps": max(STEPS // 30, 1)},)
  workdir = tempfile.mkdtemp(prefix=f"sparse_{method}_")
  results[method] = train_and_evaluate(config, workdir)
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  curves[method] = [(r["step"], r["density"]) for r in rows if "density" in r]

# %%
fig, (ax_d, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
for method, pts in curves.items():
  ax_d.plot(*zip(*pts), label=method)
ax_d.set(xlabel="step", ylabel="density of the kernels"); ax_d.legend()
ax_a.bar(list(results), [results[m]["eval_accuracy"] for m in results])
ax_a.set(ylabel="test accuracy", ylim=(0, 1))
fig.tight_layout(); plt.show()
for m, r in results.items():
  print(f"{m:14s} accuracy {r['eval_accuracy']:.3f}  active params {r['final_active_params']:.0f}  "
        f"training FLOPs / dense {r['final_train_flop_ratio']:.3f}")
