"""Embedded Representation Warmup: the alignment loss (and the authors' warm-up slip), the weight schedule,
the projector, the DiT feature hook, where the alignment's gradient goes, and the warm-up layer transfer."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import diffusion
from jaxdyn.models import DiT

ARCH = dict(image_size=8, patch_size=2, dim=16, depth=3, num_heads=2, mlp_ratio=2)


def _randomize(module, seed):
  """Every parameter replaced by N(0, 0.3^2) draws (adaLN-Zero starts at zero, which hides gradients)."""
  state = nnx.state(module, nnx.Param)
  leaves, tree = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  nnx.update(module, jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, jnp.shape(v)) for k, v in zip(keys, leaves)]))
  return module


def _inputs(b=4, seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return jax.random.normal(k1, (b, 8, 8, 1)), jax.random.normal(k2, (b,)), jnp.arange(b) % 10


# --- the alignment loss --------------------------------------------------------------------------------
def test_alignment_loss_hand_computed():
  # cosines: [1, 0] vs [2, 0] -> 1; [1, 1] vs [0, 3] -> 1/sqrt(2); [0, 2] vs [1, 0] -> 0; [3, 4] vs [-3, -4] -> -1
  z = jnp.array([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 2.0], [3.0, 4.0]]])
  y = jnp.array([[[2.0, 0.0], [0.0, 3.0]], [[1.0, 0.0], [-3.0, -4.0]]])
  want = -(1.0 + 1.0 / math.sqrt(2.0) + 0.0 - 1.0) / 4
  np.testing.assert_allclose(diffusion.representation_alignment_loss(z, y), want, rtol=1e-6)


def test_alignment_loss_identical_gives_minus_one_and_orthogonal_zero():
  z = jax.random.normal(jax.random.key(0), (3, 5, 6))
  np.testing.assert_allclose(diffusion.representation_alignment_loss(z, z), -1.0, rtol=1e-6)
  np.testing.assert_allclose(diffusion.representation_alignment_loss(z, 2.5 * z), -1.0, rtol=1e-6)
  a = jnp.zeros((2, 4, 6)).at[..., :3].set(jax.random.normal(jax.random.key(1), (2, 4, 3)))
  b = jnp.zeros((2, 4, 6)).at[..., 3:].set(jax.random.normal(jax.random.key(2), (2, 4, 3)))
  assert float(diffusion.representation_alignment_loss(a, b)) == 0.0
  # a zero vector has cosine 0 (normalised by max(||x||, 1e-12), as torch's F.normalize)
  assert float(diffusion.representation_alignment_loss(jnp.zeros((1, 1, 3)), jnp.ones((1, 1, 3)))) == 0.0


def test_alignment_loss_official_compat_uses_the_last_element_only():
  z = jax.random.normal(jax.random.key(3), (3, 5, 4))
  y = jax.random.normal(jax.random.key(4), (3, 5, 4))
  default = float(diffusion.representation_alignment_loss(z, y))
  compat = float(diffusion.representation_alignment_loss(z, y, official_compat=True))
  last = float(diffusion.representation_alignment_loss(z[-1:], y[-1:]))
  per_elem = [float(diffusion.representation_alignment_loss(z[i:i + 1], y[i:i + 1])) for i in range(3)]
  np.testing.assert_allclose(default, np.mean(per_elem), rtol=1e-6)
  np.testing.assert_allclose(compat, last / 3, rtol=1e-6)  # the code still divides by the batch size
  assert abs(compat - default) > 1e-2
  # changing any element but the last leaves the compat loss unchanged, and moves the default
  z2 = z.at[0].set(y[0])
  assert float(diffusion.representation_alignment_loss(z2, y, official_compat=True)) == compat
  assert float(diffusion.representation_alignment_loss(z2, y)) < default - 0.1
  # batch of one: the slip is the loss itself
  np.testing.assert_allclose(diffusion.representation_alignment_loss(z[:1], y[:1], official_compat=True),
                             per_elem[0], rtol=1e-6)


def test_alignment_loss_target_gets_no_gradient_and_nan_propagates():
  z = jax.random.normal(jax.random.key(5), (2, 3, 4))
  y = jax.random.normal(jax.random.key(6), (2, 3, 4))
  gz, gy = jax.grad(lambda a, b: diffusion.representation_alignment_loss(a, b), argnums=(0, 1))(z, y)
  assert float(jnp.abs(gz).sum()) > 0 and float(jnp.abs(gy).sum()) == 0.0
  assert np.isnan(float(jax.jit(diffusion.representation_alignment_loss)(z.at[1, 2, 0].set(jnp.nan), y)))


def test_alignment_loss_bad_inputs():
  z = jnp.ones((2, 3, 4))
  with pytest.raises(ValueError, match=r"target: must have the shape of projected, got \(2, 3, 5\)"):
    diffusion.representation_alignment_loss(z, jnp.ones((2, 3, 5)))
  with pytest.raises(ValueError, match="projected: must have 3 dimensions"):
    diffusion.representation_alignment_loss(jnp.ones((3, 4)), jnp.ones((3, 4)))
  with pytest.raises(ValueError, match="projected: must hold at least one"):
    diffusion.representation_alignment_loss(jnp.ones((0, 3, 4)), jnp.ones((0, 3, 4)))
  with pytest.raises(TypeError, match="official_compat: must be a bool"):
    diffusion.representation_alignment_loss(z, z, official_compat=1)


# --- the weight schedule -------------------------------------------------------------------------------
@pytest.mark.parametrize("step,want", [(0, 2.0), (99, 2.0), (100, 2.0), (150, 2.0 * 2 ** -0.5), (200, 1.0),
                                       (400, 0.25), (1000, 0.25)])
def test_alignment_weight_hand_picked_steps(step, want):
  got = diffusion.erw_alignment_weight(step, warmup_steps=100, total_steps=400, initial_weight=2.0, half_life=100)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_alignment_weight_code_defaults_and_arrays():
  # the authors' SiT-XL setting: c0 = 6, warm-up 100k, 300k steps, half-life 50k: 6 * 2^-4 at the end
  w = diffusion.erw_alignment_weight(np.array([0, 150_000, 300_000, 400_000]), warmup_steps=100_000,
                                     total_steps=300_000, initial_weight=6.0)
  np.testing.assert_allclose(w, [6.0, 6.0 / 2, 6.0 / 16, 6.0 / 16], rtol=1e-6)
  # no total: no clamp; jittable in the step
  f = jax.jit(lambda t: diffusion.erw_alignment_weight(t, warmup_steps=10, half_life=5.0))
  np.testing.assert_allclose(f(jnp.int32(60)), 2.0 ** -10, rtol=1e-6)


def test_alignment_weight_bad_inputs():
  kw = dict(warmup_steps=10, total_steps=20)
  with pytest.raises(ValueError, match="total_steps: must be an int >= 10"):
    diffusion.erw_alignment_weight(0, warmup_steps=10, total_steps=5)
  with pytest.raises(ValueError, match="half_life: must be a finite real number"):
    diffusion.erw_alignment_weight(0, half_life=0.0, **kw)
  with pytest.raises(ValueError, match="initial_weight: must be a finite real number"):
    diffusion.erw_alignment_weight(0, initial_weight=-1.0, **kw)
  with pytest.raises(ValueError, match="warmup_steps: must be an int"):
    diffusion.erw_alignment_weight(0, warmup_steps=2.0)
  with pytest.raises(TypeError, match="step: must be an integer"):
    diffusion.erw_alignment_weight(1.5, **kw)
  with pytest.raises(ValueError, match="step: must be >= 0"):
    diffusion.erw_alignment_weight(-1, **kw)


# --- the projector -------------------------------------------------------------------------------------
def test_projector_is_three_linear_layers_with_silu():
  p = diffusion.Projector(4, 3, hidden_features=5, rngs=nnx.Rngs(0))
  x = np.asarray(jax.random.normal(jax.random.key(7), (2, 6, 4)))
  silu = lambda a: a / (1 + np.exp(-a))  # noqa: E731
  layer = lambda lin, a: a @ np.asarray(lin.kernel[...]) + np.asarray(lin.bias[...])  # noqa: E731
  want = layer(p.fc3, silu(layer(p.fc2, silu(layer(p.fc1, x)))))
  np.testing.assert_allclose(p(x), want, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="x: must have 4 features on its last axis"):
    p(jnp.ones((2, 6, 5)))
  with pytest.raises(ValueError, match="hidden_features: must be an int >= 1"):
    diffusion.Projector(4, 3, hidden_features=0, rngs=nnx.Rngs(0))


# --- the DiT hook --------------------------------------------------------------------------------------
def test_dit_features_hook_keeps_the_output_and_has_the_right_shape():
  m = _randomize(DiT(1, 10, **ARCH, mixer_depth=1, rngs=nnx.Rngs(0)), 1)
  x, n, y = _inputs()
  out = m(x, n, y)
  for j in (1, 2, 3):
    out_j, h = m(x, n, y, features_at=j)
    np.testing.assert_array_equal(out_j, out)
    assert h.shape == (4, 16, 16)
  keep = jnp.tile(jnp.array([[0, 5, 9, 15]]), (4, 1))
  out_k, h_k = m(x, n, y, keep=keep, features_at=2)
  np.testing.assert_array_equal(out_k, m(x, n, y, keep=keep))
  assert h_k.shape == (4, 4, 16)
  # features after block 1 depend on block 1 only: changing blocks 2-3 and the final layer leaves them
  _, h1 = m(x, n, y, features_at=1)
  _randomize(m.blocks[1], 2), _randomize(m.blocks[2], 3), _randomize(m.final, 4)
  _, h1b = m(x, n, y, features_at=1)
  np.testing.assert_array_equal(h1, h1b)
  assert float(jnp.abs(m(x, n, y, features_at=2)[1] - h1).max()) > 1e-3
  with pytest.raises(ValueError, match=r"features_at: must be an int in \[1, 3\], got 4"):
    m(x, n, y, features_at=4)
  with pytest.raises(ValueError, match="features_at: must be an int"):
    m(x, n, y, features_at=0)


def test_alignment_gradient_reaches_only_the_early_blocks_and_the_projector():
  m = _randomize(DiT(1, 10, **ARCH, mixer_depth=1, rngs=nnx.Rngs(0)), 5)
  proj = diffusion.Projector(16, 6, hidden_features=8, rngs=nnx.Rngs(1))
  x, n, y = _inputs(seed=2)
  target = jax.random.normal(jax.random.key(9), (4, 16, 6))
  graphdef, params, rest = nnx.split((m, proj), nnx.Param, ...)

  def loss(p):
    mm, pp = nnx.merge(graphdef, p, rest)
    return diffusion.representation_alignment_loss(pp(mm(x, n, y, features_at=2)[1]), target)

  g = jax.jit(jax.grad(loss))(params)
  g_model, g_proj = g[0], g[1]
  norm = lambda tree: float(sum(jnp.abs(v).sum() for v in jax.tree.leaves(tree)))  # noqa: E731
  for part in ("patch", "noise_mlp", "class_embed", "mixer"):
    assert norm(g_model[part]) > 0, part
  assert norm(g_model["blocks"][0]) > 0 and norm(g_model["blocks"][1]) > 0
  assert norm(g_model["blocks"][2]) == 0.0 and norm(g_model["final"]) == 0.0
  assert norm(g_proj) > 0


# --- the warm-up layer transfer ------------------------------------------------------------------------
def test_copy_warmup_layers_transfers_the_early_layers_only():
  model = _randomize(DiT(1, 10, **ARCH, mixer_depth=1, rngs=nnx.Rngs(0)), 6)
  warm = _randomize(DiT(1, 10, **ARCH, mixer_depth=1, rngs=nnx.Rngs(1)), 7)
  late_before = jax.tree.map(jnp.array, nnx.state(model.blocks[2], nnx.Param))
  final_before = jax.tree.map(jnp.array, nnx.state(model.final, nnx.Param))
  x, n, y = _inputs(seed=3)
  assert diffusion.copy_warmup_layers(model, warm, 2) is model
  # the features after block 2 are the warm-up model's, the later layers are model's own
  np.testing.assert_array_equal(model(x, n, y, features_at=2)[1], warm(x, n, y, features_at=2)[1])
  for a, b in zip(jax.tree.leaves(nnx.state(model.blocks[2], nnx.Param)), jax.tree.leaves(late_before)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(nnx.state(model.final, nnx.Param)), jax.tree.leaves(final_before)):
    np.testing.assert_array_equal(a, b)
  assert float(jnp.abs(model(x, n, y) - warm(x, n, y)).max()) > 1e-3
  # a copy, not shared arrays: training warm afterwards does not move model
  _randomize(warm.blocks[0], 8)
  assert float(jnp.abs(model(x, n, y, features_at=1)[1] - warm(x, n, y, features_at=1)[1]).max()) > 1e-3


def test_copy_warmup_layers_bad_inputs():
  model = DiT(1, 10, **ARCH, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"depth: must be an int in \[1, 3\]"):
    diffusion.copy_warmup_layers(model, DiT(1, 10, **ARCH, rngs=nnx.Rngs(1)), 4)
  with pytest.raises(ValueError, match="depth: must be at most warm's 1 backbone blocks"):
    diffusion.copy_warmup_layers(model, DiT(1, 10, **{**ARCH, "depth": 1}, rngs=nnx.Rngs(1)), 2)
  with pytest.raises(ValueError, match="warm: must have model's width"):
    diffusion.copy_warmup_layers(model, DiT(1, 10, **{**ARCH, "dim": 8}, rngs=nnx.Rngs(1)), 1)
  with pytest.raises(TypeError, match="warm: must be a jaxdyn.models.DiT"):
    diffusion.copy_warmup_layers(model, "warm", 1)
