"""Experts Weights Averaging: the averaging rule, the random partition, the MoE layer, the collapse."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdyn import schemes
from jaxdyn.models import ViT

ARCH = dict(image_size=8, patch_size=4, dim=16, depth=3, num_heads=2)


def _experts(n=4, seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {"blk": {"experts": {"fc1": {"kernel": jax.random.normal(k1, (n, 3, 5)), "bias": jax.random.normal(k2, (n, 5))}},
                  "norm": {"scale": jnp.arange(3.0)}}}


def test_hand_worked_three_experts():
  # W = (0, 3, 6), beta = 1/2: W_i <- W_i / 2 + (1/4) sum_{j != i} W_j = (2.25, 3.0, 3.75).
  p = {"experts": {"w": jnp.array([0.0, 3.0, 6.0])}}
  np.testing.assert_allclose(schemes.average_experts(p, 0.5)["experts"]["w"], [2.25, 3.0, 3.75], rtol=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.75, 1.0])
def test_average_keeps_the_experts_mean_and_leaves_the_rest(beta):
  p = _experts()
  q = schemes.average_experts(p, beta)
  w, v = p["blk"]["experts"]["fc1"]["kernel"], q["blk"]["experts"]["fc1"]["kernel"]
  np.testing.assert_allclose(v.mean(0), w.mean(0), atol=1e-6)
  # Each expert's distance to the mean shrinks by |1 - beta N / (N - 1)|.
  np.testing.assert_allclose(v - v.mean(0), (1 - beta * 4 / 3) * (w - w.mean(0)), atol=1e-5)
  np.testing.assert_array_equal(q["blk"]["norm"]["scale"], p["blk"]["norm"]["scale"])


def test_share_rate_n_minus_one_over_n_makes_all_experts_the_mean():
  p = _experts(n=4)
  q = schemes.average_experts(p, 3 / 4)
  for leaf, orig in zip(jax.tree.leaves(q["blk"]["experts"]), jax.tree.leaves(p["blk"]["experts"])):
    np.testing.assert_allclose(leaf, np.broadcast_to(orig.mean(0), orig.shape), atol=1e-6)
  # beta = 1 (the spec's "share 1" in the other parametrisation) gives each the mean of the *others*.
  w = p["blk"]["experts"]["fc1"]["bias"]
  others = (w.sum(0) - w) / 3
  np.testing.assert_allclose(schemes.average_experts(p, 1.0)["blk"]["experts"]["fc1"]["bias"], others, atol=1e-6)


def test_average_keeps_bfloat16_and_reads_an_explicit_mask():
  p = {"a": jnp.array([[1.0], [3.0]], jnp.bfloat16), "b": jnp.array([[1.0], [3.0]])}
  q = schemes.average_experts(p, 0.5, mask={"a": False, "b": True})
  assert q["a"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(q["a"], p["a"])
  np.testing.assert_allclose(q["b"].ravel(), [2.0, 2.0])
  # A prefix mask covers its sub-tree.
  nested = {"moe": {"w": jnp.array([[0.0], [2.0]]), "b": jnp.array([1.0, 3.0])}, "head": jnp.ones(2)}
  q = schemes.average_experts(nested, 0.5, mask={"moe": True, "head": False})
  np.testing.assert_allclose(q["moe"]["b"], [2.0, 2.0])
  np.testing.assert_array_equal(q["head"], nested["head"])
  with pytest.raises(ValueError, match="mask: selects a leaf of shape"):
    schemes.average_experts({"experts": jnp.ones((1, 3))}, 0.5)


@pytest.mark.parametrize("m,n", [(0, 3), (1, 3), (7, 3), (12, 4), (65, 4), (10, 1)])
def test_random_partition_is_balanced_and_a_permutation(m, n):
  slots = np.asarray(schemes.random_partition(jax.random.key(m), m, n))
  assert slots.shape == (n, -(-m // n))
  real = slots[slots < m]
  np.testing.assert_array_equal(np.sort(real), np.arange(m))
  loads = (slots < m).sum(1)
  assert loads.max() - loads.min() <= 1


def test_random_partition_changes_with_the_key():
  a = schemes.random_partition(jax.random.key(0), 64, 4)
  b = schemes.random_partition(jax.random.key(1), 64, 4)
  assert not np.array_equal(a, b)


def test_moe_layer_runs_each_token_through_its_assigned_expert():
  moe = schemes.MoEFeedForward(3, 5, 4, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 7, 3))
  key = jax.random.key(2)
  y = moe(x, key=key)
  slots = np.asarray(schemes.random_partition(key, 14, 4))
  tokens = np.asarray(x).reshape(14, 3)
  w1, b1 = np.asarray(moe.fc1["kernel"][...]), np.asarray(moe.fc1["bias"][...])
  w2, b2 = np.asarray(moe.fc2["kernel"][...]), np.asarray(moe.fc2["bias"][...])
  want = np.zeros((14, 3), np.float32)
  for e in range(4):
    for t in slots[e][slots[e] < 14]:
      want[t] = np.asarray(nnx.gelu(tokens[t] @ w1[e] + b1[e])) @ w2[e] + b2[e]
  np.testing.assert_allclose(np.asarray(y).reshape(14, 3), want, atol=1e-5)
  # Without a key: the FFN with the mean weights.
  mean = np.asarray(nnx.gelu(tokens @ w1.mean(0) + b1.mean(0))) @ w2.mean(0) + b2.mean(0)
  np.testing.assert_allclose(np.asarray(moe(x)).reshape(14, 3), mean, atol=1e-5)


def test_moe_gradients_reach_only_the_experts_that_saw_tokens():
  moe = schemes.MoEFeedForward(3, 4, 4, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 3))  # 2 tokens, 4 experts: two experts get nothing
  key = jax.random.key(5)
  graphdef, state = nnx.split(moe)
  g = jax.grad(lambda s: jnp.sum(nnx.merge(graphdef, s)(x, key=key) ** 2))(state)
  used = np.asarray(schemes.random_partition(key, 2, 4))[:, 0] < 2
  gk = np.abs(np.asarray(g["fc2"]["kernel"][...])).sum((1, 2))
  assert (gk[used] > 0).all() and (gk[~used] == 0).all()


def test_collapsed_vit_is_a_plain_vit_computing_the_moe_vits_inference():
  m = ViT(1, 5, num_experts=4, moe_layers=(1, 2), **ARCH, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  params = nnx.to_pure_dict(nnx.state(m, nnx.Param))
  plain = ViT(1, 5, **ARCH, rngs=nnx.Rngs(1))
  collapsed = schemes.collapse_experts(params)
  assert jax.tree.structure(collapsed) == jax.tree.structure(nnx.to_pure_dict(nnx.state(plain, nnx.Param)))
  nnx.update(plain, collapsed)
  np.testing.assert_array_equal(plain(x), m(x))
  # The collapse is the experts' mean: after a full average the MoE trains like its collapse.
  avg = schemes.average_experts(params, 3 / 4)
  nnx.update(m, avg)
  key = jax.random.key(4)
  np.testing.assert_allclose(m(x, train=True, key=key), plain(x), atol=1e-5)


def test_vit_moe_needs_a_key_in_training_and_checks_its_layers():
  m = ViT(1, 5, num_experts=2, moe_layers=(0,), **ARCH, rngs=nnx.Rngs(0))
  x = jnp.ones((2, 8, 8, 1))
  with pytest.raises(ValueError, match="key: a jax.random key is required in training with moe_layers"):
    m(x, train=True)
  a = m(x, train=True, key=jax.random.key(0))
  b = m(x, train=True, key=jax.random.key(0))
  np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="moe_layers: must be an int in"):
    ViT(1, 5, num_experts=2, moe_layers=(3,), **ARCH, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="num_experts: must be an int >= 2"):
    ViT(1, 5, num_experts=1, moe_layers=(0,), **ARCH, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="moe_layers: must not repeat"):
    ViT(1, 5, num_experts=2, moe_layers=(0, 0), **ARCH, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="moe_layers: MoE feed-forward layers are not available with mesa"):
    ViT(1, 5, num_experts=2, moe_layers=(0,), mesa=True, **ARCH, rngs=nnx.Rngs(0))


def test_transform_after_sgd_gives_the_averaged_new_weights():
  p = _experts()
  g = jax.tree.map(jnp.ones_like, p)
  tx = optax.chain(optax.sgd(0.1), schemes.experts_weights_averaging(0.3))
  updates, state = tx.update(g, tx.init(p), p)
  got = optax.apply_updates(p, updates)
  want = schemes.average_experts(jax.tree.map(lambda a: a - 0.1, p), 0.3)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), got, want)
  assert int(state[1].count) == 1
  with pytest.raises(ValueError, match="params: experts_weights_averaging needs params"):
    tx.update(g, tx.init(p))


def test_share_rate_schedule_reads_the_count():
  sched = schemes.share_rate_warmup(0.3, 10)
  assert float(sched(0)) == 0.0 and float(sched(5)) == pytest.approx(0.15) and float(sched(50)) == pytest.approx(0.3)
  p = {"experts": {"w": jnp.array([0.0, 4.0])}}
  zero = jax.tree.map(jnp.zeros_like, p)
  tx = schemes.experts_weights_averaging(sched)
  state = tx.init(p)
  u0, state = jax.jit(tx.update)(zero, state, p)  # beta_0 = 0: nothing moves
  np.testing.assert_array_equal(u0["experts"]["w"], 0.0)
  state = state._replace(count=jnp.asarray(5, jnp.int32))
  u5, _ = jax.jit(tx.update)(zero, state, p)  # beta = 0.15, N = 2: move 0.3 of the way to the mean 2
  np.testing.assert_allclose(u5["experts"]["w"], [0.6, -0.6], atol=1e-6)
  # Injected as a hyperparameter, zero share rate leaves the new weights as the inner step made them.
  inj = optax.inject_hyperparams(schemes.experts_weights_averaging)(share_rate=0.5)
  s = inj.init(p)
  s.hyperparams["share_rate"] = jnp.asarray(0.0)
  u, _ = inj.update({"experts": {"w": jnp.array([1.0, -1.0])}}, s, p)
  np.testing.assert_allclose(u["experts"]["w"], [1.0, -1.0])


def test_nonfinite_expert_reaches_every_expert():
  p = {"experts": {"w": jnp.array([0.0, jnp.nan, 1.0])}}
  assert np.isnan(schemes.average_experts(p, 0.2)["experts"]["w"]).all()


def test_expert_mask_marks_only_leaves_under_experts():
  m = ViT(1, 5, num_experts=2, moe_layers=(1,), **ARCH, rngs=nnx.Rngs(0))
  params = nnx.to_pure_dict(nnx.state(m, nnx.Param))
  mask = schemes.expert_mask(params)
  assert sum(jax.tree.leaves(mask)) == 4
  assert all(jax.tree.leaves(mask["blocks"][1]["experts"]))
  # The same on an nnx.State (attribute and key path entries).
  assert sum(jax.tree.leaves(schemes.expert_mask(nnx.state(m, nnx.Param)))) == 4


def test_vit_partition_inference_is_a_fixed_draw_unlike_the_mean():
  m = ViT(1, 5, num_experts=4, moe_layers=(0, 2), moe_inference="partition", **ARCH, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
  a, b = m(x), m(x)
  np.testing.assert_array_equal(a, b)
  mean = ViT(1, 5, num_experts=4, moe_layers=(0, 2), **ARCH, rngs=nnx.Rngs(0))
  assert np.abs(np.asarray(a) - np.asarray(mean(x))).max() > 1e-4
  np.testing.assert_array_equal(m.features(x), m(x, return_features=True)[1])
  with pytest.raises(ValueError, match="moe_inference: must be one of"):
    ViT(1, 5, num_experts=4, moe_layers=(0,), moe_inference="router", **ARCH, rngs=nnx.Rngs(0))
