r"""DPO's preference loss and value-drift metrics of a model's choices on a fixed probe set.

DPO (Rafailov et al., 2023) fits a policy to preference pairs (chosen ``y_w``, rejected ``y_l``) without a
reward model:

.. math::
  \mathcal{L} = -\mathbb{E}\,\log\sigma\Big(\beta\big[(\log\pi_\theta(y_w) - \log\pi_{ref}(y_w))
  - (\log\pi_\theta(y_l) - \log\pi_{ref}(y_l))\big]\Big),

with sequence log-probs (sums of the completion's token log-probs: `jaxdyn.rl.policy_log_probs` times
`jaxdyn.rl.completion_mask`, summed over tokens).

Value drift (after "Value Drifts: Tracing Value Alignment During LLM Post-Training"): the probabilities
``p_t`` ``(num_probes, num_choices)`` a model gives the choices of a fixed probe set at checkpoints
``t = 0..T``. The drift of interval ``t`` is the mean over probes of the total-variation distance
``d_t = mean_i 1/2 ||p_t,i - p_{t-1},i||_1``; the total drift is the path length ``D = sum_t d_t``, the net
drift ``mean_i 1/2 ||p_T,i - p_0,i||_1 <= D``; and the step by which a fraction ``q`` of the drift has
happened is the first checkpoint ``t`` with ``sum_{s<=t} d_s >= q D``. These definitions are derived here
from the paper's abstract (its "drift magnitude" and "time to most of the drift"); the paper's own metric
may differ.

References:
  Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
  NeurIPS 2023. https://arxiv.org/abs/2305.18290
  Bhatia, Nayak, Kamath, Mosbach, Stańczak, Shwartz, Reddy, "Value Drifts: Tracing Value Alignment During
  LLM Post-Training", 2025. https://arxiv.org/abs/2510.26707 (only its abstract was read here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation

__all__ = ["dpo_loss", "DriftMetrics", "value_drift"]


def dpo_loss(policy_chosen: jax.Array, policy_rejected: jax.Array, ref_chosen: jax.Array, ref_rejected: jax.Array,
             *, beta: float = 0.1) -> tuple[jax.Array, dict]:
  r"""DPO's loss ``mean_n -log sigmoid(beta [(pc - rc) - (pr - rr)])`` over ``n`` preference pairs.

  Args:
    policy_chosen, policy_rejected: ``(n,)`` sequence log-probs of the chosen / rejected completions under
      the policy.
    ref_chosen, ref_rejected: ``(n,)`` the same under the frozen reference policy (gradients stopped).
    beta: the inverse temperature (> 0).

  Returns:
    ``(loss, aux)``: the scalar loss and ``aux`` with ``margin`` (the mean of the sigmoid's argument) and
    ``accuracy`` (the share of pairs with a positive argument).

  Example:
    >>> z = jnp.zeros(2)
    >>> dpo_loss(z, z, z, z)[0]
    Array(0.6931472, dtype=float32)
  """
  _validation.check_ndim("policy_chosen", policy_chosen, 1)
  _validation.check_nonempty("policy_chosen", policy_chosen)
  for name, x in (("policy_rejected", policy_rejected), ("ref_chosen", ref_chosen), ("ref_rejected", ref_rejected)):
    _validation.check_same_shape(name, x, "policy_chosen", policy_chosen)
  beta = _validation.check_real("beta", beta, lower=0.0, lower_open=True)
  pc = _validation.check_floating("policy_chosen", policy_chosen)
  pc = pc.astype(jnp.promote_types(pc.dtype, jnp.float32))
  pr = _validation.check_floating("policy_rejected", policy_rejected).astype(pc.dtype)
  rc = jax.lax.stop_gradient(_validation.check_floating("ref_chosen", ref_chosen).astype(pc.dtype))
  rr = jax.lax.stop_gradient(_validation.check_floating("ref_rejected", ref_rejected).astype(pc.dtype))
  z = beta * ((pc - rc) - (pr - rr))
  loss = _validation.nan_unless(jnp.all(jnp.isfinite(z)), jnp.mean(-jax.nn.log_sigmoid(z)))  # +inf: never finite
  return loss, {"margin": jnp.mean(z), "accuracy": jnp.mean((z > 0).astype(pc.dtype))}


class DriftMetrics(NamedTuple):
  """What `value_drift` returns: ``per_interval`` ``(T,)`` drifts ``d_t``, ``total`` ``D`` (path length),
  ``net`` (first to last checkpoint), ``cumulative`` ``(T,)`` the share of ``D`` done by each checkpoint
  ``1..T``, and ``steps_at`` ``(len(fractions),)`` the step by which each fraction of ``D`` was done."""

  per_interval: jax.Array
  total: jax.Array
  net: jax.Array
  cumulative: jax.Array
  steps_at: jax.Array


def value_drift(probs: jax.Array, *, steps: Sequence[int] | None = None,
                fractions: Sequence[float] = (0.5, 0.9)) -> DriftMetrics:
  r"""Drift of a model's choice probabilities on a fixed probe set across checkpoints (see the module).

  Args:
    probs: ``(T+1, num_probes, num_choices)`` choice probabilities (rows sum to 1) at ``T+1 >= 2``
      checkpoints; ``(T+1, num_probes)`` is read as binary choices ``[p, 1-p]``.
    steps: ``T+1`` increasing training steps of the checkpoints (default ``0..T``).
    fractions: shares ``q`` in (0, 1] of the total drift to locate.

  Returns:
    A `DriftMetrics`. With no drift at all (``D = 0``) ``cumulative`` is 1 and ``steps_at`` the first step.

  Example:
    >>> value_drift(jnp.array([[0.5], [0.9], [1.0]]), fractions=(0.5,)).steps_at
    Array([1], dtype=int32)
  """
  _validation.check_ndim("probs", probs, (2, 3))
  p = _validation.check_floating("probs", probs)
  p = p.astype(jnp.promote_types(p.dtype, jnp.float32))
  if p.shape[0] < 2:
    raise ValueError(f"probs: must hold at least 2 checkpoints (axis 0), got shape {p.shape}")
  _validation.check_nonempty("probs", p, axis=1, what="probes")
  _validation.check_finite("probs", p)
  _validation.check_nonnegative("probs", p)
  if p.ndim == 2:
    if _validation.is_concrete(p) and np.any(np.asarray(p) > 1):
      raise ValueError("probs: binary choice probabilities must lie in [0, 1]")
    p = jnp.stack([p, 1.0 - p], axis=-1)
  elif _validation.is_concrete(p) and not np.allclose(np.asarray(p).sum(-1), 1.0, atol=1e-4):
    raise ValueError("probs: each probe's choice probabilities must sum to 1")
  n = p.shape[0]
  if steps is None:
    s = jnp.arange(n, dtype=jnp.int32)
  else:
    s_np = np.asarray(steps)
    if s_np.shape != (n,) or not np.issubdtype(s_np.dtype, np.integer):
      raise ValueError(f"steps: must be {n} integer steps, one per checkpoint, got {steps!r}")
    if np.any(np.diff(s_np) <= 0):
      raise ValueError(f"steps: must increase, got {s_np.tolist()}")
    s = jnp.asarray(s_np, jnp.int32)
  if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) or not fractions:
    raise ValueError(f"fractions: must be a non-empty sequence of numbers in (0, 1], got {fractions!r}")
  q = jnp.asarray([_validation.check_real("fractions", f, lower=0.0, upper=1.0, lower_open=True)
                   for f in fractions], p.dtype)
  tv = lambda a, b: 0.5 * jnp.sum(jnp.abs(a - b), axis=-1).mean(axis=-1)  # noqa: E731
  d = tv(p[1:], p[:-1])
  total = jnp.sum(d)
  cum = jnp.where(total > 0, jnp.cumsum(d) / jnp.where(total > 0, total, 1.0), 1.0)
  # first interval t (1-based checkpoint) with cum_t >= q; a relative tolerance absorbs float rounding
  reached = cum[None, :] >= q[:, None] * (1 - 1e-6)
  first = jnp.argmax(reached, axis=1) + 1
  steps_at = jnp.where(total > 0, s[first], s[0])
  nan = jnp.isnan(total)
  return DriftMetrics(d, total, tv(p[-1], p[0]), jnp.where(nan, jnp.nan, cum), steps_at)
