r"""PRIOR: prioritizing image-related tokens in a captioner's next-token loss with a caption-only reference LM.

Chen, Peng, Zhang, Ji, "Prioritizing Image-Related Tokens Enhances Vision-Language Pre-Training", 2025,
https://arxiv.org/abs/2505.08971. Plain next-token prediction (NTP) fits every caption token alike, though
only a few of them depend on the image; the rest ("a photo of", a caption's grammar) a language model can
predict from the text alone. PRIOR trains a *reference model*, a text-only language model on the captions
without their images,

.. math:: \mathcal{L}_{\text{text}} = -\sum_{i=1}^{k} \log p_{\text{ref}}(t_i \mid t_{<i}),

and weights each token of a caption ``t_1 .. t_k`` by how hard it is to predict without the image,

.. math:: w_i = \big(1 - p_{\text{ref}}(t_i \mid t_{<i})\big)^{\alpha},

normalised so that a caption's ``k`` weights average 1, in the loss of the image-conditioned model
(the importance-sampling view: tokens the text alone explains are sampled less),

.. math:: \mathcal{L}_{\text{PRIOR}} = -\sum_{i=1}^{k} \frac{k\, w_i}{\sum_{j=1}^{k} w_j}
   \log p_\theta(t_i \mid I, t_{<i}).

``alpha = 1`` in the paper (the spec's value too). With a constant ``p_ref`` (or ``alpha = 0``) every weight is
1 and the loss is plain NTP.

**Sources.** The formulas above are the spec's (``TECHNIQUES.md``, from a secondary account of the paper);
a third-party summary that quotes the paper's equations (themoonlight.io's review of arXiv 2505.08971) gives
the same three equations, ``alpha`` "empirically set to 1". The paper's own method section could not be read
from this machine (only its abstract and first page), so no detail here rests on its text beyond those. The
authors' repository (https://github.com/Yangyi-Chen/PRIOR) holds only a README, a licence and a figure in the
snapshot read here (no code), so there is no ``official_compat`` switch: nothing to be compatible with.

**Choices made here** (where the formula leaves something open):

- *Valid tokens.* ``k`` counts the caption's valid target tokens given by ``mask`` (padding excluded; a real
  ``mask`` ``m_i >= 0`` counts ``k = sum_i m_i``): ``\tilde w_i = m_i w_i \cdot (\sum_j m_j) / \sum_j m_j w_j``,
  so ``sum_i \tilde w_i = k`` and a 0/1 mask gives weights that average 1 over the valid tokens and are 0 on
  padding.
- *Batch reduction.* `prior_loss` divides by the batch's valid tokens, ``sum_{b,i} \tilde w_{bi} \ell_{bi} /
  sum_{b,i} m_{bi}``, the usual token-mean reduction of NTP, so it is the plain masked mean cross-entropy
  when every weight is 1; the paper's per-caption sum differs from it by a constant factor per batch.
- *Degenerate captions.* A caption whose every valid token has ``p_ref = 1`` exactly (all ``w_i = 0``), or that
  has no valid token, gets weights 0 (it adds nothing to the loss); the formula's ``0 / 0`` is undefined there.
- *Numerics.* ``1 - p`` is computed as ``-expm1(log p)`` from the reference's log-probabilities (exact near
  ``p = 1``), and the normalisation in log space (``alpha * log(1 - p)`` shifted by the caption's maximum), so
  a large ``alpha`` does not underflow every weight to 0.
- The reference's probabilities are fixed: `prior_loss` stops their gradient (the paper trains the reference
  first, then the captioner).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation

__all__ = ["prior_loss", "prior_token_weights"]


def _check_real_array(name: str, x: Any, *, allow_bool: bool = False) -> None:
  dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
  ok = jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer) or (allow_bool and dtype == bool)
  if not ok or (dtype == bool and not allow_bool):
    raise TypeError(f"{name}: must be a real array, got dtype {dtype}")


def _check_ref(ref_log_probs: Any) -> None:
  dtype = ref_log_probs.dtype if hasattr(ref_log_probs, "dtype") else np.asarray(ref_log_probs).dtype
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"ref_log_probs: must be a floating array of log-probabilities, got dtype {dtype}")
  if np.ndim(ref_log_probs) < 1:
    raise ValueError(f"ref_log_probs: must have a token axis (shape (..., seq)), got shape {np.shape(ref_log_probs)}")
  if _validation.is_concrete(ref_log_probs) and np.size(ref_log_probs):
    v = np.asarray(ref_log_probs, np.float64)
    if np.nanmax(v, initial=-np.inf) > 0:  # NaN propagates (non-finite policy); a positive log-probability raises
      raise ValueError(f"ref_log_probs: must be log-probabilities (<= 0), got a maximum of {np.nanmax(v):g}")


def _check_mask(mask: Any, shape: tuple[int, ...]) -> jax.Array | None:
  if mask is None:
    return None
  _check_real_array("mask", mask, allow_bool=True)
  if tuple(np.shape(mask)) != tuple(shape):
    raise ValueError(f"mask: must have the shape of ref_log_probs {tuple(shape)}, got {tuple(np.shape(mask))}")
  _validation.check_finite("mask", mask)
  if _validation.is_concrete(mask) and np.size(mask):
    v = np.asarray(mask, np.float64)
    if v.min() < 0:
      raise ValueError(f"mask: must be >= 0 (1 on valid tokens, 0 on padding), got a minimum of {v.min():g}")
  return jnp.asarray(mask)


def _weights(lp: jax.Array, m: jax.Array, alpha) -> jax.Array:
  """The normalised weights (module docstring) of float log-probs ``lp`` under a float mask ``m``."""
  one_minus_p = -jnp.expm1(lp)  # 1 - p, exact near p = 1
  log_w = jnp.where(alpha == 0, jnp.zeros_like(lp), alpha * jnp.log(one_minus_p))
  log_w = _validation.nan_unless(jnp.isfinite(lp) & jnp.isfinite(m), log_w)  # NaN / +-inf poison their caption
  valid = m > 0
  shift = jnp.max(jnp.where(valid, log_w, -jnp.inf), axis=-1, keepdims=True)
  alive = jnp.isfinite(shift) | jnp.isnan(shift)  # a finite maximum, or NaN that must propagate
  e = jnp.where(valid, m * jnp.exp(log_w - jnp.where(alive, shift, 0.0)), 0.0)
  e = jnp.where(jnp.isnan(log_w), jnp.nan, e)
  total = jnp.sum(e, axis=-1, keepdims=True)
  k = jnp.sum(m, axis=-1, keepdims=True)
  good = alive & (total > 0)
  return jnp.where(good | jnp.isnan(total), e * k / jnp.where(good, total, 1.0), 0.0)


def prior_token_weights(ref_log_probs: Any, mask: Any = None, *, alpha: Any = 1.0) -> jax.Array:
  r"""PRIOR's per-token weights ``k (1 - p_ref)^alpha / sum_j (1 - p_ref_j)^alpha`` per caption (module docstring).

  .. math:: \tilde w_i = \frac{(\sum_j m_j)\; m_i (1 - p_i)^{\alpha}}{\sum_j m_j (1 - p_j)^{\alpha}},
     \qquad p_i = \exp(\text{ref\_log\_probs}_i),

  normalised along the last (token) axis: a caption's weights sum to its number of valid tokens (average 1
  over them with a 0/1 ``mask``) and are 0 where ``mask`` is 0. A caption with no valid token, or whose every
  valid token has ``p = 1`` exactly, gets weights 0.

  Args:
    ref_log_probs: ``(..., seq)`` log-probabilities ``log p_ref(t_i | t_<i)`` (<= 0) of each target token under
      the caption-only reference LM (e.g. `jaxdyn.models.token_log_probs` of its logits). Every entry, masked or
      not, must be finite: a NaN or an infinity gives NaN weights for its caption.
    mask: optional ``(..., seq)`` valid-token mask (bool or finite real >= 0; 1 on caption tokens, 0 on
      padding); default all valid.
    alpha: exponent ``>= 0`` (the paper: 1; 0 gives all weights 1, plain next-token prediction).

  Returns:
    ``(..., seq)`` float32 (float64 under x64 for float64 inputs) weights; an empty batch gives an empty array.

  Example:
    >>> p = jnp.array([[0.5, 0.9, 0.2, 0.3]])         # p_ref of 3 tokens and a pad
    >>> w = prior_token_weights(jnp.log(p), jnp.array([[1, 1, 0, 1]]))  # (0.5, 0.1, -, 0.7) * 3 / 1.3
    >>> [round(float(x), 4) for x in w[0]]
    [1.1538, 0.2308, 0.0, 1.6154]
  """
  _check_ref(ref_log_probs)
  shape = tuple(np.shape(ref_log_probs))
  mask = _check_mask(mask, shape)
  alpha = _validation.check_real("alpha", alpha, lower=0.0)
  lp = jnp.asarray(ref_log_probs)
  lp = lp.astype(jnp.promote_types(lp.dtype, jnp.float32))
  m = jnp.ones(shape, lp.dtype) if mask is None else mask.astype(lp.dtype)
  return _weights(lp, m, alpha)


def prior_loss(logits: Any, targets: Any, ref_log_probs: Any, *, mask: Any = None, alpha: Any = 1.0) -> jax.Array:
  r"""PRIOR's weighted next-token cross-entropy of an image-conditioned model (module docstring).

  .. math:: \mathcal{L} = \frac{\sum_{b,i} \tilde w_{bi}\, \big(-\log \mathrm{softmax}(z_{bi})_{t_{bi}}\big)}
     {\sum_{b,i} m_{bi}},

  with ``\tilde w = `` `prior_token_weights` ``(ref_log_probs, mask, alpha=alpha)`` (gradient stopped). When
  every ``\tilde w_{bi} = m_{bi}`` (a constant ``p_ref``, or ``alpha = 0``) this is the plain masked mean
  next-token cross-entropy; 0 when no token is valid.

  Args:
    logits: ``(..., seq, V)`` next-token logits of the captioner, already aligned with ``targets`` (position
      ``i`` predicts ``targets[..., i]``; for `jaxdyn.models.Captioner`, ``captioner(images, tokens)[:, :-1]``
      against ``tokens[:, 1:]``).
    targets: ``(..., seq)`` integer token ids in ``[0, V)``.
    ref_log_probs: ``(..., seq)`` the reference LM's log-probabilities of the same targets (<= 0).
    mask: optional ``(..., seq)`` valid-target mask (bool or real >= 0); default all valid.
    alpha: the weights' exponent ``>= 0`` (the paper: 1).

  Returns:
    A float32 scalar. A non-finite logit or reference log-probability gives NaN; under ``jit`` so does a target
    outside ``[0, V)``.

  Example:
    >>> logits = jnp.log(jnp.array([[[0.5, 0.5], [0.25, 0.75]]]))
    >>> lp_ref = jnp.log(jnp.array([[0.5, 0.5]]))      # constant p_ref: the plain mean cross-entropy
    >>> round(float(prior_loss(logits, jnp.array([[0, 1]]), lp_ref)), 4)  # (ln 2 + ln 4/3) / 2
    0.4904
  """
  if np.ndim(logits) < 2:
    raise ValueError(f"logits: must be (..., seq, V), got shape {np.shape(logits)}")
  _validation.check_labels_for_logits("targets", targets, logits)
  _validation.check_nonempty("targets", np.empty(np.shape(targets)).reshape(-1), what="tokens")
  _validation.check_same_shape("ref_log_probs", ref_log_probs, "targets", targets)
  weights = prior_token_weights(ref_log_probs, mask, alpha=alpha)
  logits = _validation.check_floating("logits", logits)
  z = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  targets = jnp.asarray(targets)
  num_classes = z.shape[-1]
  lp = jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), jnp.clip(targets, 0, num_classes - 1)[..., None],
                           axis=-1)[..., 0]
  ok = _validation.labels_valid(targets, num_classes) & jnp.all(jnp.isfinite(z), axis=-1)
  nll = _validation.nan_unless(ok, -lp)
  m = jnp.ones(nll.shape, nll.dtype) if mask is None else jnp.asarray(mask).astype(nll.dtype)
  den = jnp.sum(m)
  num = jnp.sum(jax.lax.stop_gradient(weights).astype(nll.dtype) * nll)
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), num)
