"""DSMI: near zero for independent labels, near the label entropy for label-determined clusters."""

import math

import jax
import numpy as np
import pytest

from jaxdyn.dynamics import diffusion_spectral_mutual_information, reference_classes


def _tight_clusters(counts, d=3, gap=100.0, jitter=0.01, seed=0):
  rng = np.random.default_rng(seed)
  Z = np.concatenate([gap * i + jitter * rng.standard_normal((n, d)) for i, n in enumerate(counts)])
  labels = np.concatenate([np.full(n, i) for i, n in enumerate(counts)])
  return Z.astype(np.float32), labels


def test_label_determined_clusters_give_label_entropy():
  Z, labels = _tight_clusters((20, 20, 20, 20))
  mi = diffusion_spectral_mutual_information(Z, labels, sigma=1.0, key=jax.random.key(0))
  assert mi == pytest.approx(2.0, abs=0.05)  # H(Y) = log2 4


def test_independent_labels_near_zero():
  rng = np.random.default_rng(0)
  Z = rng.standard_normal((160, 4)).astype(np.float32)
  labels = rng.integers(0, 2, 160)
  labels[:80] = np.arange(80) % 2  # keep the classes roughly balanced
  mi = diffusion_spectral_mutual_information(Z, labels, sigma=1.5, key=jax.random.key(1))
  Z_sep, lab_sep = _tight_clusters((80, 80), d=4)
  informative = diffusion_spectral_mutual_information(Z_sep, lab_sep, sigma=1.5, key=jax.random.key(1))
  assert abs(mi) < 0.1, mi
  assert informative > 0.9


def test_deterministic_given_key():
  Z, labels = _tight_clusters((15, 25), jitter=1.0)
  a = diffusion_spectral_mutual_information(Z, labels, sigma=1.0, key=jax.random.key(5))
  b = diffusion_spectral_mutual_information(Z, labels, sigma=1.0, key=jax.random.key(5))
  assert a == b


def test_continuous_scalar_reference_is_binned():
  # Y = 0 or 1 plus small noise lands in the first and last of 10 bins: same as the labels.
  Z, labels = _tight_clusters((20, 20))
  Y = labels.astype(np.float64) + 0.01 * np.random.default_rng(1).standard_normal(40)
  np.testing.assert_array_equal(np.unique(reference_classes(Y)), [0, 9])
  mi = diffusion_spectral_mutual_information(Z, Y, sigma=1.0, key=jax.random.key(0))
  assert mi == pytest.approx(1.0, abs=0.05)


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
def test_continuous_vector_reference_is_spectrally_clustered():
  rng = np.random.default_rng(2)
  Z, labels = _tight_clusters((30, 30, 30))
  centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
  Y = centers[labels] + 0.3 * rng.standard_normal((90, 2))
  classes = reference_classes(Y, num_clusters=3, seed=0)
  # the clustering recovers the blobs up to a relabelling
  pairs = {(int(a), int(b)) for a, b in zip(classes, labels)}
  assert len(pairs) == 3 and len({a for a, _ in pairs}) == 3
  mi = diffusion_spectral_mutual_information(Z, Y, sigma=1.0, num_clusters=3, key=jax.random.key(0))
  assert mi == pytest.approx(math.log2(3), abs=0.05)


def test_reference_classes_binning_by_hand():
  np.testing.assert_array_equal(reference_classes(np.array([0.0, 0.05, 0.5, 0.999, 1.0])), [0, 0, 5, 9, 9])
  np.testing.assert_array_equal(reference_classes(np.array([2.0, 6.0, 4.0]), num_bins=2), [0, 1, 1])
  np.testing.assert_array_equal(reference_classes(np.full(4, 3.0)), [0, 0, 0, 0])
  np.testing.assert_array_equal(reference_classes(np.array([[3], [1], [3]])), [3, 1, 3])  # ints: discrete


def test_dsmi_validation():
  Z = np.zeros((10, 2), np.float32)
  with pytest.raises(ValueError, match=r"Y: must have N = 10 rows"):
    diffusion_spectral_mutual_information(Z, np.zeros(9, int), key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"key: a jax.random key is required"):
    diffusion_spectral_mutual_information(Z, np.zeros(10, int), key=None)
  with pytest.raises(ValueError, match=r"sigma"):
    diffusion_spectral_mutual_information(Z, np.zeros(10, int), sigma=-1.0, key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"t: must be an int in \[1, 2147483647\]"):
    diffusion_spectral_mutual_information(Z, np.zeros(10, int), t=0, key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"num_repeats: must be an int >= 1"):
    diffusion_spectral_mutual_information(Z, np.zeros(10, int), num_repeats=0, key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"Z: must have 2 dimensions"):
    diffusion_spectral_mutual_information(np.zeros(10), np.zeros(10, int), key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"kind: must be one of"):
    reference_classes(np.zeros(3), kind="ordinal")
  with pytest.raises(ValueError, match=r"num_bins: must be an int >= 1"):
    reference_classes(np.zeros(3), num_bins=0)


# --- input policy: non-finite inputs, magnitudes, NumPy scalars, options --------------------------


def test_nonfinite_point_raises_even_in_a_singleton_class():
  Z, labels = _tight_clusters((10, 10))
  labels = labels.copy()
  Z[0, 1], labels[0] = np.nan, 2  # alone in its class: it used to be skipped, giving a finite DSMI
  with pytest.raises(ValueError, match=r"Z: must be finite"):
    diffusion_spectral_mutual_information(Z, labels, sigma=1.0, key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"Y: must be finite"):
    diffusion_spectral_mutual_information(np.nan_to_num(Z), np.where(labels == 2, np.inf, 0.5), key=jax.random.key(0))


def test_reference_classes_nonfinite_raises_and_any_magnitude_bins():
  # An infinity used to become the class id -2**63.
  with pytest.raises(ValueError, match=r"Y: must be finite, found"):
    reference_classes(np.array([0.0, 1.0, np.inf, 2.0]))
  u = np.array([0.0, 0.05, 0.5, 0.999, 1.0])
  # max - min = 2e308 overflows float64 (it used to give class ids -2**63).
  np.testing.assert_array_equal(reference_classes((2 * u - 1) * 1e308), [0, 0, 5, 9, 9])
  np.testing.assert_array_equal(reference_classes(u.astype(np.float16)), [0, 0, 5, 9, 9])


def test_dsmi_numpy_scalars_and_options():
  Z, labels = _tight_clusters((12, 12), jitter=1.0)
  key = jax.random.key(2)
  expected = diffusion_spectral_mutual_information(Z, labels, sigma=1.0, t=2, num_repeats=2, key=key)
  got = diffusion_spectral_mutual_information(Z, labels, sigma=np.asarray(1.0), t=np.int64(2),
                                              num_repeats=np.asarray(2), key=key)
  assert got == expected  # a 0-d sigma used to be refused
  with pytest.raises(TypeError, match=r"slq_kwargs: unknown option"):
    diffusion_spectral_mutual_information(Z, labels, key=key, method="slq", num_probe=4)
  with pytest.raises(ValueError, match=r"num_probes: must be an int >= 1"):
    diffusion_spectral_mutual_information(Z, labels, key=key, method="slq", num_probes=0)
  with pytest.raises(ValueError, match=r"seed: must be an int in \[0, 4294967295\]"):
    reference_classes(np.zeros((4, 2)), kind="vector", num_clusters=2, seed=-1)
