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
# # Language-model data: dataset decomposition, MeCo, self-generated tokens
#
# Three ways to change what a language model is trained on, all in `jaxdyn.text`, on a corpus every
# machine has: the Python standard library's own source (`jaxdyn.data.load_stdlib_corpus`, bytes as
# tokens, a deterministic split by file, each file's package as its metadata).
#
# - **Dataset decomposition** (Pouransari et al., NeurIPS 2024, https://arxiv.org/abs/2405.13226): cut
#   every document into chunks of 2^k tokens, train on batches of one bucket at a time with constant
#   tokens per step and a short-to-long length curriculum, instead of concatenating documents and
#   cutting fixed rows (`decompose`, `VSLSampler`, `dd_dataset`, `concat_and_chunk`, `attention_flops`).
# - **MeCo** (Gao et al., ICML 2025, https://arxiv.org/abs/2501.01956): prefix each document with its
#   metadata (here `package: <name>`) without loss on it, then train the last 10% on plain text
#   (`meco_pack`, `meco_switch_step`, `meco_prompt`).
# - **Self-generated tokens** (Cen et al., TMLR 2025, https://arxiv.org/abs/2410.14655): replace some
#   inputs by the model's own argmax predictions from an offline teacher-forced pass, targets unchanged
#   (`self_generated_inputs`, `sampling_probability`).
#
# The claims on this setting are `make repro CLAIM=dd_fewer_attention_flops` (and `dd_less_wall_time`,
# `dd_no_worse_at_equal_tokens`), `meco_fewer_tokens` and `selfgen_free_running` (REPRODUCTION.md).

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

from configs import dd_stdlib, meco_stdlib, selfgen_stdlib
from experiments.techniques.text import decomposition, lm, meco, self_generated
from jaxdyn import text
from jaxdyn.data import load_stdlib_corpus

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %% [markdown]
# ## The corpus: files, and their top-level pieces
# The experiments take a document to be one top-level piece of a file (a cut before every top-level
# `def` / `class`): their lengths spread over three decades, like web documents against an 8k context,
# where whole files (median 8 kB) would nearly all be longer than the 1,024-byte context trained here.

# %%
train = load_stdlib_corpus("train")
pieces = [p for d in train.documents for p in decomposition.split_top_level(d)]
print(f"Python {train.python_version}: {len(train)} files, {train.num_tokens:,} bytes -> {len(pieces)} pieces")
fig, ax = plt.subplots(figsize=(7, 3))
bins = np.logspace(0, 6, 49)
ax.hist(train.lengths, bins=bins, alpha=0.6, label="files")
ax.hist([len(p) for p in pieces], bins=bins, alpha=0.6, label="top-level pieces")
ax.axvline(1024, color="k", ls="--", lw=1, label="context (1,024)")
ax.set(xscale="log", xlabel="bytes", ylabel="documents")
ax.legend()
plt.show()

# %% [markdown]
# ## Buckets of the decomposition
# Every piece is cut into chunks of 2^k bytes, k = 5 .. 10, longest first; the tail under 32 bytes is
# dropped. The chunks of bucket k all come from one document each, so no step mixes documents.

# %%
CONFIG = dd_stdlib.get_config()
D = CONFIG.data
dec = text.decompose([len(p) for p in pieces], kmin=D.kmin, kmax=D.kmax)
ks = np.arange(D.kmin, D.kmax + 1)
sizes = dec.bucket_sizes()
kept = int(sum(sizes * (1 << ks)))
print(f"{kept:,} of {sum(len(p) for p in pieces):,} bytes in chunks ({int(dec.dropped.sum()):,} dropped)")
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].bar([f"2^{k}" for k in ks], sizes)
axes[0].set(title="chunks per bucket", xlabel="chunk length")
axes[1].bar([f"2^{k}" for k in ks], sizes * (1 << ks) / kept)
axes[1].set(title="share of the tokens", xlabel="chunk length")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The length curriculum
# The sampler takes every batch of a cycle exactly once; the curriculum's odds only decide the order.
# Grow-P2 (odds 32:16:8:4:2:1) starts each cycle with short sequences; Uniform shuffles. Each dot is
# one step's bucket over one pass of 4 cycles; tokens per step are constant (2,048), so the batch holds
# 64 rows of 32 or 2 rows of 1,024.

# %%
fig, axes = plt.subplots(2, 1, figsize=(10, 4), sharex=True)
for ax, curriculum in zip(axes, ("grow_p2", "uniform")):
  sampler = text.VSLSampler(sizes, tokens_per_step=D.tokens_per_step, kmin=D.kmin, curriculum=curriculum,
                            cycles=D.cycles, seed=0)
  steps = [next(sampler)[0] for _ in range(int(sampler.batches_per_cycle.sum()) * D.cycles)]
  ax.scatter(np.arange(len(steps)), steps, s=1)
  ax.set(ylabel="log2 length", title=curriculum)
axes[-1].set_xlabel("step")
fig.tight_layout()
plt.show()
flops = {"concat-and-chunk": text.attention_flops([1 << D.kmax] * (D.tokens_per_step >> D.kmax), dim=64),
         **{f"DD 2^{k}": text.attention_flops([1 << k] * (D.tokens_per_step >> k), dim=64) for k in ks}}
print("attention FLOPs of one layer's step (width 64):", {k: f"{v:.2e}" for k, v in flops.items()})

# %% [markdown]
# ## Training: decomposition against concat-and-chunk
# The claim's runner with its three arms trained in lockstep on the same documents (on CPU a shorter
# run). Validation loss (held-out files, document mask, nats per byte) against tokens and against the
# attention FLOPs spent.

# %%
if SMALL:  # a shorter context, fewer tokens and steps: the curves' start
  CONFIG.train.update(steps=30, eval_every=10, warmup=5)
  CONFIG.data.update(kmax=8, tokens_per_step=1024, eval_rows=8)
dd_results = decomposition.run_all(CONFIG)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for method, arm in dd_results["per_method"].items():
  h = [r for r in arm["history"] if "val_loss" in r]
  axes[0].plot([r["tokens"] for r in h], [r["val_loss"] for r in h], marker="o", label=method)
  axes[1].plot([r["cum_attention_flops"] for r in h], [r["val_loss"] for r in h], marker="o", label=method)
  print(f"{method:12s} val loss {arm['val_loss']:.3f}, attention FLOPs x{arm['attention_flops_ratio']:.2f} of "
        f"concat's, step s {arm['step_seconds']:.1f}")
axes[0].set(xlabel="training tokens", ylabel="validation nats / byte")
axes[1].set(xlabel="attention FLOPs", xscale="log")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## MeCo: metadata, then a plain cooldown
# A MeCo row: the package prefix of each piece is in the tokens but out of the loss. The run below
# trains plain, MeCo on 85% of the steps and MeCo on all steps; the loss is measured on plain text, and,
# for conditional inference, with each held-out piece's true package prefix.

# %%
row = text.meco_pack(pieces[:3], ["json"] * 3, 96)
print(bytes(row.tokens[0].astype(np.uint8)).decode("utf-8", "replace"))
print("loss mask:", row.loss_mask[0].astype(int).tolist()[:40], "...")
MCONFIG = meco_stdlib.get_config()
if SMALL:
  MCONFIG.train.update(steps=30, eval_every=10, warmup=5)
  MCONFIG.data.update(seq_len=128, rows=8, eval_rows=8)
meco_results = meco.run_all(MCONFIG)
fig, ax = plt.subplots(figsize=(7, 3.5))
for arm, r in meco_results["per_arm"].items():
  h = [x for x in r["history"] if "val_loss" in x]
  ax.plot([x["tokens"] for x in h], [x["val_loss"] for x in h], marker="o", label=arm)
  if r["switch_step"] is not None:
    ax.axvline(h[0]["tokens"] / h[0]["step"] * r["switch_step"], ls=":", color=ax.lines[-1].get_color())
  print(f"{arm:10s} steps {r['steps']}: val loss {r['val_loss']:.3f}, with true metadata "
        f"{r['val_loss_conditioned']:.3f}")
ax.set(xlabel="training tokens", ylabel="validation nats / byte (plain)")
ax.legend()
plt.show()

# %% [markdown]
# ## Self-generated tokens
# One teacher-forced pass gives the model's argmax token at every position; with probability p an
# input is replaced by it (never a piece's first token), the targets stay. Below, p = 0.5 on one row of
# an untrained model, then the claim's two arms: free-running byte accuracy of greedy continuations.

# %%
SCONFIG = selfgen_stdlib.get_config()
model = lm.make_model(SCONFIG.model, 0)
x = np.frombuffer(b"def f(x):\n    return x + 1\n", np.uint8).astype(np.int32)[None]
out = text.self_generated_inputs(x, model(x), 0.5, key=jax.random.key(0))
print("replaced:", np.asarray(out.replaced)[0].astype(int).tolist())
if SMALL:
  SCONFIG.train.update(steps=30, eval_every=15, warmup=5)
  SCONFIG.data.update(seq_len=128, rows=8, eval_prompts=16)
sg_results = self_generated.run_all(SCONFIG)
for arm, r in sg_results["per_arm"].items():
  print(f"{arm:16s} free-running byte accuracy {r['free_running_accuracy']:.3f}, matched prefix "
        f"{r['matched_prefix']:.2f} bytes, teacher-forced loss {r['val_loss']:.3f}")

# %% [markdown]
# ## Repository context, masked spans, weak labels
# Four more objectives of `jaxdyn.text`, each with its own claim (`make repro CLAIM=<name>`), shown here
# on one example each.
#
# - **RepoFusion** (Shrivastava et al., https://arxiv.org/abs/2306.10998): context proposals for a
#   completion point from the same package (files it imports, siblings, similar names, its own prior
#   lines, never its lines after the point), concatenated for the decoder-only model with the loss on
#   the target line only (`repofusion_context_helps`).

# %%
corpus = load_stdlib_corpus("all")
target = corpus.names.index("json/decoder.py")
lines = text.completion_lines(corpus.documents[target])
line = int(lines[len(lines) // 2])
proposals = text.repo_proposals(corpus.documents, corpus.names, target, line, packages=corpus.packages, budget=96)
prefix, completion = text.split_at_point(corpus.documents[target], line)
example = text.encode_completion(proposals, prefix, completion, seq_len=512)
print([(p.kind, p.source, len(p.tokens)) for p in proposals])
shown = np.append(example.inputs[:example.length], example.targets[example.length - 1])
print(bytes(np.minimum(shown, 255).astype(np.uint8)).decode("utf-8", "replace")[-700:])
print("loss on", int(example.weights.sum()), "bytes: the target line", repr(bytes(completion.astype(np.uint8))))

# %% [markdown]
# - **MaskSearch's RAMP** (Wu et al., https://arxiv.org/abs/2505.20285): salient spans of a window
#   (identifiers that are not keywords or builtins, numbers) masked, passages retrieved from other files
#   by TF-IDF, the model trained to fill the spans; the span count grows over training
#   (`masksearch_retrieval_helps`).

# %%
start = bytes(corpus.documents[target]).index(b"def JSONObject")
window = corpus.documents[target][start:start + 160]
spans = text.salient_spans(window)
chosen = text.choose_spans(spans, 2, seed=0)
masked = text.mask_spans(window, chosen)
print(bytes(np.where(masked.tokens == text.MASK_ID, ord("_"), masked.tokens).astype(np.uint8)).decode())
print("answers:", [bytes(a.astype(np.uint8)) for a in masked.answers])
passages = [bytes(d[:400]).decode("utf-8", "replace") for d in corpus.documents[:400]]
retriever = text.LexicalRetriever(passages)
hits, scores = retriever.search(bytes(window).decode("utf-8", "replace"), 2)
print("retrieved:", [corpus.names[int(i)] for i in hits], np.round(np.asarray(scores), 3))
print("span count by step (curriculum):", [text.span_curriculum(t, 400) for t in range(0, 400, 50)])

# %% [markdown]
# - **Adversarial-MidiBERT** (https://arxiv.org/abs/2407.08306): a masker scores tokens, the top-scored
#   are masked (80/10/10), and the mask book freezes positions the masker keeps choosing, so tokens that
#   can be recovered without context (bias carriers) are masked less (`adversarial_masking_reduces_bias`).
# - **Noise-aware training** (Sarkhel et al., https://arxiv.org/abs/2404.00488): identifier kinds of
#   Python source, exact from `ast` and weak from a regex heuristic, the weak labels' loss weighted by an
#   annotator's calibrated confidence (`nat_beats_weak_labels`).

# %%
scores = jax.random.uniform(jax.random.key(0), (1, 12))
selected = text.adversarial_selection(scores, key=jax.random.key(1), ratio_range=(0.25, 0.25), max_rate=1.0)
print("masker scores", np.round(np.asarray(scores[0]), 2), "\nmasked", np.asarray(selected[0]).astype(int))
src = "import os\nclass Reader(Base):\n  def read(self, path=None):\n    return Parser(os.path.join(path))\n"
exact, weak = text.identifier_kinds(src), text.weak_identifier_kinds(src)
for name in ("os", "Reader", "Base", "read", "self", "path", "Parser", "join"):
  i = src.index(name)
  print(f"{name:7s} exact {text.IDENTIFIER_KINDS[exact[i]]:9s} weak {text.IDENTIFIER_KINDS[weak[i]]}")
