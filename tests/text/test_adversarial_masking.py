"""Adversarial-MidiBERT: bidirectional attention, 80/10/10 corruption, the masker's selection and loss,
the mask book and mask fine-tuning, against counts, closed forms and hand-worked examples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import text
from jaxdyn.models import Transformer


# --- bidirectional attention ------------------------------------------------------------------------
def test_bidirectional_attention_equals_dot_product_attention_without_mask():
  q, k, v = (jax.random.normal(jax.random.key(i), (2, 5, 3, 4)) for i in range(3))
  p = jnp.arange(5)
  out = text.bidirectional_attention(q, k, v, q_positions=p, k_positions=p)
  np.testing.assert_allclose(np.asarray(out), np.asarray(jax.nn.dot_product_attention(q, k, v)), atol=1e-5)
  # a key at a negative position (an empty slot) is dropped: equal to attention over the other keys
  kp = jnp.array([0, 1, -1, 3, 4])
  keep = jnp.array([0, 1, 3, 4])
  out = text.bidirectional_attention(q, k, v, q_positions=p, k_positions=kp)
  np.testing.assert_allclose(np.asarray(out), np.asarray(jax.nn.dot_product_attention(q, k[:, keep], v[:, keep])),
                             atol=1e-5)


def test_bidirectional_transformer_reads_later_tokens_and_segments_isolate():
  model = Transformer(vocab_size=11, dim=16, depth=2, num_heads=2, attention_fns=text.bidirectional_attention,
                      rngs=nnx.Rngs(0))
  x = jnp.array([[1, 2, 3, 4, 5, 6]])
  y = x.at[0, 5].set(7)
  # position 0 changes when the last token changes (a causal model's would not)
  assert float(jnp.abs(model(x)[0, 0] - model(y)[0, 0]).max()) > 1e-4
  causal = Transformer(vocab_size=11, dim=16, depth=2, num_heads=2, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(np.asarray(causal(x)[0, 0]), np.asarray(causal(y)[0, 0]))
  # segments form: each segment's output equals the model run on that segment alone
  seg = jnp.array([[0, 0, 0, 1, 1, 1]])
  both = model(x, segment_ids=seg)
  np.testing.assert_allclose(np.asarray(both[0, :3]), np.asarray(model(x[:, :3])[0]), atol=1e-5)
  np.testing.assert_allclose(np.asarray(both[0, 3:]), np.asarray(model(x[:, 3:])[0]), atol=1e-5)


# --- random selection and the 80/10/10 rule -------------------------------------------------------
def test_random_selection_counts_are_exact_and_stay_in_valid():
  x = jnp.zeros((4, 40), jnp.int32)
  valid = jnp.arange(40)[None, :] < jnp.array([[40], [20], [7], [0]])
  sel = text.random_selection(x, key=jax.random.key(0), rate=0.15, valid=valid)
  np.testing.assert_array_equal(np.asarray(sel.sum(-1)), [6, 3, 1, 0])  # round(6.0), round(3.0), round(1.05), 0
  assert not bool((sel & ~valid).any())
  assert int(text.random_selection(x, key=jax.random.key(0), rate=0.0).sum()) == 0
  # uniform over valid positions: every position picked about rate of the time
  big = text.random_selection(jnp.zeros((4000, 20), jnp.int32), key=jax.random.key(1), rate=0.25)
  np.testing.assert_allclose(np.asarray(big.mean(0)), 0.25, atol=0.03)


def test_corrupt_counts_per_row_and_the_80_10_10_split_on_a_large_sample():
  b, length, vocab, mask_id = 4000, 20, 10, 99
  x = jax.random.randint(jax.random.key(2), (b, length), 0, vocab)
  sel = jnp.ones((b, length), bool)
  out = text.corrupt(x, sel, key=jax.random.key(3), mask_id=mask_id, random_vocab=vocab)
  masked = np.asarray(out.inputs == mask_id)
  # exact counts per row: round(0.8 * 20) = 16 masks, round(0.1 * 20) = 2 random draws, 2 kept
  np.testing.assert_array_equal(masked.sum(-1), 16)
  np.testing.assert_array_equal(np.asarray(out.replaced.sum(-1)), 18)
  np.testing.assert_array_equal(np.asarray(out.targets), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(out.loss_mask), 1.0)
  rand = np.asarray(out.replaced) & ~masked
  kept = ~np.asarray(out.replaced)
  np.testing.assert_array_equal(np.asarray(out.inputs)[kept], np.asarray(x)[kept])
  # over the sample each position is masked / randomised / kept 80 / 10 / 10 percent of the time
  np.testing.assert_allclose(masked.mean(0), 0.8, atol=0.025)
  np.testing.assert_allclose(rand.mean(0), 0.1, atol=0.02)
  np.testing.assert_allclose(kept.mean(0), 0.1, atol=0.02)
  # random tokens are uniform over [0, random_vocab) (they may equal the original)
  draws = np.asarray(out.inputs)[rand]
  np.testing.assert_allclose(np.bincount(draws, minlength=vocab) / draws.size, 1 / vocab, atol=0.01)
  # a partial selection: only selected positions change, counts follow round()
  sel2 = jnp.arange(length)[None, :] < jnp.array([[15], [5], [0]])
  out2 = text.corrupt(x[:3], sel2, key=jax.random.key(4), mask_id=mask_id, random_vocab=vocab)
  np.testing.assert_array_equal(np.asarray((out2.inputs == mask_id).sum(-1)), [12, 4, 0])
  np.testing.assert_array_equal(np.asarray(out2.replaced.sum(-1)), [12 + 2, 4 + 0, 0])  # round(1.5)=2, round(.5)=0
  np.testing.assert_array_equal(np.asarray(out2.inputs)[~np.asarray(sel2)], np.asarray(x[:3])[~np.asarray(sel2)])


# --- the recoverer's loss -------------------------------------------------------------------------
def test_mlm_loss_counts_only_masked_positions_against_a_hand_value():
  probs = jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]]])
  z = jnp.log(probs)
  y = jnp.array([[0, 1, 2, 0]])
  m = jnp.array([[1.0, 0.0, 1.0, 0.0]])
  loss, nll = text.mlm_loss(z, y, m)
  want = (-np.log(0.5) - np.log(0.6)) / 2
  np.testing.assert_allclose(float(loss), want, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(nll[0]), -np.log([0.5, 0.8, 0.6, 1 / 3]), rtol=1e-6)
  # unmasked logits do not matter
  z2 = z.at[0, 1].set(jnp.array([5.0, -3.0, 0.0])).at[0, 3].set(jnp.array([0.0, 9.0, 1.0]))
  np.testing.assert_allclose(float(text.mlm_loss(z2, y, m)[0]), want, rtol=1e-6)
  # the code's extra all-position mean
  compat, _ = text.mlm_loss(z, y, m, official_compat=True)
  np.testing.assert_allclose(float(compat), want + np.mean(-np.log([0.5, 0.8, 0.6, 1 / 3])), rtol=1e-6)
  # nothing masked: 0 (defined), NaN logits still propagate
  assert float(text.mlm_loss(z, y, jnp.zeros((1, 4)))[0]) == 0.0
  assert np.isnan(float(jax.jit(text.mlm_loss)(z.at[0, 0, 0].set(jnp.nan), y, m)[0]))


# --- the masker -----------------------------------------------------------------------------------
def test_masker_loss_value_and_gradient_direction_on_a_hand_built_case():
  s = jnp.full((1, 4), 0.5)
  tok = jnp.array([[3.0, 1.0, 2.0, 0.5]])
  ones = jnp.ones((1, 4))
  # k = floor(0.5 * 4) = 2: H = {0, 2} (largest losses), E = {3, 1}; ((.5-1)^2 * 2 + .5^2 * 2) / 2 = 0.5
  assert float(text.masker_loss(s, tok, ones, ones, fraction=0.5)) == pytest.approx(0.5)
  g = jax.grad(lambda s: text.masker_loss(s, tok, ones, ones, fraction=0.5))(s)
  # 2 (s - 1) / k on H, 2 s / k on E: descent raises the hard tokens' scores and lowers the easy ones'
  np.testing.assert_allclose(np.asarray(g), [[-0.5, 0.5, -0.5, 0.5]], atol=1e-7)
  # no gradient through the recoverer's loss (it only ranks)
  gt = jax.grad(lambda t: text.masker_loss(s, t, ones, ones, fraction=0.5))(tok)
  np.testing.assert_array_equal(np.asarray(gt), 0.0)
  # only replaced positions are ranked: position 0 (the largest loss) is not replaced, so H = {2}, E = {3}
  rep = jnp.array([[0, 1, 1, 1]])
  s2 = jnp.array([[0.9, 0.2, 0.3, 0.6]])
  got = text.masker_loss(s2, tok, rep, ones, fraction=0.25)  # k = floor(0.25 * 4) = 1
  assert float(got) == pytest.approx((0.3 - 1) ** 2 + 0.6 ** 2)
  # rows average; a row with k = 0 adds 0
  two = text.masker_loss(jnp.concatenate([s2, s2]), jnp.concatenate([tok, tok]), jnp.concatenate([rep, rep]),
                         jnp.array([[1, 1, 1, 1], [1, 0, 0, 0]]), fraction=0.25)
  assert float(two) == pytest.approx(((0.3 - 1) ** 2 + 0.6 ** 2) / 2)


def test_adversarial_selection_is_the_top_k_of_available_scores_with_the_codes_count():
  s = jnp.array([[0.1, 0.9, 0.5, 0.7, 0.2, 0.3, 0.4, 0.6, 0.8, 0.05]] * 2)
  book = jnp.array([[1] * 10, [1, 0, 1, 1, 1, 1, 1, 1, 0, 1]])
  sel = text.adversarial_selection(s, key=jax.random.key(0), book=book, ratio_range=(0.3, 0.3), max_rate=1.0)
  # row 0: floor(0.3 * 10) = 3 -> 0.9, 0.8, 0.7; row 1: 8 available, floor(2.4) = 2 -> 0.7, 0.6
  assert np.asarray(sel[0]).nonzero()[0].tolist() == [1, 3, 8]
  assert np.asarray(sel[1]).nonzero()[0].tolist() == [3, 7]
  # the cap floor(max_rate * L) = floor(0.15 * 10) = 1
  capped = text.adversarial_selection(s, key=jax.random.key(0), ratio_range=(0.3, 0.3))
  assert np.asarray(capped.sum(-1)).tolist() == [1, 1]
  # a random ratio u ~ U(0.1, 0.3): counts in [floor(0.1 A), floor(0.3 A)], frozen and invalid never selected
  big = jax.random.uniform(jax.random.key(1), (500, 100))
  valid = jnp.arange(100)[None] < 90
  book = jax.random.bernoulli(jax.random.key(2), 0.8, (500, 100))
  sel = jax.jit(lambda s, k: text.adversarial_selection(s, key=k, book=book, valid=valid, max_rate=1.0))(
      big, jax.random.key(3))
  a = np.asarray((book & valid).sum(-1))
  n = np.asarray(sel.sum(-1))
  assert (n >= np.floor(0.1 * a)).all() and (n <= np.floor(0.3 * a)).all() and n.std() > 1
  assert not bool((sel & ~(book & valid)).any())
  # every selected score beats every unselected available one
  sc = np.where(np.asarray(sel), np.asarray(big), np.inf).min(-1)
  rest = np.where(np.asarray(~sel & book & valid), np.asarray(big), -np.inf).max(-1)
  assert (sc > rest).all()


def test_update_mask_book_freezes_top_scores_and_unfreezes_at_random():
  s = jnp.array([[0.1, 0.9, 0.2, 0.3, 0.4, 0.8, 0.5, 0.6, 0.7, 0.0]])
  book = jnp.array([[1, 1, 1, 1, 1, 0, 1, 1, 1, 1]])
  new = text.update_mask_book(book, s, key=jax.random.key(0), freeze_range=(0.25, 0.25), unfreeze_range=(0, 0))
  # 9 available, floor(0.25 * 9) = 2 frozen: 0.9 (1) and 0.7 (8); position 5 stays frozen
  assert np.asarray(new[0]).astype(int).tolist() == [1, 0, 1, 1, 1, 0, 1, 1, 0, 1]
  everything = text.update_mask_book(book, s, key=jax.random.key(0), unfreeze_range=(1.0, 1.0),
                                     valid=jnp.arange(10)[None] < 9)
  assert np.asarray(everything[0]).astype(int).tolist() == [1] * 9 + [1]  # invalid position 9 keeps its 1
  # unfreezing probability w ~ U(0.2, 0.2) per position of a fully frozen book
  frozen = jnp.zeros((2000, 50), bool)
  back = text.update_mask_book(frozen, jnp.zeros((2000, 50)), key=jax.random.key(1), unfreeze_range=(0.2, 0.2))
  assert float(back.mean()) == pytest.approx(0.2, abs=0.01)


# --- mask fine-tuning ------------------------------------------------------------------------------
def test_mask_fine_tuning_rate_zero_is_the_identity_and_counts_follow_the_rate():
  x = jax.random.randint(jax.random.key(5), (3, 20), 0, 50).astype(jnp.int16)
  same, masked = text.mask_fine_tuning(x, key=jax.random.key(6), rate=0.0, mask_id=99)
  assert same.dtype == x.dtype
  np.testing.assert_array_equal(np.asarray(same), np.asarray(x))
  assert not bool(masked.any())
  valid = jnp.arange(20)[None] < jnp.array([[20], [10], [3]])
  inp, masked = text.mask_fine_tuning(x, key=jax.random.key(6), rate=0.15, mask_id=99, valid=valid)
  np.testing.assert_array_equal(np.asarray(masked.sum(-1)), [3, 2, 0])  # round(3.0), round(1.5), round(0.45)
  np.testing.assert_array_equal(np.asarray(inp == 99), np.asarray(masked))
  assert not bool((masked & ~valid).any())
  # the code's counts: round(0.8 * round(0.15 * 20)) = round(2.4) = 2 per row, padding included
  inp, masked = text.mask_fine_tuning(x, key=jax.random.key(6), rate=0.15, mask_id=99, valid=valid,
                                      official_compat=True)
  np.testing.assert_array_equal(np.asarray(masked.sum(-1)), [2, 2, 2])


# --- bad inputs -----------------------------------------------------------------------------------
def test_bad_inputs_raise_naming_the_argument():
  x = jnp.zeros((2, 6), jnp.int32)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="tokens"):
    text.random_selection(x.astype(jnp.float32), key=key)
  with pytest.raises(ValueError, match="rate"):
    text.random_selection(x, key=key, rate=1.5)
  with pytest.raises(TypeError, match="key"):
    text.random_selection(x, key=3)
  with pytest.raises(ValueError, match="valid"):
    text.random_selection(x, key=key, valid=jnp.ones((2, 5), bool))
  with pytest.raises(ValueError, match="random_fraction"):
    text.corrupt(x, x > 0, key=key, mask_id=9, random_vocab=5, mask_fraction=0.8, random_fraction=0.3)
  with pytest.raises(ValueError, match="mask_id"):
    text.corrupt(x, x > 0, key=key, mask_id=-1, random_vocab=5)
  with pytest.raises(ValueError, match="ratio_range"):
    text.adversarial_selection(jnp.zeros((2, 6)), key=key, ratio_range=(0.3, 0.1))
  with pytest.raises(ValueError, match="scores"):
    text.adversarial_selection(jnp.full((2, 6), jnp.nan), key=key)
  with pytest.raises(ValueError, match="targets"):
    text.mlm_loss(jnp.zeros((2, 6, 3)), jnp.full((2, 6), 3), jnp.ones((2, 6)))
  with pytest.raises(ValueError, match="loss_mask"):
    text.mlm_loss(jnp.zeros((2, 6, 3)), x, -jnp.ones((2, 6)))
  with pytest.raises(ValueError, match="fraction"):
    text.masker_loss(jnp.zeros((2, 6)), jnp.zeros((2, 6)), x > 0, x > 0, fraction=0.7)
  with pytest.raises(ValueError, match="book"):
    text.update_mask_book(jnp.full((2, 6), 2), jnp.zeros((2, 6)), key=key)
  with pytest.raises(TypeError, match="official_compat"):
    text.mask_fine_tuning(x, key=key, rate=0.1, mask_id=9, official_compat=1)
  with pytest.raises(ValueError, match="k_positions"):
    text.bidirectional_attention(jnp.ones((1, 3, 2, 4)), jnp.ones((1, 3, 2, 4)), jnp.ones((1, 3, 2, 4)),
                                 q_positions=jnp.arange(3), k_positions=jnp.arange(4))
