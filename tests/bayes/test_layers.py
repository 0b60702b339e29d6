"""Gaussian layers (local reparameterisation moments, inactive entries), predictions, FLOP accounting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn.bayes import (
    BayesCNN,
    GaussianConv,
    GaussianDense,
    LayerCost,
    active_mean,
    layer_costs,
    mc_predictive,
    model_kl,
    posterior_std,
    random_mask,
    topology_update_count,
    training_flops,
)


def _layer(density=0.5):
  layer = GaussianDense(6, 4, density=density, mu_init_std=0.5, sigma_init=(0.3, 0.1), rngs=nnx.Rngs(0))
  layer.bias[...] = jnp.arange(4.0)
  return layer


def test_local_reparameterisation_moments_and_inactive_entries():
  layer = _layer()
  mask = np.asarray(layer.mask)
  assert mask.sum() == 12
  assert np.all(np.asarray(layer.kernel_mu[...])[~mask] == 0)
  x = jax.random.normal(jax.random.key(1), (3, 6))
  keys = jax.random.split(jax.random.key(2), 4000)
  ys = jax.vmap(lambda k: layer(x, key=k))(keys)
  mu, sigma = layer.kernel_mu[...], posterior_std(layer.kernel_rho[...])
  mean = x @ mu + layer.bias[...]
  var = (x * x) @ (sigma * sigma) + 1e-8
  np.testing.assert_allclose(ys.mean(0), mean, atol=4 * float(jnp.sqrt(var.max() / 4000)))
  np.testing.assert_allclose(ys.var(0), var, rtol=0.1)
  # Weight sampling has the same per-example moments; no key = the mean weights.
  yw = jax.vmap(lambda k: layer(x, key=k, sampling="weights"))(keys)
  np.testing.assert_allclose(yw.var(0), var, rtol=0.1)
  np.testing.assert_allclose(layer(x), mean, rtol=1e-6)
  assert float(jnp.sum(sigma * ~mask)) == 0.0


def test_gradient_of_mu_is_dense_and_rho_gradient_is_masked():
  layer = _layer()
  mask = np.asarray(layer.mask)
  graphdef, params = nnx.split(layer, nnx.Param)
  x = jax.random.normal(jax.random.key(1), (5, 6))

  def loss(p):
    m = nnx.merge(graphdef, p)
    return jnp.sum(m(x, key=jax.random.key(3)) ** 2) + model_kl(m, prior_std=0.1)

  g = jax.grad(loss)(params)
  g_mu, g_rho = np.asarray(g["kernel_mu"][...]), np.asarray(g["kernel_rho"][...])
  assert np.all(g_mu[~mask] != 0)  # what the addition step ranks
  assert np.all(g_rho[~mask] == 0) and np.all(g_rho[mask] != 0)
  # An inactive mu moved by an optimizer without ssvi changes neither the output nor the gradient.
  moved = jax.tree.map(lambda v: v, params)
  moved["kernel_mu"][...] = jnp.where(mask, params["kernel_mu"][...], 7.0)
  np.testing.assert_array_equal(nnx.merge(graphdef, moved)(x), nnx.merge(graphdef, params)(x))
  np.testing.assert_allclose(np.asarray(jax.grad(loss)(moved)["kernel_mu"][...]), g_mu, rtol=1e-6)


def test_conv_moments_match_explicit_convolutions():
  conv = GaussianConv(2, 3, (3,), strides=2, density=0.4, use_bias=False, mu_init_std=0.5,
                      sigma_init=(0.3, 0.1), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 9, 2))
  mu, sigma = conv.kernel_mu[...], posterior_std(conv.kernel_rho[...])
  dn = ("NWC", "WIO", "NWC")
  mean = jax.lax.conv_general_dilated(x, mu, (2,), "SAME", dimension_numbers=dn)
  var = jax.lax.conv_general_dilated(x * x, sigma**2, (2,), "SAME", dimension_numbers=dn) + 1e-8
  ys = jax.vmap(lambda k: conv(x, key=k))(jax.random.split(jax.random.key(2), 4000))
  assert ys.shape == (4000, 2, 5, 3)
  np.testing.assert_allclose(ys.var(0), var, rtol=0.1)
  np.testing.assert_allclose(conv(x), mean, rtol=1e-5, atol=1e-6)


def test_mc_predictive_averages_softmax_of_samples():
  layer = _layer()
  x = jax.random.normal(jax.random.key(1), (3, 6))
  key = jax.random.key(5)
  probs = mc_predictive(lambda xx, k: layer(xx, key=k, sampling="weights"), x, key=key, num_samples=7)
  manual = np.mean([jax.nn.softmax(layer(x, key=k, sampling="weights")) for k in jax.random.split(key, 7)], 0)
  np.testing.assert_allclose(probs, manual, rtol=1e-5)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  with pytest.raises(ValueError, match="num_samples"):
    mc_predictive(lambda xx, k: xx, x, key=key, num_samples=0)


def test_flop_count_by_hand():
  # BayesCNN on length-8 signals: conv 1->2 (dense, 8 positions), conv 2->4 at 0.5 (4 positions after
  # the pool), dense 4->3 at 0.5, head 3->2 at 0.5.
  model = BayesCNN(1, 2, spatial_dims=1, channels=(2, 4), hidden=3, density=0.5, rngs=nnx.Rngs(0))
  costs = layer_costs(model, jnp.zeros((1, 8)))
  assert costs == [LayerCost("conv", 6, 6, 8), LayerCost("conv", 24, 12, 4), LayerCost("dense", 12, 6, 1),
                   LayerCost("dense", 6, 3, 1)]
  macs_sparse = 6 * 8 + 12 * 4 + 6 + 3
  macs_dense = 6 * 8 + 24 * 4 + 12 + 6
  assert training_flops(costs, num_steps=10, batch_size=4) == 12 * macs_sparse * 40
  assert training_flops(costs, num_steps=10, batch_size=4, dense=True) == 12 * macs_dense * 40
  # Topology steps add the dense mu gradient of the inactive entries: 2 (N - a) P per example.
  extra = 2 * ((24 - 12) * 4 + (12 - 6) + (6 - 3))
  assert training_flops(costs, num_steps=10, batch_size=4, topology_steps=3) == (
      12 * macs_sparse * 40 + extra * 4 * 3)
  assert topology_update_count(1000, update_every=100, end_step=750) == 7  # t = 100, ..., 700
  assert topology_update_count(1000, update_every=100, end_step=701) == 7
  assert topology_update_count(1000, update_every=100, end_step=700) == 6


# --- input policy ----------------------------------------------------------------------------------

def test_numpy_scalars_are_numbers_for_layers_masks_and_predictions():
  ref = GaussianDense(4, 3, density=0.5, mu_init_std=0.1, rngs=nnx.Rngs(0))
  for density, n in ((np.float32(0.5), np.int64(4)), (np.asarray(0.5), np.int32(4))):  # both were rejected
    layer = GaussianDense(n, 3, density=density, mu_init_std=np.float32(0.1), rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(layer.kernel_rho[...], ref.kernel_rho[...])
    np.testing.assert_allclose(layer.kernel_mu[...], ref.kernel_mu[...], rtol=1e-6)
  key = jax.random.key(3)
  np.testing.assert_array_equal(random_mask(key, (10, 10), np.float32(0.1)), random_mask(key, (10, 10), 0.1))
  conv = GaussianConv(np.int64(2), 3, (np.int64(3),), strides=np.int64(2), padding="valid", rngs=nnx.Rngs(0))
  assert conv(jnp.ones((1, 9, 2))).shape == (1, 4, 3)
  f = lambda x, k: x @ jnp.ones((4, 3)) + jax.random.normal(k, (x.shape[0], 3))  # noqa: E731
  x = jnp.ones((2, 4))
  np.testing.assert_array_equal(mc_predictive(f, x, key=key, num_samples=np.int64(3)),  # np.int64 was rejected
                                mc_predictive(f, x, key=key, num_samples=3))
  assert LayerCost("dense", np.int64(10), np.int32(5)) == LayerCost("dense", 10, 5)
  assert type(LayerCost("dense", np.int64(10), np.int32(5)).num_weights) is int
  assert training_flops([LayerCost("dense", 10, 5)], num_steps=np.int64(3), batch_size=np.int32(2)) == 12 * 5 * 6


def test_layers_validate_key_input_and_hyperparameters_by_name():
  layer = GaussianDense(4, 3, rngs=nnx.Rngs(0))
  x = jnp.ones((2, 4))
  for bad in ("key", 0, 1.5, np.zeros(2, np.float32)):  # the old layer failed inside jax.random
    with pytest.raises(TypeError, match="^key: must be a jax.random key"):
      layer(x, key=bad)
  with pytest.raises(ValueError, match=r"^x: must have in_features = 4 entries on its last axis, got shape \(2, 5\)"):
    layer(jnp.ones((2, 5)))
  with pytest.raises(ValueError, match="^sampling: must be one of"):
    layer(x, key=jax.random.key(0), sampling="exact")
  with pytest.raises(ValueError, match="^kernel_size: must be an int >= 1"):
    GaussianConv(2, 3, (2.5,), rngs=nnx.Rngs(0))  # int(2.5) = 2 was accepted silently
  with pytest.raises(ValueError, match="^padding: must be one of"):
    GaussianConv(2, 3, (3,), padding="FULL", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="^padding: must hold one"):
    GaussianConv(2, 3, (3,), padding=((1, 1), (1, 1)), rngs=nnx.Rngs(0))
  conv = GaussianConv(2, 3, (3,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="^x: must be"):
    conv(jnp.ones((1, 9, 3)))
  with pytest.raises(ValueError, match="^sigma_init: must be a pair"):
    GaussianDense(4, 3, sigma_init=(0.1,), rngs=nnx.Rngs(0))


def test_layers_rows_are_independent_empty_batches_and_nonfinite_rows():
  layer = GaussianDense(4, 3, density=0.5, rngs=nnx.Rngs(0))
  key = jax.random.key(1)
  assert layer(jnp.ones((0, 4)), key=key).shape == (0, 3)
  x = jnp.ones((3, 4)).at[1, 2].set(np.nan)
  for y in (layer(x), layer(x, key=key), layer(x, key=key, sampling="weights")):
    y = np.asarray(y)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()


def test_parameter_helpers_never_hide_a_nonfinite_value():
  # posterior_std(-inf) was softplus(-inf) = 0: an active entry silently deterministic.
  np.testing.assert_array_equal(np.isnan(posterior_std(jnp.array([-np.inf, np.nan, 0.0, -3.0]))),
                                [True, True, False, False])
  assert posterior_std(jnp.array([np.inf]))[0] == np.inf
  # active_mean ignored a non-finite rho (it only read rho != 0).
  out = jax.jit(active_mean)(jnp.array([0.5, 0.5, 0.5, 0.5]), jnp.array([np.nan, np.inf, -3.0, 0.0]))
  np.testing.assert_array_equal(np.asarray(out)[2:], [0.5, 0.0])
  assert np.isnan(np.asarray(out)[:2]).all()
  # model_kl of a NaN parameter: NaN, not an eager error about a "sigma" the caller never passed.
  layer = GaussianDense(4, 3, rngs=nnx.Rngs(0))
  layer.kernel_rho[...] = layer.kernel_rho[...].at[0, 0].set(np.nan)
  assert np.isnan(float(model_kl(layer, prior_std=0.1)))
  with pytest.raises(TypeError, match="^model: must be an nnx.Module"):
    model_kl("mlp", prior_std=0.1)


def test_mc_predictive_gives_nan_rows_for_nonfinite_logits():
  def f(x, k):
    return x + 0.1 * jax.random.normal(k, x.shape)

  x = jnp.zeros((3, 4)).at[1, 0].set(-np.inf)  # one -inf logit: softmax would be finite
  p = np.asarray(mc_predictive(f, x, key=jax.random.key(0), num_samples=4))
  assert np.isnan(p[1]).all() and np.isfinite(p[[0, 2]]).all()
  np.testing.assert_allclose(p[[0, 2]].sum(-1), 1.0, rtol=1e-6)
  assert mc_predictive(f, jnp.zeros((0, 4)), key=jax.random.key(0), num_samples=2).shape == (0, 4)
  with pytest.raises(TypeError, match="^key: must be a jax.random key"):
    mc_predictive(f, x, key=0, num_samples=2)
  with pytest.raises(TypeError, match="^apply_fn: must be a callable"):
    mc_predictive(None, x, key=jax.random.key(0), num_samples=2)
