"""HAPO's reward and history against a NumPy transcription of the authors' `compute_len_reward`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import rl

MAX_LEN = 100000  # the authors' "no history" sentinel


def authors_len_reward(history_len, seq_len, is_corr, w_lr=1.0):
  """Transcribed from HCY123902/HAPO utils.py `compute_len_reward` (cosine type) as read for this test."""
  if 0 < history_len < MAX_LEN:
    r = math.cos((seq_len / history_len) * (math.pi / 2)) if seq_len < 2 * history_len else math.cos(math.pi)
    r = max(-0.7, r) if is_corr else min(0, r)
  else:
    r = 0
  return r * w_lr


def authors_batch(lens_dict, prompt_ids, seq_lens, corrs, w_lr=1.0):
  """`combined_reward_func` without the repetition term: rewards from the old history, then the min update."""
  rewards = [int(c) + authors_len_reward(lens_dict[i], n, c, w_lr) for i, n, c in zip(prompt_ids, seq_lens, corrs)]
  new = dict(lens_dict)
  for i, n, c in zip(prompt_ids, seq_lens, corrs):
    if c:
      new[i] = min(new[i], n)
  return rewards, new


LENGTHS = [0, 1, 3, 5, 7, 10, 13, 15, 19, 20, 21, 40, 100]
HISTORIES = [1, 2, 5, 10, 20, 33]


@pytest.mark.parametrize("correct", [True, False])
def test_length_reward_matches_authors_on_a_grid(correct):
  ls, hs = np.meshgrid(np.array(LENGTHS, float), np.array(HISTORIES + [MAX_LEN], float))
  ls, hs = ls.ravel(), hs.ravel()
  want = np.array([authors_len_reward(h, n, correct) for n, h in zip(ls, hs)])
  ours_h = np.where(hs >= MAX_LEN, np.inf, hs)
  got = rl.hapo_length_reward(jnp.asarray(ls), jnp.asarray(ours_h), jnp.full(ls.shape, correct))
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-6)
  assert np.all(np.asarray(got)[hs >= MAX_LEN] == 0.0)  # no history: exactly 0
  if correct:
    assert np.min(np.asarray(got)) == pytest.approx(-0.7)
  else:
    assert np.max(np.asarray(got)) <= 0.0


def test_reward_and_history_over_batches_match_the_authors_loop():
  rng = np.random.default_rng(0)
  num_prompts = 4
  hist = rl.hapo_init(num_prompts)
  theirs = {i: MAX_LEN for i in range(num_prompts)}
  for step in range(6):
    ids = rng.integers(0, num_prompts, size=10)
    lens = rng.integers(1, 30, size=10)
    corr = rng.random(10) < 0.6
    want, theirs = authors_batch(theirs, ids.tolist(), lens.tolist(), corr.tolist(), w_lr=0.5)
    got = rl.hapo_reward(hist, jnp.asarray(ids), jnp.asarray(lens, jnp.float32), jnp.asarray(corr), length_weight=0.5)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6, err_msg=f"step {step}")
    hist = jax.jit(rl.hapo_update_history)(hist, jnp.asarray(ids), jnp.asarray(lens, jnp.float32), jnp.asarray(corr))
    expect = [np.inf if theirs[i] == MAX_LEN else theirs[i] for i in range(num_prompts)]
    np.testing.assert_array_equal(np.asarray(hist.min_length), expect)


def test_first_batch_has_no_length_reward_and_wrong_answers_do_not_update():
  h = rl.hapo_init(2)
  r = rl.hapo_reward(h, jnp.array([0, 0, 1]), jnp.array([3.0, 9.0, 4.0]), jnp.array([True, False, False]))
  np.testing.assert_array_equal(np.asarray(r), [1.0, 0.0, 0.0])
  h = rl.hapo_update_history(h, jnp.array([0, 0, 1]), jnp.array([3.0, 9.0, 4.0]), jnp.array([True, False, False]))
  np.testing.assert_array_equal(np.asarray(h.min_length), [3.0, np.inf])
  # by hand: L = 3 = h -> cos(pi/2) = 0; L = 6 = 2h -> -1, clipped to -0.7 when correct, kept when wrong
  r = rl.hapo_reward(h, jnp.array([0, 0, 0]), jnp.array([3.0, 6.0, 6.0]), jnp.array([True, True, False]))
  np.testing.assert_allclose(np.asarray(r), [1.0, 0.3, -1.0], atol=1e-6)


def test_history_is_a_pytree_that_survives_jit_and_scan():
  def body(h, x):
    ids, lens, corr = x
    return rl.hapo_update_history(h, ids, lens, corr), rl.hapo_reward(h, ids, lens, corr)
  xs = (jnp.array([[0, 1], [0, 1]]), jnp.array([[4.0, 2.0], [2.0, 5.0]]), jnp.array([[True, False], [True, True]]))
  h, rewards = jax.lax.scan(body, rl.hapo_init(2), xs)
  np.testing.assert_array_equal(np.asarray(h.min_length), [2.0, 5.0])
  np.testing.assert_allclose(np.asarray(rewards[1]), [1.0 + np.cos(np.pi / 4), 1.0], atol=1e-6)


def test_bad_inputs_raise():
  h = rl.hapo_init(2)
  with pytest.raises(ValueError, match="prompt_ids"):
    rl.hapo_reward(h, jnp.array([0, 2]), jnp.array([1.0, 1.0]), jnp.array([True, True]))
  with pytest.raises(TypeError, match="correct"):
    rl.hapo_reward(h, jnp.array([0, 1]), jnp.array([1.0, 1.0]), jnp.array([1, 0]))
  with pytest.raises(ValueError, match="lengths"):
    rl.hapo_update_history(h, jnp.array([0, 1]), jnp.array([-1.0, 1.0]), jnp.array([True, True]))
  with pytest.raises(TypeError, match="history"):
    rl.hapo_update_history(np.zeros(2), jnp.array([0, 1]), jnp.array([1.0, 1.0]), jnp.array([True, True]))
  with pytest.raises(ValueError, match="num_prompts"):
    rl.hapo_init(0)
  with pytest.raises(ValueError, match="correct_floor"):
    rl.hapo_length_reward(jnp.ones(1), jnp.ones(1), jnp.ones(1, bool), correct_floor=0.5)
  # under jit an out-of-range prompt id gives NaN, never a plausible reward
  out = jax.jit(rl.hapo_reward)(h, jnp.array([0, 5]), jnp.array([1.0, 1.0]), jnp.array([True, True]))
  assert np.isnan(np.asarray(out)[1])
