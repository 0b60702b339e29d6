r"""SCoRe against SFT on correction traces from the same two-turn base policy, as a claim ``runner``.

`score_runner(config, workdir)` follows Kumar et al. ("Training Language Models to Self-Correct via Reinforcement
Learning", https://arxiv.org/abs/2409.12917) at toy scale on the addition task, with ``c = config.rl``. An episode
is two attempts at one problem ``x``: ``y1``, then ``y2`` from the second turn's prompt ``x + y1 + p`` with the
fixed instruction ``p = jaxdyn.rl.SCORE_INSTRUCTION`` (`jaxdyn.rl.score_sample`). One seed:

1. **Base policy** (`train_base`): a byte-level `jaxdyn.models.Transformer` fine-tuned for ``c.sft_steps`` Adam
   steps on batches of fresh problems (``c.digits`` digits, verbosities drawn with ``c.verbosity_probs``, a share
   ``c.error_rate`` of the traces with a wrong answer). A share ``1 - c.two_turn_share`` of each batch is
   single-turn rows (`experiments.techniques.rl.addition.sft_batch`: loss on the completion); the rest is
   two-turn rows ``x, y1, p, y2`` with ``y1`` and ``y2`` two *independent* traces of the same problem (each its
   own verbosity and error draw) and the loss on ``y2`` only (`base_batch`). So the base policy knows the
   two-turn format, and its second attempt is a fresh attempt that does not depend on the first:
   ``P(y2 right | y1 wrong) = P(y2 right | y1 right)`` in its data. Under greedy decoding it then answers
   turn 2 as it answered turn 1, and its self-correction gain ``acc@t2 - acc@t1`` is near 0: like the paper's
   starting point, a policy that can take a second turn but does not self-correct (the paper's prompted Gemini
   1.5 Flash even loses points at turn 2 on MATH). Derived here: the paper starts from instruction-tuned Gemini
   models prompted to correct themselves; a byte-level toy policy has to be taught the format.
2. **SFT on corrections** (arm ``"sft_corrections"``, "Pair-SFT" in the paper): from the base policy,
   ``c.correction_steps`` Adam steps (``c.correction_learning_rate``) of cross-entropy on the second attempt of
   `jaxdyn.rl.score_sft_corrections` rows, ``x, y1 (wrong: the steps of the true sum, the answer off by
   1 .. 9), p, y2 (correct)``, fresh problems each batch, verbosities drawn as in step 1 (`correction_batch`).
   The wrong first attempts are the task's synthetic ones, not the policy's own mistakes: the distribution
   shift the paper blames for this baseline's small gains.
3. **SCoRe** (arm ``"score"``), from the base policy: ``c.stage1_steps`` steps of stage I, then
   ``c.stage2_steps`` steps of stage II. Each step draws ``c.prompts_per_step`` problems of a fixed training set
   of ``c.num_prompts`` and samples ``c.group_size`` two-attempt episodes of each at temperature 1 (at most
   ``c.max_new_tokens`` per attempt), scores both attempts with the exact verifier (`jaxdyn.rl.score_rewards`)
   and takes one on-policy Adam step (``c.rl_learning_rate``, global-norm clip 1), the reference policy being
   the base policy throughout:

   - stage I (`jaxdyn.rl.score_stage1_loss`, the paper's Eq. 3): the clipped surrogate on the second attempts
     with GRPO group advantages of ``r2`` (`jaxdyn.rl.group_advantages`), plus ``beta2`` times the first
     attempts' k3 KL to the base policy;
   - stage II (the paper's Eq. 4): the clipped surrogate on both attempts' rows stacked, advantages from the
     shaped rewards ``R1 = r1``, ``R2 = r2 + alpha (r2 - r1)`` (`jaxdyn.rl.score_stage2_rewards`, each
     attempt's advantages within its group), with a k3 KL penalty ``beta1`` to the base policy.

   ``alpha``, ``beta1``, ``beta2`` are the paper's (`jaxdyn.rl.SCORE_ALPHA`, ``SCORE_BETA1``, ``SCORE_BETA2``).
   Derived here: GRPO's group baseline in place of the paper's REINFORCE baseline, one on-policy step per batch
   (so the clip is inactive), and the step counts and learning rate (the paper's are for Gemini).
4. **Evaluation** (`evaluate_two_turn`), greedy decoding of both turns on ``c.eval_problems`` held-out problems
   (`experiments.techniques.rl.addition.eval_prompts`): ``acc_t1``, ``acc_t2``, the gain
   ``acc_t2 - acc_t1`` (the paper's Delta(t1, t2)), ``delta_i_to_c`` (share of problems wrong at t1 and right at
   t2) and ``delta_c_to_i`` (right, then wrong) (so ``gain = delta_i_to_c - delta_c_to_i``), and
   ``changed`` (share of second attempts that differ from the first), for the base policy, each arm, and SCoRe
   after stage I.

The arms of a seed share one run (`experiments.claims.shared_run`): one base policy, the same draws of prompts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results, one_arm
from experiments.techniques.rl import addition
from experiments.techniques.text import lm
from jaxdyn import rl

ARMS = ("sft_corrections", "score")


def _draw_traces(c, rng: np.random.Generator, a: np.ndarray, b: np.ndarray) -> list[bytes]:
  """One trace per problem at a drawn verbosity, a share ``c.error_rate`` of them with a wrong answer (+1 .. 9),
  the draws of `experiments.techniques.rl.addition.sft_batch`."""
  n = len(a)
  verbosity = rng.choice(3, size=n, p=np.asarray(c.verbosity_probs) / np.sum(c.verbosity_probs))
  errors = np.where(rng.random(n) < c.error_rate, rng.integers(1, 10, n), 0)
  return [rl.format_completion(int(x), int(y), digits=c.digits, verbosity=int(v), error=int(e))
          for x, y, v, e in zip(a, b, verbosity, errors)]


def base_batch(c, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """One batch of the base policy's SFT (step 1 of the module docstring).

  The first ``sft_batch - k`` rows are `experiments.techniques.rl.addition.sft_batch`'s single-turn rows, the last
  ``k = round(c.two_turn_share * c.sft_batch)`` two-turn rows ``[BOS] x y1 p y2 [EOS]`` of fresh problems with
  ``y1``, ``y2`` independent traces (`_draw_traces`) and weights on ``y2`` and its EOS only
  (`jaxdyn.rl.score_episode`'s ``second_mask``).
  """
  batch = addition.sft_batch(c, rng)
  k = int(round(c.two_turn_share * c.sft_batch))
  if k == 0:
    return batch
  a, b = rng.integers(0, 10**c.digits, size=(2, k))
  prompts = [rl.format_prompt(int(x), int(y), digits=c.digits) for x, y in zip(a, b)]
  ep = rl.score_episode(prompts, _draw_traces(c, rng, a, b), _draw_traces(c, rng, a, b), length=c.length)
  out = {key: np.array(v) for key, v in batch.items()}
  out["inputs"][-k:], out["targets"][-k:] = ep.second_tokens[:, :-1], ep.second_tokens[:, 1:]
  out["weights"][-k:] = ep.second_mask
  return out


def train_base(c, seed: int):
  """The base policy of one seed and its training log (``c.sft_steps`` Adam steps of `base_batch`)."""
  model = lm.make_model(c.model, seed)
  rng = np.random.default_rng([seed, 1])
  history = lm.train(model, iter(lambda: base_batch(c, rng), None), steps=c.sft_steps,
                     learning_rate=c.sft_learning_rate, warmup=c.sft_steps // 10, log_every=max(1, c.sft_steps // 4))
  return model, history


def correction_batch(c, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """One batch of the SFT-on-corrections baseline: `jaxdyn.rl.score_sft_corrections` rows of ``c.sft_batch`` fresh
  problems, wrong first attempts off by +1 .. 9, verbosities drawn with ``c.verbosity_probs``."""
  n = c.sft_batch
  a, b = rng.integers(0, 10**c.digits, size=(2, n))
  problems = rl.AdditionProblems(np.arange(n), a.astype(np.int64), b.astype(np.int64), c.digits)
  verbosity = rng.choice(3, size=n, p=np.asarray(c.verbosity_probs) / np.sum(c.verbosity_probs))
  errors = rng.integers(1, 10, n)
  tokens, mask = rl.score_sft_corrections(problems, errors.tolist(), length=c.length, verbosity=verbosity.tolist())
  return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": mask}


def train_corrections(model, c, seed: int) -> list[dict[str, float]]:
  """Step 2 of the module docstring, in place on ``model``; the training log."""
  rng = np.random.default_rng([seed, 3])
  return lm.train(model, iter(lambda: correction_batch(c, rng), None), steps=c.correction_steps,
                  learning_rate=c.correction_learning_rate, warmup=c.correction_steps // 10,
                  log_every=max(1, c.correction_steps // 4))


def evaluate_two_turn(model, c, prompts: Sequence[bytes] | None = None) -> dict[str, float]:
  """Greedy two-attempt accuracies and the transition rates on the held-out problems (step 4)."""
  prompts = addition.eval_prompts(c) if prompts is None else list(prompts)
  y1, y2 = rl.score_sample(model, prompts, key=jax.random.key(0), max_new_tokens=c.max_new_tokens, greedy=True)
  return transition_metrics(*rl.score_rewards(prompts, y1, y2), y1, y2)


def transition_metrics(r1: np.ndarray, r2: np.ndarray, y1: Sequence[bytes], y2: Sequence[bytes]) -> dict[str, float]:
  """``acc_t1``, ``acc_t2``, ``gain = acc_t2 - acc_t1``, ``delta_i_to_c``, ``delta_c_to_i`` and ``changed`` of
  episodes with 0/1 rewards ``r1``, ``r2`` and attempts ``y1``, ``y2``."""
  r1, r2 = np.asarray(r1, bool), np.asarray(r2, bool)
  if r1.shape != r2.shape or r1.ndim != 1 or len(r1) == 0 or len(y1) != len(r1) or len(y2) != len(r1):
    raise ValueError(f"r1, r2, y1, y2: must be {len(r1)} episodes each and non-empty, got {r1.shape}, {r2.shape}, "
                     f"{len(y1)}, {len(y2)}")
  acc1, acc2 = float(r1.mean()), float(r2.mean())
  return {"acc_t1": acc1, "acc_t2": acc2, "gain": acc2 - acc1, "delta_i_to_c": float(np.mean(~r1 & r2)),
          "delta_c_to_i": float(np.mean(r1 & ~r2)), "changed": float(np.mean([p != q for p, q in zip(y1, y2)]))}


def make_stage1_step(graphdef, rest, ref, opt: optax.GradientTransformation, *, beta2: float):
  """``step(params, opt_state, first_tokens, first_mask, second_tokens, second_mask, adv2) -> (params, opt_state,
  loss, kl_first)``, jitted: one on-policy step of `jaxdyn.rl.score_stage1_loss` (``ref`` the frozen base policy)."""
  ref_graphdef, ref_state = nnx.split(ref)

  @jax.jit
  def step(params, opt_state, first_tokens, first_mask, second_tokens, second_mask, adv2):
    ref_lp1 = rl.policy_log_probs(nnx.merge(ref_graphdef, ref_state), first_tokens)

    def loss_fn(p):
      m = nnx.merge(graphdef, p, rest)
      lp1, lp2 = rl.policy_log_probs(m, first_tokens), rl.policy_log_probs(m, second_tokens)
      return rl.score_stage1_loss(lp1, ref_lp1, first_mask, lp2, jax.lax.stop_gradient(lp2), adv2, second_mask,
                                  beta2=beta2)

    (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    u, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, u), opt_state, loss, aux["kl_first"]

  return step


def make_stage2_step(graphdef, rest, ref, opt: optax.GradientTransformation, *, beta1: float):
  """``step(params, opt_state, tokens, mask, adv) -> (params, opt_state, loss, kl)``, jitted: one on-policy step of
  `jaxdyn.rl.clipped_surrogate_loss` over both attempts' rows stacked, k3 KL ``beta1`` to the frozen ``ref``."""
  ref_graphdef, ref_state = nnx.split(ref)

  @jax.jit
  def step(params, opt_state, tokens, mask, adv):
    ref_lp = rl.policy_log_probs(nnx.merge(ref_graphdef, ref_state), tokens)

    def loss_fn(p):
      lp = rl.policy_log_probs(nnx.merge(graphdef, p, rest), tokens)
      return rl.clipped_surrogate_loss(lp, jax.lax.stop_gradient(lp), adv, mask, ref_log_probs=ref_lp, kl_coef=beta1)

    (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    u, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, u), opt_state, loss, aux["kl"]

  return step


def train_score(model, ref, c, seed: int) -> tuple[list[dict[str, float]], dict[str, float]]:
  """Step 3 of the module docstring, in place on ``model``: the per-step log and the evaluation after stage I."""
  problems = rl.addition_problems(c.num_prompts, digits=c.digits, seed=seed + 1000)
  prompts = [rl.format_prompt(int(x), int(y), digits=c.digits) for x, y in zip(problems.a, problems.b)]
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(c.rl_learning_rate))
  opt_state = opt.init(params)
  stage1 = make_stage1_step(graphdef, rest, ref, opt, beta2=rl.SCORE_BETA2)
  stage2 = make_stage2_step(graphdef, rest, ref, opt, beta1=rl.SCORE_BETA1)
  rng = np.random.default_rng([seed, 2])
  key = jax.random.key(seed)
  log, after_stage1 = [], {}
  for i in range(c.stage1_steps + c.stage2_steps):
    if i == c.stage1_steps:
      nnx.update(model, params)
      after_stage1 = evaluate_two_turn(model, c)
    ids = np.repeat(rng.choice(c.num_prompts, c.prompts_per_step, replace=False), c.group_size)
    batch = [prompts[j] for j in ids]
    y1, y2 = rl.score_sample(nnx.merge(graphdef, params, rest), batch, key=jax.random.fold_in(key, i),
                             max_new_tokens=c.max_new_tokens)
    r1, r2 = rl.score_rewards(batch, y1, y2)
    ep = rl.score_episode(batch, y1, y2, length=c.length)
    if i < c.stage1_steps:
      adv2 = rl.group_advantages(jnp.asarray(r2), c.group_size)
      params, opt_state, loss, kl = stage1(params, opt_state, ep.first_tokens, ep.first_mask, ep.second_tokens,
                                           ep.second_mask, adv2)
    else:
      big_r1, big_r2 = rl.score_stage2_rewards(jnp.asarray(r1), jnp.asarray(r2), alpha=rl.SCORE_ALPHA)
      adv = jnp.concatenate([rl.group_advantages(big_r1, c.group_size), rl.group_advantages(big_r2, c.group_size)])
      tokens = np.concatenate([ep.first_tokens, ep.second_tokens])
      mask = np.concatenate([ep.first_mask, ep.second_mask])
      params, opt_state, loss, kl = stage2(params, opt_state, tokens, mask, adv)
    log.append({"step": i + 1, "stage": 1 if i < c.stage1_steps else 2, "loss": float(loss), "kl": float(kl),
                **{f"sampled_{k}": v for k, v in transition_metrics(r1, r2, y1, y2).items()}})
  nnx.update(model, params)
  if c.stage2_steps == 0:
    after_stage1 = evaluate_two_turn(model, c)
  return log, after_stage1


def check_settings(c) -> None:
  """Checks the settings the runner relies on, with messages naming the key."""
  for key in ("sft_steps", "correction_steps", "stage1_steps", "stage2_steps", "prompts_per_step", "group_size",
              "num_prompts", "eval_problems", "max_new_tokens", "sft_batch", "length"):
    if not isinstance(c[key], int) or isinstance(c[key], bool) or c[key] < (0 if key.endswith("_steps") else 1):
      raise ValueError(f"rl.{key}: must be a {'non-negative' if key.endswith('_steps') else 'positive'} integer, "
                       f"got {c[key]!r}")
  if c.group_size < 2:
    raise ValueError(f"rl.group_size: must be >= 2 (group-relative advantages), got {c.group_size}")
  if c.prompts_per_step > c.num_prompts:
    raise ValueError(f"rl.prompts_per_step: must be <= rl.num_prompts ({c.num_prompts}), got {c.prompts_per_step}")
  if not 0.0 <= c.two_turn_share <= 1.0:
    raise ValueError(f"rl.two_turn_share: must lie in [0, 1], got {c.two_turn_share}")
  need = addition.prompt_len(c.digits) + 2 * c.max_new_tokens + len(rl.SCORE_INSTRUCTION) + 1
  if c.length < need:
    raise ValueError(f"rl.length: must fit a second-turn row of two full attempts, {need} tokens "
                     f"(prompt, 2 x max_new_tokens, the instruction, EOS), got {c.length}")


def run_all(config) -> dict[str, Any]:
  """The base policy of one seed and both arms from it."""
  c = config.rl
  check_settings(c)
  t0 = time.monotonic()
  base, base_history = train_base(c, config.seed)
  base_eval = evaluate_two_turn(base, c)
  base_seconds = time.monotonic() - t0
  arms = {}
  for arm in ARMS:
    t1 = time.monotonic()
    model = nnx.clone(base, arrays=True)
    if arm == "sft_corrections":
      out = {"log": train_corrections(model, c, config.seed)}
    else:
      log, after_stage1 = train_score(model, base, c, config.seed)
      out = {"log": log, "after_stage1": after_stage1}
    ev = evaluate_two_turn(model, c)
    arms[arm] = {**ev, **out, "arm_seconds": round(time.monotonic() - t1, 2),
                 "gain_minus_base": ev["gain"] - base_eval["gain"]}
  for arm in arms.values():
    arm["gain_minus_sft_corrections"] = arm["gain"] - arms["sft_corrections"]["gain"]
  return {"per_arm": arms, "base": {**base_eval, "history": base_history},
          **{f"base_{k}": v for k, v in base_eval.items()}, "base_seconds": round(base_seconds, 2)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.rl.arm``) for one seed, from the seed's shared run of both arms."""
  return one_arm(run_all, config, workdir, arm_key="rl.arm", arms=ARMS, prefix="score", drop=("base",))


score_runner = caches_results(run)
