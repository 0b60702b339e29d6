"""The crafted-shifts claim runner: selection and correlation, the held-out shifts, features, pools, a smoke run."""

import jax
import numpy as np
import pytest
import scipy.stats

from configs import crafted_shifts_digits as cfg
from experiments.techniques.multimodal import crafted_shifts as cs
from jaxdyn import multimodal as mm


def test_chosen_score_takes_the_best_and_averages_ties():
  assert cs.chosen_score([0.5, 0.9, 0.7], [0.1, 0.2, 0.3]) == pytest.approx(0.2)
  assert cs.chosen_score([0.9, 0.5, 0.9], [0.1, 0.2, 0.4]) == pytest.approx(0.25)  # a tie: the mean of the two


def test_rank_correlation_is_spearman():
  assert cs.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
  assert cs.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  # ranks (1, 2, 3, 4) against (2, 1, 4, 3): 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 4 / 60 = 0.6
  assert cs.rank_correlation([0.1, 0.2, 0.3, 0.4], [2.0, 1.0, 4.0, 3.0]) == pytest.approx(0.6)
  x, y = np.random.default_rng(0).normal(size=(2, 12))
  assert cs.rank_correlation(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic)


def test_thick_strokes_is_a_3x3_dilation():
  x = np.zeros((1, 5, 5, 1), np.float32)
  x[0, 2, 2, 0] = 0.7
  out = cs.shift(x, "thick_strokes", jax.random.key(0))
  want = np.zeros((5, 5))
  want[1:4, 1:4] = 0.7
  np.testing.assert_allclose(out[0, ..., 0], want)


def test_texture_shifts_are_per_image_draws_in_range():
  x = np.random.default_rng(1).uniform(size=(3, 8, 8, 1)).astype(np.float32)
  for name in ("grating_background", "striped_strokes"):
    out = cs.shift(x, name, jax.random.key(4))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out, cs.shift(x, name, jax.random.key(4)))
    assert not np.allclose(out, x)
  grating = cs.shift(x, "grating_background", jax.random.key(4))
  assert np.all(grating >= x)  # a background under the strokes: max(x, pattern)
  striped = cs.shift(x, "striped_strokes", jax.random.key(4))
  ratio = striped[x > 0.1] / x[x > 0.1]
  assert np.all(np.isclose(ratio, 0.25, atol=1e-5) | np.isclose(ratio, 1.0, atol=1e-5))  # stripes: 0.25 or 1
  with pytest.raises(ValueError, match="name:"):
    cs.shift(x, "snow", jax.random.key(0))


def test_features_add_the_edge_channel():
  x = np.random.default_rng(2).uniform(size=(2, 6, 6, 1)).astype(np.float32)
  np.testing.assert_array_equal(cs.features(x, "plain"), x.reshape(2, -1))
  sob = cs.features(x, "aug_sobel").reshape(2, 6, 6, 2)
  np.testing.assert_allclose(sob[..., 1], np.asarray(mm.crafted_sobel_magnitude(x))[..., 0] / 4, rtol=1e-6)
  edg = cs.features(x, "edges").reshape(2, 6, 6, 2)
  np.testing.assert_array_equal(edg[..., 1], np.asarray(mm.crafted_edge_map(x))[..., 0])


def test_training_pool_mixes_clean_and_augmented_images():
  x = np.random.default_rng(3).uniform(size=(200, 6, 6, 1)).astype(np.float32)
  y = np.arange(200) % 10
  px, py = cs.training_pool(x, y, ("contrast",), 2, jax.random.key(0))
  assert px.shape == (400, 6, 6, 1)
  np.testing.assert_array_equal(py, np.tile(y, 2))
  clean = np.all(px == np.tile(x, (2, 1, 1, 1)), axis=(1, 2, 3))
  assert 0.35 < clean.mean() < 0.65  # one family: clean or augmented with equal odds


def test_smoke_config_runs(tmp_path):
  res = cfg.RUNNER(cfg.smoke_config(), str(tmp_path))
  assert res["arm"] == "augmented" and len(res["models"]) == 4
  assert -1.0 <= res["rank_correlation"] <= 1.0
  assert all(0.0 <= m[k] <= 1.0 for m in res["models"] for k in ("source_val", "augmented_val", "shifted"))
  assert res["chosen_shifted_accuracy"] == pytest.approx(
      cs.chosen_score([m["augmented_val"] for m in res["models"]], [m["shifted"] for m in res["models"]]))
  claims = {c.name: c for c in cfg.get_claims()}
  assert set(claims) == {"crafted_shifts_correlation", "crafted_shifts_selection"}
