"""Sample quality without a download: a Frechet distance in a small classifier's feature space, and its
accuracy on class-conditional samples.

**This is not FID.** FID (Heusel et al., 2017, https://arxiv.org/abs/1706.08500) is the Frechet distance
between Gaussian fits of Inception-v3 pool features; Inception needs a download and does not fit 8x8
digits. Here the features are those of a classifier trained in this project on the same data (e.g. the
penultimate layer of a `jaxdyn.models.MLP` on scikit-learn's digits), so values are comparable only
between runs that use the same classifier:

.. math::  d_F^2 = \\lVert \\mu_a - \\mu_b \\rVert^2 + \\operatorname{tr}\\bigl(\\Sigma_a + \\Sigma_b
           - 2 (\\Sigma_a^{1/2} \\Sigma_b \\Sigma_a^{1/2})^{1/2}\\bigr)

with ``mu``, ``Sigma`` the sample mean and (unbiased) covariance of each feature set; the trace term uses
the symmetric form, computed with eigendecompositions in float64 (no complex ``sqrtm``). `conditional_accuracy`
is the classifier's accuracy on samples generated for each requested class.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation

__all__ = ["conditional_accuracy", "frechet_distance"]


def _features(name: str, x) -> np.ndarray:
  if isinstance(x, (bool, int, float, str)) or x is None:
    raise TypeError(f"{name}: must be a 2-D array of features (N, D), got {type(x).__name__}")
  a = np.asarray(x)
  if a.dtype.kind not in "fiu" and a.dtype != jnp.bfloat16:
    raise TypeError(f"{name}: must be a real array of features, got dtype {a.dtype}")
  if a.ndim != 2:
    raise ValueError(f"{name}: must be a 2-D array of features (N, D), got shape {a.shape}")
  if a.shape[0] < 2:
    raise ValueError(f"{name}: must hold at least 2 feature vectors to fit a covariance, got shape {a.shape}")
  _validation.check_finite(name, a)
  return a.astype(np.float64)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((m + m.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """The squared Frechet distance between Gaussian fits of two feature sets (module docstring; not FID).

  Args:
    features_a: ``(N_a, D)`` features, ``N_a >= 2``, finite.
    features_b: ``(N_b, D)`` features, ``N_b >= 2``, finite.

  Returns:
    ``d_F^2 >= 0`` as a Python float (0 for identical sets, up to rounding).

  Example:
    >>> import numpy as np
    >>> a = np.array([[0.0], [2.0]]); b = np.array([[3.0], [5.0]])  # same variance, means 1 and 4
    >>> round(frechet_distance(a, b), 6)
    9.0
  """
  a = _features("features_a", features_a)
  b = _features("features_b", features_b)
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"features_b: must have the feature width of features_a, got shapes {a.shape} and {b.shape}")
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
  ra = _sqrt_psd(cov_a)
  cross = np.sqrt(np.clip(np.linalg.eigvalsh(ra @ cov_b @ ra), 0.0, None)).sum()
  d2 = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)
  return max(d2, 0.0)


def conditional_accuracy(logits: jax.Array, requested: jax.Array) -> jax.Array:
  """Per class ``k``: the fraction of samples generated for class ``k`` that the classifier assigns to ``k``.

  Args:
    logits: ``(N, K)`` classifier logits of the generated samples.
    requested: ``(N,)`` integer classes each sample was generated for, in ``[0, K)``.

  Returns:
    ``(K,)`` float32 accuracies; NaN for a class that was never requested (and, under ``jit``, everywhere
    if a label is out of range; a NaN or infinite logit makes every class's accuracy NaN). ``N = 0`` gives
    all NaN.

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    >>> conditional_accuracy(logits, jnp.array([0, 0, 1])).tolist()
    [0.5, 0.0]
  """
  if np.ndim(logits) != 2:
    raise ValueError(f"logits: must have shape (N, K), got {np.shape(logits)}")
  _validation.check_labels_for_logits("requested", requested, logits)
  logits = jnp.asarray(logits)
  k = logits.shape[-1]
  requested = jnp.asarray(requested)
  onehot = jax.nn.one_hot(requested, k, dtype=jnp.float32)
  correct = (jnp.argmax(logits, -1) == requested).astype(jnp.float32)
  bad_row = ~jnp.isfinite(logits).all(-1)
  correct = jnp.where(bad_row, jnp.nan, correct)
  count = onehot.sum(0)
  acc = (onehot * correct[:, None]).sum(0) / jnp.where(count > 0, count, jnp.nan)
  ok = jnp.all(_validation.labels_valid(requested, k))
  return _validation.nan_unless(ok, acc)
