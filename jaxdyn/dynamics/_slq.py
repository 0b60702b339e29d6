"""Deflated stochastic Lanczos quadrature (SLQ) estimate of the spectral entropy of a PSD matrix.

References:
  Ubaru, Chen & Saad, "Fast Estimation of tr(f(A)) via Stochastic Lanczos Quadrature",
  SIAM J. Matrix Anal. Appl. 2017. Meyer, Musco, Musco & Woodruff, "Hutch++: Optimal
  Stochastic Trace Estimation", https://arxiv.org/abs/2010.09649 (deflation idea).
  Deflation by a block-Gauss-quadrature head, Hutchinson tail with control variates.
  The entropy is the DSE of Liao, Liu et al., https://arxiv.org/abs/2312.04823.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn.dynamics._checks import MAX_T
from jaxdyn.dynamics._numerics import normalise_scale, power_reference

_HIGHEST = jax.lax.Precision.HIGHEST


def _mm(A: jax.Array, B: jax.Array) -> jax.Array:
  return jnp.matmul(A, B, precision=_HIGHEST)


def _powers_and_xlogx(x: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Returns (|x|^t, |x|^t log2 |x|^t) with 0 log 0 = 0; ``t`` may be traced."""
  xt = jnp.abs(x) ** jnp.asarray(t).astype(x.dtype)
  return xt, jax.scipy.special.xlogy(xt, xt) / math.log(2.0)


def _orthonormalize(Y: jax.Array, ref_sq_norm: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Orthonormal basis of range(Y) from the eigendecomposition of the small Gram matrix, twice.

  Returns ``(Q, r)``: ``Q`` has the shape of ``Y`` with orthonormal columns spanning the
  numerically non-null part of ``range(Y)`` and zero columns elsewhere; ``r`` counts the
  non-zero columns. Directions with squared norm below ``1e3 eps`` times the largest (or
  times ``ref_sq_norm``, the squared scale ``Y`` came from, when given: a residual that is
  pure rounding is then dropped, not normalised) count as null. Two passes (as in
  CholeskyQR2) give orthogonality to working precision for the moderately conditioned
  blocks met here; a tall-skinny LAPACK QR is 100x slower on XLA:CPU.
  """
  tol = 1e3 * jnp.finfo(Y.dtype).eps
  keep = None
  for i in range(2):
    w, V = jnp.linalg.eigh(_mm(Y.T, Y))
    ref = jnp.max(w) if (ref_sq_norm is None or i > 0) else jnp.maximum(jnp.max(w), ref_sq_norm)
    keep = w > tol * ref
    Y = _mm(Y, V * jnp.where(keep, jax.lax.rsqrt(jnp.where(keep, w, 1.0)), 0.0))
  return Y, jnp.sum(keep)


def _lanczos(matvec, v0: jax.Array, steps: int, scale: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Lanczos with full reorthogonalisation on the columns of ``v0`` (unit norm), batched.

  Returns the diagonals ``alpha`` (steps, b) and off-diagonals ``beta`` (steps - 1, b) of
  the Lanczos tridiagonal matrices, one per column. On breakdown (an invariant Krylov
  subspace: ``beta`` below ``100 eps * scale``, ``scale`` the operator's norm) the remaining
  coefficients are exactly 0, which only adds quadrature nodes of zero weight.
  """
  n, b = v0.shape
  dtype = v0.dtype
  rel_tol = 100.0 * jnp.finfo(dtype).eps

  def body(j, carry):
    basis, q, q_prev, beta_prev, alphas, betas = carry
    basis = basis.at[j].set(q)
    w = matvec(q)
    alpha = jnp.sum(w * q, axis=0)
    w = w - alpha * q - beta_prev * q_prev
    for _ in range(2):  # classical Gram-Schmidt, twice is enough
      coef = jnp.einsum("jnb,nb->jb", basis, w, precision=_HIGHEST)
      w = w - jnp.einsum("jnb,jb->nb", basis, coef, precision=_HIGHEST)
    beta = jnp.linalg.norm(w, axis=0)
    alive = beta > rel_tol * scale
    q_next = jnp.where(alive, w / jnp.where(alive, beta, 1.0), 0.0)
    beta = jnp.where(alive, beta, 0.0)
    return basis, q_next, q, beta, alphas.at[j].set(alpha), betas.at[j].set(beta)

  init = (
      jnp.zeros((steps, n, b), dtype),
      v0,
      jnp.zeros_like(v0),
      jnp.zeros((b,), dtype),
      jnp.zeros((steps, b), dtype),
      jnp.zeros((steps, b), dtype),
  )
  _, _, _, _, alphas, betas = jax.lax.fori_loop(0, steps, body, init)
  return alphas, betas[:-1]


def _gauss_quadrature(alphas: jax.Array, betas: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Nodes (b, m) and weights (b, m) of the Gauss rules of the tridiagonal matrices."""
  a = alphas.T  # (b, m)
  c = betas.T  # (b, m - 1)
  T = jax.vmap(jnp.diag)(a) + jax.vmap(lambda x: jnp.diag(x, 1))(c) + jax.vmap(lambda x: jnp.diag(x, -1))(c)
  nodes, vecs = jnp.linalg.eigh(T)
  return nodes, vecs[:, 0, :] ** 2


def _block_gauss_head(K: jax.Array, Q: jax.Array, blocks: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Block Gauss quadrature for tr(Q^T f(K) Q): nodes (k * blocks,), their weights, and K Q.

  Block Lanczos (full reorthogonalisation) from ``Q`` builds an orthonormal basis ``V`` of
  ``[Q, K Q, ..., K^{blocks-1} Q]``; with ``T = V^T K V = U diag(theta) U^T``,
  ``tr(Q^T f(K) Q) ~= sum_j f(theta_j) sum_{i < k} U_ij^2``, exact for polynomials of
  degree < 2 * blocks and for any ``f`` when ``range(Q)`` is invariant under ``K``.
  """
  k = Q.shape[1]
  basis = [Q]
  images = []
  for j in range(blocks):
    W = _mm(K, basis[j])
    images.append(W)
    if j + 1 < blocks:
      prev = jnp.concatenate(basis, axis=1)
      R = W
      for _ in range(2):
        R = R - _mm(prev, _mm(prev.T, R))
      # An (almost) invariant range(Q) leaves a rounding-level residual: drop it, relative to W.
      R = _orthonormalize(R, jnp.max(jnp.sum(W * W, axis=0)))[0]
      R = _orthonormalize(R - _mm(prev, _mm(prev.T, R)))[0]
      basis.append(R)
  V = jnp.concatenate(basis, axis=1)
  T = _mm(V.T, jnp.concatenate(images, axis=1))
  theta, U = jnp.linalg.eigh(0.5 * (T + T.T))
  return theta, jnp.sum(U[:k, :] ** 2, axis=0), images[0]



# Defaults shared with diffusion_spectral_entropy(method="slq").
DEFAULT_SLQ_OPTIONS = dict(num_probes=16, lanczos_steps=30, deflation_rank=64, subspace_iters=2, head_blocks=3)


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_probes", "lanczos_steps", "deflation_rank", "subspace_iters", "head_blocks", "control_variates"
    ),
)
def _slq_entropy_from_kernel(
    K: jax.Array,
    key: jax.Array,
    t: jax.Array,
    *,
    num_probes: int,
    lanczos_steps: int,
    deflation_rank: int,
    subspace_iters: int,
    head_blocks: int,
    control_variates: bool = True,
) -> jax.Array:
  n = K.shape[0]
  k = deflation_rank
  dtype = K.dtype
  key_head, key_probe = jax.random.split(key)

  # tr f(K) = tr(Q^T f(K) Q) + tr(P f(K) P) exactly, P = I - Q Q^T, for any orthonormal Q;
  # Q approximates the dominant k-dimensional invariant subspace (randomised subspace
  # iteration), so that the stochastic part only sees the flatter rest of the spectrum.
  Y = _mm(K, jax.random.normal(key_head, (n, k), dtype))
  for _ in range(subspace_iters):
    Y = _mm(K, _orthonormalize(Y)[0])
  Q, rank = _orthonormalize(Y)

  # 1) Head, deterministic given Q: block Gauss quadrature.
  head_nodes, head_weights, KQ = _block_gauss_head(K, Q, head_blocks)

  # 2) Tail, stochastic: Hutchinson with uniformly random unit vectors u in range(P)
  #    (dimension n - rank), u^T f(K) u by the Gauss rule of a Lanczos run on K from u.
  def project(X):
    return X - _mm(Q, _mm(Q.T, X))

  V = project(project(jax.random.normal(key_probe, (n, num_probes), dtype)))
  V = V / jnp.linalg.norm(V, axis=0)
  alphas, betas = _lanczos(lambda X: _mm(K, X), V, lanczos_steps, jnp.max(jnp.abs(head_nodes)))
  nodes, weights = _gauss_quadrature(alphas, betas)
  # 1 for a diffusion kernel (top node ~ 1); the largest node where its t-th power would over-
  # or underflow. Dividing every node by it leaves the entropy unchanged.
  ref = power_reference(jnp.maximum(jnp.max(jnp.abs(head_nodes)), jnp.max(jnp.abs(nodes))), t)
  head_s, head_h = _powers_and_xlogx(head_nodes / ref, t)
  node_s, node_h = _powers_and_xlogx(nodes / ref, t)
  per_probe = jnp.stack([jnp.sum(weights * node_s, axis=1), jnp.sum(weights * node_h, axis=1)], axis=1)
  dim = (n - rank).astype(dtype)
  raw = jnp.mean(per_probe, axis=0)
  if control_variates:
    # u^T K u = alpha_1 and u^T K^2 u = alpha_1^2 + beta_1^2 have exactly known means over the
    # complement: tr(P K P) = tr K - tr(Q^T K Q) and tr(P K^2 P) = ||K - (K Q) Q^T||_F^2 (the
    # latter formed entrywise, so float32 cancellation does not swamp a small tail).
    # Regressing the probes' estimates on them (least squares over the probes) removes the
    # part of the Hutchinson noise that is linear or quadratic in the spectrum.
    cv = jnp.stack([alphas[0], alphas[0] ** 2 + betas[0] ** 2], axis=1)
    residual = K - _mm(KQ, Q.T)
    cv_mean = jnp.stack([jnp.trace(K) - jnp.sum(Q * KQ), jnp.sum(residual * residual)]) / dim
    A = cv - jnp.mean(cv, axis=0)
    scale = jnp.sqrt(jnp.mean(A * A, axis=0)) + jnp.finfo(dtype).tiny
    A = A / scale
    B = per_probe - raw
    coef = jnp.linalg.solve(_mm(A.T, A) + 1e-6 * num_probes * jnp.eye(2, dtype=dtype), _mm(A.T, B))
    correction = ((jnp.mean(cv, axis=0) - cv_mean) / scale) @ coef
    # The correction has mean 0 and, for a useful control variate, is about as large as the
    # raw mean's own error. A much larger one means the known means were lost to rounding
    # (a numerically empty tail, e.g. identical points): keep the raw estimate there.
    raw_se = jnp.std(per_probe, axis=0) / math.sqrt(num_probes)
    ok = jnp.abs(correction) <= 4.0 * raw_se + 10.0 * jnp.finfo(dtype).eps * jnp.abs(raw)
    tail = dim * jnp.where(ok, raw - correction, raw)
  else:
    tail = dim * raw

  s = jnp.sum(head_weights * head_s) + tail[0]
  h = jnp.sum(head_weights * head_h) + tail[1]
  # tr K^t >= lambda_max^t >= (largest Ritz value)^t > 0. The estimate meets this bound unless
  # the head missed the top eigenvalue and the corrected tail went negative (too few probes or
  # too small a deflation rank at a large t); keep it there, where log2 s is defined.
  s = jnp.maximum(s, jnp.maximum(jnp.max(head_s), jnp.max(node_s)))
  return jnp.log2(s) - h / s


def check_slq_options(num_probes, lanczos_steps, deflation_rank, subspace_iters, head_blocks) -> dict:
  """Validates the slq options eagerly; returns them as a dict of ints."""
  return dict(
      num_probes=_validation.check_int("num_probes", num_probes, lower=1),
      lanczos_steps=_validation.check_int("lanczos_steps", lanczos_steps, lower=2),
      deflation_rank=_validation.check_int("deflation_rank", deflation_rank, lower=1),
      subspace_iters=_validation.check_int("subspace_iters", subspace_iters, lower=0),
      head_blocks=_validation.check_int("head_blocks", head_blocks, lower=1),
  )


def slq_is_cheaper(n: int, options: dict) -> bool:
  """Whether the slq path applies: the head's block Krylov space and the Lanczos runs fit in N."""
  return n > options["deflation_rank"] * options["head_blocks"] + options["lanczos_steps"]


def spectral_entropy_slq(
    K: ArrayLike,
    *,
    t: int = 1,
    key: jax.Array,
    num_probes: int = 16,
    lanczos_steps: int = 30,
    deflation_rank: int = 64,
    subspace_iters: int = 2,
    head_blocks: int = 3,
) -> jax.Array:
  """Estimates the spectral entropy of a symmetric PSD matrix by deflated stochastic Lanczos quadrature.

  .. math::
    H = -\\sum_i p_i \\log_2 p_i,\\; p_i = \\frac{\\lambda_i^t}{S},\\; S = \\mathrm{tr}\\,K^t
    \\;\\Rightarrow\\; H = \\log_2 S - \\frac{1}{S}\\,\\mathrm{tr}\\big[K^t \\log_2 K^t\\big]

  Each trace ``tr f(K)``, ``f(x) = |x|^t`` and ``|x|^t log2 |x|^t``, is split exactly as
  ``tr(Q^T f(K) Q) + tr(P f(K) P)`` with ``P = I - Q Q^T``:

  1. ``Q`` (``N x k``, ``k = deflation_rank``) spans approximately the dominant invariant
     subspace, by randomised subspace iteration (``subspace_iters`` rounds).
  2. *Head*: ``tr(Q^T f(K) Q)`` by block Gauss quadrature: block Lanczos from ``Q`` for
     ``head_blocks`` blocks, ``T = V^T K V = U diag(theta) U^T``, head
     ``= sum_j f(theta_j) ||U[:k, j]||^2`` (exact when ``range Q`` is invariant).
  3. *Tail*: ``tr(P f(K) P) = (N - r) E[u^T f(K) u]`` for ``u`` uniform on the unit sphere
     of ``range P`` (Hutchinson; ``r <= k`` is the numerical rank of ``Q``), estimated with ``num_probes`` probes, each quadratic form
     by the ``lanczos_steps``-node Gauss rule of a Lanczos run on ``K`` from ``u`` (full
     reorthogonalisation). The probe average is corrected with two control variates whose
     means are known exactly, ``u^T K u`` and ``u^T K^2 u`` (``tr(PKP) = tr K - tr(Q^T K Q)``,
     ``tr(P K^2 P) = ||K||_F^2 - ||KQ||_F^2``), by least-squares regression over the probes.

  Deflation removes the few large eigenvalues (for a diffusion kernel, 1 and the cluster
  eigenvalues near it) that dominate a plain Hutchinson estimate, and the control
  variates remove most of the rest (about 3-10x smaller error in our checks). Cost:
  ``subspace_iters + 1 + head_blocks`` products ``K @ (N x k)``, one ``(N x k) @ (k x N)``
  (the control variate's mean), ``lanczos_steps`` products ``K @ (N x num_probes)``, and
  an eigendecomposition of size ``k * head_blocks``; no ``N x N``
  one. The ``2.2e-16`` the authors add to each probability is omitted. Eigenvalue signs
  are ignored (``|x|``), as in the exact path. Falls back to the exact eigenvalues when
  ``N <= deflation_rank * head_blocks + lanczos_steps``.

  Numerics: the entropy does not depend on the scale of ``K``; a ``K`` whose largest entry
  lies outside ``[2^-24, 2^24]`` is first multiplied by a power of two (exact) that brings it
  near 1, and where ``lambda_max^t`` would over- or underflow the powers are taken of
  ``x / lambda_max`` (the same ``p``), so any scale and any ``t`` compute. The estimate of
  ``S = tr K^t`` is kept at or above ``theta_max^t`` (the largest quadrature node: a lower
  bound of ``S``), which it falls below only when the head misses the top eigenvalue (few
  probes, a small deflation rank, a large ``t``). float16 / bfloat16 ``K`` is computed in
  float32. A NaN or infinity in ``K`` gives NaN (traceable: no eager check).

  Error against the exact entropy with the defaults (measured, not a bound): on diffusion
  kernels of high-dimensional Gaussian-mixture and low-rank-plus-noise features and of
  low-dimensional manifolds (uniform 2-D/3-D, swiss roll, 16-D Gaussian), N = 300, 1,000,
  3,000, t = 1, 2, 4, 8 keys each, the largest absolute error was 0.0095 bits (standard
  deviation across keys <= 0.0044 bits); at N = 10,000, D = 512 it was 0.0033 bits
  (``benchmarks/dse_speed.py``). The stated bound, checked by the tests, is 0.05 bits. The
  error is random in ``key``: its standard deviation falls as ``1/sqrt(num_probes)``; a
  small bias (<= 0.005 bits at t = 1) falls with ``lanczos_steps``.

  Args:
    K: ``(N, N)`` symmetric positive semi-definite, non-zero matrix (e.g. :func:`diffusion_kernel`), N >= 2.
    t: power of the eigenvalues, an integer in ``[1, 2^31 - 1]``.
    key: ``jax.random`` key for the subspace iteration's start block and the probes.
    num_probes: probe vectors for the tail trace (>= 1).
    lanczos_steps: Lanczos steps, i.e. quadrature nodes, per probe (>= 2).
    deflation_rank: number ``k`` of leading directions handled by the head (>= 1).
    subspace_iters: subspace-iteration rounds that find them (>= 0).
    head_blocks: block Lanczos steps of the head quadrature (>= 1).

  Returns:
    A scalar: the estimated entropy in bits.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxdyn.dynamics import diffusion_kernel, spectral_entropy
    >>> K = diffusion_kernel(jax.random.normal(jax.random.key(0), (400, 8)), sigma=2.0)
    >>> est = spectral_entropy_slq(K, key=jax.random.key(1))
    >>> bool(abs(est - spectral_entropy(jnp.linalg.eigvalsh(K))) < 0.05)
    True

  References:
    Ubaru, Chen & Saad, "Fast Estimation of tr(f(A)) via Stochastic Lanczos Quadrature",
    SIAM J. Matrix Anal. Appl. 38(4), 2017; Meyer, Musco, Musco & Woodruff, "Hutch++",
    https://arxiv.org/abs/2010.09649 (deflation). The entropy is DSE from Liao, Liu et al.,
    https://arxiv.org/abs/2312.04823, https://github.com/ChenLiu-1996/DiffusionSpectralEntropy.
  """
  t = _validation.check_int("t", t, lower=1, upper=MAX_T)
  options = check_slq_options(num_probes, lanczos_steps, deflation_rank, subspace_iters, head_blocks)
  _validation.check_key("key", key, why=" for the probes and the subspace iteration")
  shape = np.shape(K)
  if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 2:
    raise ValueError(f"K: must be a square (N, N) matrix with N >= 2, got shape {shape}")
  K = normalise_scale(_validation.check_floating("K", K))
  if not slq_is_cheaper(K.shape[0], options):
    lam = jnp.linalg.eigvalsh(K)
    xt, xlx = _powers_and_xlogx(lam / power_reference(jnp.max(jnp.abs(lam)), t), t)
    s = jnp.sum(xt)
    return jnp.log2(s) - jnp.sum(xlx) / s
  return _slq_entropy_from_kernel(K, key, jnp.asarray(t, jnp.int32), **options)
