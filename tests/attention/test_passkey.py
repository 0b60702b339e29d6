"""The passkey generator's format, the training sampler and the greedy-decoding accuracy."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxdyn.models
from jaxdyn.attention._longgen import hybrid_attention_fns, hybrid_cache_sizes
from jaxdyn.attention._passkey import (
    KEY_PREFIX,
    KEY_SUFFIX,
    QUESTION,
    passkey_accuracy,
    passkey_batch,
    passkey_distance,
    passkey_example,
    passkey_overhead,
)


def _text(tokens):
  return bytes(np.asarray(tokens, np.uint8)).decode("ascii")


@pytest.mark.parametrize("length,n_digits", [(80, 5), (128, 5), (300, 3)])
def test_example_format(length, n_digits):
  rng = np.random.default_rng(0)
  filler = length - passkey_overhead(n_digits)
  for pos in (0, filler // 3, filler):
    tokens, start, n = passkey_example(rng, length, position=pos, n_digits=n_digits)
    assert tokens.shape == (length,) and tokens.dtype == np.int32 and (start, n) == (length - n_digits, n_digits)
    text = _text(tokens)
    assert text[pos:pos + len(KEY_PREFIX)] == KEY_PREFIX
    key = text[pos + len(KEY_PREFIX):pos + len(KEY_PREFIX) + n_digits]
    assert key.isdigit() and text[start:] == key  # the answer digits are the inserted key
    assert text[pos + len(KEY_PREFIX) + n_digits:].startswith(KEY_SUFFIX)
    assert text[:start].endswith(QUESTION)
    assert sum(c.isdigit() for c in text[:start]) == n_digits  # the key's digits are the only digits before
    question_at = start - len(QUESTION)
    assert question_at - (pos + len(KEY_PREFIX) + n_digits + len(KEY_SUFFIX)) == passkey_distance(length, pos, n_digits)


def test_depth_fraction_and_determinism():
  a = passkey_example(np.random.default_rng(3), 200, depth_fraction=0.0)[0]
  assert _text(a).startswith(KEY_PREFIX)
  b = passkey_example(np.random.default_rng(3), 200, depth_fraction=1.0)[0]
  assert _text(b)[:-5].endswith(KEY_SUFFIX + QUESTION)
  np.testing.assert_array_equal(passkey_example(np.random.default_rng(5), 150)[0],
                                passkey_example(np.random.default_rng(5), 150)[0])
  assert not np.array_equal(passkey_example(np.random.default_rng(5), 150)[0],
                            passkey_example(np.random.default_rng(6), 150)[0])


def test_input_checks():
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="^length: must be"):
    passkey_example(rng, passkey_overhead() - 1)
  with pytest.raises(ValueError, match="^position:"):
    passkey_example(rng, 100, position=0, depth_fraction=0.5)
  with pytest.raises(ValueError, match="^position: must be"):
    passkey_example(rng, 100, position=100)
  with pytest.raises(ValueError, match="^depth_fraction: must be"):
    passkey_example(rng, 100, depth_fraction=1.5)
  with pytest.raises(TypeError, match="^rng: must be"):
    passkey_example(0, 100)
  with pytest.raises(ValueError, match="^buckets: must be"):
    passkey_accuracy(None, length=100, num_examples=2, buckets=(5, 5))


def test_batch_weights_and_curriculum():
  tokens, weights = passkey_batch(np.random.default_rng(0), 6, 128, other_weight=0.1, max_distance=4)
  assert tokens.shape == (6, 128) and weights.shape == (6, 127)
  np.testing.assert_array_equal(weights[:, -5:], 1.0)  # predicting the 5 answer digits
  np.testing.assert_allclose(weights[:, :-5], 0.1)
  for row in tokens:
    text = _text(row)
    end_key = text.index(KEY_SUFFIX, text.index(KEY_PREFIX)) + len(KEY_SUFFIX)
    assert len(text) - 5 - len(QUESTION) - end_key <= 4  # the curriculum's largest distance


def _retrieve(model, prompt, *, max_new_tokens, key, greedy, cache_len, sink_tokens):
  """A perfect reader: copies the prompt's digits (the key's, the only digits there)."""
  del model, key, greedy, cache_len, sink_tokens
  p = np.asarray(prompt)
  ans = np.stack([row[(row >= ord("0")) & (row <= ord("9"))][:max_new_tokens] for row in p])
  return jnp.asarray(np.concatenate([p, ans], axis=1))


def test_accuracy_perfect_and_hopeless_stubs(monkeypatch):
  monkeypatch.setattr(jaxdyn.models, "generate", _retrieve)
  r = passkey_accuracy(None, length=150, num_examples=10, batch_size=4, buckets=(0, 20, 85))
  assert r["accuracy"] == 1.0 and r["bucket_accuracy"] == [1.0, 1.0] and sum(r["bucket_count"]) == 10
  assert r["distances"][0] == 0 and r["distances"][-1] == 150 - passkey_overhead()

  def wrong(model, prompt, *, max_new_tokens, **kw):  # always answers "aaaaa"
    p = np.asarray(prompt)
    return jnp.asarray(np.concatenate([p, np.full((len(p), max_new_tokens), ord("a"))], axis=1))

  monkeypatch.setattr(jaxdyn.models, "generate", wrong)
  r = passkey_accuracy(None, length=150, num_examples=10, batch_size=4, buckets=(0, 20, 40, 85))
  assert r["accuracy"] == 0.0 and r["bucket_accuracy"] == [0.0, 0.0, 0.0]


def test_accuracy_runs_a_real_model_with_ring_caches():
  plan = ("sparse", "full")
  model = jaxdyn.models.Transformer(dim=16, depth=2, num_heads=2, mlp_ratio=1,
                                    attention_fns=hybrid_attention_fns(plan, sink=2, window=8), rngs=nnx.Rngs(0))
  lens, sinks = hybrid_cache_sizes(plan, 90, sink=2, window=8)
  r = passkey_accuracy(model, length=90, num_examples=3, batch_size=2, cache_len=lens, sink_tokens=sinks,
                       buckets=(0, 10, 25))
  assert 0.0 <= r["accuracy"] <= 1.0 and len(r["correct"]) == 3 and r["bucket_count"] == [1, 2]
