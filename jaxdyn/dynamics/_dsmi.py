"""Diffusion Spectral Mutual Information (DSMI) between a point cloud and a reference variable.

References:
  Liao, Liu et al., "Assessing Neural Network Representations During Training Using
  Noise-Resilient Diffusion Spectral Entropy", https://arxiv.org/abs/2312.04823.
  Authors' code: https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
"""

from __future__ import annotations

from typing import Literal

import jax
import numpy as np
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn.dynamics._checks import MAX_T, check_bandwidth, check_points
from jaxdyn.dynamics._diffusion import diffusion_spectral_entropy
from jaxdyn.dynamics._slq import DEFAULT_SLQ_OPTIONS, check_slq_options

KINDS = ("auto", "discrete", "scalar", "vector")


def _equal_width_bins(y: np.ndarray, num_bins: int) -> np.ndarray:
  """Bin ids in ``[0, num_bins)`` of finite ``y`` over ``[min y, max y]``, the maximum in the last bin.

  Computed on ``y`` divided by the power of two of ``max |y|`` (exact), so that ``max - min``
  cannot overflow; a constant ``y`` is bin 0.
  """
  y = np.ldexp(y, -np.frexp(np.max(np.abs(y)))[1])
  lo, hi = y.min(), y.max()
  if hi == lo:
    return np.zeros(y.shape[0], np.int64)
  u = (y - lo) / (hi - lo)
  return np.minimum(np.floor(u * num_bins), num_bins - 1).astype(np.int64)


def reference_classes(
    Y: ArrayLike,
    *,
    kind: Literal["auto", "discrete", "scalar", "vector"] = "auto",
    num_bins: int = 10,
    num_clusters: int = 10,
    seed: int = 0,
) -> np.ndarray:
  """Discretises a reference variable ``Y`` into integer classes, as DSMI conditions on them.

  .. math::
    c_i = \\begin{cases} y_i & \\text{discrete} \\\\
      \\min(\\lfloor B (y_i - \\min y) / (\\max y - \\min y) \\rfloor, B - 1) & \\text{scalar} \\\\
      \\mathrm{SpectralClustering}(Y)_i & \\text{vector} \\end{cases}

  * ``"discrete"``: labels are used as they are (any hashable numpy values, shape ``(N,)``
    or ``(N, 1)``).
  * ``"scalar"``: ``num_bins`` equal-width bins over ``[min y, max y]``, the maximum
    falling in the last bin (the authors' min-max scaling + ``np.digitize``); a constant
    ``y`` is one class.
  * ``"vector"`` (``Y`` of shape ``(N, d)``, ``d > 1``): scikit-learn
    ``SpectralClustering(n_clusters=num_clusters, affinity="nearest_neighbors",
    assign_labels="cluster_qr", random_state=seed)``, the authors' settings.
  * ``"auto"``: integer or boolean ``Y`` with one column is discrete; floating ``Y``
    with one column is scalar; with more columns, vector.

  Runs on the host (NumPy): a NaN or infinity in a floating ``Y`` raises naming ``Y``, as
  does an empty ``Y``. The binning is computed at a power-of-two scale of ``max |y|``, so any
  finite magnitude bins correctly.

  Args:
    Y: ``(N,)``, ``(N, 1)`` or ``(N, d)`` reference values, N >= 1.
    kind: how to discretise, see above.
    num_bins: bins for a continuous scalar ``Y`` (>= 1).
    num_clusters: clusters for a continuous vector ``Y`` (>= 2, fewer than N).
    seed: ``random_state`` of the spectral clustering, an integer in ``[0, 2^32 - 1]``.

  Returns:
    ``(N,)`` numpy array of class ids.

  Example:
    >>> reference_classes([0.0, 0.05, 0.5, 1.0], num_bins=10).tolist()
    [0, 0, 5, 9]

  References:
    Liao, Liu et al., arXiv 2312.04823, https://arxiv.org/abs/2312.04823;
    https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  """
  _validation.check_choice("kind", kind, KINDS)
  num_bins = _validation.check_int("num_bins", num_bins, lower=1)
  num_clusters = _validation.check_int("num_clusters", num_clusters, lower=2)
  seed = _validation.check_int("seed", seed, lower=0, upper=2**32 - 1)
  y = np.asarray(Y)
  if y.ndim == 1:
    y = y[:, None]
  if y.ndim != 2 or y.shape[0] < 1:
    raise ValueError(f"Y: must have shape (N,), (N, 1) or (N, d) with N >= 1, got {np.shape(Y)}")
  _validation.check_finite("Y", y)
  if kind == "auto":
    if y.shape[1] == 1 and (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
      kind = "discrete"
    elif y.shape[1] == 1:
      kind = "scalar"
    else:
      kind = "vector"
  if kind == "discrete":
    if y.shape[1] != 1:
      raise ValueError(f"Y: discrete labels must have shape (N,) or (N, 1), got {np.shape(Y)}")
    return y[:, 0]
  if not np.issubdtype(y.dtype, np.number):
    raise ValueError(f"Y: kind={kind!r} needs numeric values, got dtype {y.dtype}")
  y = y.astype(np.float64)
  if kind == "scalar":
    if y.shape[1] != 1:
      raise ValueError(f"Y: kind='scalar' needs shape (N,) or (N, 1), got {np.shape(Y)}")
    return _equal_width_bins(y[:, 0], num_bins)
  if y.shape[0] <= num_clusters:
    raise ValueError(f"num_clusters: must be fewer than the points (N = {y.shape[0]}), got {num_clusters}")
  from sklearn.cluster import SpectralClustering  # heavy import, only when needed

  op = SpectralClustering(
      n_clusters=num_clusters,
      affinity="nearest_neighbors",
      assign_labels="cluster_qr",
      random_state=seed,
  )
  return np.asarray(op.fit(y).labels_, np.int64)


def diffusion_spectral_mutual_information(
    Z: ArrayLike,
    Y: ArrayLike,
    *,
    sigma: float = 10.0,
    t: int = 1,
    num_repeats: int = 5,
    key: jax.Array,
    y_kind: Literal["auto", "discrete", "scalar", "vector"] = "auto",
    num_bins: int = 10,
    num_clusters: int = 10,
    max_n: int = 10000,
    method: Literal["exact", "slq"] = "exact",
    **slq_kwargs,
) -> float:
  """Diffusion Spectral Mutual Information DSMI(Z; Y) in bits, the authors' estimator.

  .. math::
    \\mathrm{DSMI}(Z; Y) = \\sum_c \\frac{n_c}{N}\\Big[\\frac{1}{R}\\sum_{r=1}^{R}
      \\mathrm{DSE}(Z_{S_{c,r}}) - \\mathrm{DSE}(Z \\mid Y = c)\\Big]

  where ``n_c`` is the size of class ``c`` of :func:`reference_classes` (``Y`` discretised:
  labels as they are, 10 equal-width bins for a continuous scalar, spectral clustering for
  a continuous vector), ``DSE(Z | Y = c)`` is the DSE of the rows in class ``c``, and each
  ``S_{c,r}`` is a uniformly random subset of ``n_c`` of all ``N`` rows, drawn without
  replacement, ``R = num_repeats`` times (the authors use 5). Comparing equal-size sets
  removes the dependence of DSE on the number of points. Classes with one point contribute
  0 (both DSEs of a single point are 0). Independent labels give about 0 (it can be
  slightly negative); labels that separate the data into far-apart clusters give about
  the label entropy. Runs eagerly (class sizes are data-dependent); each DSE is jitted.
  A host-side estimator: a NaN or infinity in ``Z`` (or in a floating ``Y``) raises naming
  it, as do fewer than 2 points. Any bandwidth and data magnitude compute (see
  :func:`diffusion_spectral_entropy`).

  Args:
    Z: ``(N, D)`` points, one per row; N >= 2.
    Y: ``(N,)``, ``(N, 1)`` or ``(N, d)`` reference variable (labels, a scalar, or vectors).
    sigma: DSE kernel bandwidth, a finite number > 0.
    t: DSE diffusion time, an integer in ``[1, 2^31 - 1]``.
    num_repeats: random subsets per class for the unconditional term (>= 1).
    key: ``jax.random`` key for the subsets (and any DSE subsampling or slq probes).
    y_kind: how to discretise ``Y``; see :func:`reference_classes`.
    num_bins: bins for a continuous scalar ``Y`` (authors: 10).
    num_clusters: spectral clusters for a continuous vector ``Y`` (authors: 10); the
      clustering's ``random_state`` is drawn from ``key``.
    max_n: passed to :func:`diffusion_spectral_entropy`.
    method: ``"exact"`` or ``"slq"``, passed to :func:`diffusion_spectral_entropy`.
    **slq_kwargs: ``num_probes``, ``lanczos_steps``, ``deflation_rank``, ``subspace_iters``,
      ``head_blocks``, passed to :func:`diffusion_spectral_entropy` (checked first).

  Returns:
    The DSMI in bits, a Python float.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> Z = jnp.concatenate([jnp.zeros((8, 2)), jnp.full((8, 2), 50.0)])
    >>> Y = jnp.array([0] * 8 + [1] * 8)
    >>> mi = diffusion_spectral_mutual_information(Z, Y, sigma=1.0, key=jax.random.key(0))
    >>> bool(0.5 < mi < 1.01)
    True

  References:
    Liao, Liu et al., "Assessing Neural Network Representations During Training Using
    Noise-Resilient Diffusion Spectral Entropy", https://arxiv.org/abs/2312.04823;
    https://github.com/ChenLiu-1996/DiffusionSpectralEntropy (their
    ``diffusion_spectral_mutual_information``; they reseed the same subsets for every
    class, here each class draws its own from ``key``).
  """
  check_bandwidth(sigma)
  t = _validation.check_int("t", t, lower=1, upper=MAX_T)
  num_repeats = _validation.check_int("num_repeats", num_repeats, lower=1)
  max_n = _validation.check_int("max_n", max_n, lower=2)
  _validation.check_choice("method", method, ("exact", "slq"))
  unknown = sorted(set(slq_kwargs) - set(DEFAULT_SLQ_OPTIONS))
  if unknown:
    raise TypeError(f"slq_kwargs: unknown option(s) {unknown}, expected some of {sorted(DEFAULT_SLQ_OPTIONS)}")
  check_slq_options(**{**DEFAULT_SLQ_OPTIONS, **slq_kwargs})
  Z = check_points("Z", Z, min_points=2)
  _validation.check_finite("Z", Z)
  n = Z.shape[0]
  y_shape = np.shape(Y)
  if len(y_shape) not in (1, 2) or y_shape[0] != n:
    raise ValueError(f"Y: must have N = {n} rows (shape (N,), (N, 1) or (N, d)) to match Z, got shape {y_shape}")
  _validation.check_choice("y_kind", y_kind, KINDS)
  _validation.check_key("key", key, why=" for the random subsets")
  key_cluster, key = jax.random.split(key)
  seed = int(jax.random.randint(key_cluster, (), 0, 2**31 - 1))
  classes = reference_classes(Y, kind=y_kind, num_bins=num_bins, num_clusters=num_clusters, seed=seed)
  values, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)

  Z = np.asarray(Z)  # index on the host: class sizes vary, and device gathers would compile per size

  def dse(points, k):
    return float(
        diffusion_spectral_entropy(points, sigma=sigma, t=t, max_n=max_n, key=k, method=method, **slq_kwargs)
    )

  total = 0.0
  for c in range(len(values)):
    key, key_c = jax.random.split(key)
    n_c = int(counts[c])
    if n_c < 2:
      continue
    keys = jax.random.split(key_c, 2 * num_repeats + 1)
    conditional = dse(Z[np.flatnonzero(inverse == c)], keys[0])
    marginal = 0.0
    for r in range(num_repeats):
      subset = np.asarray(jax.random.permutation(keys[1 + 2 * r], n))[:n_c]  # uniform, no replacement
      marginal += dse(Z[subset], keys[2 + 2 * r])
    total += (n_c / n) * (marginal / num_repeats - conditional)
  return total
