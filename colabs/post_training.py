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
# # Post-training a small policy: HAPO, SCoRe, M-STaR, ToMAP and value drift
#
# The cores of five post-training papers in `jaxdyn.rl`, each shown on a task a byte-level Transformer
# learns on a CPU: 2-digit addition written as bytes, with traces of three verbosities and an exact
# verifier (`addition_problems`, `format_completion`, `verify`), sampled with the KV cache under `jit`
# (`jaxdyn.models.generate`) and trained with GRPO's group-relative advantages and the clipped surrogate
# (`group_advantages`, `clipped_surrogate_loss`).
#
# - **HAPO** (Huang, Zhang, Cardie, 2025, https://arxiv.org/abs/2505.11225): a per-prompt history of the
#   shortest correct answer and a cosine length reward against it (`hapo_reward`, `hapo_update_history`).
# - **SCoRe** (Kumar et al., 2024, https://arxiv.org/abs/2409.12917): two attempts per problem, stage I
#   keeps the first attempt near the base policy, stage II adds the bonus alpha (r2 - r1).
# - **M-STaR** (Liu et al., 2024, https://arxiv.org/abs/2412.17451): sample, select correct answers,
#   fine-tune, repeat, with the sampling temperature balanced by Reward-Pass@2.
# - **ToMAP** (Han, Liu, You, 2025, https://arxiv.org/abs/2505.22961): a stance predictor whose view of
#   the opponent the persuader reads, on a toy persuasion game.
# - **Value drift** (Bhatia et al., 2025, https://arxiv.org/abs/2510.26707): a probe set's choice
#   probabilities through SFT and DPO on synthetic preference data with a controlled value.
#
# Each section runs the claim's own runner with smaller settings on CPU; the claims themselves are in
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
import matplotlib.pyplot as plt
import numpy as np

from configs import hapo_addition, mstar_addition, score_addition, tomap_dialogue, value_drift_synthetic
from experiments.techniques.rl import hapo, mstar, score, tomap, value_drift_study
from jaxdyn import rl

# %%
# Runtime. Small settings on CPU, and when `make notebooks` or the tests run the notebook
# (JAXDYN_NOTEBOOK_SMALL=1); JAXDYN_NOTEBOOK_SMALL=0 asks for the full settings anyway. On CPU it
# prints a warning that says how to switch the Colab runtime to a GPU or TPU.
from experiments import notebooks

SMALL = notebooks.runtime_settings()

# %% [markdown]
# ## The task
# A prompt, and one completion of each verbosity; verbosity 2 writes every column with its carry. The
# verifier reads the digits after the last `#`.

# %%
prompt = rl.format_prompt(47, 85, digits=2)
for v in (0, 1, 2):
  completion = rl.format_completion(47, 85, digits=2, verbosity=v)
  print(prompt + completion, rl.verify(prompt, completion))
print(prompt + rl.format_completion(47, 85, digits=2, verbosity=2, error=3), "(a wrong trace)")

# %% [markdown]
# ## HAPO against correctness-only RL
# SFT on mixed-verbosity traces, then GRPO from the same policy with the correctness reward or HAPO's;
# the curves are the sampled training batches' mean length and accuracy. The history of a prompt is the
# length of its shortest correct answer so far, so HAPO's length reward only starts once prompts come back.

# %%
HCONFIG = hapo_addition.get_config()
HCONFIG.rl.num_prompts = 32
if SMALL:
  HCONFIG.rl.update(sft_steps=200, rl_steps=10, eval_problems=32)
hapo_results = hapo.run_all(HCONFIG)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for arm, r in hapo_results["per_arm"].items():
  steps = [x["step"] for x in r["log"]]
  axes[0].plot(steps, [x["mean_length"] for x in r["log"]], label=arm)
  axes[1].plot(steps, [x["accuracy"] for x in r["log"]], label=arm)
  print(f"{arm:12s} greedy accuracy {r['accuracy']:.3f}, mean length {r['mean_length']:.1f} bytes")
print(f"SFT policy   greedy accuracy {hapo_results['sft_accuracy']:.3f}, mean length "
      f"{hapo_results['sft_mean_length']:.1f} bytes")
axes[0].set(xlabel="RL step", ylabel="sampled mean length (bytes)")
axes[1].set(xlabel="RL step", ylabel="sampled accuracy")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## SCoRe: two attempts, and the gain of the second
# The second turn's prompt is the problem, the first attempt and a fixed instruction. A base policy that
# can take a second turn (but does not use the first), then SFT on synthetic correction traces, or SCoRe:
# stage I keeps the first attempt at the base policy while training the second, stage II trains both with
# the bonus alpha (r2 - r1). Bars: greedy accuracy of each attempt on held-out problems.

# %%
print(rl.score_turn2_prompt(prompt, b"#122"))
SCONFIG = score_addition.get_config()
if SMALL:
  SCONFIG.rl.update(sft_steps=300, correction_steps=10, stage1_steps=2, stage2_steps=4, prompts_per_step=4,
                    group_size=4, eval_problems=16)
score_results = score.run_all(SCONFIG)
rows = {"base": score_results["base"], **score_results["per_arm"]}
fig, ax = plt.subplots(figsize=(7, 3))
x = np.arange(len(rows))
ax.bar(x - 0.2, [r["acc_t1"] for r in rows.values()], 0.4, label="attempt 1")
ax.bar(x + 0.2, [r["acc_t2"] for r in rows.values()], 0.4, label="attempt 2")
ax.set(xticks=x, xticklabels=list(rows), ylabel="greedy accuracy")
ax.legend()
plt.show()
for name, r in rows.items():
  print(f"{name:16s} gain {r['gain']:+.3f}  wrong->right {r['delta_i_to_c']:.3f}  right->wrong {r['delta_c_to_i']:.3f}")

# %% [markdown]
# ## M-STaR: self-evolving training with temperature balancing
# From a weak SFT policy, every few steps the current policy answers labelled training prompts, a small
# reward model re-ranks the correct answers, the best two per prompt are fine-tuned on. The auto arm picks
# each regeneration's sampling temperature by Reward-Pass@2 on held-out prompts; the fixed arm samples at 1.0.

# %%
MCONFIG = mstar_addition.get_config()
if SMALL:
  MCONFIG.rl.update(sft_steps=200, num_prompts=80, heldout_prompts=16, rm_steps=30, evolve_steps=10, interval=5,
                    eval_problems=32)
mstar_results = mstar.run_all(MCONFIG)
plt.figure(figsize=(7, 3))
for arm in ("fixed", "auto"):
  regen = mstar_results["per_arm"][arm]["regenerations"]
  plt.plot([r["step"] for r in regen], [r["temperature"] for r in regen], marker="o", label=arm)
plt.xlabel("loop step")
plt.ylabel("sampling temperature")
plt.legend()
plt.show()
for arm, r in mstar_results["per_arm"].items():
  print(f"{arm:12s} greedy accuracy {r['accuracy']:.3f}")

# %% [markdown]
# ## ToMAP: a persuader that reads a stance predictor
# The opponent holds hidden beliefs in 4 counter-claims; a rebuttal of a held one lowers it, one of an
# unheld one backfires. A stance predictor trained on random games gives the persuader its view of the
# opponent; both persuaders are trained by REINFORCE on the authors' persuasion reward.

# %%
TCONFIG = tomap_dialogue.get_config()
if SMALL:
  TCONFIG.tomap.update(predictor_games=800, predictor_steps=200, rl_steps=60, games_per_step=64, eval_games=1000)
tomap_results = tomap.run_all(TCONFIG)
names = list(tomap_results["per_arm"])
plt.figure(figsize=(7, 3))
plt.bar(names, [tomap_results["per_arm"][n]["rise_rate"] for n in names])
plt.ylabel("share of games with agreement raised")
plt.xticks(rotation=15)
plt.show()

# %% [markdown]
# ## Value drift through SFT and DPO
# A base model with no stance, SFT on demonstrations that answer "safe" 80% of the time, then DPO on pairs
# with no value gap (half prefer "safe") or a gap against the SFT value (20% do). The probe is 200
# held-out prompts; the dashed line is the end of SFT.

# %%
DCONFIG = value_drift_synthetic.get_config()
if SMALL:
  DCONFIG.drift.update(base_steps=60, sft_steps=100, dpo_steps=100)
drift_results = value_drift_study.run_all(DCONFIG)
plt.figure(figsize=(7, 3.5))
for arm, r in drift_results["per_arm"].items():
  plt.plot(r["probe_steps"], r["probe_value_prob"], label=arm)
  print(f"{arm:7s} SFT net drift {r['sft_net']:.3f}, DPO net drift {r['po_net']:.3f}, "
        f"SFT's share {r['sft_share_of_net']:.2f}")
plt.axvline(DCONFIG.drift.sft_steps, ls="--", color="k", lw=1)
plt.xlabel("step (SFT, then DPO)")
plt.ylabel("probe p(value)")
plt.legend()
plt.show()
