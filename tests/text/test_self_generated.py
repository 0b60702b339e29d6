"""Self-generated tokens: Batch-Scheduled Sampling inputs, its schedules and the RAC layout, by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import text

V = 11


def _logits(key, shape):
  return jax.random.normal(key, (*shape, V))


def _argmax_shifted(x, logits):
  own = np.asarray(jnp.argmax(logits, -1))
  return np.concatenate([np.asarray(x)[..., :1], own[..., :-1]], -1)


def test_p_zero_returns_the_inputs_bit_for_bit():
  x = jax.random.randint(jax.random.key(0), (3, 9), 0, V).astype(jnp.int16)
  out = text.self_generated_inputs(x, _logits(jax.random.key(1), x.shape), 0.0, key=jax.random.key(2))
  assert out.inputs.dtype == x.dtype and out.inputs.shape == x.shape
  np.testing.assert_array_equal(np.asarray(out.inputs), np.asarray(x))
  assert not bool(out.replaced.any())
  # so the next-token loss on the mixed inputs is the plain teacher-forced loss, bit for bit
  emb = jax.random.normal(jax.random.key(3), (V, V))

  def loss(inp, tgt):
    lg = emb[inp[:, :-1]]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(lg), tgt[:, 1:, None], -1))

  assert float(loss(out.inputs, out.targets)) == float(loss(x, x))


def test_p_one_replaces_every_position_but_the_first_with_the_previous_argmax():
  x = jnp.array([[3, 1, 4, 1, 5]])
  logits = jax.nn.one_hot(jnp.array([[9, 2, 6, 5, 3]]), V)
  out = text.self_generated_inputs(x, logits, 1.0, key=jax.random.key(0))
  assert out.inputs.tolist() == [[3, 9, 2, 6, 5]]  # own[t] = argmax(logits[t - 1]); position 0 kept
  assert out.replaced.tolist() == [[False, True, True, True, True]]
  assert out.targets.tolist() == x.tolist()


def test_replaced_positions_hold_the_argmax_and_the_rest_the_inputs():
  x = jax.random.randint(jax.random.key(4), (4, 17), 0, V)
  logits = _logits(jax.random.key(5), x.shape)
  out = text.self_generated_inputs(x, logits, 0.4, key=jax.random.key(6))
  r, got, own = np.asarray(out.replaced), np.asarray(out.inputs), _argmax_shifted(x, logits)
  assert r.any() and (~r[:, 1:]).any()
  np.testing.assert_array_equal(got[r], own[r])
  np.testing.assert_array_equal(got[~r], np.asarray(x)[~r])
  assert not r[:, 0].any()
  np.testing.assert_array_equal(np.asarray(out.targets), np.asarray(x))  # targets unchanged


def test_a_function_gives_the_same_result_as_its_logits():
  x = jax.random.randint(jax.random.key(7), (2, 8), 0, V)
  emb = jax.random.normal(jax.random.key(8), (V, V))
  model = lambda inp: emb[inp]  # noqa: E731  (a bigram "model")
  a = text.self_generated_inputs(x, model, 0.5, key=jax.random.key(9))
  b = text.self_generated_inputs(x, model(x), 0.5, key=jax.random.key(9))
  np.testing.assert_array_equal(np.asarray(a.inputs), np.asarray(b.inputs))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_replacement_rate_over_many_keys_is_binomial(p):
  x = jnp.zeros((8, 33), jnp.int32)
  logits = _logits(jax.random.key(10), x.shape)
  keys = jax.random.split(jax.random.key(11), 50)
  replaced = jax.vmap(lambda k: text.self_generated_inputs(x, logits, p, key=k).replaced)(keys)
  n = 50 * 8 * 32  # eligible positions (the first of each row never)
  count = int(replaced.sum())
  assert abs(count - n * p) <= 5 * np.sqrt(n * p * (1 - p))
  assert not bool(replaced[..., 0].any())


def test_segment_starts_are_never_replaced():
  x = jnp.arange(8)[None]
  seg = jnp.array([[0, 0, 0, 1, 1, 2, 2, 2]])
  logits = jax.nn.one_hot(jnp.full((1, 8), 10), V)
  out = text.self_generated_inputs(x, logits, 1.0, key=jax.random.key(0), segment_ids=seg)
  assert out.replaced.tolist() == [[False, True, True, False, True, False, True, True]]
  assert out.inputs.tolist() == [[0, 10, 10, 3, 10, 5, 10, 10]]


def test_traceable_with_a_traced_probability():
  x = jax.random.randint(jax.random.key(12), (2, 6), 0, V)
  logits = _logits(jax.random.key(13), x.shape)
  f = jax.jit(lambda p, k: text.self_generated_inputs(x, logits, p, key=k).inputs)
  np.testing.assert_array_equal(np.asarray(f(0.3, jax.random.key(1))),
                                np.asarray(text.self_generated_inputs(x, logits, 0.3, key=jax.random.key(1)).inputs))


@pytest.mark.parametrize("schedule,step,want", [
    ("constant", 0, 0.4), ("constant", 99, 0.4),
    ("linear", 0, 0.0), ("linear", 25, 0.1), ("linear", 50, 0.2), ("linear", 100, 0.4), ("linear", 150, 0.4),
    ("batch", 0, 0.0), ("batch", 24, 0.0), ("batch", 25, 0.4 / 3), ("batch", 50, 0.8 / 3), ("batch", 74, 0.8 / 3),
    ("batch", 75, 0.4), ("batch", 99, 0.4), ("batch", 500, 0.4),
])
def test_schedules_by_hand(schedule, step, want):
  # T = 100, p_max = 0.4, S = 4 stages of 25 steps: 0, 0.4/3, 0.8/3, 0.4
  assert text.sampling_probability(step, 100, schedule=schedule, p_max=0.4, stages=4) == pytest.approx(want, abs=1e-12)


def test_correction_sequence_layout_and_mask():
  tokens, mask = text.correction_sequence([81, 63], [50, 51], [52], separator="->")
  assert tokens.tolist() == [81, 63, 50, 51, 45, 62, 52]
  assert mask.tolist() == [0, 0, 0, 0, 1, 1, 1]
  t2, m2 = text.correction_sequence([], [], [7], separator=[])
  assert t2.tolist() == [7] and m2.tolist() == [1.0]
  default, _ = text.correction_sequence([1], [2], [3])
  assert bytes(default[2:-1].astype(np.uint8)) == b"\n# corrected:\n"


def test_bad_inputs_raise_naming_them():
  x = jnp.zeros((1, 4), jnp.int32)
  lg = jnp.zeros((1, 4, V))
  with pytest.raises(ValueError, match="p:"):
    text.self_generated_inputs(x, lg, 1.5, key=jax.random.key(0))
  with pytest.raises(ValueError, match="logits:"):
    text.self_generated_inputs(x, lg[:, :3], 0.5, key=jax.random.key(0))
  with pytest.raises(ValueError, match="logits:"):
    text.self_generated_inputs(x, lg.at[0, 1, 2].set(jnp.nan), 0.5, key=jax.random.key(0))
  with pytest.raises(ValueError, match="inputs:"):
    text.self_generated_inputs(x.astype(jnp.float32), lg, 0.5, key=jax.random.key(0))
  with pytest.raises(ValueError, match="reference:"):
    text.correction_sequence([1], [2], [])
