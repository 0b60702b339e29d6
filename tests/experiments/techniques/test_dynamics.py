"""The ``dse`` callback and the synthetic-manifold runner agree with direct jaxdyn.dynamics calls."""

import json

import jax
import ml_collections
import numpy as np
import pytest

from configs import default
from experiments.techniques import dynamics
from experiments.techniques.dynamics import synthetic
from experiments.train import train_and_evaluate
from jaxdyn.dynamics import (
    binned_shannon_entropy,
    diffusion_spectral_entropy,
    diffusion_spectral_mutual_information,
    reference_classes,
)


def _config(**cb):
  c = default.get_config()
  c.dataset = "synthetic"
  c.model = "mlp"
  c.model_kwargs = {"hidden": (16,), "dropout_rate": 0.0}
  c.batch_size = 32
  c.num_train_steps = 6
  c.log_every_steps = c.eval_every_steps = c.checkpoint_every_steps = 3
  c.callbacks = ({"name": "dse", "every_steps": 3, "probe_size": 40, "probe_seed": 7, "sigma": 0.5,
                  "num_clusters": 2, "num_repeats": 2, **cb},)
  return c


def test_callback_logs_what_the_library_computes(tmp_path, monkeypatch):
  seen = {}  # step -> the probe features the callback measured
  orig = dynamics.DSECallback.features

  def spy(self):
    z = orig(self)
    seen[int(self.ctx.state.step)] = z
    return z

  monkeypatch.setattr(dynamics.DSECallback, "features", spy)
  res = train_and_evaluate(_config(), str(tmp_path))
  rows = [r for r in res["history"] if "dse" in r]
  assert [r["step"] for r in rows] == [0, 3, 6] == sorted(seen)

  from jaxdyn.data import load_dataset
  ev = load_dataset("synthetic").eval
  idx = np.sort(np.random.default_rng(7).choice(len(ev), 40, replace=False))
  x, y = ev.x[idx], ev.y[idx]
  x_classes = reference_classes(x, kind="vector", num_clusters=2, seed=7)
  key = jax.random.key(7)
  for r in rows:
    z = seen[r["step"]]
    # RMS normalisation by hand: centred, mean squared norm 1.
    zn = z - z.mean(0)
    zn = zn / np.sqrt(np.mean(np.sum(zn.astype(np.float64) ** 2, 1)))
    np.testing.assert_allclose(np.mean(np.sum(zn ** 2, 1)), 1.0, rtol=1e-5)
    dse = float(diffusion_spectral_entropy(zn, sigma=0.5))
    zy = diffusion_spectral_mutual_information(zn, y, sigma=0.5, num_repeats=2,
                                               key=jax.random.fold_in(key, 1))
    zx = diffusion_spectral_mutual_information(zn, x_classes, sigma=0.5, num_repeats=2,
                                               key=jax.random.fold_in(key, 2))
    np.testing.assert_allclose([r["dse"], r["dsmi_zy"], r["dsmi_zx"]], [dse, zy, zx], rtol=1e-4, atol=1e-4)
    assert 0.0 <= r["dse"] <= np.log2(40) + 1e-6
  assert res["final_dse"] == pytest.approx(rows[-1]["dse"])
  assert res["final_dsmi_zy_first"] == pytest.approx(rows[0]["dsmi_zy"])
  assert res["final_dse_change"] == pytest.approx(rows[-1]["dse"] - rows[0]["dse"])
  assert (tmp_path / dynamics.DYNAMICS_PNG).stat().st_size > 0


def test_rms_normalisation_makes_dse_scale_free():
  z = np.random.default_rng(0).standard_normal((80, 5)).astype(np.float32)
  a = diffusion_spectral_entropy(dynamics.normalize_features(z), sigma=0.5)
  b = diffusion_spectral_entropy(dynamics.normalize_features(37.0 * z + 3.0), sigma=0.5)
  assert float(a) == pytest.approx(float(b), abs=1e-4)
  # Without normalisation the same scaling changes DSE: the default is not a no-op.
  raw = diffusion_spectral_entropy(z, sigma=0.5)
  raw37 = diffusion_spectral_entropy(0.05 * z, sigma=0.5)
  assert abs(float(raw) - float(raw37)) > 1.0
  with pytest.raises(ValueError, match="normalize"):
    dynamics.normalize_features(z, "l2")


def test_synthetic_runner_matches_direct_calls(tmp_path):
  s = ml_collections.ConfigDict({
      "num_points": 120, "ambient_dim": 6, "intrinsic_dims": (1, 3), "intrinsic_dim": 3,
      "noise_stds": (0.0, 0.2), "metric_noise_std": 0.2, "sigma": 1.0, "t": 1,
      "num_bins_per_dim": 2, "estimator": "dse"})
  config = ml_collections.ConfigDict({"seed": 4, "synthetic": s})
  wd = tmp_path / "arm" / "seed4"
  res = synthetic.synthetic_runner(config, str(wd))
  z = synthetic.synthetic_manifold(4, num_points=120, intrinsic_dim=3, ambient_dim=6, noise_std=0.2)
  assert res["dse"] == pytest.approx(float(diffusion_spectral_entropy(z, sigma=1.0)), abs=1e-6)
  assert res["shannon"] == pytest.approx(binned_shannon_entropy(z, num_bins_per_dim=2), abs=1e-9)
  # The clean manifold: rank d, inside [-1, 1]^d rotated (norms <= sqrt(d)).
  clean = synthetic.synthetic_manifold(4, num_points=120, intrinsic_dim=3, ambient_dim=6, noise_std=0.0)
  assert np.linalg.matrix_rank(clean, tol=1e-4) == 3
  assert np.max(np.linalg.norm(clean, axis=1)) <= np.sqrt(3) + 1e-5
  v = {k: res[k] for k in res if k.startswith("dse_d")}
  expect = np.mean([abs(v[f"dse_d{d}_noise0.2"] - v[f"dse_d{d}_noise0"]) for d in (1, 3)]) / abs(
      v["dse_d3_noise0"] - v["dse_d1_noise0"])
  assert res["noise_to_signal"] == pytest.approx(expect)
  # Cached: results.json in the workdir, and the grid shared with another arm of the same seed.
  assert json.loads((wd / "results.json").read_text())["dse"] == res["dse"]
  other = ml_collections.ConfigDict(config.to_dict())
  other.synthetic.estimator = "shannon"
  res2 = synthetic.synthetic_runner(other, str(tmp_path / "arm2" / "seed4"))
  assert res2["dse_d1_noise0"] == res["dse_d1_noise0"] and res2["estimator"] == "shannon"
