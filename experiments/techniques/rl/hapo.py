"""HAPO against correctness-only GRPO from the same SFT policy on multi-digit addition, as a claim ``runner``.

`hapo_runner(config, workdir)` follows Huang et al. ("HAPO: Training Language Models to Reason Concisely
via History-Aware Policy Optimization", https://arxiv.org/abs/2505.11225) at toy scale, with
``c = config.rl``. One seed:

1. **SFT** (`experiments.techniques.rl.addition.train_sft`). A byte-level `jaxdyn.models.Transformer`
   (`experiments.techniques.text.lm.make_model`) is
   trained by next-token prediction on the completions (`jaxdyn.rl.completion_mask`: no loss on the
   prompt) of ``c.sft_steps`` batches of fresh addition problems (``c.digits`` digits), each written at a
   verbosity drawn with probabilities ``c.verbosity_probs`` (answer only; column sums; columns with
   carries: `jaxdyn.rl.format_completion`), a share ``c.error_rate`` of them with a wrong answer
   (off by 1 .. 9). Verbose traces are the most frequent and the most accurate, so the policy starts
   long, and there is something to shorten.
2. **RL**, from that policy, for each arm (both arms of a seed share the SFT policy and the draws of
   prompts): ``c.rl_steps`` steps; each draws ``c.prompts_per_step`` prompts of a fixed training set of
   ``c.num_prompts`` problems (prompt ids for the history), samples ``c.group_size`` completions of each
   at temperature 1 (`jaxdyn.models.generate`, KV cache, at most ``c.max_new_tokens``), scores them with
   the exact verifier (`jaxdyn.rl.verify`), and takes one step of the clipped surrogate
   (`jaxdyn.rl.clipped_surrogate_loss`, on-policy so the ratio is 1, token-level averaging) with
   GRPO's group advantages (`jaxdyn.rl.group_advantages`) and a k3 KL penalty ``c.kl_coef`` to the SFT
   policy. Rewards: ``"correctness"``: 1 / 0; ``"hapo"``: `jaxdyn.rl.hapo_reward` (correctness plus the
   history-aware cosine length reward, the history updated after each batch by
   `jaxdyn.rl.hapo_update_history`). Length = bytes of the completion before its end token (the
   authors count the completion's tokens; here a token is a byte).
3. **Evaluation** on ``c.eval_problems`` held-out problems, greedy decoding: accuracy and mean length
   (every completion, correct or not), for the SFT policy and after RL.

The arms of a seed share one run (`experiments.claims.shared_run`). Each arm's RL state, HAPO's per-prompt
history included, is checkpointed every `CHECKPOINT_EVERY` steps beside the shared run's results, so a run that
crashes resumes at its last checkpoint with the same draws (the SFT stage, about a minute, is recomputed).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments import checkpointing
from experiments.claims import caches_results, one_arm
from experiments.techniques.rl import addition
from jaxdyn import rl

ARMS = ("correctness", "hapo")
CHECKPOINT_EVERY = 10  # RL steps between checkpoints of an arm (a module constant: not part of the config's hash)


def train_rl(model, ref, c, arm: str, seed: int, checkpoint_dir=None) -> list[dict[str, float]]:
  """Step 2 of the module docstring, in place on ``model``; the per-step log.

  With ``checkpoint_dir``, the RL state (parameters, optimizer state, HAPO's per-prompt history), the prompt
  sampler's state and the log are checkpointed every `CHECKPOINT_EVERY` steps and at the end
  (`experiments.checkpointing.Checkpointer`), and a run that finds a checkpoint there continues from it with the
  same draws as an uninterrupted run.
  """
  problems = rl.addition_problems(c.num_prompts, digits=c.digits, seed=seed + 1000)
  prompts = [rl.format_prompt(int(x), int(y), digits=c.digits) for x, y in zip(problems.a, problems.b)]
  prompt_tokens = rl.encode(prompts, length=addition.prompt_len(c.digits))
  plen = prompt_tokens.shape[1]
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(c.rl_learning_rate))
  opt_state = opt.init(params)
  history = rl.hapo_init(c.num_prompts)

  step = addition.make_grpo_step(graphdef, rest, ref, opt, prompt_len=plen, kl_coef=c.kl_coef)

  rng = np.random.default_rng([seed, 2])  # the same prompt draws in both arms
  key = jax.random.key(seed)
  log, start, ckpt = [], 0, None
  if checkpoint_dir is not None:
    ckpt = checkpointing.Checkpointer(checkpoint_dir, max_to_keep=1)
    restored = ckpt.restore_latest({"params": params, "opt_state": opt_state, "history": history})
    if restored is not None:
      start, log = restored.step, list(restored.meta["log"])
      params, opt_state, history = (restored.state[k] for k in ("params", "opt_state", "history"))
      rng.bit_generator.state = restored.meta["data"]
  try:
    for i in range(start, c.rl_steps):
      ids = np.repeat(rng.choice(c.num_prompts, c.prompts_per_step, replace=False), c.group_size)
      out, comps = addition.sample(nnx.merge(graphdef, params, rest), prompt_tokens[ids],
                                   max_new_tokens=c.max_new_tokens, key=jax.random.fold_in(key, i))
      correct = np.asarray([rl.verify(prompts[j], a) for j, a in zip(ids, comps)])
      lengths = np.asarray([len(a) for a in comps], np.float32)
      if arm == "hapo":
        rewards = rl.hapo_reward(history, jnp.asarray(ids), jnp.asarray(lengths), jnp.asarray(correct),
                                 length_weight=c.length_weight)
        history = rl.hapo_update_history(history, jnp.asarray(ids), jnp.asarray(lengths), jnp.asarray(correct))
      else:
        rewards = jnp.asarray(correct, jnp.float32)
      adv = rl.group_advantages(rewards, c.group_size)
      params, opt_state, loss, kl = step(params, opt_state, jnp.asarray(out), adv)
      log.append({"step": i + 1, "loss": float(loss), "kl": float(kl), "reward": float(jnp.mean(rewards)),
                  "accuracy": float(correct.mean()), "mean_length": float(lengths.mean())})
      if ckpt is not None and ((i + 1) % CHECKPOINT_EVERY == 0 or i + 1 == c.rl_steps):
        ckpt.save(i + 1, {"params": params, "opt_state": opt_state, "history": history},
                  {"data": rng.bit_generator.state, "elapsed_s": 0.0, "log": log})
  finally:  # a save under way completes, also on a crash: what was saved is not lost
    if ckpt is not None:
      ckpt.manager.wait_until_finished()
  if ckpt is not None:
    ckpt.check()
  nnx.update(model, params)
  return log


def run_all(config, checkpoint_dir=None) -> dict[str, Any]:
  """The SFT policy of one seed and both RL arms from it (each arm checkpointed under ``checkpoint_dir/<arm>``)."""
  c = config.rl
  t0 = time.monotonic()
  sft, sft_history = addition.train_sft(c, config.seed)
  sft_eval = addition.evaluate(sft, c)
  sft_seconds = time.monotonic() - t0
  arms = {}
  for arm in ARMS:
    t1 = time.monotonic()
    model = nnx.clone(sft, arrays=True)
    log = train_rl(model, sft, c, arm, config.seed,
                   None if checkpoint_dir is None else pathlib.Path(checkpoint_dir) / arm)
    ev = addition.evaluate(model, c)
    arms[arm] = {**ev, "log": log, "rl_seconds": round(time.monotonic() - t1, 2),
                 "length_ratio_to_sft": ev["mean_length"] / max(sft_eval["mean_length"], 1e-9)}
  for arm in arms.values():
    arm["length_ratio_to_correctness"] = arm["mean_length"] / max(arms["correctness"]["mean_length"], 1e-9)
    arm["accuracy_minus_correctness"] = arm["accuracy"] - arms["correctness"]["accuracy"]
  return {"per_arm": arms, "sft": {**sft_eval, "history": sft_history}, "sft_accuracy": sft_eval["accuracy"],
          "sft_mean_length": sft_eval["mean_length"], "sft_seconds": round(sft_seconds, 2)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.rl.arm``) for one seed, from the seed's shared run of both arms."""
  return one_arm(run_all, config, workdir, arm_key="rl.arm", arms=ARMS, prefix="hapo", drop=("sft",), checkpoints=True)


hapo_runner = caches_results(run)
