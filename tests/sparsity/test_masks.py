"""Masks, layer-wise densities (uniform, ER, ERK) and schedules against their formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import models
from jaxdyn.sparsity import (
    DropSchedule,
    PruningSchedule,
    apply_masks,
    default_predicate,
    dense_masks,
    layer_counts,
    mask_stats,
    prunable,
    random_masks,
    sparse_flops,
    training_flops,
)

PARAMS = {
    "conv": {"kernel": jnp.zeros((3, 3, 16, 32)), "bias": jnp.zeros(32)},
    "conv1d": {"kernel": jnp.zeros((5, 8, 16))},
    "dense": {"kernel": jnp.zeros((512, 64)), "bias": jnp.zeros(64)},
    "head": {"kernel": jnp.zeros((64, 10))},
    "embed": {"embedding": jnp.zeros((100, 16))},
    "norm": {"scale": jnp.zeros(64)},
}
SPARSE = ("conv/kernel", "conv1d/kernel", "dense/kernel", "head/kernel")


def _flat(tree):
  return {"/".join(str(k.key) for k in path): v for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_default_predicate_picks_kernels_not_biases_norms_or_embeddings():
  flags = _flat(prunable(PARAMS))
  assert sorted(k for k, v in flags.items() if v) == sorted(SPARSE)
  assert default_predicate(("x",), jnp.zeros((2, 2, 2, 2, 2)))  # a 3-D convolution
  assert not default_predicate(("x",), jnp.zeros((2,) * 6))


def test_exclude_keeps_named_layers_dense_and_nothing_prunable_is_an_error():
  flags = _flat(prunable(PARAMS, exclude=("head", "conv1d")))
  assert sorted(k for k, v in flags.items() if v) == ["conv/kernel", "dense/kernel"]
  with pytest.raises(ValueError, match="params: no leaf is prunable"):
    prunable({"b": jnp.zeros(3)})


@pytest.mark.parametrize("distribution", ["uniform", "er", "erk"])
@pytest.mark.parametrize("density", [0.01, 0.05, 0.1, 0.37, 0.9, 1.0])
def test_counts_hit_the_global_target_exactly(distribution, density):
  counts = _flat(layer_counts(PARAMS, density, distribution=distribution))
  sizes = {k: int(np.prod(v.shape)) for k, v in _flat(PARAMS).items()}
  n = sum(sizes[k] for k in SPARSE)
  assert sum(counts[k] for k in SPARSE) == round(density * n)
  for k in SPARSE:
    assert 0 <= counts[k] <= sizes[k]
  for k in set(sizes) - set(SPARSE):
    assert counts[k] == sizes[k]  # dense leaves count fully


def test_distribution_formulas():
  sizes = {k: int(np.prod(v.shape)) for k, v in _flat(PARAMS).items()}
  shapes = {k: v.shape for k, v in _flat(PARAMS).items()}
  d = 0.05
  uni = _flat(layer_counts(PARAMS, d, distribution="uniform"))
  for k in SPARSE:
    assert abs(uni[k] - d * sizes[k]) <= 1.0
  for dist, raw in (("erk", lambda s: sum(s) / math.prod(s)), ("er", lambda s: (s[-2] + s[-1]) / (s[-2] * s[-1]))):
    c = _flat(layer_counts(PARAMS, d, distribution=dist))
    # Unsaturated layers: density proportional to the raw scale, one epsilon for all (up to rounding).
    eps = [c[k] / sizes[k] / raw(shapes[k]) for k in SPARSE if c[k] < sizes[k]]
    assert len(eps) >= 3
    for k in SPARSE:
      if c[k] < sizes[k]:
        assert abs(c[k] - np.mean(eps) * raw(shapes[k]) * sizes[k]) <= 1.0 + 0.01 * c[k]


def test_erk_makes_a_saturated_layer_dense_and_spreads_the_rest():
  params = {"tiny": jnp.zeros((2, 2)), "big": jnp.zeros((1000, 1000))}
  c = layer_counts(params, 0.5, distribution="erk")
  assert c["tiny"] == 4  # raw scale 1.0 would give density > 1
  assert c["tiny"] + c["big"] == round(0.5 * 1_000_004)


def test_random_masks_exact_per_layer_and_masks_broadcast_on_dense_leaves():
  masks = random_masks(jax.random.key(1), PARAMS, 0.1)
  counts = _flat(layer_counts(PARAMS, 0.1))
  for k, m in _flat(masks).items():
    if k in SPARSE:
      assert m.shape == _flat(PARAMS)[k].shape and int(m.sum()) == counts[k]
    else:
      assert m.shape == () and bool(m)
  ones = jax.tree.map(jnp.ones_like, PARAMS)
  masked = _flat(apply_masks(ones, masks))
  assert float(masked["dense/kernel"].sum()) == counts["dense/kernel"]
  assert float(masked["norm/scale"].sum()) == 64
  stats = mask_stats(masks, PARAMS)
  assert stats["sparse_active"] == sum(counts[k] for k in SPARSE)
  assert stats["params_total"] == sum(int(np.prod(v.shape)) for v in jax.tree.leaves(PARAMS))
  # Another key, other entries; the same key, the same masks.
  other = random_masks(jax.random.key(2), PARAMS, 0.1)
  assert not np.array_equal(other["dense"]["kernel"], masks["dense"]["kernel"])
  np.testing.assert_array_equal(random_masks(jax.random.key(1), PARAMS, 0.1)["dense"]["kernel"],
                                masks["dense"]["kernel"])


def test_masks_of_an_nnx_state():
  model = models.CNN(1, 10, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
  _, params = nnx.split(model, nnx.Param)
  masks = dense_masks(params)
  stats = mask_stats(masks, params)
  assert stats["sparse_total"] == 3 * 1 * 4 + 3 * 4 * 8 + 8 * 16 + 16 * 10
  assert stats["density"] == 1.0


def test_pruning_schedule_is_the_cubic_formula():
  s = PruningSchedule(final_density=0.1, init_density=0.8, start_step=100, end_step=1100, update_every=100)
  for t in (0, 100, 350, 600, 1000, 1100, 5000):
    frac = min(max((t - 100) / 1000, 0.0), 1.0)
    assert float(s.density(t)) == pytest.approx(0.1 + 0.7 * (1 - frac) ** 3, rel=1e-6)
  steps = [t for t in range(1, 1300) if bool(s.is_update_step(t))]
  assert steps == list(range(100, 1101, 100)) and s.num_updates(1300) == len(steps)
  code = [t for t in range(1, 1300) if bool(s.is_update_step(t, official_compat=True))]
  assert code == list(range(100, 1001, 100)) and s.num_updates(1300, official_compat=True) == len(code)
  # tf not a multiple of dT: the last update falls on tf itself, where d(tf) = d_f.
  s2 = PruningSchedule(final_density=0.1, end_step=250, update_every=100)
  assert [t for t in range(1, 400) if bool(s2.is_update_step(t))] == [100, 200, 250]
  assert s2.num_updates(400) == 3 and float(s2.density(250)) == pytest.approx(0.1)


def test_drop_schedule_is_the_cosine_formula():
  s = DropSchedule(end_step=750, drop_fraction=0.3)  # RigL: alpha / 2 (1 + cos(pi t / T_end))
  for t in (0, 100, 375, 700, 750, 900):
    assert float(s.fraction(t)) == pytest.approx(0.15 * (1 + math.cos(math.pi * min(t, 750) / 750)), abs=1e-6)
  g = DropSchedule(end_step=1000, drop_fraction=0.5, min_fraction=0.005, start_step=200)
  assert float(g.fraction(200)) == pytest.approx(0.5)
  assert float(g.fraction(600)) == pytest.approx(0.005 + 0.495 * 0.5, rel=1e-6)
  assert float(g.fraction(1000)) == pytest.approx(0.005)
  assert not bool(s.is_update_step(800))
  assert bool(DropSchedule(end_step=750, continue_after_end=True).is_update_step(800))


def test_sparse_flops_of_the_cnn_by_formula():
  model = models.CNN(1, 10, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  masks = random_masks(jax.random.key(0), params, 0.25, distribution="uniform")
  layers = sparse_flops(lambda p, x: nnx.merge(graphdef, p)(x), params, masks, jnp.zeros((3, 40)))
  by = {layer.path: layer for layer in layers}
  # 'SAME' convs: length 40, then 20 after the first max pool.
  assert by["convs/0/kernel"].dense == 2 * 40 * 4 * 3 * 1
  assert by["convs/1/kernel"].dense == 2 * 20 * 8 * 3 * 4
  assert by["dense/kernel"].dense == 2 * 8 * 16 and by["head/kernel"].dense == 2 * 16 * 10
  counts = mask_stats(masks, params)
  assert sum(layer.density * np.prod(layer_shape) for layer, layer_shape in zip(
      layers, [(3, 1, 4), (3, 4, 8), (8, 16), (16, 10)])) == pytest.approx(counts["sparse_active"])
  tr = training_flops(layers, num_steps=10, batch_size=4)
  assert tr["dense"] == pytest.approx(3 * sum(layer.dense for layer in layers) * 40)
  assert tr["ratio"] == pytest.approx(sum(layer.sparse for layer in layers) / sum(layer.dense for layer in layers))
  tg = training_flops(layers, num_steps=10, batch_size=4, dense_gradient_steps=5)
  assert tg["sparse"] - tr["sparse"] == pytest.approx(sum(layer.dense for layer in layers) * 4 * 5)


def _argsort_top_k(score, k, largest_first):
  """The reference: ranks from a stable argsort (of -score for the largest first), rank < k."""
  order = np.argsort(-score if largest_first else score, kind="stable")
  ranks = np.empty(score.shape[0], np.int64)
  ranks[order] = np.arange(score.shape[0])
  return ranks < k


@pytest.mark.parametrize("n", [0, 1, 7, 33])
def test_top_k_mask_is_the_stable_argsort_ranking(n):
  """Integer-key selection equals the stable argsort's, ties, infinities, NaN, -0 and subnormals included.

  XLA:CPU compares subnormal floats as 0, so the reference maps them (and -0.0) to +0.0 first,
  as `rank_keys` documents; NaN sorts after every number in both (NumPy's argsort puts it last).
  """
  from jaxdyn.sparsity._masks import top_k_mask

  rng = np.random.default_rng(n)
  pool = np.array([0.0, -0.0, 1.0, -1.0, 2.5, np.inf, -np.inf, np.nan, 1e-39, -1e-39, 3e38], np.float32)
  select = jax.jit(top_k_mask, static_argnames="largest_first")
  for _ in range(60):
    x = np.where(rng.random(n) < 0.6, rng.choice(pool, n), rng.normal(size=n)).astype(np.float32)
    ref_x = np.where(np.abs(x) < np.finfo(np.float32).tiny, np.float32(0.0), x)
    for k in {0, n // 2, n, n + 2, int(rng.integers(0, n + 1))}:
      for largest_first in (True, False):
        got = np.asarray(select(jnp.asarray(x), k, largest_first=largest_first))
        want = _argsort_top_k(ref_x, k, largest_first)
        np.testing.assert_array_equal(got, want, err_msg=f"x={x.tolist()} k={k} largest_first={largest_first}")
