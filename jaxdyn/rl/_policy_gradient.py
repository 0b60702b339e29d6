r"""Policy-gradient core for post-training a language model: log-probs, masks, GRPO advantages, the loss.

A batch holds ``B`` sequences ``[BOS] prompt completion [EOS] [PAD]...`` (`jaxdyn.rl.encode`, or a prompt
followed by `jaxdyn.models.generate`'s tokens), every prompt ``prompt_len`` tokens long. Next-token
log-probs are aligned with the *targets* ``tokens[:, 1:]`` (``(B, T-1)``), and `completion_mask` selects
the targets that are completion tokens: at position ``>= prompt_len``, up to and including the first
``EOS_ID`` after the prompt, never a ``PAD_ID``. Prompt and padding tokens get weight exactly 0.

GRPO (Shao et al., DeepSeekMath, 2024) samples a group of ``G`` completions per prompt and uses the
group-relative advantage of every completion, broadcast to its tokens:

.. math:: A_i = \frac{r_i - \mathrm{mean}_{j \in g(i)} r_j}{\mathrm{std}_{j \in g(i)} r_j + \epsilon}

(``scale="std"``, population std, ``eps=1e-4`` as TRL's trainer; ``scale="none"`` drops the division,
Dr. GRPO's choice, Liu et al. 2025, which removes the question-level difficulty bias). The loss is the
clipped surrogate (PPO, Schulman et al. 2017) minus a KL penalty to a reference policy:

.. math::
  \ell_t = -\Big[\min\big(\rho_t A, \mathrm{clip}(\rho_t, 1-\varepsilon, 1+\varepsilon) A\big)
  - \beta\, k_3(t)\Big], \quad \rho_t = e^{\log\pi_\theta - \log\pi_{old}}, \quad
  k_3 = e^{\log\pi_{ref} - \log\pi_\theta} - (\log\pi_{ref} - \log\pi_\theta) - 1,

``k3`` being Schulman's unbiased, always non-negative estimator of ``KL(pi_theta || pi_ref)`` from samples
of ``pi_theta`` (the one GRPO uses). Averaging over tokens: ``aggregation="token"`` (the default) sums
``ell_t`` over every completion token of the batch and divides by their count, so each token weighs the
same whatever its sequence's length (DAPO, Yu et al. 2025; Dr. GRPO). ``"sequence"`` first averages within
each sequence, then over sequences (the GRPO paper's ``1/|o_i|``), which gives a token of a short sequence
more weight: a length bias in favour of long wrong answers and short right ones. With a length reward
(`jaxdyn.rl.hapo_reward`) that bias would interfere with the signal under study, hence the default.

References:
  Shao et al., "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models", 2024.
  https://arxiv.org/abs/2402.03300
  Schulman et al., "Proximal Policy Optimization Algorithms", 2017. https://arxiv.org/abs/1707.06347
  Schulman, "Approximating KL Divergence", 2020. http://joschu.net/blog/kl-approx.html
  Liu et al., "Understanding R1-Zero-Like Training: A Critical Perspective" (Dr. GRPO), 2025.
  https://arxiv.org/abs/2503.20783
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation
from jaxdyn.data import EOS_ID, PAD_ID
from jaxdyn.models import Transformer, token_log_probs

__all__ = ["completion_mask", "policy_log_probs", "group_advantages", "kl_k3", "clipped_surrogate_loss"]

SCALES = ("std", "none")
AGGREGATIONS = ("token", "sequence")


def completion_mask(tokens: jax.Array, prompt_len: int, *, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> jax.Array:
  """Float mask ``(B, T-1)`` over next-token targets ``tokens[:, 1:]``: 1 on completion tokens, else 0.

  Target ``j`` (token ``j + 1``) counts when ``j + 1 >= prompt_len``, it is not ``pad_id``, and no
  ``eos_id`` came before it in the completion (the first EOS itself counts: the policy chose to stop).

  Args:
    tokens: ``(B, T)`` integer ids, ``T >= 2``.
    prompt_len: tokens of every row's prompt (BOS included), in ``[1, T)``.
    eos_id, pad_id: the end and padding ids (`jaxdyn.data`'s by default).

  Returns:
    ``(B, T-1)`` float32 mask.

  Example:
    >>> completion_mask(jnp.array([[256, 49, 35, 51, 257, 258]]), 2)
    Array([[0., 1., 1., 1., 0.]], dtype=float32)
  """
  _validation.check_ndim("tokens", tokens, 2)
  tokens = jnp.asarray(tokens)
  if not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise ValueError(f"tokens: must be integer ids, got dtype {tokens.dtype}")
  t = tokens.shape[1]
  if t < 2:
    raise ValueError(f"tokens: must hold at least 2 tokens per row, got shape {tokens.shape}")
  prompt_len = _validation.check_int("prompt_len", prompt_len, lower=1, upper=t - 1)
  eos_id = _validation.check_int("eos_id", eos_id, lower=0)
  pad_id = _validation.check_int("pad_id", pad_id, lower=0)
  target = tokens[:, 1:]
  in_completion = jnp.arange(1, t)[None, :] >= prompt_len
  is_eos = (target == eos_id) & in_completion
  eos_before = jnp.cumsum(is_eos, axis=1) - is_eos > 0  # an EOS strictly earlier in the completion
  return (in_completion & (target != pad_id) & ~eos_before).astype(jnp.float32)


def policy_log_probs(model: Transformer, tokens: jax.Array) -> jax.Array:
  """Next-token log-probs ``(B, T-1)``: ``token_log_probs(model(tokens)[:, :-1], tokens[:, 1:])``.

  Multiply by `completion_mask` to keep only the completion's tokens. The model runs as it is set
  (``model.eval()`` for sampling-time log-probs without dropout).

  Args:
    model: a `jaxdyn.models.Transformer`.
    tokens: ``(B, T)`` integer ids in ``[0, model.vocab_size)``, ``T >= 2``.

  Returns:
    ``(B, T-1)`` float32 log-probabilities.

  Example:
    >>> from flax import nnx
    >>> m = Transformer(8, dim=8, depth=1, num_heads=1, rngs=nnx.Rngs(0))
    >>> policy_log_probs(m, jnp.array([[1, 2, 3]])).shape
    (1, 2)
  """
  if not isinstance(model, Transformer):
    raise TypeError(f"model: must be a jaxdyn.models.Transformer, got {type(model).__name__}")
  _validation.check_ndim("tokens", tokens, 2)
  _validation.check_integer_labels("tokens", tokens, model.vocab_size)
  if jnp.shape(tokens)[1] < 2:
    raise ValueError(f"tokens: must hold at least 2 tokens per row, got shape {jnp.shape(tokens)}")
  tokens = jnp.asarray(tokens)
  return token_log_probs(model(tokens)[:, :-1], tokens[:, 1:])


def group_advantages(rewards: jax.Array, group_size: int, *, scale: str = "std", eps: float = 1e-4,
                     baseline: jax.Array | None = None) -> jax.Array:
  r"""GRPO's group-relative advantages of ``rewards`` ``(B,)`` in consecutive groups of ``group_size``.

  ``A_i = (r_i - m_g) / (s_g + eps)`` with ``m_g`` the group mean (or ``baseline[g]`` when given) and
  ``s_g`` the group's population standard deviation (``scale="std"``); ``scale="none"`` gives
  ``A_i = r_i - m_g`` (Dr. GRPO). Without a baseline each group's advantages sum to 0 and adding a constant
  to every reward changes nothing; with ``group_size=1`` and a baseline, ``scale="none"`` is REINFORCE's
  ``r - b``.

  Args:
    rewards: ``(B,)`` rewards, ``B`` a multiple of ``group_size`` (group ``g`` is rows ``g*G .. g*G+G-1``).
    group_size: completions per prompt ``G`` >= 1.
    scale: ``"std"`` or ``"none"``.
    eps: added to the std (> 0).
    baseline: None, or ``(B // G,)`` per-group baselines replacing the group mean.

  Returns:
    ``(B,)`` advantages, the dtype of ``rewards`` (float32 at least).

  Example:
    >>> group_advantages(jnp.array([1.0, 0.0, 2.0, 2.0]), 2, scale="none")
    Array([ 0.5, -0.5,  0. ,  0. ], dtype=float32)
  """
  _validation.check_ndim("rewards", rewards, 1)
  _validation.check_nonempty("rewards", rewards)
  g = _validation.check_int("group_size", group_size, lower=1)
  scale = _validation.check_choice("scale", scale, SCALES)
  eps = _validation.check_real("eps", eps, lower=0.0, lower_open=True)
  r = _validation.check_floating("rewards", rewards)
  r = r.astype(jnp.promote_types(r.dtype, jnp.float32))
  if r.shape[0] % g:
    raise ValueError(f"rewards: must hold a multiple of group_size={g} entries, got {r.shape[0]}")
  groups = r.reshape(-1, g)
  if baseline is None:
    center = groups.mean(axis=1, keepdims=True)
  else:
    _validation.check_ndim("baseline", baseline, 1)
    if jnp.shape(baseline)[0] != groups.shape[0]:
      raise ValueError(f"baseline: must hold one value per group ({groups.shape[0]}), got shape "
                       f"{jnp.shape(baseline)}")
    center = _validation.check_floating("baseline", baseline).astype(r.dtype)[:, None]
  adv = groups - center
  if scale == "std":
    adv = adv / (groups.std(axis=1, keepdims=True) + eps)
  return adv.reshape(-1)


def kl_k3(log_probs: jax.Array, ref_log_probs: jax.Array) -> jax.Array:
  r"""Per-token k3 estimate of ``KL(pi || pi_ref)``: ``exp(d) - d - 1`` with ``d = ref_log_probs - log_probs``.

  Unbiased for tokens sampled from ``pi`` and never negative (``e^d >= 1 + d``); 0 where the two agree.

  Args:
    log_probs: log-probs of the sampled tokens under the policy (any shape).
    ref_log_probs: the same tokens' log-probs under the reference policy (same shape).

  Returns:
    The elementwise estimate, same shape.

  Example:
    >>> kl_k3(jnp.array([0.0, -1.0]), jnp.array([0.0, 0.0]))
    Array([0.        , 0.71828175], dtype=float32)
  """
  _validation.check_same_shape("ref_log_probs", ref_log_probs, "log_probs", log_probs)
  lp = _validation.check_floating("log_probs", log_probs)
  d = _validation.check_floating("ref_log_probs", ref_log_probs).astype(lp.dtype) - lp
  return jnp.expm1(d) - d


def _masked_average(x: jax.Array, mask: jax.Array, aggregation: str) -> jax.Array:
  """The mean of ``x`` over ``mask``: over every masked token of the batch (``"token"``), or within each row
  then over the rows holding at least one (``"sequence"``). Shared by the policy-gradient losses."""
  if aggregation == "token":
    return jnp.sum(x * mask) / jnp.sum(mask)
  rows = jnp.sum(mask, axis=1)
  live = rows > 0
  per_row = jnp.sum(x * mask, axis=1) / jnp.where(live, rows, 1.0)
  return jnp.sum(jnp.where(live, per_row, 0.0)) / jnp.sum(live)


def clipped_surrogate_loss(log_probs: jax.Array, old_log_probs: jax.Array, advantages: jax.Array, mask: jax.Array,
                           *, clip_eps: float = 0.2, ref_log_probs: jax.Array | None = None,
                           kl_coef: float = 0.0, aggregation: str = "token") -> tuple[jax.Array, dict]:
  r"""The GRPO/PPO loss: negative clipped surrogate plus ``kl_coef`` times k3, averaged over ``mask``.

  Per token ``-[min(rho A, clip(rho, 1-eps, 1+eps) A) - kl_coef * k3]`` with ``rho = exp(log_probs -
  old_log_probs)`` (see the module), then averaged over the masked tokens: ``"token"`` over all of the
  batch's (default), ``"sequence"`` within each row then over rows that hold at least one token.
  ``old_log_probs`` (and ``ref_log_probs``) are constants: their gradients are stopped. With
  ``old_log_probs == log_probs`` (one update per sample) the gradient is ``-A grad log pi``, REINFORCE.

  Args:
    log_probs: ``(B, T)`` log-probs of the sampled tokens under the policy being trained.
    old_log_probs: ``(B, T)`` the same under the sampling policy.
    advantages: ``(B,)`` per-sequence advantages (`group_advantages`) or ``(B, T)`` per-token.
    mask: ``(B, T)`` 0/1 weights (`completion_mask`); its total must be positive.
    clip_eps: the clipping range (>= 0).
    ref_log_probs: ``(B, T)`` reference-policy log-probs; required when ``kl_coef > 0``.
    kl_coef: the KL weight ``beta`` (>= 0).
    aggregation: ``"token"`` or ``"sequence"``.

  Returns:
    ``(loss, aux)``: the scalar loss and a dict of scalars ``kl`` (mean k3, 0 without a reference) and
    ``clip_fraction`` (share of masked tokens where the clipped branch is the smaller one).

  Example:
    >>> lp = jnp.zeros((1, 2))
    >>> clipped_surrogate_loss(lp, lp, jnp.array([1.0]), jnp.ones((1, 2)))[0]
    Array(-1., dtype=float32)
  """
  _validation.check_ndim("log_probs", log_probs, 2)
  _validation.check_same_shape("old_log_probs", old_log_probs, "log_probs", log_probs)
  _validation.check_same_shape("mask", mask, "log_probs", log_probs)
  _validation.check_nonempty("log_probs", log_probs)
  b = jnp.shape(log_probs)[0]
  if jnp.shape(advantages) not in ((b,), jnp.shape(log_probs)):
    raise ValueError(f"advantages: must have shape ({b},) or {jnp.shape(log_probs)}, got {jnp.shape(advantages)}")
  clip_eps = _validation.check_real("clip_eps", clip_eps, lower=0.0)
  kl_coef = _validation.check_real("kl_coef", kl_coef, lower=0.0)
  aggregation = _validation.check_choice("aggregation", aggregation, AGGREGATIONS)
  _validation.check_nonnegative("mask", mask)
  if _validation.is_concrete(mask) and float(np.sum(np.asarray(mask))) <= 0:
    raise ValueError("mask: must select at least one token, got an all-zero mask")
  lp = _validation.check_floating("log_probs", log_probs)
  lp = lp.astype(jnp.promote_types(lp.dtype, jnp.float32))
  old = jax.lax.stop_gradient(_validation.check_floating("old_log_probs", old_log_probs).astype(lp.dtype))
  adv = _validation.check_floating("advantages", advantages).astype(lp.dtype)
  adv = adv[:, None] if adv.ndim == 1 else adv
  m = jnp.asarray(mask, lp.dtype)
  ratio = jnp.exp(lp - old)
  unclipped, clipped = ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
  # a non-finite log-prob or advantage never gives a finite loss (a -inf log-prob alone would: rho = 0)
  finite = jnp.isfinite(lp) & jnp.isfinite(old) & jnp.isfinite(adv)
  per_token = _validation.nan_unless(finite, -jnp.minimum(unclipped, clipped))
  if ref_log_probs is not None:
    _validation.check_same_shape("ref_log_probs", ref_log_probs, "log_probs", log_probs)
    ref = jax.lax.stop_gradient(_validation.check_floating("ref_log_probs", ref_log_probs).astype(lp.dtype))
    kl = kl_k3(lp, ref)
  elif kl_coef > 0:
    raise ValueError(f"ref_log_probs: must be given when kl_coef > 0, got None with kl_coef={kl_coef:g}")
  else:
    kl = jnp.zeros_like(lp)
  per_token = per_token + kl_coef * kl

  def average(x):
    return _masked_average(x, m, aggregation)

  aux = {"kl": average(kl), "clip_fraction": average((clipped < unclipped).astype(lp.dtype))}
  return average(per_token), aux
