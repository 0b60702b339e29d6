r"""Self-evolving training (M-STaR): selection, schedules, prompt variation, temperature balancing, a reward model.

M-STaR (Liu et al., 2024) trains a policy on its own answers: for each prompt it samples ``K`` answers, scores
them, selects some and fine-tunes on the selected ones, over and over. The pieces here are pure functions over a
batch laid out as ``num_prompts`` consecutive groups of ``K = group_size`` answers (the layout of
`jaxdyn.rl.group_advantages`):

- **Selection** (`select_answers`): with the exact verifier only, every correct answer is kept (STaR / RFT);
  with a reward model the correct answers are re-ranked by its scores and the ``top_k`` best per prompt are
  kept (the paper reranks correct answers with its process reward model and keeps the top 2).
- **Schedule** (`evolve_schedule`): ``"iterative"`` (ReST-EM style: every ``interval`` steps a new iteration
  regenerates with the current checkpoint and training restarts from the base policy), ``"continuous"`` (the
  paper's choice: the same regeneration, but training continues from the current weights and optimizer) and
  ``"online"`` (``interval = 1``: the current policy generates the data of every step).
- **Prompt variation** (`majority_vote`): unlabelled prompts get a pseudo-label, the majority answer of their
  ``K`` samples; an answer is then "correct" when it agrees with it (the paper's way of adding unlabelled
  prompts; it found they do not help, so the hook is off unless a loop uses it).
- **Monitor and automatic temperature balancing** (`reward_pass_at_k`, `choose_temperature`): Reward-Pass@k is
  the share of prompts with a correct answer among the ``k`` answers the reward model ranks highest, over all
  ``K`` samples,

  .. math:: \text{RP@}k = \frac{1}{P}\sum_{p=1}^{P} \max_{i \in \text{top}_k(s_{p,\cdot})} c_{p,i},

  which falls both when exploration collapses (no correct answer among the samples) and when exploitation
  fails (the reward model cannot find it). At each regeneration the sampling temperature is the candidate
  with the highest Reward-Pass@2 on held-out prompts, each candidate sampled once.
- **Training** (`selected_sft_loss`): the policy is fine-tuned on the selected answers by token-level negative
  log-likelihood of their completions (STaR / RFT; the paper's training objective).
- **Reward model** (`RewardModel`, `reward_pairwise_loss`, `reward_pointwise_loss`): a linear head on the
  shared Transformer's final features at the answer's last token, trained from verifier labels pointwise
  (``BCE(sigmoid(s), y)``) or pairwise (Bradley-Terry, ``-log sigmoid(s_+ - s_-)``).

What is derived here: only the paper's abstract could be read (its full text and code were not reachable from
this machine). The abstract names the three factors (training method, reward model, prompt variation) and an
automatic balancing mechanism; the details above, namely the top-2 rerank of correct answers, Reward-Pass@2 as
the monitor, the argmax rule over a candidate set of temperatures with ties going to the lowest temperature,
ties in every ranking broken by the earlier answer, majority-vote ties going to the earlier answer, and an
outcome (not process) reward model, are this module's reading and are marked "derived here" where they
appear. No ``official_compat`` switch exists, since no authors' code was read.

Reference: Liu et al., "Diving into Self-Evolving Training for Multimodal Reasoning", ICML 2025.
https://arxiv.org/abs/2412.17451 ; project: https://mstar-lmm.github.io
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdyn import _validation

__all__ = [
    "select_answers", "reward_pass_at_k", "choose_temperature", "EvolveStep", "evolve_schedule", "majority_vote",
    "RewardModel", "reward_pairwise_loss", "reward_pointwise_loss", "selected_sft_loss",
]

MODES = ("online", "iterative", "continuous")


def _check_bool(name, x):
  dtype = jnp.asarray(x).dtype
  if dtype != jnp.bool_:
    raise TypeError(f"{name}: must be a boolean array, got dtype {dtype}")
  return jnp.asarray(x)


def _check_groups(name, x, group_size):
  _validation.check_ndim(name, x, 1)
  _validation.check_nonempty(name, x, what="answers")
  k = _validation.check_int("group_size", group_size, lower=1)
  n = np.shape(x)[0]
  if n % k:
    raise ValueError(f"group_size: must divide the number of answers in {name} ({n}), got {k}")
  return k, n // k


def _check_scores(scores, correct):
  _validation.check_same_shape("scores", scores, "correct", correct)
  _validation.check_finite("scores", scores)
  return _validation.check_floating("scores", scores)


def _ranks(scores: jax.Array, eligible: jax.Array) -> jax.Array:
  """Per group ``(P, K)``: each answer's rank (0 = best) among the eligible answers of its group, by score
  descending, ties to the earlier answer (derived here)."""
  k = scores.shape[1]
  idx = jnp.arange(k)
  s_j, s_i = scores[:, None, :], scores[:, :, None]
  better = (s_j > s_i) | ((s_j == s_i) & (idx[None, None, :] < idx[None, :, None]))
  return jnp.sum(better & eligible[:, None, :], axis=-1)


def select_answers(correct: jax.Array, group_size: int, scores: jax.Array | None = None, *,
                   top_k: int = 2) -> jax.Array:
  r"""Which sampled answers to train on: the correct ones, or the ``top_k`` best-scored correct ones per prompt.

  .. math::
    m_{p,i} = c_{p,i} \quad\text{(verifier only)}, \qquad
    m_{p,i} = c_{p,i}\,[\,\mathrm{rank}_{p}(i) < k\,] \quad\text{(with scores)},

  with ``rank_p(i)`` the rank of answer ``i`` by score among prompt ``p``'s correct answers (0 = highest; ties
  to the earlier answer, derived here). A prompt with no correct answer contributes nothing.

  Args:
    correct: ``(P * K,)`` bool, the verifier's verdicts, ``K = group_size`` consecutive answers per prompt.
    group_size: ``K >= 1``.
    scores: None (verifier only) or ``(P * K,)`` finite reward-model scores.
    top_k: answers kept per prompt with scores (2 in the paper), ``>= 1``; unused without scores.

  Returns:
    ``(P * K,)`` float32 mask, 1 for a selected answer.

  Example:
    >>> correct = jnp.array([True, True, True, False, False, True])
    >>> select_answers(correct, 3, jnp.array([0.1, 0.9, 0.5, 2.0, 0.0, 0.3]))
    Array([0., 1., 1., 0., 0., 1.], dtype=float32)

  Under ``jit`` a group whose scores hold NaN or an infinity gives NaN (eagerly they raise).
  """
  k, p = _check_groups("correct", correct, group_size)
  c = _check_bool("correct", correct)
  top = _validation.check_int("top_k", top_k, lower=1)
  if scores is None:
    return c.astype(jnp.float32)
  s = _check_scores(scores, correct).reshape(p, k)
  cg = c.reshape(p, k)
  keep = cg & (_ranks(s, cg) < top)
  bad = jnp.any(~jnp.isfinite(s), axis=1, keepdims=True)
  return jnp.where(bad, jnp.nan, keep.astype(jnp.float32)).reshape(-1)


def reward_pass_at_k(correct: jax.Array, scores: jax.Array, group_size: int, *, k: int = 2) -> jax.Array:
  r"""Reward-Pass@k: the share of prompts with a correct answer among the ``k`` highest-scored of its samples.

  .. math:: \text{RP@}k = \frac{1}{P}\sum_p \max_{i:\ \mathrm{rank}_p(i) < k} c_{p,i}

  (ranks over all ``K`` answers of the prompt by score, ties to the earlier answer). With ``k = K`` it is
  pass@K, the exploration ceiling; with ``k = 1`` the accuracy of best-of-K reranking.

  Args:
    correct: ``(P * K,)`` bool verdicts, ``K = group_size`` consecutive answers per prompt.
    scores: ``(P * K,)`` finite reward-model scores.
    group_size: ``K >= 1``.
    k: how many top-ranked answers count, in ``[1, K]`` (2: the paper's Reward-Pass@2, derived here).

  Returns:
    Scalar float32 in ``[0, 1]`` (NaN under ``jit`` if a score is not finite).

  Example:
    >>> correct = jnp.array([False, True, False, False, True, False])
    >>> reward_pass_at_k(correct, jnp.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3]), 3, k=2)
    Array(0.5, dtype=float32)
  """
  kk, p = _check_groups("correct", correct, group_size)
  c = _check_bool("correct", correct).reshape(p, kk)
  s = _check_scores(scores, correct).reshape(p, kk)
  top = _validation.check_int("k", k, lower=1, upper=kk)
  hit = jnp.any(c & (_ranks(s, jnp.ones_like(c)) < top), axis=1).astype(jnp.float32)
  return _validation.nan_unless(jnp.all(jnp.isfinite(s)), jnp.mean(hit))


def choose_temperature(temperatures: Sequence[float], monitor: Sequence[float]) -> tuple[float, int]:
  r"""The automatic temperature balancing rule: the candidate temperature with the best monitor value.

  .. math:: T^* = \arg\max_{T \in \mathcal{T}} \text{RP@2}(T),

  ``RP@2(T)`` the `reward_pass_at_k` of answers sampled at ``T`` on held-out prompts. Ties go to the lowest
  temperature (less noise in the selected answers; derived here).

  Args:
    temperatures: candidate temperatures, strictly increasing, each ``> 0``.
    monitor: one finite monitor value per candidate (Reward-Pass@2, or any score where higher is better).

  Returns:
    ``(temperature, index)``: the chosen temperature as a Python float and its index.

  Example:
    >>> choose_temperature([0.3, 0.6, 1.0], [0.50, 0.75, 0.75])
    (0.6, 1)
  """
  t = np.asarray(temperatures, np.float64) if _is_real_seq(temperatures) else None
  if t is None or t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0) or np.any(
      np.diff(t) <= 0):
    raise ValueError(f"temperatures: must be a non-empty, strictly increasing sequence of finite numbers > 0, "
                     f"got {temperatures!r}")
  m = np.asarray(monitor, np.float64) if _is_real_seq(monitor) else None
  if m is None or m.shape != t.shape or not np.all(np.isfinite(m)):
    raise ValueError(f"monitor: must be {t.size} finite numbers, one per temperature, got {monitor!r}")
  i = int(np.argmax(m))  # first maximum = lowest temperature among ties
  return float(t[i]), i


def _is_real_seq(x) -> bool:
  if isinstance(x, (str, bytes)) or np.ndim(x) != 1:
    return False
  try:
    arr = np.asarray(x)
  except (TypeError, ValueError):
    return False
  return arr.dtype != np.bool_ and (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating))


class EvolveStep(NamedTuple):
  """What the self-evolving loop does at one training step (all Python values).

  Attributes:
    iteration: ``step // interval``, the self-evolving iteration the step belongs to.
    regenerate: sample a new training set (and re-choose the temperature) before this step.
    generator_step: the step whose policy samples the data this step trains on (the checkpoint taken at the
      start of the iteration; for ``"online"`` the current step).
    restart: reset the policy (and optimizer) to the base, pre-evolved weights before this step
      (``"iterative"`` only, at every iteration after the first).
  """

  iteration: int
  regenerate: bool
  generator_step: int
  restart: bool


def evolve_schedule(step: int, *, mode: str = "continuous", interval: int = 1) -> EvolveStep:
  """The schedule choices of self-evolving training at training step ``step``.

  - ``"online"``: the current policy generates the data of every step (``interval`` must be 1).
  - ``"iterative"``: every ``interval`` steps a new iteration: the current checkpoint generates the data, then
    training restarts from the base policy (ReST-EM).
  - ``"continuous"``: the same regeneration, but training continues from the current weights (M-STaR's choice,
    best with a small interval, i.e. nearly online).

  Args:
    step: the training step, ``>= 0``.
    mode: ``"online"``, ``"iterative"`` or ``"continuous"``.
    interval: steps per iteration, ``>= 1`` (1 for ``"online"``).

  Returns:
    An `EvolveStep`.

  Example:
    >>> evolve_schedule(10, mode="iterative", interval=5)
    EvolveStep(iteration=2, regenerate=True, generator_step=10, restart=True)
    >>> evolve_schedule(7, mode="continuous", interval=5)
    EvolveStep(iteration=1, regenerate=False, generator_step=5, restart=False)
  """
  s = _validation.check_int("step", step, lower=0)
  _validation.check_choice("mode", mode, MODES)
  n = _validation.check_int("interval", interval, lower=1)
  if mode == "online" and n != 1:
    raise ValueError(f"interval: must be 1 for mode='online', got {interval!r}")
  it = s // n
  start = s % n == 0
  return EvolveStep(it, start, it * n, mode == "iterative" and start and it > 0)


def majority_vote(answers: jax.Array, valid: jax.Array, group_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""Prompt variation: pseudo-labels of unlabelled prompts by majority vote over their ``K`` answers.

  For prompt ``p`` the label is the most frequent valid answer ``a^*_p`` (ties to the one that appears first,
  derived here); an answer is then pseudo-correct when ``valid and a = a^*_p``, which stands in for the
  verifier in `select_answers`.

  Args:
    answers: ``(P * K,)`` integer parsed answers (any value where not valid).
    valid: ``(P * K,)`` bool, whether the answer parsed (`jaxdyn.rl.parse_answer` is not None).
    group_size: ``K >= 1``.

  Returns:
    ``(labels, has_label, pseudo_correct)``: ``(P,)`` int32 majority answers (0 where none), ``(P,)`` bool
    whether a prompt had any valid answer, and ``(P * K,)`` bool pseudo-correctness.

  Example:
    >>> labels, has, ok = majority_vote(jnp.array([7, 5, 7, 3, 4, 4]), jnp.array([True] * 5 + [False]), 3)
    >>> labels
    Array([7, 3], dtype=int32)
    >>> ok
    Array([ True, False,  True,  True, False, False], dtype=bool)
  """
  k, p = _check_groups("answers", answers, group_size)
  dtype = jnp.asarray(answers).dtype
  if not jnp.issubdtype(dtype, jnp.integer):
    raise TypeError(f"answers: must be an integer array, got dtype {dtype}")
  _validation.check_same_shape("valid", valid, "answers", answers)
  v = _check_bool("valid", valid).reshape(p, k)
  a = jnp.asarray(answers).reshape(p, k)
  votes = jnp.sum((a[:, :, None] == a[:, None, :]) & v[:, None, :], axis=-1) * v  # 0 for invalid answers
  best = jnp.argmax(votes, axis=1)
  has = jnp.any(v, axis=1)
  labels = jnp.where(has, jnp.take_along_axis(a, best[:, None], axis=1)[:, 0], 0).astype(jnp.int32)
  ok = v & has[:, None] & (a == labels[:, None])
  return labels, has, ok.reshape(-1)


class RewardModel(nnx.Module):
  r"""An outcome reward model: a linear head on a Transformer's final features at the answer's last token.

  .. math:: s(x, y) = w^\top h_L(x \Vert y)_{t^*} + b,

  ``h_L`` the backbone's final-normed features (`jaxdyn.models.Transformer.features`) of the prompt-and-answer
  sequence and ``t* = length - 1`` its last real token (padding after it is never seen: attention is
  causal). The paper uses a process reward model; an outcome scorer trained on verifier labels is this
  module's stand-in (derived here). The backbone is typically a copy of the SFT policy.

  Args:
    backbone: a `jaxdyn.models.Transformer` (its ``head`` is unused).
    rngs: ``nnx.Rngs`` for the head's initialisation.

  Example:
    >>> from jaxdyn.models import Transformer
    >>> rm = RewardModel(Transformer(259, dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    >>> rm(jnp.array([[256, 49, 43, 50, 61, 35, 51, 257]]), jnp.array([8])).shape
    (1,)
  """

  def __init__(self, backbone, *, rngs: nnx.Rngs):
    if not (isinstance(backbone, nnx.Module) and callable(getattr(backbone, "features", None))
            and isinstance(getattr(backbone, "dim", None), int)):
      raise TypeError(f"backbone: must be a jaxdyn.models.Transformer, got {type(backbone).__name__}")
    self.backbone = backbone
    self.score_head = nnx.Linear(backbone.dim, 1, rngs=rngs)

  def __call__(self, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
    """Scores ``(batch,)`` of ``tokens`` ``(batch, seq)`` with ``lengths`` ``(batch,)`` real tokens each (in
    ``[1, seq]``; out of range gives NaN under ``jit``)."""
    _validation.check_ndim("tokens", tokens, 2)
    seq = np.shape(tokens)[1]
    if np.shape(lengths) != np.shape(tokens)[:1]:
      raise ValueError(f"lengths: must have shape {np.shape(tokens)[:1]} (one per sequence), got {np.shape(lengths)}")
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
      raise TypeError(f"lengths: must be integers in [1, {seq}], got dtype {lengths.dtype}")
    if _validation.is_concrete(lengths) and lengths.size and (int(lengths.min()) < 1 or int(lengths.max()) > seq):
      raise ValueError(f"lengths: must lie in [1, {seq}] (the sequence length), got values in "
                       f"[{int(lengths.min())}, {int(lengths.max())}]")
    h = self.backbone.features(tokens)
    last = jnp.take_along_axis(h, jnp.clip(lengths - 1, 0, seq - 1)[:, None, None], axis=1)[:, 0]
    s = self.score_head(last)[:, 0]
    return _validation.nan_unless(_validation.labels_valid(lengths - 1, seq), s)


def _check_scores_1d(name, x):
  _validation.check_ndim(name, x, 1)
  _validation.check_nonempty(name, x)
  _validation.check_finite(name, x)
  return _validation.check_floating(name, x)


def reward_pairwise_loss(chosen: jax.Array, rejected: jax.Array) -> tuple[jax.Array, dict]:
  r"""Bradley-Terry loss of a reward model on pairs (a correct answer over a wrong one to the same prompt).

  .. math:: \mathcal{L} = \frac{1}{n}\sum_n -\log\sigma(s^+_n - s^-_n) = \frac{1}{n}\sum_n
     \mathrm{softplus}(s^-_n - s^+_n)

  Args:
    chosen: ``(n,)`` scores ``s+`` of the preferred (correct) answers.
    rejected: ``(n,)`` scores ``s-`` of the rejected answers.

  Returns:
    ``(loss, aux)``: the scalar loss and ``aux["accuracy"]``, the share of pairs with ``s+ > s-``.

  Example:
    >>> reward_pairwise_loss(jnp.array([1.0, 0.0]), jnp.array([1.0, 0.0]))[0]
    Array(0.6931472, dtype=float32)
  """
  c = _check_scores_1d("chosen", chosen)
  _validation.check_same_shape("rejected", rejected, "chosen", chosen)
  r = _check_scores_1d("rejected", rejected)
  margin = c - r
  loss = _validation.nan_unless(jnp.all(jnp.isfinite(margin)), jnp.mean(jax.nn.softplus(-margin)))
  return loss, {"accuracy": jnp.mean((margin > 0).astype(jnp.float32))}


def reward_pointwise_loss(scores: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict]:
  r"""Pointwise loss of a reward model on verifier labels: binary cross-entropy of ``sigmoid(s)``.

  .. math:: \mathcal{L} = \frac{1}{n}\sum_n \big[\mathrm{softplus}(s_n) - y_n s_n\big]
     = -\frac{1}{n}\sum_n \big[y_n\log\sigma(s_n) + (1-y_n)\log(1-\sigma(s_n))\big]

  Args:
    scores: ``(n,)`` reward-model scores (logits).
    labels: ``(n,)`` targets ``y`` in ``[0, 1]`` (bool verdicts or soft labels).

  Returns:
    ``(loss, aux)``: the scalar loss and ``aux["accuracy"]``, the share with ``(s > 0) == (y > 0.5)``.

  Example:
    >>> reward_pointwise_loss(jnp.zeros(2), jnp.array([True, False]))[0]
    Array(0.6931472, dtype=float32)
  """
  s = _check_scores_1d("scores", scores)
  _validation.check_same_shape("labels", labels, "scores", scores)
  _validation.check_finite("labels", labels)
  y = _validation.check_floating("labels", labels)
  if _validation.is_concrete(y) and y.size and (float(jnp.min(y)) < 0 or float(jnp.max(y)) > 1):
    raise ValueError(f"labels: must lie in [0, 1], got values in [{float(jnp.min(y))}, {float(jnp.max(y))}]")
  loss = jnp.mean(jax.nn.softplus(s) - y * s)
  loss = _validation.nan_unless(jnp.all(jnp.isfinite(s)) & jnp.all(jnp.isfinite(y)), loss)
  return loss, {"accuracy": jnp.mean(((s > 0) == (y > 0.5)).astype(jnp.float32))}


def selected_sft_loss(log_probs: jax.Array, mask: jax.Array, weights: jax.Array) -> jax.Array:
  r"""Negative log-likelihood of the selected answers' completion tokens, averaged over those tokens.

  .. math:: \mathcal{L} = -\frac{\sum_b w_b \sum_t m_{b,t}\,\ell_{b,t}}{\max\big(1, \sum_b w_b \sum_t m_{b,t}\big)}

  with ``l`` the policy's next-token log-probs (`jaxdyn.rl.policy_log_probs`), ``m`` the completion mask
  (`jaxdyn.rl.completion_mask`) and ``w`` the selection (`select_answers`). No answer selected gives 0 (and a
  zero gradient): a step whose prompts all failed leaves the policy as it is.

  Args:
    log_probs: ``(B, T)`` token log-probs.
    mask: ``(B, T)`` completion mask in ``[0, 1]``.
    weights: ``(B,)`` selection weights ``>= 0`` (the 0/1 mask of `select_answers`).

  Returns:
    Scalar float32 loss.

  Example:
    >>> lp = jnp.log(jnp.array([[0.5, 0.25], [0.1, 0.1]]))
    >>> selected_sft_loss(lp, jnp.ones((2, 2)), jnp.array([1.0, 0.0]))
    Array(1.0397208, dtype=float32)
  """
  _validation.check_ndim("log_probs", log_probs, 2)
  _validation.check_nonempty("log_probs", log_probs)
  _validation.check_same_shape("mask", mask, "log_probs", log_probs)
  _validation.check_finite("log_probs", log_probs)
  _validation.check_finite("mask", mask)
  _validation.check_nonnegative("mask", mask)
  _validation.check_ndim("weights", weights, 1)
  if np.shape(weights)[0] != np.shape(log_probs)[0]:
    raise ValueError(f"weights: must have one entry per row of log_probs ({np.shape(log_probs)[0]}), got shape "
                     f"{np.shape(weights)}")
  _validation.check_finite("weights", weights)
  _validation.check_nonnegative("weights", weights)
  lp = _validation.check_floating("log_probs", log_probs)
  m = _validation.check_floating("mask", mask) * _validation.check_floating("weights", weights)[:, None]
  total = jnp.sum(jnp.where(m > 0, m * lp, 0.0))
  loss = -total / jnp.maximum(jnp.sum(m), 1.0)
  ok = jnp.all(jnp.isfinite(lp)) & jnp.all(jnp.isfinite(m))
  return _validation.nan_unless(ok, loss)
