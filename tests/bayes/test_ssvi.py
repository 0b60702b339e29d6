"""The SSVI transform: a hand-worked removal/addition step, conservation, masks on params and momentum."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdyn.bayes import BayesMLP, GaussianDense, SSVIState, drop_and_grow, random_mask, rho_from_std, ssvi

# One 2x3 layer, flattened: 4 active entries, n = 2 to move.
MU = np.array([0.5, 0.01, -0.3, 0.02, 0.0, 0.0], np.float32)
SIGMA = np.array([0.1, 0.1, 0.1, 0.001, 0.0, 0.0], np.float32)  # |mu| / sigma = 5, 0.1, 3, 20
MASK = np.array([True, True, True, True, False, False])
GRAD = np.array([9.0, -0.2, 5.0, 0.1, -1.0, 0.3], np.float32)


def _rho(sigma):
  return np.where(sigma > 0, np.asarray(rho_from_std(np.maximum(sigma, 1e-6))), 0.0).astype(np.float32)


def test_drop_and_grow_hand_worked_example():
  rho = _rho(SIGMA)
  # f = 0.6 -> n = floor(4 * 0.6) = 2. SNR keeps entries 0 and 3 (a = 5 and 20) and removes 1, 2.
  # Candidates {1, 2, 4, 5} by |grad| = 0.2, 5, 1, 0.3: add 2 (re-added: keeps its values) and 4 (new).
  m, mu, r = drop_and_grow(jnp.asarray(MU).reshape(2, 3), jnp.asarray(rho).reshape(2, 3),
                           jnp.asarray(GRAD).reshape(2, 3), jnp.asarray(MASK).reshape(2, 3), 0.6)
  m, mu, r = np.asarray(m).ravel(), np.asarray(mu).ravel(), np.asarray(r).ravel()
  np.testing.assert_array_equal(m, [True, False, True, True, True, False])
  np.testing.assert_array_equal(mu, MU * np.array([1, 0, 1, 1, 0, 0], np.float32))
  survivors_mean = (rho[0] + rho[2] + rho[3]) / 3
  np.testing.assert_allclose(r, [rho[0], 0.0, rho[2], rho[3], survivors_mean, 0.0], rtol=1e-6)
  # |mu| keeps 0 and 2 (0.5, 0.3) and removes 1 and 3 (0.01, 0.02: entry 3 has the best SNR);
  # candidates {1, 3, 4, 5} by |grad| = 0.2, 0.1, 1, 0.3: add 4 and 5, both new.
  m2, mu2, r2 = drop_and_grow(jnp.asarray(MU), jnp.asarray(rho), jnp.asarray(GRAD), jnp.asarray(MASK), 0.6,
                              criterion="abs_mu")
  np.testing.assert_array_equal(np.asarray(m2), [True, False, True, False, True, True])
  np.testing.assert_array_equal(np.asarray(mu2), MU * np.array([1, 0, 1, 0, 0, 0], np.float32))
  new_rho = (rho[0] + rho[2]) / 2
  np.testing.assert_allclose(np.asarray(r2), [rho[0], 0.0, rho[2], 0.0, new_rho, new_rho], rtol=1e-6)
  # f = 0.2 -> n = floor(0.8) = 0: nothing moves.
  m0, mu0, r0 = drop_and_grow(jnp.asarray(MU), jnp.asarray(rho), jnp.asarray(GRAD), jnp.asarray(MASK), 0.2)
  np.testing.assert_array_equal(np.asarray(m0), MASK)
  np.testing.assert_array_equal(np.asarray(mu0), MU)
  np.testing.assert_array_equal(np.asarray(r0), rho)


def _params():
  rho = _rho(SIGMA).reshape(2, 3)
  return {
      "a": {"kernel_mu": jnp.asarray(MU.reshape(2, 3)), "kernel_rho": jnp.asarray(rho),
            "bias": jnp.array([0.1, -0.2, 0.3])},
      "b": {"kernel_mu": jnp.full((3, 2), 0.2), "kernel_rho": jnp.full((3, 2), -4.0)},  # a dense layer
  }


def test_transform_topology_step_on_params_and_momentum():
  params = _params()
  # drop_fraction 0.5, T_end 8: at t = 3, f = 0.5 (1 + cos(3 pi / 8)) = 0.691 -> n = 2 as above.
  tx = ssvi(optax.sgd(1e-6, momentum=0.9), total_steps=10, end_step=8, update_every=3, drop_fraction=0.5)
  state = tx.init(params)
  assert isinstance(state, SSVIState)
  np.testing.assert_array_equal(np.asarray(state.masks[0]).ravel(), MASK)
  update = jax.jit(tx.update)
  grads = jax.tree.map(jnp.ones_like, params)
  grads["a"]["kernel_mu"] = jnp.asarray(GRAD.reshape(2, 3))
  for _ in range(2):  # regular steps: inactive entries get no update and no momentum
    u, state = update(grads, state, params)
    assert np.all(np.asarray(u["a"]["kernel_mu"]).ravel()[~MASK] == 0)
    params = optax.apply_updates(params, u)
  trace = state.inner_state[0].trace
  assert np.all(np.asarray(trace["a"]["kernel_mu"]).ravel()[~MASK] == 0)
  assert np.all(np.asarray(trace["a"]["kernel_mu"]).ravel()[MASK] != 0)
  before = jax.tree.map(np.asarray, params)

  u, state = update(grads, state, params)  # t = 3: topology step
  after = jax.tree.map(np.asarray, optax.apply_updates(params, u))
  new_mask = np.array([True, False, True, True, True, False])
  np.testing.assert_array_equal(np.asarray(state.masks[0]).ravel(), new_mask)
  assert int(state.masks[0].sum()) == 4 and bool(state.masks[1].all())  # density conserved
  mu, rho = after["a"]["kernel_mu"].ravel(), after["a"]["kernel_rho"].ravel()
  rho0 = before["a"]["kernel_rho"].ravel()
  np.testing.assert_array_equal(mu, [before["a"]["kernel_mu"].ravel()[0], 0.0,
                                     before["a"]["kernel_mu"].ravel()[2], before["a"]["kernel_mu"].ravel()[3], 0.0, 0.0])
  np.testing.assert_allclose(rho, [rho0[0], 0.0, rho0[2], rho0[3], (rho0[0] + rho0[2] + rho0[3]) / 3, 0.0],
                             rtol=1e-6)
  np.testing.assert_array_equal(rho != 0, new_mask)  # the active-set convention holds on the params
  # The inner update was skipped: the bias and the dense layer did not move.
  np.testing.assert_array_equal(after["a"]["bias"], before["a"]["bias"])
  np.testing.assert_array_equal(after["b"]["kernel_mu"], before["b"]["kernel_mu"])
  # Momentum: removed (1) and never-active (4, 5) entries zero; kept entries and other leaves unchanged.
  new_trace = state.inner_state[0].trace
  t_old, t_new = np.asarray(trace["a"]["kernel_mu"]).ravel(), np.asarray(new_trace["a"]["kernel_mu"]).ravel()
  np.testing.assert_array_equal(t_new, np.where(new_mask, t_old, 0.0))
  assert t_new[1] == 0.0 and t_old[1] != 0.0
  np.testing.assert_array_equal(np.asarray(new_trace["a"]["bias"]), np.asarray(trace["a"]["bias"]))

  # The next (regular) step moves only the new active set.
  u, state = update(grads, state, optax.apply_updates(params, u))
  moved = np.asarray(u["a"]["kernel_mu"]).ravel() != 0
  np.testing.assert_array_equal(moved, new_mask)


def test_density_conserved_on_an_nnx_model_under_adam():
  model = BayesMLP(8, 4, hidden=(16, 16), density=0.25, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  # Masks come in leaf order: head, layers/0, layers/1.
  counts = [int((layer.kernel_rho[...] != 0).sum()) for layer in (model.head, *model.layers)]
  assert counts == [16, 8 * 16, 64]  # the first layer dense; round(0.25 * size) elsewhere
  tx = ssvi(optax.adam(1e-2), total_steps=40, update_every=2, end_step=40)
  state = tx.init(params)
  x = jax.random.normal(jax.random.key(1), (32, 8))
  y = jnp.arange(32) % 4

  def loss(p, key):
    logits = nnx.merge(graphdef, p)(x, key=key)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, s, key):
    g = jax.grad(loss)(p, key)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  first = [np.asarray(m) for m in state.masks]
  for i in range(20):
    params, state = step(params, state, jax.random.key(i))
  assert int(state.count) == 20
  m = nnx.merge(graphdef, params)
  layers = (m.head, *m.layers)
  assert [int((layer.kernel_rho[...] != 0).sum()) for layer in layers] == counts
  assert [int(mask.sum()) for mask in state.masks] == counts
  for layer, mask in zip(layers, state.masks):
    np.testing.assert_array_equal(np.asarray(layer.kernel_rho[...] != 0), np.asarray(mask))
    assert np.all(np.asarray(layer.kernel_mu[...])[~np.asarray(mask)] == 0)
  assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(first, state.masks))  # topology moved


def test_value_errors_name_the_argument():
  for bad in (0.0, 1.5, -0.1):
    with pytest.raises(ValueError, match="density"):
      random_mask(jax.random.key(0), (4, 4), bad)
    with pytest.raises(ValueError, match="density"):
      GaussianDense(4, 4, density=bad, rngs=nnx.Rngs(0))
  inner = optax.sgd(0.1)
  with pytest.raises(ValueError, match="update_every"):
    ssvi(inner, total_steps=100, update_every=0)
  with pytest.raises(ValueError, match="end_step"):
    ssvi(inner, total_steps=100, end_step=101)
  with pytest.raises(ValueError, match="criterion"):
    ssvi(inner, total_steps=100, criterion="random")
  with pytest.raises(ValueError, match="drop_fraction"):
    ssvi(inner, total_steps=100, drop_fraction=0.6)
  with pytest.raises(ValueError, match="params"):
    ssvi(inner, total_steps=100).init({"w": jnp.ones(3)})
  tx = ssvi(inner, total_steps=100)
  with pytest.raises(ValueError, match="params"):
    tx.update(_params(), tx.init(_params()))
