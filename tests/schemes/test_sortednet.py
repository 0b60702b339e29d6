"""SortedNet: the ladder, the sampler, sliced forwards, zero gradients outside the slice, export, evaluation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdyn import schemes
from jaxdyn.models import MLP
from jaxdyn.schemes import SortedMLP, SortedViT, SubModel

VIT = dict(image_size=8, patch_size=4, dim=16, depth=3, num_heads=4, mlp_dim=12)


def _hand_mlp():
  """in 2, hidden 2, depth 2, 2 classes, with hand-set weights."""
  m = SortedMLP(2, 2, hidden=2, depth=2, rngs=nnx.Rngs(0))
  nnx.update(m, {"layers": {0: {"kernel": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "bias": jnp.array([0.5, -1.0])},
                            1: {"kernel": jnp.array([[1.0, 0.0], [1.0, -1.0]]), "bias": jnp.array([0.0, 2.0])}},
                 "head": {"kernel": jnp.array([[1.0, -1.0], [2.0, 0.0]]), "bias": jnp.array([0.0, 1.0])}})
  return m


def test_hand_worked_sub_models_of_an_mlp():
  m = _hand_mlp()
  x = jnp.array([[1.0, 1.0]])
  # Layer 1 on x = (1, 1): (1 + 3 + 0.5, 2 + 4 - 1) = (4.5, 5).
  # width 2, depth 1: head(4.5, 5) = 4.5 (1, -1) + 5 (2, 0) + (0, 1) = (14.5, -3.5).
  np.testing.assert_allclose(m(x, submodel=SubModel(1, 2)), [[14.5, -3.5]])
  # width 1, depth 1: the first unit only, the first row of the head: 4.5 (1, -1) + (0, 1) = (4.5, -3.5).
  np.testing.assert_allclose(m(x, submodel=SubModel(1, 1)), [[4.5, -3.5]])
  # Full: layer 2 on (4.5, 5): relu(4.5 + 5, -5 + 2) = (9.5, 0); head: (9.5, -9.5) + (0, 1) = (9.5, -8.5).
  np.testing.assert_allclose(m(x), [[9.5, -8.5]])
  # width 1, depth 2: layer 2 on (4.5,): relu(4.5 * 1 + 0) = 4.5; head: (4.5, -4.5) + (0, 1) = (4.5, -3.5).
  np.testing.assert_allclose(m(x, submodel=SubModel(2, 1)), [[4.5, -3.5]])


def test_largest_sub_model_is_the_full_model():
  m = SortedMLP(10, 4, hidden=16, depth=3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (5, 10))
  ladder = schemes.sorted_ladder(m.full_submodel, 8)
  assert ladder[-1] == m.full_submodel == SubModel(3, 16)
  np.testing.assert_array_equal(m(x, submodel=ladder[-1]), m(x))
  # ... and the full model is the plain MLP with these weights.
  plain = MLP(10, 4, hidden=(16, 16, 16), rngs=nnx.Rngs(5))
  nnx.update(plain, nnx.to_pure_dict(nnx.state(m, nnx.Param)))
  np.testing.assert_allclose(m(x), plain(x), rtol=1e-6, atol=1e-6)
  v = SortedViT(1, 5, **VIT, rngs=nnx.Rngs(0))
  xi = jax.random.normal(jax.random.key(2), (2, 8, 8, 1))
  full = schemes.sorted_ladder(v.full_submodel, 4, along=("heads", "width", "depth"))[-1]
  assert full == v.full_submodel == SubModel(3, 12, 4)
  np.testing.assert_array_equal(v(xi, submodel=full), v(xi))


def _reference_block(block, x, heads, width):
  """NumPy transformer block with ``heads`` heads and ``width`` FFN units, from the block's full weights."""
  def ln(z, norm):
    mu, var = z.mean(-1, keepdims=True), z.var(-1, keepdims=True)
    return (z - mu) / np.sqrt(var + 1e-6) * np.asarray(norm.scale[...]) + np.asarray(norm.bias[...])
  x = np.asarray(x, np.float64)
  qkv, qb = np.asarray(block.qkv[...], np.float64), np.asarray(block.qkv_bias[...], np.float64)
  out, ob = np.asarray(block.out[...], np.float64), np.asarray(block.out_bias[...], np.float64)
  y = ln(x, block.norm1)
  att_out = np.zeros_like(x)
  for a in range(heads):  # the first `heads` heads only, summed through their rows of the output kernel
    q, k, v = (y @ qkv[:, s, a] + qb[s, a] for s in range(3))
    s = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    att_out += (p @ v) @ out[a]
  x = x + att_out + ob
  w1, b1 = np.asarray(block.fc1.kernel[...])[:, :width], np.asarray(block.fc1.bias[...])[:width]
  w2, b2 = np.asarray(block.fc2.kernel[...])[:width], np.asarray(block.fc2.bias[...])
  h = np.asarray(nnx.gelu(jnp.asarray(ln(x, block.norm2) @ w1 + b1, jnp.float32)), np.float64)
  return x + h @ w2 + b2


@pytest.mark.parametrize("heads,width", [(1, 3), (2, 12), (4, 5), (4, 12)])
def test_vit_block_slices_leading_heads_and_ffn_units(heads, width):
  v = SortedViT(1, 5, **VIT, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(3), (2, 5, 16))
  got = v.blocks[0](x, heads, width)
  np.testing.assert_allclose(got, _reference_block(v.blocks[0], x, heads, width), rtol=2e-4, atol=2e-4)


def _grads(model, x, y, ladder, key, **kw):
  graphdef, state = nnx.split(model)
  def f(s):
    return schemes.sortednet_loss(nnx.merge(graphdef, s), x, y, ladder, key, **kw)[0]
  return nnx.to_pure_dict(jax.jit(jax.grad(f))(state))


@pytest.mark.parametrize("seed", [0, 1])  # keys that draw SubModel(2, 5) and SubModel(1, 3)
def test_gradients_outside_the_sampled_slice_are_exactly_zero_mlp(seed):
  m = SortedMLP(6, 3, hidden=8, depth=3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (16, 6))
  y = jnp.arange(16) % 3
  ladder = (SubModel(1, 3), SubModel(2, 5), SubModel(3, 8))
  key = jax.random.key(seed)
  (i,) = np.asarray(schemes.sample_submodels(jax.random.fold_in(key, 0), 3, 1))
  s = ladder[i]
  assert s == ladder[1 - seed]  # a strict sub-model is drawn
  g = _grads(m, x, y, ladder, key)
  for layer in range(3):
    k, b = np.asarray(g["layers"][layer]["kernel"]), np.asarray(g["layers"][layer]["bias"])
    if layer >= s.depth:
      assert (k == 0).all() and (b == 0).all()
      continue
    rows = 6 if layer == 0 else s.width
    inside = np.zeros_like(k, bool)
    inside[:rows, :s.width] = True
    assert (k[~inside] == 0).all() and (b[s.width:] == 0).all()
    assert np.count_nonzero(k[inside]) > 0.5 * inside.sum()
  hk = np.asarray(g["head"]["kernel"])
  assert (hk[s.width:] == 0).all() and (np.abs(hk[:s.width]).sum(1) > 0).all()


def test_gradients_outside_the_sampled_slice_are_exactly_zero_vit():
  v = SortedViT(1, 5, **VIT, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  y = jnp.arange(4) % 5
  s = SubModel(2, 5, 3)
  g = _grads(v, x, y, (s,), jax.random.key(0))
  for i in range(3):
    blk = g["blocks"][i]
    if i >= s.depth:
      assert all((np.asarray(a) == 0).all() for a in jax.tree.leaves(blk))
      continue
    qkv, out = np.asarray(blk["qkv"]), np.asarray(blk["out"])
    assert (qkv[:, :, s.heads:] == 0).all() and (np.asarray(blk["qkv_bias"])[:, s.heads:] == 0).all()
    assert (out[s.heads:] == 0).all() and (np.abs(out[:s.heads]).sum((1, 2)) > 0).all()
    assert (np.abs(qkv[:, :, :s.heads]).sum((0, 1, 3)) > 0).all()
    fc1, fc2 = np.asarray(blk["fc1"]["kernel"]), np.asarray(blk["fc2"]["kernel"])
    assert (fc1[:, s.width:] == 0).all() and (np.asarray(blk["fc1"]["bias"])[s.width:] == 0).all()
    assert (fc2[s.width:] == 0).all() and (np.abs(fc2[:s.width]).sum(1) > 0).all()


def test_loss_is_the_mean_over_micro_batches_of_the_sampled_sub_models():
  m = SortedMLP(6, 3, hidden=8, depth=2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (12, 6))
  y = jnp.arange(12) % 3
  ladder = schemes.sorted_ladder(m.full_submodel, 4)
  key = jax.random.key(3)
  loss, aux = schemes.sortednet_loss(m, x, y, ladder, key, num_samples=3)
  idx = np.asarray(schemes.sample_submodels(jax.random.fold_in(key, 0), 4, 3))
  np.testing.assert_array_equal(aux["indices"], idx)
  parts = [m(x[4 * j:4 * j + 4], submodel=ladder[idx[j]]) for j in range(3)]
  want = np.mean([optax.softmax_cross_entropy_with_integer_labels(p, y[4 * j:4 * j + 4]).mean()
                  for j, p in enumerate(parts)])
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  np.testing.assert_allclose(aux["logits"], np.concatenate(parts), rtol=1e-6)
  # share_batch: every sampled sub-model on the whole batch; the gradient is the mean of theirs.
  loss, aux = schemes.sortednet_loss(m, x, y, ladder, key, num_samples=3, share_batch=True)
  want = np.mean([optax.softmax_cross_entropy_with_integer_labels(m(x, submodel=ladder[i]), y).mean() for i in idx])
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  g = _grads(m, x, y, ladder, key, num_samples=3, share_batch=True)
  gs = [_grads(m, x, y, (ladder[i],), key) for i in idx]
  for got, *each in zip(jax.tree.leaves(g), *(jax.tree.leaves(t) for t in gs)):
    np.testing.assert_allclose(got, np.mean(each, 0), rtol=1e-5, atol=1e-7)


def test_loss_checks_and_nan_labels_under_jit():
  m = SortedMLP(6, 3, hidden=8, rngs=nnx.Rngs(0))
  x, y, ladder = jnp.ones((6, 6)), jnp.zeros(6, jnp.int32), schemes.sorted_ladder(m.full_submodel, 2)
  with pytest.raises(ValueError, match="x: a batch of 6 examples must split into num_samples=4"):
    schemes.sortednet_loss(m, x, y, ladder, jax.random.key(0), num_samples=4)
  with pytest.raises(ValueError, match=r"submodels: width must be an int in \[1, 8\], got 9"):
    schemes.sortednet_loss(m, x, y, (SubModel(1, 9),), jax.random.key(0))
  with pytest.raises(ValueError, match=r"labels: must lie in \[0, 3\)"):
    schemes.sortednet_loss(m, x, y.at[2].set(3), ladder, jax.random.key(0))
  graphdef, state = nnx.split(m)
  f = jax.jit(lambda s, yy: schemes.sortednet_loss(nnx.merge(graphdef, s), x, yy, ladder, jax.random.key(0))[0])
  assert np.isnan(f(state, y.at[2].set(-1)))
  assert np.isfinite(f(state, y))


def test_sorted_ladder_numbers():
  assert [s.width for s in schemes.sorted_ladder(SubModel(2, 64), 8)] == [8, 16, 24, 32, 40, 48, 56, 64]
  # ceil(10 k / 4) = 3, 5, 8, 10.
  assert [s.width for s in schemes.sorted_ladder(SubModel(2, 10), 4)] == [3, 5, 8, 10]
  # Width and depth together: depth ceil(3 k / 6) = 1, 1, 2, 2, 3, 3; width 2 k.
  lad = schemes.sorted_ladder(SubModel(3, 12), 6, along=("width", "depth"))
  assert [(s.depth, s.width) for s in lad] == [(1, 2), (1, 4), (2, 6), (2, 8), (3, 10), (3, 12)]
  lad = schemes.sorted_ladder(SubModel(4, 32, 4), 4, along=("heads",))
  assert lad == tuple(SubModel(4, 32, h) for h in (1, 2, 3, 4))
  for a, b in zip(lad, lad[1:]):  # nested: each one a slice of the next
    assert all(getattr(a, d) <= getattr(b, d) for d in ("depth", "width", "heads"))
  with pytest.raises(ValueError, match="num_submodels: must be at most 3"):
    schemes.sorted_ladder(SubModel(3, 64), 4, along=("depth",))
  with pytest.raises(ValueError, match="along: 'heads' needs"):
    schemes.sorted_ladder(SubModel(3, 64), 2, along=("heads",))
  with pytest.raises(ValueError, match="along: must not repeat"):
    schemes.sorted_ladder(SubModel(3, 64), 2, along=("width", "width"))


def test_sampler_is_uniform_and_a_pure_function_of_the_key():
  key = jax.random.key(11)
  a = schemes.sample_submodels(key, 8, 5)
  np.testing.assert_array_equal(a, schemes.sample_submodels(key, 8, 5))
  np.testing.assert_array_equal(a, jax.random.randint(key, (5,), 0, 8))
  assert a.dtype == jnp.int32
  assert not np.array_equal(a, schemes.sample_submodels(jax.random.key(12), 8, 5))
  draws = np.asarray(schemes.sample_submodels(key, 8, 80_000))
  counts = np.bincount(draws, minlength=8)
  assert counts.sum() == 80_000 and draws.min() == 0 and draws.max() == 7
  # Each count is Binomial(80000, 1/8): mean 10000, std 93.5; 5 std bounds.
  assert (np.abs(counts - 10_000) < 470).all()
  # Chi-square with 7 degrees of freedom: below 24.3 with probability 0.999.
  assert ((counts - 10_000) ** 2 / 10_000).sum() < 24.3


@pytest.mark.parametrize("sub", [SubModel(1, 3), SubModel(2, 8), SubModel(3, 16), SubModel(3, 1)])
def test_exported_mlp_equals_the_sliced_forward_bit_for_bit(sub):
  m = SortedMLP(10, 4, hidden=16, depth=3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (7, 10))
  small = schemes.export_submodel(m, sub)
  assert isinstance(small, SortedMLP) and small.full_submodel == sub
  assert len(small.layers) == sub.depth and small.head.kernel.shape == (sub.width, 4)
  np.testing.assert_array_equal(small(x), m(x, submodel=sub))
  np.testing.assert_array_equal(small.layers[0].kernel[...], m.layers[0].kernel[...][:, :sub.width])
  n_small = sum(a.size for a in jax.tree.leaves(nnx.state(small, nnx.Param)))
  assert n_small == 10 * sub.width + sub.width + (sub.depth - 1) * (sub.width ** 2 + sub.width) + 4 * sub.width + 4


@pytest.mark.parametrize("sub", [SubModel(1, 3, 1), SubModel(2, 12, 2), SubModel(3, 6, 4)])
def test_exported_vit_equals_the_sliced_forward_bit_for_bit(sub):
  v = SortedViT(1, 5, **VIT, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))
  small = schemes.export_submodel(v, sub)
  assert isinstance(small, SortedViT) and small.full_submodel == sub and len(small.blocks) == sub.depth
  assert small.blocks[0].qkv.shape == (16, 3, sub.heads, 4) and small.blocks[0].fc1.kernel.shape == (16, sub.width)
  np.testing.assert_array_equal(small(x), v(x, submodel=sub))


def test_evaluate_every_sub_model_from_one_set_of_weights():
  m = _hand_mlp()
  # Sub-model logits on (1, 1): width 1 gives (4.5, -3.5) -> class 0; full gives (9.5, -8.5) -> class 0.
  # On (-1, 1): layer 1: (-1 + 3 + 0.5, -2 + 4 - 1) = (2.5, 1); width 1, depth 2: (2.5, -1.5) -> class 0;
  # full: layer 2 relu(2.5 + 1, -1 + 2) = (3.5, 1); head (3.5 + 2, -3.5 + 1) = (5.5, -2.5) -> class 0.
  # On (0, -1): layer 1 relu(-3 + 0.5, -4 - 1) = 0; width 1: (0, 1) -> class 1; full: layer 2 (0, 2),
  # head (4, 1) -> class 0.
  x = jnp.array([[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0]])
  y = jnp.array([0, 0, 1])
  accs = schemes.evaluate_submodels(m, x, y, [SubModel(2, 1), SubModel(2, 2)])
  np.testing.assert_allclose(accs, [1.0, 2 / 3], rtol=1e-6)
  bad = schemes.evaluate_submodels(m, x.at[0, 0].set(jnp.nan), y, [SubModel(2, 1)])
  assert np.isnan(bad).all()


def test_models_check_their_sub_models():
  m = SortedMLP(4, 3, hidden=8, depth=2, rngs=nnx.Rngs(0))
  x = jnp.ones((2, 4))
  with pytest.raises(ValueError, match=r"submodel: depth must be an int in \[1, 2\], got 3"):
    m(x, submodel=SubModel(3, 4))
  with pytest.raises(ValueError, match="submodel: this model has no heads"):
    m(x, submodel=SubModel(1, 4, 2))
  with pytest.raises(TypeError, match="submodel: must be a jaxdyn.schemes.SubModel"):
    m(x, submodel=(1, 4))
  with pytest.raises(ValueError, match="submodel: width must be an int >= 1, got 0"):
    m(x, submodel=SubModel(1, 0))
  v = SortedViT(1, 5, **VIT, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="submodel: must give heads"):
    v(jnp.ones((1, 8, 8, 1)), submodel=SubModel(1, 4))
  with pytest.raises(ValueError, match="num_heads: must divide dim=16"):
    SortedViT(1, 5, **{**VIT, "num_heads": 3}, rngs=nnx.Rngs(0))
