r"""HAPO: the history-aware length reward (Huang et al., 2025), with its per-prompt history as a pytree.

HAPO keeps, for every training prompt ``i``, a history state ``h_i``: the length of the shortest correct
answer generated for it so far (none yet: no length reward). A completion of length ``L`` then gets

.. math::
  f(L, h) = \cos\big(\tfrac{\pi}{2} \min(L / h, 2)\big) \quad (= -1 \text{ once } L \ge 2h),

  r_\text{len} = \begin{cases} 0 & \text{no history for the prompt} \\ \max(f, c) & \text{correct} \\
  \min(f, 0) & \text{incorrect}\end{cases}, \qquad c = -0.7,

and the reward is ``r = r_corr + w r_len`` with ``r_corr`` 1 for a correct answer and 0 otherwise
(``w = 1``). A correct answer shorter than the history is rewarded (up to +1 at ``L -> 0``), one longer is
penalised down to ``c = -0.7``, so any correct answer still beats any wrong one (``1 - 0.7 > 0 + 0``); a
wrong answer is never rewarded for being short (``min(f, 0)``), only penalised for being longer than the
history (down to -1), which keeps short exploration cheap. After the batch's rewards are computed the
history is updated with the batch's correct answers: ``h_i <- min(h_i, min{L : correct answers to i})``.

The details follow the authors' code (HCY123902/HAPO, ``utils.py: compute_len_reward`` with the default
``type_lr="cosine"``, ``w_lr=1``, ``mode="min"``, and ``grpo_trainer.py: combined_reward_func``), read
here: ``-1`` for ``L >= 2h``, the clips -0.7 and 0, no history meaning ``h`` unset (or ``h <= 0``), rewards
computed from the history *before* the batch and the history updated after it, from correct answers only,
and ``r_corr = 1`` / 0. The paper's text could not be read here (only its abstract); the code is taken as
its definition, so no ``official_compat`` switch exists. Not reproduced: the authors' optional repetition
penalty (``rep_penalty = 0`` by default there) and the linear and "mean" history variants. Lengths are
tokens of the completion without its end token, as the authors count the tokenizer's ids of the text.

The history is a `HAPOHistory` NamedTuple of arrays indexed by prompt id (``inf`` = none yet), updated
functionally by `hapo_update_history`, so it rides in a train state and is checkpointed with it.

Reference: Huang et al., "HAPO: Training Language Models to Reason Concisely via History-Aware Policy
Optimization", 2025. https://arxiv.org/abs/2505.11225 ; code: https://github.com/HCY123902/HAPO
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdyn import _validation

__all__ = ["HAPOHistory", "hapo_init", "hapo_length_reward", "hapo_reward", "hapo_update_history"]


class HAPOHistory(NamedTuple):
  """Per-prompt history: ``min_length`` ``(num_prompts,)`` float32, the shortest correct answer so far
  (``inf`` where there is none yet)."""

  min_length: jax.Array


def hapo_init(num_prompts: int) -> HAPOHistory:
  """An empty history for prompt ids ``0 .. num_prompts - 1``.

  Example:
    >>> hapo_init(2)
    HAPOHistory(min_length=Array([inf, inf], dtype=float32))
  """
  n = _validation.check_int("num_prompts", num_prompts, lower=1)
  return HAPOHistory(jnp.full((n,), jnp.inf, jnp.float32))


def _check_batch(lengths, correct):
  _validation.check_ndim("lengths", lengths, 1)
  _validation.check_finite("lengths", lengths)
  _validation.check_nonnegative("lengths", lengths)
  _validation.check_same_shape("correct", correct, "lengths", lengths)
  dtype = jnp.asarray(correct).dtype
  if dtype != jnp.bool_:
    raise TypeError(f"correct: must be a boolean array, got dtype {dtype}")
  return _validation.check_floating("lengths", lengths).astype(jnp.float32)


def _check_history(history):
  if not isinstance(history, HAPOHistory):
    raise TypeError(f"history: must be a HAPOHistory (hapo_init), got {type(history).__name__}")
  _validation.check_ndim("history", history.min_length, 1)


def _check_ids(prompt_ids, lengths, history):
  _validation.check_same_shape("prompt_ids", prompt_ids, "lengths", lengths)
  _validation.check_integer_labels("prompt_ids", prompt_ids, history.min_length.shape[0])
  return jnp.asarray(prompt_ids)


def hapo_length_reward(lengths: jax.Array, history_lengths: jax.Array, correct: jax.Array, *,
                       correct_floor: float = -0.7) -> jax.Array:
  r"""HAPO's cosine length reward ``r_len`` (see the module), elementwise.

  Args:
    lengths: ``(n,)`` finite completion lengths ``L >= 0``.
    history_lengths: ``(n,)`` each completion's prompt history ``h``; ``inf`` or ``<= 0`` means none (reward 0).
    correct: ``(n,)`` bool, whether each completion is correct.
    correct_floor: the clip ``c`` of correct answers' reward, in [-1, 0] (-0.7 in the authors' code).

  Returns:
    ``(n,)`` float32 rewards in ``[-1, 1]``.

  Example:
    >>> hapo_length_reward(jnp.array([5.0, 30.0, 5.0, 5.0]), jnp.array([10.0, 10.0, 10.0, jnp.inf]),
    ...                    jnp.array([True, True, False, True]))
    Array([ 0.70710677, -0.7       ,  0.        ,  0.        ], dtype=float32)
  """
  length = _check_batch(lengths, correct)
  _validation.check_same_shape("history_lengths", history_lengths, "lengths", lengths)
  floor = _validation.check_real("correct_floor", correct_floor, lower=-1.0, upper=0.0)
  h = _validation.check_floating("history_lengths", history_lengths).astype(jnp.float32)
  has = (h > 0) & (h < jnp.inf)
  h_safe = jnp.where(has, h, 1.0)
  f = jnp.cos(jnp.pi / 2 * jnp.minimum(length / h_safe, 2.0))
  f = jnp.where(length < 2 * h_safe, f, -1.0)  # exactly -1 from L = 2h on, as the authors' branch
  r = jnp.where(jnp.asarray(correct), jnp.maximum(f, floor), jnp.minimum(f, 0.0))
  r = jnp.where(has, r, 0.0)
  return jnp.where(jnp.isnan(h) | ~jnp.isfinite(length), jnp.nan, r)


def hapo_reward(history: HAPOHistory, prompt_ids: jax.Array, lengths: jax.Array, correct: jax.Array, *,
                length_weight: float = 1.0, correct_floor: float = -0.7) -> jax.Array:
  r"""HAPO's reward ``r_corr + w r_len`` of a batch of completions, from the history before the batch.

  Args:
    history: the `HAPOHistory` (not updated here; see `hapo_update_history`).
    prompt_ids: ``(n,)`` integer prompt ids in ``[0, num_prompts)``.
    lengths: ``(n,)`` completion lengths.
    correct: ``(n,)`` bool correctness from the verifier.
    length_weight: ``w >= 0`` (1 in the authors' code).
    correct_floor: as in `hapo_length_reward`.

  Returns:
    ``(n,)`` float32 rewards.

  Example:
    >>> h = HAPOHistory(jnp.array([10.0, jnp.inf]))
    >>> hapo_reward(h, jnp.array([0, 1]), jnp.array([5.0, 4.0]), jnp.array([True, True]))
    Array([1.7071068, 1.       ], dtype=float32)
  """
  _check_history(history)
  _check_batch(lengths, correct)
  ids = _check_ids(prompt_ids, lengths, history)
  w = _validation.check_real("length_weight", length_weight, lower=0.0)
  n = history.min_length.shape[0]
  ok = _validation.labels_valid(ids, n)
  h = history.min_length[jnp.clip(ids, 0, n - 1)]
  r_len = hapo_length_reward(lengths, h, correct, correct_floor=correct_floor)
  return _validation.nan_unless(ok, jnp.asarray(correct, jnp.float32) + w * r_len)


def hapo_update_history(history: HAPOHistory, prompt_ids: jax.Array, lengths: jax.Array,
                        correct: jax.Array) -> HAPOHistory:
  """The history after a batch: each prompt's minimum over its earlier and new correct answers' lengths.

  Wrong answers leave the history as it is. Pure (returns a new `HAPOHistory`), usable under ``jit``.

  Args:
    history: the current `HAPOHistory`.
    prompt_ids: ``(n,)`` integer prompt ids in ``[0, num_prompts)``.
    lengths: ``(n,)`` completion lengths.
    correct: ``(n,)`` bool.

  Returns:
    The updated `HAPOHistory`.

  Example:
    >>> h = hapo_update_history(hapo_init(2), jnp.array([0, 0, 1]), jnp.array([7.0, 5.0, 3.0]),
    ...                         jnp.array([True, True, False]))
    >>> h.min_length
    Array([ 5., inf], dtype=float32)
  """
  _check_history(history)
  length = _check_batch(lengths, correct)
  ids = _check_ids(prompt_ids, lengths, history)
  n = history.min_length.shape[0]
  new = jnp.where(jnp.asarray(correct), length, jnp.inf)
  # a non-finite length or an out-of-range id poisons the whole history (never a plausible finite state)
  bad = jnp.any(~jnp.isfinite(length) | ~_validation.labels_valid(ids, n))
  updated = history.min_length.at[jnp.clip(ids, 0, n - 1)].min(new)
  return HAPOHistory(jnp.where(bad, jnp.nan, updated).astype(history.min_length.dtype))


