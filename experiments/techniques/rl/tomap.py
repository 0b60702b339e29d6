r"""ToMAP's persuader with and without the stance predictor on the toy dialogue game, as a claim ``runner``.

`tomap_runner(config, workdir)` follows Han et al. ("ToMAP: Training Opponent-Aware LLM Persuaders with Theory of
Mind", https://arxiv.org/abs/2505.22961) at toy scale on `jaxdyn.rl`'s game (`jaxdyn.rl.play_dialogue`: an
opponent with a hidden stance ``s in [0, 1]^K`` on ``K`` counter-claims, agreement with the thesis
``a = 1 - mean_k s_k``; each turn the persuader addresses one counter-claim, which is rebutted if held and
backfires if not; the opponent replies with noisy, partly hidden attitude levels). With ``c = config.tomap``,
one seed:

1. **Stance predictor** (the paper's theory-of-mind module, trained here as the authors train their MLP
   classifier). ``c.predictor_games`` games of a uniformly random persuader are collected, their
   `jaxdyn.rl.dialogue_stance_examples` (features of the replies so far, the true stance) split into
   training and held-out games (``c.predictor_holdout``), and a `jaxdyn.rl.StancePredictor` is trained with
   `jaxdyn.rl.stance_loss` (full-batch Adam, ``c.predictor_steps`` steps). Reported: its held-out loss, level
   accuracy and the accuracy of "held" (``predicted_stance >= threshold``) against the truth.
2. **Persuaders**, two arms trained the same way (same games drawn per step, steps, optimizer, initialisation
   seed): a `PersuaderPolicy` (an MLP from the observation to ``K`` claim logits, a softmax policy) observes
   ``"without_predictor"``: `jaxdyn.rl.persuader_observation` of the reply features only, or
   ``"with_predictor"``: the same features with the frozen predictor's logits appended (its per-claim
   level probabilities and expected stance; the paper writes the predicted attitudes into the persuader's
   prompt). ``c.rl_steps`` steps of REINFORCE with group-relative advantages: each step plays ``c.games_per_step``
   fresh games with actions sampled from the policy, takes the per-turn rewards `jaxdyn.rl.dialogue_rewards`
   (the authors' normalised agreement change, ``global_factor`` ``c.global_factor``), their returns to go

   .. math:: G_t = \textstyle\sum_{t' \ge t} \gamma^{t' - t} r_{t'},

   and the advantage of turn ``t``'s action ``A_{b,t} = (G_{b,t} - \bar G_t) / (\mathrm{std}_b G_{b,t} + 10^{-4})``
   (`jaxdyn.rl.group_advantages` with the step's games at turn ``t`` as one group: the games' opponents differ,
   so the group is the step's batch, not GRPO's samples of one prompt; derived here), then one Adam step on
   ``L = -\frac{1}{B T} \sum_{b,t} A_{b,t} \log \pi(c_{b,t} | o_{b,t}) - \beta H`` (``beta`` ``c.entropy_coef``).
3. **Evaluation** on ``c.eval_games`` fresh games (the same opponents for every arm): each persuader acts
   greedily (the argmax claim); reference rows: a uniformly random persuader and an oracle that addresses the
   claim the opponent believes most (it sees the hidden stance). Metrics: ``rise_rate``, the share of games whose
   agreement with the thesis is higher after the last turn than before the first (the claim's "changes the
   opponent's stance"), ``mean_change`` (``a_T - a_0``) and ``mean_reward`` (the sum of the turn rewards).

The arms of a seed share one run (`experiments.claims.shared_run`). What follows the paper: the predictor as a
supervised classifier over the dialogue whose output the persuader reads, and the persuasion reward. Derived
here: the opponent, the featurisation, the MLP policy in place of an LLM, the batch as the advantage group.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results, one_arm
from jaxdyn import rl

ARMS = ("with_predictor", "without_predictor", "random", "oracle")
POLICY_ARMS = ("with_predictor", "without_predictor")
EVAL_SEED = 77_777


class PersuaderPolicy(nnx.Module):
  """``Linear(obs_dim, hidden) - ReLU - Linear(hidden, K)``: logits of the counter-claim to address."""

  def __init__(self, obs_dim: int, num_claims: int, *, hidden: int, rngs: nnx.Rngs):
    if obs_dim < 1 or num_claims < 1 or hidden < 1:
      raise ValueError(f"obs_dim, num_claims, hidden: must be >= 1, got {obs_dim}, {num_claims}, {hidden}")
    self.hidden = nnx.Linear(obs_dim, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, num_claims, rngs=rngs)

  def __call__(self, obs):
    return self.out(jax.nn.relu(self.hidden(obs)))


def game_kwargs(c) -> dict[str, Any]:
  """`jaxdyn.rl.play_dialogue`'s game settings from the config section."""
  return dict(num_claims=c.num_claims, num_turns=c.num_turns, rate=c.rate, backfire=c.backfire,
              threshold=c.threshold, noise=c.noise, reveal=c.reveal, global_factor=c.global_factor)


def returns_to_go(rewards, gamma: float):
  r"""``(B, T)`` per-turn rewards -> ``(B, T)`` returns ``G_t = sum_{t' >= t} gamma^(t' - t) r_t'``."""
  if not 0.0 <= gamma <= 1.0:
    raise ValueError(f"gamma: must lie in [0, 1], got {gamma}")
  r = np.asarray(rewards, np.float32)
  if r.ndim != 2:
    raise ValueError(f"rewards: must be (games, turns), got shape {r.shape}")
  out = np.zeros_like(r)
  acc = np.zeros(r.shape[0], np.float32)
  for t in range(r.shape[1] - 1, -1, -1):
    acc = r[:, t] + gamma * acc
    out[:, t] = acc
  return out


def turn_advantages(returns):
  """``(B, T)`` returns -> advantages normalised over the games at each turn (one group per turn)."""
  g = jnp.asarray(returns, jnp.float32)
  if g.ndim != 2:
    raise ValueError(f"returns: must be (games, turns), got shape {g.shape}")
  return rl.group_advantages(g.T.reshape(-1), g.shape[0]).reshape(g.shape[1], g.shape[0]).T


def observations(replies, predictor=None):
  """``(B, T + 1, K)`` replies -> ``(B, T, obs)`` the persuader's observation before each turn ``t`` (replies
  ``0 .. t``): `jaxdyn.rl.persuader_observation`, with the predictor's logits when ``predictor`` is given."""
  obs = []
  for t in range(replies.shape[1] - 1):
    f = rl.reply_features(replies[:, :t + 1])
    obs.append(rl.persuader_observation(f, None if predictor is None else predictor(f)))
  return jnp.stack(obs, axis=1)


def change_stats(dialogue: rl.Dialogue) -> dict[str, float]:
  """Evaluation metrics of played games: rise rate and mean change of the agreement, mean summed reward."""
  change = np.asarray(dialogue.agreement[:, -1] - dialogue.agreement[:, 0])
  return {"rise_rate": float(np.mean(change > 0)), "mean_change": float(np.mean(change)),
          "mean_reward": float(np.mean(np.sum(np.asarray(dialogue.rewards), axis=1)))}


def random_choose(key, replies, stance):
  del replies
  return jax.random.randint(key, (stance.shape[0],), 0, stance.shape[1])


def oracle_choose(key, replies, stance):
  del key, replies
  return jnp.argmax(stance, axis=-1).astype(jnp.int32)


def train_predictor(c, seed: int):
  """Step 1: the trained `jaxdyn.rl.StancePredictor` and its held-out statistics."""
  d = rl.play_dialogue(jax.random.key(seed * 1000 + 1), random_choose, num_games=c.predictor_games,
                       **game_kwargs(c))
  x, s = rl.dialogue_stance_examples(d)
  n_hold = int(round(c.predictor_holdout * c.predictor_games)) * (c.num_turns + 1)  # whole games, game-major
  if not 0 < n_hold < x.shape[0]:
    raise ValueError(f"tomap.predictor_holdout: leaves {n_hold} of {x.shape[0]} examples held out")
  (x_tr, s_tr), (x_ho, s_ho) = (x[n_hold:], s[n_hold:]), (x[:n_hold], s[:n_hold])
  model = rl.StancePredictor(c.num_claims, hidden=c.predictor_hidden, rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model)
  opt = optax.adam(c.predictor_learning_rate)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(lambda p: rl.stance_loss(nnx.merge(graphdef, p)(x_tr), s_tr))(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  for _ in range(c.predictor_steps):
    params, opt_state, loss = step(params, opt_state)
  model = nnx.merge(graphdef, params)
  logits = model(x_ho)
  label = jnp.clip(jnp.round(4.0 * s_ho), 0, rl.NUM_LEVELS - 1)
  held = (rl.predicted_stance(logits) >= c.threshold) == (s_ho >= c.threshold)
  return model, {"train_loss": float(loss), "holdout_loss": float(rl.stance_loss(logits, s_ho)),
                 "holdout_level_accuracy": float(jnp.mean(jnp.argmax(logits, -1) == label)),
                 "holdout_held_accuracy": float(jnp.mean(held))}


class Persuader(NamedTuple):
  """One arm's policy: initial ``params`` and ``opt_state``, the frozen predictor's ``pred_params``,
  ``choose(params, greedy)`` (a `jaxdyn.rl.play_dialogue` persuader), the jitted REINFORCE
  ``step(params, opt_state, pred_params, replies, claims, adv) -> (params, opt_state, loss, entropy)`` and
  ``log_probs(params, pred_params, replies)``: ``(B, T, K)`` log-probabilities of the claims before each turn."""

  params: Any
  opt_state: Any
  pred_params: Any
  choose: Callable
  step: Callable
  log_probs: Callable


def make_persuader(c, arm: str, predictor, seed: int) -> Persuader:
  """The policy of ``arm`` (a `PersuaderPolicy` over its observation), initialised from ``seed``."""
  if arm not in POLICY_ARMS:
    raise ValueError(f"arm: must be one of {list(POLICY_ARMS)}, got {arm!r}")
  k = c.num_claims
  use_pred = arm == "with_predictor"
  obs_dim = (18 if use_pred else 12) * k
  graphdef, params = nnx.split(PersuaderPolicy(obs_dim, k, hidden=c.policy_hidden, rngs=nnx.Rngs(seed)))
  pred_graphdef, pred_params = nnx.split(predictor)

  def log_probs(params, pred_params, replies):
    obs = observations(replies, nnx.merge(pred_graphdef, pred_params) if use_pred else None)
    return jax.nn.log_softmax(nnx.merge(graphdef, params)(obs), axis=-1)

  @jax.jit
  def act(params, pred_params, key, replies, greedy):
    f = rl.reply_features(replies)
    obs = rl.persuader_observation(f, nnx.merge(pred_graphdef, pred_params)(f) if use_pred else None)
    logits = nnx.merge(graphdef, params)(obs)
    return jnp.where(greedy, jnp.argmax(logits, -1), jax.random.categorical(key, logits)).astype(jnp.int32)

  opt = optax.adam(c.rl_learning_rate)

  @jax.jit
  def step(params, opt_state, pred_params, replies, claims, adv):
    def loss_fn(p):
      logp = log_probs(p, pred_params, replies)
      chosen = jnp.take_along_axis(logp, claims[..., None], axis=-1)[..., 0]
      entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
      return -jnp.mean(adv * chosen) - c.entropy_coef * jnp.mean(entropy), jnp.mean(entropy)

    (loss, entropy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, entropy

  def choose(params, greedy: bool):
    return lambda key, replies, stance: act(params, pred_params, key, replies, greedy)

  return Persuader(params, opt.init(params), pred_params, choose, step, jax.jit(log_probs))


def train_persuader(c, arm: str, predictor, seed: int):
  """Step 2 for one arm: the trained policy's ``choose`` (greedy) and the per-step log."""
  p = make_persuader(c, arm, predictor, seed)
  params, opt_state = p.params, p.opt_state
  log, t0 = [], time.monotonic()
  for i in range(c.rl_steps):
    key = jax.random.fold_in(jax.random.key(seed * 1000 + 2), i)  # the same opponents in both arms
    d = rl.play_dialogue(key, p.choose(params, False), num_games=c.games_per_step, **game_kwargs(c))
    adv = turn_advantages(returns_to_go(d.rewards, c.gamma))
    params, opt_state, loss, entropy = p.step(params, opt_state, p.pred_params, d.replies, d.claims, adv)
    if (i + 1) % c.log_every == 0 or i + 1 == c.rl_steps:
      log.append({"step": i + 1, "loss": float(loss), "entropy": float(entropy), **change_stats(d),
                  "seconds": round(time.monotonic() - t0, 2)})
  return p.choose(params, True), log


def run_all(config) -> dict[str, Any]:
  """The predictor of one seed, both persuaders trained with / without it, and all four arms evaluated."""
  c = config.tomap
  seed = int(config.seed)
  t0 = time.monotonic()
  predictor, pred_stats = train_predictor(c, seed)
  pred_seconds = time.monotonic() - t0
  eval_key = jax.random.key(EVAL_SEED + seed)
  arms = {}
  for arm in ARMS:
    t1 = time.monotonic()
    if arm in POLICY_ARMS:
      choose, log = train_persuader(c, arm, predictor, seed)
    else:
      choose, log = (random_choose if arm == "random" else oracle_choose), []
    d = rl.play_dialogue(eval_key, choose, num_games=c.eval_games, **game_kwargs(c))
    arms[arm] = {**change_stats(d), "log": log, "rl_seconds": round(time.monotonic() - t1, 2)}
  for arm in arms.values():
    arm["rise_rate_minus_without"] = arm["rise_rate"] - arms["without_predictor"]["rise_rate"]
  return {"per_arm": arms, "predictor": pred_stats, "predictor_held_accuracy": pred_stats["holdout_held_accuracy"],
          "predictor_seconds": round(pred_seconds, 2), "seconds": round(time.monotonic() - t0, 2)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.tomap.arm``) for one seed, from the seed's shared run of every arm."""
  return one_arm(run_all, config, workdir, arm_key="tomap.arm", arms=ARMS, prefix="tomap", drop=("predictor",))


tomap_runner = caches_results(run)
