"""GRPO advantages, the clipped surrogate with k3 KL, masks and log-probs, against hand-worked numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import rl
from jaxdyn.data import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE
from jaxdyn.models import Transformer


def test_group_advantages_by_hand_zero_mean_and_shift_invariant():
  r = jnp.array([1.0, 0.0, 0.0, 3.0, 3.0, 3.0])
  a = rl.group_advantages(r, 3, eps=1e-4)
  # group 1: mean 1/3, population std sqrt(2)/3; group 2: all equal -> 0
  s = np.sqrt(2) / 3
  np.testing.assert_allclose(np.asarray(a), [(2 / 3) / (s + 1e-4), (-1 / 3) / (s + 1e-4), (-1 / 3) / (s + 1e-4),
                                             0, 0, 0], rtol=1e-5)
  np.testing.assert_allclose(np.asarray(a).reshape(2, 3).sum(1), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(rl.group_advantages(r + 7.5, 3)), np.asarray(a), atol=1e-5)
  none = rl.group_advantages(r, 3, scale="none")
  np.testing.assert_allclose(np.asarray(none), [2 / 3, -1 / 3, -1 / 3, 0, 0, 0], atol=1e-6)
  np.testing.assert_allclose(np.asarray(rl.group_advantages(r, 1, scale="none", baseline=jnp.full(6, 0.5))),
                             np.asarray(r) - 0.5)


def test_kl_k3_by_hand():
  lp, ref = jnp.array([-1.0, -2.0, -0.5]), jnp.array([-1.0, -1.0, -1.5])
  d = np.array([0.0, 1.0, -1.0])
  np.testing.assert_allclose(np.asarray(rl.kl_k3(lp, ref)), np.exp(d) - d - 1, rtol=1e-6)
  assert np.all(np.asarray(rl.kl_k3(lp, ref)) >= 0)


def test_clipping_by_hand():
  old = jnp.zeros((2, 2))
  lp = jnp.log(jnp.array([[1.5, 0.5], [1.5, 0.5]]))  # ratios 1.5 and 0.5
  adv = jnp.array([1.0, -1.0])
  loss, aux = rl.clipped_surrogate_loss(lp, old, adv, jnp.ones((2, 2)), clip_eps=0.2)
  # A=+1: min(1.5, 1.2)=1.2 (clipped), min(0.5, 0.8)=0.5; A=-1: min(-1.5,-1.2)=-1.5, min(-0.5,-0.8)=-0.8 (clipped)
  np.testing.assert_allclose(float(loss), -(1.2 + 0.5 - 1.5 - 0.8) / 4, rtol=1e-6)
  assert float(aux["clip_fraction"]) == 0.5
  # the clipped tokens carry no gradient
  g = jax.grad(lambda x: rl.clipped_surrogate_loss(x, old, adv, jnp.ones((2, 2)), clip_eps=0.2)[0])(lp)
  np.testing.assert_allclose(np.asarray(g), [[0, -0.5 / 4], [1.5 / 4, 0]], rtol=1e-6, atol=1e-7)


def test_kl_penalty_and_aggregations_by_hand():
  lp = jnp.array([[-1.0, -1.0, -1.0], [-2.0, 0.0, 0.0]])
  ref = jnp.array([[-1.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])
  mask = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
  adv = jnp.zeros(2)
  k3 = np.asarray(rl.kl_k3(lp, ref))
  tok, aux = rl.clipped_surrogate_loss(lp, lp, adv, mask, ref_log_probs=ref, kl_coef=0.5)
  np.testing.assert_allclose(float(tok), 0.5 * (k3[0].sum() + k3[1, 0]) / 4, rtol=1e-6)
  np.testing.assert_allclose(float(aux["kl"]), (k3[0].sum() + k3[1, 0]) / 4, rtol=1e-6)
  seq, _ = rl.clipped_surrogate_loss(lp, lp, adv, mask, ref_log_probs=ref, kl_coef=0.5, aggregation="sequence")
  np.testing.assert_allclose(float(seq), 0.5 * (k3[0].mean() + k3[1, 0]) / 2, rtol=1e-6)


def test_one_sample_per_group_no_kl_no_clip_is_reinforce_with_baseline():
  model = Transformer(VOCAB_SIZE, dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(0))
  tokens = rl.encode([b"12+34=", b"50+50="], [b"#46", b"#1000"], length=14)
  mask = rl.completion_mask(tokens, 7)
  rewards, baseline = jnp.array([1.0, 0.0]), jnp.array([0.25, 0.75])
  adv = rl.group_advantages(rewards, 1, scale="none", baseline=baseline)
  graph, params = nnx.split(model)

  def loss(p):
    lp = rl.policy_log_probs(nnx.merge(graph, p), tokens)
    return rl.clipped_surrogate_loss(lp, jax.lax.stop_gradient(lp), adv, mask, clip_eps=0.2, kl_coef=0.0)[0]

  def reinforce(p):  # -(1/N) sum_i (r_i - b_i) sum_t log pi(y_it), N = completion tokens (token averaging)
    lp = rl.policy_log_probs(nnx.merge(graph, p), tokens)
    return -jnp.sum((rewards - baseline)[:, None] * lp * mask) / jnp.sum(mask)

  g1, g2 = jax.grad(loss)(params), jax.grad(reinforce)(params)
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
  assert max(float(jnp.abs(a).max()) for a in jax.tree.leaves(g1)) > 0


def test_completion_mask_excludes_prompt_and_padding_exactly():
  tokens = jnp.array([[BOS_ID, 49, 61, 35, 51, EOS_ID, PAD_ID, PAD_ID],
                      [BOS_ID, 49, 61, 51, EOS_ID, 35, EOS_ID, PAD_ID],   # tokens after the first EOS excluded
                      [BOS_ID, 49, 61, 35, 51, 52, 53, 54]])               # no EOS: the whole completion
  m = np.asarray(rl.completion_mask(tokens, 3))
  np.testing.assert_array_equal(m, [[0, 0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1, 1]])
  # masked positions carry no gradient, whatever their log-probs
  lp = jnp.zeros(m.shape)
  g = jax.grad(lambda x: rl.clipped_surrogate_loss(x, lp, jnp.ones(3), jnp.asarray(m))[0])(lp)
  np.testing.assert_array_equal(np.asarray(g) == 0, m == 0)


def test_policy_log_probs_are_the_shifted_token_log_probs():
  model = Transformer(VOCAB_SIZE, dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(1))
  tokens = rl.encode([b"1+2="], [b"#3"], length=9)
  lp = np.asarray(rl.policy_log_probs(model, tokens))
  logits = np.asarray(model(jnp.asarray(tokens)), np.float64)
  want = [logits[0, t] [tokens[0, t + 1]] - np.log(np.exp(logits[0, t]).sum()) for t in range(8)]
  np.testing.assert_allclose(lp[0], want, rtol=1e-5)


def test_bad_inputs_raise():
  lp = jnp.zeros((2, 3))
  with pytest.raises(ValueError, match="group_size"):
    rl.group_advantages(jnp.ones(6), 0)
  with pytest.raises(ValueError, match="rewards"):
    rl.group_advantages(jnp.ones(6), 5)
  with pytest.raises(ValueError, match="scale"):
    rl.group_advantages(jnp.ones(4), 2, scale="max")
  with pytest.raises(ValueError, match="baseline"):
    rl.group_advantages(jnp.ones(4), 2, baseline=jnp.ones(3))
  with pytest.raises(ValueError, match="ref_log_probs"):
    rl.clipped_surrogate_loss(lp, lp, jnp.ones(2), jnp.ones((2, 3)), kl_coef=0.1)
  with pytest.raises(ValueError, match="mask"):
    rl.clipped_surrogate_loss(lp, lp, jnp.ones(2), jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match="advantages"):
    rl.clipped_surrogate_loss(lp, lp, jnp.ones(3), jnp.ones((2, 3)))
  with pytest.raises(ValueError, match="aggregation"):
    rl.clipped_surrogate_loss(lp, lp, jnp.ones(2), jnp.ones((2, 3)), aggregation="mean")
  with pytest.raises(ValueError, match="prompt_len"):
    rl.completion_mask(jnp.zeros((1, 4), jnp.int32), 4)
  with pytest.raises(TypeError, match="model"):
    rl.policy_log_probs(lambda x: x, jnp.zeros((1, 4), jnp.int32))
  # a NaN log-prob never gives a finite loss
  bad = lp.at[0, 0].set(jnp.nan)
  assert np.isnan(float(rl.clipped_surrogate_loss(bad, lp, jnp.ones(2), jnp.ones((2, 3)))[0]))
