"""Spiking models: shapes and carries, BatchNorm per step, dropout masks fixed over T, harness hooks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn.snn import (
    SpikingMLP,
    SpikingPreActResNet18,
    SpikingVGG11,
    spiking_loss,
    step_function,
    through_time_loss,
)


@pytest.mark.parametrize("cls,num_lif", [(SpikingVGG11, 8), (SpikingPreActResNet18, 17)])
def test_conv_models_shapes_and_carry(cls, num_lif, numpy_init):
  model = numpy_init(lambda: cls(3, 10, width=4, num_steps=2, rngs=nnx.Rngs(0)))
  x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
  carry = model.carry_shape(x)
  assert len(carry) == num_lif
  assert carry[0].shape[:3] == (2, 8, 8)
  graphdef, params, state = nnx.split(model, nnx.Param, ...)
  logits, feats = jax.jit(lambda p, s, x: nnx.merge(graphdef, p, s)(x, return_features=True))(params, state, x)
  assert logits.shape == (2, 10) and feats.shape[0] == 2
  assert np.all(np.isfinite(np.asarray(logits)))
  assert np.all((np.asarray(feats) >= 0) & (np.asarray(feats) <= 1))  # firing rates


def test_mlp_forward_is_the_mean_of_step_outputs_and_train_updates_batchnorm(numpy_init):
  model = numpy_init(lambda: SpikingMLP(6, 4, hidden=(16, 8), num_steps=3, rngs=nnx.Rngs(0)))
  x = jax.random.normal(jax.random.key(1), (5, 6)) * 2
  graphdef, params, state = nnx.split(model, nnx.Param, ...)
  fn = step_function(graphdef, train=False)

  @jax.jit
  def loop(params, state, x):
    carry, outs = None, []
    for t in range(3):
      out, carry, _ = fn(params, state, carry, {"x": x, "masks": None, "key": None}, t)
      outs.append(out)
    return jnp.mean(jnp.stack(outs), 0)

  forward = jax.jit(lambda p, s, x: nnx.merge(graphdef, p, s)(x))
  np.testing.assert_allclose(forward(params, state, x), loop(params, state, x), rtol=1e-5, atol=1e-6)
  before = np.asarray(model.norms[1].var[...])
  model(x, train=True)
  assert not np.allclose(before, np.asarray(model.norms[1].var[...]))


@pytest.mark.parametrize("mode", ["bptt", "sltt"])
def test_dropout_mask_is_the_same_at_every_step(mode, numpy_init):
  # One sample, no BatchNorm: a hidden unit dropped for this sample must be silent at all T steps,
  # so its row of the readout's gradient is exactly zero; a kept unit that spikes has a nonzero row.
  # Masks redrawn per step would leave (almost) no zero rows (a unit dropped at all 6 steps: 1/64).
  model = numpy_init(lambda: SpikingMLP(10, 3, hidden=(64,), num_steps=6, norm=False, dropout_rate=0.5,
                                        rngs=nnx.Rngs(0)))
  x = jax.random.normal(jax.random.key(2), (1, 10)) * 3
  graphdef, params, state = nnx.split(model, nnx.Param, ...)
  inputs = model.step_inputs(x, train=True, key=jax.random.key(3))
  mask = np.asarray(inputs["masks"][0][0])

  def loss(p):
    return through_time_loss(step_function(graphdef), p, state, inputs, jnp.array([1]), num_steps=6,
                             mode=mode)[0]

  g = np.asarray(jax.jit(jax.grad(loss))(params)["head"]["kernel"][...])
  spikes = np.asarray(nnx.merge(graphdef, params, state)(x, return_features=True)[1][0])
  zero_rows = np.all(g == 0, axis=1)
  assert 15 < np.sum(mask == 0) < 50
  assert np.all(zero_rows[mask == 0])
  assert np.all(~zero_rows[(mask > 0) & (spikes > 0)])


def test_spiking_loss_modes_agree_on_the_loss_value(numpy_init):
  model = numpy_init(lambda: SpikingMLP(6, 4, hidden=(8,), num_steps=4, rngs=nnx.Rngs(2)))
  x = jax.random.normal(jax.random.key(1), (8, 6))
  y = jnp.arange(8) % 4
  graphdef, params, state = nnx.split(model, nnx.Param, ...)
  values = []
  for mode, k in (("bptt", None), ("sltt", None), ("sltt_k", 2)):
    loss, logits = spiking_loss(nnx.merge(graphdef, params, state), x, y, key=jax.random.key(0),
                                mode=mode, k=k)
    values.append(float(loss))
  np.testing.assert_allclose(values, values[0], rtol=1e-6)


def test_model_errors_name_the_argument(numpy_init):
  with pytest.raises(ValueError, match="num_steps: must be an int >= 1"):
    SpikingMLP(4, 2, num_steps=0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"encoder: must be one of \['direct', 'poisson'\]"):
    SpikingMLP(4, 2, encoder="rate", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="tau: must be a number > 1"):
    SpikingVGG11(3, 2, tau=0.9, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="surrogate: must be one of"):
    SpikingPreActResNet18(3, 2, surrogate="arctan", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="key: a jax.random key is required in training"):
    numpy_init(lambda: SpikingMLP(4, 2, dropout_rate=0.3, rngs=nnx.Rngs(0)))(jnp.ones((1, 4)), train=True)
  with pytest.raises(TypeError, match="model: must be a jaxdyn.snn.SpikingClassifier"):
    spiking_loss(object(), jnp.ones((1, 4)), jnp.zeros(1, int))


def test_poisson_encoder_fixed_train_at_eval_and_keyed_in_training(numpy_init):
  model = numpy_init(lambda: SpikingMLP(6, 3, hidden=(8,), num_steps=3, encoder="poisson", norm=False,
                                        rngs=nnx.Rngs(0)))
  graphdef, params, state = nnx.split(model, nnx.Param, ...)
  forward = jax.jit(lambda p, s, x, key: nnx.merge(graphdef, p, s)(x, key=key))
  x = jnp.full((4, 6), 0.5)
  a = forward(params, state, x, None)
  np.testing.assert_array_equal(a, forward(params, state, x, None))  # evaluation: key 0
  np.testing.assert_array_equal(a, forward(params, state, x, jax.random.key(0)))
  assert not np.array_equal(a, forward(params, state, x, jax.random.key(5)))
  with pytest.raises(ValueError, match="key: a jax.random key is required in training"):
    spiking_loss(model, x, jnp.zeros(4, jnp.int32))
