r"""M-STaR's self-evolving loop from an SFT policy on multi-digit addition, fixed or automatic temperature, as a claim
``runner``.

`mstar_runner(config, workdir)` follows Liu et al. ("Diving into Self-Evolving Training for Multimodal Reasoning",
https://arxiv.org/abs/2412.17451) at toy scale, with ``c = config.rl``. One seed:

1. **SFT** (`experiments.techniques.rl.addition.train_sft`): the pre-evolved policy, a byte-level Transformer
   fine-tuned on ``c.sft_steps`` batches of addition traces of three verbosities, ``c.error_rate`` of them wrong.
2. **Labelled prompts.** A fixed training set of ``c.num_prompts`` problems and a held-out set of
   ``c.heldout_prompts`` (seeds ``seed + 1000`` and ``seed + 2000``) whose answers are known, as M-STaR's training
   queries are: the exact verifier (`jaxdyn.rl.verify`) checks the final answer. "Without new labels" means that no
   new trace is written for the loop; it trains only on the policy's own selected answers.
3. **Reward model** (`jaxdyn.rl.RewardModel`, a linear head on a copy of the SFT policy): trained for
   ``c.rm_steps`` Adam steps (``c.rm_learning_rate``, batches of ``c.rm_batch``) with the pointwise loss
   (`jaxdyn.rl.reward_pointwise_loss`) on the verifier's labels of the SFT policy's answers to every training
   prompt, sampled once at each candidate temperature ``c.temperatures``, so it has seen answers of every
   temperature it will score. An outcome scorer, where the paper trains a process reward model (derived here).
4. **Self-evolving loop** (the arms ``"fixed"`` and ``"auto"``; both start from the SFT policy and use the same
   prompt draws and sampling keys): ``c.evolve_steps`` steps under `jaxdyn.rl.evolve_schedule` with
   ``mode="continuous"`` and ``interval = c.interval`` (the paper's choice: the weights and the Adam state carry
   over, data are regenerated every ``interval`` steps by the current policy). At each regeneration:

   - the sampling temperature is ``c.fixed_temperature`` (``"fixed"``), or (``"auto"``, the automatic balancing)
     `jaxdyn.rl.choose_temperature` over ``c.temperatures``, each candidate scored by Reward-Pass@2
     (`jaxdyn.rl.reward_pass_at_k`, ``k = 2``) of ``c.group_size`` answers to every held-out prompt, ranked by
     the reward model and checked by the verifier;
   - ``c.interval * c.prompts_per_step`` training prompts are drawn without replacement, ``c.group_size``
     answers sampled for each at that temperature (`jaxdyn.models.generate`, at most ``c.max_new_tokens``),
     checked by the verifier and scored by the reward model; `jaxdyn.rl.select_answers` keeps the ``c.top_k``
     best-scored correct answers of each prompt (the paper's re-rank of correct answers by its reward model).
     An answer counts as correct only when it ends with the end token (a truncated answer is not a finished
     one: derived here).

   Each step then takes one Adam step (``c.evolve_learning_rate``, constant, global-norm clip 1) of
   `jaxdyn.rl.selected_sft_loss` on the selected answers of ``c.prompts_per_step`` of those prompts.
5. **Evaluation** (`experiments.techniques.rl.addition.evaluate`): greedy accuracy and mean length on
   ``c.eval_problems`` held-out problems, for the SFT policy (the ``"pre_evolved"`` arm) and after each loop.

With the fixed temperature the fixed arm still measures Reward-Pass@2 at its own temperature on the held-out
prompts at each regeneration (logged, never used), so the two arms' monitors can be compared.

The arms of a seed share one run (`experiments.claims.shared_run`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results, one_arm
from experiments.techniques.rl import addition
from jaxdyn import rl
from jaxdyn.data import EOS_ID

ARMS = ("pre_evolved", "fixed", "auto")


def finished(tokens: np.ndarray, prompt_len: int) -> np.ndarray:
  """``(B,)`` bool: the completion's first special id (above 255) is the end token (the answer was finished)."""
  comp = np.asarray(tokens)[:, prompt_len:]
  special = comp > 255
  first = np.argmax(special, axis=1)
  return special.any(axis=1) & (comp[np.arange(len(comp)), first] == EOS_ID)


def answer_lengths(tokens: np.ndarray, prompt_len: int) -> np.ndarray:
  """``(B,)`` int32 tokens of each row up to and including its completion's first end token (all if none): the
  ``lengths`` `jaxdyn.rl.RewardModel` reads its score at."""
  tokens = np.asarray(tokens)
  comp = tokens[:, prompt_len:] == EOS_ID
  return np.where(comp.any(axis=1), prompt_len + np.argmax(comp, axis=1) + 1, tokens.shape[1]).astype(np.int32)


def verdicts(prompts: Sequence[bytes], tokens: np.ndarray, prompt_len: int) -> np.ndarray:
  """``(B,)`` bool: the verifier's verdict on each row's completion, and the answer was finished (`finished`)."""
  comps = addition.completions_of(tokens, prompt_len)
  ok = np.asarray([rl.verify(p, a) for p, a in zip(prompts, comps)], bool)
  return ok & finished(tokens, prompt_len)


def make_scorer(rm: rl.RewardModel) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
  """``score(tokens, lengths) -> (B,)`` NumPy scores of the reward model as it is now (jitted, parameters as
  arguments)."""
  graphdef, state = nnx.split(rm)

  @jax.jit
  def f(state, tokens, lengths):
    return nnx.merge(graphdef, state)(tokens, lengths)

  return lambda tokens, lengths: np.asarray(f(state, jnp.asarray(tokens), jnp.asarray(lengths)))


def train_reward_model(policy, c, prompts: Sequence[bytes], prompt_tokens: np.ndarray, seed: int):
  """Step 3 of the module docstring: the reward model and its log (loss, accuracy, share of correct answers)."""
  plen = prompt_tokens.shape[1]
  rm = rl.RewardModel(nnx.clone(policy, arrays=True), rngs=nnx.Rngs(seed + 7))
  key = jax.random.key(seed + 7)
  rows, labels = [], []
  for j, temp in enumerate(c.temperatures):
    out, _ = addition.sample(policy, prompt_tokens, max_new_tokens=c.max_new_tokens, key=jax.random.fold_in(key, j),
                             temperature=float(temp))
    rows.append(out)
    labels.append(verdicts(prompts, out, plen))
  tokens, labels = np.concatenate(rows), np.concatenate(labels).astype(np.float32)
  lengths = answer_lengths(tokens, plen)
  rm_graphdef, params, rest = nnx.split(rm, nnx.Param, ...)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(c.rm_learning_rate))
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state, tokens, lengths, labels):
    def loss_fn(p):
      return rl.reward_pointwise_loss(nnx.merge(rm_graphdef, p, rest)(tokens, lengths), labels)

    (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    u, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, u), opt_state, loss, aux["accuracy"]

  rng = np.random.default_rng([seed, 4])
  losses, accs = [], []
  for _ in range(c.rm_steps):
    i = rng.choice(len(tokens), c.rm_batch, replace=False)
    params, opt_state, loss, acc = step(params, opt_state, tokens[i], lengths[i], labels[i])
    losses.append(float(loss))
    accs.append(float(acc))
  nnx.update(rm, params)
  tail = max(1, c.rm_steps // 10)
  return rm, {"rm_examples": int(len(tokens)), "rm_correct_share": float(labels.mean()),
              "rm_final_loss": float(np.mean(losses[-tail:])), "rm_final_train_accuracy": float(np.mean(accs[-tail:]))}


def reward_pass_at_2(policy, score, c, prompts: Sequence[bytes], prompt_tokens: np.ndarray, temperature: float,
                     key: jax.Array) -> tuple[float, float, float]:
  """``(Reward-Pass@2, pass@K, sampled accuracy)`` of ``c.group_size`` answers at ``temperature`` to each of
  ``prompts``, ranked by ``score`` (the reward model) and checked by the verifier."""
  k = c.group_size
  ids = np.repeat(np.arange(len(prompts)), k)
  out, _ = addition.sample(policy, prompt_tokens[ids], max_new_tokens=c.max_new_tokens, key=key,
                           temperature=temperature)
  plen = prompt_tokens.shape[1]
  correct = verdicts([prompts[j] for j in ids], out, plen)
  s = score(out, answer_lengths(out, plen))
  rp2 = float(rl.reward_pass_at_k(jnp.asarray(correct), jnp.asarray(s, jnp.float32), k, k=min(2, k)))
  return rp2, float(correct.reshape(-1, k).any(axis=1).mean()), float(correct.mean())


def make_sft_step(graphdef, rest, opt: optax.GradientTransformation, *, prompt_len: int) -> Callable:
  """``step(params, opt_state, tokens, weights) -> (params, opt_state, loss)``, jitted: one step of
  `jaxdyn.rl.selected_sft_loss` on the completions (`jaxdyn.rl.completion_mask`) of the rows with weight 1."""

  @jax.jit
  def step(params, opt_state, tokens, weights):
    mask = rl.completion_mask(tokens, prompt_len)

    def loss_fn(p):
      return rl.selected_sft_loss(rl.policy_log_probs(nnx.merge(graphdef, p, rest), tokens), mask, weights)

    loss, g = jax.value_and_grad(loss_fn)(params)
    u, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, u), opt_state, loss

  return step


def evolve(model, score, c, arm: str, seed: int, train: tuple[Sequence[bytes], np.ndarray],
           heldout: tuple[Sequence[bytes], np.ndarray]) -> tuple[list[dict], list[dict]]:
  """Step 4 of the module docstring, in place on ``model``: ``(per-step log, per-regeneration log)``."""
  if arm not in ("fixed", "auto"):
    raise ValueError(f"arm: the loop runs for 'fixed' or 'auto', got {arm!r}")
  prompts, prompt_tokens = train
  plen = prompt_tokens.shape[1]
  k, per_step = c.group_size, c.prompts_per_step
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(c.evolve_learning_rate))
  opt_state = opt.init(params)
  step = make_sft_step(graphdef, rest, opt, prompt_len=plen)
  rng = np.random.default_rng([seed, 3])  # the same prompt draws in both arms
  key = jax.random.key(seed + 3)
  log, regen = [], []
  data = None
  for s in range(c.evolve_steps):
    e = rl.evolve_schedule(s, mode="continuous", interval=c.interval)
    if e.regenerate:
      policy = nnx.merge(graphdef, params, rest)
      mkey = jax.random.fold_in(key, 2 * e.iteration)
      if arm == "auto":
        stats = [reward_pass_at_2(policy, score, c, *heldout, float(t), jax.random.fold_in(mkey, j))
                 for j, t in enumerate(c.temperatures)]
        temp, _ = rl.choose_temperature(c.temperatures, [x[0] for x in stats])
        rec = {"step": s, "temperature": temp, "reward_pass_at_2": [x[0] for x in stats],
               "pass_at_k": [x[1] for x in stats], "sampled_accuracy": [x[2] for x in stats]}
      else:
        temp = float(c.fixed_temperature)
        rp2, pk, acc = reward_pass_at_2(policy, score, c, *heldout, temp, mkey)
        rec = {"step": s, "temperature": temp, "reward_pass_at_2": [rp2], "pass_at_k": [pk], "sampled_accuracy": [acc]}
      pid = np.repeat(rng.choice(len(prompts), c.interval * per_step, replace=False), k)
      out, _ = addition.sample(policy, prompt_tokens[pid], max_new_tokens=c.max_new_tokens,
                               key=jax.random.fold_in(key, 2 * e.iteration + 1), temperature=temp)
      correct = verdicts([prompts[j] for j in pid], out, plen)
      scores = score(out, answer_lengths(out, plen))
      weights = np.asarray(rl.select_answers(jnp.asarray(correct), k, jnp.asarray(scores, jnp.float32), top_k=c.top_k))
      rec.update(train_sampled_accuracy=float(correct.mean()), selected_share=float(weights.mean()),
                 prompts_with_selection=float(weights.reshape(-1, k).any(axis=1).mean()))
      regen.append(rec)
      data = (out, weights, correct)
    rows = slice((s - e.generator_step) * per_step * k, (s - e.generator_step + 1) * per_step * k)
    out, weights, correct = (x[rows] for x in data)
    params, opt_state, loss = step(params, opt_state, jnp.asarray(out), jnp.asarray(weights))
    log.append({"step": s + 1, "loss": float(loss), "selected": float(weights.sum()),
                "sampled_accuracy": float(correct.mean())})
  nnx.update(model, params)
  return log, regen


def labelled_prompts(c, seed: int) -> tuple[tuple[list[bytes], np.ndarray], tuple[list[bytes], np.ndarray]]:
  """The training and held-out prompt sets of one seed (step 2), each as ``(prompts, encoded prompts)``."""
  out = []
  for n, offset in ((c.num_prompts, 1000), (c.heldout_prompts, 2000)):
    p = rl.addition_problems(n, digits=c.digits, seed=seed + offset)
    prompts = [rl.format_prompt(int(x), int(y), digits=c.digits) for x, y in zip(p.a, p.b)]
    out.append((prompts, rl.encode(prompts, length=addition.prompt_len(c.digits))))
  return out[0], out[1]


def check_settings(c) -> None:
  """Argument checks of the loop's settings (one message naming the key)."""
  temps = [float(t) for t in c.temperatures]
  rl.choose_temperature(temps, [0.0] * len(temps))  # raises on a bad candidate set
  if not float(c.fixed_temperature) > 0:
    raise ValueError(f"rl.fixed_temperature: must be > 0, got {c.fixed_temperature!r}")
  if c.evolve_steps < 1 or c.interval < 1:
    raise ValueError(f"rl.evolve_steps, rl.interval: must be >= 1, got {c.evolve_steps}, {c.interval}")
  if c.interval * c.prompts_per_step > c.num_prompts:
    raise ValueError(f"rl.num_prompts: must hold one iteration's prompts (interval * prompts_per_step = "
                     f"{c.interval * c.prompts_per_step}), got {c.num_prompts}")
  if not 1 <= c.top_k <= c.group_size:
    raise ValueError(f"rl.top_k: must lie in [1, group_size={c.group_size}], got {c.top_k}")
  if c.rm_batch > len(temps) * c.num_prompts:
    raise ValueError(f"rl.rm_batch: must be at most the reward model's examples ({len(temps) * c.num_prompts}), "
                     f"got {c.rm_batch}")


def run_all(config) -> dict[str, Any]:
  """The SFT policy of one seed, its reward model and both loops from it."""
  c = config.rl
  check_settings(c)
  t0 = time.monotonic()
  sft, sft_history = addition.train_sft(c, config.seed)
  sft_eval = addition.evaluate(sft, c)
  sft_seconds = time.monotonic() - t0
  train, heldout = labelled_prompts(c, config.seed)
  t1 = time.monotonic()
  rm, rm_log = train_reward_model(sft, c, *train, config.seed)
  score = make_scorer(rm)
  rm_seconds = time.monotonic() - t1
  arms = {"pre_evolved": {**sft_eval, "loop_seconds": 0.0, "mean_temperature": float("nan")}}
  for arm in ("fixed", "auto"):
    t2 = time.monotonic()
    model = nnx.clone(sft, arrays=True)
    log, regen = evolve(model, score, c, arm, config.seed, train, heldout)
    ev = addition.evaluate(model, c)
    arms[arm] = {**ev, "log": log, "regenerations": regen, "loop_seconds": round(time.monotonic() - t2, 2),
                 "mean_temperature": float(np.mean([r["temperature"] for r in regen])),
                 "selected_share": float(np.mean([r["selected_share"] for r in regen]))}
  for arm in arms.values():
    arm["accuracy_minus_pre_evolved"] = arm["accuracy"] - sft_eval["accuracy"]
    arm["accuracy_minus_fixed"] = arm["accuracy"] - arms["fixed"]["accuracy"]
  return {"per_arm": arms, "sft": {**sft_eval, "history": sft_history}, "sft_accuracy": sft_eval["accuracy"],
          "sft_mean_length": sft_eval["mean_length"], "sft_seconds": round(sft_seconds, 2), **rm_log,
          "rm_seconds": round(rm_seconds, 2)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.rl.arm``) for one seed, from the seed's shared run of every arm."""
  return one_arm(run_all, config, workdir, arm_key="rl.arm", arms=ARMS, prefix="mstar", drop=("sft",))


mstar_runner = caches_results(run)
