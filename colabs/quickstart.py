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
# # jaxdyn quickstart
#
# Train the default experiment (a small 1-D CNN on MNIST-1D, generated offline) with the jaxdyn
# harness, then plot its learning curves. Uses a GPU or TPU when the runtime has one; on CPU it runs
# the small settings.

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

from configs import default
from experiments.metrics_io import read_metrics
from experiments.train import train_and_evaluate

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
config = default.get_config()
if SMALL:
  config.num_train_steps = 100
  config.eval_every_steps = 50
workdir = tempfile.mkdtemp(prefix="jaxdyn_quickstart_")
results = train_and_evaluate(config, workdir)

# %%
rows = read_metrics(workdir)
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
train = [r for r in rows if "train_loss" in r]
evals = [r for r in rows if "eval_loss" in r]
a.plot([r["step"] for r in train], [r["train_loss"] for r in train], label="train")
a.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval")
a.set(xlabel="step", ylabel="loss"); a.legend()
b.plot([r["step"] for r in evals], [r["eval_accuracy"] for r in evals], "o-")
b.set(xlabel="step", ylabel="eval accuracy")
plt.show()
print(f"eval accuracy {results['eval_accuracy']:.3f} after {results['steps']} steps")
