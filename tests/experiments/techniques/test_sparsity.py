"""The sparsity adapter: masks survive a crash and resume exactly; GraNet composes with msd,
rankmixup and a transform before it; the accounting callback's numbers."""

import jax
import jax.numpy as jnp
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


def test_linear_layers_walks_the_cnn_in_order_and_quantize_model_rtn_is_per_kernel_round_to_nearest():
  from flax import nnx

  from experiments.techniques.sparsity import linear_layers, quantize_model
  from jaxdyn import models
  from jaxdyn.sparsity import dequantize, quantize_uniform
  model = models.CNN(1, 10, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (16, 40))
  layers = linear_layers(model, x)  # checks apply(kernel, input) + bias against each module's output
  assert [m for _, m, _, _ in layers] == [*model.convs, model.dense, model.head]
  assert [p for p, *_ in layers] == ["convs/0", "convs/1", "dense", "head"]
  assert layers[0][2].shape == (16, 40, 1) and layers[2][2].shape == (16, 8)
  kernels = [np.asarray(m.kernel[...]) for _, m, _, _ in layers]
  assert quantize_model(model, x, bits=3, method="rtn") == 4
  for (_, m, _, _), w in zip(linear_layers(model, x), kernels):
    np.testing.assert_array_equal(np.asarray(m.kernel[...]), np.asarray(dequantize(quantize_uniform(w, 3))))


def test_linear_layers_on_a_resnet_follow_the_forward_order_and_leave_the_classes_unpatched():
  from flax import nnx

  from experiments.techniques.sparsity import linear_layers
  from jaxdyn import models
  model = models.ResNet18(3, 10, width=2, stage_sizes=(1, 1), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  paths = [p for p, *_ in linear_layers(model, x)]
  # stem, block 0 (conv1, conv2), block 1 (conv1, conv2, then its projection shortcut), head
  assert paths == ["stem", "blocks/0/conv1", "blocks/0/conv2", "blocks/1/conv1", "blocks/1/conv2",
                   "blocks/1/shortcut/0", "head"]
  assert "__call__" not in models.Conv2d.__dict__ or models.Conv2d.__call__.__name__ != "recording"
  assert "__call__" not in nnx.Linear.__dict__ or nnx.Linear.__call__.__name__ != "recording"


def test_linear_layers_stacks_the_inputs_of_a_module_called_twice_and_refuses_a_nonlinear_kernel():
  from flax import nnx

  from experiments.techniques.sparsity import linear_layers

  class Twice(nnx.Module):
    def __init__(self):
      self.lin = nnx.Linear(3, 2, rngs=nnx.Rngs(0))

    def __call__(self, x, train=False):
      return self.lin(x) + self.lin(2 * x)

  x = jnp.ones((4, 3))
  [(path, _, h, _)] = linear_layers(Twice(), x)
  assert path == "lin" and h.shape == (8, 3)
  np.testing.assert_array_equal(h[4:], 2 * x)

  class WeightNorm(nnx.Module):
    def __init__(self):
      self.kernel = nnx.Param(jnp.ones((3, 2)))

    def __call__(self, x, train=False):
      w = self.kernel[...]
      return x @ (w / jnp.linalg.norm(w))

  class Outer(nnx.Module):
    def __init__(self):
      self.wn = WeightNorm()

    def __call__(self, x, train=False):
      return self.wn(x)

  with pytest.raises(ValueError, match="model: layer wn does not compute"):
    linear_layers(Outer(), 2 * x)
