"""Tests for multi-sample dropout: against explicit loops, nnx.Dropout and finite differences.

Most checks run inside one `jax.jit` per test: compiling threefry dominates the run time on CPU.
`test_jit_equals_no_jit` covers the eager path.
"""

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn.regularization import (
    MultiSampleDropoutHead,
    multi_sample_dropout_logits,
    multi_sample_dropout_loss,
    multi_sample_dropout_masks,
    softmax_cross_entropy_loss,
)

B, D, H, C = 5, 6, 7, 4


def mlp_head(params, h):
  """A non-linear head, so that the tests do not rely on linearity."""
  return jnp.tanh(h @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def make_problem(seed=0, dtype=np.float32, scale=1.0):
  rng = np.random.default_rng(seed)
  params = {
      "w1": rng.normal(size=(D, H)) / np.sqrt(D),
      "b1": 0.1 * rng.normal(size=(H,)),
      "w2": rng.normal(size=(H, C)) / np.sqrt(H),
      "b2": 0.1 * rng.normal(size=(C,)),
  }
  params = {k: jnp.asarray(v, dtype) for k, v in params.items()}
  h = jnp.asarray(scale * rng.normal(size=(B, D)), dtype)
  y = jnp.asarray(rng.integers(0, C, size=(B,)))
  return params, h, y


def ce(logits, y):
  """Hand-written mean cross-entropy with integer labels."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))


def loop_loss(head_fn, params, h, y, key, num_samples, rate, loss=ce):
  """The definition, written out: a Python loop over M masks drawn from split(key, M)."""
  keys = jax.random.split(key, num_samples)
  losses = []
  for m in range(num_samples):
    keep = jax.random.bernoulli(keys[m], 1.0 - rate, h.shape)
    losses.append(loss(head_fn(params, h * keep / (1.0 - rate)), y))
  return sum(losses) / num_samples


CONFIGS = [(8, 0.5), (3, 0.2), (5, 0.9)]


def test_equals_explicit_loop():
  params, h, y = make_problem()

  @jax.jit
  def run(params, h, y, key):
    out = []
    for num_samples, rate in CONFIGS:
      got = multi_sample_dropout_loss(mlp_head, params, h, y, key=key, num_samples=num_samples,
                                      rate=rate)
      want = loop_loss(mlp_head, params, h, y, key, num_samples, rate)
      masks = multi_sample_dropout_masks(key, (400, 50), num_samples=num_samples, rate=rate)
      keys = jax.random.split(key, num_samples)
      loop_masks = jnp.stack([jax.random.bernoulli(k, 1 - rate, (400, 50)) for k in keys])
      out.append((got, want, masks, loop_masks))
    return out

  for (num_samples, rate), (got, want, masks, loop_masks) in zip(
      CONFIGS, run(params, h, y, jax.random.key(42))):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # The masks are the documented ones, differ between samples, and drop a fraction ~ rate.
    np.testing.assert_array_equal(masks, loop_masks)
    assert masks.shape == (num_samples, 400, 50)
    assert not np.array_equal(masks[0], masks[1])
    np.testing.assert_allclose(1.0 - masks.mean(), rate, atol=0.01)


def test_mean_logits_output_is_mean_of_the_per_sample_logits():
  params, h, y = make_problem()

  @jax.jit
  def run(params, h, y, key):
    loss, mean_logits = multi_sample_dropout_loss(
        mlp_head, params, h, y, key=key, num_samples=4, rate=0.3, return_mean_logits=True)
    stacked = multi_sample_dropout_logits(mlp_head, params, h, key=key, num_samples=4, rate=0.3)
    return loss, mean_logits, stacked

  loss, mean_logits, stacked = run(params, h, y, jax.random.key(3))
  assert stacked.shape == (4, B, C)
  np.testing.assert_allclose(mean_logits, stacked.mean(0), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(loss, np.mean([ce(z, y) for z in stacked]), rtol=1e-6)
  # Per-sample logits differ from each other: the masks are independent.
  assert float(jnp.abs(stacked[0] - stacked[1]).max()) > 1e-2


def test_single_sample_equals_ordinary_dropout():
  params, h, y = make_problem()
  rate = 0.4

  @jax.jit
  def run(params, h, y, key):
    got = multi_sample_dropout_loss(mlp_head, params, h, y, key=key, num_samples=1, rate=rate)
    # nnx.Dropout with the one key that split(key, 1) gives: the same mask and the same scaling.
    dropped = nnx.Dropout(rate)(h, deterministic=False, rngs=jax.random.split(key, 1)[0])
    return got, ce(mlp_head(params, dropped), y), dropped

  got, want, dropped = run(params, h, y, jax.random.key(7))
  assert 0 < float((dropped == 0).mean()) < 1  # Something was dropped, not everything.
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_rate_zero_equals_plain_loss():
  params, h, y = make_problem()

  @jax.jit
  def run(params, h, y, key):
    return [multi_sample_dropout_loss(mlp_head, params, h, y, key=key, num_samples=m, rate=0.0)
            for m in (1, 4)]

  for got in run(params, h, y, jax.random.key(0)):
    np.testing.assert_allclose(got, ce(mlp_head(params, h), y), rtol=1e-6)


def test_gradient_matches_central_differences_in_float64():
  num_samples, rate = 4, 0.5
  with jax.enable_x64(True):
    params, h, y = make_problem(dtype=np.float64)
    flat, unravel = jax.flatten_util.ravel_pytree((params, h))

    def f(x, key):
      p, feats = unravel(x)
      return multi_sample_dropout_loss(mlp_head, p, feats, y, key=key, num_samples=num_samples,
                                       rate=rate)

    def f_avg_logits(x, key):  # A wrong objective: CE of the averaged logits.
      p, feats = unravel(x)
      _, z = multi_sample_dropout_loss(mlp_head, p, feats, y, key=key, num_samples=num_samples,
                                       rate=rate, return_mean_logits=True)
      return ce(z, y)

    @jax.jit
    def run(x, key):
      eps = 1e-6
      basis = jnp.eye(x.size, dtype=x.dtype)
      fd = jax.vmap(lambda e: (f(x + eps * e, key) - f(x - eps * e, key)) / (2 * eps))(basis)
      keep_any = multi_sample_dropout_masks(key, h.shape, num_samples=num_samples,
                                            rate=rate).any(0)
      return jax.grad(f)(x, key), fd, jax.grad(f_avg_logits)(x, key), keep_any

    grad, fd, wrong, keep_any = run(flat, jax.random.key(11))
  assert grad.dtype == np.float64
  np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
  # The tolerance rejects wrong gradients: the averaged-logits one, and the right one with the
  # dropout scale 1 / (1 - p) missing on the features' gradient.
  assert not np.allclose(wrong, fd, rtol=1e-6, atol=1e-8)
  g_h = unravel(grad)[1]
  assert not np.allclose(unravel(fd)[1], g_h * (1 - rate), rtol=1e-6, atol=1e-8)
  # A feature gets no gradient exactly where every one of the M masks dropped it.
  assert 0 < int((~keep_any).sum()) < keep_any.size
  np.testing.assert_array_equal(g_h[~keep_any], 0.0)
  assert np.all(g_h[keep_any] != 0.0)


def test_differs_from_loss_of_averaged_logits():
  # Cross-entropy is convex in the logits, so by Jensen the mean of the M losses is >= the loss of
  # the mean logits, strictly when the samples' logits differ. Large features make them differ a lot.
  params, h, y = make_problem(scale=5.0)

  @jax.jit
  def run(params, h, y, key):
    msd, mean_logits = multi_sample_dropout_loss(mlp_head, params, h, y, key=key, num_samples=8,
                                                 rate=0.5, return_mean_logits=True)
    # The averaged-logits loss, also written out independently as a loop.
    z = [mlp_head(params, h * jax.random.bernoulli(k, 0.5, h.shape) / 0.5)
         for k in jax.random.split(key, 8)]
    return msd, ce(mean_logits, y), ce(sum(z) / 8, y)

  msd, avg, avg_loop = run(params, h, y, jax.random.key(5))
  np.testing.assert_allclose(avg, avg_loop, rtol=1e-6)
  assert float(msd) > float(avg) + 0.1
  assert not np.isclose(msd, avg, rtol=0.05)


def soft_ce(logits, labels):
  return -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))


def test_soft_labels():
  params, h, y = make_problem()
  q = jax.nn.softmax(jnp.asarray(np.random.default_rng(1).normal(size=(B, C)), jnp.float32))
  msd = functools.partial(multi_sample_dropout_loss, mlp_head, num_samples=6, rate=0.5)

  @jax.jit
  def run(params, h, y, q, key):
    return (msd(params, h, jax.nn.one_hot(y, C), key=key), msd(params, h, y, key=key),
            msd(params, h, q, key=key), loop_loss(mlp_head, params, h, q, key, 6, 0.5, soft_ce))

  key = jax.random.key(9)
  onehot_loss, int_loss, soft_loss, soft_loop = run(params, h, y, q, key)
  np.testing.assert_allclose(onehot_loss, int_loss, rtol=1e-6)  # One-hot floats == integers.
  np.testing.assert_allclose(soft_loss, soft_loop, rtol=1e-6)
  assert not np.isclose(soft_loss, int_loss, rtol=1e-3)
  with pytest.raises(ValueError, match="labels"):  # The class axis must match the logits'.
    jax.eval_shape(lambda: msd(params, h, q[:, :-1], key=key))


def test_custom_loss_fn():
  params, h, _ = make_problem()
  target = jnp.ones((B, C))

  def mse(*, logits, labels):
    return jnp.mean((logits - labels) ** 2)

  @jax.jit
  def run(params, h, target, key):
    got = multi_sample_dropout_loss(mlp_head, params, h, target, key=key, num_samples=3,
                                    rate=0.25, loss_fn=mse)
    want = loop_loss(mlp_head, params, h, target, key, 3, 0.25,
                     loss=lambda z, t: mse(logits=z, labels=t))
    return got, want

  key = jax.random.key(4)
  got, want = run(params, h, target, key)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  with pytest.raises(ValueError, match="scalar"):
    jax.eval_shape(lambda: multi_sample_dropout_loss(
        mlp_head, params, h, target, key=key, num_samples=3, rate=0.25,
        loss_fn=lambda *, logits, labels: (logits - labels) ** 2))


def test_head_is_called_once_batched_whatever_m():
  # vmap, not a Python loop: the traced program has the same two matmuls for M = 1 and M = 16.
  params, h, y = make_problem()

  def n_dots(num_samples):
    jaxpr = jax.make_jaxpr(
        lambda p, x: multi_sample_dropout_loss(mlp_head, p, x, y, key=jax.random.key(0),
                                               num_samples=num_samples, rate=0.5))(params, h)
    return sum(e.primitive.name == "dot_general" for e in jaxpr.jaxpr.eqns)

  assert n_dots(1) == n_dots(16) == 2


def test_jit_equals_no_jit():
  params, h, y = make_problem()
  key = jax.random.key(13)

  def f(p, x, labels, k):
    return multi_sample_dropout_loss(mlp_head, p, x, labels, key=k, num_samples=8, rate=0.5)

  vg = jax.value_and_grad(f, argnums=(0, 1))
  jvg = jax.jit(vg)
  (v0, g0), (v1, g1) = vg(params, h, y, key), jvg(params, h, y, key)
  np.testing.assert_allclose(v0, v1, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g0, g1)
  # A different key gives a different loss (the key is an argument, not baked in at trace time).
  assert not np.isclose(jvg(params, h, y, jax.random.key(14))[0], v1)


def test_nnx_head_call_has_no_dropout_and_loss_equals_function():
  head = MultiSampleDropoutHead(D, C, num_samples=5, rate=0.5, rngs=nnx.Rngs(0))
  _, h, y = make_problem()
  w, b = head.linear.kernel[...], head.linear.bias[...]
  np.testing.assert_allclose(head(h), h @ w + b, rtol=1e-6)  # Evaluation: no dropout at all.
  np.testing.assert_array_equal(head(h), head(h))
  key = jax.random.key(21)

  def linear(p, x):
    return x @ p["w"] + p["b"]

  @jax.jit
  def reference(p, key):
    f = lambda p: multi_sample_dropout_loss(linear, p, h, y, key=key, num_samples=5, rate=0.5)
    return jax.value_and_grad(f)(p), loop_loss(linear, p, h, y, key, 5, 0.5)

  (want, want_g), want_loop = reference({"w": w, "b": b}, key)
  np.testing.assert_allclose(want, want_loop, rtol=1e-6)

  # nnx.value_and_grad w.r.t. the module's params (under nnx.jit to keep the test fast).
  @nnx.jit
  def nnx_value_and_grad(head, key):
    return nnx.value_and_grad(lambda m: m.loss(h, y, key=key))(head)

  got, grads = nnx_value_and_grad(head, key)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(grads.linear.kernel[...], want_g["w"], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grads.linear.bias[...], want_g["b"], rtol=1e-5, atol=1e-7)

  # Functional use at the jit boundary: split, a pure step over the state with a raw key, merge.
  graphdef, state = nnx.split(head)

  @jax.jit
  def step(state, key):
    loss_fn = lambda s: nnx.merge(graphdef, s).loss(h, y, key=key, return_mean_logits=True)
    return jax.value_and_grad(loss_fn, has_aux=True)(state)

  (v, mean_logits), g = step(state, key)
  np.testing.assert_allclose(v, want, rtol=1e-6)
  np.testing.assert_allclose(g["linear"]["kernel"][...], want_g["w"], rtol=1e-5, atol=1e-7)
  assert mean_logits.shape == (B, C)


BAD = [
    (dict(rate=-0.1), r"rate.*\[0, 1\)"),
    (dict(rate=1.0), r"rate.*\[0, 1\)"),
    (dict(rate=float("nan")), r"rate.*\[0, 1\)"),
    (dict(num_samples=0), r"num_samples.*>= 1"),
    (dict(num_samples=2.5), r"num_samples.*int"),
    (dict(num_samples=True), r"num_samples.*int"),
]


@pytest.mark.parametrize("kwargs,match", BAD)
def test_invalid_hyperparameters_raise(kwargs, match):
  params, h, y = make_problem()
  with pytest.raises(ValueError, match=match):
    multi_sample_dropout_loss(mlp_head, params, h, y, key=jax.random.key(0), **kwargs)
  with pytest.raises(ValueError, match=match):
    multi_sample_dropout_masks(jax.random.key(0), h.shape, **kwargs)
  with pytest.raises(ValueError, match=match):
    MultiSampleDropoutHead(D, C, rngs=nnx.Rngs(0), **kwargs)


def test_default_loss_and_its_label_checks():
  logits = jnp.zeros((3, 4))
  np.testing.assert_allclose(softmax_cross_entropy_loss(logits=logits, labels=jnp.array([0, 1, 2])),
                             np.log(4), rtol=1e-6)
  with pytest.raises(ValueError, match="labels"):
    softmax_cross_entropy_loss(logits=logits, labels=jnp.array([0, 1]))
  with pytest.raises(ValueError, match="labels"):
    softmax_cross_entropy_loss(logits=logits, labels=jnp.ones((3,), bool))
