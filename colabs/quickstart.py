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
# # jaxdyn quickstart
#
# Train the default experiment (a small 1-D CNN on MNIST-1D, generated offline) with the jaxdyn
# harness, then plot its learning curves. Runs on CPU; uses a GPU or TPU when the runtime has one.

# %%
# On Colab: set JAXDYN_SOURCE to your jaxdyn checkout (a git URL or a path) and this cell installs it
# and moves into it, so that `configs/` and `experiments/` import. Elsewhere `make run` has done it.
import os
import subprocess
import sys

if "google.colab" in sys.modules:
  source = os.environ.get("JAXDYN_SOURCE", "")
  if not source:
    raise RuntimeError("Set JAXDYN_SOURCE to the jaxdyn repository (git URL or path) first.")
  if not os.path.isdir(source):
    subprocess.run(["git", "clone", "-q", source, "/content/jaxdyn"], check=True)
    source = "/content/jaxdyn"
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", source], check=True)
  os.chdir(source)
  sys.path.insert(0, source)

# %%
import os
import tempfile

import jax

print("backend:", jax.default_backend(), "| devices:", jax.devices())
# Small settings when run by `make notebooks` or the tests (JAXDYN_NOTEBOOK_SMALL=1).
SMALL = os.environ.get("JAXDYN_NOTEBOOK_SMALL") == "1"

# %%
from configs import default
from experiments.train import train_and_evaluate

config = default.get_config()
if SMALL:
  config.num_train_steps = 200
  config.eval_every_steps = 100
workdir = tempfile.mkdtemp(prefix="jaxdyn_quickstart_")
results = train_and_evaluate(config, workdir)

# %%
import matplotlib.pyplot as plt

from experiments.metrics_io import read_metrics

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
