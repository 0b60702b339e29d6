r"""Self-generated tokens: Batch-Scheduled Sampling and Reference-Answer-based Correction (Cen et al., TMLR 2025).

A language model trained by teacher forcing always sees ground-truth history, but at inference it
sees its own. Batch-Scheduled Sampling (BASH) closes the gap *offline*: a teacher-forced pass of the
model over a batch gives its own next-token predictions, and before the training step each input
token is replaced by the model's prediction with probability ``p``, the targets kept:

.. math::
   \hat y_t = \arg\max_v \ell_{t-1, v}, \qquad
   \tilde x_t = \begin{cases} \hat y_t & \text{if } b_t = 1 \\ x_t & \text{otherwise} \end{cases}, \qquad
   b_t \sim \mathrm{Bernoulli}(p)\ (t \ge 1), \quad b_0 = 0,

``\ell_{t-1}`` the logits at position ``t - 1`` (which predict token ``t``), and the loss is the usual
next-token cross-entropy of the model on ``\tilde x`` against the *original* targets ``x_{t+1}``. The
first token is never replaced (nothing predicts it), nor, given ``segment_ids``, the first token of
each document piece of a packed row (its prediction came from the previous document). The draws
``b`` come from an explicit key, per token, independently. ``p = 0`` returns the inputs bit for bit,
so training is plain next-token prediction. `self_generated_inputs` takes the logits of the offline
pass, or a function ``inputs -> logits`` that it calls once (under ``stop_gradient``: no gradient flows
through the generated tokens, whose argmax is not differentiable anyway).

**The schedule of p** (`sampling_probability`), over ``T`` steps with the largest rate ``p_max``:

- ``"constant"``: ``p = p_max``;
- ``"linear"``: ``p = p_max\, \min(t / T, 1)``, from teacher forcing to ``p_max``;
- ``"batch"``: a staircase, ``p = p_max\, j / (S - 1)`` in stage ``j = \min(\lfloor t S / T \rfloor, S - 1)``
  of ``S`` equal stages: constant within a stage, so one offline generation pass (one model
  snapshot) serves a stage's batches, starting from teacher forcing.

**Reference-Answer-based Correction (RAC)** (`correction_sequence`): a training sequence that shows
the model its own answer and then the reference, so it learns to correct itself without an external
oracle: ``prompt ++ generated ++ separator ++ reference`` with the loss mask 0 on ``prompt`` and
``generated`` (the model's own tokens are context, never targets) and 1 on ``separator`` and
``reference`` (the model learns to emit the correction marker after an attempt and then the right
answer).

**What is derived here.** Only the abstract of the paper could be read (no public code was found).
Derived here, not taken from the paper: the argmax (greedy) choice of the self-generated token; the
per-token independent Bernoulli draws; never replacing the first token of a sequence or document
piece; the three schedule forms, in particular reading "batch-scheduled" as a per-stage constant
``p`` rising in steps; and the RAC layout (the order, the separator, and which tokens carry loss).
The issue text names the authors as Cooper et al.; the paper's authors are Cen, Liu, Zeng,
Chaudhari, Rangwala, Karypis and Fakoor.

Reference: Cen et al., "Bridging the Training-Inference Gap in LLMs by Leveraging Self-Generated
Tokens", TMLR 2025. https://arxiv.org/abs/2410.14655
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation

SCHEDULES = ("constant", "linear", "batch")
DEFAULT_SEPARATOR = "\n# corrected:\n"


class SelfGenerated(NamedTuple):
  """What `self_generated_inputs` returns.

  Attributes:
    inputs: the mixed inputs ``\\tilde x``, the dtype and shape of the given inputs.
    targets: the original inputs, unchanged (the caller shifts them as for teacher forcing).
    replaced: bool, True where a token was replaced by the model's argmax (which may equal the truth).
  """

  inputs: jax.Array
  targets: jax.Array
  replaced: jax.Array


def self_generated_inputs(inputs: Any, logits: Any, p: Any, *, key: Any, segment_ids: Any = None) -> SelfGenerated:
  r"""Replaces input tokens with the model's own argmax predictions with probability ``p`` (module docstring).

  .. math:: \tilde x_t = b_t\, \arg\max_v \ell_{t-1,v} + (1 - b_t)\, x_t, \quad b_t \sim \mathrm{Bernoulli}(p),
     \ b_0 = 0.

  Args:
    inputs: ``(..., T)`` integer tokens, ``T >= 1``.
    logits: ``(..., T, V)`` floating logits of a teacher-forced pass over ``inputs`` (position ``t``
      predicts token ``t + 1``), or a function ``inputs -> logits`` (called once, no gradient).
    p: the replacement probability in [0, 1] (a float, or a traced scalar from a schedule).
    key: a `jax.random` key for the per-token draws.
    segment_ids: optional ``(..., T)`` integers; the first token of every segment is kept.

  Returns:
    A `SelfGenerated` ``(inputs, targets, replaced)``.

  Example:
    >>> x = jnp.array([[1, 2, 3]])
    >>> logits = jax.nn.one_hot(jnp.array([[4, 5, 6]]), 8)
    >>> self_generated_inputs(x, logits, 1.0, key=jax.random.key(0)).inputs.tolist()
    [[1, 4, 5]]
  """
  x = jnp.asarray(inputs)
  if x.ndim < 1 or not jnp.issubdtype(x.dtype, jnp.integer):
    raise ValueError(f"inputs: must be an integer token array of shape (..., T), got {x.dtype} of shape {x.shape}")
  _validation.check_nonempty("inputs", x, axis=x.ndim - 1, what="tokens")
  p = _validation.check_real("p", p, lower=0.0, upper=1.0)
  key = _validation.check_key("key", key)
  if callable(logits):
    logits = logits(x)
  logits = jax.lax.stop_gradient(_validation.check_floating("logits", logits))
  _validation.check_finite("logits", logits)
  if logits.shape[:-1] != x.shape or logits.ndim != x.ndim + 1:
    raise ValueError(f"logits: must have shape inputs.shape + (V,) = {x.shape} + (V,), got {logits.shape}")
  own = jnp.argmax(logits, axis=-1).astype(x.dtype)
  own = jnp.concatenate([x[..., :1], own[..., :-1]], axis=-1)  # own[t] = argmax(logits[t - 1])
  allowed = jnp.arange(x.shape[-1]) >= 1
  if segment_ids is not None:
    s = jnp.asarray(segment_ids)
    if s.shape != x.shape or not jnp.issubdtype(s.dtype, jnp.integer):
      raise ValueError(f"segment_ids: must be integers of the inputs' shape {x.shape}, got {s.dtype} of shape "
                       f"{s.shape}")
    same = jnp.concatenate([jnp.zeros_like(s[..., :1], bool), s[..., 1:] == s[..., :-1]], axis=-1)
    allowed = allowed & same
  replaced = jax.random.bernoulli(key, p, x.shape) & allowed
  return SelfGenerated(jnp.where(replaced, own, x), x, replaced)


def sampling_probability(step: int, total_steps: int, *, schedule: str = "linear", p_max: float = 0.5,
                         stages: int = 4) -> float:
  r"""The replacement probability ``p`` of step ``t`` (module docstring, "The schedule of p").

  .. math::
     \text{constant: } p_{\max}, \quad \text{linear: } p_{\max} \min(t / T, 1), \quad
     \text{batch: } p_{\max}\, \frac{\min(\lfloor t S / T \rfloor, S - 1)}{S - 1}.

  Args:
    step: ``t``, the 0-based training step, >= 0.
    total_steps: ``T`` >= 1.
    schedule: ``"constant"``, ``"linear"`` or ``"batch"`` (staircase; derived here, see the module).
    p_max: the largest probability, in [0, 1].
    stages: ``S`` >= 2, the stages of ``"batch"`` (ignored by the others).

  Returns:
    A float in ``[0, p_max]``.

  Example:
    >>> [sampling_probability(t, 8, schedule="batch", p_max=0.5, stages=3) for t in (0, 3, 6, 7)]
    [0.0, 0.25, 0.5, 0.5]
  """
  step = _validation.check_int("step", step, lower=0)
  total = _validation.check_int("total_steps", total_steps, lower=1)
  _validation.check_choice("schedule", schedule, SCHEDULES)
  p_max = _validation.check_real("p_max", p_max, lower=0.0, upper=1.0)
  stages = _validation.check_int("stages", stages, lower=2)
  if schedule == "constant":
    return p_max
  if schedule == "linear":
    return p_max * min(step / total, 1.0)
  j = min(math.floor(step * stages / total), stages - 1)
  return p_max * j / (stages - 1)


def _tokens(name, value):
  if isinstance(value, str):
    return np.frombuffer(value.encode("utf-8"), np.uint8).astype(np.int32)
  a = np.asarray(value)
  if a.ndim == 1 and a.size == 0 and not isinstance(value, np.ndarray):
    a = a.astype(np.int32)  # an empty list or tuple
  if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
    raise ValueError(f"{name}: must be a 1-D integer token array, got {a.dtype} of shape {a.shape}")
  return a.astype(np.int32)


def correction_sequence(prompt: Any, generated: Any, reference: Any, *,
                        separator: Any = DEFAULT_SEPARATOR) -> tuple[np.ndarray, np.ndarray]:
  """Reference-Answer-based Correction: ``prompt ++ generated ++ separator ++ reference`` and its loss mask.

  The mask is 0 on the prompt and on the model's own ``generated`` answer (context only) and 1 on the
  ``separator`` and the ``reference`` (module docstring; the layout is derived here).

  Args:
    prompt: 1-D integer tokens (may be empty).
    generated: 1-D integer tokens, the model's own answer to the prompt (may be empty).
    reference: 1-D integer tokens, the reference answer, non-empty.
    separator: the correction marker, a str (its UTF-8 bytes) or 1-D integer tokens (default
      ``"\\n# corrected:\\n"``).

  Returns:
    ``(tokens, loss_mask)``: int32 and float32 1-D arrays of equal length.

  Example:
    >>> t, m = correction_sequence([1], [2, 3], [4], separator=[9])
    >>> t.tolist(), m.tolist()
    ([1, 2, 3, 9, 4], [0.0, 0.0, 0.0, 1.0, 1.0])
  """
  parts = [_tokens("prompt", prompt), _tokens("generated", generated), _tokens("separator", separator),
           _tokens("reference", reference)]
  _validation.check_nonempty("reference", parts[3], what="tokens")
  mask = np.concatenate([np.full(len(q), float(i >= 2), np.float32) for i, q in enumerate(parts)])
  return np.concatenate(parts).astype(np.int32), mask

__all__ = ["SelfGenerated", "correction_sequence", "sampling_probability", "self_generated_inputs"]
