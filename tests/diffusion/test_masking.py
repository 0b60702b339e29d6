"""Deferred patch masking: the kept-patch draw, and `jaxdyn.models.DiT` with and without the patch-mixer."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import diffusion
from jaxdyn.models import DiT

ARCH = dict(image_size=8, patch_size=2, dim=16, depth=2, num_heads=2, mlp_ratio=2)


@pytest.mark.parametrize("t,r,k", [(16, 0.75, 4), (16, 0.0, 16), (16, 0.5, 8), (16, 0.7, 4), (10, 0.99, 1),
                                   (64, 0.75, 16), (1, 0.5, 1)])
def test_num_kept_patches(t, r, k):
  assert diffusion.num_kept_patches(t, r) == k


def test_keep_indices_are_sorted_distinct_and_ratio_zero_keeps_all():
  keep = np.asarray(diffusion.random_keep_indices(jax.random.key(0), 64, 16, 0.75))
  assert keep.shape == (64, 4) and keep.dtype == np.int32
  assert (np.diff(keep, axis=1) > 0).all() and keep.min() >= 0 and keep.max() < 16
  np.testing.assert_array_equal(diffusion.random_keep_indices(jax.random.key(3), 5, 16, 0.0),
                                np.tile(np.arange(16), (5, 1)))
  assert diffusion.random_keep_indices(jax.random.key(0), 0, 16, 0.5).shape == (0, 8)


def test_keep_indices_are_a_uniform_random_subset():
  t, k, n = 6, 2, 30000
  keep = np.asarray(diffusion.random_keep_indices(jax.random.key(7), n, t, 1 - k / t))
  assert keep.shape == (n, k)
  subsets = list(itertools.combinations(range(t), k))  # 15 subsets, each with probability 1/15
  index = {s: i for i, s in enumerate(subsets)}
  counts = np.bincount([index[tuple(r)] for r in keep], minlength=len(subsets))
  expected = n / len(subsets)
  chi2 = ((counts - expected) ** 2 / expected).sum()
  assert chi2 < 36.1, (chi2, counts)  # chi-square, 14 degrees of freedom: P(chi2 > 36.1) = 0.001
  # Each patch is kept with probability k / t, independently of the row.
  freq = np.bincount(keep.ravel(), minlength=t) / n
  np.testing.assert_allclose(freq, k / t, atol=4 * np.sqrt((k / t) * (1 - k / t) / n))
  # Different keys give different subsets.
  a = diffusion.random_keep_indices(jax.random.key(0), 8, 16, 0.75)
  b = diffusion.random_keep_indices(jax.random.key(1), 8, 16, 0.75)
  assert not np.array_equal(a, b)


def _model(mixer_depth, seed=0):
  """A DiT with every parameter perturbed (adaLN-Zero starts at F = 0, which would hide everything)."""
  m = DiT(1, 10, mixer_depth=mixer_depth, **ARCH, rngs=nnx.Rngs(seed))
  state = nnx.state(m, nnx.Param)
  leaves, tree = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
  nnx.update(m, jax.tree.unflatten(tree, [p + 0.2 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]))
  return m


def _inputs(b=4, seed=1):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return jax.random.normal(k1, (b, 8, 8, 1)), jax.random.normal(k2, (b,)) * 0.5, jnp.arange(b) % 10


@pytest.mark.parametrize("mixer_depth", [0, 2])
def test_mask_ratio_zero_is_exactly_the_plain_model(mixer_depth):
  m = _model(mixer_depth)
  x, t, y = _inputs()
  plain = m(x, t, y)
  out, keep = m.masked(x, t, y, mask_ratio=0.0, key=jax.random.key(5))
  np.testing.assert_array_equal(keep, np.tile(np.arange(16), (4, 1)))
  np.testing.assert_array_equal(out, plain)
  assert np.abs(np.asarray(plain)).min() > 0  # a real output, not the zero-initialised one
  jitted = nnx.jit(lambda m, x, t, y: m.masked(x, t, y, mask_ratio=0.0, key=jax.random.key(5))[0])
  np.testing.assert_allclose(jitted(m, x, t, y), plain, rtol=1e-5, atol=1e-6)


def _pixel_mask(keep, b):
  kept = np.zeros((b, 16), bool)
  kept[np.arange(b)[:, None], np.asarray(keep)] = True
  return np.repeat(np.repeat(kept.reshape(b, 4, 4), 2, 1), 2, 2)[..., None]


@pytest.mark.parametrize("mixer_depth", [0, 1])
def test_masked_patches_output_zero_and_the_mixer_sees_them(mixer_depth):
  m = _model(mixer_depth)
  x, t, y = _inputs()
  keep = diffusion.random_keep_indices(jax.random.key(2), 4, 16, 0.75)
  out = np.asarray(m(x, t, y, keep=keep))
  kept = _pixel_mask(keep, 4)
  assert (out[~kept] == 0).all() and (out[kept] != 0).all()
  # Perturb only masked patches of the input: without the mixer the kept outputs do not move (the backbone
  # never sees masked patches); with the mixer (deferred masking) they do, since the mixer mixed all patches.
  x2 = jnp.where(jnp.asarray(kept), x, x + 3.0)
  out2 = np.asarray(m(x2, t, y, keep=keep))
  if mixer_depth == 0:
    np.testing.assert_array_equal(out2, out)
  else:
    assert np.abs(out2[kept] - out[kept]).max() > 1e-3
  # The kept outputs differ from the plain model's (the backbone attends over the kept tokens only).
  assert np.abs(out[kept] - np.asarray(m(x, t, y))[kept]).max() > 1e-3


def test_backbone_on_kept_tokens_equals_the_model_on_the_kept_patches_in_any_order():
  # Without the mixer, running on a kept subset in permuted order gives the same per-patch outputs
  # (attention is permutation-equivariant and the positions come with the tokens).
  m = _model(0)
  x, t, y = _inputs()
  keep = diffusion.random_keep_indices(jax.random.key(4), 4, 16, 0.5)
  perm = keep[:, ::-1]
  np.testing.assert_allclose(m(x, t, y, keep=perm), m(x, t, y, keep=keep), atol=1e-5)


def test_training_gradient_ignores_masked_targets():
  m = _model(1)
  x, t, y = _inputs()
  keep = diffusion.random_keep_indices(jax.random.key(6), 4, 16, 0.75)
  sigma = jnp.exp(t)
  kept = jnp.asarray(_pixel_mask(keep, 4))

  def loss(m, clean):
    return diffusion.edm_loss(m(x, t, y, keep=keep), clean, sigma, keep=keep, patch_size=2)

  g1 = nnx.grad(loss)(m, x)
  g2 = nnx.grad(loss)(m, jnp.where(kept, x, -50.0))  # masked targets changed arbitrarily
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_array_equal(a, b)
  assert any(np.abs(np.asarray(a)).max() > 0 for a in jax.tree.leaves(g1))


def test_dit_checks_inputs_and_labels():
  m = DiT(1, 10, **ARCH, rngs=nnx.Rngs(0))
  x, t, y = _inputs()
  with pytest.raises(ValueError, match="class_labels: must lie in"):
    m(x, t, jnp.array([0, 1, 2, 10]))
  with pytest.raises(ValueError, match="keep: must lie in"):
    m(x, t, y, keep=jnp.full((4, 2), 16))
  with pytest.raises(ValueError, match="x: must be a batch of images"):
    m(jnp.ones((4, 4, 4, 1)), t, y)
  with pytest.raises(ValueError, match="noise_labels: must have shape"):
    m(x, t[:2], y)
  with pytest.raises(ValueError, match="patch_size: must divide"):
    DiT(1, 10, image_size=8, patch_size=3, rngs=nnx.Rngs(0))
  out = nnx.jit(lambda m, y: m(x, t, y))(_model(0), jnp.array([0, 1, 2, 10]))
  assert np.isnan(np.asarray(out)[3]).all() and np.isfinite(np.asarray(out)[:3]).all()
  assert m(x[:0], t[:0], y[:0]).shape == (0, 8, 8, 1)
