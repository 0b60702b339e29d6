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
# # Attention: LongGen's sparse patterns, their KV cache, and in-context regression heads
#
# `jaxdyn.attention` draws attention patterns as boolean masks (causal, sliding window, attention sink +
# window, dkernel's block-sparse local + strided) and runs them through a block-sparse flash-attention
# kernel (Pallas; interpret mode on CPU) or its jnp path. LongGen (Ge et al., 2024) keeps a third of a
# model's layers on full attention, in the middle, and the rest on sink + window, whose KV cache stays
# constant-size. The second half trains the one-layer multi-head softmax attention of "In-Context Linear
# Regression Demystified" (He et al., ICML 2025) and plots its per-head weights.
# Papers: https://arxiv.org/abs/2410.01485, https://arxiv.org/abs/2503.12734.

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

from jaxdyn import attention

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
ICL_STEPS = 1500 if SMALL else 20_000

# %% [markdown]
# ## The patterns
# Each panel is a 64 x 64 mask (queries down, keys across); the last one is the block layout of the
# block-sparse pattern at 8 x 8 blocks: which key blocks each query block reads, all a kernel visits.

# %%
L = 64
masks = {
    "causal": attention.causal_mask(L),
    "sliding window (16)": attention.sliding_window_mask(L, window=16),
    "sink (4) + window (16)": attention.sink_window_mask(L, sink=4, window=16),
    "block-sparse (dkernel)": attention.block_sparse_mask(L, block_size=8, local_blocks=2, vertical_stride=3),
}
fig, axes = plt.subplots(1, 5, figsize=(15, 3))
for ax, (name, m) in zip(axes, masks.items()):
  ax.imshow(m, cmap="Greys", interpolation="nearest"); ax.set_title(name, fontsize=9); ax.axis("off")
axes[-1].imshow(attention.block_layout(masks["block-sparse (dkernel)"], 8, 8), cmap="Blues", interpolation="nearest")
axes[-1].set_title("its block layout", fontsize=9); axes[-1].axis("off")
fig.tight_layout(); plt.show()

# %% [markdown]
# The kernel against the dense masked reference, values and gradients (interpret mode off GPU/TPU):

# %%
q, k, v = (jax.random.normal(kk, (1, L, 2, 16)) for kk in jax.random.split(jax.random.key(0), 3))
m = masks["sink (4) + window (16)"]
loss = lambda f: lambda q, k, v: jnp.sum(f(q, k, v) ** 2)
ref = jax.grad(loss(lambda q, k, v: attention.dense_masked_attention(q, k, v, m)), argnums=(0, 1, 2))(q, k, v)
ker = jax.grad(loss(lambda q, k, v: attention.block_sparse_attention(q, k, v, m, block_q=16, block_k=16)),
               argnums=(0, 1, 2))(q, k, v)
print("max |kernel - reference| of dq, dk, dv:", [float(jnp.abs(a - b).max()) for a, b in zip(ker, ref)])

# %% [markdown]
# ## The KV cache of a hybrid stack
# A 12-layer LongGen plan (4 full layers in the middle), 8 heads of 64, float16-sized entries, sink 64
# and window 4,096: bytes per token against an all-full stack as the context grows.

# %%
plan = attention.layer_plan(12)
print(plan)
lengths = [2**i for i in range(10, 18)]
saving = [attention.kv_cache_bytes(plan, n, num_heads=8, head_dim=64, sink=64, window=4096, dtype=np.float16)["saving"]
          for n in lengths]
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogx(lengths, saving, "o-", base=2); ax.axhline(2 / 3, color="k", lw=0.5)
ax.set(xlabel="context length", ylabel="KV cache saved vs all-full"); fig.tight_layout(); plt.show()

# %% [markdown]
# ## Passkey retrieval at 4x the pre-training length
# `configs/longgen_passkey.py`: a 3-layer byte-level Transformer pre-trained with full attention at 128
# bytes, fine-tuned at 512 as all-full, hybrid (sparse / full / sparse) or all-sparse (sink 4 + window
# 32), then asked for a 5-digit passkey placed 0..446 bytes before the question. This cell plots the
# runs of `make repro CLAIM=longgen_hybrid_matches_full_passkey` (and `..._all_sparse_fails_beyond_window`)
# when they are in `runs/repro`; without them it runs each arm for a few steps (the smoke settings:
# the bars are then near zero and show only the pipeline).

# %%
import glob
import json

from configs import longgen_passkey

by_arm = {}
for arm in ("full", "hybrid", "sparse"):
  for path in sorted(glob.glob(f"runs/repro/{arm}-*/seed*/results.json")):
    r = json.load(open(path))
    if r.get("plan") and "bucket_accuracy" in r:
      by_arm.setdefault(arm, []).append(r)
source = "make repro (runs/repro)"
if not by_arm:
  source = "a few smoke steps (no make repro runs found)"
  for arm in ("full", "hybrid", "sparse"):
    c = longgen_passkey.smoke_config()
    c.passkey.plan = arm
    workdir = os.path.join(tempfile.mkdtemp(), "passkey", arm)
    by_arm[arm] = [longgen_passkey.RUNNER(c, workdir)]
fig, ax = plt.subplots(figsize=(6, 3))
width = 0.8 / len(by_arm)
for a, (arm, runs) in enumerate(by_arm.items()):
  labels = [f"{lo}..{hi - 1}" for lo, hi in runs[0]["buckets"]]
  acc = np.array([[x if x is not None else np.nan for x in r["bucket_accuracy"]] for r in runs])
  xs = np.arange(len(labels)) + a * width
  ax.bar(xs, np.nanmean(acc, 0), width, label=f"{arm} ({len(runs)} seed{'s' * (len(runs) > 1)})")
  ax.plot(np.repeat(xs[None], len(runs), 0).ravel(), acc.ravel(), "k.", ms=3)
ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
ax.set(xlabel="distance from the key to the question (bytes)", ylabel="passkey accuracy", ylim=(0, 1),
       title=source)
ax.legend(fontsize=8); fig.tight_layout(); plt.show()

# %% [markdown]
# ## In-context linear regression: the heads' weights
# One layer of softmax attention with 1 and 4 heads, trained on fresh tasks (d = 5, L = 40). Two heads
# pair up with opposite output-value weights (summing to about 0) and implement debiased gradient
# descent; `make repro CLAIM=icl_multihead_beats_single_head` runs the full study with three seeds.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for heads in (1, 4):
  params, hist = attention.train_icl(jax.random.key(0), num_heads=heads, steps=ICL_STEPS,
                                     log_every=max(ICL_STEPS // 30, 1))
  test = attention.sample_tasks(jax.random.key(1), 4096)
  pred = attention.icl_attention(params, attention.icl_tokens(test.x, test.y, test.x_query))
  print(f"H={heads}: test MSE {float(jnp.mean((pred - test.y_query) ** 2)):.3f}, "
        f"OV last entries {np.round(np.asarray(attention.ov_last_entry(params)), 2)}")
  for h in range(heads):
    axes[0].plot(hist["step"], hist["kq"][:, h], label=f"H={heads}, head {h}")
    axes[1].plot(hist["step"], hist["ov"][:, h], label=f"H={heads}, head {h}")
axes[0].set(xlabel="step", ylabel="KQ diagonal mean"); axes[1].set(xlabel="step", ylabel="OV last entry")
axes[1].legend(fontsize=7); fig.tight_layout(); plt.show()
