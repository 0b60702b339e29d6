"""FreeZe's training-free pose core: Kabsch, RANSAC over 3D matches, symmetric-object disambiguation.

Caraffa et al., "FreeZe: Training-free zero-shot 6D pose estimation with geometric and vision foundation
models", ECCV 2024, https://arxiv.org/abs/2312.00947 (project page https://andreacaraffa.github.io/freeze).
FreeZe matches 3D point descriptors of an object model (``src``) and of the observed scene (``dst``),
estimates the rigid pose by RANSAC-based 3D registration, and resolves the ambiguity of geometrically
symmetric objects with a second, visual set of features. This module is that estimation step, jittable with
static shapes:

- `kabsch`: the weighted least-squares rigid transform (Kabsch / Umeyama without scale),

  .. math::  (R, t) = \\arg\\min_{R \\in SO(3),\\, t} \\sum_i w_i \\lVert R s_i + t - d_i \\rVert^2 .

  With :math:`\\bar s = \\sum_i w_i s_i / \\sum_i w_i` (and :math:`\\bar d` likewise), the weighted
  cross-covariance :math:`H = \\sum_i w_i (s_i - \\bar s)(d_i - \\bar d)^\\top = U \\Sigma V^\\top` gives
  :math:`R = V\\,\\mathrm{diag}(1, 1, \\delta)\\,U^\\top` with :math:`\\delta = \\mathrm{sign}\\det(V U^\\top)`
  (so :math:`\\det R = +1`: a reflection is never returned) and :math:`t = \\bar d - R \\bar s`. The
  minimum is :math:`\\sum_i w_i(\\lVert s_i - \\bar s\\rVert^2 + \\lVert d_i - \\bar d\\rVert^2)
  - 2(\\sigma_1 + \\sigma_2 + \\delta \\sigma_3)`.
- `ransac_pose`: RANSAC over minimal samples of ``sample_size`` correspondences (3 by default), all
  ``num_iterations`` hypotheses at once (``vmap``, static shapes). A hypothesis's score is its number of
  inliers, :math:`\\lVert R s_i + t - d_i \\rVert \\le \\tau`, ties going to the smaller sum of inlier
  residuals (then to the lower hypothesis index); the best one is refitted by `kabsch` on its inliers.
- `disambiguate_pose`: among candidate poses (the pose composed with the object's known symmetries,
  :math:`(R S_k, R u_k + t)` for a symmetry :math:`x \\mapsto S_k x + u_k`, or the top RANSAC
  hypotheses), the one with the most inliers on a second set of correspondences, ties going to the lower
  mean truncated residual :math:`\\frac1M \\sum_j \\min(\\lVert R s_j + t - d_j \\rVert, \\tau)`.

What of the paper this covers: the pose from matched 3D features (RANSAC + Kabsch) and the principle of
its symmetry handling (re-scoring symmetry-equivalent poses with features that are not geometric). What
it does not cover: the foundation-model features themselves (the geometric and visual descriptors and
their fusion into point descriptors), the segmentation and back-projection of the scene, descriptor
matching (correspondences are inputs here), any post-registration pose refinement, and the paper's exact
symmetry-scoring rule, which compares visual features of the posed model with the scene: here that score
is abstracted to inlier counts on a second set of correspondences. Nothing is trained; nothing is
downloaded.

Non-finite inputs propagate: a NaN or an infinity in the points (or the weights) makes the returned
rotation, translation and scores NaN. Degenerate point sets (fewer than three non-collinear points with
positive weight) have no unique rotation; the SVD then returns one of the minimisers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation

__all__ = ["PoseChoice", "RansacPose", "disambiguate_pose", "kabsch", "ransac_pose"]


class RansacPose(NamedTuple):
  """`ransac_pose`'s result: the pose, and the inliers of that pose.

  Attributes:
    rotation: ``(3, 3)``, ``det = +1``.
    translation: ``(3,)``.
    inliers: ``(N,)`` bool, ``||R src_i + t - dst_i|| <= inlier_threshold`` for the returned pose.
    num_inliers: int32 scalar, ``inliers.sum()``.
  """

  rotation: jax.Array
  translation: jax.Array
  inliers: jax.Array
  num_inliers: jax.Array


class PoseChoice(NamedTuple):
  """`disambiguate_pose`'s result.

  Attributes:
    index: int32 scalar, the chosen candidate.
    rotation: ``(3, 3)``, the chosen candidate's rotation.
    translation: ``(3,)``, its translation.
    num_inliers: ``(C,)`` int32, each candidate's inliers on the second set.
    mean_residual: ``(C,)``, each candidate's mean truncated residual on the second set.
  """

  index: jax.Array
  rotation: jax.Array
  translation: jax.Array
  num_inliers: jax.Array
  mean_residual: jax.Array


def _check_points(name, x):
  _validation.check_ndim(name, x, 2)
  if np.shape(x)[-1] != 3:
    raise ValueError(f"{name}: must have shape (N, 3) (3D points), got shape {np.shape(x)}")
  _validation.check_nonempty(name, x, what="points")
  return _validation.check_floating(name, x)


def _check_pair(src, dst, src_name="src", dst_name="dst"):
  src = _check_points(src_name, src)
  dst = _check_points(dst_name, dst)
  if src.shape != dst.shape:
    raise ValueError(f"{dst_name}: must have the shape of {src_name} (one match per point), got {dst.shape} and "
                     f"{src.shape}")
  dtype = jnp.result_type(src, dst)
  return src.astype(dtype), dst.astype(dtype)


def _kabsch(src, dst, w):
  """Weighted Kabsch of ``(N, 3)`` points with weights ``(N,)`` (no checks); 0 total weight gives NaN."""
  total = jnp.sum(w)
  p = w / total
  mu_s, mu_d = p @ src, p @ dst
  cs, cd = src - mu_s, dst - mu_d
  # Rescale before the SVD (R does not depend on the scale of H); 0 / 0 is kept at 0.
  scale = jnp.maximum(jnp.max(jnp.abs(cs)), jnp.max(jnp.abs(cd)))
  scale = jnp.maximum(scale, jnp.finfo(src.dtype).tiny)
  h = (cs / scale * p[:, None]).T @ (cd / scale)
  u, _, vt = jnp.linalg.svd(h)
  v = vt.T
  sign = jnp.where(jnp.linalg.det(v @ u.T) < 0, -1.0, 1.0).astype(src.dtype)
  r = (v * jnp.stack([jnp.ones_like(sign), jnp.ones_like(sign), sign])) @ u.T
  return r, mu_d - r @ mu_s


def _residuals(r, t, src, dst):
  return jnp.linalg.norm(src @ r.T + t - dst, axis=-1)


def _all_finite(*xs):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs]))


def kabsch(src: jax.Array, dst: jax.Array, weights: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """The (weighted) least-squares rigid transform ``dst ~ src @ R.T + t`` with ``det R = +1``.

  See the module docstring for the math (SVD of the weighted cross-covariance, the sign fix that
  excludes reflections). Jittable.

  Args:
    src: ``(N, 3)`` points (``N >= 1``; at least three non-collinear for a unique rotation).
    dst: ``(N, 3)`` corresponding points.
    weights: optional ``(N,)`` nonnegative weights with a positive sum (checked eagerly; under ``jit`` a
      negative weight or a zero sum gives NaN); None weighs every pair 1.

  Returns:
    ``(R, t)``: ``(3, 3)`` rotation and ``(3,)`` translation minimising ``sum_i w_i ||R src_i + t - dst_i||^2``.

  Example:
    >>> src = jnp.array([[0.0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3]])
    >>> rz = jnp.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 degrees about z
    >>> r, t = kabsch(src, src @ rz.T + jnp.array([1.0, 2, 3]))
    >>> bool(jnp.allclose(r, rz, atol=1e-5)), jnp.round(t, 4).tolist()
    (True, [1.0, 2.0, 3.0])
  """
  src, dst = _check_pair(src, dst)
  if weights is None:
    w = jnp.ones(src.shape[:1], src.dtype)
  else:
    w = _validation.check_floating("weights", weights)
    if w.shape != src.shape[:1]:
      raise ValueError(f"weights: must have shape {src.shape[:1]} (one per match), got {w.shape}")
    _validation.check_nonnegative("weights", w)
    if _validation.is_concrete(w) and not float(jnp.sum(w.astype(jnp.float32))) > 0:
      raise ValueError(f"weights: must have a positive sum, got {float(jnp.sum(w))}")
    w = w.astype(src.dtype)
  r, t = _kabsch(src, dst, w)
  ok = _all_finite(src, dst, w) & jnp.all(w >= 0) & (jnp.sum(w) > 0)
  return _validation.nan_unless(ok, r), _validation.nan_unless(ok, t)


def ransac_pose(key: jax.Array, src: jax.Array, dst: jax.Array, *, num_iterations: int, inlier_threshold: float,
                sample_size: int = 3) -> RansacPose:
  """RANSAC + Kabsch pose from 3D correspondences ``src_i -> dst_i`` with outliers (FreeZe's registration).

  ``num_iterations`` hypotheses, each `kabsch` on ``sample_size`` distinct correspondences drawn with
  ``key``, are fitted and scored at once (``vmap``: static shapes, jittable). The hypothesis with the most
  inliers (``||R src_i + t - dst_i|| <= inlier_threshold``; ties to the smaller sum of inlier residuals)
  is refitted by Kabsch on its inliers; the returned inlier mask and count are those of the refitted pose
  (when the best hypothesis has fewer than ``sample_size`` inliers, it is returned unrefitted).

  Args:
    key: a `jax.random` key.
    src: ``(N, 3)`` model points (``N >= sample_size``).
    dst: ``(N, 3)`` matched scene points.
    num_iterations: number of hypotheses (static; >= 1).
    inlier_threshold: the inlier distance ``tau`` (> 0), in the units of the points.
    sample_size: correspondences per hypothesis (static; ``3 <= sample_size <= N``).

  Returns:
    A `RansacPose` ``(rotation, translation, inliers, num_inliers)``.

  Example:
    >>> src = jax.random.normal(jax.random.key(0), (40, 3))
    >>> dst = (src + jnp.array([0.0, 0.0, 1.0])).at[:10].set(5.0)  # a shift, and 10 bad matches
    >>> out = ransac_pose(jax.random.key(1), src, dst, num_iterations=32, inlier_threshold=0.01)
    >>> int(out.num_inliers), jnp.round(out.translation, 4).tolist()
    (30, [0.0, 0.0, 1.0])
  """
  key = _validation.check_key("key", key)
  src, dst = _check_pair(src, dst)
  num_iterations = _validation.check_int("num_iterations", num_iterations, lower=1)
  tau = _validation.check_real("inlier_threshold", inlier_threshold, lower=0.0, lower_open=True)
  n = src.shape[0]
  sample_size = _validation.check_int("sample_size", sample_size, lower=3)
  if sample_size > n:
    raise ValueError(f"sample_size: must be <= the number of matches {n}, got {sample_size}")
  keys = jax.random.split(key, num_iterations)
  idx = jax.vmap(lambda k: jax.random.choice(k, n, (sample_size,), replace=False))(keys)
  ones = jnp.ones((sample_size,), src.dtype)
  rs, ts = jax.vmap(lambda i: _kabsch(src[i], dst[i], ones))(idx)
  res = jax.vmap(_residuals, in_axes=(0, 0, None, None))(rs, ts, src, dst)  # (iterations, N)
  inl = res <= tau
  counts = jnp.sum(inl, axis=1)
  spread = jnp.sum(jnp.where(inl, res, 0.0), axis=1)
  best = jnp.argmin(jnp.where(counts == jnp.max(counts), spread, jnp.inf))
  r_fit, t_fit = _kabsch(src, dst, inl[best].astype(src.dtype))
  refit = counts[best] >= sample_size
  r = jnp.where(refit, r_fit, rs[best])
  t = jnp.where(refit, t_fit, ts[best])
  ok = _all_finite(src, dst) & (jnp.asarray(tau) > 0)
  r, t = _validation.nan_unless(ok, r), _validation.nan_unless(ok, t)
  inliers = (_residuals(r, t, src, dst) <= tau) & ok
  return RansacPose(r, t, inliers, jnp.sum(inliers).astype(jnp.int32))


def disambiguate_pose(candidates_R: jax.Array, candidates_t: jax.Array, src2: jax.Array,  # noqa: N803
                      dst2: jax.Array, *, inlier_threshold: float) -> PoseChoice:
  """Picks, among candidate poses, the one a second set of correspondences supports best.

  For a geometrically symmetric object the first (geometric) matches support every symmetry-equivalent
  pose equally; a second set of matches from features that see what the geometry does not (FreeZe: visual
  features) breaks the tie. Each candidate ``(R_k, t_k)`` is scored on ``src2 -> dst2`` by its inlier
  count (``||R_k src2_j + t_k - dst2_j|| <= inlier_threshold``); ties go to the lower mean truncated
  residual ``mean_j min(||R_k src2_j + t_k - dst2_j||, inlier_threshold)``, then to the lower index.
  Jittable.

  Args:
    candidates_R: ``(C, 3, 3)`` candidate rotations (``C >= 1``), e.g. ``R @ S_k`` for the object's
      symmetry rotations ``S_k``.
    candidates_t: ``(C, 3)`` candidate translations (``R @ u_k + t`` for symmetries with an offset ``u_k``).
    src2: ``(M, 3)`` model points of the second set (``M >= 1``).
    dst2: ``(M, 3)`` their matched scene points.
    inlier_threshold: the inlier distance (> 0).

  Returns:
    A `PoseChoice` ``(index, rotation, translation, num_inliers, mean_residual)``.

  Example:
    >>> flip = jnp.diag(jnp.array([-1.0, -1.0, 1.0]))  # 180 degrees about z: a symmetry of a box
    >>> rs, ts = jnp.stack([flip, jnp.eye(3)]), jnp.zeros((2, 3))
    >>> src2 = jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])  # texture points, dst2 = src2 (identity pose)
    >>> out = disambiguate_pose(rs, ts, src2, src2, inlier_threshold=0.1)
    >>> int(out.index), out.num_inliers.tolist()
    (1, [0, 2])
  """
  rs = _validation.check_floating("candidates_R", candidates_R)
  if rs.ndim != 3 or rs.shape[1:] != (3, 3):
    raise ValueError(f"candidates_R: must have shape (C, 3, 3), got shape {rs.shape}")
  _validation.check_nonempty("candidates_R", rs, what="candidates")
  ts = _validation.check_floating("candidates_t", candidates_t)
  if ts.shape != rs.shape[:1] + (3,):
    raise ValueError(f"candidates_t: must have shape {rs.shape[:1] + (3,)} (one per rotation), got shape {ts.shape}")
  src2, dst2 = _check_pair(src2, dst2, "src2", "dst2")
  tau = _validation.check_real("inlier_threshold", inlier_threshold, lower=0.0, lower_open=True)
  dtype = jnp.result_type(rs, ts, src2)
  rs, ts, src2, dst2 = (x.astype(dtype) for x in (rs, ts, src2, dst2))
  res = jax.vmap(_residuals, in_axes=(0, 0, None, None))(rs, ts, src2, dst2)  # (C, M)
  counts = jnp.sum(res <= tau, axis=1).astype(jnp.int32)
  mean_res = jnp.mean(jnp.minimum(res, tau), axis=1)
  ok = _all_finite(rs, ts, src2, dst2) & (jnp.asarray(tau) > 0)
  mean_res = _validation.nan_unless(ok, mean_res)
  best = jnp.argmin(jnp.where(counts == jnp.max(counts), mean_res, jnp.inf)).astype(jnp.int32)
  best = jnp.where(ok, best, 0)
  return PoseChoice(best, _validation.nan_unless(ok, rs[best]), _validation.nan_unless(ok, ts[best]), counts,
                    mean_res)
