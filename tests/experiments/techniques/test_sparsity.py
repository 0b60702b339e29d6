"""The sparsity adapter: masks survive a crash and resume exactly; GraNet composes with msd,
rankmixup and a transform before it; the accounting callback's numbers."""

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from experiments.train import train_and_evaluate
from tests.experiments.helpers import Crash, crash, tiny

GRANET = {"name": "granet", "final_density": 0.2, "update_every": 4, "end_fraction": 0.8}


def _final_state(workdir):
  with ocp.CheckpointManager(workdir / "checkpoints") as m:
    tree = m.restore(m.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  return jax.tree.leaves(tree["params"]), jax.tree.leaves(tree["opt_state"])


def test_resume_restores_masks_exactly(tmp_path):
  cfg = lambda **kw: tiny(transforms=(GRANET,), **kw)  # noqa: E731  (mask updates at 4, 8, 12, 16)
  train_and_evaluate(cfg(), str(tmp_path / "full"))
  with pytest.raises(Crash):
    train_and_evaluate(cfg(callbacks=crash(step=13)), str(tmp_path / "resumed"))
  train_and_evaluate(cfg(), str(tmp_path / "resumed"))
  p1, o1 = _final_state(tmp_path / "full")
  p2, o2 = _final_state(tmp_path / "resumed")
  assert any(a.dtype == np.bool_ and a.ndim for a in o1)  # the masks are in the checkpoint
  for a, b in zip(p1 + o1, p2 + o2):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("pair", ["msd", "rankmixup", "clip_then_granet"])
def test_granet_composes(pair, tmp_path):
  kw = dict(model="cnn", model_kwargs={"channels": (4,), "hidden": 8}, num_train_steps=6, log_every_steps=3,
            eval_every_steps=6, checkpoint_every_steps=6, callbacks=({"name": "sparsity_eval", "every_steps": 3},))
  transforms = (GRANET | {"update_every": 2},)
  if pair == "msd":
    kw.update(objective="msd", objective_kwargs={"num_samples": 2, "rate": 0.5})
  elif pair == "rankmixup":
    kw.update(objective="rankmixup", objective_kwargs={"num_mixes": 2})
  else:
    transforms = ({"name": "clip_by_global_norm", "max_norm": 1.0}, *transforms)
  res = train_and_evaluate(tiny(transforms=transforms, **kw), str(tmp_path))
  assert res["steps"] == 6 and np.isfinite(res["eval_loss"])
  # The last prune is at the window's end (0.8 * 6 -> step 5): exactly round(0.2 N) of the N = 124
  # kernel entries (conv 3 x 1 x 4, dense 4 x 8, head 8 x 10) stay.
  assert res["final_density"] == pytest.approx(round(0.2 * 124) / 124)
  assert 0.0 < res["final_train_flop_ratio"] < 1.0 and res["final_param_ratio"] < 1.0


def test_sparsity_eval_counts(tmp_path):
  res = train_and_evaluate(tiny(transforms=({"name": "static_sparse", "density": 0.25},),
                                callbacks=("sparsity_eval",)), str(tmp_path))
  # MLP 40 -> 16 -> 10: kernels 640 + 160, biases 26 stay dense.
  assert res["final_density"] == pytest.approx(200 / 800)
  assert res["final_active_params"] == 200 + 26 and res["final_total_params"] == 826
  assert res["final_train_flop_ratio"] == pytest.approx(0.25, rel=1e-6)  # static masks: the density
  assert res["final_inference_flop_ratio"] == pytest.approx(0.25, abs=0.01)


def test_quantize_cnn_rtn_is_per_kernel_round_to_nearest_and_the_walk_matches_the_model():
  from flax import nnx

  from experiments.techniques.sparsity import cnn_layers, quantize_cnn
  from jaxdyn import models
  from jaxdyn.sparsity import dequantize, quantize_uniform
  model = models.CNN(1, 10, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (16, 40))
  layers = cnn_layers(model, x)  # asserts the walk reproduces model(x)
  assert [m for m, _, _ in layers] == [*model.convs, model.dense, model.head]
  kernels = [np.asarray(m.kernel[...]) for m, _, _ in layers]
  quantize_cnn(model, x, bits=3, method="rtn")
  for (m, _, _), w in zip(cnn_layers(model, x), kernels):
    np.testing.assert_array_equal(np.asarray(m.kernel[...]), np.asarray(dequantize(quantize_uniform(w, 3))))
