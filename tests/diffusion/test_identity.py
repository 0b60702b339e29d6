"""UniID's normalised rescaling of identity features (our reading): norms, directions, scale 0 and 1."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxdyn import diffusion

RNG = np.random.default_rng(0)
F_ID = RNG.normal(size=(3, 5, 8)).astype(np.float32) * np.float32(7.0)
F_TXT = RNG.normal(size=(3, 5, 8)).astype(np.float32) * np.float32(0.3)


def test_hand_worked():
  # ||(3, 4)|| = 5, ||(0, 10)|| = 10: 0.5 * 10 * (3, 4) / 5 = (3, 4)
  np.testing.assert_allclose(diffusion.normalized_rescale(np.array([[3.0, 4.0]]), np.array([[0.0, 10.0]]), 0.5),
                             [[3.0, 4.0]])
  np.testing.assert_allclose(diffusion.inject_identity(np.array([[0.0, 2.0]]), np.array([[5.0, 0.0]]), 1.5),
                             [[3.0, 2.0]])


@pytest.mark.parametrize("scale", [0.25, 1.0, 3.0])
def test_per_token_norms_and_directions(scale):
  out = np.asarray(diffusion.normalized_rescale(F_ID, F_TXT, scale))
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), scale * np.linalg.norm(F_TXT, axis=-1), rtol=1e-5)
  cos = np.sum(out * F_ID, -1) / (np.linalg.norm(out, axis=-1) * np.linalg.norm(F_ID, axis=-1))
  np.testing.assert_allclose(cos, 1.0, rtol=1e-6)


def test_per_example_norm_keeps_the_relative_token_norms():
  out = np.asarray(diffusion.normalized_rescale(F_ID, F_TXT, 2.0, per_token=False))
  np.testing.assert_allclose(np.linalg.norm(out.reshape(3, -1), axis=1),
                             2.0 * np.linalg.norm(F_TXT.reshape(3, -1), axis=1), rtol=1e-5)
  factor = out / F_ID  # one positive factor per example
  np.testing.assert_allclose(factor, np.broadcast_to(factor[:, :1, :1], factor.shape), rtol=1e-5)
  assert (factor > 0).all()


def test_scale_zero_is_the_base_model_and_scale_one_matches_magnitudes():
  np.testing.assert_array_equal(diffusion.inject_identity(F_TXT, F_ID, 0.0), F_TXT)
  np.testing.assert_array_equal(diffusion.normalized_rescale(F_ID, F_TXT, 0.0), np.zeros_like(F_ID))
  out = np.asarray(diffusion.inject_identity(F_TXT, F_ID, 1.0)) - F_TXT
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(F_TXT, axis=-1), rtol=1e-5)
  # The trained magnitude of the identity features no longer matters: only their direction.
  np.testing.assert_allclose(diffusion.inject_identity(F_TXT, 1e3 * F_ID, 1.0),
                             diffusion.inject_identity(F_TXT, F_ID, 1.0), rtol=1e-5, atol=1e-6)


def test_zero_identity_stays_zero_and_extreme_magnitudes_are_safe():
  f_id = F_ID.copy()
  f_id[1, 2] = 0.0
  out = np.asarray(diffusion.normalized_rescale(f_id, F_TXT, 1.0))
  np.testing.assert_array_equal(out[1, 2], 0.0)
  assert np.isfinite(out).all()
  tiny = np.asarray(diffusion.normalized_rescale(F_ID * np.float32(1e-30), F_TXT * np.float32(1e30), 1.0))
  np.testing.assert_allclose(tiny / 1e30, diffusion.normalized_rescale(F_ID, F_TXT, 1.0), rtol=1e-5)


def test_jit_two_dimensional_inputs_and_bad_inputs():
  f = jax.jit(diffusion.inject_identity, static_argnames="per_token")
  np.testing.assert_allclose(f(F_TXT[:, 0], F_ID[:, 0], 0.7), diffusion.inject_identity(F_TXT[:, 0], F_ID[:, 0], 0.7),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="reference:"):
    diffusion.normalized_rescale(F_ID, F_TXT[:, :4])
  with pytest.raises(ValueError, match="scale:"):
    diffusion.inject_identity(F_TXT, F_ID, -0.5)
  with pytest.raises(ValueError, match="identity:"):
    diffusion.normalized_rescale(F_ID[0, 0], F_TXT[0, 0])
