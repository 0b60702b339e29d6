"""The Transformer's document-boundary mask: segment ids and per-row positions.

A segment "alone" is the model on a row holding only that segment, padded at the end to the common
length: with causal attention the padding cannot change the segment's outputs, so every forward pass
here has shape (rows, 12) and compiles once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import models, text
from jaxdyn.models import _transformer

T = 12
TOKENS = np.random.default_rng(0).integers(0, 256, (2, T)).astype(np.int32)
SEGMENTS = np.array([[0] * 5 + [1] * 4 + [2] * 3, [7] * T])
PIECES = [(0, 0, 5), (0, 5, 9), (0, 9, 12), (1, 0, 12)]  # (row, start, end) of each segment


@pytest.fixture(scope="module")
def model():
  return models.Transformer(dim=32, depth=2, num_heads=2, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def run(model):
  graphdef, state = nnx.split(model)

  @jax.jit
  def f(tokens, segment_ids, positions):
    return nnx.merge(graphdef, state)(tokens, segment_ids=segment_ids, positions=positions)

  return f


def _alone(model, tokens, pieces):
  rows = np.zeros((len(pieces), T), np.int32)
  for i, (b, lo, hi) in enumerate(pieces):
    rows[i, :hi - lo] = tokens[b, lo:hi]
  return jax.jit(lambda t: model(t))(rows)


def test_each_segment_equals_the_model_on_that_segment_alone(model, run):
  out = run(TOKENS, SEGMENTS, None)
  alone = _alone(model, TOKENS, PIECES)
  for i, (b, lo, hi) in enumerate(PIECES):
    np.testing.assert_allclose(out[b, lo:hi], alone[i, :hi - lo], atol=2e-5, rtol=2e-5)
  # positions restart at 0 per segment: the same as passing them per row
  pos = np.array([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2], list(range(T))], np.int32)
  np.testing.assert_array_equal(out, run(TOKENS, SEGMENTS, pos))
  # shared positions 0..11 shift the later documents' positions: RoPE is relative, so nearly the same
  np.testing.assert_allclose(out, run(TOKENS, SEGMENTS, np.broadcast_to(np.arange(T, dtype=np.int32), (2, T))),
                             atol=2e-5)


def test_one_segment_is_the_plain_causal_model_and_no_segments_is_unchanged(model, run):
  plain = jax.jit(lambda t: model(t))(TOKENS)
  np.testing.assert_allclose(run(TOKENS, np.zeros_like(TOKENS), None), plain, atol=2e-5, rtol=2e-5)
  np.testing.assert_array_equal(jax.jit(lambda t: model(t, segment_ids=None))(TOKENS), plain)


def test_a_segment_reappearing_later_in_a_row_stays_causal(model, run):
  # ids [0, 0, 1, 1, 0, 0, ...]: positions restart per run, so both runs of id 0 sit at positions 0, 1;
  # the index condition keeps the first run from reading the later one.
  seg = np.array([[0, 0, 1, 1, 0, 0, 2, 2, 2, 2, 2, 2]] * 2)
  out = run(TOKENS, seg, None)
  alone = _alone(model, TOKENS, [(0, 0, 2), (0, 2, 4)])
  np.testing.assert_allclose(out[0, :2], alone[0, :2], atol=2e-5, rtol=2e-5)
  np.testing.assert_allclose(out[0, 2:4], alone[1, :2], atol=2e-5, rtol=2e-5)


def test_packed_rows_from_concat_and_chunk_and_remat(model, run):
  docs = [np.arange(3), np.arange(10, 17), np.arange(20, 35)]
  b = text.concat_and_chunk(docs, T, eos_id=255)  # 28 tokens: 2 rows
  assert b.segment_ids.tolist()[0] == [0] * 4 + [1] * 8
  out = run(b.tokens, b.segment_ids, b.positions)
  alone = _alone(model, b.tokens, [(0, 4, 12), (1, 0, 12)])
  np.testing.assert_allclose(out[0, 4:], alone[0, :8], atol=2e-5, rtol=2e-5)
  np.testing.assert_allclose(out[1], alone[1], atol=2e-5, rtol=2e-5)
  plan = [jax.checkpoint_policies.nothing_saveable] * 2
  feats = jax.jit(lambda t, s, remat: model.features(t, segment_ids=s, remat=remat), static_argnums=2)
  np.testing.assert_allclose(feats(b.tokens, b.segment_ids, tuple(plan)), feats(b.tokens, b.segment_ids, None),
                             atol=1e-6)


def test_segment_gradients_do_not_cross_documents():
  m = models.Transformer(dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(1))
  seg = jnp.asarray(SEGMENTS[:1])
  graphdef, state = nnx.split(m)
  grads = jax.jit(jax.grad(lambda st: nnx.merge(graphdef, st)(TOKENS[:1], segment_ids=seg)[0, :5].sum()))(state)
  g = np.asarray(grads["embed"][...])
  later = np.setdiff1d(TOKENS[0, 5:], TOKENS[0, :5])  # tokens only in the later documents
  assert np.all(g[later] == 0) and np.all(np.any(g[TOKENS[0, :5]] != 0, axis=1))


def test_attention_functions_without_a_segments_form_are_refused():
  def plain(q, k, v, *, q_positions, k_positions):
    return _transformer.causal_attention(q, k, v, q_positions=q_positions, k_positions=k_positions)

  m = models.Transformer(dim=16, depth=2, num_heads=2, attention_fns=[_transformer.causal_attention, plain],
                         rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="segment_ids: layer 1's attention function 'plain' has no `segments` form"):
    m(TOKENS, segment_ids=SEGMENTS)


def test_bad_segment_ids_and_positions(model):
  with pytest.raises(ValueError, match="segment_ids: must have the shape of tokens"):
    model(TOKENS, segment_ids=SEGMENTS[:, :5])
  with pytest.raises(ValueError, match="segment_ids: must be integers"):
    model(TOKENS, segment_ids=SEGMENTS.astype(np.float32))
  with pytest.raises(ValueError, match="positions: must be integer positions of shape"):
    model(TOKENS, segment_ids=SEGMENTS, positions=np.zeros((2, 5), np.int32))
  with pytest.raises(ValueError, match="positions: must be integer positions of shape"):
    model(TOKENS, positions=np.zeros((2, T), np.int32))  # per-row positions need segment ids
