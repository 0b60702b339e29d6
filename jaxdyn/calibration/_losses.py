"""Baseline classification losses used as calibration baselines: CE, label smoothing, focal, mixup.

Every loss takes keyword arguments `loss(*, logits, labels, ...)` and returns the mean over all
batch axes. `labels` are integer class ids of shape `logits.shape[:-1]` or floating per-class
probabilities (soft labels) of the shape of `logits`.
"""

from __future__ import annotations

import functools

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


def _prepare(logits: ArrayLike, labels: ArrayLike) -> tuple[jax.Array, jax.Array]:
  """Validates logits (at least one example and one class) and their labels; returns arrays."""
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.ndim < 1:
    raise ValueError(f"logits: must have a trailing class axis, got shape {logits.shape}")
  if jnp.issubdtype(labels.dtype, jnp.integer):
    _validation.check_labels_for_logits("labels", labels, logits)
  elif jnp.issubdtype(labels.dtype, jnp.floating):
    _validation.check_soft_labels("labels", labels, logits)
  else:
    raise ValueError(f"labels: must be integer class ids or floating per-class probabilities, got "
                     f"dtype {labels.dtype}")
  for axis in range(logits.ndim - 1):
    _validation.check_nonempty("logits", logits, axis=axis)
  _validation.check_nonempty("logits", logits, axis=logits.ndim - 1, what="classes")
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    logits = logits.astype(jnp.float32)
  return logits, labels


def _targets(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-class target probabilities (traced): one-hot of class ids, or the soft labels."""
  if jnp.issubdtype(labels.dtype, jnp.integer):
    return jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return labels.astype(logits.dtype)


@functools.partial(jax.jit, static_argnames="kind")
def _loss(logits: jax.Array, labels: jax.Array, param: jax.Array | None, kind: str) -> jax.Array:
  """Mean over the batch axes of -sum_k w_k y_k log p_k for `kind` "ce", "smoothing" or "focal".

  NaN when a logit is not finite (-inf included: a zero target would hide it) or, for integer
  labels, when a label is out of range (a zero one-hot row would hide it under `jit`).
  """
  targets = _targets(logits, labels)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  if kind == "smoothing":
    targets = (1.0 - param) * targets + param / logits.shape[-1]
  if kind == "focal":
    q = -jnp.expm1(log_p)  # 1 - p, accurate when p is close to 1.
    positive = q > 0
    # Where p == 1 exactly, log p = 0 and the term vanishes whatever the weight; the double `where`
    # keeps the gradient of q**gamma finite there when gamma < 1.
    targets = targets * jnp.where(positive, jnp.where(positive, q, 1.0) ** param, 0.0)
  loss = -jnp.mean(jnp.sum(targets * log_p, axis=-1))
  ok = jnp.all(jnp.isfinite(logits))
  if jnp.issubdtype(labels.dtype, jnp.integer):
    ok &= jnp.all(_validation.labels_valid(labels, logits.shape[-1]))
  return _validation.nan_unless(ok, loss)


_INPUTS = """Inputs: integer labels are range-checked eagerly (`labels: must lie in [0, K)`); under
  `jit` an out-of-range label makes the loss NaN, and so does a NaN or an infinity (-inf included)
  anywhere in `logits` or the soft labels. An empty batch (a batch axis of size 0) or K = 0 is
  rejected."""


def _doc(fn):
  fn.__doc__ = fn.__doc__.replace("{inputs}", _INPUTS)
  return fn


@_doc
def cross_entropy_loss(*, logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Mean softmax cross-entropy with integer class ids or soft labels.

  CE = mean_i [ -sum_k y_ik log softmax(z_i)_k ],  y_i = onehot(label_i) for integer labels.

  {inputs}

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
  return _loss(*_prepare(logits, labels), None, "ce")


@_doc
def label_smoothing_loss(
    *, logits: ArrayLike, labels: ArrayLike, smoothing: float = 0.1
) -> jax.Array:
  """Cross-entropy against labels smoothed towards the uniform distribution.

  y_ls = (1 - eps) y + eps / K,  loss = mean_i [ -sum_k y_ls,ik log softmax(z_i)_k ].

  {inputs}

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
  _validation.check_rate("smoothing", smoothing)
  return _loss(*_prepare(logits, labels), smoothing, "smoothing")


@_doc
def focal_loss(*, logits: ArrayLike, labels: ArrayLike, gamma: float = 3.0) -> jax.Array:
  """Focal loss: cross-entropy down-weighted by (1 - p)^gamma on confident classes.

  FL = mean_i [ -sum_k y_ik (1 - p_ik)^gamma log p_ik ],  p_i = softmax(z_i); with integer labels
  this is -(1 - p_iy)^gamma log p_iy. gamma = 0 is cross-entropy.

  {inputs}

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
  return _loss(*_prepare(logits, labels), gamma, "focal")


def mixup_cross_entropy_loss(*, logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Soft-label cross-entropy of mixed samples against their mixed labels (the mixup loss).

    loss = mean_{m,i} [ -sum_k y~_mik log softmax(z~_mi)_k ].

  With y~ = lam y_a + (1 - lam) y_b and CE linear in the target, this equals the usual
  lam CE(z~, y_a) + (1 - lam) CE(z~, y_b).

  Inputs: a NaN or an infinity (-inf included) in `logits` or `labels` makes the loss NaN; an
  empty batch or K = 0 is rejected.

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
  _validation.check_soft_labels("labels", labels, logits)
  return _loss(*_prepare(logits, labels), None, "ce")
