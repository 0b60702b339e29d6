"""Diffusion kernel and Diffusion Spectral Entropy (DSE) of a point cloud.

References:
  Liao, Liu et al., "Assessing Neural Network Representations During Training Using
  Noise-Resilient Diffusion Spectral Entropy", https://arxiv.org/abs/2312.04823.
  Authors' code: https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn.dynamics._checks import MAX_T, check_bandwidth, check_points
from jaxdyn.dynamics._numerics import power_reference, times_pow2
from jaxdyn.dynamics._slq import _slq_entropy_from_kernel, check_slq_options, slq_is_cheaper

# The authors add float64 machine epsilon to every probability after normalising.
_AUTHORS_EPS = 2.220446049250313e-16
_HIGHEST = jax.lax.Precision.HIGHEST
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _squared_distances(Z: jax.Array) -> jax.Array:
  """||z_i - z_j||^2 as ||a||^2 + ||b||^2 - 2 a.b on centred Z, clipped at 0, zero diagonal."""
  # Distances are translation invariant; centring shrinks ||a||^2 and with it the
  # cancellation error of the expansion in float32.
  Z = Z - jnp.mean(Z, axis=0, keepdims=True)
  sq = jnp.sum(Z * Z, axis=1)
  d2 = sq[:, None] + sq[None, :] - 2.0 * jnp.matmul(Z, Z.T, precision=_HIGHEST)
  d2 = jnp.maximum(d2, 0.0)
  n = Z.shape[0]
  return d2.at[jnp.arange(n), jnp.arange(n)].set(0.0)


def _safe_exponent(dtype) -> int:
  """``lim``: squares of numbers within ``2**(+-lim)``, and sums of 2**31 of them, stay normal."""
  return jnp.finfo(dtype).maxexp // 2 - 4  # 60 in float32


def _at_safe_scale(Z: jax.Array, sigma: jax.Array, sigma_exp: jax.Array, finish, *, exact_scale: bool) -> jax.Array:
  """``finish(G)`` for the Gaussian affinity ``G`` of ``Z``, computed where nothing overflows.

  The bandwidth is ``sigma * 2**sigma_exp = m * 2**e``, ``m`` in [0.5, 1). When ``max |Z|``
  is within ``2**(+-lim/2)`` and the bandwidth within ``2**(+-lim)`` (``lim = 60`` in
  float32), ``G`` is computed as written, which keeps every earlier result bit for bit.
  Beyond, ``Z`` and the bandwidth are divided by the same power of two, that of ``max |Z|``
  (exact: the exponent depends on distances / sigma only). The scaled points lie in
  [-1, 1], so no squared distance overflows or underflows whatever the data's magnitude,
  and the scaled bandwidth is clipped to ``2**(+-lim)``, beyond which ``exp`` is 1 to the
  dtype's resolution (a bandwidth far above the data's extent) or below it off the
  diagonal (far below: isolated points). There the scale ``1 / (sigma sqrt(2 pi))`` is
  exact with ``exact_scale`` (the affinity; it can underflow) and otherwise an even power
  of two times it that stays near 1 (for the kernel, where it cancels exactly).
  """
  lim = _safe_exponent(Z.dtype)
  kd = jnp.frexp(jnp.max(jnp.abs(Z)))[1]  # 0 for all-zero and for non-finite Z (whose NaN propagates)
  m, e = jnp.frexp(sigma)
  e = e + sigma_exp

  def direct(Z):
    sigma = times_pow2(m, e)  # exact here
    c = 1.0 / (sigma * _SQRT_2PI)
    return finish(c * jnp.exp(-_squared_distances(Z) / (2.0 * sigma * sigma)))

  def rescaled(Z):
    ec = e
    if not exact_scale:
      ec = jnp.clip(e, -lim, lim)
      ec = ec - (e - ec) % 2  # an even power of two away from the affinity's scale
    c = times_pow2(1.0 / (m * _SQRT_2PI), -ec)
    s = times_pow2(m, jnp.clip(e - kd, -lim, lim))
    return finish(c * jnp.exp(-_squared_distances(times_pow2(Z, -kd)) / (2.0 * s * s)))

  # A branch, not a select: XLA fuses differently around even an exact rescaling, which moves
  # the rounding of ordinary inputs by an ulp.
  return jax.lax.cond((jnp.abs(kd) <= lim // 2) & (jnp.abs(e) <= lim), direct, rescaled, Z)


def _normalise(G: jax.Array) -> jax.Array:
  """``D^{-1/2} G D^{-1/2}``, exactly symmetric."""
  s = jax.lax.rsqrt(jnp.sum(G, axis=1))  # D_ii >= G_ii > 0: self-loops keep it finite.
  K = s[:, None] * G * s[None, :]
  # Mirror the upper triangle: exactly symmetric in floating point (fused multiply-adds can
  # round K_ij and K_ji differently), so eigvalsh need not symmetrise again.
  n = K.shape[0]
  upper = jnp.arange(n)[:, None] <= jnp.arange(n)[None, :]
  return jnp.where(upper, K, K.T)


@jax.jit
def _affinity(Z: jax.Array, sigma: jax.Array, sigma_exp: jax.Array = 0) -> jax.Array:
  return _at_safe_scale(Z, sigma, sigma_exp, lambda G: G, exact_scale=True)


@jax.jit
def _kernel(Z: jax.Array, sigma: jax.Array, sigma_exp: jax.Array = 0) -> jax.Array:
  return _at_safe_scale(Z, sigma, sigma_exp, _normalise, exact_scale=False)


@jax.jit
def _entropy_from_eigenvalues(lam: jax.Array, t: jax.Array) -> jax.Array:
  # t is traced (an integer array): a new diffusion time does not recompile.
  a = jnp.abs(lam)
  lt = (a / power_reference(jnp.max(a), t)) ** t.astype(lam.dtype)
  p = lt / jnp.sum(lt) + _AUTHORS_EPS
  return -jnp.sum(p * jnp.log2(p))


@jax.jit
def _dse_exact(Z: jax.Array, sigma: jax.Array, t: jax.Array, sigma_exp: jax.Array = 0) -> jax.Array:
  return _entropy_from_eigenvalues(jnp.linalg.eigvalsh(_kernel(Z, sigma, sigma_exp), symmetrize_input=False), t)


def _points_and_bandwidth(Z: ArrayLike, sigma, *, min_points: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Checks ``Z`` and ``sigma``; returns ``Z`` and the bandwidth as (mantissa, exponent) arrays."""
  m, e = check_bandwidth(sigma)
  Z = check_points("Z", Z, min_points=min_points)
  return Z, jnp.asarray(m).astype(Z.dtype), jnp.asarray(e, jnp.int32)


def gaussian_affinity(Z: ArrayLike, *, sigma: float = 10.0) -> jax.Array:
  """Fixed-bandwidth Gaussian affinity of the rows of ``Z``, self-loops kept.

  .. math::
    G_{ij} = \\frac{1}{\\sigma\\sqrt{2\\pi}} \\exp\\left(-\\frac{\\|z_i - z_j\\|^2}{2\\sigma^2}\\right)

  Squared distances are computed as ``||a||^2 + ||b||^2 - 2 a.b`` on mean-centred ``Z``
  (a translation that leaves them unchanged but reduces float32 cancellation), clipped at 0,
  with an exact zero diagonal. ``Z`` and ``sigma`` are first divided by the same power of
  two (the exponent depends on ``||z_i - z_j|| / sigma`` only), so data of any magnitude the
  dtype holds and any bandwidth compute without overflow; the result is the same bit for bit
  where the direct formula does not overflow. A NaN or infinity in ``Z`` makes ``G`` NaN
  off the diagonal (traceable: no eager check).

  Args:
    Z: ``(N, D)`` points, one per row, N >= 1; float16 / bfloat16 are computed in float32.
    sigma: kernel bandwidth, a finite number > 0, and at least ``2 / (sqrt(2 pi) * max)``
      of the dtype (``2.3e-39`` in float32), below which ``G``'s scale
      ``1 / (sigma sqrt(2 pi))`` is not representable. Entries below the dtype's smallest
      normal number round to 0.

  Returns:
    The ``(N, N)`` matrix ``G`` in the floating dtype of ``Z`` (float32 unless x64 is on).

  Example:
    >>> import jax.numpy as jnp
    >>> G = gaussian_affinity(jnp.array([[0.0], [1.0]]), sigma=1.0)
    >>> [round(float(v), 4) for v in G[0]]
    [0.3989, 0.242]

  References:
    Liao, Liu et al., "Assessing Neural Network Representations During Training Using
    Noise-Resilient Diffusion Spectral Entropy", https://arxiv.org/abs/2312.04823;
    https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  """
  Z, m, e = _points_and_bandwidth(Z, sigma, min_points=1)
  smallest = 2.0 / (_SQRT_2PI * float(jnp.finfo(Z.dtype).max))
  if _validation.is_concrete(sigma) and float(sigma) < smallest:
    raise ValueError(f"sigma: must be >= {smallest:.3g} for {Z.dtype} Z (G's scale 1 / (sigma sqrt(2 pi)) "
                     f"overflows below it), got {sigma!r}")
  return _affinity(Z, m, e)


def diffusion_kernel(Z: ArrayLike, *, sigma: float = 10.0) -> jax.Array:
  """Symmetric diffusion kernel ``K = D^{-1/2} G D^{-1/2}`` of the rows of ``Z``.

  .. math::
    K = D^{-1/2} G D^{-1/2}, \\qquad D = \\mathrm{diag}\\Big(\\sum_j G_{ij}\\Big)

  with ``G`` from :func:`gaussian_affinity`. ``K`` is similar to the random-walk matrix
  ``P = D^{-1} G`` (``K = D^{1/2} P D^{-1/2}``), so it has the same eigenvalues; the largest
  is 1. It is positive semi-definite because the Gaussian kernel is. The constant
  ``1 / (sigma sqrt(2 pi))`` cancels in ``K``, so any bandwidth and data of any magnitude
  the dtype holds compute (see :func:`gaussian_affinity`: ``Z`` and ``sigma`` are rescaled
  together). A NaN or infinity in ``Z`` makes ``K`` NaN (traceable: no eager check).

  Args:
    Z: ``(N, D)`` points, one per row, N >= 1; float16 / bfloat16 are computed in float32.
    sigma: kernel bandwidth, a finite number > 0.

  Returns:
    The ``(N, N)`` symmetric matrix ``K``.

  Example:
    >>> import jax.numpy as jnp
    >>> K = diffusion_kernel(jnp.zeros((3, 2)))
    >>> [round(float(v), 4) + 0.0 for v in jnp.linalg.eigvalsh(K)]
    [0.0, 0.0, 1.0]

  References:
    Liao, Liu et al., arXiv 2312.04823, https://arxiv.org/abs/2312.04823;
    https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  """
  Z, m, e = _points_and_bandwidth(Z, sigma, min_points=1)
  return _kernel(Z, m, e)


def spectral_entropy(eigenvalues: ArrayLike, *, t: int = 1) -> jax.Array:
  """Entropy in bits of the normalised powered eigenvalue magnitudes, as the authors compute it.

  .. math::
    p_i = \\frac{|\\lambda_i|^t}{\\sum_j |\\lambda_j|^t} + 2.2\\cdot10^{-16}, \\qquad
    H = -\\sum_i p_i \\log_2 p_i

  The ``2.2e-16`` (float64 machine epsilon) is added after normalising, as in the authors'
  code; it changes the result by at most ``N * 1.2e-14`` bits. Where ``max |lambda|^t``
  would leave ``[2^-60, 2^60]`` (eigenvalues far from 1, or a large ``t``) the magnitudes
  are first divided by their maximum, which leaves ``p`` unchanged, so any scale and any
  ``t`` compute. A NaN or infinity, or all eigenvalues 0 (no distribution to take the
  entropy of), gives NaN (traceable: no eager check).

  Args:
    eigenvalues: non-empty 1-D array of eigenvalues (signs are ignored); float16 /
      bfloat16 are computed in float32 (the epsilon is below their resolution).
    t: diffusion time, an integer in ``[1, 2^31 - 1]``.

  Returns:
    A scalar: the entropy in bits, between 0 and ``log2 N`` (up to the epsilon).

  Example:
    >>> round(float(spectral_entropy([1.0, 1.0, 0.0, 0.0])), 4)
    1.0

  References:
    Liao, Liu et al., arXiv 2312.04823, https://arxiv.org/abs/2312.04823;
    https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  """
  t = _validation.check_int("t", t, lower=1, upper=MAX_T)
  _validation.check_ndim("eigenvalues", eigenvalues, 1)
  _validation.check_nonempty("eigenvalues", eigenvalues, what="eigenvalues")
  lam = _validation.check_floating("eigenvalues", eigenvalues)
  return _entropy_from_eigenvalues(lam, jnp.asarray(t, jnp.int32))


def diffusion_spectral_entropy(
    Z: ArrayLike,
    *,
    sigma: float = 10.0,
    t: int = 1,
    max_n: int = 10000,
    key: jax.Array | None = None,
    method: Literal["exact", "slq"] = "exact",
    num_probes: int = 16,
    lanczos_steps: int = 30,
    deflation_rank: int = 64,
    subspace_iters: int = 2,
    head_blocks: int = 3,
) -> jax.Array:
  """Diffusion Spectral Entropy (DSE) of the rows of ``Z``, in bits.

  .. math::
    \\mathrm{DSE}(Z; \\sigma, t) = -\\sum_i p_i \\log_2 p_i, \\qquad
    p_i = \\frac{|\\lambda_i|^t}{\\sum_j |\\lambda_j|^t}

  where ``lambda_i`` are the eigenvalues of the diffusion kernel ``K`` of
  :func:`diffusion_kernel` (equivalently of the random-walk matrix ``D^{-1} G``).
  ``0 <= DSE <= log2 N``; identical points give 0, ``m`` far-apart tight clusters give
  about ``log2 m``. Larger ``t`` damps the small (noise) eigenvalues, so DSE does not
  increase with ``t``. ``sigma`` must match the scale of the data (the default 10 suits
  embeddings whose pairwise distances are of order 10).

  ``method="exact"`` follows the authors: all eigenvalues of ``K`` by ``eigvalsh``
  (O(N^3)), then :func:`spectral_entropy` including its ``2.2e-16``.

  ``method="slq"`` estimates the same quantity without the eigendecomposition, by
  deflated stochastic Lanczos quadrature with control variates (see
  :func:`spectral_entropy_slq`), using ``DSE = log2 S - (1/S) tr[K^t log2 K^t]`` with
  ``S = tr K^t``; it omits the ``2.2e-16`` (a ``<= N * 1.2e-14`` bit difference). Stated
  error against ``"exact"`` with the defaults: ``|DSE_slq - DSE_exact| <= 0.05`` bits
  (the tests' bound); measured errors on the data listed in :func:`spectral_entropy_slq`
  were at most 0.01 bits. The error is random in ``key`` with standard deviation shrinking as
  ``1/sqrt(num_probes)``. When ``N <= deflation_rank * head_blocks + lanczos_steps``
  (222 with the defaults) slq would not be cheaper and the exact path is used.

  Numerics: ``Z`` and ``sigma`` are rescaled together before the kernel is formed (see
  :func:`gaussian_affinity`), so data of any magnitude the dtype holds and any bandwidth
  compute; float16 / bfloat16 ``Z`` is computed in float32 (the eigensolvers have no
  half-precision kernels). A NaN or infinity in ``Z`` gives NaN (traceable: no eager
  check), also when it falls outside the ``max_n`` subsample. Fewer than 2 points raise.

  Args:
    Z: ``(N, D)`` points (e.g. embeddings), one per row; N >= 2.
    sigma: Gaussian kernel bandwidth, a finite number > 0 (authors' default 10).
    t: diffusion time, an integer in ``[1, 2^31 - 1]`` (authors' default 1).
    max_n: if ``N > max_n``, DSE is computed on ``max_n`` rows drawn without replacement
      with ``key`` (as the authors do at 10,000); an integer >= 2.
    key: ``jax.random`` key; required when ``N > max_n`` or ``method="slq"`` (and checked
      whenever given). The subsample and the probes use independent sub-keys.
    method: ``"exact"`` (eigendecomposition) or ``"slq"`` (fast estimate).
    num_probes: slq only: random probe vectors for the tail trace (>= 1).
    lanczos_steps: slq only: Lanczos steps (quadrature nodes) per probe (>= 2).
    deflation_rank: slq only: leading eigen-directions handled by the head (>= 1).
    subspace_iters: slq only: subspace-iteration rounds used to find them (>= 0).
    head_blocks: slq only: block Lanczos steps of the head quadrature (>= 1).

  Returns:
    A scalar float array: the DSE in bits.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> Z = jnp.concatenate([jnp.zeros((5, 3)), jnp.full((5, 3), 100.0)])
    >>> round(float(diffusion_spectral_entropy(Z, sigma=1.0)), 3)   # two far-apart clusters
    1.0
    >>> Z = jax.random.normal(jax.random.key(0), (300, 8))
    >>> exact = diffusion_spectral_entropy(Z, sigma=2.0)
    >>> fast = diffusion_spectral_entropy(Z, sigma=2.0, method="slq", key=jax.random.key(1))
    >>> bool(abs(exact - fast) < 0.05)
    True

  References:
    Liao, Liu et al., "Assessing Neural Network Representations During Training Using
    Noise-Resilient Diffusion Spectral Entropy", https://arxiv.org/abs/2312.04823;
    authors' code https://github.com/ChenLiu-1996/DiffusionSpectralEntropy (the exact
    path follows their ``diffusion_spectral_entropy`` with its defaults).
  """
  t = _validation.check_int("t", t, lower=1, upper=MAX_T)
  max_n = _validation.check_int("max_n", max_n, lower=2)
  _validation.check_choice("method", method, ("exact", "slq"))
  options = check_slq_options(num_probes, lanczos_steps, deflation_rank, subspace_iters, head_blocks)
  Z, sigma_m, sigma_e = _points_and_bandwidth(Z, sigma, min_points=2)

  n = Z.shape[0]
  needs_key = n > max_n or method == "slq"
  if needs_key or key is not None:
    _validation.check_key("key", key, why=f" when N = {n} > max_n = {max_n} or method='slq'")
  if needs_key:
    sub_key, slq_key = jax.random.split(key)
  subsampled = n > max_n
  if subsampled:
    finite = jnp.all(jnp.isfinite(Z))  # a NaN left out of the subsample must still show
    Z = Z[jax.random.permutation(sub_key, n)[:max_n]]  # uniform subset, no replacement
    n = max_n

  t_arr = jnp.asarray(t, jnp.int32)
  if method == "exact" or not slq_is_cheaper(n, options):
    dse = _dse_exact(Z, sigma_m, t_arr, sigma_e)
  else:
    dse = _slq_entropy_from_kernel(_kernel(Z, sigma_m, sigma_e), slq_key, t_arr, **options)
  return _validation.nan_unless(finite, dse) if subsampled else dse
