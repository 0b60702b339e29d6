"""Baseline classification losses used as calibration baselines: CE, label smoothing, focal, mixup.

Every loss takes keyword arguments `loss(*, logits, labels, ...)` and returns the mean over all
batch axes. `labels` are integer class ids of shape `logits.shape[:-1]` or floating per-class
probabilities (soft labels) of the shape of `logits`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxdyn import _validation

__all__ = [
    "cross_entropy_loss",
    "focal_loss",
    "label_smoothing_loss",
    "mixup_cross_entropy_loss",
]


def _check_labels(logits: jax.Array, labels: ArrayLike) -> jax.Array:
  """Validates integer class ids or soft labels against `logits`; returns them as an array."""
  labels = jnp.asarray(labels)
  if jnp.issubdtype(labels.dtype, jnp.integer):
    _validation.check_labels_for_logits("labels", labels, logits)
  elif jnp.issubdtype(labels.dtype, jnp.floating):
    _validation.check_soft_labels("labels", labels, logits)
  else:
    raise ValueError(
        f"`labels` must be integer class ids or floating per-class probabilities, got dtype "
        f"{labels.dtype}.")
  return labels


def _targets(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-class target probabilities (traced): one-hot of class ids, or the soft labels."""
  if jnp.issubdtype(labels.dtype, jnp.integer):
    return jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return labels.astype(logits.dtype)


def _logits(logits: ArrayLike) -> jax.Array:
  logits = jnp.asarray(logits)
  if logits.ndim < 1:
    raise ValueError(f"`logits` must have a trailing class axis, got shape {logits.shape}.")
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    logits = logits.astype(jnp.float32)
  return logits


def cross_entropy_loss(*, logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Mean softmax cross-entropy with integer class ids or soft labels.

  CE = mean_i [ -sum_k y_ik log softmax(z_i)_k ],  y_i = onehot(label_i) for integer labels.

  Args:
    logits: `(..., num_classes)` unnormalised log-probabilities z.
    labels: `(...)` integer class ids in [0, num_classes), or `(..., num_classes)` floating
      probabilities.

  Returns:
    A scalar: the mean over all batch axes.

  Example:
    >>> import jax.numpy as jnp
    >>> float(cross_entropy_loss(logits=jnp.zeros((2, 4)), labels=jnp.array([0, 3])))  # log 4
    1.386...

  References:
    Used as the first term of RankMixup: Noh et al., ICCV 2023, https://arxiv.org/abs/2308.11990;
    code https://github.com/cvlab-yonsei/RankMixup.
  """
  logits = _logits(logits)
  return _ce(logits, _check_labels(logits, labels))


@jax.jit
def _ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
  targets = _targets(logits, labels)
  return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def label_smoothing_loss(
    *, logits: ArrayLike, labels: ArrayLike, smoothing: float = 0.1
) -> jax.Array:
  """Cross-entropy against labels smoothed towards the uniform distribution.

  y_ls = (1 - eps) y + eps / K,  loss = mean_i [ -sum_k y_ls,ik log softmax(z_i)_k ].

  Args:
    logits: `(..., num_classes)` logits z.
    labels: integer class ids `(...)` or soft labels `(..., num_classes)`.
    smoothing: eps in [0, 1); 0 gives plain cross-entropy. Default 0.1 (Szegedy et al.; Müller et
      al. report it improves calibration).

  Returns:
    A scalar: the mean over all batch axes.

  Example:
    >>> import jax.numpy as jnp
    >>> float(label_smoothing_loss(logits=jnp.zeros((1, 4)), labels=jnp.array([1])))  # log 4
    1.386...

  References:
    Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016,
    https://arxiv.org/abs/1512.00567. Müller et al., "When Does Label Smoothing Help?",
    NeurIPS 2019, https://arxiv.org/abs/1906.02629. A RankMixup baseline (Noh et al., ICCV 2023,
    https://arxiv.org/abs/2308.11990; https://github.com/cvlab-yonsei/RankMixup).
  """
  _validation.check_real("smoothing", smoothing, lower=0.0)
  if _validation.is_concrete(smoothing) and not float(smoothing) < 1.0:
    raise ValueError(f"`smoothing` must be in [0, 1), got {smoothing!r}.")
  logits = _logits(logits)
  return _smoothed_ce(logits, _check_labels(logits, labels), smoothing)


@jax.jit
def _smoothed_ce(logits: jax.Array, labels: jax.Array, smoothing: jax.Array) -> jax.Array:
  targets = (1.0 - smoothing) * _targets(logits, labels) + smoothing / logits.shape[-1]
  return _ce(logits, targets)


def focal_loss(*, logits: ArrayLike, labels: ArrayLike, gamma: float = 3.0) -> jax.Array:
  """Focal loss: cross-entropy down-weighted by (1 - p)^gamma on confident classes.

  FL = mean_i [ -sum_k y_ik (1 - p_ik)^gamma log p_ik ],  p_i = softmax(z_i); with integer labels
  this is -(1 - p_iy)^gamma log p_iy. gamma = 0 is cross-entropy.

  Args:
    logits: `(..., num_classes)` logits z.
    labels: integer class ids `(...)` or soft labels `(..., num_classes)`.
    gamma: focusing parameter >= 0. Default 3, the fixed gamma Mukhoti et al. found best calibrated
      (FL-3) and the focal baseline in calibration papers such as RankMixup.

  Returns:
    A scalar: the mean over all batch axes.

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(focal_loss(logits=jnp.zeros((1, 2)), labels=jnp.array([0]), gamma=1.0)), 4)
    0.3466

  References:
    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017,
    https://arxiv.org/abs/1708.02002. Mukhoti et al., "Calibrating Deep Neural Networks using
    Focal Loss", NeurIPS 2020, https://arxiv.org/abs/2002.09437. A RankMixup baseline (Noh et al.,
    ICCV 2023, https://arxiv.org/abs/2308.11990; https://github.com/cvlab-yonsei/RankMixup).
  """
  _validation.check_real("gamma", gamma, lower=0.0)
  logits = _logits(logits)
  return _focal(logits, _check_labels(logits, labels), gamma)


@jax.jit
def _focal(logits: jax.Array, labels: jax.Array, gamma: jax.Array) -> jax.Array:
  targets = _targets(logits, labels)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  q = -jnp.expm1(log_p)  # 1 - p, accurate when p is close to 1.
  positive = q > 0
  # Where p == 1 exactly, log p = 0 and the term vanishes whatever the weight; the double `where`
  # keeps the gradient of q**gamma finite there when gamma < 1.
  weight = jnp.where(positive, jnp.where(positive, q, 1.0) ** gamma, 0.0)
  return -jnp.mean(jnp.sum(targets * weight * log_p, axis=-1))


def mixup_cross_entropy_loss(*, logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Soft-label cross-entropy of mixed samples against their mixed labels (the mixup loss).

    loss = mean_{m,i} [ -sum_k y~_mik log softmax(z~_mi)_k ].

  With y~ = lam y_a + (1 - lam) y_b and CE linear in the target, this equals the usual
  lam CE(z~, y_a) + (1 - lam) CE(z~, y_b).

  Args:
    logits: `(..., num_classes)` logits of the mixed inputs, e.g. `(M, B, num_classes)`.
    labels: floating mixed labels of the same shape (`MixupSample.labels`).

  Returns:
    A scalar: the mean over all batch axes (all M copies and B samples).

  Example:
    >>> import jax.numpy as jnp
    >>> y = jnp.array([[[0.7, 0.3]]])  # M = 1, B = 1
    >>> float(mixup_cross_entropy_loss(logits=jnp.zeros((1, 1, 2)), labels=y))  # log 2
    0.693...

  References:
    Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018,
    https://arxiv.org/abs/1710.09412. The mixup baseline of RankMixup (Noh et al., ICCV 2023,
    https://arxiv.org/abs/2308.11990; https://github.com/cvlab-yonsei/RankMixup).
  """
  logits = _logits(logits)
  labels = jnp.asarray(labels)
  _validation.check_soft_labels("labels", labels, logits)
  return cross_entropy_loss(logits=logits, labels=labels)
