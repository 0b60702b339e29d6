r"""SCoRe: two-attempt self-correction episodes, stage I's objective, stage II's reward bonus, the SFT baseline.

SCoRe (Kumar et al., 2024) trains one policy to answer a problem ``x`` (attempt ``y1``) and then, given
``x``, ``y1`` and a fixed instruction ``p`` asking it to correct itself, to answer again (attempt ``y2``).
On the addition task (`jaxdyn.rl.format_prompt`) the second turn's prompt is the bytes
``x + y1 + p`` (`score_turn2_prompt`, ``p = SCORE_INSTRUCTION``) and both attempts are scored by the exact
verifier: ``r_k = 1`` when `jaxdyn.rl.verify` accepts ``y_k``, else 0 (`score_rewards`). `score_sample` samples
both turns with `jaxdyn.models.generate`'s KV cache; `score_episode` lays an episode out as token rows with the
target masks of each attempt.

Stage I (the paper's Eq. 3) trains the second attempt for reward while a strong KL term keeps the
*first* attempt's distribution at the base policy, so the model learns to correct rather than to
collapse onto answering well once and repeating itself:

.. math::
  \max_\theta\ \mathbb{E}\big[\hat r(y_2)
  - \beta_2\, D_{KL}\big(\pi_\theta(\cdot\mid x)\,\|\,\pi_\text{ref}(\cdot\mid x)\big)\big],

(`score_stage1_loss`: the clipped surrogate of `jaxdyn.rl.clipped_surrogate_loss` on the second attempt's
tokens plus ``beta2`` times the mean k3 estimate `jaxdyn.rl.kl_k3` over the first attempt's tokens).
Stage II (Eq. 4) trains both attempts with a KL weight ``beta1`` to the reference, and shapes the second
attempt's reward with the bonus ``alpha (r2 - r1)`` (`score_stage2_rewards`):

.. math:: R_1 = r_1, \qquad R_2 = r_2 + \alpha\,(r_2 - r_1),

so a wrong-to-right correction earns ``1 + alpha``, right-to-wrong ``-alpha`` and keeping the same
answer ``r2``; ``alpha = 0`` gives plain two-turn RL. Stage II's objective is then
`jaxdyn.rl.clipped_surrogate_loss` on the rows of both attempts stacked (`ScoreEpisode` gives both attempts
rows of one length), with advantages from ``R_1`` and ``R_2`` and ``kl_coef=SCORE_BETA1``.

The baseline the paper criticises, SFT on correction traces ("Pair-SFT", after Welleck et al.), is
`score_sft_corrections`: sequences ``x, y1 (wrong), p, y2 (correct)`` built from the task's own traces
(`jaxdyn.rl.format_completion` with ``error != 0`` and ``0``), with the loss on the second attempt only.

Hyperparameters: ``SCORE_ALPHA = 10``, ``SCORE_BETA1 = 0.01``, ``SCORE_BETA2 = 0.1`` (the paper's table of
hyperparameters for MATH, ``beta2 = 10 beta1``; recalled, the PDF could not be re-read here). Derived here:
the instruction bytes (the paper's is an English sentence; a byte-level policy on this task gets a short
marker), the KL estimator (per-token k3 on sampled tokens, averaged as the surrogate is; the paper writes a
KL divergence without giving its estimator), and each attempt credited with its own reward (``R_1`` on the
first attempt's tokens, ``R_2`` on the second's, as Eq. 4's per-turn sum reads; no return-to-go).
No code of the authors is public, so there is no ``official_compat`` switch.

Reference: Kumar et al., "Training Language Models to Self-Correct via Reinforcement Learning", 2024.
https://arxiv.org/abs/2409.12917
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation
from jaxdyn.rl._policy_gradient import AGGREGATIONS, _masked_average, clipped_surrogate_loss, kl_k3
from jaxdyn.models import Transformer, generate
from jaxdyn.rl._task import (
    VERBOSITIES,
    AdditionProblems,
    decode_completion,
    encode,
    format_completion,
    format_prompt,
    verify,
)

__all__ = ["SCORE_INSTRUCTION", "SCORE_ALPHA", "SCORE_BETA1", "SCORE_BETA2", "ScoreEpisode", "score_turn2_prompt",
           "score_episode", "score_rewards", "score_stage2_rewards", "score_stage1_loss", "score_sft_corrections",
           "score_sample"]

SCORE_INSTRUCTION = b"|fix:"
"""The fixed self-correction instruction appended after the first attempt (derived here)."""
SCORE_ALPHA = 10.0
"""Stage II's reward-bonus weight alpha (the paper's)."""
SCORE_BETA1 = 0.01
"""Stage II's KL weight to the reference on both attempts (the paper's)."""
SCORE_BETA2 = 0.1
"""Stage I's KL weight keeping the first attempt at the base policy (the paper's)."""


class ScoreEpisode(NamedTuple):
  """Token rows and target masks of two-attempt episodes (all NumPy, ``n`` rows of ``length`` tokens).

  ``first_tokens``: ``[BOS] x y1 [EOS] [PAD]...`` (int32); ``first_mask`` ``(n, length-1)`` float32, 1 on the
  targets of ``y1`` and its EOS. ``second_tokens``: ``[BOS] x y1 p y2 [EOS] [PAD]...``; ``second_mask``: 1
  on the targets of ``y2`` and its EOS. Masks align with `jaxdyn.rl.policy_log_probs` (targets
  ``tokens[:, 1:]``)."""

  first_tokens: np.ndarray
  first_mask: np.ndarray
  second_tokens: np.ndarray
  second_mask: np.ndarray


def _check_bytes(name, value):
  if not isinstance(value, (bytes, bytearray)):
    raise TypeError(f"{name}: must be bytes, got {type(value).__name__}")
  return bytes(value)


def _check_byte_list(name, values, n=None):
  if isinstance(values, (bytes, bytearray, str)) or not isinstance(values, Sequence):
    raise TypeError(f"{name}: must be a sequence of bytes, got {type(values).__name__}")
  if not all(isinstance(v, (bytes, bytearray)) for v in values):
    raise TypeError(f"{name}: must be a sequence of bytes")
  if n is None:
    _validation.check_nonempty(name, list(values), what="strings")
  elif len(values) != n:
    raise ValueError(f"{name}: must hold one entry per prompt ({n}), got {len(values)}")
  return [bytes(v) for v in values]


def score_turn2_prompt(prompt: bytes, first_attempt: bytes, *, instruction: bytes = SCORE_INSTRUCTION) -> bytes:
  """The second turn's prompt: ``prompt + first_attempt + instruction`` as bytes.

  Args:
    prompt: the problem ``x`` (`jaxdyn.rl.format_prompt`).
    first_attempt: the first attempt ``y1`` as decoded (`jaxdyn.rl.decode_completion`), without its EOS.
    instruction: the self-correction instruction ``p`` (non-empty bytes; `SCORE_INSTRUCTION` by default).

  Returns:
    bytes.

  Example:
    >>> score_turn2_prompt(b"12+07=", b"#18")
    b'12+07=#18|fix:'
  """
  prompt = _check_bytes("prompt", prompt)
  first_attempt = _check_bytes("first_attempt", first_attempt)
  instruction = _check_bytes("instruction", instruction)
  if not instruction:
    raise ValueError("instruction: must be non-empty bytes, got b''")
  return prompt + first_attempt + instruction


def _targets(starts, counts, length):
  """``(n, length-1)`` float32 masks with ones on targets ``starts[i] .. starts[i] + counts[i] - 1``."""
  j = np.arange(length - 1)[None, :]
  s, c = np.asarray(starts)[:, None], np.asarray(counts)[:, None]
  return ((j >= s) & (j < s + c)).astype(np.float32)


def score_episode(prompts: Sequence[bytes], first_attempts: Sequence[bytes], second_attempts: Sequence[bytes], *,
                  length: int, instruction: bytes = SCORE_INSTRUCTION) -> ScoreEpisode:
  """Token rows and masks of both attempts of ``n`` episodes (see `ScoreEpisode`).

  The first-attempt row is what was sampled in turn 1, ``[BOS] x y1 [EOS]``: its mask covers the
  ``len(y1) + 1`` targets from index ``len(x)`` on (``y1`` and the EOS the policy chose). The second row
  is ``[BOS] + score_turn2_prompt(x, y1) + y2 + [EOS]``; its mask covers the ``len(y2) + 1`` targets from
  index ``len(x) + len(y1) + len(p)`` on. Both rows are padded to ``length``, so the two attempts stack
  into one batch. An attempt cut off by the sampling budget gets an EOS here all the same; give the
  sampler room for the longest trace.

  Args:
    prompts: ``n`` problems ``x`` (bytes).
    first_attempts: ``n`` first attempts ``y1`` (bytes, without EOS).
    second_attempts: ``n`` second attempts ``y2`` (bytes, without EOS).
    length: tokens per row; must fit the longest second-turn row, ``len(x) + len(y1) + len(p) + len(y2) + 2``.
    instruction: the self-correction instruction ``p``.

  Returns:
    A `ScoreEpisode`.

  Example:
    >>> ep = score_episode([b"1+2="], [b"#4"], [b"#3"], length=14, instruction=b"?")
    >>> ep.first_mask.astype(int).tolist(), ep.second_mask.astype(int).tolist()
    ([[0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]], [[0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0]])
  """
  prompts = _check_byte_list("prompts", prompts)
  n = len(prompts)
  first = _check_byte_list("first_attempts", first_attempts, n)
  second = _check_byte_list("second_attempts", second_attempts, n)
  instruction = _check_bytes("instruction", instruction)
  if not instruction:
    raise ValueError("instruction: must be non-empty bytes, got b''")
  length = _validation.check_int("length", length, lower=2)
  turn2 = [p + y1 + instruction for p, y1 in zip(prompts, first)]
  need = max(len(t) + len(y2) + 2 for t, y2 in zip(turn2, second))
  if need > length:
    raise ValueError(f"length: must fit the longest second-turn row of {need} tokens, got {length}")
  first_tokens = encode(prompts, first, length=length)
  second_tokens = encode(turn2, second, length=length)
  first_mask = _targets([len(p) for p in prompts], [len(y) + 1 for y in first], length)
  second_mask = _targets([len(t) for t in turn2], [len(y) + 1 for y in second], length)
  return ScoreEpisode(first_tokens, first_mask, second_tokens, second_mask)


def score_rewards(prompts: Sequence[bytes], first_attempts: Sequence[bytes],
                  second_attempts: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
  """Correctness rewards ``(r1, r2)`` of both attempts from the exact verifier `jaxdyn.rl.verify`.

  Args:
    prompts: ``n`` problems ``b"<a>+<b>="``.
    first_attempts, second_attempts: ``n`` attempts each (bytes).

  Returns:
    ``(r1, r2)``, two ``(n,)`` float32 arrays of 0 / 1.

  Example:
    >>> score_rewards([b"1+2=", b"2+2="], [b"#4", b"#4"], [b"#3", b"#5"])
    (array([0., 1.], dtype=float32), array([1., 0.], dtype=float32))
  """
  prompts = _check_byte_list("prompts", prompts)
  n = len(prompts)
  first = _check_byte_list("first_attempts", first_attempts, n)
  second = _check_byte_list("second_attempts", second_attempts, n)
  r1 = np.array([verify(p, y) for p, y in zip(prompts, first)], np.float32)
  r2 = np.array([verify(p, y) for p, y in zip(prompts, second)], np.float32)
  return r1, r2


def score_stage2_rewards(first_rewards: jax.Array, second_rewards: jax.Array, *,
                         alpha: float = SCORE_ALPHA) -> tuple[jax.Array, jax.Array]:
  r"""Stage II's shaped rewards: ``R1 = r1`` for the first attempt, ``R2 = r2 + alpha (r2 - r1)`` for the second.

  Args:
    first_rewards: ``(n,)`` rewards ``r1`` of the first attempts.
    second_rewards: ``(n,)`` rewards ``r2`` of the second attempts.
    alpha: the bonus weight (>= 0; the paper's 10 by default, 0 gives plain two-turn RL).

  Returns:
    ``(R1, R2)``, two ``(n,)`` float arrays (float32 at least).

  Example:
    >>> r1, r2 = jnp.array([0.0, 1.0, 1.0]), jnp.array([1.0, 0.0, 1.0])
    >>> score_stage2_rewards(r1, r2, alpha=10.0)[1]
    Array([ 11., -10.,   1.], dtype=float32)
  """
  _validation.check_ndim("first_rewards", first_rewards, 1)
  _validation.check_ndim("second_rewards", second_rewards, 1)
  _validation.check_same_shape("second_rewards", second_rewards, "first_rewards", first_rewards)
  alpha = _validation.check_real("alpha", alpha, lower=0.0)
  r1 = _validation.check_floating("first_rewards", first_rewards)
  r1 = r1.astype(jnp.promote_types(r1.dtype, jnp.float32))
  r2 = _validation.check_floating("second_rewards", second_rewards).astype(r1.dtype)
  return r1, r2 + jnp.asarray(alpha, r1.dtype) * (r2 - r1)


def _check_mask(name, mask, like_name, like):
  _validation.check_same_shape(name, mask, like_name, like)
  _validation.check_nonnegative(name, mask)
  if _validation.is_concrete(mask) and float(np.sum(np.asarray(mask))) <= 0:
    raise ValueError(f"{name}: must select at least one token, got an all-zero mask")


def score_stage1_loss(first_log_probs: jax.Array, first_ref_log_probs: jax.Array, first_mask: jax.Array,
                      second_log_probs: jax.Array, second_old_log_probs: jax.Array, second_advantages: jax.Array,
                      second_mask: jax.Array, *, beta2: float = SCORE_BETA2, clip_eps: float = 0.2,
                      aggregation: str = "token") -> tuple[jax.Array, dict]:
  r"""Stage I's loss: the clipped surrogate on the second attempt plus ``beta2`` times the first attempt's KL.

  .. math::
    \mathcal{L} = \mathcal{L}_\text{clip}(y_2) + \beta_2\,\overline{k_3}(y_1), \qquad
    k_3 = e^{d} - d - 1,\ d = \log\pi_\text{ref} - \log\pi_\theta,

  with ``L_clip`` `jaxdyn.rl.clipped_surrogate_loss` over ``second_mask`` (no KL term there: Eq. 3 has
  none on the second attempt) and the k3 average over ``first_mask`` (``aggregation`` as there). The
  gradient of the KL term flows through ``first_log_probs`` only; the reference log-probs are constants.
  The KL term is 0 exactly when the policy's first-attempt log-probs equal the base policy's.

  Args:
    first_log_probs: ``(B, T)`` the policy's log-probs of the first-attempt rows' targets.
    first_ref_log_probs: ``(B, T)`` the same under the base (reference) policy.
    first_mask: ``(B, T)`` 0/1 weights of the first attempt's targets (`ScoreEpisode.first_mask`).
    second_log_probs: ``(B, T)`` the policy's log-probs of the second-attempt rows' targets.
    second_old_log_probs: ``(B, T)`` the same under the sampling policy.
    second_advantages: ``(B,)`` or ``(B, T)`` advantages of the second attempts (from ``r2``).
    second_mask: ``(B, T)`` 0/1 weights of the second attempt's targets.
    beta2: the first attempt's KL weight (>= 0; the paper's 0.1 by default).
    clip_eps: the surrogate's clipping range (>= 0).
    aggregation: ``"token"`` or ``"sequence"`` (see `jaxdyn.rl.clipped_surrogate_loss`).

  Returns:
    ``(loss, aux)``: the scalar loss and scalars ``pg_loss`` (the surrogate term), ``kl_first`` (mean k3 on
    the first attempt) and ``clip_fraction``.

  Example:
    >>> lp, m = jnp.zeros((1, 2)), jnp.ones((1, 2))
    >>> loss, aux = score_stage1_loss(lp, lp - 1.0, m, lp, lp, jnp.array([1.0]), m, beta2=0.1)
    >>> round(float(aux["kl_first"]), 4), round(float(loss), 4)
    (0.3679, -0.9632)
  """
  _validation.check_ndim("first_log_probs", first_log_probs, 2)
  _validation.check_nonempty("first_log_probs", first_log_probs)
  _validation.check_same_shape("first_ref_log_probs", first_ref_log_probs, "first_log_probs", first_log_probs)
  _check_mask("first_mask", first_mask, "first_log_probs", first_log_probs)
  _validation.check_ndim("second_log_probs", second_log_probs, 2)
  _validation.check_nonempty("second_log_probs", second_log_probs)
  _validation.check_same_shape("second_old_log_probs", second_old_log_probs, "second_log_probs", second_log_probs)
  _check_mask("second_mask", second_mask, "second_log_probs", second_log_probs)
  b = jnp.shape(second_log_probs)[0]
  if jnp.shape(second_advantages) not in ((b,), jnp.shape(second_log_probs)):
    raise ValueError(f"second_advantages: must have shape ({b},) or {jnp.shape(second_log_probs)}, got "
                     f"{jnp.shape(second_advantages)}")
  beta2 = _validation.check_real("beta2", beta2, lower=0.0)
  clip_eps = _validation.check_real("clip_eps", clip_eps, lower=0.0)
  aggregation = _validation.check_choice("aggregation", aggregation, AGGREGATIONS)
  pg, aux = clipped_surrogate_loss(second_log_probs, second_old_log_probs, second_advantages, second_mask,
                                   clip_eps=clip_eps, aggregation=aggregation)
  lp1 = _validation.check_floating("first_log_probs", first_log_probs)
  lp1 = lp1.astype(jnp.promote_types(lp1.dtype, jnp.float32))
  ref1 = jax.lax.stop_gradient(_validation.check_floating("first_ref_log_probs", first_ref_log_probs).astype(lp1.dtype))
  kl = _masked_average(kl_k3(lp1, ref1), jnp.asarray(first_mask, lp1.dtype), aggregation)
  loss = pg + jnp.asarray(beta2, lp1.dtype) * kl
  return loss, {"pg_loss": pg, "kl_first": kl, "clip_fraction": aux["clip_fraction"]}


def score_sft_corrections(problems: AdditionProblems, errors: Sequence[int], *, length: int,
                          verbosity: int | Sequence[int] = 0,
                          instruction: bytes = SCORE_INSTRUCTION) -> tuple[np.ndarray, np.ndarray]:
  """The SFT-on-corrections baseline's data: ``x, y1 (wrong), p, y2 (correct)`` rows, loss on ``y2`` only.

  Row ``i`` is `score_episode`'s second-turn row for problem ``i`` with
  ``y1 = format_completion(a, b, error=errors[i])`` (a wrong trace: the steps of the true sum, a wrong
  answer) and ``y2 = format_completion(a, b)`` (correct), both at ``verbosity``; the mask selects the
  targets of ``y2`` and its EOS. Train with the mean token cross-entropy over the mask.

  Args:
    problems: an `jaxdyn.rl.AdditionProblems` (``n`` problems).
    errors: ``n`` non-zero integers added to the first attempts' answers (``a + b + error >= 0``).
    length: tokens per row (must fit the longest row).
    verbosity: 0, 1 or 2 for every pair, or ``n`` of them.
    instruction: the self-correction instruction ``p``.

  Returns:
    ``(tokens, mask)``: ``(n, length)`` int32 ids and ``(n, length - 1)`` float32 target mask.

  Example:
    >>> from jaxdyn.rl import addition_problems
    >>> p = addition_problems(1, digits=1, seed=0)
    >>> int(p.a[0]), int(p.b[0])
    (8, 6)
    >>> tokens, mask = score_sft_corrections(p, [1], length=16, instruction=b"?")
    >>> bytes(tokens[0, 1:12].tolist()), int(mask.sum())
    (b'8+6=#15?#14', 4)
  """
  if not isinstance(problems, AdditionProblems):
    raise TypeError(f"problems: must be an AdditionProblems (jaxdyn.rl.addition_problems), got "
                    f"{type(problems).__name__}")
  n = len(problems.ids)
  if n == 0:
    raise ValueError("problems: must hold at least one problem, got 0")
  if isinstance(errors, (bytes, str)) or np.ndim(errors) != 1:
    raise TypeError(f"errors: must be a sequence of {n} integers, got {type(errors).__name__}")
  if len(errors) != n:
    raise ValueError(f"errors: must hold one entry per problem ({n}), got {len(errors)}")
  errors = [_validation.check_int("errors", e) for e in errors]
  length = _validation.check_int("length", length, lower=2)
  if isinstance(verbosity, (list, tuple, np.ndarray)) and np.ndim(verbosity) == 1:
    if len(verbosity) != n:
      raise ValueError(f"verbosity: must hold one entry per problem ({n}), got {len(verbosity)}")
    verbosities = [_validation.check_choice("verbosity", v, VERBOSITIES) for v in verbosity]
  else:
    verbosities = [_validation.check_choice("verbosity", verbosity, VERBOSITIES)] * n
  _check_bytes("instruction", instruction)
  prompts, first, second = [], [], []
  for a, b, e, v in zip(problems.a.tolist(), problems.b.tolist(), errors, verbosities):
    if e == 0 or a + b + e < 0:
      raise ValueError(f"errors: must be non-zero with a + b + error >= 0 (a wrong, parseable first attempt), "
                       f"got {e} for {a}+{b}")
    prompts.append(format_prompt(a, b, digits=problems.digits))
    first.append(format_completion(a, b, digits=problems.digits, verbosity=v, error=e))
    second.append(format_completion(a, b, digits=problems.digits, verbosity=v))
  ep = score_episode(prompts, first, second, length=length, instruction=instruction)
  return ep.second_tokens, ep.second_mask


def score_sample(model: Transformer, prompts: Sequence[bytes], *, key: jax.Array, max_new_tokens: int,
                 temperature: float = 1.0, greedy: bool = False,
                 instruction: bytes = SCORE_INSTRUCTION) -> tuple[list[bytes], list[bytes]]:
  """Samples two-attempt episodes: ``y1`` for every prompt, then ``y2`` from ``score_turn2_prompt(x, y1)``.

  Both turns use `jaxdyn.models.generate` (KV cache, jitted). The first turn runs as one batch (the task's
  prompts share a length); second-turn prompts differ in length with ``y1``, so they run in one batch per
  distinct length. `generate` compiles once per prompt shape, so each batch of second-turn prompts is padded to
  the next power of two rows (copies of its last prompt, whose completions are dropped): the compiled loops are
  then cached per (length, power of two), not recompiled for every new count of rows of a length, which in RL
  changes from step to step. Turn 1 uses the key ``fold_in(key, 0)``, the batch of second-turn prompts of length
  ``L`` ``fold_in(key, L)``. Attempts are decoded up to their first
  EOS (`jaxdyn.rl.decode_completion`); one that ran out of ``max_new_tokens`` is kept as it stands.

  Args:
    model: the policy, a `jaxdyn.models.Transformer` over `jaxdyn.data`'s vocabulary.
    prompts: ``n`` prompts of one length (`jaxdyn.rl.format_prompt`).
    key: a `jax.random` key.
    max_new_tokens: tokens generated per attempt (>= 1).
    temperature: sampling temperature (> 0).
    greedy: argmax decoding instead of sampling.
    instruction: the self-correction instruction ``p``.

  Returns:
    ``(first_attempts, second_attempts)``: two lists of ``n`` byte strings, ready for `score_rewards` and
    `score_episode`.

  Example:
    >>> from flax import nnx
    >>> from jaxdyn.data import VOCAB_SIZE
    >>> m = Transformer(VOCAB_SIZE, dim=16, depth=1, num_heads=1, rngs=nnx.Rngs(0))
    >>> y1, y2 = score_sample(m, [b"1+2=", b"3+4="], key=jax.random.key(0), max_new_tokens=3, greedy=True)
    >>> len(y1), len(y2), all(len(y) <= 3 for y in y1 + y2)
    (2, 2, True)
  """
  if not isinstance(model, Transformer):
    raise TypeError(f"model: must be a jaxdyn.models.Transformer, got {type(model).__name__}")
  prompts = _check_byte_list("prompts", prompts)
  if len({len(p) for p in prompts}) != 1:
    raise ValueError(f"prompts: must share one length, got lengths {sorted({len(p) for p in prompts})}")
  key = _validation.check_key("key", key)
  max_new_tokens = _validation.check_int("max_new_tokens", max_new_tokens, lower=1)
  temperature = _validation.check_real("temperature", temperature, lower=0.0, lower_open=True)
  instruction = _check_bytes("instruction", instruction)
  if not instruction:
    raise ValueError("instruction: must be non-empty bytes, got b''")

  def complete(batch, k, pad=False):
    start, n = len(batch[0]) + 1, len(batch)
    if pad:  # a power of two rows, so a new row count does not compile a new loop
      batch = list(batch) + [batch[-1]] * ((1 << (n - 1).bit_length()) - n)
    out = np.asarray(generate(model, encode(batch, length=start), max_new_tokens=max_new_tokens, key=k,
                              temperature=temperature, greedy=greedy))
    return [decode_completion(row[start:]) for row in out[:n]]

  first = complete(prompts, jax.random.fold_in(key, 0))
  turn2 = [p + y1 + instruction for p, y1 in zip(prompts, first)]
  second: list[bytes] = [b""] * len(prompts)
  for n in sorted({len(t) for t in turn2}):
    rows = [i for i, t in enumerate(turn2) if len(t) == n]
    for i, y2 in zip(rows, complete([turn2[i] for i in rows], jax.random.fold_in(key, n), pad=True)):
      second[i] = y2
  return first, second
