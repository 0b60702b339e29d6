"""MotionMaster's camera-motion disentanglement: affine background fit, Poisson (Laplace) fill, object remainder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import diffusion

H, W = 24, 20


def _blob_mask(seed=0):
  """An irregular moving-object region, away from the image border."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[:H, :W]
  r = 5 + 2 * np.sin(3 * np.arctan2(y - 11, x - 9)) + rng.uniform(-0.5, 0.5, (H, W))
  return jnp.asarray(np.hypot(y - 11, x - 9) < r)


def _grid():
  y, x = np.mgrid[:H, :W].astype(np.float64)
  return x, y


def _dense_solution(field, mask):
  """The discrete Laplace problem solved directly (float64): 5-point stencil on mask pixels, Neumann border."""
  field, mask = np.asarray(field, np.float64), np.asarray(mask)
  idx = -np.ones(mask.shape, int)
  idx[mask] = np.arange(mask.sum())
  n, c = int(mask.sum()), field.shape[-1]
  a, b = np.zeros((n, n)), np.zeros((n, c))
  for i, j in zip(*np.nonzero(mask)):
    k = idx[i, j]
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
      p, q = i + di, j + dj
      if 0 <= p < mask.shape[0] and 0 <= q < mask.shape[1]:
        a[k, k] += 1
        if mask[p, q]:
          a[k, idx[p, q]] -= 1
        else:
          b[k] += field[p, q]
  out = field.copy()
  out[mask] = np.linalg.solve(a, b)
  return out


def test_affine_evaluation_hand_worked():
  a = jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
  f = np.asarray(diffusion.affine_flow(a, 3, 4))
  assert f.shape == (3, 4, 2)
  np.testing.assert_allclose(f[2, 3], [1 * 3 + 2 * 2 + 3, -3 + 0.5 * 2])  # x = column 3, y = row 2


def test_affine_fit_recovers_known_parameters_despite_object_motion():
  a = jnp.array([[0.03, -0.02, 1.5], [0.015, 0.04, -0.7]])
  mask = _blob_mask()
  rng = np.random.default_rng(1)
  garbage = jnp.asarray(rng.normal(0, 5, (H, W, 2)), jnp.float32)  # arbitrary object motion inside the mask
  flow = jnp.where(mask[..., None], garbage, diffusion.affine_flow(a, H, W))
  fit = diffusion.fit_affine_flow(flow, mask)
  assert fit.shape == (2, 3)
  np.testing.assert_allclose(fit, a, atol=1e-5)
  np.testing.assert_allclose(jax.jit(diffusion.fit_affine_flow)(flow, mask), a, atol=1e-5)
  # The object motion moves the fit when it is not masked out.
  assert np.abs(np.asarray(diffusion.fit_affine_flow(flow, jnp.zeros_like(mask))) - a).max() > 1e-2


def test_affine_fit_is_the_least_squares_solution_on_noisy_background():
  mask = _blob_mask(2)
  rng = np.random.default_rng(3)
  flow = rng.normal(size=(H, W, 3)).astype(np.float32)
  x, y = _grid()
  keep = ~np.asarray(mask)
  design = np.stack([x[keep], y[keep], np.ones(keep.sum())], axis=1)
  expected, *_ = np.linalg.lstsq(design, flow[keep].astype(np.float64), rcond=None)
  np.testing.assert_allclose(diffusion.fit_affine_flow(flow, mask), expected.T, atol=1e-5)


def test_affine_fit_with_no_background_is_zero():
  flow = jnp.ones((4, 5, 2))
  np.testing.assert_array_equal(diffusion.fit_affine_flow(flow, jnp.ones((4, 5), bool)), np.zeros((2, 3)))


@pytest.mark.parametrize("kind", ["x2-y2", "xy", "affine"])
def test_poisson_fill_reproduces_a_harmonic_field(kind):
  x, y = _grid()
  x, y = (x - 9) / 10, (y - 11) / 10  # discrete Laplacian of x^2 - y^2 and xy is exactly 0
  exact = {"x2-y2": x**2 - y**2, "xy": x * y, "affine": 0.3 * x - 1.2 * y + 0.4}[kind][..., None]
  mask = _blob_mask()
  scrambled = np.where(np.asarray(mask)[..., None], 7.0, exact).astype(np.float32)
  filled, residuals = diffusion.harmonic_fill(scrambled, mask, return_residuals=True)
  np.testing.assert_allclose(filled, exact, atol=1e-5)
  assert residuals.shape == (501, 1) and float(residuals[-1, 0]) <= 1e-6


def test_poisson_fill_matches_the_direct_solve_and_leaves_the_outside_unchanged():
  mask = _blob_mask(4)
  field = np.random.default_rng(5).normal(size=(H, W, 3)).astype(np.float32)
  filled = np.asarray(diffusion.harmonic_fill(field, mask))
  outside = ~np.asarray(mask)
  np.testing.assert_array_equal(filled[outside], field[outside])  # bit for bit
  np.testing.assert_allclose(filled, _dense_solution(field, mask), atol=1e-5)
  np.testing.assert_allclose(jax.jit(diffusion.harmonic_fill)(field, mask), filled, atol=1e-6)


def test_poisson_fill_on_the_image_border_is_neumann():
  x, _ = _grid()
  exact = (0.5 * x)[..., None]  # constant along y: zero normal derivative on the top border
  mask = np.zeros((H, W), bool)
  mask[:6, 5:12] = True  # touches the top border
  filled = diffusion.harmonic_fill(np.where(mask[..., None], -3.0, exact).astype(np.float32), mask)
  np.testing.assert_allclose(filled, exact, atol=1e-5)


def test_conjugate_gradients_converge_with_decreasing_error():
  mask = _blob_mask(6)
  field = np.random.default_rng(7).normal(size=(H, W, 2)).astype(np.float32)
  exact = _dense_solution(field, mask)
  errors = [np.linalg.norm(np.asarray(diffusion.harmonic_fill(field, mask, num_iters=k, tol=0.0)) - exact)
            for k in (0, 2, 5, 10, 20, 40)]
  assert all(b < a for a, b in zip(errors, errors[1:])), errors  # CG's error norm decreases monotonically
  assert errors[-1] < 1e-4 * errors[0]
  _, res = diffusion.harmonic_fill(field, mask, num_iters=60, tol=0.0, return_residuals=True)
  res = np.asarray(res)
  np.testing.assert_array_equal(res[0], [1.0, 1.0])
  assert (res[-1] < 1e-5).all() and (res[30] < res[5]).all() and (res[5] < res[0]).all()


def test_zero_iterations_and_unreachable_regions():
  mask = _blob_mask()
  field = np.ones((H, W, 1), np.float32)
  filled = np.asarray(diffusion.harmonic_fill(field, mask, num_iters=0))
  np.testing.assert_array_equal(filled[np.asarray(mask)], 0.0)  # the start u = 0
  # A mask covering the whole image has no boundary data: filled with 0.
  np.testing.assert_array_equal(diffusion.harmonic_fill(field, np.ones((H, W), bool)), np.zeros((H, W, 1)))


def test_disentangle_recovers_camera_and_object_motion():
  cam_params = jnp.array([[0.05, 0.0, 1.0], [0.0, 0.05, -0.5]])  # a zoom and a pan
  camera = diffusion.affine_flow(cam_params, H, W)
  mask = _blob_mask(8)
  obj = jnp.where(mask[..., None], jnp.array([2.0, -1.0]), 0.0)  # the object translates
  got_camera, got_object = diffusion.disentangle_camera_motion(camera + obj, mask)
  np.testing.assert_allclose(got_camera, camera, atol=1e-5)
  np.testing.assert_allclose(got_object, obj, atol=1e-5)
  np.testing.assert_allclose(got_camera + got_object, camera + obj, atol=1e-6)


def test_attention_map_channels_are_filled_independently():
  mask = _blob_mask(9)
  field = np.random.default_rng(10).normal(size=(H, W, 16)).astype(np.float32)  # 4 x 4 attention maps
  together = np.asarray(diffusion.harmonic_fill(field, mask))
  alone = np.asarray(diffusion.harmonic_fill(field[..., 5:6], mask))
  np.testing.assert_allclose(together[..., 5:6], alone, atol=1e-6)


def test_non_finite_entries_poison_the_result():
  mask = _blob_mask()
  field = np.zeros((H, W, 2), np.float32)
  field[11, 9, 0] = np.nan  # inside the mask, where the values are otherwise not read
  assert np.isnan(np.asarray(diffusion.harmonic_fill(field, mask))).all()
  assert np.isnan(np.asarray(diffusion.fit_affine_flow(field, mask))).all()


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match="mask:"):
    diffusion.harmonic_fill(np.zeros((4, 5, 2)), np.zeros((4, 4), bool))
  with pytest.raises(TypeError, match="mask:"):
    diffusion.fit_affine_flow(np.zeros((4, 5, 2)), np.zeros((4, 5), np.float32))
  with pytest.raises(ValueError, match="flow:"):
    diffusion.disentangle_camera_motion(np.zeros((4, 5)), np.zeros((4, 5), bool))
  with pytest.raises(ValueError, match="num_iters:"):
    diffusion.harmonic_fill(np.zeros((4, 5, 2)), np.zeros((4, 5), bool), num_iters=2.0)
  with pytest.raises(ValueError, match="params:"):
    diffusion.affine_flow(np.zeros((2, 2)), 3, 3)
