"""Crafted shifts: k-fold over families, per-image determinism, the validation set, Sobel, thinning, edge maps."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.multimodal import (
    CRAFTED_FAMILIES,
    CRAFTED_FAMILY_OPERATIONS,
    crafted_augment,
    crafted_edge_map,
    crafted_folds,
    crafted_sobel_magnitude,
    crafted_thin_edges,
    crafted_validation_set,
)
from jaxdyn.multimodal import _crafted_shifts as cs

FAST = ("contrast", "convolutional")  # cheap to compile; the per-image key plumbing is the same for every family


def _images(n=4, h=10, w=10, c=1, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, h, w, c)).astype(np.float32)


# --- k-fold over augmentation families -------------------------------------------------------------------------

@pytest.mark.parametrize("k", range(2, len(CRAFTED_FAMILIES) + 1))
def test_folds_are_disjoint_in_family_and_cover_every_family(k):
  folds = crafted_folds(k)
  assert len(folds) == k
  for train, val in folds:
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(CRAFTED_FAMILIES)
    assert val  # every fold validates on something
  vals = [set(v) for _, v in folds]
  for a, b in itertools.combinations(vals, 2):
    assert not a & b  # each family is validated on exactly once
  assert set().union(*vals) == set(CRAFTED_FAMILIES)


def test_two_folds_are_the_authors_split():
  first = ("arithmetic", "artistic", "blur", "color", "contrast")
  second = ("convolutional", "edges", "geometric", "segmentation", "weather")
  assert crafted_folds(2) == ((second, first), (first, second))
  assert crafted_folds(3, ("a_" and "blur", "color", "edges")) == (
      (("color", "edges"), ("blur",)), (("blur", "edges"), ("color",)), (("blur", "color"), ("edges",)))


def test_every_family_has_operations():
  assert set(CRAFTED_FAMILY_OPERATIONS) == set(CRAFTED_FAMILIES) and len(CRAFTED_FAMILIES) == 10
  table = cs._operations((10, 10, 1))
  for fam, names in CRAFTED_FAMILY_OPERATIONS.items():
    assert len(table[fam]) == len(names) >= 1


# --- determinism under each image's key --------------------------------------------------------------------------

def test_each_image_is_deterministic_under_its_key():
  x = _images(3)
  keys = jax.random.split(jax.random.key(7), 3)
  out = np.asarray(crafted_augment(x, keys, FAST))
  np.testing.assert_array_equal(out, np.asarray(crafted_augment(x, keys, FAST)))  # same call, same images
  # image i depends on (image i, key i) only: another batch order and composition gives the same rows
  order = [2, 0, 1]
  x2 = x[order].copy()
  x2[2] = 1.0 - x2[2]  # another image beside them changes nothing for the others
  sub = np.asarray(crafted_augment(x2, jnp.stack([keys[i] for i in order]), FAST))
  np.testing.assert_allclose(sub[:2], out[[2, 0]], rtol=1e-6, atol=1e-6)
  # raw uint32 keys are the same keys
  np.testing.assert_array_equal(np.asarray(crafted_augment(x, jax.random.key_data(keys), FAST)), out)
  other = np.asarray(crafted_augment(x, jax.random.split(jax.random.key(8), 3), FAST))
  assert not np.allclose(other, out)  # another key, another augmentation
  assert out.min() >= 0.0 and out.max() <= 1.0 and not np.allclose(out, x)


def test_validation_set_copies_each_family_independently():
  x, y, key = _images(3), np.array([4, 1, 7]), jax.random.key(3)
  xa, ya, fa = (np.asarray(a) for a in crafted_validation_set(x, y, key, FAST))
  assert xa.shape == (6, 10, 10, 1)
  np.testing.assert_array_equal(ya, [4, 1, 7, 4, 1, 7])
  np.testing.assert_array_equal(fa, [0, 0, 0, 1, 1, 1])
  alone, _, _ = crafted_validation_set(x, y, key, ("convolutional",))
  np.testing.assert_array_equal(np.asarray(alone), xa[3:])  # a family's copy ignores the other families listed
  # image i of family f is crafted_augment under fold_in(fold_in(key, index of f), i)
  fk = jax.random.fold_in(key, CRAFTED_FAMILIES.index("contrast"))
  keys = jnp.stack([jax.random.fold_in(fk, i) for i in range(3)])
  np.testing.assert_array_equal(np.asarray(crafted_augment(x, keys, ("contrast",))), xa[:3])


def test_operations_follow_their_formulas():
  """Three of imgaug's operations on a constant image, checked against the code's parameter ranges."""
  table = dict(zip(CRAFTED_FAMILY_OPERATIONS["contrast"], cs._operations((6, 6, 1))["contrast"]))
  x = jnp.full((6, 6, 1), 0.25)
  for seed in range(20):
    g = np.asarray(table["gamma"](jax.random.key(seed), x))[0, 0, 0]
    gamma = np.log(g) / np.log(0.25)
    assert 0.1 - 1e-5 <= gamma <= 0.3 + 1e-5 or 1.8 - 1e-5 <= gamma <= 2.0 + 1e-5
    lin = np.asarray(table["linear"](jax.random.key(seed), x))[0, 0, 0]
    a = (lin - 0.5) / (0.25 - 0.5)
    assert 0.1 - 1e-5 <= a <= 0.3 + 1e-5 or 1.8 - 1e-5 <= a <= 2.0 + 1e-5
  conv = dict(zip(CRAFTED_FAMILY_OPERATIONS["convolutional"], cs._operations((6, 6, 1))["convolutional"]))
  np.testing.assert_allclose(np.asarray(conv["laplacian"](jax.random.key(0), x)), 0.0, atol=1e-6)  # flat: 0


def test_nan_image_gives_nan_only_there_under_jit():
  x = _images(3).copy()
  x[1, 3, 3, 0] = np.nan
  keys = jax.random.split(jax.random.key(0), 3)
  out = np.asarray(jax.jit(lambda a, k: crafted_augment(a, k, FAST))(x, keys))
  assert np.isfinite(out[[0, 2]]).all() and np.isnan(out[1]).all()


# --- Sobel, thinning, edge maps ------------------------------------------------------------------------------------

def _np_sobel(gray):
  """scipy.ndimage.sobel's magnitude in plain NumPy: mirrored border, d = (-1, 0, 1), s = (1, 2, 1)."""
  p = np.pad(gray.astype(np.float64), 1, mode="symmetric")
  h, w = gray.shape
  gx, gy = np.zeros((h, w)), np.zeros((h, w))
  d, s = [-1, 0, 1], [1, 2, 1]
  for i in range(h):
    for j in range(w):
      win = p[i:i + 3, j:j + 3]
      gx[i, j] = sum(s[a] * d[b] * win[a, b] for a in range(3) for b in range(3))
      gy[i, j] = sum(d[a] * s[b] * win[a, b] for a in range(3) for b in range(3))
  return np.hypot(gx, gy)


def test_sobel_magnitude_matches_numpy():
  x = _images(2, 7, 9)
  ref = np.stack([_np_sobel(im[..., 0]) for im in x])
  np.testing.assert_allclose(np.asarray(crafted_sobel_magnitude(x))[..., 0], ref, rtol=1e-5, atol=1e-5)
  rgb = _images(1, 5, 6, 3, seed=1)
  gray = rgb[0] @ np.array([0.2989, 0.5870, 0.1140])
  np.testing.assert_allclose(np.asarray(crafted_sobel_magnitude(rgb))[0, ..., 0], _np_sobel(gray), rtol=1e-5,
                             atol=1e-5)


def test_thinning_hand_worked():
  # a ridge 3 pixels wide across a gradient along x (rows 0-2) keeps only its crest (column 2)
  m = np.array([[[1.0, 2.0, 5.0, 2.0, 1.0]] * 3], np.float32)
  out = np.asarray(crafted_thin_edges(m, np.ones_like(m), np.zeros_like(m)))
  np.testing.assert_array_equal(out, [[[0, 0, 5, 0, 0]] * 3])
  # the same magnitudes with the gradient along y: compared up / down, where they are equal: all kept
  out = np.asarray(crafted_thin_edges(m, np.zeros_like(m), np.ones_like(m)))
  np.testing.assert_array_equal(out, m)
  # a diagonal gradient (+x, +y) compares (r-1, c-1) and (r+1, c+1): on the diagonal 1, 4, 5 only the 5 (its
  # (r+1, c+1) outside the image, 0) is kept; the 1 and the 4 each have a larger neighbour down-right
  m = np.array([[[1.0, 0, 0], [0, 4, 0], [0, 0, 5]]], np.float32)
  out = np.asarray(crafted_thin_edges(m, np.ones_like(m), np.ones_like(m)))
  np.testing.assert_array_equal(out, [[[0, 0, 0], [0, 0, 0], [0, 0, 5]]])
  # with the gradient along the anti-diagonal (-x, +y) the neighbours are (r-1, c+1), (r+1, c-1): all 0, all kept
  out = np.asarray(crafted_thin_edges(m, -np.ones_like(m), np.ones_like(m)))
  np.testing.assert_array_equal(out, m)


def test_edge_map_of_a_square_is_its_thin_outline():
  x = np.zeros((1, 12, 12, 1), np.float32)
  x[:, 3:9, 3:9] = 1.0
  e = np.asarray(crafted_edge_map(x))[0, ..., 0]
  assert set(np.unique(e)) <= {0.0, 1.0}
  ring = np.zeros((12, 12))
  ring[3:9, 3:9] = 1
  ring[4:8, 4:8] = 0
  np.testing.assert_array_equal(e, ring)  # one pixel wide, closed: thinning and hysteresis together
  assert np.asarray(crafted_edge_map(np.full((1, 6, 6, 1), 0.5, np.float32))).sum() == 0  # flat: no edges


def test_edge_map_hysteresis_keeps_weak_edges_only_when_connected():
  # a strong step (0 -> 1) and a weak one (0 -> 0.3) meeting it; with a high factor only the strong one starts
  x = np.zeros((1, 10, 12, 1), np.float32)
  x[:, :, 6:] = 1.0
  x[:, 5:, 6:] = 0.3
  strong_only = np.asarray(crafted_edge_map(x, sigma=0.0, low=100.0, high=100.0))
  connected = np.asarray(crafted_edge_map(x, sigma=0.0, low=0.05, high=1.5))
  assert strong_only.sum() == 0  # nothing above 100 T
  assert connected.sum() > np.asarray(crafted_edge_map(x, sigma=0.0, low=1.5, high=1.5)).sum()


# --- bad inputs ---------------------------------------------------------------------------------------------------

def test_bad_inputs():
  x, keys = _images(2), jax.random.split(jax.random.key(0), 2)
  with pytest.raises(ValueError, match="images:"):
    crafted_augment(x[0], keys, FAST)
  with pytest.raises(ValueError, match="images:"):
    crafted_augment(np.zeros((2, 5, 5, 2), np.float32), keys, FAST)
  with pytest.raises(ValueError, match="images:"):
    crafted_augment(np.zeros((0, 5, 5, 1), np.float32), keys[:0], FAST)
  with pytest.raises(TypeError, match="images:"):
    crafted_augment(np.zeros((2, 5, 5, 1), np.int32), keys, FAST)
  with pytest.raises(ValueError, match="images:"):
    crafted_augment(np.full((2, 5, 5, 1), np.nan, np.float32), keys, FAST)
  with pytest.raises(ValueError, match="keys:"):
    crafted_augment(x, keys[:1], FAST)
  with pytest.raises(TypeError, match="keys:"):
    crafted_augment(x, np.zeros(2), FAST)
  for bad in ((), ("blur", "blur"), ("fog",), "blur"):
    with pytest.raises((ValueError, TypeError), match="families:"):
      crafted_augment(x, keys, bad)
  with pytest.raises(ValueError, match="k:"):
    crafted_folds(1)
  with pytest.raises(ValueError, match="k:"):
    crafted_folds(11)
  with pytest.raises(ValueError, match="k:"):
    crafted_folds(2.0)
  with pytest.raises(ValueError, match="labels:"):
    crafted_validation_set(x, np.zeros(3, np.int32), jax.random.key(0), FAST)
  with pytest.raises(ValueError, match="labels:"):
    crafted_validation_set(x, np.zeros(2, np.float32), jax.random.key(0), FAST)
  with pytest.raises((ValueError, TypeError), match="key:"):
    crafted_validation_set(x, np.zeros(2, np.int32), None, FAST)
  with pytest.raises(ValueError, match="high:"):
    crafted_edge_map(x, low=1.0, high=0.5)
  with pytest.raises(ValueError, match="sigma:"):
    crafted_edge_map(x, sigma=-1.0)
  m = np.ones((1, 3, 3), np.float32)
  with pytest.raises(ValueError, match="gx:"):
    crafted_thin_edges(m, m[:, :2], m)
  with pytest.raises(ValueError, match="magnitude:"):
    crafted_thin_edges(m[0], m[0], m[0])
