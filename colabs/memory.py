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
# # Memory-saving training: Mesa, keep / offload / recompute plans, frozen-spatial ViViT
#
# `jaxdyn.memory` collects what a JAX user reaches for when a model does not fit. Every number below is
# XLA's own `memory_analysis()` of a compiled training step, never an estimate by hand:
#
# - **Mesa** (Pan et al., 2021): the forward pass is exact, but what each layer saves for the backward
#   pass (a dense layer's input, the attention operands, softmax's output, GELU's and LayerNorm's
#   inputs) is stored in 8 bits with per-group running ranges. https://arxiv.org/abs/2111.11124
# - **MEMO-style plans** (Zhao et al., 2024): per layer, keep, offload or recompute each named
#   activation of the decoder-only Transformer so that a train step fits a memory budget.
#   https://arxiv.org/abs/2407.12117
# - **Frozen-spatial ViViT** (Gowda, Arnab & Huang): a frozen, pre-trained spatial transformer, a
#   compact adapter and a temporal transformer initialised from the image model.
#   https://arxiv.org/abs/2306.04822

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
import os

# XLA:CPU undoes jax.checkpoint unless its cse_barrier_expander pass is off (jaxdyn.memory._plans):
# the flag must be set before JAX starts (jaxdyn.memory.CPU_REMAT_XLA_FLAG; only a pass switched off).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_disable_hlo_passes=cse_barrier_expander").strip()

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from IPython.display import Markdown, display

from jaxdyn import memory
from jaxdyn.models import Transformer, ViT, ViViT

assert memory.CPU_REMAT_XLA_FLAG in os.environ["XLA_FLAGS"]

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
BATCH = 32 if SMALL else 256
DEPTH = 3 if SMALL else 6
SEQ_LEN = 512 if SMALL else 8192

# %% [markdown]
# ## Memory per layer: float, Mesa, rematerialised
# The same ViT (16 x 16 inputs, patch 4, width 64, 4 heads) is compiled as a train step
# (cross-entropy, gradients) at depth 1 and at depth `DEPTH`; a block's share is the growth of the
# step's temporary bytes per added block: the activations each block keeps for the backward pass.
# "remat" puts every block under `jax.checkpoint` (only the block's input is kept; the backward
# recomputes the rest).

# %%
x = jax.random.normal(jax.random.key(0), (BATCH, 16, 16, 1))
y = jnp.arange(BATCH) % 10
KEY = jax.random.key(1)


def vit_features_remat(m, x):
  t = m.patch(x)
  b = t.shape[0]
  t = t.reshape(b, t.shape[1] * t.shape[2], t.shape[-1])
  t = jnp.concatenate([jnp.broadcast_to(m.cls[...], (b, 1, t.shape[-1])), t], axis=1) + m.pos[...]
  for blk in m.blocks:
    gd, st = nnx.split(blk)
    t = jax.checkpoint(lambda s, t, gd=gd: nnx.merge(gd, s)(t))(st, t)
  return m.norm(t[:, 0])


def step_temp_bytes(scheme, depth):
  model = ViT(1, 10, image_size=16, patch_size=4, dim=64, depth=depth, num_heads=4, mesa=scheme == "mesa",
              rngs=nnx.Rngs(0))
  gd, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params, rest, key):  # ranges and key are arguments: constants would let XLA fold Mesa away
    m = nnx.merge(gd, params, rest, copy=True)
    logits = m.head(vit_features_remat(m, x)) if scheme == "remat" else m(x, train=True, key=key)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  compiled = jax.jit(jax.grad(loss)).lower(params, rest, KEY).compile()
  return compiled.memory_analysis().temp_size_in_bytes


SCHEMES = ("fp32", "mesa", "remat")
temp = {s: (step_temp_bytes(s, 1), step_temp_bytes(s, DEPTH)) for s in SCHEMES}
per_block = {s: (t[1] - t[0]) / (DEPTH - 1) / 2**20 for s, t in temp.items()}
fig, ax = plt.subplots(figsize=(5, 3))
bars = ax.bar(SCHEMES, [per_block[s] for s in SCHEMES], color=["tab:blue", "tab:orange", "tab:green"])
ax.bar_label(bars, labels=[f"{per_block[s] / per_block['fp32']:.2f}x" for s in SCHEMES])
ax.set_ylabel("MiB per block"); ax.set_title(f"memory a ViT block keeps for the backward, batch {BATCH}")
fig.tight_layout(); plt.show()
for s in SCHEMES:
  print(f"{s:6s} step temp at depth {DEPTH}: {temp[s][1] / 2**20:7.2f} MiB ({temp[s][1] / temp['fp32'][1]:.2f}x fp32), "
        f"per block {per_block[s]:.2f} MiB")

# %% [markdown]
# Mesa's forward pass is exact: compiled, the training logits (8-bit residuals, ranges updated) equal
# the inference logits bit for bit (run op by op, outside `jit`, they differ in float rounding).
# Its gradient differs from the float one by the rounding of what was saved.

# %%
mesa_vit = ViT(1, 10, image_size=16, patch_size=4, dim=64, depth=2, num_heads=4, mesa=True, rngs=nnx.Rngs(0))
logits = nnx.jit(lambda m, x, key, train: m(x, train=train, key=key), static_argnums=3)
print("compiled: training logits == inference logits:",
      bool(jnp.array_equal(logits(mesa_vit, x, KEY, True), logits(mesa_vit, x, KEY, False))))

# %% [markdown]
# ## A keep / offload / recompute plan
# A byte-level Transformer (width 32, 4 blocks, FlashAttention-style attention whose saved tensors
# grow linearly with the length). `profile_step` measures the step's overheads from 2- and 3-block
# copies; `plan_memory` then lowers layers one level at a time (plain, checkpointed keeping every
# named activation, then dropping names, the cheapest to recompute first) until the predicted peak
# fits the budget: here 60% of the plain step's. The compiled step under the plan checks the
# prediction.

# %%
lm = Transformer(dim=32, depth=4, num_heads=2, mlp_ratio=2, attention_fns=memory.flash_causal_attention(64),
                 rngs=nnx.Rngs(0))
profile = memory.profile_step(lm, seq_len=SEQ_LEN)
plain = memory.step_memory(lm, seq_len=SEQ_LEN)
plan = memory.plan_memory(lm, seq_len=SEQ_LEN, device_budget=0.6 * plain["temp"], profile=profile)
measured = memory.step_memory(lm, seq_len=SEQ_LEN, plan=plan)
display(Markdown(plan.table()))
print(f"plain step temp {plain['temp'] / 2**20:.2f} MiB; planned: predicted {plan.predicted_resident_bytes / 2**20:.2f}"
      f" MiB, compiled {measured['temp'] / 2**20:.2f} MiB "
      f"({measured['temp'] / plan.predicted_resident_bytes - 1:+.1%})")

# %% [markdown]
# ## Frozen-spatial ViViT
# The factorised-encoder video transformer on 8 frames of 16 x 16: with the spatial transformer
# frozen (`stop_gradient` at its output, and `freeze_spatial`: no optimizer state for it) XLA drops
# its whole backward pass, which is where the paper's time and memory saving comes from.

# %%
clips = jax.random.normal(jax.random.key(2), (BATCH // 4, 8, 16, 16, 1))
labels = jnp.arange(BATCH // 4) % 8
vivit_temp, vivit_state = {}, {}
for frozen in (False, True):
  vv = ViViT(1, 8, freeze_spatial=frozen, adapter_dim=16 if frozen else 0, rngs=nnx.Rngs(0))
  gd, params, rest = nnx.split(vv, nnx.Param, ...)
  tx = memory.freeze_spatial(optax.adam(1e-3)) if frozen else optax.adam(1e-3)
  opt_state = tx.init(params)

  def train_step(params, opt_state, gd=gd, rest=rest, tx=tx):
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(
        nnx.merge(gd, p, rest)(clips, train=True), labels).mean()
    g = jax.grad(loss)(params)
    u, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, u), opt_state

  name = "frozen + adapter" if frozen else "full fine-tuning"
  vivit_temp[name] = jax.jit(train_step).lower(params, opt_state).compile().memory_analysis().temp_size_in_bytes
  vivit_state[name] = sum(x.size for x in jax.tree.leaves(opt_state) if jnp.ndim(x))
for name in vivit_temp:
  print(f"{name:17s} train-step temp {vivit_temp[name] / 2**20:6.2f} MiB, optimizer state {vivit_state[name]:,} floats")
