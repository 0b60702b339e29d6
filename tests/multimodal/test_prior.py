"""PRIOR's token weights and weighted next-token loss (`jaxdyn.multimodal._prior`) against hand-worked numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.multimodal import prior_loss, prior_token_weights


def _np_ce(logits, targets, mask):
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  return nll, float((nll * mask).sum() / mask.sum())


def _data(seed=0, shape=(3, 6), vocab=7):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=shape + (vocab,)).astype(np.float32) * 2
  targets = rng.integers(0, vocab, shape).astype(np.int32)
  mask = np.ones(shape, np.float32)
  mask[0, 4:] = 0
  mask[2, 2:] = 0
  ref = np.log(rng.uniform(0.01, 0.99, shape)).astype(np.float32)
  return logits, targets, mask, ref


# --- equivalence with plain next-token prediction ------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.3, 0.97])
def test_constant_p_ref_is_plain_cross_entropy(p):
  logits, targets, mask, _ = _data()
  ref = np.full(targets.shape, np.log(p) if p > 0 else -50.0, np.float32)  # p = e^-50: 1 - p = 1 in float32
  _, want = _np_ce(logits, targets, mask)
  got = prior_loss(logits, targets, ref, mask=mask, alpha=1.0)
  np.testing.assert_allclose(float(got), want, rtol=1e-6)
  np.testing.assert_allclose(prior_token_weights(ref, mask), mask, rtol=1e-6)


def test_alpha_zero_is_plain_cross_entropy_for_any_p_ref():
  logits, targets, mask, ref = _data(1)
  ref[1, 0] = 0.0  # p = 1 exactly: (1 - p)^0 = 1 still
  _, want = _np_ce(logits, targets, mask)
  np.testing.assert_allclose(float(prior_loss(logits, targets, ref, mask=mask, alpha=0.0)), want, rtol=1e-6)
  np.testing.assert_allclose(float(prior_loss(logits[1:2], targets[1:2], ref[1:2], alpha=0)),
                             _np_ce(logits[1:2], targets[1:2], np.ones((1, 6)))[1], rtol=1e-6)


def test_non_constant_p_ref_differs_from_plain():
  logits, targets, mask, ref = _data(2)
  _, plain = _np_ce(logits, targets, mask)
  assert abs(float(prior_loss(logits, targets, ref, mask=mask)) - plain) > 1e-3


# --- the weights, by hand ------------------------------------------------------------------------------------
def test_weights_hand_worked_alpha_one_and_two():
  p = np.array([[0.5, 0.9, 0.2, 0.3]])
  mask = np.array([[1, 1, 0, 1]])
  # alpha = 1: 1 - p = (0.5, 0.1, -, 0.7), sum 1.3, k = 3
  np.testing.assert_allclose(prior_token_weights(np.log(p), mask), [[1.5 / 1.3, 0.3 / 1.3, 0.0, 2.1 / 1.3]],
                             rtol=1e-5)
  # alpha = 2: (0.25, 0.01, -, 0.49), sum 0.75
  np.testing.assert_allclose(prior_token_weights(np.log(p), mask, alpha=2.0), [[1.0, 0.04, 0.0, 1.96]], rtol=1e-5)
  # no mask: four tokens, 1 - p = (0.5, 0.1, 0.8, 0.7), sum 2.1, k = 4
  np.testing.assert_allclose(prior_token_weights(np.log(p)), [[2 / 2.1, 0.4 / 2.1, 3.2 / 2.1, 2.8 / 2.1]], rtol=1e-5)


def test_weights_average_one_per_caption_over_valid_tokens():
  _, _, mask, ref = _data(3, shape=(5, 9))
  w = np.asarray(prior_token_weights(ref, mask, alpha=1.5))
  np.testing.assert_allclose((w * mask).sum(1) / mask.sum(1), 1.0, rtol=1e-5)
  assert np.all(w[mask == 0] == 0)


def test_weights_are_per_caption():
  _, _, mask, ref = _data(4)
  w = np.asarray(prior_token_weights(ref, mask))
  ref2 = ref.copy()
  ref2[1] = np.log(np.full(6, 0.5))  # change caption 1 only
  w2 = np.asarray(prior_token_weights(ref2, mask))
  np.testing.assert_allclose(w2[[0, 2]], w[[0, 2]], rtol=1e-6)
  np.testing.assert_allclose(w2[1], 1.0, rtol=1e-6)


def test_bool_mask_equals_float_mask_and_leading_axes():
  _, _, mask, ref = _data(5)
  np.testing.assert_allclose(prior_token_weights(ref, mask.astype(bool)), prior_token_weights(ref, mask), rtol=1e-6)
  w3 = prior_token_weights(ref.reshape(3, 2, 3), mask.reshape(3, 2, 3))
  for b in range(3):
    for s in range(2):
      np.testing.assert_allclose(w3[b, s], prior_token_weights(ref.reshape(3, 2, 3)[b, s], mask.reshape(3, 2, 3)[b, s]),
                                 rtol=1e-6)


def test_degenerate_captions_get_zero_weight():
  ref = np.log(np.array([[1.0, 1.0, 0.5], [0.5, 0.4, 0.3], [0.2, 0.3, 0.4]]))
  mask = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]])
  w = np.asarray(prior_token_weights(ref, mask))
  np.testing.assert_array_equal(w[:2], 0.0)  # every valid p = 1 / no valid token
  np.testing.assert_allclose(w[2].sum(), 3.0, rtol=1e-6)
  # a caption whose p = 1 tokens sit beside others: those get exactly 0, the rest share k
  w = np.asarray(prior_token_weights(np.log(np.array([[1.0, 0.5, 0.5]]))))
  np.testing.assert_allclose(w, [[0.0, 1.5, 1.5]], rtol=1e-6)
  assert float(prior_loss(np.zeros((1, 3, 4)), np.zeros((1, 3), np.int32), np.log(np.full((1, 3), 0.5)),
                          mask=np.zeros((1, 3)))) == 0.0


def test_large_alpha_puts_the_weight_on_the_hardest_token():
  ref = np.log(np.array([[0.5, 0.9, 0.1, 0.3]], np.float32))
  w = np.asarray(prior_token_weights(ref, alpha=5000.0))  # (1 - p)^5000 underflows; the log-space shift does not
  assert np.isfinite(w).all()
  np.testing.assert_allclose(w, [[0.0, 0.0, 4.0, 0.0]], atol=1e-6)


# --- the loss, by hand ---------------------------------------------------------------------------------------
def test_loss_hand_worked():
  logits = np.log(np.array([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))
  targets = np.array([[0, 1, 1]])
  ref = np.log(np.array([[0.5, 0.9, 0.3]]))
  mask = np.array([[1, 1, 0]])
  # weights over 2 valid tokens: 1 - p = (0.5, 0.1) -> (2 * 0.5 / 0.6, 2 * 0.1 / 0.6); nll = (ln 2, ln 4/3)
  want = (2 * 0.5 / 0.6 * np.log(2) + 2 * 0.1 / 0.6 * np.log(4 / 3)) / 2
  np.testing.assert_allclose(float(prior_loss(logits, targets, ref, mask=mask)), want, rtol=1e-6)


def test_loss_is_weighted_mean_against_numpy_and_jit():
  logits, targets, mask, ref = _data(6)
  nll, _ = _np_ce(logits, targets, mask)
  one_minus = (1 - np.exp(ref.astype(np.float64))) ** 1.5
  w = mask * one_minus * mask.sum(1, keepdims=True) / (mask * one_minus).sum(1, keepdims=True)
  want = (w * nll).sum() / mask.sum()
  np.testing.assert_allclose(float(prior_loss(logits, targets, ref, mask=mask, alpha=1.5)), want, rtol=1e-5)
  jitted = jax.jit(lambda z, t, r, m: prior_loss(z, t, r, mask=m, alpha=1.5))(logits, targets, ref, mask)
  np.testing.assert_allclose(float(jitted), want, rtol=1e-5)


def test_gradient_flows_to_logits_only():
  logits, targets, mask, ref = _data(7)
  g_ref = jax.grad(lambda r: prior_loss(logits, targets, r, mask=mask))(jnp.asarray(ref))
  np.testing.assert_array_equal(np.asarray(g_ref), 0.0)
  w = prior_token_weights(ref, mask)

  def fixed(z):
    nll = -jnp.take_along_axis(jax.nn.log_softmax(z), targets[..., None], axis=-1)[..., 0]
    return jnp.sum(w * nll) / mask.sum()

  np.testing.assert_allclose(jax.grad(lambda z: prior_loss(z, targets, ref, mask=mask))(jnp.asarray(logits)),
                             jax.grad(fixed)(jnp.asarray(logits)), rtol=1e-5, atol=1e-7)


# --- non-finite inputs and bad inputs ------------------------------------------------------------------------
def test_non_finite_inputs_give_nan():
  logits, targets, mask, ref = _data(8)
  for bad in (np.nan, -np.inf):
    r = ref.copy()
    r[1, 2] = bad
    w = np.asarray(prior_token_weights(r, mask))
    assert np.isnan(w[1]).all() and np.isfinite(w[[0, 2]]).all()
    assert np.isnan(float(prior_loss(logits, targets, r, mask=mask)))
  z = logits.copy()
  z[0, 0, 3] = -np.inf
  assert np.isnan(float(prior_loss(z, targets, ref, mask=mask)))
  out_of_range = jnp.asarray(targets).at[0, 0].set(99)  # unchecked under jit: NaN, never a finite loss
  assert np.isnan(float(jax.jit(prior_loss)(logits, out_of_range, ref)))


@pytest.mark.parametrize("call, match", [
    (lambda: prior_token_weights(np.array([[0.1, -1.0]], np.float32)), "ref_log_probs"),
    (lambda: prior_token_weights(np.array([[-1, -2]])), "ref_log_probs"),
    (lambda: prior_token_weights(np.float32(-1.0)), "ref_log_probs"),
    (lambda: prior_token_weights(np.full((2, 3), -1.0), np.ones((2, 4))), "mask"),
    (lambda: prior_token_weights(np.full((2, 3), -1.0), -np.ones((2, 3))), "mask"),
    (lambda: prior_token_weights(np.full((2, 3), -1.0), np.full((2, 3), "a")), "mask"),
    (lambda: prior_token_weights(np.full((2, 3), -1.0), alpha=-0.5), "alpha"),
    (lambda: prior_token_weights(np.full((2, 3), -1.0), alpha=True), "alpha"),
    (lambda: prior_token_weights(np.full((2, 3), -1.0), alpha=np.nan), "alpha"),
    (lambda: prior_loss(np.zeros((2, 3, 4)), np.zeros((2, 3), np.int32), np.full((2, 2), -1.0)), "ref_log_probs"),
    (lambda: prior_loss(np.zeros((2, 3, 4)), np.zeros((2, 2), np.int32), np.full((2, 2), -1.0)), "targets"),
    (lambda: prior_loss(np.zeros((2, 3, 4)), np.full((2, 3), 4), np.full((2, 3), -1.0)), "targets"),
    (lambda: prior_loss(np.zeros((2, 3, 4)), np.full((2, 3), -1), np.full((2, 3), -1.0)), "targets"),
    (lambda: prior_loss(np.zeros((2, 3, 4)), np.zeros((2, 3)), np.full((2, 3), -1.0)), "targets"),
    (lambda: prior_loss(np.zeros((4,)), np.zeros((), np.int32), np.float32(-1.0)), "logits"),
    (lambda: prior_loss(np.zeros((0, 3, 4)), np.zeros((0, 3), np.int32), np.zeros((0, 3), np.float32)), "targets"),
    (lambda: prior_loss(np.zeros((2, 3, 4)), np.zeros((2, 3), np.int32), np.full((2, 3), -1.0), alpha=-1), "alpha"),
])
def test_bad_inputs_raise_naming_the_argument(call, match):
  with pytest.raises((ValueError, TypeError), match=match):
    call()


def test_empty_batch_of_weights_is_empty():
  assert prior_token_weights(np.zeros((0, 5), np.float32)).shape == (0, 5)
