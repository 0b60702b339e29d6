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
# # Micro-budget diffusion: EDM with deferred patch masking
#
# Sehwag, Kong, Li, Spranger, Lyu, ["Stretching Each Dollar: Diffusion Training from Scratch on a
# Micro-Budget"](https://arxiv.org/abs/2407.15811) (2024) cut a diffusion transformer's training cost by
# feeding its backbone only a random quarter of each image's patches. Masking 75% of the patches alone
# costs much quality; **deferred masking** keeps most of it:
#
# 1. a light **patch-mixer** (a few transformer blocks) runs on *all* patches first, so every token has
#    seen the whole image;
# 2. then 75% of the patches are masked, and the **backbone** runs on the kept 25% only (its cost falls
#    about fourfold);
# 3. the denoising **loss counts the unmasked (kept) patches only**;
# 4. a short final **unmasked fine-tune** (mask ratio 0) closes the train/test gap, since sampling always
#    runs on every patch.
#
# The diffusion itself is EDM (Karras, Aittala, Aila, Laine, ["Elucidating the Design Space of
# Diffusion-Based Generative Models"](https://arxiv.org/abs/2206.00364), NeurIPS 2022), which the paper
# uses unchanged: a preconditioned denoiser `D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)`, log-normal
# training noise levels with the loss weight `lambda(sigma)`, and the deterministic Heun sampler over the
# Karras noise levels. `jaxdyn.diffusion` holds those pieces, the patch masking and a download-free
# sample-quality metric; `jaxdyn.models.DiT` is the class-conditional DiT with the patch-mixer.
#
# Here, at toy scale: the EDM pieces, a masked digit, then a small DiT trained on scikit-learn's 8x8
# digits with 75% deferred masking (the settings of `configs/microdiff_digits.py`), with class-conditional
# sample grids at a few points during training and a Fréchet distance in a classifier's feature space
# at the end. Uses a GPU or TPU when the runtime has one; on CPU it runs the small settings (about a
# minute in all).

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
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

from configs import microdiff_digits
from experiments.techniques.diffusion import micro
from jaxdyn import diffusion
from jaxdyn.data import load_dataset
from jaxdyn.models import MLP, DiT

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %%
C = microdiff_digits.get_config().diffusion  # the claim's model, EDM, optimizer and sampler settings
STEPS = 300 if SMALL else 4 * C.steps  # masked training steps
FINETUNE = 30 if SMALL else 4 * C.finetune_steps  # then unmasked fine-tuning steps
BATCH = C.batch if SMALL else 128
SNAPSHOTS = (STEPS // 3, 2 * STEPS // 3, STEPS, STEPS + FINETUNE)  # where the sample grids are drawn
SAMPLES_PER_CLASS = 20 if SMALL else C.samples_per_class
GRID_ROWS = 4  # samples per class shown in each grid
to_image = lambda a: 2.0 * np.asarray(a, np.float32) - 1.0  # noqa: E731  [0, 1] -> [-1, 1]
digits = load_dataset("digits")
x_train, y_train = to_image(digits.train.x), np.asarray(digits.train.y, np.int32)
x_test, y_test = to_image(digits.eval.x), np.asarray(digits.eval.y, np.int32)
print(f"{len(x_train)} training digits {x_train.shape[1:]}, std {x_train.std():.3f} "
      f"(sigma_data {C.sigma_data}); {STEPS} masked + {FINETUNE} unmasked steps at batch {BATCH}")

# %% [markdown]
# ## EDM: preconditioning, training noise levels and the Karras schedule
# The network `F` sees an input of unit variance (`c_in`) and a log noise level (`c_noise`), and is
# trained on a target of unit variance: at small `sigma` the denoiser is mostly the skip connection
# (`c_skip -> 1`, `c_out -> 0`), at large `sigma` mostly the network's prediction (`c_skip -> 0`,
# `c_out -> sigma_data`). Training draws `ln sigma ~ N(P_mean, P_std^2)`; the loss weight
# `lambda(sigma) = 1 / c_out^2` makes each level's effective loss unit-scale. Sampling walks down the Karras
# levels, `rho = 7` crowding the steps at low noise where the fine detail is decided.

# %%
sigma = np.logspace(-3, 2, 200).astype(np.float32)
scalings = diffusion.edm_preconditioning(jnp.asarray(sigma), sigma_data=C.sigma_data)
train_sigma = np.asarray(diffusion.edm_sigma_sample(jax.random.key(0), 100_000, p_mean=C.p_mean, p_std=C.p_std))
fig, (a, b, d) = plt.subplots(1, 3, figsize=(15, 3.8))
for name, values in scalings._asdict().items():
  a.plot(sigma, values, label=name)
a.axvline(C.sigma_data, color="gray", ls=":", label="sigma = sigma_data")
a.set(xscale="log", xlabel="sigma", title=f"EDM preconditioning (sigma_data = {C.sigma_data})")
a.legend()
b.hist(train_sigma, bins=np.logspace(-3, 2, 60), density=True, alpha=0.6, label="training sigma (density)")
b.set(xscale="log", xlabel="sigma", title=f"ln sigma ~ N({C.p_mean}, {C.p_std}^2)")
b2 = b.twinx()
b2.plot(sigma, diffusion.edm_loss_weight(jnp.asarray(sigma), sigma_data=C.sigma_data), "C3", label="lambda(sigma)")
b2.set(yscale="log", ylabel="loss weight lambda")
b.legend(loc="upper left"); b2.legend(loc="upper right")
for rho in (7.0, 1.0):
  d.plot(diffusion.karras_sigmas(C.sample_steps, rho=rho)[:-1], "o-", ms=3, label=f"rho = {rho:g}")
d.set(yscale="log", xlabel="step i", ylabel="sigma_i", title=f"Karras levels, N = {C.sample_steps} (then 0)")
d.legend(); fig.tight_layout()
plt.show()
at = diffusion.edm_preconditioning(jnp.float32(C.sigma_data), sigma_data=C.sigma_data)
print("at sigma = sigma_data: " + ", ".join(f"{k} {float(v):.4f}" for k, v in at._asdict().items()))
print("Karras levels (rho 7):", np.round(np.asarray(diffusion.karras_sigmas(C.sample_steps)), 3))

# %% [markdown]
# ## Deferred masking on one digit
# 2x2 patches of an 8x8 digit give 16 tokens. All 16 go through the patch-mixer; with mask ratio 0.75,
# `random_keep_indices` keeps a random sorted 4 of them per image (a static count, so shapes stay fixed
# under `jit`). Only those reach the backbone, and only their pixels count in `edm_loss(..., keep=...)`.

# %%
P = C.patch_size
T = (8 // P) ** 2
keep = np.asarray(diffusion.random_keep_indices(jax.random.key(3), 1, T, C.mask_ratio))[0]
digit = x_train[0, :, :, 0]
kept_mask = np.zeros((8 // P, 8 // P), bool)
kept_mask.flat[keep] = True
kept_pixels = np.kron(kept_mask, np.ones((P, P), bool))
cmap = plt.get_cmap("gray_r").with_extremes(bad="#f4c7c3")
fig, axes = plt.subplots(1, 3, figsize=(10, 4.0))
panels = [(digit, f"digit (label {y_train[0]}): {T} patches,\nall seen by the patch-mixer"),
          (np.where(kept_pixels, digit, np.nan), f"kept: {len(keep)} patches {keep.tolist()}\n-> backbone and loss"),
          (np.where(kept_pixels, np.nan, digit), f"masked: {T - len(keep)} patches\n(no backbone, no loss)")]
for ax, (img, title) in zip(axes, panels):
  ax.imshow(np.ma.masked_invalid(img), cmap=cmap, vmin=-1, vmax=1)
  for k in range(1, 8 // P):
    ax.axhline(k * P - 0.5, color="C0", lw=0.8); ax.axvline(k * P - 0.5, color="C0", lw=0.8)
  for t in range(T):
    ax.text((t % (8 // P)) * P - 0.3, (t // (8 // P)) * P - 0.1, str(t), color="C0", fontsize=7)
  ax.set(title=title, xticks=[], yticks=[])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Training a small DiT with 75% deferred masking
# The claim's DiT (2x2 patches, width 64, 4 backbone blocks after a 1-block patch-mixer, adaLN-Zero, class
# conditioning) as an EDM denoiser, Adam with warm-up and cosine decay. The train step is the claim runner's
# (`micro.make_train_step` in `experiments/techniques/diffusion/micro.py`): noise each digit at a
# log-normal `sigma`, run the model on the kept patches (`keep`), and take the weighted EDM loss on those
# patches only. The same step with mask ratio 0
# is the final unmasked fine-tune. XLA's cost analysis of the two compiled steps gives their FLOPs.

# %%
model = DiT(1, 10, image_size=8, patch_size=P, dim=C.dim, depth=C.depth, num_heads=C.num_heads,
            mlp_ratio=C.mlp_ratio, mixer_depth=C.mixer_depth, rngs=nnx.Rngs(0))
graphdef, params = nnx.split(model)
opt = micro.make_optimizer(C.learning_rate, STEPS, FINETUNE)  # the claim runner's optimizer and step
opt_state = opt.init(params)


def make_step(mask_ratio):
  return jax.jit(micro.make_train_step(C, model, opt, mask_ratio))


flops = micro.compiled_flops
example = (params, opt_state, jnp.asarray(x_train[:BATCH]), jnp.asarray(y_train[:BATCH]), jax.random.key(0))
masked_step = make_step(C.mask_ratio).lower(*example).compile()
full_step = make_step(0.0).lower(*example).compile()
print(f"FLOPs per train step: {flops(masked_step):.3g} with {C.mask_ratio:.0%} masked, {flops(full_step):.3g} "
      f"unmasked ({flops(full_step) / flops(masked_step):.2f}x; the mixer, embeddings and optimizer are not masked)")

labels = jnp.repeat(jnp.arange(10), SAMPLES_PER_CLASS)
noise = jax.random.normal(jax.random.key(10**6), (len(labels), 8, 8, 1))  # the same noise at every snapshot


@jax.jit
def sample(params):
  """Class-conditional samples (SAMPLES_PER_CLASS of each digit) with EDM's Heun sampler, unmasked."""
  net = nnx.merge(graphdef, params)

  def denoiser(x, sig):
    s = diffusion.edm_preconditioning(sig, sigma_data=C.sigma_data)
    return s.c_skip * x + s.c_out * net(s.c_in * x, jnp.full((x.shape[0],), s.c_noise), labels)

  return diffusion.heun_sampler(denoiser, noise, num_steps=C.sample_steps)


# %%
rng = np.random.default_rng(0)
losses, samples = [], {}
start = time.time()
for i in range(STEPS + FINETUNE):
  idx = rng.integers(0, len(x_train), BATCH)
  step = masked_step if i < STEPS else full_step
  params, opt_state, value = step(params, opt_state, jnp.asarray(x_train[idx]), jnp.asarray(y_train[idx]),
                                  jax.random.fold_in(jax.random.key(1), i))
  losses.append(value)
  if i + 1 in SNAPSHOTS:
    samples[i + 1] = np.asarray(sample(params))
losses = np.asarray(jax.device_get(losses))
print(f"trained and sampled in {time.time() - start:.1f} s; mean loss over the last 10% of the masked steps "
      f"{losses[int(0.9 * STEPS):STEPS].mean():.4f}, over the fine-tune {losses[STEPS:].mean():.4f}")

window = max(1, (STEPS + FINETUNE) // 30)
smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
plt.figure(figsize=(7, 3.5))
plt.plot(np.arange(len(smooth)) + window, smooth, label=f"EDM loss (mean of {window} steps)")
plt.axvline(STEPS, color="C3", ls="--", label="unmasked fine-tune starts")
for s_ in SNAPSHOTS:
  plt.axvline(s_, color="gray", ls=":", lw=0.8)
plt.xlabel("step"); plt.ylabel("loss on the kept patches"); plt.yscale("log"); plt.legend(); plt.tight_layout()
plt.show()

# %% [markdown]
# ## Sample grids over training
# Each grid: one column per requested class (0 to 9), the first samples of each class, drawn with the
# 18-step Heun sampler from the same noise at every snapshot (the last one after the unmasked
# fine-tune). Training digits on the left for reference.
#
# The small settings (CPU: 300 + 30 steps at batch 32, 5-20 s of training) only show the start:
# smooth blobs turning into strokes, with the classifier below at about chance on them (the claim found
# even 1,000 + 100 steps far from converged). The full settings (a GPU runtime, or
# `JAXDYN_NOTEBOOK_SMALL=0`: 4,000 + 400 steps at batch 128) draw recognisable digits of the requested
# class: in one run (on 2 CPU cores, about 5 minutes of training) the class accuracy on samples went from
# 0.68 at step 1,333 to 0.94 after the fine-tune, and the Fréchet distance below from 8.5 to 1.8 (test
# digits: 1.1).


# %%
def tile(images, rows):
  """(10 * n, 8, 8, 1) class-major images -> one picture, a column per class, `rows` samples each."""
  n = len(images) // 10
  grid = np.full((rows * 9 + 1, 10 * 9 + 1), np.nan)
  for k in range(10):
    for r in range(rows):
      grid[1 + 9 * r:9 * r + 9, 1 + 9 * k:9 * k + 9] = images[k * n + r, :, :, 0]
  return grid


real = np.concatenate([x_train[y_train == k][:GRID_ROWS] for k in range(10)])
pictures = [("training digits", real)] + [
    (f"step {s_}" + (" (after fine-tune)" if s_ > STEPS else " (masked)"), samples[s_]) for s_ in SNAPSHOTS]
fig, axes = plt.subplots(1, len(pictures), figsize=(3.6 * len(pictures), 2.0))
for ax, (title, images) in zip(axes, pictures):
  ax.imshow(np.ma.masked_invalid(tile(np.clip(images, -1, 1), GRID_ROWS)),
            cmap=plt.get_cmap("gray_r").with_extremes(bad="white"), vmin=-1, vmax=1)
  ax.set(title=title, xticks=4.5 + 9 * np.arange(10), xticklabels=range(10), yticks=[])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Sample quality: a Fréchet distance in a classifier's feature space (not FID)
# FID is the Fréchet distance between Gaussian fits of *Inception-v3* features; Inception needs a download
# and does not fit 8x8 digits. `frechet_distance` takes any features: here the 64-d penultimate layer of
# a small MLP classifier trained on the same training digits (as in the claim), so the numbers compare only
# with runs scored by this classifier. The floor is the held-out test digits against the training
# digits; `conditional_accuracy` is the classifier's accuracy on the samples of each requested class.

# %%
clf = MLP(64, 10, hidden=(128, 64), rngs=nnx.Rngs(0))
clf_graphdef, clf_params = nnx.split(clf)
clf_opt = optax.adam(1e-3)
clf_state = clf_opt.init(clf_params)


@jax.jit
def clf_step(p, state, xb, yb):
  loss = lambda q: optax.softmax_cross_entropy_with_integer_labels(  # noqa: E731
      nnx.merge(clf_graphdef, q)(xb.reshape(len(xb), -1)), yb).mean()
  updates, state = clf_opt.update(jax.grad(loss)(p), state, p)
  return optax.apply_updates(p, updates), state


clf_rng = np.random.default_rng(1)
for _ in range(C.classifier_steps):
  idx = clf_rng.integers(0, len(x_train), 128)
  clf_params, clf_state = clf_step(clf_params, clf_state, x_train[idx], y_train[idx])
classify = jax.jit(lambda a: nnx.merge(clf_graphdef, clf_params)(a.reshape(len(a), -1), return_features=True))
_, feats_train = classify(x_train)
logits_test, feats_test = classify(x_test)
print(f"classifier test accuracy {float((logits_test.argmax(-1) == y_test).mean()):.3f}; Frechet distance "
      f"(classifier features, not FID) of the test digits to the training digits: "
      f"{diffusion.frechet_distance(feats_test, feats_train):.2f} (the floor)")
for s_ in SNAPSHOTS:
  logits, feats = classify(jnp.clip(samples[s_], -1, 1))
  fd = diffusion.frechet_distance(feats, feats_train)
  acc = np.asarray(diffusion.conditional_accuracy(logits, labels))
  print(f"step {s_:>5}{' (fine-tuned)' if s_ > STEPS else '             '}: Frechet distance {fd:7.2f}, "
        f"class accuracy on samples {acc.mean():.3f}")
