"""The Bayesian models' NNX mode (model.train() / model.eval()), calling convention and input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import models
from jaxdyn.bayes import BayesCNN, BayesMLP, BayesResNet18


def _mlp():
  return BayesMLP(6, 3, hidden=(8, 5), density=0.5, sigma_init=(0.3, 0.1), rngs=nnx.Rngs(0))


def test_mode_switches_sampling_and_explicit_train_wins():
  m = _mlp()
  x = jax.random.normal(jax.random.key(1), (4, 6))
  key = jax.random.key(2)
  mean = np.asarray(m(x, train=False))
  sample = np.asarray(m(x, train=True, key=key))
  assert not np.allclose(mean, sample)
  # A new model is in inference mode: the mean weights, no key needed.
  np.testing.assert_array_equal(m(x), mean)
  m.train()
  assert m.deterministic is False
  with pytest.raises(ValueError, match="^key: a jax.random key is required in training mode"):
    m(x)  # the old model ignored the mode and returned the mean
  np.testing.assert_array_equal(m(x, key=key), sample)
  np.testing.assert_array_equal(m(x, train=False), mean)  # the explicit argument wins
  m.eval()
  np.testing.assert_array_equal(m(x), mean)
  with pytest.raises(ValueError, match="^key: a jax.random key is required in training mode"):
    m(x, train=True)
  # In inference mode a key draws one posterior sample (Monte Carlo prediction).
  assert not np.allclose(m(x, key=key, sampling="weights"), mean)


def test_resnet18_has_the_cifar_architecture():
  m = BayesResNet18(3, 4, width=2, density=0.5, rngs=nnx.Rngs(0))
  assert len(m.blocks) == 8 and m.head.in_features == 16  # (2, 2, 2, 2) blocks; 8 * width features
  assert [b.conv1.strides for b in m.blocks] == [(1, 1), (1, 1)] + [(2, 2), (1, 1)] * 3
  assert [b.conv2.in_features for b in m.blocks] == [2, 2, 4, 4, 8, 8, 16, 16]
  assert m.stem.density == 1.0 and all(b.conv1.density == b.conv2.density == 0.5 for b in m.blocks)
  small = BayesResNet18(3, 4, width=2, stage_sizes=(1, 1), rngs=nnx.Rngs(0))
  assert len(small.blocks) == 2 and small.head.in_features == 4


def test_batchnorm_follows_the_mode():
  m = BayesResNet18(3, 4, width=2, stage_sizes=(1, 1), density=0.5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (4, 6, 6, 3))
  key = jax.random.key(2)
  graphdef, state = nnx.split(m)
  fresh = lambda: nnx.merge(graphdef, state, copy=True)  # noqa: E731
  # One compiled program per mode (a ResNet-18 run op by op compiles hundreds of small programs).
  call = nnx.jit(lambda model, x, key, train: model(x, train=train, key=key), static_argnums=3)
  batch_stats = np.asarray(call(fresh(), x, key, True))
  running = np.asarray(call(fresh(), x, key, False))
  assert not np.allclose(batch_stats, running)
  t = fresh()
  t.train()
  np.testing.assert_allclose(call(t, x, key, None), batch_stats, rtol=1e-6)  # the old model used running averages
  assert not np.allclose(t.stem_bn.mean[...], 0.0)  # training mode updated the running statistics
  e = fresh()
  e.train()
  e.eval()
  np.testing.assert_array_equal(call(e, x, key, None), running)
  np.testing.assert_array_equal(e.stem_bn.mean[...], 0.0)


def test_models_follow_the_head_split_contract():
  x = jax.random.normal(jax.random.key(1), (3, 8))
  key = jax.random.key(2)
  for m in (_mlp(), BayesCNN(1, 3, channels=(2, 4), hidden=5, density=0.5, rngs=nnx.Rngs(0))):
    xx = x if isinstance(m, BayesCNN) else x[:, :6]
    assert isinstance(m, models.HeadSplit) and isinstance(m, models.Model)
    logits, h = m(xx, return_features=True)
    np.testing.assert_allclose(m.apply_head(m.features(xx)), logits, rtol=1e-6)
    np.testing.assert_array_equal(m.features(xx), h)
    # features(x, key=k) are exactly the features of model(x, key=k).
    _, h_sampled = m(xx, train=True, key=key, return_features=True)
    np.testing.assert_array_equal(m.features(xx, train=True, key=key), h_sampled)


def test_keys_per_layer_are_the_documented_fold_ins():
  m = _mlp()
  x = jax.random.normal(jax.random.key(1), (4, 6))
  key = jax.random.key(2)
  sub = jax.random.fold_in(key, 0)
  h = x
  for i, layer in enumerate(m.layers):
    h = nnx.relu(layer(h, key=jax.random.fold_in(sub, i)))
  np.testing.assert_array_equal(m(x, train=True, key=key), m.head(h, key=jax.random.fold_in(key, 1)))


def test_inputs_are_checked_by_name():
  m = _mlp()
  with pytest.raises(ValueError, match=r"^x: must hold at least one of its examples"):
    m(jnp.ones((0, 6)))
  with pytest.raises(TypeError, match="^key: must be a jax.random key"):
    m(jnp.ones((2, 6)), key="key")
  with pytest.raises(ValueError, match="^sampling: must be one of"):
    m(jnp.ones((2, 6)), sampling="exact")
  with pytest.raises(ValueError, match=r"^x: must have in_features = 6"):
    m(jnp.ones((2, 7)))
  with pytest.raises(ValueError, match="^spatial_dims: must be an int in"):
    BayesCNN(1, 3, spatial_dims=1.0, rngs=nnx.Rngs(0))  # 1.0 was accepted (1.0 in (1, 2))
  # NumPy numbers are numbers.
  a = BayesMLP(np.int64(6), np.int32(3), hidden=(np.int64(8),), density=np.float32(0.5), rngs=nnx.Rngs(0))
  b = BayesMLP(6, 3, hidden=(8,), density=0.5, rngs=nnx.Rngs(0))
  jax.tree.map(np.testing.assert_array_equal, nnx.state(a, nnx.Param), nnx.state(b, nnx.Param))
