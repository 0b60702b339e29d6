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
# # Transformer training schemes: Experts Weights Averaging
#
# `jaxdyn.schemes` collects training schemes for transformers. This notebook covers **Experts
# Weights Averaging** (Huang, Ye et al., 2023, https://arxiv.org/abs/2308.06093): some feed-forward
# networks of a ViT become mixtures of experts whose tokens go to experts by a random uniform
# partition (no router); after every optimizer step each expert moves toward the others,
#
# $$W_i \leftarrow (1 - \beta) W_i + \frac{\beta}{N - 1} \sum_{j \ne i} W_j,$$
#
# and after training each MoE collapses into the FFN with the mean weights, so the exported model is a
# plain ViT with the plain ViT's cost. The form of the rule and the share-rate warm-up come from a
# public re-implementation (the paper's method section could not be read here; see
# `jaxdyn/schemes/_ewa.py`). Below: how far the experts drift apart with and without the averaging,
# and the collapse checked against a plain ViT.

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
