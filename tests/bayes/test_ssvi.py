"""The SSVI transform: a hand-worked removal/addition step, conservation, masks on params and momentum."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdyn.bayes import (
    BayesMLP,
    GaussianDense,
    SSVIState,
    TopologySchedule,
    drop_and_grow,
    model_kl,
    random_mask,
    rho_from_std,
    ssvi,
    ssvi_sgd,
    topology_update_count,
)

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


# --- the last-transform check, the blind-growth warning, inject_hyperparams, the schedule in the state

def _grads(params, seed):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def _run(tx, params, steps, *, jit=True):
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  for s in range(steps):
    updates, state = update(_grads(params, s), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


_SCHEDULE = dict(total_steps=20, update_every=2, drop_fraction=0.5)  # T_end = 15: topology at t = 2, 4, ...


def _active(params):
  return int((params["a"]["kernel_rho"] != 0).sum())


def test_a_transform_after_ssvi_is_caught():
  bad = optax.chain(ssvi(optax.sgd(0.1), **_SCHEDULE), optax.scale(0.5))
  p2, state = _run(bad, _params(), 2)
  # What the old code did silently: the topology step's halved updates grew the active set.
  assert _active(p2) > int(state[0].masks[0].sum()) == 4
  p3, _ = _run(bad, _params(), 3)  # the next update sees it: every update NaN under jit
  assert all(np.isnan(np.asarray(x)).all() for x in jax.tree.leaves(p3))
  with pytest.raises(ValueError, match="^params: entries that ssvi left inactive .* last transform"):
    _run(bad, _params(), 3, jit=False)  # eagerly: a named error


@pytest.mark.parametrize("build", [
    lambda: optax.chain(optax.clip_by_global_norm(1.0), ssvi(optax.sgd(0.1, momentum=0.9), **_SCHEDULE)),
    lambda: optax.MultiSteps(ssvi(optax.sgd(0.1), **_SCHEDULE), every_k_schedule=2),
    lambda: optax.inject_hyperparams(ssvi)(inner=optax.sgd(0.1), **_SCHEDULE),
    lambda: ssvi_sgd(0.1, **_SCHEDULE),
], ids=["chain_clip_ssvi", "multisteps", "inject_hyperparams", "ssvi_sgd"])
def test_good_chains_pass_the_check(build):
  params, state = _run(build(), _params(), 9)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
  assert _active(params) == 4  # density conserved through the topology steps
  masks = optax.tree_utils.tree_get(state, "masks")
  np.testing.assert_array_equal(np.asarray(params["a"]["kernel_rho"] != 0), np.asarray(masks[0]))


def test_schedule_is_readable_from_the_state_through_wrappers():
  wrapped = {
      "plain": ssvi(optax.sgd(0.1), **_SCHEDULE),
      "chain": optax.chain(optax.clip_by_global_norm(1.0), ssvi(optax.sgd(0.1), **_SCHEDULE)),
      "multisteps": optax.MultiSteps(ssvi(optax.sgd(0.1), **_SCHEDULE), every_k_schedule=2),
      "inject": optax.inject_hyperparams(ssvi)(inner=optax.sgd(0.1), **_SCHEDULE),
  }
  for name, tx in wrapped.items():
    _, state = _run(tx, _params(), 12)
    get = lambda field: int(optax.tree_utils.tree_get(state, field))  # noqa: E731
    iterations = 6 if name == "multisteps" else 12  # MultiSteps calls ssvi every 2nd step
    assert get("topology_every") == 2 and get("topology_end_step") == 15, name  # round(0.75 * 20)
    # t = 2, 4, ..., iterations: the count topology_update_count gives, without re-deriving the schedule.
    assert get("topology_steps") == topology_update_count(iterations, update_every=2, end_step=15), name


def test_inject_hyperparams_without_static_args_matches_the_plain_transform():
  inner = optax.sgd(0.1, momentum=0.9)
  injected = optax.inject_hyperparams(ssvi)(inner=inner, **_SCHEDULE)  # the old code failed here
  p_ref, s_ref = _run(ssvi(inner, **_SCHEDULE), _params(), 5)
  p_inj, s_inj = _run(injected, _params(), 5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), p_inj, p_ref)
  assert int(s_inj.inner_state.topology_steps) == int(s_ref.topology_steps) == 2
  # The injected (traced) update_every moves the schedule: t = 6..10 has topology steps at 6 and 9 (not 8, 10).
  s_inj.hyperparams["update_every"] = jnp.asarray(3)
  update = jax.jit(injected.update)
  counts = []
  params = p_inj
  for s in range(5, 10):
    u, s_inj = update(_grads(params, s), s_inj, params)
    params = optax.apply_updates(params, u)
    counts.append(int(s_inj.inner_state.topology_steps))
  assert counts == [3, 3, 3, 4, 4]
  assert int(optax.tree_utils.tree_get(s_inj.inner_state, "topology_every")) == 3


def _mlp_step(tx, loss_kind):
  model = BayesMLP(8, 4, hidden=(16,), density=0.25, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  x = jax.random.normal(jax.random.key(1), (16, 8))
  y = jnp.arange(16) % 4

  def loss(p):
    m = nnx.merge(graphdef, p)
    kl = model_kl(m, prior_std=0.1)
    if loss_kind == "kl":  # the loss never calls the model: no gradient reaches inactive means
      return kl
    return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean() + 1e-3 * kl

  @jax.jit
  def step(p, s):
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s

  return params, step


def test_warns_once_when_the_loss_gives_inactive_means_no_gradient():
  tx = ssvi(optax.sgd(0.01), total_steps=20, update_every=2)
  params, step = _mlp_step(tx, "kl")
  state = tx.init(params)
  with pytest.warns(RuntimeWarning, match=r"ssvi: at a topology step the gradient .* zero on every inactive") as rec:
    for _ in range(6):  # topology steps at t = 2, 4, 6: one warning
      params, state = step(params, state)
    jax.effects_barrier()
  assert sum("ssvi:" in str(w.message) for w in rec) == 1
  assert "head" in str(rec[0].message) and "layers/0" not in str(rec[0].message)  # the dense layer is fine


def test_no_warning_when_the_loss_reaches_the_kernels():
  tx = ssvi(optax.sgd(0.01), total_steps=20, update_every=2)
  params, step = _mlp_step(tx, "ce")
  state = tx.init(params)
  with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter("always")
    for _ in range(4):
      params, state = step(params, state)
    jax.effects_barrier()
  assert not [w for w in rec if "ssvi:" in str(w.message)]
  assert int(state.topology_steps) == 2


def test_drop_and_grow_poisons_a_nonfinite_step_and_checks_fraction():
  rho = _rho(SIGMA)
  g = GRAD.copy()
  g[5] = np.nan  # an inactive entry's gradient: the old code ranked it silently
  _, mu, r = jax.jit(drop_and_grow)(jnp.asarray(MU), jnp.asarray(rho), jnp.asarray(g), jnp.asarray(MASK), 0.6)
  assert np.isnan(mu).all() and np.isnan(r).all()
  _, mu, _ = jax.jit(drop_and_grow)(jnp.asarray(MU), jnp.asarray(rho), jnp.asarray(GRAD), jnp.asarray(MASK), 1.5)
  assert np.isnan(mu).all()  # a traced fraction outside [0, 1)
  for bad in (1.0, -0.1, np.nan):
    with pytest.raises(ValueError, match="^fraction: must be"):
      drop_and_grow(jnp.asarray(MU), jnp.asarray(rho), jnp.asarray(GRAD), jnp.asarray(MASK), bad)
  # NumPy numbers are numbers.
  a = drop_and_grow(jnp.asarray(MU), jnp.asarray(rho), jnp.asarray(GRAD), jnp.asarray(MASK), np.float32(0.6))
  b = drop_and_grow(jnp.asarray(MU), jnp.asarray(rho), jnp.asarray(GRAD), jnp.asarray(MASK), 0.6)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_numpy_scalars_for_the_transform_and_its_schedule():
  a = ssvi(optax.sgd(0.1), total_steps=np.int64(20), update_every=np.int64(2), end_step=np.int32(15),
           drop_fraction=np.float32(0.5))
  b = ssvi(optax.sgd(0.1), **_SCHEDULE)
  pa, sa = _run(a, _params(), 4)
  pb, sb = _run(b, _params(), 4)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), pa, pb)
  assert int(sa.topology_steps) == int(sb.topology_steps) == 2
  sched = TopologySchedule(np.int64(10), np.asarray(100), np.float32(0.15))
  assert type(sched.update_every) is int and type(sched.end_step) is int
  with pytest.raises(ValueError, match="^end_step: must be an int"):
    TopologySchedule(10, 100.0)
  with pytest.raises(ValueError, match="^rho_name: must differ from `mu_name`"):
    ssvi(optax.sgd(0.1), total_steps=10, rho_name="kernel_mu")
  assert ssvi_sgd(0.1, total_steps=10, momentum=None) is not None  # plain SGD, as optax.sgd
