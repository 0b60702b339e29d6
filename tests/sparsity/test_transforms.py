"""The sparse-training wrappers: densities on schedule, drop-and-regrow by hand, masks through Adam,
and each difference between GraNet's paper (the default) and its code (``official_compat=True``)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdyn.sparsity import (
    PruningSchedule,
    SparseState,
    apply_masks,
    drop_and_regrow,
    gmp,
    granet,
    mask_stats,
    rigl,
    set_sparse,
    static_sparse,
)


def _params(seed=0):
  k = jax.random.split(jax.random.key(seed), 3)
  return {"a": {"kernel": jax.random.normal(k[0], (16, 24)), "bias": jnp.zeros(24)},
          "b": {"kernel": jax.random.normal(k[1], (3, 8, 12))},
          "c": {"kernel": jax.random.normal(k[2], (24, 10))}}


def _grads(params, seed):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(100 + seed), len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def _run(tx, params, steps, each=None):
  state = tx.init(params)
  step = jax.jit(tx.update)
  for t in range(1, steps + 1):
    updates, state = step(_grads(params, t), state, params)
    params = optax.apply_updates(params, updates)
    if each is not None:
      each(t, params, state)
  return params, state


N_SPARSE = 16 * 24 + 3 * 8 * 12 + 24 * 10


def _inactive_are_zero(params, state):
  for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(state.masks)):
    if m.ndim:
      np.testing.assert_array_equal(np.asarray(p)[~np.asarray(m)], 0.0)


def test_drop_and_regrow_by_hand():
  w = jnp.array([[0.5, -0.05, 0.0], [2.0, 0.2, 0.0]])
  g = jnp.array([[9.0, 0.0, 0.3], [0.0, 0.0, -4.0]])
  mask = jnp.array([[True, True, False], [True, True, False]])
  new, grown = drop_and_regrow(w, jnp.abs(g), mask, 2)
  # Drop the two smallest active |w| (-0.05, 0.2); regrow the two largest |g| outside the kept set
  # (-4.0 at [1, 2] and 0.3 at [0, 2]; the dropped entries have |g| 0).
  assert new.tolist() == [[True, False, True], [True, False, True]]
  assert grown.tolist() == [[False, False, True], [False, False, True]]
  # Just-dropped entries can be regrown (RigL): with a large gradient there they come back, as new.
  new, grown = drop_and_regrow(w, jnp.array([[0.0, 7.0, 0.0], [0.0, 0.0, 0.0]]), mask, 1)
  assert new.tolist() == mask.tolist() and grown.tolist() == [[False, True, False], [False, False, False]]


def test_drop_and_regrow_conserves_counts_on_random_layers():
  for seed in range(5):
    k = jax.random.split(jax.random.key(seed), 3)
    mask = jax.random.bernoulli(k[0], 0.3, (40, 30))
    w = jnp.where(mask, jax.random.normal(k[1], (40, 30)), 0.0)
    for n in (0, 1, 17, int(mask.sum())):
      new, grown = drop_and_regrow(w, jax.random.normal(k[2], (40, 30)), mask, n)
      assert int(new.sum()) == int(mask.sum())
      assert int((grown & new).sum()) == int(grown.sum()) == n


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_gmp_density_after_every_update_is_the_schedule(scope):
  sched = PruningSchedule(final_density=0.1, start_step=2, end_step=20, update_every=3)
  seen = []

  def check(t, params, state):
    stats = mask_stats(state.masks, params)
    target = round(float(sched.density(t)) * N_SPARSE) if bool(sched.is_update_step(t)) else None
    if target is not None:
      assert stats["sparse_active"] == target, (t, stats)
      seen.append(t)
    _inactive_are_zero(params, state)

  _, state = _run(gmp(optax.adam(1e-2), schedule=sched, scope=scope), _params(), 24, check)
  assert seen == [3, 6, 9, 12, 15, 18, 20]
  assert mask_stats(state.masks)["sparse_active"] == round(0.1 * N_SPARSE)
  if scope == "layer":  # every layer at d_f (up to the rounding of the global count)
    for m in jax.tree.leaves(state.masks):
      if m.ndim:
        assert abs(float(m.mean()) - 0.1) <= 1.0 / m.size


def test_gmp_global_keeps_the_largest_magnitudes():
  params = {"w": jnp.array([[1.0, -5.0, 0.5, 3.0]]), "v": jnp.array([[-2.0, 0.1], [4.0, 0.2]])}
  tx = gmp(optax.sgd(0.0), schedule=PruningSchedule(final_density=0.5, end_step=1, update_every=1), scope="global")
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  out = optax.apply_updates(params, updates)
  assert out["w"].tolist() == [[0.0, -5.0, 0.0, 3.0]] and out["v"].tolist() == [[-2.0, 0.0], [4.0, 0.0]]


def test_granet_density_follows_the_schedule_and_regrowth_conserves_it():
  sched = PruningSchedule(final_density=0.05, start_step=0, end_step=40, update_every=5)
  seen = []

  def check(t, params, state):
    if bool(sched.is_update_step(t)):
      assert mask_stats(state.masks, params)["sparse_active"] == round(float(sched.density(t)) * N_SPARSE)
      seen.append(t)
    _inactive_are_zero(params, state)

  _, state = _run(granet(optax.sgd(0.05, momentum=0.9), schedule=sched), _params(), 45, check)
  assert seen == list(range(5, 41, 5)) and int(state.topology_steps) == 8
  assert float(state.density) == pytest.approx(round(0.05 * N_SPARSE) / N_SPARSE)


def _one_granet_step(official_compat, w, g, *, init_mask=None, density=0.5, drop=0.5):
  """One update (iteration 1 = tf) of granet with a zero learning rate."""
  params = {"w": w}
  sched = PruningSchedule(final_density=density, end_step=1, update_every=1)
  tx = granet(optax.sgd(0.0), schedule=sched, drop_fraction=drop, min_drop_fraction=drop,
              official_compat=official_compat, total_steps=10)
  state = tx.init(params)
  if init_mask is not None:
    state = state._replace(masks={"w": init_mask})
  updates, state = tx.update({"w": g}, state, params)
  return optax.apply_updates(params, updates)["w"], state


def test_granet_paper_step_by_hand():
  # 8 weights, d = 0.5: the global prune keeps the 4 largest |w| (5, 4, 3, 2); regeneration drops
  # ceil(0.5 * 4) = 2 of them (the smallest: 2 and 3) and regrows 2 at the largest |g| outside
  # the kept set: positions 0 and 7. Every regrown weight starts at 0.
  w = jnp.array([[0.1, 5.0, -4.0, 3.0, 2.0, 0.2, 0.3, 0.4]])
  g = jnp.array([[9.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 8.0]])
  out, state = _one_granet_step(False, w, g)
  assert state.masks["w"].tolist() == [[True, True, True, False, False, False, False, True]]
  assert out.tolist() == [[0.0, 5.0, -4.0, 0.0, 0.0, 0.0, 0.0, 0.0]]


def test_official_compat_global_prune_keeps_strictly_above_the_kth():
  # Ties at the k-th largest |w| (k = 4): the paper keeps exactly 4, the code only those above it (3).
  w = jnp.array([[5.0, 4.0, 3.0, 2.0, 2.0, 2.0, 0.5, 0.1]])
  g = jnp.zeros_like(w)
  for compat, kept in ((False, 4), (True, 3)):
    # d = 0.5 throughout; the code prunes at t < tf, so tf = 2 and the step is t = 1.
    sched = PruningSchedule(final_density=0.5, init_density=0.5, end_step=2, update_every=1)
    tx = granet(optax.sgd(0.0), schedule=sched, key=jax.random.key(0), official_compat=compat, total_steps=2)
    state = tx.init({"w": w})._replace(masks={"w": jnp.ones(w.shape, bool)})  # start dense
    _, state = tx.update({"w": g}, state, {"w": w})
    # Regeneration conserves the count, so the pruned count shows.
    assert int(state.masks["w"].sum()) == kept, compat


def test_official_compat_last_prune_one_update_early():
  sched = PruningSchedule(final_density=0.1, start_step=0, end_step=20, update_every=5)
  for compat in (False, True):
    tx = granet(optax.sgd(0.01), schedule=sched, official_compat=compat, total_steps=30)
    _, state = _run(tx, _params(), 30)
    got = mask_stats(state.masks)["sparse_active"]
    if compat:  # the last prune at t = 15: d(15) = 0.1 + 0.9 (1/4)^3, and strictly above the k-th: k - 1
      assert got == round(float(sched.density(15)) * N_SPARSE) - 1 > round(0.1 * N_SPARSE)
    else:
      assert got == round(0.1 * N_SPARSE)


def test_official_compat_regeneration_continues_after_the_window():
  sched = PruningSchedule(final_density=0.2, end_step=10, update_every=5)
  counts = {}
  for compat in (False, True):
    tx = granet(optax.sgd(0.01), schedule=sched, official_compat=compat, total_steps=30)
    _, state = _run(tx, _params(), 30)
    counts[compat] = int(state.topology_steps)
  assert counts == {False: 2, True: 6}


def test_official_compat_dropped_and_regrown_weights_keep_their_values():
  # Dense start (d = 1 -> 1 at this step: no global prune); regeneration drops the 2 smallest |w|
  # (0.1 and 0.2) and regrows 2 by |g|: the gradient is largest exactly there, so they come back.
  w = jnp.array([[0.1, 5.0, -4.0, 0.2]])
  g = jnp.array([[9.0, 0.0, 0.0, 8.0]])
  paper, _ = _one_granet_step(False, w, g, density=1.0)
  code, _ = _one_granet_step(True, w, g, density=1.0)
  assert paper.tolist() == [[0.0, 5.0, -4.0, 0.0]]  # every regrown weight starts at 0
  assert code.tolist() == w.tolist()  # the code keeps the old values


def test_official_compat_death_rate_decays_over_the_run():
  from jaxdyn.sparsity import DropSchedule
  # Paper: over [t0, tf]; at tf the rate is r_min. Code: over the whole run T = 1000.
  paper = DropSchedule(end_step=300, start_step=100, drop_fraction=0.5, min_fraction=0.005, update_every=100)
  code = DropSchedule(end_step=1000, drop_fraction=0.5, min_fraction=0.005, update_every=100)
  assert float(paper.fraction(300)) == pytest.approx(0.005)
  assert float(code.fraction(300)) == pytest.approx(0.005 + 0.495 * 0.5 * (1 + np.cos(np.pi * 0.3)), rel=1e-6)


def test_masked_entries_stay_exactly_zero_through_adam_and_momentum():
  for inner in (optax.adam(1e-2), optax.sgd(0.1, momentum=0.9), optax.adamw(1e-2, weight_decay=0.1)):
    tx = static_sparse(inner, density=0.2, key=jax.random.key(3))
    params = _params()
    state = tx.init(params)
    params = apply_masks(params, state)
    for t in range(5):
      updates, state = tx.update(_grads(params, t), state, params)
      params = optax.apply_updates(params, updates)
      _inactive_are_zero(params, state)
      mu = optax.tree_utils.tree_get(state.inner_state, "mu") or optax.tree_utils.tree_get(state.inner_state, "trace")
      for m, x in zip(jax.tree.leaves(state.masks), jax.tree.leaves(mu)):
        if m.ndim:
          np.testing.assert_array_equal(np.asarray(x)[~np.asarray(m)], 0.0)
    assert mask_stats(state.masks)["sparse_active"] == round(0.2 * N_SPARSE)


def test_rigl_regrows_at_the_largest_gradient_at_zero_and_set_randomly():
  params = _params()
  for fn in (rigl, set_sparse):
    tx = fn(optax.sgd(0.0), density=0.3, key=jax.random.key(0), end_step=10, update_every=1, drop_fraction=0.3)
    state = tx.init(params)
    p0 = apply_masks(params, state)
    g = _grads(p0, 0)
    updates, state2 = tx.update(g, state, p0)
    p1 = optax.apply_updates(p0, updates)
    for name in ("a", "b", "c"):
      m0, m1 = np.asarray(state.masks[name]["kernel"]), np.asarray(state2.masks[name]["kernel"])
      assert m0.sum() == m1.sum()  # conserved per layer
      new = m1 & ~m0
      n = int(np.floor(float(0.15 * (1 + np.cos(np.pi / 10))) * m0.sum()))
      assert new.sum() <= n and (m0 & ~m1).sum() == new.sum()
      np.testing.assert_array_equal(np.asarray(p1[name]["kernel"])[new], 0.0)
      if fn is rigl and new.sum():
        gg = np.abs(np.asarray(g[name]["kernel"]))
        kept = m1 & ~new
        # Every regrown entry has a |g| at least that of any inactive entry that was not regrown.
        assert gg[new].min() >= gg[~kept & ~new].max()


def test_static_masks_never_change_and_a_chain_after_the_wrapper_breaks_nothing_before():
  tx = optax.chain(optax.clip_by_global_norm(1.0), static_sparse(optax.adam(1e-2), density=0.1, key=jax.random.key(0)))
  params, state = _run(tx, _params(), 6)
  s = [x for x in state if isinstance(x, SparseState)][0]
  m0 = tx.init(_params())[1].masks
  jax.tree.map(np.testing.assert_array_equal, m0, s.masks)
  _inactive_are_zero(params, s)


def test_granet_sparse_to_sparse_starts_from_erk_masks():
  sched = PruningSchedule(final_density=0.05, init_density=0.3, end_step=20, update_every=5)
  tx = granet(optax.sgd(0.01), schedule=sched, key=jax.random.key(0))
  assert mask_stats(tx.init(_params()).masks)["sparse_active"] == round(0.3 * N_SPARSE)
  with pytest.raises(ValueError, match="key:"):
    granet(optax.sgd(0.01), schedule=sched)


def test_nonfinite_gradients_do_not_silently_move_masks():
  params = _params()
  tx = rigl(optax.sgd(0.1), density=0.3, key=jax.random.key(0), end_step=10, update_every=1)
  state = tx.init(params)
  g = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), _grads(params, 0))
  updates, _ = tx.update(g, state, params)
  assert any(bool(jnp.isnan(u).any()) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("nonfinite", [jnp.nan, jnp.inf])
def test_nonfinite_gradient_at_a_masked_entry_reaches_the_update(nonfinite):
  params = _params()
  tx = set_sparse(optax.adam(0.1), density=0.3, key=jax.random.key(0), end_step=10, update_every=5)
  state = tx.init(params)
  g = _grads(params, 0)
  masks, leaves = jax.tree.leaves(state.masks), jax.tree.leaves(g)
  i = next(j for j, m in enumerate(masks) if m.ndim and not bool(m.all()))
  where_off = tuple(int(c[0]) for c in jnp.nonzero(~masks[i]))
  leaves[i] = leaves[i].at[where_off].set(nonfinite)
  updates, _ = tx.update(jax.tree.unflatten(jax.tree.structure(g), leaves), state, params)
  assert bool(jnp.isnan(jax.tree.leaves(updates)[i][where_off]))
  # every other entry is untouched by it
  clean, _ = tx.update(g, state, params)
  for j, (u, c) in enumerate(zip(jax.tree.leaves(updates), jax.tree.leaves(clean))):
    if j != i:
      np.testing.assert_array_equal(u, c)
