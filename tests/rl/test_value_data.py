"""Tests of the synthetic value data, probe choice probabilities and the DPO step (`jaxdyn.rl._value_data`)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdyn.data import EOS_ID, VOCAB_SIZE
from jaxdyn.models import Transformer
from jaxdyn.rl import (
    DPOState,
    decode_completion,
    dpo_init,
    dpo_loss,
    dpo_step,
    probe_value_probs,
    value_drift,
    value_preferences,
    value_probes,
    value_sft_data,
)


def _model(seed=0):
  return Transformer(VOCAB_SIZE, dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(seed))


@pytest.mark.parametrize("rate", [0.0, 0.37, 0.5, 1.0])
def test_preference_rate_is_exact_and_pairs_differ_in_the_value_only(rate):
  n = 10_000
  d = value_preferences(n, value_rate=rate, seed=3)
  assert int(d.chosen_has_value.sum()) == round(rate * n)
  assert np.mean(d.chosen_has_value) == pytest.approx(rate, abs=0)
  for p, c, r, h in zip(d.prompts[:50], d.chosen[:50], d.rejected[:50], d.chosen_has_value[:50]):
    assert (c, r) == ((b"safe", b"bold") if h else (b"bold", b"safe"))
    assert p.startswith(b"Q") and p.endswith(b"?") and int(p[1:4]) < 800
  assert d.prompt_ids.min() >= 0 and d.prompt_ids.max() < 800
  # encoded rows: the same prompt, then the option and EOS; chosen and rejected differ only in the option
  diff = d.chosen_tokens != d.rejected_tokens
  assert not diff[:, :6].any() and not diff[:, 10:].any() and diff[:, 6:10].any(axis=1).all()
  assert decode_completion(d.chosen_tokens[0, 6:]) == d.chosen[0]
  assert (d.chosen_tokens[:, 10] == EOS_ID).all()


def test_sft_rate_is_exact_and_seeded():
  d = value_sft_data(9_999, value_rate=0.8, seed=1)
  assert int(d.has_value.sum()) == 7999 and len(d.completions) == 9_999
  assert all((c == b"safe") == h for c, h in zip(d.completions, d.has_value))
  assert decode_completion(d.tokens[5, 6:]) == d.completions[5]
  again, other = value_sft_data(9_999, value_rate=0.8, seed=1), value_sft_data(9_999, value_rate=0.8, seed=2)
  np.testing.assert_array_equal(again.has_value, d.has_value)
  np.testing.assert_array_equal(again.prompt_ids, d.prompt_ids)
  assert (other.has_value != d.has_value).any()


def test_probes_are_fixed_held_out_and_ordered():
  p = value_probes(5)
  assert p.prompts == [b"Q800?", b"Q801?", b"Q802?", b"Q803?", b"Q804?"] and p.prompt_len == 6
  assert [decode_completion(t[6:]) for t in p.tokens[:, 0]] == [b"safe"] * 5
  assert [decode_completion(t[6:]) for t in p.tokens[:, 1]] == [b"bold"] * 5
  np.testing.assert_array_equal(value_probes(200).tokens[:5], p.tokens)
  train_ids = set(value_preferences(5_000, value_rate=0.5, seed=0).prompt_ids.tolist())
  assert train_ids.isdisjoint(value_probes().prompt_ids.tolist())


def test_probe_probs_match_a_hand_computation():
  m = _model(1)
  p = value_probes(4)
  probs = np.asarray(probe_value_probs(m, p.tokens, prompt_len=p.prompt_len))
  assert probs.shape == (4, 2)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
  # by hand: log-softmax of the logits, the 4 option tokens and the EOS (targets 6..10), in float64
  flat = p.tokens.reshape(8, 11)
  logits = np.asarray(m(jnp.asarray(flat)), np.float64)
  logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  seq = np.array([sum(logits[r, j - 1, flat[r, j]] - logz[r, j - 1] for j in range(6, 11)) for r in range(8)])
  seq = seq.reshape(4, 2)
  want = np.exp(seq - seq.max(-1, keepdims=True))
  want /= want.sum(-1, keepdims=True)
  np.testing.assert_allclose(probs, want, rtol=1e-4, atol=1e-6)
  # padding after EOS is ignored: longer rows give the same probabilities
  padded = np.concatenate([p.tokens, np.full((4, 2, 3), 258, np.int32)], axis=2)
  np.testing.assert_allclose(probe_value_probs(m, padded, prompt_len=6), probs, atol=1e-5)


def _seq_lp(model, tokens):
  lp = jax.nn.log_softmax(model(jnp.asarray(tokens)), axis=-1)
  return np.array([sum(float(lp[r, j - 1, tokens[r, j]]) for j in range(6, 11)) for r in range(len(tokens))])


def test_dpo_step_decreases_the_loss_and_moves_the_probe():
  m = _model(2)
  tx = optax.adam(3e-3)
  d = value_preferences(16, value_rate=1.0, seed=0)
  probes = value_probes(8)
  before = np.asarray(probe_value_probs(m, probes.tokens, prompt_len=6))[:, 0]
  state = dpo_init(m, tx)
  ref = jax.tree.map(np.asarray, state.ref_params)
  losses = []
  for _ in range(30):
    state, met = dpo_step(m, tx, state, d.chosen_tokens, d.rejected_tokens, prompt_len=6, beta=0.5)
    losses.append(float(met["loss"]))
  assert isinstance(state, DPOState) and int(state.step) == 30
  assert losses[0] == pytest.approx(np.log(2.0), abs=1e-6)  # the policy starts at the reference
  assert losses[-1] < 0.5 * losses[0] and float(met["accuracy"]) == 1.0
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.ref_params), ref)  # frozen
  nnx.update(m, state.params)
  after = np.asarray(probe_value_probs(m, probes.tokens, prompt_len=6))[:, 0]
  assert (after > before).all()
  metrics = value_drift(jnp.stack([before, after]))
  assert float(metrics.total) == pytest.approx(float(np.mean(np.abs(after - before))), rel=1e-5)


def test_dpo_step_loss_is_dpo_of_sequence_log_probs():
  m, ref_model = _model(3), _model(3)
  tx = optax.sgd(0.5)
  d = value_preferences(6, value_rate=0.5, seed=4)
  state = dpo_init(m, tx)
  state, _ = dpo_step(m, tx, state, d.chosen_tokens, d.rejected_tokens, prompt_len=6, beta=0.3)
  _, met = dpo_step(m, tx, state, d.chosen_tokens, d.rejected_tokens, prompt_len=6, beta=0.3)
  nnx.update(m, state.params)
  pc, pr = _seq_lp(m, d.chosen_tokens), _seq_lp(m, d.rejected_tokens)
  rc, rr = _seq_lp(ref_model, d.chosen_tokens), _seq_lp(ref_model, d.rejected_tokens)
  z = 0.3 * ((pc - rc) - (pr - rr))
  assert np.abs(z).max() > 1e-4  # the policy has moved off the reference
  assert float(met["loss"]) == pytest.approx(float(np.mean(np.log1p(np.exp(-z)))), rel=1e-4)
  want, _ = dpo_loss(*(jnp.asarray(x, jnp.float32) for x in (pc, pr, rc, rr)), beta=0.3)
  assert float(met["loss"]) == pytest.approx(float(want), rel=1e-4)


def test_bad_inputs():
  m = _model()
  p = value_probes(2)
  tx = optax.sgd(0.1)
  d = value_preferences(2, value_rate=0.5, seed=0)
  with pytest.raises(ValueError, match="value_rate"):
    value_preferences(4, value_rate=1.5, seed=0)
  with pytest.raises(ValueError, match="num_pairs"):
    value_preferences(0, value_rate=0.5, seed=0)
  with pytest.raises(TypeError, match="seed"):
    value_sft_data(4, value_rate=0.5, seed=True)
  with pytest.raises(ValueError, match="num_examples"):
    value_sft_data(-1, value_rate=0.5, seed=0)
  with pytest.raises(ValueError, match="num_probes"):
    value_probes(201)
  with pytest.raises(TypeError, match="model"):
    probe_value_probs(None, p.tokens, prompt_len=6)
  with pytest.raises(ValueError, match="probe_tokens"):
    probe_value_probs(m, p.tokens[:, 0], prompt_len=6)
  with pytest.raises(ValueError, match="2 options"):
    probe_value_probs(m, np.concatenate([p.tokens, p.tokens], axis=1), prompt_len=6)
  with pytest.raises(ValueError, match="probe_tokens"):
    probe_value_probs(m, p.tokens.astype(np.float32), prompt_len=6)
  with pytest.raises(ValueError, match="prompt_len"):
    probe_value_probs(m, p.tokens, prompt_len=11)
  with pytest.raises(TypeError, match="tx"):
    dpo_init(m, "adam")
  state = dpo_init(m, tx)
  with pytest.raises(TypeError, match="state"):
    dpo_step(m, tx, tuple(state), d.chosen_tokens, d.rejected_tokens, prompt_len=6)
  with pytest.raises(ValueError, match="rejected_tokens"):
    dpo_step(m, tx, state, d.chosen_tokens, d.rejected_tokens[:1], prompt_len=6)
  with pytest.raises(ValueError, match="beta"):
    dpo_step(m, tx, state, d.chosen_tokens, d.rejected_tokens, prompt_len=6, beta=0.0)
  with pytest.raises(ValueError, match="prompt_len"):
    dpo_step(m, tx, state, d.chosen_tokens, d.rejected_tokens, prompt_len=0)
