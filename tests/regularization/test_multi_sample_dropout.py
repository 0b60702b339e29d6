"""Multi-sample dropout against explicit loops, nnx.Dropout, closed forms, finite differences.

The function under test is mostly called jitted (`jit_msd`, cached per configuration) and the
references eagerly, to keep the run short: compiling threefry dominates the run time on CPU.
`test_jit_equals_no_jit` covers the eager path of the function under test.
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


# References in NumPy (float64): eager jnp ops would each compile, and compiling dominates here.


def np_head(params, h):
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  return np.tanh(np.asarray(h, np.float64) @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def ce(logits, y):
  """Hand-written mean cross-entropy with integer labels."""
  logp = np_log_softmax(np.asarray(logits, np.float64))
  return -np.mean(np.take_along_axis(logp, np.asarray(y)[:, None], axis=-1))


def soft_ce(logits, q):
  return -np.mean(np.sum(np.asarray(q) * np_log_softmax(np.asarray(logits, np.float64)), axis=-1))


def loop_masks(key, shape, num_samples, rate):
  """The documented masks, drawn one key at a time."""
  return [np.asarray(jax.random.bernoulli(k, 1.0 - rate, shape))
          for k in jax.random.split(key, num_samples)]


def loop_loss(params, h, y, key, num_samples, rate, loss=ce, head=np_head):
  """The definition, written out: a Python loop over the M masks, mean of the M losses."""
  h = np.asarray(h, np.float64)
  losses = [loss(head(params, h * keep / (1.0 - rate)), y)
            for keep in loop_masks(key, h.shape, num_samples, rate)]
  return sum(losses) / num_samples


@functools.cache
def jit_msd(**kwargs):
  """`multi_sample_dropout_loss(mlp_head, ...)` jitted with the hyperparameters bound."""
  return jax.jit(functools.partial(multi_sample_dropout_loss, mlp_head, **kwargs))


@pytest.mark.parametrize("num_samples,rate", [(8, 0.5), (3, 0.8)])
def test_equals_explicit_loop(num_samples, rate):
  params, h, y = make_problem()
  key = jax.random.key(42)
  got = jit_msd(num_samples=num_samples, rate=rate)(params, h, y, key=key)
  np.testing.assert_allclose(got, loop_loss(params, h, y, key, num_samples, rate),
                             rtol=1e-6, atol=1e-6)


def test_masks_are_the_documented_ones():
  key = jax.random.key(42)
  masks = multi_sample_dropout_masks(key, (B, D), num_samples=8, rate=0.3)
  assert masks.shape == (8, B, D) and masks.dtype == bool
  np.testing.assert_array_equal(masks, np.stack(loop_masks(key, (B, D), 8, 0.3)))
  assert not np.array_equal(masks[0], masks[1])
  # 240 draws: the dropped fraction is 0.3 +- 0.030 (1 sd); the bound is 5 sd.
  assert abs(float(1.0 - masks.mean()) - 0.3) < 0.15


def test_single_sample_equals_ordinary_dropout():
  params, h, y = make_problem()
  rate, key = 0.4, jax.random.key(7)
  got = jit_msd(num_samples=1, rate=rate)(params, h, y, key=key)
  # nnx.Dropout with the one key that split(key, 1) gives: the same mask and the same scaling.
  dropped = nnx.Dropout(rate)(h, deterministic=False, rngs=jax.random.split(key, 1)[0])
  assert 0 < float((dropped == 0).mean()) < 1  # Something was dropped, not everything.
  np.testing.assert_allclose(got, ce(np_head(params, dropped), y), rtol=1e-6)


def test_rate_zero_equals_plain_loss():
  params, h, y = make_problem()
  got = jit_msd(num_samples=4, rate=0.0)(params, h, y, key=jax.random.key(0))
  np.testing.assert_allclose(got, ce(np_head(params, h), y), rtol=1e-6)


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
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=-1))

    @jax.jit
    def run(x, key):
      eps = 1e-6
      basis = jnp.eye(x.size, dtype=x.dtype)
      fd = jax.vmap(lambda e: (f(x + eps * e, key) - f(x - eps * e, key)) / (2 * eps))(basis)
      keep_any = multi_sample_dropout_masks(key, h.shape, num_samples=num_samples,
                                            rate=rate).any(0)
      return jax.grad(f)(x, key), fd, jax.grad(f_avg_logits)(x, key), keep_any

    grad, fd, wrong, keep_any = map(np.asarray, run(flat, jax.random.key(11)))
    g_h, fd_h = map(np.asarray, (unravel(grad)[1], unravel(fd)[1]))
  assert grad.dtype == np.float64 and g_h.dtype == np.float64
  np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
  # The tolerance rejects wrong gradients: the averaged-logits one, and the right one with the
  # dropout scale 1 / (1 - p) missing on the features' gradient.
  assert not np.allclose(wrong, fd, rtol=1e-6, atol=1e-8)
  assert not np.allclose(fd_h, g_h * (1 - rate), rtol=1e-6, atol=1e-8)
  # A feature gets no gradient exactly where every one of the M masks dropped it.
  assert 0 < int((~keep_any).sum()) < keep_any.size
  np.testing.assert_array_equal(g_h[~keep_any], 0.0)
  assert np.all(g_h[keep_any] != 0.0)


def test_differs_from_loss_of_averaged_logits():
  # Cross-entropy is convex in the logits, so by Jensen the mean of the M losses is >= the loss of
  # the mean logits, strictly when the samples' logits differ; large features make them differ.
  params, h, y = make_problem(scale=5.0)
  key = jax.random.key(5)
  msd, mean_logits = jit_msd(num_samples=8, rate=0.5, return_mean_logits=True)(params, h, y,
                                                                              key=key)
  # The per-sample logits written out as a loop; the mean-logits output is their mean.
  z = np.stack([np_head(params, h * keep / 0.5) for keep in loop_masks(key, h.shape, 8, 0.5)])
  assert float(np.abs(z[0] - z[1]).max()) > 1e-2  # The masks are independent.
  np.testing.assert_allclose(mean_logits, z.mean(0), rtol=1e-5, atol=1e-5)
  msd_loop, avg = np.mean([ce(zm, y) for zm in z]), ce(z.mean(0), y)
  np.testing.assert_allclose(msd, msd_loop, rtol=1e-6)
  assert float(msd) > float(avg) + 0.1
  assert not np.isclose(msd, avg, rtol=0.05)


def test_soft_labels():
  params, h, y = make_problem()
  q = np.random.default_rng(1).dirichlet(np.ones(C), size=B).astype(np.float32)
  q[0] = np.eye(C)[int(y[0])]  # One row one-hot, the others soft.
  key = jax.random.key(9)
  msd = jit_msd(num_samples=6, rate=0.5)
  soft_loss = msd(params, h, q, key=key)
  np.testing.assert_allclose(soft_loss, loop_loss(params, h, q, key, 6, 0.5, loss=soft_ce),
                             rtol=1e-6)
  # One-hot float labels give the integer-label loss.
  onehot_loss = msd(params, h, np.eye(C, dtype=np.float32)[np.asarray(y)], key=key)
  int_loss = loop_loss(params, h, y, key, 6, 0.5)
  np.testing.assert_allclose(onehot_loss, int_loss, rtol=1e-6)
  assert not np.isclose(soft_loss, int_loss, rtol=1e-3)
  with pytest.raises(ValueError, match="labels"):  # The class axis must match the logits'.
    jax.eval_shape(lambda: msd(params, h, q[:, :-1], key=key))


def test_custom_loss_fn():
  params, h, _ = make_problem()
  target = jnp.ones((B, C))

  def mse(*, logits, labels):
    return jnp.mean((logits - labels) ** 2)

  key = jax.random.key(4)
  got = jit_msd(num_samples=3, rate=0.25, loss_fn=mse)(params, h, target, key=key)
  want = loop_loss(params, h, target, key, 3, 0.25,
                   loss=lambda z, t: np.mean((z - np.asarray(t)) ** 2))
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

  # Values only: gradients are checked under jit against finite differences and a closed form.
  eager = multi_sample_dropout_loss(mlp_head, params, h, y, key=key, num_samples=8, rate=0.5)
  jitted = jit_msd(num_samples=8, rate=0.5)
  np.testing.assert_allclose(eager, jitted(params, h, y, key=key), rtol=1e-6)
  # A different key gives a different loss (the key is an argument, not baked in at trace time).
  assert not np.isclose(jitted(params, h, y, key=jax.random.key(14)), eager)
  # The eager per-sample logits are the loop's.
  stacked = multi_sample_dropout_logits(mlp_head, params, h, key=key, num_samples=8, rate=0.5)
  z = [np_head(params, h * keep / 0.5) for keep in loop_masks(key, h.shape, 8, 0.5)]
  np.testing.assert_allclose(stacked, np.stack(z), rtol=1e-5, atol=1e-6)


def test_nnx_head_call_has_no_dropout_and_loss_equals_function():
  num_samples, rate = 5, 0.5
  head = MultiSampleDropoutHead(D, C, num_samples=num_samples, rate=rate, rngs=nnx.Rngs(0))
  _, h, y = make_problem()
  w, b = np.asarray(head.linear.kernel[...]), np.asarray(head.linear.bias[...])
  np.testing.assert_allclose(head(h), np.asarray(h) @ w + b, rtol=1e-6)  # No dropout at all.
  np.testing.assert_array_equal(head(h), head(h))
  key = jax.random.key(21)

  # Closed form for a linear head: dL/dz_m = (softmax(z_m) - onehot(y)) / (B M) with
  # z_m = h_m w + b and h_m the dropped-out features.
  hs = [np.asarray(h * keep / (1 - rate)) for keep in loop_masks(key, h.shape, num_samples, rate)]
  onehot = np.eye(C)[np.asarray(y)]
  want = np.mean([ce(hm @ w + b, y) for hm in hs])
  dz = [(np.exp(np_log_softmax(hm @ w + b)) - onehot) / (B * num_samples) for hm in hs]
  want_w = sum(hm.T @ d for hm, d in zip(hs, dz))
  want_b = sum(d.sum(0) for d in dz)

  # nnx.value_and_grad w.r.t. the module's params (under nnx.jit to keep the test fast).
  @nnx.jit
  def nnx_value_and_grad(head, key):
    return nnx.value_and_grad(lambda m: m.loss(h, y, key=key))(head)

  got, grads = nnx_value_and_grad(head, key)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(grads.linear.kernel[...], want_w, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grads.linear.bias[...], want_b, rtol=1e-5, atol=1e-7)

  # Functional use at the jit boundary: split, a pure step over the state with a raw key, merge.
  graphdef, state = nnx.split(head)

  @jax.jit
  def step(state, key):
    loss_fn = lambda s: nnx.merge(graphdef, s).loss(h, y, key=key, return_mean_logits=True)
    return jax.value_and_grad(loss_fn, has_aux=True)(state)

  (v, mean_logits), g = step(state, key)
  np.testing.assert_allclose(v, want, rtol=1e-6)
  np.testing.assert_allclose(g["linear"]["kernel"][...], want_w, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(mean_logits, np.mean([hm @ w + b for hm in hs], 0), rtol=1e-5,
                             atol=1e-6)


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


# --- Input policy: labels, non-finite inputs, empty batches, numbers, keys -----------------------


def test_default_loss_rejects_negative_and_too_large_labels_eagerly():
  # -1 used to wrap to the last class (log 4 here) and 4 gave NaN; both are out of [0, 4).
  logits = jnp.zeros((3, 4))
  for bad in (-1, 4):
    with pytest.raises(ValueError, match=r"labels: must lie in \[0, 4\)"):
      softmax_cross_entropy_loss(logits=logits, labels=jnp.array([0, bad, 2]))
  params, h, y = make_problem()
  with pytest.raises(ValueError, match=r"labels: must lie in \[0, 4\)"):
    multi_sample_dropout_loss(mlp_head, params, h, y.at[1].set(-1), key=jax.random.key(0))


def test_default_loss_gives_nan_for_an_out_of_range_label_under_jit():
  loss = jax.jit(lambda y: softmax_cross_entropy_loss(logits=jnp.zeros((3, 4)), labels=y))
  np.testing.assert_allclose(loss(jnp.array([0, 3, 2])), np.log(4), rtol=1e-6)
  assert np.isnan(loss(jnp.array([0, -1, 2])))  # Was log 4: the last class.
  assert np.isnan(loss(jnp.array([0, 4, 2])))
  params, h, y = make_problem()
  msd = jit_msd(num_samples=3, rate=0.5)
  assert np.isfinite(msd(params, h, y, key=jax.random.key(0)))
  assert np.isnan(msd(params, h, y.at[1].set(-1), key=jax.random.key(0)))


def test_default_loss_propagates_non_finite_logits():
  z = np.zeros((2, 3), np.float32)
  z[0, 1] = -np.inf  # Off the label: optax alone gives a finite (log 2 + log 3) / 2.
  for labels in (jnp.array([0, 2]), jnp.eye(3)[jnp.array([0, 2])]):
    assert np.isnan(softmax_cross_entropy_loss(logits=z, labels=labels))
    assert np.isnan(jax.jit(lambda a, b: softmax_cross_entropy_loss(logits=a, labels=b))(z, labels))
  np.testing.assert_allclose(softmax_cross_entropy_loss(logits=z[1:], labels=jnp.array([2])), np.log(3),
                             rtol=1e-6)


def test_empty_batch_is_rejected():
  with pytest.raises(ValueError, match=r"logits: must hold at least one"):
    softmax_cross_entropy_loss(logits=jnp.zeros((0, 4)), labels=jnp.zeros((0,), jnp.int32))
  with pytest.raises(ValueError, match=r"logits: must hold at least one of its classes"):
    softmax_cross_entropy_loss(logits=jnp.zeros((2, 0)), labels=jnp.zeros((2, 0)))
  params, _, _ = make_problem()
  with pytest.raises(ValueError, match=r"features: must hold at least one"):
    multi_sample_dropout_loss(mlp_head, params, jnp.zeros((0, D)), jnp.zeros((0,), jnp.int32),
                              key=jax.random.key(0))
  # The logits of an empty batch are defined: empty.
  z = multi_sample_dropout_logits(mlp_head, params, jnp.zeros((0, D)), key=jax.random.key(0), num_samples=3)
  assert z.shape == (3, 0, C)


def test_a_non_finite_feature_dropped_by_every_mask_still_gives_nan():
  params, h, y = make_problem()
  masks = np.ones((3, B, D), bool)
  masks[:, 0, 0] = False  # Every sample drops feature (0, 0) ...
  for bad in (np.nan, np.inf, -np.inf):
    hb = np.asarray(h).copy()
    hb[0, 0] = bad  # ... which used to hide a non-finite value there.
    loss = multi_sample_dropout_loss(mlp_head, params, hb, y, masks=masks, num_samples=3, rate=0.5)
    assert np.isnan(loss), bad
    assert np.isnan(multi_sample_dropout_logits(mlp_head, params, hb, masks=masks, num_samples=3)).all()
  ok = multi_sample_dropout_loss(mlp_head, params, h, y, masks=masks, num_samples=3, rate=0.5)
  np.testing.assert_allclose(ok, np.mean([ce(np_head(params, np.asarray(h) * m / 0.5), y) for m in masks]),
                             rtol=1e-6)


@pytest.mark.parametrize("num_samples", [np.int64(3), np.int32(3), np.asarray(3)])
def test_numpy_scalars_are_numbers(num_samples):
  params, h, y = make_problem()
  key = jax.random.key(3)
  want = loop_loss(params, h, y, key, 3, 0.5)
  got = multi_sample_dropout_loss(mlp_head, params, h, y, key=key, num_samples=num_samples,
                                  rate=np.float32(0.5))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  masks = multi_sample_dropout_masks(key, (B, D), num_samples=num_samples, rate=np.asarray(0.5))
  np.testing.assert_array_equal(masks, np.stack(loop_masks(key, (B, D), 3, 0.5)))
  head = MultiSampleDropoutHead(np.int64(D), np.asarray(C), num_samples=num_samples, rate=np.float32(0.5),
                                rngs=nnx.Rngs(0))
  assert (head.num_samples, head.rate) == (3, 0.5) and head(h).shape == (B, C)


@pytest.mark.parametrize("bad", [None, "key", 0, np.zeros(2, np.float32)])
def test_bad_key_is_named(bad):
  params, h, y = make_problem()
  with pytest.raises((ValueError, TypeError), match="key:"):
    multi_sample_dropout_loss(mlp_head, params, h, y, key=bad)
  with pytest.raises((ValueError, TypeError), match="key:"):
    multi_sample_dropout_logits(mlp_head, params, h, key=bad)
  with pytest.raises((ValueError, TypeError), match="key:"):
    multi_sample_dropout_masks(bad, (B, D))


def test_bad_shapes_and_sizes_are_named():
  with pytest.raises(ValueError, match="shape: must be an int >= 0"):
    multi_sample_dropout_masks(jax.random.key(0), (B, -1))
  with pytest.raises(ValueError, match="in_features: must be an int >= 1"):
    MultiSampleDropoutHead(0, C, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="out_features: must be an int >= 1"):
    MultiSampleDropoutHead(D, 2.0, rngs=nnx.Rngs(0))


# --- Explicit masks (a test hook) ----------------------------------------------------------------


def test_explicit_masks_hand_worked():
  # Linear head w = I (2 x 2), h = [[1, 2]], p = 0.5, masks keep [x, .] and [., x]: the kept feature
  # is scaled by 1 / (1 - p) = 2, so the logits are [2, 0] and [0, 4].
  w, h, y = jnp.eye(2), jnp.array([[1.0, 2.0]]), jnp.array([1])
  keep = np.array([[[True, False]], [[False, True]]])
  z = multi_sample_dropout_logits(lambda w, x: x @ w, w, h, masks=keep, num_samples=2, rate=0.5)
  np.testing.assert_array_equal(z, [[[2.0, 0.0]], [[0.0, 4.0]]])
  # Loss: mean of CE([2, 0], 1) = log(1 + e^2) and CE([0, 4], 1) = log(1 + e^-4).
  want = (np.log1p(np.exp(2.0)) + np.log1p(np.exp(-4.0))) / 2
  loss, mean_logits = multi_sample_dropout_loss(lambda w, x: x @ w, w, h, y, masks=keep, num_samples=2,
                                                rate=0.5, return_mean_logits=True)
  np.testing.assert_allclose(loss, want, rtol=1e-6)
  np.testing.assert_allclose(mean_logits, [[1.0, 2.0]])


def test_explicit_masks_equal_the_drawn_ones():
  params, h, y = make_problem()
  key = jax.random.key(17)
  masks = multi_sample_dropout_masks(key, h.shape, num_samples=4, rate=0.3)
  by_key = multi_sample_dropout_loss(mlp_head, params, h, y, key=key, num_samples=4, rate=0.3)
  by_masks = multi_sample_dropout_loss(mlp_head, params, h, y, masks=masks, num_samples=4, rate=0.3)
  np.testing.assert_array_equal(by_masks, by_key)
  # Under jit with traced masks too, against the loop on the same masks.
  jitted = jax.jit(lambda m: multi_sample_dropout_loss(mlp_head, params, h, y, masks=m, num_samples=4,
                                                       rate=0.3))
  np.testing.assert_allclose(jitted(masks), loop_loss(params, h, y, key, 4, 0.3), rtol=1e-6)


def test_head_loss_with_explicit_masks_hand_worked():
  rate = 0.5
  head = MultiSampleDropoutHead(D, C, num_samples=2, rate=rate, rngs=nnx.Rngs(0))
  w, b = np.asarray(head.linear.kernel[...]), np.asarray(head.linear.bias[...])
  _, h, y = make_problem()
  masks = np.zeros((2, B, D), bool)
  masks[0, :, :3] = True  # sample 1 keeps the first three features, sample 2 the last three
  masks[1, :, 3:] = True
  hs = [np.asarray(h) * m / (1 - rate) for m in masks]
  want = np.mean([ce(hm @ w + b, y) for hm in hs])
  np.testing.assert_allclose(head.loss(h, y, masks=masks), want, rtol=1e-6)
  with pytest.raises(ValueError, match="key:"):
    head.loss(h, y)


def test_explicit_masks_are_validated_by_name():
  params, h, y = make_problem()
  good = np.ones((3, B, D), bool)
  with pytest.raises(ValueError, match="key: pass either key or masks"):
    multi_sample_dropout_loss(mlp_head, params, h, y, key=jax.random.key(0), masks=good, num_samples=3)
  with pytest.raises(ValueError, match="key: a jax.random key is required"):
    multi_sample_dropout_logits(mlp_head, params, h, num_samples=3)
  with pytest.raises(ValueError, match=r"masks: must have shape .* = \(3, 5, 6\), got \(3, 5, 5\)"):
    multi_sample_dropout_loss(mlp_head, params, h, y, masks=good[..., :5], num_samples=3)
  with pytest.raises(ValueError, match=r"masks: .* = \(8, 5, 6\), got \(3, 5, 6\)"):  # default M = 8
    multi_sample_dropout_logits(mlp_head, params, h, masks=good)
  with pytest.raises(TypeError, match="masks: must be boolean"):
    multi_sample_dropout_logits(mlp_head, params, h, masks=good.astype(np.float32), num_samples=3)
