import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import models


def _count(m):
  return sum(p.size for p in jax.tree.leaves(nnx.state(m, nnx.Param)))


BUILD = {
    "mlp": lambda: models.MLP(40, 7, rngs=nnx.Rngs(0)),
    "cnn1d": lambda: models.CNN(1, 7, spatial_dims=1, rngs=nnx.Rngs(0)),
    "cnn2d": lambda: models.CNN(1, 7, rngs=nnx.Rngs(0)),
    # Narrow versions (the full parameter counts are checked below without building the arrays).
    "resnet18": lambda: models.ResNet18(3, 7, width=8, rngs=nnx.Rngs(0)),
    "resnet50": lambda: models.ResNet50(3, 7, width=8, rngs=nnx.Rngs(0)),
    "vit": lambda: models.ViT(3, 7, image_size=8, depth=1, rngs=nnx.Rngs(0)),
}


@pytest.mark.parametrize("name,shape,feat", [
    ("mlp", (40,), 256), ("cnn1d", (40, 1), 128), ("cnn2d", (8, 8, 1), 128),
    ("resnet18", (8, 8, 3), 64), ("resnet50", (8, 8, 3), 256), ("vit", (8, 8, 3), 128),
])
def test_logits_and_penultimate_features(name, shape, feat):
  m = BUILD[name]()
  assert isinstance(m, models.Model) and isinstance(m, models.HeadSplit)
  x = jax.random.normal(jax.random.key(1), (3, *shape))
  graphdef, state = nnx.split(m)
  logits, h = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, return_features=True))(state, x)
  assert logits.shape == (3, 7) and h.shape == (3, feat)
  # The head is linear in the features: logits = h @ W + b.
  np.testing.assert_allclose(logits, h @ m.head.kernel[...] + m.head.bias[...], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x), logits, rtol=1e-6)


def test_resnet_parameter_counts_match_the_cifar_reference():
  # CIFAR ResNet-18 has 11,173,962 parameters at 10 classes; ResNet-50 (CIFAR stem) 23,520,842.
  for ctor, expected in ((models.ResNet18, 11_173_962), (models.ResNet50, 23_520_842)):
    shapes = nnx.eval_shape(lambda: ctor(3, 10, rngs=nnx.Rngs(0)))
    assert _count(shapes) == expected


def test_functional_use_at_the_jit_boundary_matches_eager():
  m = models.ResNet(3, 4, stage_sizes=(1, 1), width=8, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(m, nnx.Param, ...)
  before = [np.array(a) for a in jax.tree.leaves(rest)]
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))

  @jax.jit
  def f(params, rest, x):
    mm = nnx.merge(graphdef, params, rest)
    out = mm(x, train=True)
    return out, nnx.split(mm, nnx.Param, ...)[2]

  out, new_rest = f(params, rest, x)
  np.testing.assert_allclose(out, jax.jit(lambda p, r, x: nnx.merge(graphdef, p, r)(x, train=True))(
      params, rest, x), rtol=1e-4, atol=1e-5)
  # Training mode updated the BatchNorm running statistics, returned functionally.
  after = jax.tree.leaves(new_rest)
  assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_dropout_needs_a_key_and_is_off_in_eval():
  m = models.MLP(5, 3, hidden=(16,), dropout_rate=0.5, rngs=nnx.Rngs(0))
  x = jnp.ones((4, 5))
  with pytest.raises(ValueError, match="key"):
    m(x, train=True)
  a = m(x, train=True, key=jax.random.key(0))
  b = m(x, train=True, key=jax.random.key(1))
  assert not np.allclose(a, b)
  np.testing.assert_allclose(m(x), m(x))


def test_bad_arguments_name_themselves():
  with pytest.raises(ValueError, match="dropout_rate"):
    models.MLP(4, 2, dropout_rate=1.0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="patch_size"):
    models.ViT(3, 10, image_size=8, patch_size=3, rngs=nnx.Rngs(0))



def test_nnx_train_and_eval_switch_dropout_and_batch_norm_and_train_argument_wins():
  m = models.MLP(5, 3, hidden=(16,), dropout_rate=0.5, rngs=nnx.Rngs(0))
  x, key = jnp.ones((4, 5)), jax.random.key(0)
  plain = m(x)  # a new model evaluates: no dropout
  np.testing.assert_allclose(m(x, key=key), plain)
  m.train()
  dropped = m(x, key=key)
  np.testing.assert_allclose(dropped, m(x, train=True, key=key))
  assert not np.allclose(dropped, plain)
  np.testing.assert_allclose(m(x, train=False, key=key), plain)  # an explicit train= wins
  with pytest.raises(ValueError, match="key"):
    m(x)  # training mode with dropout needs a key
  m.eval()
  np.testing.assert_allclose(m(x, key=key), plain)

  r = models.ResNet(3, 4, stage_sizes=(1,), width=4, rngs=nnx.Rngs(0))
  xi = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  stats = [np.array(a) for a in jax.tree.leaves(nnx.state(r, nnx.BatchStat))]
  r.train()
  r(xi)  # batch statistics, running averages updated
  moved = [np.array(a) for a in jax.tree.leaves(nnx.state(r, nnx.BatchStat))]
  assert any(not np.allclose(a, b) for a, b in zip(stats, moved))
  r.eval()
  r(xi)
  np.testing.assert_allclose(jax.tree.leaves(nnx.state(r, nnx.BatchStat))[0], moved[0])


def test_model_contract_protocols():
  m = models.MLP(4, 2, hidden=(4,), rngs=nnx.Rngs(0))
  assert isinstance(m, models.HeadSplit)
  h = m.features(jnp.ones((3, 4)))
  np.testing.assert_allclose(m.apply_head(h), m(jnp.ones((3, 4))), rtol=1e-6)

  class NoHead(nnx.Module):
    def __call__(self, x, *, train=None, key=None, return_features=False):
      return x

  assert isinstance(NoHead(), models.Model) and not isinstance(NoHead(), models.HeadSplit)


def test_vit_tokens_are_the_final_normed_class_and_patch_tokens():
  vit = models.ViT(1, 10, image_size=8, patch_size=2, dim=16, depth=2, num_heads=2, rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1))
  t = vit.tokens(x)
  assert t.shape == (3, 1 + 16, 16)
  np.testing.assert_array_equal(t[:, 0], vit.features(x))  # the class token is `features`, bit for bit
  np.testing.assert_allclose(t.mean(-1), 0.0, atol=1e-5)  # LayerNorm's scale 1 and bias 0 at initialisation
  np.testing.assert_allclose(t.std(-1), 1.0, atol=1e-2)
  # the first patch token moves when its patch does
  moved = vit.tokens(x.at[:, :2, :2].add(1.0))
  assert float(jnp.abs(moved - t)[:, 1].max()) > 1e-3
  with pytest.raises(ValueError, match="tokens: defined for a plain ViT only"):
    models.ViT(1, 10, image_size=8, patch_size=2, dim=16, depth=1, num_heads=2, moe_layers=(0,), num_experts=2,
               rngs=nnx.Rngs(0)).tokens(x)
