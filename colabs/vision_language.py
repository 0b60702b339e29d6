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
# # Vision-language and vision data: CLIP and LaCLIP, PRIOR, visual stitching, CTVIS, crafted shifts
#
# The cores of five papers in `jaxdyn.multimodal`, on data that needs no download: scikit-learn's digits
# rendered with drawn size, stroke thickness and position, each captioned by a small grammar
# (`jaxdyn.data.paired_digits`), and small image-text models (`jaxdyn.models.CLIP`, `Captioner`).
#
# - **LaCLIP** (Fan et al., NeurIPS 2023, https://arxiv.org/abs/2305.20088): each image's text drawn per
#   step from its caption and its rewrites, with CLIP's symmetric InfoNCE loss (`clip_loss`). The paper
#   rewrites with an LLM; here the grammar paraphrases (same facts, other templates and synonyms).
# - **PRIOR** (Chen et al., 2025, https://arxiv.org/abs/2505.08971): a caption-only reference LM weighs
#   each caption token by (1 - p_ref)^alpha in the captioner's loss (`prior_token_weights`, `prior_loss`).
# - **Visual stitching** (Zhou et al., 2025, https://arxiv.org/abs/2506.03614): a model fine-tuned on
#   (patch, ID) pairs asked for the ID of the whole image (`stitching_patches`, `stitching_measure`).
# - **CTVIS** (Ying et al., ICCV 2023, https://arxiv.org/abs/2307.12616): contrastive items built as
#   inference tracks, with a memory bank of momentum-averaged embeddings (`ctvis_contrastive_items`).
# - **Crafted shifts** (Efthymiadis et al., WACV 2025, https://arxiv.org/abs/2409.19774): augmentation
#   families that craft a shifted validation set, split into folds by type, and edge-map inputs.
#
# Each section runs the claim's own runner with its smoke settings on CPU; the claims are in
# REPRODUCTION.md (`make repro CLAIM=<name>`).

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
import matplotlib.pyplot as plt
import numpy as np

from configs import crafted_shifts_digits, ctvis_association, laclip_digits, prior_digits, stitching_digits
from experiments.techniques.multimodal import clip as clip_runner
from experiments.techniques.multimodal import crafted_shifts, ctvis, prior, stitching
from jaxdyn import data, multimodal

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %% [markdown]
# ## Paired data: rendered digits, captions and rewrites
# A caption always names the digit and states each attribute with probability 1/2; the rewrites state the
# same facts in other words. The words marked `*` are the image-related ones (`vocab.image_related`).

# %%
pairs = data.paired_digits("eval", num_rewrites=2)
fig, axes = plt.subplots(1, 4, figsize=(10, 2.6))
for ax, i in zip(axes, range(4)):
  ax.imshow(pairs.images[i, ..., 0], cmap="gray")
  ax.set_title(pairs.captions[i], fontsize=7, wrap=True)
  ax.axis("off")
plt.show()
related = set(w for w, r in zip(pairs.vocab.words, pairs.vocab.image_related) if r)
for i in range(4):
  for text in pairs.texts(i):
    print(" ".join(w + "*" if w in related else w for w in text.split()))
  print()

# %% [markdown]
# ## CLIP against LaCLIP
# Both from the same initial towers on the same image batches; LaCLIP draws each image's text from its
# caption and rewrites every step. Zero-shot accuracy on held-out images and retrieval recall@1.

# %%
CCONFIG = laclip_digits.get_config()  # the claim's setting: 1,000 steps
if SMALL:
  CCONFIG.clip.update(steps=300, eval_every=100)
clip_results = clip_runner.run_all(CCONFIG)
for arm, r in clip_results["per_arm"].items():
  print(f"{arm:8s} zero-shot {r['zero_shot_accuracy']:.3f}, recall@1 {r['recall1_mean']:.3f}")

# %% [markdown]
# ## PRIOR: which tokens get the weight
# The reference LM reads captions without their images, so the tokens it predicts well (filler, grammar)
# get small weights and the image-related ones large weights.

# %%
PCONFIG = prior_digits.get_config()  # the claim's setting: 4 renderings per digit, 800 captioner steps
if SMALL:
  PCONFIG.prior.update(copies=1, steps=100, eval_every=50, num_sample_captions=4)
prior_results = prior.run_all(PCONFIG)  # prints the reference LM's weights on sample captions (word:weight)
for arm, r in prior_results["per_arm"].items():
  print(f"{arm:6s} image-token accuracy {r['image_token_accuracy']:.3f}, "
        f"caption classification {r['caption_class_accuracy']:.3f}")

# %% [markdown]
# ## Visual stitching: naming the whole image's ID after training on its patches
# An image split into 2x2 patches, then the fine-tuned models' ID accuracy on the whole images by split
# factor (chance is one over the number of IDs).

# %%
img = np.asarray(pairs.images[:1])
patches = np.asarray(multimodal.stitching_patches(img, 2))[0]  # (4, 24, 24, 1): each quadrant upsampled
fig, axes = plt.subplots(1, 1 + len(patches), figsize=(8, 2))
axes[0].imshow(img[0, ..., 0], cmap="gray")
for ax, p in zip(axes[1:], patches):
  ax.imshow(p[..., 0], cmap="gray")
for ax in axes:
  ax.axis("off")
plt.show()
SCONFIG = stitching_digits.get_config()  # the claim's setting: 3,000 pre-training steps, splits 1-4
if SMALL:
  SCONFIG.stitching.update(pretrain_steps=300, finetune_steps=100, eval_every=50, arms=("1x1", "2x2"))
stitch_results = stitching.run_all(SCONFIG)
for arm, r in stitch_results["per_arm"].items():
  print(arm, {k: round(v, 3) for k, v in r.items() if isinstance(v, float)})

# %% [markdown]
# ## CTVIS: contrastive items as inference builds them
# A pseudo-video from one still image (the paper's finding), then the association accuracy of embeddings
# trained with CTVIS's memory-bank items against items from one reference frame.

# %%
clip_frames = np.asarray(multimodal.ctvis_pseudo_video(jax.random.key(0), pairs.images[0], num_frames=6))
fig, axes = plt.subplots(1, 6, figsize=(9, 1.8))
for ax, frame in zip(axes, clip_frames):
  ax.imshow(frame[..., 0], cmap="gray")
  ax.axis("off")
plt.show()
VCONFIG = ctvis_association.get_config()  # the claim's setting: 2,000 steps, 500 evaluation videos
if SMALL:
  VCONFIG.ctvis.update(steps=300, eval_videos=100)
ctvis_results = ctvis.run_all(VCONFIG)
for arm, r in ctvis_results["per_arm"].items():
  print(f"{arm:15s} association {r['association_accuracy']:.3f}, after a gap {r['reappear_accuracy']:.3f}")

# %% [markdown]
# ## Crafted shifts: augmented validation and edge maps
# One image under each augmentation family, its edge map, then how well source and augmented validation
# accuracy rank a set of trained models by their accuracy on held-out shifted domains.

# %%
fams = ("arithmetic", "blur", "contrast") if SMALL else multimodal.CRAFTED_FAMILIES  # each compiles once
keys = jax.random.split(jax.random.key(1), len(fams))
row = [np.asarray(multimodal.crafted_augment(pairs.images[:1], keys[i:i + 1], (f,)))[0] for i, f in enumerate(fams)]
edges = np.asarray(multimodal.crafted_edge_map(pairs.images[:1]))[0]
fig, axes = plt.subplots(1, len(fams) + 2, figsize=(2 * (len(fams) + 2), 2))
for ax, im, title in zip(axes, [pairs.images[0], *row, edges], ["source", *fams, "edges"]):
  ax.imshow(np.squeeze(im), cmap="gray")
  ax.set_title(title, fontsize=8)
  ax.axis("off")
plt.show()
XCONFIG = crafted_shifts_digits.get_config()  # the claim's setting: 18 models, all ten families
if SMALL:
  XCONFIG.shifts.update(methods=("plain", "edges", "aug_plain"), learning_rates=(1e-3, 3e-3), steps=300,
                        families=fams)
shift_results = crafted_shifts.run_all(XCONFIG)
for arm, r in shift_results["per_arm"].items():
  print(f"{arm:9s} validation: rank correlation {r['rank_correlation']:.2f}, "
        f"chosen model's shifted accuracy {r['chosen_shifted_accuracy']:.3f}")
