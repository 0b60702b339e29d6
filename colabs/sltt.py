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
# # SLTT: spatial learning through time (Meng et al., ICCV 2023)
#
# A spiking network runs T time steps; its LIF neurons carry a membrane potential from step to step.
# BPTT back-propagates through that carry and stores every step's activations, so memory grows with T.
# SLTT drops the temporal path (v[t-1] is a constant when computing u[t]) and so can differentiate each
# step's loss at that step, inside the forward pass, accumulating the parameter gradient: memory no
# longer depends on T. SLTT-K keeps only K random steps' gradients. Paper:
# https://arxiv.org/abs/2302.14311, code: https://github.com/qymeng94/SLTT.

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

from configs import sltt_mnist1d
from experiments.metrics_io import read_metrics
from experiments.train import train_and_evaluate
from jaxdyn.snn import lif_multistep, lif_step, through_time_loss

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
TS = (2, 4, 8, 16) if SMALL else (2, 4, 8, 16, 32, 64)
EPOCHS = 2 if SMALL else sltt_mnist1d.EPOCHS

# %% [markdown]
# ## The LIF neuron
# u[t] = lam v[t-1] + I[t] with lam = 1 - 1/tau (tau = 1.1 in the paper, so lam ~= 0.09), a spike when
# u >= 1, then a soft reset v = u - 1.

# %%
current = jnp.concatenate([jnp.full(10, 0.6), jnp.full(10, 1.3), jnp.zeros(5)])[:, None]
fig, axes = plt.subplots(1, 2, figsize=(11, 3))
for ax, tau in zip(axes, (1.1, 4.0)):
  spikes, _ = lif_multistep(current, tau=tau)
  v, us = None, []
  for i in current:
    _, v = lif_step(v, i, tau=tau)
    us.append(float(v[0]))
  ax.plot(current[:, 0], label="input I[t]")
  ax.plot(us, label="membrane v[t] (after reset)")
  ax.vlines(jnp.nonzero(spikes[:, 0])[0], 1.0, 1.4, color="k", label="spikes")
  ax.set(title=f"tau = {tau}", xlabel="t")
axes[0].legend(fontsize=8)

# %% [markdown]
# ## Memory against T
# The gradient of a two-layer spiking MLP's loss (batch 32, 128 hidden), compiled for each T; XLA's
# memory analysis gives the temporary bytes the backward pass needs.

# %%
B, D, H, C = 32, 64, 128, 10


def step_fn(p, state, carry, x, t):
  v1, v2 = (None, None) if carry is None else carry
  s1, v1 = lif_step(v1, x @ p["w1"])
  s2, v2 = lif_step(v2, s1 @ p["w2"])
  return s2 @ p["w3"], (v1, v2), state


params = {"w1": jnp.zeros((D, H)), "w2": jnp.zeros((H, H)), "w3": jnp.zeros((H, C))}
x, y = jnp.zeros((B, D)), jnp.zeros((B,), jnp.int32)
temp = {}
for mode, k in (("bptt", None), ("sltt", None), ("sltt_k", 1)):
  for t in TS:
    grad = jax.jit(jax.grad(lambda p, key: through_time_loss(
        step_fn, p, None, x, y, num_steps=t, mode=mode, k=k, key=key)[0]))
    temp[mode, t] = grad.lower(params, jax.random.key(0)).compile().memory_analysis().temp_size_in_bytes

plt.figure(figsize=(5, 3.5))
for mode in ("bptt", "sltt", "sltt_k"):
  plt.plot(TS, [temp[mode, t] / 2**10 for t in TS], "o-", label=mode)
plt.xscale("log", base=2)
plt.gca().set(xlabel="time steps T", ylabel="temp KiB of the gradient", title="memory against T")
plt.legend()
print({f"{m} T={t}": f"{v / 2**10:.0f} KiB" for (m, t), v in temp.items()})

# %% [markdown]
# ## Accuracy: BPTT, SLTT and SLTT-K on MNIST-1D
# The `configs/sltt_mnist1d.py` experiment: a spiking MLP (40-256-256-10, per-step BatchNorm), T = 6,
# the authors' loss; the three arms share the seed, so the initialisation and batches are the same.

# %%
runs = {}
for label, mode, k in (("bptt", "bptt", None), ("sltt", "sltt", None), ("sltt_k (K=2)", "sltt_k", 2)):
  config = sltt_mnist1d.get_config()
  config.objective_kwargs.mode, config.objective_kwargs.k = mode, k
  config.num_train_steps = sltt_mnist1d.STEPS_PER_EPOCH * EPOCHS
  config.eval_every_steps = sltt_mnist1d.STEPS_PER_EPOCH
  config.progress_every_seconds = 60.0
  workdir = tempfile.mkdtemp(prefix=f"sltt_{mode}_")
  results = train_and_evaluate(config, workdir)
  runs[label] = (read_metrics(workdir), results)

# %%
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
spe = sltt_mnist1d.STEPS_PER_EPOCH
for label, (rows, _) in runs.items():
  tr = [r for r in rows if "train_loss" in r]
  ev = [r for r in rows if "eval_accuracy" in r]
  a.plot([r["step"] / spe for r in tr], [r["train_loss"] for r in tr], label=label)
  b.plot([r["step"] / spe for r in ev], [r["eval_accuracy"] for r in ev], "o-", label=label)
a.set(xlabel="epoch", ylabel="training loss", yscale="log")
b.set(xlabel="epoch", ylabel="test accuracy")
b.legend()
for label, (_, res) in runs.items():
  print(f"{label:14s} test accuracy {res['eval_accuracy']:.3f}   train-step temp "
        f"{res['final_temp_bytes'] / 2**20:.2f} MiB   wall {res['wall_time_s']:.0f} s")
