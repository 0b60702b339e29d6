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
    sample_steps,
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
  with pytest.raises(ValueError, match="tau: must be a real number > 1"):
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


def _split(model):
  return nnx.split(model, nnx.Param, ...)


@pytest.mark.parametrize("encoder", ["direct", "poisson"])
def test_spiking_loss_of_nonfinite_input_is_nan(encoder, numpy_init):
  # Before: NaN inputs gave all-zero spikes and a finite loss (1.58...), so the harness's non-finite
  # guard never fired.
  model = numpy_init(lambda: SpikingMLP(4, 3, hidden=(8,), num_steps=3, encoder=encoder, rngs=nnx.Rngs(0)))
  graphdef, params, state = _split(model)
  y = jnp.array([0, 1, 2, 0])
  loss = jax.jit(lambda p, x: spiking_loss(nnx.merge(graphdef, p, state, copy=True), x, y,
                                           key=jax.random.key(0))[0])
  x = jnp.full((4, 4), 0.5)
  assert np.isfinite(loss(params, x))
  for bad in (jnp.nan, jnp.inf, -jnp.inf):
    assert np.isnan(loss(params, x.at[1, 2].set(bad))), bad
  nan_params = jax.tree.map(lambda a: a.at[(0,) * a.ndim].set(jnp.nan), params)
  assert np.isnan(loss(nan_params, x))
  with pytest.raises(ValueError, match=r"x: must be finite, found .*nan.* at index \(1, 2\)"):
    spiking_loss(nnx.merge(graphdef, params, state, copy=True), x.at[1, 2].set(jnp.nan), y,
                 key=jax.random.key(0))


def test_empty_batch_numpy_scalars_and_keys(numpy_init):
  model = numpy_init(lambda: SpikingMLP(4, 3, hidden=(8,), num_steps=3, rngs=nnx.Rngs(0)))
  # Before: ZeroDivisionError ("integer modulo by zero") from an empty batch.
  with pytest.raises(ValueError, match=r"x: must hold at least one of its examples"):
    spiking_loss(model, jnp.ones((0, 4)), jnp.zeros(0, int))
  with pytest.raises(ValueError, match=r"x: must hold at least one of its examples"):
    model(jnp.ones((0, 4)))
  with pytest.raises(TypeError, match="key: must be a jax.random key"):
    spiking_loss(model, jnp.ones((2, 4)), jnp.zeros(2, int), key=0)
  with pytest.raises(TypeError, match="key: must be a jax.random key"):
    model(jnp.ones((2, 4)), key="seed")
  # Before: "num_steps: must be an int >= 1, got np.int64(3)" and alike.
  m = SpikingMLP(np.int64(4), np.int32(3), hidden=(np.int64(8),), num_steps=np.int64(3),
                 dropout_rate=np.float32(0.25), tau=np.float32(1.5), v_th=np.float64(1.0), rngs=nnx.Rngs(0))
  assert (m.num_steps, m.in_features, m.dropout_rate, m.lif.config.tau) == (3, 4, 0.25, 1.5)
  assert all(type(v) in (int, float) for v in (m.num_steps, m.in_features, m.dropout_rate))
  vgg = nnx.eval_shape(lambda: SpikingVGG11(np.int64(3), 2, width=np.int64(2), num_steps=np.int32(2),
                                            rngs=nnx.Rngs(0)))
  assert (vgg.in_channels, vgg.num_steps, vgg.convs[0].kernel.shape) == (3, 2, (3, 3, 3, 2))
  graphdef, params, state = _split(model)
  x, y = jax.random.normal(jax.random.key(1), (4, 4)), jnp.array([0, 1, 2, 0])
  ref = spiking_loss(nnx.merge(graphdef, params, state, copy=True), x, y, key=jax.random.key(2), mode="sltt_k", k=2)
  got = spiking_loss(nnx.merge(graphdef, params, state, copy=True), x, y, key=jax.random.key(2), mode="sltt_k",
                     k=np.int64(2), lam_l=np.float32(0.05), unroll=np.int32(1))
  np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)


def test_spiking_loss_explicit_steps_equal_the_key_drawn_ones(numpy_init):
  model = numpy_init(lambda: SpikingMLP(4, 3, hidden=(8,), num_steps=4, rngs=nnx.Rngs(1)))
  graphdef, params, state = _split(model)
  x, y = 2 * jax.random.normal(jax.random.key(1), (6, 4)), jnp.arange(6) % 3
  key = jax.random.key(7)

  def grads(**kw):
    return jax.jit(jax.grad(lambda p: spiking_loss(nnx.merge(graphdef, p, state, copy=True), x, y,
                                                   mode="sltt_k", **kw)[0]))(params)

  drawn = np.asarray(sample_steps(jax.random.split(key)[1], 4, 2))  # spiking_loss's own draw
  g_key = grads(key=key, k=2)
  for steps in (drawn, np.flatnonzero(drawn).tolist()):
    for a, b in zip(jax.tree.leaves(grads(steps=steps)), jax.tree.leaves(g_key)):
      np.testing.assert_array_equal(a, b)
  other = np.flatnonzero(~drawn).tolist()
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(grads(steps=other)),
                                                       jax.tree.leaves(g_key)))


def test_train_and_eval_switch_dropout_and_batchnorm(numpy_init):
  model = numpy_init(lambda: SpikingMLP(4, 3, hidden=(16,), num_steps=3, dropout_rate=0.5, rngs=nnx.Rngs(0)))
  x = 2 * jax.random.normal(jax.random.key(1), (8, 4))
  key = jax.random.key(2)
  graphdef, params, state = _split(model)

  def fresh(mode=None):
    m = nnx.merge(graphdef, params, state, copy=True)
    if mode is not None:
      getattr(m, mode)()
    return m

  assert model.deterministic  # a new model evaluates
  infer = fresh()(x, train=False)
  trained_model = fresh()
  trained = trained_model(x, train=True, key=key)
  np.testing.assert_array_equal(fresh()(x), infer)  # default: inference mode
  np.testing.assert_array_equal(fresh()(x, key=key), infer)  # a key alone does not train
  # model.train(): batch statistics (updated) and dropout with the key, as train=True.
  m = fresh("train")
  assert not m.deterministic
  np.testing.assert_array_equal(m(x, key=key), trained)
  stats = [jax.tree.leaves(nnx.state(mod, nnx.BatchStat)) for mod in (m, trained_model)]
  for a, b in zip(*stats):
    np.testing.assert_array_equal(a, b)
  assert not np.allclose(trained, infer)
  with pytest.raises(ValueError, match="key: a jax.random key is required in training"):
    fresh("train")(x)
  # model.eval() after train(): the inference output again; an explicit train= wins over the mode.
  m = fresh("train")
  m.eval()
  np.testing.assert_array_equal(m(x, key=key), infer)
  np.testing.assert_array_equal(fresh("train")(x, train=False), infer)
  np.testing.assert_array_equal(fresh("eval")(x, train=True, key=key), trained)
