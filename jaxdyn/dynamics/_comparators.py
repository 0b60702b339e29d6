"""Comparators for DSE / DSMI: binned Shannon entropy, k-NN mutual information, and MINE.

References:
  Liao, Liu et al., "Assessing Neural Network Representations During Training Using
  Noise-Resilient Diffusion Spectral Entropy", https://arxiv.org/abs/2312.04823 (they compare
  DSE / DSMI against these); authors' code https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  Kraskov, Stoegbauer & Grassberger, "Estimating mutual information", Phys. Rev. E 69, 066138
  (2004), https://arxiv.org/abs/cond-mat/0305641. Ross, "Mutual Information between Discrete
  and Continuous Data Sets", PLoS ONE 9(2), e87357 (2014). Belghazi et al., "MINE: Mutual
  Information Neural Estimation", ICML 2018, https://arxiv.org/abs/1801.04062.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import digamma
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn.dynamics._checks import check_points, check_points_shape
from jaxdyn.dynamics._numerics import times_pow2

_LN2 = math.log(2.0)
_AUTHORS_EPS = 2.220446049250313e-16


def _as_2d(name: str, A: ArrayLike, n: int | None = None) -> jax.Array:
  """``A`` as ``(N, D)`` floating samples (a 1-D ``A`` is one column), N >= 2 (and ``n`` if given).

  A NaN or infinity in a concrete ``A`` raises naming it; a traced one is left to the
  estimator, which returns NaN for it.
  """
  _validation.check_ndim(name, A, (1, 2))
  if np.ndim(A) == 1:
    A = jnp.reshape(jnp.asarray(A), (-1, 1))
  A = check_points(name, A, min_points=2)
  if n is not None and A.shape[0] != n:
    raise ValueError(f"{name}: must have N = {n} rows to match X, got shape {A.shape}")
  _validation.check_finite(name, A)
  return A


def _unit_scale(*arrays: jax.Array) -> list[jax.Array]:
  """The arrays divided by the power of two of their common ``max |.|`` (exact).

  k-NN estimators depend on distance ranks only, which a common scale keeps: the distances
  are then computed without overflow for data of any magnitude, with the same bits.
  """
  e = jnp.frexp(functools.reduce(jnp.maximum, [jnp.max(jnp.abs(a)) for a in arrays]))[1]
  return [times_pow2(a, -e) for a in arrays]


def _all_finite(*arrays: jax.Array) -> jax.Array:
  """Traced half of the non-finite policy: False if any entry of any array is NaN or infinite."""
  return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(a)) for a in arrays])


def binned_shannon_entropy(Z: ArrayLike, *, num_bins_per_dim: int = 2) -> float:
  """Shannon entropy in bits of the histogram of binned embeddings, as the paper's baseline.

  .. math::
    b_{id} = \\min\\Big(\\Big\\lfloor B\\,\\frac{z_{id} - \\min_j z_{jd}}{\\max_j z_{jd} - \\min_j z_{jd}}
      \\Big\\rfloor, B - 1\\Big), \\qquad
    H = -\\sum_{v} p_v \\log_2 p_v,\\; p_v = \\frac{|\\{i : b_i = v\\}|}{N} + 2.2\\cdot10^{-16}

  Binning: each dimension ``d`` is min-max scaled to ``[0, 1]`` over the ``N`` points and
  cut into ``B = num_bins_per_dim`` equal-width bins ``[0, 1/B), ..., [(B-1)/B, 1]`` (the
  maximum goes in the last bin; this is the authors' ``np.digitize`` on the left edges).
  A constant dimension puts every point in bin 0 (the authors' code divides by zero
  there). Each point's cell is its vector of ``D`` bin indices; ``p_v`` is the fraction of
  points in occupied cell ``v`` (empty cells are not enumerated). The ``2.2e-16`` is the
  authors' epsilon. ``0 <= H <= log2 N``: in high dimension almost every point gets its
  own cell and ``H`` saturates at ``log2 N``, the failure DSE is meant to avoid.
  A host-side (NumPy, float64) estimator: a NaN or infinity in ``Z`` raises naming it, as
  do fewer than 2 points; each dimension is scaled by the power of two of its largest
  magnitude before binning (exact), so any finite magnitude bins correctly.

  Args:
    Z: ``(N, D)`` points; N >= 2.
    num_bins_per_dim: bins ``B`` per dimension, an integer >= 1 (authors' default 2).

  Returns:
    The entropy in bits, a Python float.

  Example:
    >>> round(binned_shannon_entropy([[0.0], [0.1], [0.9], [1.0]], num_bins_per_dim=2), 6)   # 2 + 2
    1.0

  References:
    Liao, Liu et al., arXiv 2312.04823, https://arxiv.org/abs/2312.04823;
    https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  """
  num_bins_per_dim = _validation.check_int("num_bins_per_dim", num_bins_per_dim, lower=1)
  check_points_shape("Z", Z, min_points=2)
  z = np.asarray(Z, np.float64)  # on the host, in float64 (not through a float32 JAX array)
  _validation.check_finite("Z", z)
  z = np.ldexp(z, -np.frexp(np.max(np.abs(z), axis=0))[1])  # hi - lo cannot overflow
  lo, hi = z.min(axis=0), z.max(axis=0)
  span = np.where(hi > lo, hi - lo, 1.0)
  u = (z - lo) / span
  bins = np.minimum(np.floor(u * num_bins_per_dim), num_bins_per_dim - 1).astype(np.int64)
  _, counts = np.unique(bins, axis=0, return_counts=True)
  p = counts / counts.sum() + _AUTHORS_EPS
  return float(-np.sum(p * np.log2(p)))


def _pairwise_euclidean(A: jax.Array) -> jax.Array:
  """Exact pairwise Euclidean distances, accumulated one dimension at a time (no cancellation)."""
  n, d = A.shape

  def body(j, acc):
    col = A[:, j]
    return acc + (col[:, None] - col[None, :]) ** 2

  return jnp.sqrt(jax.lax.fori_loop(0, d, body, jnp.zeros((n, n), A.dtype)))


@functools.partial(jax.jit, static_argnames=("k",))
def _ksg(X: jax.Array, Y: jax.Array, k: int) -> jax.Array:
  n = X.shape[0]
  finite = _all_finite(X, Y)
  X, Y = _unit_scale(X, Y)
  dx = _pairwise_euclidean(X)
  dy = _pairwise_euclidean(Y)
  dz = jnp.maximum(dx, dy)
  dz = dz + jnp.diag(jnp.full((n,), jnp.inf, dz.dtype))  # exclude the point itself
  eps = -jax.lax.top_k(-dz, k)[0][:, -1]  # distance to the k-th neighbour in the joint space
  off = ~jnp.eye(n, dtype=bool)
  nx = jnp.sum((dx < eps[:, None]) & off, axis=1)
  ny = jnp.sum((dy < eps[:, None]) & off, axis=1)
  nats = digamma(float(k)) + digamma(float(n)) - jnp.mean(digamma(nx + 1.0) + digamma(ny + 1.0))
  return _validation.nan_unless(finite, nats / _LN2)


def ksg_mutual_information(X: ArrayLike, Y: ArrayLike, *, k: int = 3) -> jax.Array:
  """Kraskov-Stoegbauer-Grassberger k-NN estimate (algorithm 1) of I(X; Y) in bits.

  .. math::
    \\hat I = \\psi(k) + \\psi(N) - \\frac{1}{N}\\sum_i \\big[\\psi(n_x(i) + 1) + \\psi(n_y(i) + 1)\\big]

  ``eps_i`` is the distance from ``(x_i, y_i)`` to its k-th nearest neighbour under the
  joint norm ``max(||x_i - x_j||, ||y_i - y_j||)`` (Euclidean within each space, which KSG
  allows: the joint ball is a product of marginal balls); ``n_x(i) = |{j != i :
  ||x_i - x_j|| < eps_i}|`` and likewise ``n_y``. Divided by ``ln 2``. O(N^2) memory; ties
  (repeated points) bias it, so add tiny noise to discrete-valued data. Not clipped at 0.
  Distances are computed on ``X`` and ``Y`` divided by the power of two of their common
  largest magnitude (exact: the same neighbours), so data of any magnitude computes. A NaN
  or infinity in ``X`` or ``Y`` raises naming it (concrete inputs) or gives NaN (under
  ``jit``); fewer than 2 samples raise.

  Args:
    X: ``(N,)`` or ``(N, dx)`` samples, N >= 2.
    Y: ``(N,)`` or ``(N, dy)`` samples paired with ``X``.
    k: neighbours, an integer in ``[1, N - 1]`` (KSG suggest 2-4).

  Returns:
    Scalar estimate in bits.

  Example:
    >>> import jax
    >>> x = jax.random.normal(jax.random.key(0), (2000,))
    >>> y = 0.8 * x + 0.6 * jax.random.normal(jax.random.key(1), (2000,))
    >>> round(float(ksg_mutual_information(x, y)), 1)   # exact: -0.5 log2(1 - 0.64) = 0.737
    0.7

  References:
    Kraskov, Stoegbauer & Grassberger, Phys. Rev. E 69, 066138 (2004),
    https://arxiv.org/abs/cond-mat/0305641; used as a comparator by Liao, Liu et al.,
    https://arxiv.org/abs/2312.04823, https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  """
  X = _as_2d("X", X)
  Y = _as_2d("Y", Y, X.shape[0])
  k = _validation.check_int("k", k, lower=1, upper=X.shape[0] - 1)
  dtype = jnp.promote_types(X.dtype, Y.dtype)
  return _ksg(X.astype(dtype), Y.astype(dtype), k)


@jax.jit
def _ross(Z: jax.Array, cls: jax.Array, k_i: jax.Array, n_c: jax.Array, valid: jax.Array) -> jax.Array:
  n = Z.shape[0]
  finite = _all_finite(Z)
  d = _pairwise_euclidean(_unit_scale(Z)[0])
  d = d + jnp.diag(jnp.full((n,), jnp.inf, d.dtype))
  same = cls[:, None] == cls[None, :]
  d_same = jnp.where(same, d, jnp.inf)
  # distance to the k_i-th nearest neighbour of the same class (k_i <= n_c - 1 <= n - 1)
  radius = jnp.take_along_axis(jnp.sort(d_same, axis=1), (k_i - 1)[:, None], axis=1)[:, 0]
  m = jnp.sum(d <= radius[:, None], axis=1)  # all classes, self excluded (diagonal is inf)
  w = valid.astype(Z.dtype)
  n_valid = jnp.sum(w)
  mean = lambda v: jnp.sum(w * v) / n_valid
  nats = digamma(n_valid) + mean(digamma(k_i.astype(Z.dtype))) - mean(digamma(n_c.astype(Z.dtype)))
  nats = nats - mean(digamma(m.astype(Z.dtype)))
  return _validation.nan_unless(finite, nats / _LN2)


def knn_mutual_information_discrete(Z: ArrayLike, labels: ArrayLike, *, k: int = 3) -> jax.Array:
  """Ross's k-NN estimate of I(Z; C) in bits between continuous vectors and discrete labels.

  .. math::
    \\hat I = \\psi(N) - \\langle \\psi(N_{c_i}) \\rangle + \\langle \\psi(k_i) \\rangle - \\langle \\psi(m_i) \\rangle

  For each point ``i`` of class ``c_i`` (class size ``N_c``): ``k_i = min(k, N_c - 1)``;
  ``d_i`` is the Euclidean distance to its ``k_i``-th nearest neighbour within its class;
  ``m_i = |{j != i : ||z_j - z_i|| <= d_i}|`` counts neighbours of every class (the k-th
  included). Points whose class has a single member are dropped and ``N`` is the number of
  points left. Divided by ``ln 2``. This is the estimator scikit-learn's
  ``mutual_info_classif`` applies to each feature separately (it also adds ~1e-10 noise
  and clips the result at 0); here ``Z`` is one multivariate variable and the estimate is
  not clipped, so it can be slightly negative. O(N^2) memory. Distances are computed on
  ``Z`` divided by the power of two of its largest magnitude (exact), so data of any
  magnitude computes. A NaN or infinity in ``Z`` raises naming it (concrete) or gives NaN
  (under ``jit``); a NaN or infinite floating label raises; fewer than 2 samples raise.

  Args:
    Z: ``(N,)`` or ``(N, D)`` continuous samples, N >= 2.
    labels: ``(N,)`` discrete labels: any values ``np.unique`` can sort (they name classes,
      they do not index anything), on the host.
    k: neighbours, an integer >= 1 (scikit-learn's default 3).

  Returns:
    Scalar estimate in bits.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> labels = jnp.arange(400) % 2
    >>> z = 20.0 * labels + jax.random.normal(jax.random.key(0), (400,))   # far-apart classes
    >>> round(float(knn_mutual_information_discrete(z, labels)), 2)          # H(C) = 1 bit
    1.0

  References:
    Ross, PLoS ONE 9(2), e87357 (2014), https://doi.org/10.1371/journal.pone.0087357;
    used as a comparator by Liao, Liu et al., https://arxiv.org/abs/2312.04823,
    https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  """
  Z = _as_2d("Z", Z)
  n = Z.shape[0]
  k = _validation.check_int("k", k, lower=1)
  lab = np.asarray(labels)
  if lab.ndim == 2 and lab.shape[1] == 1:
    lab = lab[:, 0]
  if lab.ndim != 1 or lab.shape[0] != n:
    raise ValueError(f"labels: must have shape (N,) with N = {n} to match Z, got shape {np.shape(labels)}")
  _validation.check_finite("labels", lab)
  _, cls, counts = np.unique(lab, return_inverse=True, return_counts=True)
  n_c = counts[cls]
  valid = n_c > 1
  if not valid.any():
    raise ValueError("labels: must give some class >= 2 points, got a single point in every class")
  k_i = np.clip(np.minimum(k, n_c - 1), 1, None)
  return _ross(Z, jnp.asarray(cls), jnp.asarray(k_i), jnp.asarray(n_c), jnp.asarray(valid))


def _init_mlp(key: jax.Array, sizes: Sequence[int], dtype) -> list[tuple[jax.Array, jax.Array]]:
  params = []
  for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
    key, sub = jax.random.split(key)
    w = jax.random.normal(sub, (fan_in, fan_out), dtype) * math.sqrt(2.0 / fan_in)
    params.append((w, jnp.zeros((fan_out,), dtype)))
  return params


def _critic(params, x: jax.Array, y: jax.Array) -> jax.Array:
  h = jnp.concatenate([x, y], axis=-1)
  for w, b in params[:-1]:
    h = jax.nn.elu(h @ w + b)
  w, b = params[-1]
  return (h @ w + b)[..., 0]


def _dv_bound(params, x, y, y_marg) -> jax.Array:
  t_joint = _critic(params, x, y)
  t_marg = _critic(params, x, y_marg)
  return jnp.mean(t_joint) - (jax.nn.logsumexp(t_marg) - jnp.log(t_marg.shape[0]))


@functools.partial(jax.jit, static_argnames=("hidden", "batch_size", "eval_permutations"))
def _mine(X, Y, key, steps, learning_rate, ema_rate, bias_correction, *, hidden, batch_size, eval_permutations):
  # steps, learning_rate, ema_rate and bias_correction are traced: changing them does not recompile.
  n = X.shape[0]
  dtype = X.dtype
  key_init, key_train, key_eval = jax.random.split(key, 3)
  params = _init_mlp(key_init, (X.shape[1] + Y.shape[1], *hidden, 1), dtype)
  opt = optax.adam(learning_rate)

  def loss_fn(p, xb, yb, ym, ma):
    t_joint = jnp.mean(_critic(p, xb, yb))
    t_marg = _critic(p, xb, ym)
    log_mean_exp = jax.nn.logsumexp(t_marg) - jnp.log(t_marg.shape[0])
    # Moving-average gradient correction (Belghazi et al. 2018, Sec. 3.2): the gradient of
    # log E[e^T] is grad E[e^T] / E[e^T]; the corrected loss divides by an EMA instead of the
    # minibatch mean. Its value is shifted by a constant, its gradient is the corrected one.
    mean_exp = jnp.exp(log_mean_exp)
    new_ma = (1.0 - ema_rate) * ma + ema_rate * jax.lax.stop_gradient(mean_exp)
    corrected = mean_exp / jax.lax.stop_gradient(new_ma)
    log_term = jnp.where(bias_correction, corrected, log_mean_exp)
    return -(t_joint - log_term), jnp.where(bias_correction, new_ma, ma)

  def step(i, carry):
    p, s, ma = carry
    k1, k2 = jax.random.split(jax.random.fold_in(key_train, i))
    idx = jax.random.randint(k1, (batch_size,), 0, n)
    idx_m = jax.random.randint(k2, (batch_size,), 0, n)  # independent draw: product of marginals
    (_, new_ma), g = jax.value_and_grad(loss_fn, has_aux=True)(p, X[idx], Y[idx], Y[idx_m], ma)
    updates, s = opt.update(g, s, p)
    return optax.apply_updates(p, updates), s, new_ma

  carry = (params, opt.init(params), jnp.ones((), dtype))
  params, _, _ = jax.lax.fori_loop(0, steps, step, carry)
  perms = jax.vmap(lambda kk: jax.random.permutation(kk, n))(jax.random.split(key_eval, eval_permutations))
  bounds = jax.vmap(lambda perm: _dv_bound(params, X, Y, Y[perm]))(perms)
  return _validation.nan_unless(_all_finite(X, Y), jnp.mean(bounds) / _LN2)


def mine_mutual_information(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    key: jax.Array,
    hidden: Sequence[int] = (64, 64),
    steps: int = 2000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    bias_correction: bool = True,
    ema_rate: float = 0.01,
    eval_permutations: int = 8,
) -> jax.Array:
  """MINE estimate of I(X; Y) in bits: a neural critic trained on the Donsker-Varadhan bound.

  .. math::
    I(X;Y) \\ge \\sup_\\theta\\; \\mathbb{E}_{P_{XY}}[T_\\theta] - \\log \\mathbb{E}_{P_X \\otimes P_Y}[e^{T_\\theta}]

  ``T_theta`` is an ELU MLP on ``concat(x, y)`` (He-normal weights), trained with Adam for
  ``steps`` minibatch steps: a joint batch ``(x_i, y_i)`` and a product-of-marginals batch
  ``(x_i, y_j)`` with independently drawn ``j``. With ``bias_correction`` the gradient of
  the log term uses an exponential moving average of ``E[e^T]`` (rate ``ema_rate``) in the
  denominator, Belghazi et al.'s bias-corrected MINE; without it the plain minibatch DV
  bound is maximised. ``X`` and ``Y`` are standardised per dimension first (MI is invariant
  to it). The returned value is the DV bound of the trained critic on all ``N`` pairs, the
  marginal term averaged over ``eval_permutations`` random permutations of ``Y``, divided
  by ``ln 2``. It is evaluated on the training sample, so it can overshoot slightly on
  small ``N``; it is a lower bound only up to that and to optimisation error. The
  standardisation divides by a power of two first (exact), so data of any magnitude
  computes. A NaN or infinity in ``X`` or ``Y`` raises naming it (concrete) or gives NaN
  (under ``jit``); fewer than 2 samples raise.

  Args:
    X: ``(N,)`` or ``(N, dx)`` samples, N >= 2.
    Y: ``(N,)`` or ``(N, dy)`` samples paired with ``X``.
    key: ``jax.random`` key (initialisation, minibatches, evaluation permutations).
    hidden: hidden-layer widths of the critic (each >= 1).
    steps: optimisation steps, an integer in ``[1, 2^31 - 1]``.
    batch_size: minibatch size (>= 2).
    learning_rate: Adam learning rate (> 0). One large enough to make the training diverge
      (about 1 with the other defaults) gives NaN, not a finite number.
    bias_correction: use the moving-average gradient correction.
    ema_rate: moving-average rate in (0, 1] (Belghazi et al. use 0.01).
    eval_permutations: permutations for the final marginal term (>= 1).

  Returns:
    Scalar estimate in bits.

  Example:
    >>> import jax
    >>> x = jax.random.normal(jax.random.key(0), (2000,))
    >>> y = 0.8 * x + 0.6 * jax.random.normal(jax.random.key(1), (2000,))
    >>> est = mine_mutual_information(x, y, key=jax.random.key(2))
    >>> bool(abs(est - 0.737) < 0.2)   # exact: -0.5 log2(1 - 0.8^2)
    True

  References:
    Belghazi et al., "MINE: Mutual Information Neural Estimation", ICML 2018,
    https://arxiv.org/abs/1801.04062; used as a comparator by Liao, Liu et al.,
    https://arxiv.org/abs/2312.04823, https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  """
  _validation.check_key("key", key, why=" for the critic's initialisation and minibatches")
  X = _as_2d("X", X)
  Y = _as_2d("Y", Y, X.shape[0])
  hidden = tuple(_validation.check_int("hidden", h, lower=1) for h in hidden)
  steps = _validation.check_int("steps", steps, lower=1, upper=2**31 - 1)  # a traced int32
  batch_size = _validation.check_int("batch_size", batch_size, lower=2)
  eval_permutations = _validation.check_int("eval_permutations", eval_permutations, lower=1)
  learning_rate = _validation.check_real("learning_rate", learning_rate, lower=0.0, lower_open=True)
  ema_rate = _validation.check_real("ema_rate", ema_rate, lower=0.0, upper=1.0, lower_open=True)
  dtype = jnp.promote_types(X.dtype, Y.dtype)

  def standardise(A):
    A = _unit_scale(A.astype(dtype))[0]  # exact; std(A) of large A would overflow
    sd = jnp.std(A, axis=0)
    return (A - jnp.mean(A, axis=0)) / jnp.where(sd > 0, sd, 1.0)

  return _mine(
      standardise(X),
      standardise(Y),
      key,
      jnp.asarray(steps, jnp.int32),
      jnp.asarray(learning_rate, dtype),
      jnp.asarray(ema_rate, dtype),
      jnp.asarray(bool(bias_correction)),
      hidden=hidden,
      batch_size=batch_size,
      eval_permutations=eval_permutations,
  )
