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
# # Transformer training schemes: Experts Weights Averaging, SortedNet, delta activation layers
#
# `jaxdyn.schemes` collects training schemes for transformers and mixtures of experts. This notebook
# covers three of them on data that needs no download:
#
# 1. **Experts Weights Averaging** (Huang, Ye et al., 2023, https://arxiv.org/abs/2308.06093): some
#    feed-forward networks of a ViT become mixtures of experts whose tokens go to experts by a random
#    uniform partition (no router); after every optimizer step each expert moves toward the others,
#
#    $$W_i \leftarrow (1 - \beta) W_i + \frac{\beta}{N - 1} \sum_{j \ne i} W_j,$$
#
#    and after training each MoE collapses into the FFN with the mean weights, so the exported model
#    is a plain ViT with the plain ViT's cost. The form of the rule and the share-rate warm-up come
#    from a public re-implementation (the paper's method section could not be read here; see
#    `jaxdyn/schemes/_ewa.py`). Below: how far the experts drift apart with and without the
#    averaging, and the collapse checked against a plain ViT.
# 2. **SortedNet** (Valipour et al., 2023, https://arxiv.org/abs/2309.00255): nested sub-models
#    (leading hidden units, heads, layers) sliced from one set of weights and trained together. Below:
#    the accuracy of a ladder of 8 sub-models from one network, against the same ladder cut from a
#    normally trained network, and an exported sub-model.
# 3. **Delta activation layers** (Yousefzadeh & Sifalakis, 2021, https://arxiv.org/abs/2107.07305):
#    activations quantized on a trainable grid, with a loss on their frame-to-frame changes, so most
#    deltas are exactly zero. Below: the fraction of nonzero deltas over training, with and without
#    the layers.
#
# Hecate's fully sharded sparse data parallelism needs several devices; its communication figures
# come from `benchmarks/moe_sharding.py` (8 forced CPU devices).

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
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

import tempfile

from configs import delta_mnist1d, sortednet_digits
from experiments.claims import apply_overrides
from experiments.metrics_io import read_metrics
from experiments.train import train_and_evaluate
from jaxdyn import schemes
from jaxdyn.data import load_dataset
from jaxdyn.models import ViT

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
STEPS = 150 if SMALL else 1000
BATCH = 128
ARCH = dict(image_size=8, patch_size=2, dim=64, depth=4, num_heads=4, mlp_ratio=2)
digits = load_dataset("digits")
x_train, y_train = digits.train.x, digits.train.y
x_test, y_test = digits.eval.x, digits.eval.y

# %% [markdown]
# ## Training with and without the averaging
# The same MoE ViT (4 experts in blocks 1 and 3) trained with Adam, once with EWA chained after the
# optimizer (share rate rising to 0.3 over the first 30% of steps) and once without (a naive MoE).
# The drift is the experts' mean distance from their mean, relative to the mean's norm, in block 1's
# first layer.


# %%
def drift(params):
  w = params["blocks"][1]["experts"]["fc1"]["kernel"]
  mean = w.mean(0)
  return float(jnp.linalg.norm(w - mean, axis=(1, 2)).mean() / jnp.linalg.norm(mean))


def train(tx, seed=0):
  model = ViT(1, 10, num_experts=4, moe_layers=(1, 3), **ARCH, rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model, nnx.Param)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y, key):
    def loss(p):
      logits = nnx.merge(graphdef, p)(x, train=True, key=key)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  rng = np.random.default_rng(seed)
  drifts = []
  for s in range(STEPS):
    idx = rng.choice(len(x_train), BATCH)
    params, opt_state, _ = step(params, opt_state, x_train[idx], y_train[idx], jax.random.key(s))
    drifts.append(drift(nnx.to_pure_dict(params)))
  return nnx.merge(graphdef, params), drifts


adam = optax.adam(optax.cosine_decay_schedule(1e-3, STEPS))
ewa_model, ewa_drift = train(optax.chain(adam, schemes.experts_weights_averaging(
    schemes.share_rate_warmup(0.3, int(0.3 * STEPS)))))
naive_model, naive_drift = train(adam)

plt.figure(figsize=(6, 3.5))
plt.plot(naive_drift, label="naive MoE")
plt.plot(ewa_drift, label="EWA")
plt.xlabel("step"); plt.ylabel("relative expert drift"); plt.yscale("log"); plt.legend(); plt.tight_layout()
plt.show()
print(f"final drift: naive {naive_drift[-1]:.3g}, EWA {ewa_drift[-1]:.3g}")

# %% [markdown]
# ## The collapse is a plain ViT
# `collapse_experts` replaces every `experts` entry by its mean expert under the names of a plain
# FFN, so the parameters load into the ViT built without MoE layers. In inference the MoE ViT computes
# exactly that model (each MoE runs its mean expert).

# %%
params = nnx.to_pure_dict(nnx.state(ewa_model, nnx.Param))
plain = ViT(1, 10, **ARCH, rngs=nnx.Rngs(1))
nnx.update(plain, schemes.collapse_experts(params))
same = bool(jnp.array_equal(plain(x_test), ewa_model(x_test)))
accuracy = float((plain(x_test).argmax(-1) == y_test).mean())
count = lambda m: sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))  # noqa: E731
print(f"collapsed plain ViT == MoE ViT in inference: {same}; test accuracy {accuracy:.3f}; "
      f"parameters: training {count(ewa_model):,}, exported {count(plain):,}")
assert same

# %% [markdown]
# ## SortedNet: a ladder of sub-models in one set of weights
# `SortedMLP` (2 hidden layers of 64 units) trained on digits with the `sortednet` objective: each step
# draws 4 sub-models from the sorted ladder of widths 8, 16, ..., 64 and averages their gradients.
# `submodel_eval` then tests every sub-model from the one set of weights. The same MLP trained with
# plain cross-entropy and cut to each width ("truncated") is the control: its small sub-models were
# never trained to work alone.

# %%
SORTED_STEPS = 200 if SMALL else sortednet_digits.NUM_STEPS
ladder_acc = {}
for label, overrides in [("SortedNet", {}), ("truncated", {"objective": "ce", "objective_kwargs": {}})]:
  config = apply_overrides(sortednet_digits.get_config(), {
      **overrides, "num_train_steps": SORTED_STEPS, "eval_every_steps": SORTED_STEPS,
      "checkpoint_every_steps": SORTED_STEPS, "progress_every_seconds": 60.0})
  results = train_and_evaluate(config, tempfile.mkdtemp(prefix=f"sortednet_{label}_"))
  ladder_acc[label] = [results[f"final_acc_sub{k}"] for k in range(1, len(sortednet_digits.WIDTHS) + 1)]

plt.figure(figsize=(6, 3.5))
for label, acc in ladder_acc.items():
  plt.plot(sortednet_digits.WIDTHS, acc, "o-", label=label)
plt.xlabel("sub-model width (hidden units)"); plt.ylabel("test accuracy"); plt.legend(); plt.tight_layout()
plt.show()
for label, acc in ladder_acc.items():
  print(f"{label:>9}: " + "  ".join(f"w={w}: {a:.3f}" for w, a in zip(sortednet_digits.WIDTHS, acc)))

# %% [markdown]
# A sub-model exported with `export_submodel` is a standalone `SortedMLP` of the smaller size whose
# parameters are the leading slices; it computes the sliced forward bit for bit.

# %%
mlp = schemes.SortedMLP(64, 10, hidden=64, depth=2, rngs=nnx.Rngs(0))
sub = schemes.sorted_ladder(mlp.full_submodel, 8)[1]  # width 16
small = schemes.export_submodel(mlp, sub)
x_flat = x_test.reshape(len(x_test), -1)
print(sub, "exported parameters:", sum(x.size for x in jax.tree.leaves(nnx.state(small, nnx.Param))),
      "of", sum(x.size for x in jax.tree.leaves(nnx.state(mlp, nnx.Param))))
assert bool(jnp.array_equal(small(x_flat), mlp(x_flat, submodel=sub)))

# %% [markdown]
# ## Delta activation layers: temporal sparsity over training
# MNIST-1D read as 40 one-channel frames, a temporal conv net with a `DeltaActivation` after each
# block (`delta_tcn`), trained with cross-entropy plus each layer's
# `sp_rate * fan_out * mean |q_t - q_{t-1}|`. The control is the same network without the layers
# (its ReLU outputs' exact deltas counted the same way). The curve is the training batch's fraction
# of nonzero deltas between consecutive frames, all blocks pooled.

# %%
DELTA_STEPS = 300 if SMALL else delta_mnist1d.NUM_STEPS
delta_runs = {}
for arm in delta_mnist1d.ARMS[::2] if SMALL else delta_mnist1d.ARMS:  # small: without "quantized (sp_rate 0)"
  config = apply_overrides(delta_mnist1d.get_config(), {
      **arm.overrides, "num_train_steps": DELTA_STEPS, "log_every_steps": max(DELTA_STEPS // 20, 1),
      "eval_every_steps": DELTA_STEPS, "checkpoint_every_steps": DELTA_STEPS, "progress_every_seconds": 60.0})
  workdir = tempfile.mkdtemp(prefix="delta_")
  results = train_and_evaluate(config, workdir)
  delta_runs[arm.label] = (read_metrics(workdir), results)

plt.figure(figsize=(6, 3.5))
for label, (rows, _) in delta_runs.items():
  rows = [r for r in rows if "nonzero_delta_fraction" in r]
  plt.plot([r["step"] for r in rows], [r["nonzero_delta_fraction"] for r in rows], label=label)
plt.xlabel("step"); plt.ylabel("nonzero deltas (training batch)"); plt.ylim(0, 1); plt.legend(); plt.tight_layout()
plt.show()
for label, (_, r) in delta_runs.items():
  print(f"{label:>22}: test nonzero deltas {r['final_nonzero_delta_fraction']:.3f}, "
        f"test accuracy {r['eval_accuracy']:.3f}")
