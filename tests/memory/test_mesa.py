"""Mesa (jaxdyn.memory._mesa): exact forwards, 8-bit residuals, gradient error bounds, ranges, kernel."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdyn import _pallas
from jaxdyn.memory import (MesaAttention, MesaDense, MesaGELU, MesaLayerNorm, MesaRange, QuantRange, dequantize,
                           init_range, mesa_attention, mesa_dense, mesa_gelu, mesa_layer_norm, mesa_matmul,
                           mesa_softmax, quantize, update_range)
from jaxdyn.memory import _mesa
from jaxdyn.models import ViT

KEY = jax.random.key(7)
SLACK = 1.0 + 1e-4  # float rounding on top of the bounds


def normal(seed, shape, scale=1.0):
  return scale * jax.random.normal(jax.random.key(seed), shape)


def step_of(t, groups, axis):
  """Delta = alpha / 255 per group of a first-batch range, broadcast to ``t``'s shape."""
  r = update_range(init_range(groups), t, axis=axis)
  shape = [1] * t.ndim
  shape[axis] = groups
  d = (r.alpha / 255).reshape(shape)
  return jnp.repeat(d, t.shape[axis] // groups, axis=axis)


def ranges(n, groups):
  return tuple(init_range(groups) for _ in range(n))


# --- exact forwards ---------------------------------------------------------------------------------
def test_forwards_are_bit_identical_to_the_plain_operations():
  x = normal(0, (3, 5, 8))
  lin = nnx.Linear(8, 6, rngs=nnx.Rngs(0))
  lin.bias[...] = jnp.arange(6.0)
  ln = nnx.LayerNorm(8, rngs=nnx.Rngs(0))
  ln.scale[...], ln.bias[...] = jnp.linspace(0.5, 2.0, 8), jnp.arange(8.0) / 10
  s, v = normal(1, (2, 2, 5, 5)), normal(2, (2, 2, 5, 4))
  q, k = normal(3, (2, 2, 5, 4)), normal(4, (2, 2, 5, 4))
  pairs = {
      "dense": (lambda x: mesa_dense(x, lin.kernel[...], lin.bias[...], init_range(4), KEY)[0], lambda x: lin(x)),
      "layer_norm": (lambda x: mesa_layer_norm(x, ln.scale[...], ln.bias[...], init_range(2), KEY)[0],
                     lambda x: ln(x)),
      "gelu": (lambda x: mesa_gelu(x, init_range(2), KEY)[0], nnx.gelu),
  }
  for name, (mesa, plain) in pairs.items():
    assert np.array_equal(jax.jit(mesa)(x), jax.jit(plain)(x)), name
  assert np.array_equal(jax.jit(lambda s: mesa_softmax(s, ranges(1, 2), KEY)[0])(s), jax.jit(jax.nn.softmax)(s))
  assert np.array_equal(jax.jit(lambda a, b: mesa_matmul(a, b, ranges(2, 2), KEY)[0])(s, v), jax.jit(jnp.matmul)(s, v))
  ref = jax.jit(lambda q, k, v: nnx.dot_product_attention(*(t.transpose(0, 2, 1, 3) for t in (q, k, v))))
  out = jax.jit(lambda q, k, v: mesa_attention(q, k, v, ranges(4, 2), KEY)[0])(q, k, v)
  assert np.array_equal(out.transpose(0, 2, 1, 3), ref(q, k, v))  # flax's attention, bit for bit


def test_mesa_vit_trains_with_the_exact_forward_and_needs_a_key_only_in_training():
  model = ViT(1, 10, image_size=8, patch_size=4, dim=16, depth=1, num_heads=2, mesa=True, rngs=nnx.Rngs(0))
  x = normal(5, (4, 8, 8, 1))
  gd, params, rest = nnx.split(model, nnx.Param, ...)

  def train(params, rest, x, key):  # the harness's pattern: merge, call in training, split the rest
    m = nnx.merge(gd, params, rest, copy=True)
    logits = m(x, train=True, key=key)
    return logits, nnx.split(m, nnx.Param, ...)[2]

  logits, new_rest = jax.jit(train)(params, rest, x, KEY)
  assert np.array_equal(logits, jax.jit(lambda p, r, x: nnx.merge(gd, p, r)(x))(params, rest, x))
  counts = [np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(new_rest) if "count" in str(p)]
  assert counts and all(np.all(c == 1) for c in counts)  # every range was initialised by the batch
  assert any(isinstance(v, MesaRange) for _, v in nnx.iter_graph(model))
  with pytest.raises(ValueError, match="key:"):
    model(x, train=True)


# --- gradient error bounds (first batch: every value lies in its range) ------------------------------
def test_dense_weight_gradient_error_is_bounded_and_the_rest_exact():
  x, w, b, g = normal(0, (6, 5, 8), 3.0), normal(1, (8, 3)), normal(2, (3,)), normal(3, (6, 5, 3))

  def grads(fn):
    return jax.jit(jax.grad(lambda x, w, b: jnp.sum(fn(x, w, b) * g), argnums=(0, 1, 2)))(x, w, b)

  dx, dw, db = grads(lambda x, w, b: mesa_dense(x, w, b, init_range(4), KEY)[0])
  ex, ew, eb = grads(lambda x, w, b: x @ w + b)
  np.testing.assert_allclose(dx, ex, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(db, eb, rtol=1e-6)
  delta = step_of(x, 4, -1)[0, 0]  # per input channel
  bound = delta[:, None] * jnp.abs(g).sum((0, 1))[None, :]
  err = jnp.abs(dw - ew)
  assert float(err.max()) > 0 and bool(jnp.all(err <= bound * SLACK + 1e-6))


def test_matmul_gradient_errors_are_bounded():
  a, b, g = normal(0, (2, 3, 5, 4)), normal(1, (2, 3, 4, 6), 2.0), normal(2, (2, 3, 5, 6))
  da, db = jax.jit(jax.grad(lambda a, b: jnp.sum(mesa_matmul(a, b, ranges(2, 3), KEY)[0] * g), argnums=(0, 1)))(a, b)
  ea, eb = jnp.einsum("bhij,bhkj->bhik", g, b), jnp.einsum("bhik,bhij->bhkj", a, g)
  bound_a = step_of(b, 3, 1)[:, :, :1, :1] * jnp.abs(g).sum(-1, keepdims=True)
  bound_b = step_of(a, 3, 1)[:, :, :1, :1] * jnp.abs(g).sum(-2, keepdims=True)
  for err, bound in ((jnp.abs(da - ea), bound_a), (jnp.abs(db - eb), bound_b)):
    assert float(err.max()) > 0 and bool(jnp.all(err <= bound * SLACK + 1e-6))


def test_softmax_gradient_error_is_bounded():
  x, g = normal(0, (2, 2, 5, 7), 2.0), normal(1, (2, 2, 5, 7))
  dx = jax.jit(jax.grad(lambda x: jnp.sum(mesa_softmax(x, ranges(1, 2), KEY)[0] * g)))(x)
  p = jax.nn.softmax(x)
  ex = p * (g - jnp.sum(g * p, -1, keepdims=True))
  d = step_of(p, 2, 1)
  n = x.shape[-1]
  gmax, gsum = jnp.abs(g).max(-1, keepdims=True), jnp.abs(g).sum(-1, keepdims=True)
  bound = d * (jnp.abs(g) + gmax * (1 + n * d)) + p * d * gsum
  err = jnp.abs(dx - ex)
  assert float(err.max()) > 0 and bool(jnp.all(err <= bound * SLACK + 1e-6))


def test_gelu_gradient_error_is_bounded():
  grid = jnp.linspace(-12.0, 12.0, 24001)
  for approximate in (True, False):
    second = jax.vmap(jax.grad(jax.grad(lambda t: jax.nn.gelu(t, approximate=approximate))))(grid)
    assert float(jnp.abs(second).max()) <= math.sqrt(2 / math.pi) + 1e-6  # the docstring's L
  x, g = normal(0, (4, 6, 8), 3.0), normal(1, (4, 6, 8))
  dx = jax.jit(jax.grad(lambda x: jnp.sum(mesa_gelu(x, init_range(4), KEY)[0] * g)))(x)
  ex = jax.grad(lambda x: jnp.sum(jax.nn.gelu(x) * g))(x)
  err = jnp.abs(dx - ex)
  assert float(err.max()) > 0 and bool(jnp.all(err <= math.sqrt(2 / math.pi) * step_of(x, 4, -1) * jnp.abs(g) * SLACK
                                               + 1e-6))


def test_layer_norm_gradient_errors_are_bounded():
  x, g = normal(0, (4, 6, 8), 2.0) + 1.0, normal(1, (4, 6, 8))
  scale, bias = jnp.linspace(0.5, 2.0, 8), jnp.zeros(8)

  def grads(fn):
    return jax.jit(jax.grad(lambda x, s, b: jnp.sum(fn(x, s, b) * g), argnums=(0, 1, 2)))(x, scale, bias)

  dx, ds, db = grads(lambda x, s, b: mesa_layer_norm(x, s, b, init_range(2), KEY)[0])
  ex, es, eb = grads(lambda x, s, b: _mesa._ln_out(x, *_mesa._ln_stats(x, 1e-6), s, b))
  np.testing.assert_allclose(db, eb, rtol=1e-6)
  mean, rho = _mesa._ln_stats(x, 1e-6)
  n, d, dn = (x - mean) * rho, step_of(x, 2, -1), g * scale
  m_hat = jnp.mean(jnp.abs(dn) * (jnp.abs(n) + rho * d), -1, keepdims=True)  # >= |mean_c(dn n^)|
  bound_x = rho ** 2 * (d * m_hat + jnp.abs(n) * jnp.mean(jnp.abs(dn) * d, -1, keepdims=True))
  bound_s = jnp.sum(jnp.abs(g) * rho * d, (0, 1))
  for err, bound in ((jnp.abs(dx - ex), bound_x), (jnp.abs(ds - es), bound_s)):
    assert float(err.max()) > 0 and bool(jnp.all(err <= bound * SLACK + 1e-5))


# --- residual memory -----------------------------------------------------------------------------------
def residual_bytes(f, params, x):
  """Bytes of what ``jax.vjp(f, params, x)`` keeps for the backward pass, parameters excluded."""
  def residuals(params, x):
    _, vjp = jax.vjp(f, params, x)
    param_ids = {id(p) for p in jax.tree.leaves(params)}
    return [leaf for leaf in jax.tree.leaves(vjp) if id(leaf) not in param_ids]
  return jax.jit(residuals).lower(params, x).compile().memory_analysis().output_size_in_bytes


def test_residuals_of_every_layer_are_at_most_0_3_of_the_float_layer():
  x, w = normal(0, (8, 17, 64)), normal(1, (64, 128))
  s = normal(2, (8, 4, 17, 17))
  qkv = normal(3, (3, 8, 4, 17, 16))
  sb = (jnp.ones(64), jnp.zeros(64))
  cases = {
      "dense": (lambda w, x: mesa_dense(x, w, None, init_range(4), KEY)[0], lambda w, x: x @ w, w, x),
      "gelu": (lambda w, x: mesa_gelu(x, init_range(4), KEY)[0], lambda w, x: jax.nn.gelu(x), w, x),
      "layer_norm": (lambda p, x: mesa_layer_norm(x, *p, init_range(4), KEY)[0],
                     lambda p, x: _mesa._ln_out(x, *_mesa._ln_stats(x, 1e-6), *p), sb, x),
      "softmax": (lambda w, s: mesa_softmax(s, ranges(1, 4), KEY)[0], lambda w, s: jax.nn.softmax(s), w, s),
      "matmul": (lambda w, t: mesa_matmul(*t, ranges(2, 4), KEY)[0], lambda w, t: t[0] @ t[1], w, (s, qkv[2])),
      "attention": (lambda w, t: mesa_attention(*t, ranges(4, 4), KEY)[0],
                    lambda w, t: _mesa._attention_out(*t)[-1], w, tuple(qkv)),
  }
  ratios = {}
  for name, (mesa, plain, p, inp) in cases.items():
    ratios[name] = residual_bytes(mesa, p, inp) / residual_bytes(plain, p, inp)
  assert all(r <= 0.3 for r in ratios.values()), ratios


def test_mesa_vit_train_step_temp_memory_is_at_most_half_of_the_float_vit():
  x, y = normal(0, (64, 8, 8, 1)), jnp.arange(64) % 10

  def temp_bytes(mesa):
    model = ViT(1, 10, image_size=8, patch_size=2, dim=64, depth=2, num_heads=4, mesa=mesa, rngs=nnx.Rngs(0))
    gd, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, rest, key):
      m = nnx.merge(gd, params, rest, copy=True)
      logits = m(x, train=True, key=key)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), nnx.split(m, nnx.Param, ...)[2]

    step = jax.jit(jax.grad(loss, has_aux=True)).lower(params, rest, KEY).compile()
    return step.memory_analysis().temp_size_in_bytes

  assert temp_bytes(True) <= 0.5 * temp_bytes(False)


# --- ranges and rounding ------------------------------------------------------------------------------
def test_ranges_start_from_the_first_batch_then_follow_an_ema_and_update_only_in_training():
  layer = MesaDense(4, 3, groups=2, rngs=nnx.Rngs(0))
  x1 = jnp.array([[0.0, 1.0, -2.0, 4.0], [2.0, -1.0, 0.0, 8.0]])
  x2 = jnp.array([[5.0, 1.0, 1.0, 1.0], [-5.0, 0.0, 3.0, 2.0]])
  layer(x1, train=True, key=KEY)
  r = layer.ranges.get()[0]
  np.testing.assert_allclose(r.alpha, [3.0, 10.0])  # max - min per channel group
  np.testing.assert_allclose(r.beta, [-1.0, -2.0])
  layer(x2, train=True, key=KEY)
  r = layer.ranges.get()[0]
  np.testing.assert_allclose(r.alpha, [0.9 * 3 + 0.1 * 10, 0.9 * 10 + 0.1 * 2], rtol=1e-6)
  np.testing.assert_allclose(r.beta, [0.9 * -1 + 0.1 * -5, 0.9 * -2 + 0.1 * 1], rtol=1e-6)
  assert int(r.count) == 2
  layer(100 * x2)  # inference (a new layer is in inference mode): ranges unchanged, no key needed
  np.testing.assert_array_equal(layer.ranges.get()[0].alpha, r.alpha)
  layer.train()
  layer(x1, key=KEY)
  assert int(layer.ranges.get()[0].count) == 3


def test_stochastic_rounding_is_unbiased():
  x = jnp.linspace(-1.0, 1.0, 64).reshape(1, 64) ** 3
  r = update_range(init_range(2), x)
  k = 4000
  keys = jax.random.split(jax.random.key(0), k)
  xh = jax.jit(jax.vmap(lambda key: dequantize(quantize(x, r, key), r)))(keys)
  delta = float(r.alpha.max()) / 255
  assert float(jnp.abs(xh - x).max()) < delta  # every draw within one step
  assert float(xh.std(0).mean()) > 0.2 * delta  # rounding is random, not to nearest
  assert float(jnp.abs(xh.mean(0) - x).max()) <= 5 * delta / (2 * math.sqrt(k))  # 5 sigma of the mean


def test_official_compat_wraps_codes_above_the_range():
  r = update_range(init_range(1), jnp.array([[0.0, 1.0]]))  # alpha 1, beta 0
  x = jnp.array([[1.5, 0.5]])
  paper = dequantize(quantize(x, r, KEY), r)
  code = dequantize(quantize(x, r, KEY, official_compat=True), r)
  np.testing.assert_allclose(paper[0, 0], 1.0)  # saturates at the range's top
  assert 0.49 < float(code[0, 0]) < 0.51  # floor(382.5 + u) mod 256 = 126 or 127
  assert abs(float(code[0, 1]) - 0.5) < 1 / 255 and abs(float(paper[0, 1]) - 0.5) < 1 / 255


def test_official_compat_stores_the_softmax_input_and_a_second_copy_of_p():
  s, g = normal(0, (2, 2, 5, 7)), normal(1, (2, 2, 5, 7))
  sizes = {}
  for compat in (False, True):
    n = 2 if compat else 1
    f = lambda w, s, compat=compat, n=n: mesa_softmax(s, ranges(n, 2), KEY, official_compat=compat)[0]
    sizes[compat] = residual_bytes(f, jnp.zeros(()), s)
  assert sizes[True] - sizes[False] >= s.size  # one more int8 tensor of the scores' shape
  grads = [jax.grad(lambda s, c=c: jnp.sum(mesa_softmax(s, ranges(1 + c, 2), KEY, official_compat=c)[0] * g))(s)
           for c in (False, True)]
  np.testing.assert_array_equal(*grads)  # the input copy is never read
  q = normal(2, (3, 2, 2, 5, 4))
  att = {c: residual_bytes(lambda w, t, c=c: mesa_attention(*t, ranges(6 if c else 4, 2), KEY,
                                                            official_compat=c)[0], jnp.zeros(()), tuple(q))
         for c in (False, True)}
  assert att[True] - att[False] >= 2 * 2 * 2 * 5 * 5  # scores and a second p, one byte each


# --- the Pallas kernel --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,axis,groups", [((3, 5, 24), -1, 2), ((2, 4, 7, 8), 1, 4)])
def test_pallas_kernel_matches_the_jnp_path_bit_for_bit(shape, axis, groups):
  x = normal(0, shape, 2.0)
  r = update_range(init_range(groups), 0.8 * x, axis=axis)  # narrower: codes saturate (and wrap)
  for compat in (False, True):
    codes = {impl: jax.jit(lambda x, impl=impl: quantize(x, r, KEY, axis=axis, official_compat=compat,
                                                         implementation=impl))(x) for impl in ("jnp", "pallas")}
    np.testing.assert_array_equal(codes["jnp"], codes["pallas"])
    values = [jax.jit(lambda c, i=i: dequantize(c, r, axis=axis, implementation=i))(codes["jnp"])
              for i in ("jnp", "pallas")]
    np.testing.assert_array_equal(*values)
  w = normal(1, (shape[-1], 3))
  grads = [jax.jit(jax.grad(lambda w, i=i: jnp.sum(jnp.sin(mesa_dense(x, w, None, init_range(2), KEY,
                                                                       implementation=i)[0]))))(w)
           for i in ("jnp", "pallas")]
  np.testing.assert_array_equal(*grads)


def test_pallas_kernel_lowers_to_triton_for_a_gpu(monkeypatch):
  """The quantize (forward) and dequantize (backward) kernels lower to Triton in Python, no GPU needed."""
  monkeypatch.setattr(_pallas, "target", lambda interpret: "gpu")
  x = jax.ShapeDtypeStruct((4, 17, 48), jnp.float32)
  w = jax.ShapeDtypeStruct((48, 8), jnp.float32)

  def loss(w, x):
    return mesa_dense(x, w, None, init_range(4), KEY, implementation="pallas")[0].sum()

  text = jax.jit(jax.grad(loss)).trace(w, x).lower(lowering_platforms=("cuda",)).as_text()
  assert text.count("custom_call @__gpu$xla.gpu.triton(") == 2


# --- layers --------------------------------------------------------------------------------------------
def test_layers_match_their_plain_counterparts_in_training_and_inference():
  x = normal(0, (2, 5, 16))
  layers = [MesaLayerNorm(16, groups=4), MesaGELU(groups=4), MesaDense(16, 8, groups=4, rngs=nnx.Rngs(0)),
            MesaAttention(16, 4, rngs=nnx.Rngs(0))]
  for layer in layers:
    out = nnx.jit(lambda layer, x: layer(x, train=True, key=KEY))(layer, x)
    np.testing.assert_array_equal(out, nnx.jit(lambda layer, x: layer(x))(layer, x))
  att = layers[-1]
  assert len(att.heads.get()) == 4 and isinstance(att.heads.get()[0], QuantRange)
  with pytest.raises(ValueError, match="groups:"):
    MesaDense(6, 2, groups=4, rngs=nnx.Rngs(0))
