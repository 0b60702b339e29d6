"""Calibration metrics of logits against integer labels: ECE, adaptive/class-wise ECE, NLL, Brier.

All binned metrics use half-open bins (lo, hi]: a confidence exactly on an edge belongs to the lower
bin, and the first bin is closed, [0, hi], so a confidence of 0 is counted. Bin ids come from
comparisons against the interior edges and the per-bin sums from `jax.ops.segment_sum`, so every
metric is jittable (with `num_bins` static), has fixed shapes and runs on sharded arrays. (The
exception is `adaptive_calibration_error(..., official_compat=True)`, whose first bin is open below
as in the authors' code.)

To score averaged predictive probabilities p (an ensemble, a Bayesian posterior), pass `log(p)` as
the logits: softmax(log p) = p.
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxdyn import _validation

__all__ = [
    "ReliabilityBins",
    "accuracy",
    "adaptive_calibration_error",
    "brier_score",
    "calibration_metrics",
    "classwise_calibration_error",
    "expected_calibration_error",
    "negative_log_likelihood",
    "reliability_bins",
    "reliability_diagram",
]


# Shared docstring text, substituted by `_doc` so that it is written once.
_DOC = {
    "{inputs}": """Inputs: `labels` are range-checked eagerly (`labels: must lie in [0, K)`). Under
  `jit`, where they cannot be checked, an out-of-range label makes the result NaN, and so does a
  NaN or an infinity (-inf included) anywhere in `logits`, eagerly or not. An empty batch (N = 0)
  or K = 0 is rejected.""",
    "{references}": """Guo et al., "On Calibration of Modern Neural Networks", ICML 2017,
    https://arxiv.org/abs/1706.04599. Nixon et al., "Measuring Calibration in Deep Learning",
    CVPR-W 2019, https://arxiv.org/abs/1904.01685. Reported by Noh et al., "RankMixup:
    Ranking-Based Mixup Training for Network Calibration", ICCV 2023,
    https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.""",
}


def _doc(fn):
  for placeholder, text in _DOC.items():
    fn.__doc__ = fn.__doc__.replace(placeholder, text)
  return fn


def validate(logits: ArrayLike, labels: ArrayLike, num_bins: int | None = None):
  """Checks `(N, K)` logits (N, K >= 1), their labels and `num_bins`; returns them normalised.

  Shared by the family (`fit_temperature` too); not exported.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  _validation.check_ndim("logits", logits, 2)
  _validation.check_nonempty("logits", logits)
  _validation.check_nonempty("logits", logits, axis=1, what="classes")
  _validation.check_labels_for_logits("labels", labels, logits)
  if num_bins is not None:
    num_bins = _validation.check_int("num_bins", num_bins, lower=1)
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    logits = logits.astype(jnp.float32)
  return logits, labels, num_bins


def _valid(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Scalar: every logit finite and every label in range (the traced half of the input policy)."""
  return (jnp.all(jnp.isfinite(logits))
          & jnp.all(_validation.labels_valid(labels, logits.shape[-1])))


def _uniform_bin_ids(values: jax.Array, num_bins: int) -> jax.Array:
  """Bin of each value among `num_bins` equal-width bins (lo, hi] on [0, 1]; 0 goes to bin 0."""
  # Edges b / num_bins are correctly rounded quotients of exact integers, so a confidence that
  # equals an edge (e.g. softmax of equal logits: 1/3 = 5/15) compares equal and goes lower.
  interior = jnp.arange(1, num_bins, dtype=values.dtype) / num_bins
  return jnp.sum(values[..., None] > interior, axis=-1)


def _equal_mass_bin_ids(values: jax.Array, num_bins: int) -> jax.Array:
  """Bin of each value among `num_bins` equal-mass bins (lo, hi] split at order statistics."""
  n = values.shape[0]
  # Edge b sits at the ceil(b n / B)-th smallest value; without ties the value of rank r (from 0)
  # lands in bin floor(r B / n), so bin sizes differ by at most one. Ties stay in one bin, which
  # keeps the metric invariant to the order of the batch.
  positions = -(-np.arange(1, num_bins) * n // num_bins) - 1
  interior = jnp.sort(values)[positions]
  return jnp.sum(values[..., None] > interior, axis=-1)


def _interpolated_bin_ids(values: jax.Array, num_bins: int) -> tuple[jax.Array, jax.Array]:
  """The authors' `AdaptiveECELoss` bins: (bin ids, whether each value is counted at all).

  Edges e_0..e_B interpolate the sorted values linearly at positions b n / B (clamped to n - 1, as
  `np.interp` does); the bins are (e_b, e_{b+1}], so values equal to e_0 = min fall in no bin.
  """
  n = values.shape[0]
  positions = np.minimum(np.linspace(0, n, num_bins + 1), n - 1)
  lo = np.floor(positions).astype(np.int32)
  hi = np.minimum(lo + 1, n - 1)
  frac = jnp.asarray(positions - lo, values.dtype)
  ordered = jnp.sort(values)
  edges = ordered[lo] + frac * (ordered[hi] - ordered[lo])
  return jnp.sum(values[..., None] > edges[1:-1], axis=-1), values > edges[0]


def _binned_error(signed: jax.Array, bin_ids: jax.Array, num_segments: int, n: int) -> jax.Array:
  # sum_b (|B_b| / n) |acc_b - conf_b| = sum_b |sum_{i in B_b} (hit_i - conf_i)| / n.
  sums = jax.ops.segment_sum(signed, bin_ids, num_segments=num_segments)
  return jnp.sum(jnp.abs(sums)) / n


def _top(logits: jax.Array, labels: jax.Array):
  probs = jax.nn.softmax(logits, axis=-1)
  conf = jnp.max(probs, axis=-1)
  hits = (jnp.argmax(logits, axis=-1) == labels).astype(probs.dtype)
  return probs, conf, hits


def _ece(logits, labels, num_bins, official_compat):
  del official_compat
  _, conf, hits = _top(logits, labels)
  return _binned_error(hits - conf, _uniform_bin_ids(conf, num_bins), num_bins, conf.shape[0])


def _adaptive_ece(logits, labels, num_bins, official_compat):
  _, conf, hits = _top(logits, labels)
  if official_compat:
    ids, counted = _interpolated_bin_ids(conf, num_bins)
    signed = jnp.where(counted, hits - conf, jnp.zeros((), conf.dtype))
  else:
    ids, signed = _equal_mass_bin_ids(conf, num_bins), hits - conf
  return _binned_error(signed, ids, num_bins, conf.shape[0])


def _classwise_ece(logits, labels, num_bins, official_compat):
  del official_compat
  probs = jax.nn.softmax(logits, axis=-1)
  n, k = probs.shape
  onehot = jax.nn.one_hot(labels, k, dtype=probs.dtype)
  ids = _uniform_bin_ids(probs, num_bins) + num_bins * jnp.arange(k)  # (N, K): one segment per
  total = _binned_error((onehot - probs).ravel(), ids.ravel(), k * num_bins, n)  # (class, bin).
  return total / k


def _nll(logits, labels, *_):
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))


def _brier(logits, labels, *_):
  probs = jax.nn.softmax(logits, axis=-1)
  onehot = jax.nn.one_hot(labels, probs.shape[-1], dtype=probs.dtype)
  return jnp.mean(jnp.sum((probs - onehot) ** 2, axis=-1))


def _accuracy(logits, labels, *_):
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


_METRICS = {"accuracy": _accuracy, "ece": _ece, "adaptive_ece": _adaptive_ece,
            "classwise_ece": _classwise_ece, "nll": _nll, "brier": _brier}


@functools.partial(jax.jit, static_argnames=("names", "num_bins", "official_compat"))
def _compute(logits, labels, names, num_bins=None, official_compat=False):
  """The metrics `names` (keys of `_METRICS`), NaN unless the inputs are valid."""
  ok = _valid(logits, labels)
  return {name: _validation.nan_unless(
      ok, _METRICS[name](logits, labels, num_bins, official_compat)) for name in names}


def _metric(name: str, logits: ArrayLike, labels: ArrayLike, num_bins: int | None = None,
            official_compat: bool = False) -> jax.Array:
  logits, labels, num_bins = validate(logits, labels, num_bins)
  return _compute(logits, labels, (name,), num_bins, bool(official_compat))[name]


@_doc
def expected_calibration_error(
    logits: ArrayLike, labels: ArrayLike, *, num_bins: int = 15
) -> jax.Array:
  """Expected calibration error (ECE) of the top-1 confidence with equal-width bins.

  With c_i = max_k softmax(z_i)_k, hit_i = [argmax_k z_ik == y_i] and bins
  B_b = {i : c_i in (b/B, (b+1)/B]} (B_0 also holds c = 0),

    ECE = sum_b |B_b| / N * |mean_{B_b} hit - mean_{B_b} c|
        = sum_b |sum_{i in B_b} (hit_i - c_i)| / N.

  A confidence exactly on an edge goes to the lower bin, as in the authors' `ECELoss`.

  {inputs}

  Args:
    logits: `(N, K)` logits.
    labels: `(N,)` integer class ids in [0, K).
    num_bins: number of equal-width bins B >= 1 (15 in RankMixup); static under `jit`.

  Returns:
    The ECE, a scalar in [0, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.log(jnp.array([[0.9, 0.1], [0.7, 0.3]]))
    >>> round(float(expected_calibration_error(logits, jnp.array([0, 1]))), 4)  # (0.1 + 0.7) / 2
    0.4

  References:
    {references}
  """
  return _metric("ece", logits, labels, num_bins)


@_doc
def adaptive_calibration_error(
    logits: ArrayLike, labels: ArrayLike, *, num_bins: int = 15, official_compat: bool = False
) -> jax.Array:
  """Adaptive ECE: the ECE sum over equal-mass bins of the top-1 confidence.

  Sort the N confidences c_(0) <= ... <= c_(N-1); the interior edges are e_b = c_(ceil(b N / B) - 1)
  for b = 1..B-1 and the bins are (e_b, e_{b+1}] (the first one closed below), so without ties the
  sample of rank r lands in bin floor(r B / N). Then

    AdaECE = sum_b |sum_{i in B_b} (hit_i - c_i)| / N.

  `official_compat=True` reproduces the authors' `AdaptiveECELoss` instead. It differs in three
  ways: (1) the edges e_b, b = 0..B, interpolate the sorted confidences linearly at positions
  b N / B (clamped to N - 1, as `np.interp` does) rather than sitting on order statistics;
  (2) every bin is (e_b, e_{b+1}], the first one included, so the least confident sample (every
  sample equal to the minimum e_0) falls in no bin and is dropped, while N still divides; (3) the
  bins are unequal: 2, ..., 2, 1 samples for N = 30, B = 15, where the default holds floor or ceil
  of N / B each. The edges are interpolated in the confidences' precision (float32), where the
  authors interpolate in float64 and compare in float32; the two can differ only for a confidence
  within a rounding error of an interpolated edge.

  {inputs}

  Args:
    logits: `(N, K)` logits.
    labels: `(N,)` integer class ids in [0, K).
    num_bins: number of bins B >= 1; static under `jit`.
    official_compat: bin as the authors' `AdaptiveECELoss` does (see above).

  Returns:
    The adaptive ECE, a scalar in [0, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.log(jnp.array([[0.9, 0.1], [0.6, 0.4]]))
    >>> round(float(adaptive_calibration_error(logits, jnp.array([0, 0]), num_bins=2)), 4)
    0.25
    >>> # Edges interpolated at [0, 1, 1] -> [0.6, 0.9, 0.9]: 0.6 is dropped, 0.9 in bin 1.
    >>> round(float(adaptive_calibration_error(logits, jnp.array([0, 0]), num_bins=2,
    ...                                        official_compat=True)), 4)  # (1 - 0.9) / 2
    0.05

  References:
    {references}
  """
  return _metric("adaptive_ece", logits, labels, num_bins, official_compat)


@_doc
def classwise_calibration_error(
    logits: ArrayLike, labels: ArrayLike, *, num_bins: int = 15
) -> jax.Array:
  """Class-wise ECE: the ECE of every class probability against its indicator, averaged over K.

  For each class k, bin p_ik = softmax(z_i)_k into equal-width bins (lo, hi] and compare with
  [y_i == k]:

    CW-ECE = (1 / K) sum_k sum_b |sum_{i in B_kb} ([y_i == k] - p_ik)| / N.

  K is `logits.shape[-1]` (the authors' `ClasswiseECELoss` uses max(labels) + 1, which depends on
  the batch); p = 0 after underflow goes to the first bin.

  {inputs}

  Args:
    logits: `(N, K)` logits.
    labels: `(N,)` integer class ids in [0, K).
    num_bins: number of equal-width bins B >= 1; static under `jit`.

  Returns:
    The class-wise ECE, a scalar in [0, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.log(jnp.array([[0.75, 0.25]]))
    >>> round(float(classwise_calibration_error(logits, jnp.array([0]))), 4)  # (.25 + .25) / 2
    0.25

  References:
    {references}
  """
  return _metric("classwise_ece", logits, labels, num_bins)


@_doc
def negative_log_likelihood(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Mean negative log-likelihood of the labels: NLL = -mean_i log softmax(z_i)_{y_i}.

  {inputs}

  Args:
    logits: `(N, K)` logits.
    labels: `(N,)` integer class ids in [0, K).

  Returns:
    A scalar >= 0.

  Example:
    >>> import jax.numpy as jnp
    >>> float(negative_log_likelihood(jnp.zeros((3, 2)), jnp.array([0, 1, 1])))  # log 2
    0.693...

  References:
    {references}
  """
  return _metric("nll", logits, labels)


@_doc
def brier_score(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Multi-class Brier score: mean_i sum_k (softmax(z_i)_k - [y_i == k])^2, in [0, 2].

  Summed over classes, as in Brier (1950); some papers divide by K.

  {inputs}

  Args:
    logits: `(N, K)` logits.
    labels: `(N,)` integer class ids in [0, K).

  Returns:
    A scalar in [0, 2].

  Example:
    >>> import jax.numpy as jnp
    >>> float(brier_score(jnp.zeros((1, 2)), jnp.array([0])))  # 0.5^2 + 0.5^2
    0.5

  References:
    {references}
  """
  return _metric("brier", logits, labels)


@_doc
def accuracy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Top-1 accuracy: mean_i [argmax_k z_ik == y_i] (ties go to the lowest class index).

  {inputs} A row with a NaN is therefore never counted as a prediction.

  Args:
    logits: `(N, K)` logits.
    labels: `(N,)` integer class ids in [0, K).

  Returns:
    The fraction of correct predictions, a scalar in [0, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> float(accuracy(jnp.array([[2.0, 1.0], [0.0, 1.0]]), jnp.array([0, 0])))
    0.5

  References:
    Reported next to the calibration metrics by Noh et al., "RankMixup: Ranking-Based Mixup
    Training for Network Calibration", ICCV 2023, https://arxiv.org/abs/2308.11990; code
    https://github.com/cvlab-yonsei/RankMixup.
  """
  return _metric("accuracy", logits, labels)


@_doc
def calibration_metrics(
    logits: ArrayLike, labels: ArrayLike, *, num_bins: int = 15, official_compat: bool = False
) -> dict[str, jax.Array]:
  """All calibration metrics at once: accuracy, ECE, adaptive ECE, class-wise ECE, NLL, Brier.

  Each entry equals the function of the same name (see their docstrings for the math).

  {inputs}

  Args:
    logits: `(N, K)` logits.
    labels: `(N,)` integer class ids in [0, K).
    num_bins: bins of the three ECE variants, >= 1; static under `jit`.
    official_compat: adaptive ECE only: the authors' `AdaptiveECELoss` binning (see
      `adaptive_calibration_error`).

  Returns:
    A dict of scalars with keys "accuracy", "ece", "adaptive_ece", "classwise_ece", "nll", "brier".

  Example:
    >>> import jax.numpy as jnp
    >>> m = calibration_metrics(jnp.zeros((4, 2)), jnp.array([0, 1, 0, 1]))
    >>> sorted(m)
    ['accuracy', 'adaptive_ece', 'brier', 'classwise_ece', 'ece', 'nll']

  References:
    {references}
  """
  logits, labels, num_bins = validate(logits, labels, num_bins)
  return _compute(logits, labels, tuple(_METRICS), num_bins, bool(official_compat))


class ReliabilityBins(NamedTuple):
  """Per-bin statistics of the top-1 confidence (equal-width bins (lo, hi]).

  Attributes:
    edges: `(B + 1,)` bin edges b / B.
    counts: `(B,)` number of samples per bin.
    confidence: `(B,)` mean confidence per bin (0 for an empty bin).
    accuracy: `(B,)` accuracy per bin (0 for an empty bin).
  """

  edges: jax.Array
  counts: jax.Array
  confidence: jax.Array
  accuracy: jax.Array


@functools.partial(jax.jit, static_argnames="num_bins")
def _reliability_bins(logits, labels, num_bins):
  _, conf, hits = _top(logits, labels)
  ids = _uniform_bin_ids(conf, num_bins)
  counts = jax.ops.segment_sum(jnp.ones_like(conf), ids, num_segments=num_bins)
  denom = jnp.maximum(counts, 1.0)
  ok = _valid(logits, labels)
  return ReliabilityBins(
      edges=jnp.arange(num_bins + 1, dtype=conf.dtype) / num_bins,
      counts=_validation.nan_unless(ok, counts),
      confidence=_validation.nan_unless(
          ok, jax.ops.segment_sum(conf, ids, num_segments=num_bins) / denom),
      accuracy=_validation.nan_unless(
          ok, jax.ops.segment_sum(hits, ids, num_segments=num_bins) / denom),
  )


@_doc
def reliability_bins(
    logits: ArrayLike, labels: ArrayLike, *, num_bins: int = 15
) -> ReliabilityBins:
  """Counts, mean confidence and accuracy in each equal-width confidence bin (lo, hi].

  ECE = sum_b counts_b / N * |accuracy_b - confidence_b|.

  {inputs} Here "NaN" means that `counts`, `confidence` and `accuracy` are NaN throughout.

  Args:
    logits: `(N, K)` logits.
    labels: `(N,)` integer class ids in [0, K).
    num_bins: number of bins B >= 1; static under `jit`.

  Returns:
    A `ReliabilityBins(edges, counts, confidence, accuracy)`.

  Example:
    >>> import jax.numpy as jnp
    >>> bins = reliability_bins(jnp.log(jnp.array([[0.9, 0.1]])), jnp.array([0]), num_bins=2)
    >>> bins.counts.tolist()
    [0.0, 1.0]

  References:
    {references}
  """
  logits, labels, num_bins = validate(logits, labels, num_bins)
  return _reliability_bins(logits, labels, num_bins)


@_doc
def reliability_diagram(
    logits: ArrayLike,
    labels: ArrayLike,
    path: str | pathlib.Path,
    *,
    num_bins: int = 15,
    title: str | None = None,
) -> pathlib.Path:
  """Writes a reliability diagram (accuracy against confidence per bin) as a PNG.

  Top panel: per-bin accuracy as bars against the diagonal, the gap to the mean confidence shaded,
  the ECE in the legend. Bottom panel: the fraction of samples per bin. Uses matplotlib's Agg
  canvas directly, so it neither needs a display nor changes the global pyplot backend.

  A host-side function: a NaN or an infinity (-inf included) in `logits` raises naming `logits`;
  labels out of [0, K) and an empty batch raise too.

  Args:
    logits: `(N, K)` logits.
    labels: `(N,)` integer class ids in [0, K).
    path: where to write the PNG (a str or os.PathLike); parent directories are created.
    num_bins: number of equal-width bins B >= 1.
    title: optional figure title (a str).

  Returns:
    The path written.

  Example:
    >>> import jax.numpy as jnp, tempfile, os
    >>> out = reliability_diagram(jnp.zeros((4, 2)), jnp.array([0, 1, 0, 1]),
    ...                           os.path.join(tempfile.mkdtemp(), "rel.png"))
    >>> out.suffix
    '.png'

  References:
    {references}
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # Lazy: only plots need it.
  from matplotlib.figure import Figure

  logits, labels, num_bins = validate(logits, labels, num_bins)
  _validation.check_finite("logits", logits)
  if not isinstance(path, (str, os.PathLike)):
    raise TypeError(f"path: must be a str or os.PathLike, got {type(path).__name__}")
  if title is not None and not isinstance(title, str):
    raise TypeError(f"title: must be a str or None, got {type(title).__name__}")
  bins = jax.device_get(_reliability_bins(logits, labels, num_bins))
  ece = float(_compute(logits, labels, ("ece",), num_bins)["ece"])
  edges = np.asarray(bins.edges)
  counts = np.asarray(bins.counts)
  width = 1.0 / num_bins
  centers = edges[:-1] + width / 2
  nonempty = counts > 0

  fig = Figure(figsize=(5, 6.5))
  FigureCanvasAgg(fig)
  ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
  ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
  ax.bar(centers[nonempty], bins.accuracy[nonempty], width=width, edgecolor="k",
         color="tab:blue", label=f"accuracy (ECE = {100 * ece:.2f}%)")
  gap_lo = np.minimum(bins.accuracy, bins.confidence)[nonempty]
  gap_hi = np.maximum(bins.accuracy, bins.confidence)[nonempty]
  ax.bar(centers[nonempty], gap_hi - gap_lo, bottom=gap_lo, width=width, color="tab:red",
         alpha=0.3, edgecolor="tab:red", label="gap to mean confidence")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_ylabel("accuracy")
  ax.legend(loc="upper left")
  hist.bar(centers, counts / max(counts.sum(), 1), width=width, color="tab:gray", edgecolor="k")
  hist.set_xlabel("confidence")
  hist.set_ylabel("fraction")
  if title:
    ax.set_title(title)
  fig.tight_layout()
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, format="png", dpi=100)
  return path
