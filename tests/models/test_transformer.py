import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdyn import models
from jaxdyn.models import _transformer

V, T = 256, 16  # byte vocabulary, test sequence length
SMALL = dict(dim=32, depth=2, num_heads=2)
rope = jax.jit(_transformer.rope, static_argnames="base")


def window_attention(window, sinks=0):
  """Causal sliding window (plus ``sinks`` leading tokens), masked by position as the interface asks."""

  def fn(q, k, v, *, q_positions, k_positions):
    qp, kp = q_positions[:, None], k_positions[None, :]
    mask = (kp >= 0) & (kp <= qp) & ((qp - kp < window) | (kp < sinks))
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    w = jax.nn.softmax(jnp.where(mask, s, -1e30), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", w, v)

  return fn


@functools.cache
def _model(**kw):
  return models.Transformer(**{**SMALL, **dict(kw)}, rngs=nnx.Rngs(0))


def model(**kw):
  return _model(**kw)


def tokens(shape=(2, T), seed=0):
  # NumPy draws: eager jax.random calls compile a program each on a cold cache.
  return jnp.asarray(np.random.default_rng(seed).integers(0, V, shape), jnp.int32)


def normal(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


# One compilation per model structure and shape across the tests (the graphdef is a static argument).
@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, x, positions):
  return nnx.merge(graphdef, state)(x, positions=positions)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _call(graphdef, state, x, key, train):
  """Every output of the model contract, in one compiled program."""
  m = nnx.merge(graphdef, state)
  logits, h = m(x, train=train, key=key, return_features=True)
  return logits, h, m.apply_head(m.features(x, train=train, key=key)), m.head.kernel[...]


@functools.partial(jax.jit, static_argnums=0)
def _decode(graphdef, state, x, cache):
  return nnx.merge(graphdef, state).decode(x, cache)


SINKS, WINDOW = 2, 4
RING_FNS = (window_attention(WINDOW, SINKS), models.causal_attention)  # a hybrid plan: window, then full


def forward(m):
  graphdef, state = nnx.split(m)
  return lambda x, p=None: _forward(graphdef, state, x, jnp.arange(x.shape[1]) if p is None else p)


def decoder(m):
  graphdef, state = nnx.split(m)
  return lambda x, cache: _decode(graphdef, state, x, cache)


# --- causality, attention, RoPE --------------------------------------------------------------------

def test_a_future_token_does_not_change_earlier_logits_exactly():
  f = forward(model())
  x = tokens()
  y = x.at[:, 9].set((x[:, 9] + 1) % V)
  a, b = f(x), f(y)
  np.testing.assert_array_equal(a[:, :9], b[:, :9])
  assert np.abs(a[:, 9:] - b[:, 9:]).max() > 1e-3  # position 9 onwards sees the change


def test_default_attention_is_jax_causal_dot_product_attention_and_ignores_empty_slots():
  q, k, v = normal((3, 2, 8, 2, 4), seed=3)
  p = jnp.arange(8)
  attend = jax.jit(models.causal_attention)
  out = attend(q, k, v, q_positions=p, k_positions=p)
  np.testing.assert_allclose(out, jax.jit(jax.nn.dot_product_attention, static_argnames='is_causal')(
      q, k, v, is_causal=True), atol=2e-6)
  # Garbage keys in empty cache slots (position -1), before and between the real keys: no weight.
  junk = np.full((2, 3, 2, 4), 100.0, np.float32)
  k2, v2 = (jnp.asarray(np.concatenate([junk, a, junk], 1)) for a in (k, v))
  kp2 = jnp.asarray(np.r_[[-1] * 3, np.arange(8), [-1] * 3], jnp.int32)
  np.testing.assert_allclose(attend(q, k2, v2, q_positions=p, k_positions=kp2), out, atol=2e-6)
  # A query that may read no key gets zeros, not NaN.
  none = attend(q, k, v, q_positions=p, k_positions=p + 100)
  np.testing.assert_array_equal(none, 0.0)


def test_rope_matches_the_rotation_formula():
  x = normal((1, 2, 1, 4))
  pos = jnp.array([0, 3])
  got = rope(x, pos, base=100.0)
  want = np.zeros((1, 2, 1, 4))
  for t, p in enumerate([0, 3]):
    for i in range(2):  # pair (i, i + 2) rotated by p * 100 ** (-2 i / 4)
      th = p * 100.0 ** (-2 * i / 4)
      rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
      want[0, t, 0, [i, i + 2]] = rot @ np.asarray(x[0, t, 0, [i, i + 2]])
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(got[:, 0], x[:, 0], atol=0)  # position 0: identity


def test_rope_scores_depend_only_on_relative_positions():
  q, k = normal((2, 1, 5, 1, 8), seed=1)
  pos = jnp.array([0, 2, 3, 7, 11])
  score = lambda c: jnp.einsum("bqhd,bkhd->qk", rope(q, pos + c), rope(k, pos + c))  # noqa: E731
  np.testing.assert_allclose(score(37), score(0), atol=1e-4)
  f = forward(model())
  x = tokens()
  base = f(x, jnp.arange(T))
  np.testing.assert_allclose(f(x, jnp.arange(T) + 50), base, atol=1e-4)
  assert np.abs(f(x, 2 * jnp.arange(T)) - base).max() > 1e-2  # positions are not ignored


# --- pluggable attention ---------------------------------------------------------------------------

def test_attention_fns_are_used_per_layer():
  x = tokens()
  default = forward(model())(x)
  wide = forward(model(attention_fns=(window_attention(T), window_attention(T))))(x)
  np.testing.assert_allclose(wide, default, atol=1e-5)  # a window covering the sequence is causal
  hybrid = forward(model(attention_fns=RING_FNS))(x)  # layer 0: 2 sinks + a window of 4, layer 1 causal
  diff = np.abs(hybrid - default).max(axis=(0, 2))
  # A key is first out of reach at t = 6 (key 2: not a sink, 6 - 2 >= 4).
  assert diff[:SINKS + WINDOW].max() < 1e-5 and diff[SINKS + WINDOW:].min() > 1e-3
  fn = window_attention(2)
  assert model(attention_fns=fn).attention_fns == (fn, fn)  # one callable: every layer


# --- KV cache -------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunks", [(1,) * T, (12, 1, 1, 1, 1)], ids=["token_by_token", "prefill_then_tokens"])
def test_decode_with_cache_equals_the_full_forward(chunks):
  m = model()
  x = tokens()
  full = forward(m)(x)
  step, cache, outs, t = decoder(m), m.init_cache(2, T), [], 0
  for n in chunks:
    logits, cache = step(x[:, t:t + n], cache)
    outs.append(logits)
    t += n
  err = np.abs(np.concatenate(outs, axis=1) - full).max()
  assert err < 1e-5, err
  assert int(cache.length) == T
  np.testing.assert_array_equal(cache.layers[0].positions, np.arange(T))


def test_ring_buffer_cache_is_exact_for_a_sink_plus_window_layer():
  chunks = (12, 1, 1, 1, 1)  # the prefill wraps the ring; then token by token
  sinks, window = SINKS, WINDOW
  m = model(attention_fns=RING_FNS)
  x = tokens()
  full = forward(m)(x)
  # Layer 0 keeps its 2 sinks and the 3 tokens before the current one; layer 1 keeps everything.
  cache = m.init_cache(2, (sinks + window - 1, T), sink_tokens=(sinks, 0))
  step, outs, t = decoder(m), [], 0
  for n in chunks:
    logits, cache = step(x[:, t:t + n], cache)
    outs.append(logits)
    t += n
  assert np.abs(np.concatenate(outs, axis=1) - full).max() < 1e-5
  kept = sorted(np.asarray(cache.layers[0].positions).tolist())
  assert kept == [0, 1, T - 3, T - 2, T - 1] and cache.layers[0].k.shape[1] == 5


def test_generate_equals_a_naive_loop_over_the_full_forward_and_ring_caches_change_nothing():
  # Layer 0 (sinks + window) keeps 2 sinks + 3 recent tokens in a ring of 5 slots instead of 16; layer 1
  # (causal) keeps everything. Greedy decoding through that cache must equal re-running the whole
  # forward each step (on a fixed-length buffer: causality makes the not-yet-generated tail
  # irrelevant, so one compilation serves every step).
  m = model(attention_fns=RING_FNS)
  prompt, n, key = tokens((2, 5), seed=4), T - 5, jax.random.key(7)
  gen = functools.partial(models.generate, m, prompt, max_new_tokens=n, cache_len=(SINKS + WINDOW - 1, T),
                          sink_tokens=(SINKS, 0))
  out = gen(key=key, greedy=True)
  assert out.shape == (2, T) and out.dtype == jnp.int32
  np.testing.assert_array_equal(out[:, :5], prompt)
  f = forward(m)
  buf = jnp.zeros((2, T), jnp.int32).at[:, :5].set(prompt)
  for t in range(5, T):
    buf = buf.at[:, t].set(jnp.argmax(f(buf)[:, t - 1], axis=-1))
  np.testing.assert_array_equal(out, buf)
  # Sampling (the same compiled loop): new token i is categorical(fold_in(key, i), logits / temperature).
  sampled = gen(key=key, temperature=0.7)
  want = jax.jit(jax.vmap(lambda i, z: jax.random.categorical(jax.random.fold_in(key, i), z / 0.7, axis=-1),
                          in_axes=(0, 1), out_axes=1))(jnp.arange(n), f(sampled)[:, 4:-1])
  np.testing.assert_array_equal(sampled[:, 5:], want)
  assert not np.array_equal(sampled, gen(key=jax.random.key(8)))


# --- log-probs, contract, training -----------------------------------------------------------------

def test_token_log_probs_is_the_log_softmax_entry_and_nan_for_bad_ids_under_jit():
  z = normal((3, 5, 7))
  y = jnp.asarray(np.random.default_rng(1).integers(0, 7, (3, 5)), jnp.int32)
  f = jax.jit(models.token_log_probs)
  lp = f(z, y)
  want = np.take_along_axis(np.asarray(z), np.asarray(y)[..., None], -1)[..., 0] - np.log(
      np.exp(np.asarray(z, np.float64)).sum(-1))
  np.testing.assert_allclose(lp, want, atol=1e-6)
  np.testing.assert_allclose(sum(np.exp(f(z, jnp.full((3, 5), c, jnp.int32))) for c in range(7)), 1.0, atol=1e-5)
  bad = f(z, y.at[1, 2].set(7))
  assert np.isnan(bad[1, 2]) and np.isfinite(np.delete(np.asarray(bad).ravel(), 7)).all()


def _param_count(m):
  return sum(p.size for p in jax.tree.leaves(nnx.state(m, nnx.Param)))


def test_parameter_counts_match_the_architecture():
  d, h = 32, 4 * 32  # mlp_ratio 4
  attn = 4 * d * d  # q, k, v and output projections, no biases
  # SwiGLU + RMSNorm: up (d -> 2h), down (h -> d), one scale per norm.
  swiglu = V * d + 2 * (attn + 3 * d * h + 2 * d) + d + d * V
  assert _param_count(model()) == swiglu
  # GELU + LayerNorm (the variant the next test uses): up (d -> h), scale and bias per norm.
  gelu = V * d + 2 * (attn + 2 * d * h + 4 * d) + 2 * d + d * V
  assert _param_count(models.Transformer(**SMALL, norm="layernorm", mlp="gelu", rngs=nnx.Rngs(1))) == gelu


def test_model_contract_features_head_and_dropout():
  m = models.Transformer(**SMALL, dropout_rate=0.3, norm="layernorm", mlp="gelu", rngs=nnx.Rngs(1))
  assert isinstance(m, models.Model) and isinstance(m, models.HeadSplit)
  x, k0, k1 = tokens(), jax.random.key(0), jax.random.key(1)
  graphdef, state = nnx.split(m)
  logits, h, split, kernel = _call(graphdef, state, x, k0, None)  # a new model evaluates
  assert logits.shape == (2, T, V) and h.shape == (2, T, 32)
  np.testing.assert_allclose(logits, h @ kernel, atol=1e-5)
  np.testing.assert_allclose(split, logits, atol=1e-6)
  a = _call(graphdef, state, x, k0, True)
  assert np.abs(a[0] - _call(graphdef, state, x, k1, True)[0]).max() > 1e-3  # dropout, drawn from the key
  np.testing.assert_array_equal(a[0], a[2])  # features + head draw the same dropout
  with pytest.raises(ValueError, match="key:"):
    _call(graphdef, state, x, None, True)
  m.train()  # the NNX mode switch: train=None now means training (dropout needs a key)
  assert models.is_training(m, None) and not models.is_training(m, False)
  with pytest.raises(ValueError, match="key:"):
    m(x)
  m.eval()
  np.testing.assert_array_equal(_call(*nnx.split(m), x, k0, None)[0], logits)  # compiled already
  assert forward(model())(tokens((0, T))).shape == (0, T, V)  # an empty batch gives empty logits


def test_out_of_range_token_under_jit_gives_nan_in_its_sequence_only():
  out = forward(model())(tokens().at[0, 5].set(V))
  assert np.isnan(out[0, 5:]).all() and np.isfinite(out[1]).all()


def test_overfits_a_repeated_byte_string():
  text = np.frombuffer(b"the quick brown fox jumps. " * 12, np.uint8).astype(np.int32)
  batch = jnp.asarray(np.stack([text[i:i + 33] for i in range(0, 8 * 13, 13)]))
  graphdef, params = nnx.split(model())
  opt = optax.adam(3e-3)

  def loss_fn(p):
    logits = nnx.merge(graphdef, p)(batch[:, :-1])
    return -models.token_log_probs(logits, batch[:, 1:]).mean()

  @jax.jit
  def train(p):
    def step(carry, _):
      p, s = carry
      loss, g = jax.value_and_grad(loss_fn)(p)
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), loss
    (p, _), losses = jax.lax.scan(step, (p, opt.init(p)), None, length=100)
    return losses, loss_fn(p)

  losses, final = train(params)
  # Measured: 5.76 at step 0 (ln 256 = 5.55), 0.40 at step 25, 0.070 at 50, 0.019 after 100 steps.
  assert losses[0] > 5.0
  assert final < 0.1, float(final)


# --- bad inputs ------------------------------------------------------------------------------------

def test_bad_inputs_name_themselves():
  m = model()
  build = functools.partial(models.Transformer, **SMALL, rngs=nnx.Rngs(0))
  for call, exc, msg in [
      (lambda: m(jnp.zeros((2, 4))), ValueError, "tokens: must be integer"),
      (lambda: m(jnp.zeros((4,), jnp.int32)), ValueError, "tokens: must have 2 dimensions"),
      (lambda: m(jnp.full((2, 4), V, jnp.int32)), ValueError, "tokens: must lie in"),
      (lambda: m(jnp.full((2, 4), -1, jnp.int32)), ValueError, "tokens: must lie in"),
      (lambda: m(tokens(), positions=jnp.arange(3)), ValueError, "positions: must be"),
      (lambda: build(attention_fns=[models.causal_attention] * 3), ValueError, "attention_fns: must be"),
      (lambda: build(attention_fns=[models.causal_attention, "dense"]), ValueError, "attention_fns: must be"),
      (lambda: build(attention_fns=3), TypeError, "attention_fns: must be"),
      (lambda: build(num_heads=3), ValueError, "num_heads: must"),
      (lambda: models.Transformer(dim=12, num_heads=4, rngs=nnx.Rngs(0)), ValueError, "num_heads: must"),
      (lambda: build(norm="batchnorm"), ValueError, "norm: must be one of"),
      (lambda: build(mlp="relu"), ValueError, "mlp: must be one of"),
      (lambda: build(vocab_size=0), ValueError, "vocab_size: must be"),
      (lambda: m.init_cache(2, (4, 4, 4)), ValueError, "max_len: must be"),
      (lambda: m.init_cache(2, 4, sink_tokens=4), ValueError, "sink_tokens: must be"),
      (lambda: m.decode(tokens(), {}), ValueError, "cache: must be"),
      (lambda: m.decode(tokens((3, 2)), m.init_cache(2, 4)), ValueError, "tokens: must have the cache's batch"),
      (lambda: models.generate(m, tokens(), max_new_tokens=0, key=jax.random.key(0)), ValueError,
       "max_new_tokens: must be"),
      (lambda: models.generate(m, tokens(), max_new_tokens=2, key=jax.random.key(0), temperature=0.0), ValueError,
       "temperature: must be"),
      (lambda: models.generate(m, tokens(), max_new_tokens=2, key=None), ValueError, "key:"),
      (lambda: models.generate(m, tokens((2, 0)), max_new_tokens=2, key=jax.random.key(0)), ValueError,
       "prompt_tokens: must hold"),
      (lambda: models.generate(object(), tokens(), max_new_tokens=2, key=jax.random.key(0)), TypeError,
       "model: must be"),
      (lambda: models.token_log_probs(jnp.zeros((2, 3)), jnp.array([0, 3])), ValueError, "tokens: must lie in"),
      (lambda: models.token_log_probs(jnp.zeros((2, 3)), jnp.array([0.0, 1.0])), ValueError, "tokens: must be"),
      (lambda: models.causal_attention(jnp.ones((1, 2, 1, 4)), jnp.ones((1, 3, 1, 4)), jnp.ones((1, 3, 1, 4)),
                                       q_positions=jnp.arange(2), k_positions=jnp.arange(2)), ValueError,
       "k_positions: must be"),
  ]:
    with pytest.raises(exc, match=msg):
      call()
