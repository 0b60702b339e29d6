"""MotionMaster's one-shot camera-motion disentanglement on a motion field: background fit and Poisson fill.

Hu, Zhang, Yi, Wang, Huang, Weng, Wang, Ma, "MotionMaster: Training-free Camera Motion Transfer For Video
Generation", 2024, https://arxiv.org/abs/2404.15789.

A motion field ``f`` of shape ``(H, W, C)`` (an optical flow, ``C = 2``, or a video model's temporal attention
maps with their ``F x F`` entries flattened into ``C = F^2`` channels, as the paper reads them) is split with
a moving-object mask ``m`` (``True`` on the moving objects, e.g. from a segmentation model) into

- the camera motion ``c``: equal to ``f`` on the background (where only the camera moves) and, inside the
  mask, the solution of Laplace's equation ``Delta c = 0`` with ``c = f`` on the background as Dirichlet
  boundary values (the Poisson equation of the paper with a zero source: a harmonic interpolation), and
- the object motion ``o = f - c`` (zero on the background).

The Laplacian is the 5-point stencil on the pixel grid; a neighbour outside the image is left out of the
stencil (a zero-flux, Neumann condition on the image border). The masked linear system ``A u = b`` (one per
channel; ``A`` the stencil restricted to mask pixels, symmetric positive definite when every connected
part of the mask touches a background pixel) is solved by conjugate gradients, a fixed ``num_iters``
iterations under ``jit``, each iteration a no-op once the relative residual ``||b - A u|| / ||b||`` of that
channel is at most ``tol``. A mask part with no background neighbour has no boundary data; it is filled with 0.

`fit_affine_flow` fits a global parametric camera model instead: the 2-D affine flow (6 parameters for
``C = 2``), by least squares over the background pixels; `affine_flow` evaluates it.

Covered: the background / object split of one motion field given the mask, the Poisson (Laplace) fill of the
moving-object region, the object motion as the remainder, and a least-squares affine camera model.
Not covered: the video diffusion model, extracting temporal attention maps from it and injecting the camera
motion back, the segmentation model that gives the mask, the few-shot disentanglement (window-based
clustering of attention maps over several videos) and the combination of several camera motions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxdyn import _validation

__all__ = ["affine_flow", "fit_affine_flow", "harmonic_fill", "disentangle_camera_motion"]


def _check_field(field, mask, name="flow"):
  _validation.check_ndim(name, field, 3)
  _validation.check_nonempty(name, field, what="rows")
  f = _validation.check_floating(name, field)
  _validation.check_ndim("mask", mask, 2)
  if tuple(jnp.shape(mask)) != tuple(f.shape[:2]):
    raise ValueError(f"mask: must have the shape {tuple(f.shape[:2])} of {name}.shape[:2], got {jnp.shape(mask)}")
  dtype = getattr(mask, "dtype", None)
  if dtype is None or not jnp.issubdtype(dtype, jnp.bool_):
    raise TypeError(f"mask: must be a boolean array (True on the moving objects), got dtype {dtype}")
  return f, jnp.asarray(mask)


def _poison(field, out):
  """NaN everywhere unless every entry of ``field`` is finite (masked entries are otherwise not read)."""
  return _validation.nan_unless(jnp.isfinite(field).all(), out)


def affine_flow(params: jax.Array, height: int, width: int) -> jax.Array:
  """The affine field ``f_c(x, y) = A[c, 0] x + A[c, 1] y + A[c, 2]`` on an ``(height, width)`` pixel grid.

  ``x`` is the column index and ``y`` the row index (pixel units, origin at pixel ``(0, 0)``).

  Args:
    params: ``A``, shape ``(C, 3)``; for a flow (``C = 2``) the 6 affine-flow parameters
      ``u = a1 x + a2 y + a3``, ``v = a4 x + a5 y + a6``.
    height: ``H >= 1``.
    width: ``W >= 1``.

  Returns:
    The field, shape ``(H, W, C)``.

  Example:
    >>> import jax.numpy as jnp
    >>> affine_flow(jnp.array([[1.0, 0.0, 0.5], [0.0, 2.0, 0.0]]), 2, 3)[1, 2].tolist()
    [2.5, 2.0]
  """
  _validation.check_ndim("params", params, 2)
  if jnp.shape(params)[1] != 3:
    raise ValueError(f"params: must have shape (C, 3), got {jnp.shape(params)}")
  a = _validation.check_floating("params", params)
  h = _validation.check_int("height", height, lower=1)
  w = _validation.check_int("width", width, lower=1)
  y, x = jnp.meshgrid(jnp.arange(h, dtype=a.dtype), jnp.arange(w, dtype=a.dtype), indexing="ij")
  return x[..., None] * a[:, 0] + y[..., None] * a[:, 1] + a[:, 2]


def fit_affine_flow(flow: jax.Array, mask: jax.Array) -> jax.Array:
  """Least-squares affine camera model from the background pixels (``~mask``) of a motion field.

  Minimises ``sum_{p not in mask} ||f(p) - A [x_p, y_p, 1]||^2`` over ``A`` (``(C, 3)``, 6 parameters for a
  flow), on coordinates centred and scaled to [-1, 1] internally for conditioning. Jittable (an SVD least
  squares with zero weights on the mask). Fewer than 3 non-collinear background pixels leave ``A``
  underdetermined: the minimum-norm solution in the scaled coordinates is returned (zeros when no pixel is
  background). A non-finite entry anywhere in ``flow`` gives NaN parameters.

  Args:
    flow: the motion field ``f``, shape ``(H, W, C)``.
    mask: boolean ``(H, W)``, True on the moving objects (excluded from the fit).

  Returns:
    ``A``, shape ``(C, 3)``, as `affine_flow` reads it.

  Example:
    >>> import jax.numpy as jnp
    >>> a = jnp.array([[0.1, -0.2, 1.0], [0.3, 0.05, -2.0]])
    >>> mask = jnp.zeros((8, 8), bool).at[2:5, 3:6].set(True)
    >>> bool(jnp.allclose(fit_affine_flow(affine_flow(a, 8, 8), mask), a, atol=1e-5))
    True
  """
  f, m = _check_field(flow, mask)
  h, w, c = f.shape
  y, x = jnp.meshgrid(jnp.arange(h, dtype=f.dtype), jnp.arange(w, dtype=f.dtype), indexing="ij")
  cx, cy, s = (w - 1) / 2, (h - 1) / 2, max(h - 1, w - 1, 1) / 2
  design = jnp.stack([(x - cx) / s, (y - cy) / s, jnp.ones_like(x)], axis=-1).reshape(-1, 3)
  weight = (~m).reshape(-1, 1).astype(f.dtype)
  target = jnp.where(weight > 0, f.reshape(-1, c), 0.0)
  b, *_ = jnp.linalg.lstsq(design * weight, target * weight)  # (3, C) in scaled coordinates
  params = jnp.stack([b[0] / s, b[1] / s, b[2] - b[0] * cx / s - b[1] * cy / s], axis=-1)
  return _poison(f, params)


def _neighbour_sum(u):
  """Sum of the in-image 4-neighbours of each pixel of ``u`` (H, W, C); outside the image counts as 0."""
  p = jnp.pad(u, ((1, 1), (1, 1), (0, 0)))
  return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]


def _solve(f, m, num_iters, tol):
  h, w, _ = f.shape
  inside = m[..., None].astype(f.dtype)
  degree = _neighbour_sum(jnp.ones((h, w, 1), f.dtype))

  def apply(v):  # the 5-point Laplacian (deg u_p - sum of neighbours) on mask pixels, v zero off the mask
    return inside * (degree * v - _neighbour_sum(v))

  rhs = inside * _neighbour_sum((1.0 - inside) * f)
  axes = (0, 1)
  b_norm = jnp.sqrt(jnp.sum(rhs**2, axis=axes))
  tiny = jnp.finfo(f.dtype).tiny

  def step(carry, _):
    u, r, p, rr = carry
    done = jnp.sqrt(rr) <= tol * b_norm
    ap = apply(p)
    pap = jnp.sum(p * ap, axis=axes)
    alpha = jnp.where(done | (pap <= tiny), 0.0, rr / jnp.where(pap > tiny, pap, 1.0))
    u = u + alpha * p
    r = r - alpha * ap
    rr_new = jnp.sum(r**2, axis=axes)
    beta = jnp.where(done | (rr <= tiny), 0.0, rr_new / jnp.where(rr > tiny, rr, 1.0))
    p = jnp.where(done, p, r + beta * p)
    rr_new = jnp.where(done, rr, rr_new)
    return (u, r, p, rr_new), jnp.sqrt(rr_new) / jnp.where(b_norm > 0, b_norm, 1.0)

  u0 = jnp.zeros_like(f)
  rr0 = jnp.sum(rhs**2, axis=axes)
  (u, _, _, _), history = lax.scan(step, (u0, rhs, rhs, rr0), None, length=num_iters)
  first = jnp.where(b_norm > 0, 1.0, 0.0)[None]
  return jnp.where(m[..., None], u, f), jnp.concatenate([first, history], axis=0)


def _fill(field, mask, num_iters, tol, name):
  f, m = _check_field(field, mask, name=name)
  n = _validation.check_int("num_iters", num_iters, lower=0)
  t = _validation.check_rate("tol", tol)
  out, history = _solve(f, m, n, t)
  return _poison(f, out), history


def harmonic_fill(field: jax.Array, mask: jax.Array, num_iters: int = 500, tol: float = 1e-6,
                  return_residuals: bool = False):
  """Fills the masked pixels of ``field`` with the harmonic interpolation of the unmasked ones.

  Solves ``Delta u = 0`` (5-point stencil) on the mask pixels with ``u = field`` on the unmasked pixels as
  Dirichlet values (Neumann on the image border), per channel, by conjugate gradients from ``u = 0``:
  ``num_iters`` iterations, frozen once ``||b - A u|| <= tol ||b||``. Unmasked pixels are returned
  unchanged. Conjugate gradients reach the exact solution in at most (number of mask pixels) iterations in
  exact arithmetic and their error ``||u_k - u*||`` decreases monotonically; a mask of diameter ``d`` takes
  about ``d`` iterations per decade of residual, so the default of 500 suits masks up to ~100 pixels across.
  The entries of ``field`` inside the mask are not read, but a non-finite entry anywhere makes the result NaN.

  Args:
    field: shape ``(H, W, C)``.
    mask: boolean ``(H, W)``, True where the field is unknown (filled).
    num_iters: conjugate-gradient iterations, ``>= 0`` (a static count).
    tol: relative residual at which a channel stops, in [0, 1).
    return_residuals: also return the relative residual of each channel after each iteration.

  Returns:
    The filled field ``(H, W, C)``; with ``return_residuals``, also ``(num_iters + 1, C)`` relative residuals
    (row 0 is 1, or 0 for a channel with no boundary data).

  Example:
    >>> import jax.numpy as jnp
    >>> f = affine_flow(jnp.array([[0.5, -1.0, 2.0]]), 9, 9)  # an affine field is harmonic
    >>> mask = jnp.zeros((9, 9), bool).at[2:7, 3:6].set(True)
    >>> bool(jnp.allclose(harmonic_fill(f.at[3, 4].set(99.0), mask), f, atol=1e-4))
    True
  """
  out, history = _fill(field, mask, num_iters, tol, "field")
  return (out, history) if return_residuals else out


def disentangle_camera_motion(flow: jax.Array, mask: jax.Array, num_iters: int = 500,
                              tol: float = 1e-6) -> tuple[jax.Array, jax.Array]:
  """MotionMaster's one-shot split of a motion field into camera and object motion.

  ``camera = harmonic_fill(flow, mask)`` (the background motion, taken as pure camera motion, continued
  harmonically into the moving-object region) and ``object = flow - camera`` (zero on the background).

  Args:
    flow: the motion field, shape ``(H, W, C)``.
    mask: boolean ``(H, W)``, True on the moving objects.
    num_iters: conjugate-gradient iterations of `harmonic_fill`.
    tol: its relative-residual tolerance, in [0, 1).

  Returns:
    ``(camera, object)``, each ``(H, W, C)``, summing to ``flow``.

  Example:
    >>> import jax.numpy as jnp
    >>> cam = affine_flow(jnp.array([[0.1, 0.0, 1.0], [0.0, 0.1, 0.0]]), 8, 8)  # a zoom plus a pan
    >>> mask = jnp.zeros((8, 8), bool).at[3:5, 3:5].set(True)
    >>> camera, obj = disentangle_camera_motion(cam.at[3:5, 3:5, 0].add(2.0), mask)
    >>> bool(jnp.allclose(camera, cam, atol=1e-4)), round(float(obj[3, 3, 0]), 4), float(obj[0, 0, 0])
    (True, 2.0, 0.0)
  """
  camera, _ = _fill(flow, mask, num_iters, tol, "flow")
  return camera, _validation.check_floating("flow", flow) - camera
