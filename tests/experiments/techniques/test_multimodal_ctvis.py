"""The CTVIS claim runner's pieces (experiments/techniques/multimodal/ctvis.py) and one smoke run."""

import json
import pathlib

import ml_collections
import numpy as np

from configs import ctvis_association
from experiments.techniques.multimodal import ctvis


def _task(**kw):
  c = ctvis_association.get_config().ctvis
  c.update(**kw)
  return c


def test_association_accuracy_by_hand():
  # one video, 4 frames, 2 objects; object 1 hidden in frames 1-2
  present = np.array([[[True, True], [True, False], [True, False], [True, True]]])
  ids = np.array([[[0, 1], [0, -1], [2, -1], [2, 1]]])
  # scored: obj 0 at frames 1, 2, 3 (ok, switch, ok w.r.t. frame 2's id), obj 1 at frame 3 (back after 2 frames: ok)
  acc = ctvis.association_accuracy(ids, present)
  assert acc["num_scored"] == 4 and acc["num_reappear"] == 1
  np.testing.assert_allclose(acc["association_accuracy"], 3 / 4)
  np.testing.assert_allclose(acc["reappear_accuracy"], 1.0)
  np.testing.assert_allclose(acc["adjacent_accuracy"], 2 / 3)
  lost = ctvis.association_accuracy(np.array([[[0, 1], [0, -1], [0, -1], [0, -1]]]), present)
  np.testing.assert_allclose(lost["reappear_accuracy"], 0.0)  # no track id (-1) is never right
  np.testing.assert_allclose(lost["association_accuracy"], 3 / 4)  # object 0 keeps id 0 throughout


def test_make_videos_shapes_determinism_and_occlusion_rate():
  c = _task()
  mix = ctvis.renderer(0, c)
  np.testing.assert_allclose(mix @ mix.T, np.eye(40), atol=1e-5)  # a rotation
  a = ctvis.make_videos(np.random.default_rng(3), 400, c, mix)
  b = ctvis.make_videos(np.random.default_rng(3), 400, c, mix)
  assert a["x"].shape == (400, 12, 8, 40) and a["present"].shape == (400, 12, 8)
  np.testing.assert_array_equal(a["x"], b["x"])
  assert a["present"][:, 0].all()
  # the Markov chain's hidden share moves from 0 towards p_hide / (p_hide + p_return) = 0.364
  np.testing.assert_allclose(1 - a["present"][:, -1].mean(), 0.2 / 0.55, atol=0.03)
  np.testing.assert_allclose(1 - a["present"][:, 1].mean(), 0.2, atol=0.02)
  # the identity part is fixed per object: undoing the mix, frames differ only by the noise (std 0.8)
  ident = (a["x"] @ mix.T)[..., :16]
  np.testing.assert_allclose(np.std(ident[:, 1] - ident[:, 0]), 0.8 * np.sqrt(2), rtol=0.03)


def test_smoke_run(tmp_path):
  cfg = ctvis_association.smoke_config()
  res = ctvis_association.RUNNER(cfg, str(tmp_path))
  assert res["arm"] == "ctvis" and 0.0 <= res["association_accuracy"] <= 1.0
  assert np.isfinite([r["loss"] for r in res["log"]]).all()
  shared = json.loads(pathlib.Path(res["shared_results"]).read_text())
  assert set(shared["per_arm"]) == set(ctvis.ARMS)
  other = ml_collections.ConfigDict(cfg.to_dict())
  other.ctvis.arm = "reference"
  ref = ctvis.run(other, str(tmp_path))  # the seed's shared run is read back, not recomputed
  assert ref["arm"] == "reference"
  np.testing.assert_allclose(res["accuracy_minus_reference"],
                             res["association_accuracy"] - ref["association_accuracy"])
