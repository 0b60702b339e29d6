"""In-context linear regression: the model against the debiased-GD expansion, the predictors against
their closed forms, the task statistics, a short training run and the input checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.attention import _icl as icl

D, L = 5, 40


def softmax(s):
  e = np.exp(s - s.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def paired_heads(d, c, mu, heads=2):
  """Hand-set weights in the trained pattern: KQ = +-c I on the x block, OV = +-mu at [-1, -1].

  Head 0 has (c, mu), head 1 (-c, -mu); with ``heads=1`` only head 0.
  """
  n = d + 1
  P = np.zeros((n, n))
  P[:d, :d] = np.eye(d)
  E = np.zeros((n, n))
  E[-1, -1] = 1.0
  sign = np.array([1.0, -1.0])[:heads, None, None]
  return {"q": jnp.asarray(sign * c * P, jnp.float32), "k": jnp.asarray(np.stack([P] * heads), jnp.float32),
          "v": jnp.asarray(np.stack([E] * heads), jnp.float32), "o": jnp.asarray(sign * mu * E, jnp.float32)}


@pytest.fixture(scope="module")
def tasks():
  return icl.sample_tasks(jax.random.key(0), 512, d=D, context=L)


# ------------------------------------------------------------------------------------------------
# The model with known weights.


def test_paired_heads_metrics_read_omega_and_mu():
  c, mu = 0.3, 2.0
  p = paired_heads(D, c, mu)
  np.testing.assert_allclose(icl.kq_diagonal(p, D), [c / math.sqrt(D + 1), -c / math.sqrt(D + 1)], rtol=1e-6)
  np.testing.assert_allclose(icl.kq_diagonal(p, official_compat=True), [c / math.sqrt(D + 2), -c / math.sqrt(D + 2)],
                             rtol=1e-6)
  np.testing.assert_allclose(icl.ov_last_entry(p), [mu, -mu], rtol=1e-6)


def test_paired_heads_are_an_odd_kernel_smoother_exactly(tasks):
  # With these weights head h's score on context token l is +-c x_l . x_q / sqrt(d + 1) = +-c s_l
  # and its value read-out is +-mu y_l, so the sum of the two heads is exactly
  #   y_hat = mu sum_l y_l [softmax(c s)_l - softmax(-c s)_l].
  c, mu = 0.7, 1.5
  Z = icl.icl_tokens(tasks.x, tasks.y, tasks.x_query)
  got = icl.icl_attention(paired_heads(D, c, mu), Z)
  x, y, xq = (np.asarray(a, np.float64) for a in (tasks.x, tasks.y, tasks.x_query))
  s = np.einsum("bld,bd->bl", x, xq) / math.sqrt(D + 1)
  want = mu * np.sum(y * (softmax(c * s) - softmax(-c * s)), -1)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  per_head = icl.icl_attention(paired_heads(D, c, mu), Z, per_head=True)
  np.testing.assert_allclose(per_head[:, 0], mu * np.sum(y * softmax(c * s), -1), rtol=1e-4, atol=1e-5)


def test_paired_heads_equal_debiased_gd_up_to_third_order(tasks):
  # softmax_l(w s) = exp(w s_l) / sum_j exp(w s_j) = (1 + w (s_l - s_bar)) / L + O(w^2), so with
  # omega = c / sqrt(d + 1)
  #   mu sum_l y_l [softmax(c s)_l - softmax(-c s)_l]
  #     = (2 mu c / L) sum_l y_l (s_l - s_bar) + O(c^3)             (the bracket is odd in c)
  #     = (2 omega mu / L) [sum_l y_l x_l . x_q - (sum_l y_l) x_bar . x_q] + O(c^3),
  # the debiased-GD predictor with step 2 omega mu. With mu = 1 / (2 omega) (step 1) the relative
  # error is O(c^2): halving c divides it by about 4 (an uncancelled even order would give 2).
  Z = icl.icl_tokens(tasks.x, tasks.y, tasks.x_query)
  errs = []
  for c in (0.2, 0.1, 0.05):
    omega = c / math.sqrt(D + 1)
    p = paired_heads(D, c, 1 / (2 * omega))
    step = float(icl.implied_gd_step(p))  # omega mu + (-omega)(-mu)
    assert step == pytest.approx(1.0, rel=1e-6)
    gd = icl.debiased_gd_predict(tasks.x, tasks.y, tasks.x_query, step)
    errs.append(float(jnp.max(jnp.abs(icl.icl_attention(p, Z) - gd)) / jnp.max(jnp.abs(gd))))
  assert errs[-1] < 2e-3
  for big, small in zip(errs, errs[1:]):
    assert 3.3 < big / small < 4.5, errs


def test_single_head_keeps_the_mean_bias(tasks):
  # One head (omega, mu) is mu y_bar + (omega mu / L)[...] + O(omega^2): debiased GD with step
  # omega mu plus the bias mu y_bar that a second, opposite head cancels.
  c = 0.05
  omega = c / math.sqrt(D + 1)
  mu = 1 / omega
  p = paired_heads(D, c, mu, heads=1)
  got = icl.icl_attention(p, icl.icl_tokens(tasks.x, tasks.y, tasks.x_query))
  gd = icl.debiased_gd_predict(tasks.x, tasks.y, tasks.x_query, omega * mu)
  bias = mu * tasks.y.mean(1)
  rel = float(jnp.max(jnp.abs(got - bias - gd)) / jnp.max(jnp.abs(gd)))
  assert rel < 0.05
  assert float(jnp.max(jnp.abs(bias))) > 5 * float(jnp.max(jnp.abs(gd)))  # the bias is not small


# ------------------------------------------------------------------------------------------------
# The query does not attend to itself.


def dense_reference(params, Z, *, self_attend):
  """Full multi-head attention over all L + 1 tokens at the last position, numpy float64.

  The query's own key is masked out unless ``self_attend`` (the paper's equivalent formulation:
  each token attends to the tokens strictly before it).
  """
  q, k, v, o = (np.asarray(params[n], np.float64) for n in "qkvo")
  Z = np.asarray(Z, np.float64)
  out = 0.0
  for h in range(q.shape[0]):
    Q, K, V = Z @ q[h], Z @ k[h], Z @ v[h]
    s = np.einsum("bj,blj->bl", Q[:, -1], K) / math.sqrt(Z.shape[-1])
    if not self_attend:
      s[:, -1] = -np.inf
    out = out + np.einsum("bl,bli->bi", softmax(s), V) @ o[h][:, -1]
  return out


def test_model_is_the_strictly_causal_dense_attention_at_the_query(tasks):
  p = icl.init_icl_attention(jax.random.key(3), d=D, num_heads=3)
  Z = icl.icl_tokens(tasks.x[:64], tasks.y[:64], tasks.x_query[:64])
  got = icl.icl_attention(p, Z)
  np.testing.assert_allclose(got, dense_reference(p, Z, self_attend=False), rtol=1e-4, atol=1e-6)
  assert np.max(np.abs(got - dense_reference(p, Z, self_attend=True))) > 1e-3


def test_query_value_never_reaches_the_output(tasks):
  # With W_Q's last row zero the query's y slot cannot move the scores; it could then only reach the
  # output through the query's own value, i.e. if the query attended to itself.
  p = icl.init_icl_attention(jax.random.key(4), d=D, num_heads=2)
  p = {**p, "q": p["q"].at[:, -1, :].set(0.0)}
  Z = icl.icl_tokens(tasks.x[:64], tasks.y[:64], tasks.x_query[:64])
  Z2 = Z.at[:, -1, -1].set(7.0)
  np.testing.assert_array_equal(icl.icl_attention(p, Z), icl.icl_attention(p, Z2))
  assert np.max(np.abs(dense_reference(p, Z, self_attend=True) - dense_reference(p, Z2, self_attend=True))) > 1e-2
  Z3 = Z.at[:, 0, -1].add(1.0)  # a context label does reach it
  assert float(jnp.max(jnp.abs(icl.icl_attention(p, Z) - icl.icl_attention(p, Z3)))) > 1e-3


def test_tokens_layout():
  b = icl.sample_tasks(jax.random.key(1), 3, d=2, context=4)
  Z = icl.icl_tokens(b.x, b.y, b.x_query)
  assert Z.shape == (3, 5, 3)
  np.testing.assert_array_equal(Z[:, :4, :2], b.x)
  np.testing.assert_array_equal(Z[:, :4, 2], b.y)
  np.testing.assert_array_equal(Z[:, 4, :2], b.x_query)
  np.testing.assert_array_equal(Z[:, 4, 2], 0.0)


def test_init_follows_torch_linear_bounds():
  p = icl.init_icl_attention(jax.random.key(2), d=D, num_heads=4)
  for name in "qkv":
    assert p[name].shape == (4, D + 1, D + 1)
    bound = 1 / math.sqrt(D + 1)
    assert float(jnp.max(jnp.abs(p[name]))) <= bound
    assert float(jnp.max(jnp.abs(p[name]))) > 0.9 * bound
  bound = 1 / math.sqrt(4 * (D + 1))
  assert 0.9 * bound < float(jnp.max(jnp.abs(p["o"]))) <= bound
  half = icl.init_icl_attention(jax.random.key(2), d=D, num_heads=4, init_scale=0.5)
  np.testing.assert_allclose(half["q"], 0.5 * p["q"], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Predictors.


def test_bayes_is_the_posterior_mean():
  b = icl.sample_tasks(jax.random.key(5), 200, d=D, context=L)
  got = icl.bayes_predict(b.x, b.y, b.x_query, noise_var=0.1)
  x, y, xq = (np.asarray(a, np.float64) for a in (b.x, b.y, b.x_query))
  # Normal equations of the posterior mean: (X^T X / s2 + d I) beta = X^T y / s2.
  primal = np.array([xq[i] @ np.linalg.solve(x[i].T @ x[i] / 0.1 + D * np.eye(D), x[i].T @ y[i] / 0.1)
                     for i in range(len(x))])
  # Gaussian conditioning of y_q on y: Cov(y) = X X^T / d + s2 I, Cov(x_q . beta, y) = x_q^T X^T / d.
  dual = np.array([(xq[i] @ x[i].T / D) @ np.linalg.solve(x[i] @ x[i].T / D + 0.1 * np.eye(L), y[i])
                   for i in range(len(x))])
  np.testing.assert_allclose(primal, dual, rtol=1e-8, atol=1e-10)
  np.testing.assert_allclose(got, primal, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(icl.ridge_predict(b.x, b.y, b.x_query, 0.1 * D), got, rtol=1e-6)


def test_bayes_beats_gd_and_other_ridges_on_a_large_sample():
  b = icl.sample_tasks(jax.random.key(6), 20000, d=D, context=L)
  mse = lambda p: float(np.mean((np.asarray(p, np.float64) - np.asarray(b.y_query, np.float64)) ** 2))
  bayes = mse(icl.bayes_predict(b.x, b.y, b.x_query))
  # GD with its step fitted on the test sample itself (which only favours GD).
  s_gd = icl.fit_linear_attention_step(b.x, b.y, b.x_query, b.y_query)
  s_dgd = icl.fit_debiased_gd_step(b.x, b.y, b.x_query, b.y_query)
  gd = mse(icl.linear_attention_predict(b.x, b.y, b.x_query, s_gd))
  dgd = mse(icl.debiased_gd_predict(b.x, b.y, b.x_query, s_dgd))
  # Bayes risk = noise + E x_q^T (X^T X / s2 + d I)^{-1} x_q ~ 0.1 + 0.1 d / L = 0.1125.
  assert bayes == pytest.approx(0.1125, abs=0.01)
  assert bayes < 0.6 * min(gd, dgd)
  for lam in (0.05 * D, 0.4 * D):
    assert bayes < mse(icl.ridge_predict(b.x, b.y, b.x_query, lam))
  assert mse(0 * b.y_query) == pytest.approx(1.1, abs=0.05)
  assert min(gd, dgd) < 0.3


def test_fitted_step_is_least_squares(tasks):
  g = icl.debiased_gd_predict(tasks.x, tasks.y, tasks.x_query, 1.0)
  s = float(icl.fit_debiased_gd_step(tasks.x, tasks.y, tasks.x_query, 2.5 * g))
  assert s == pytest.approx(2.5, rel=1e-5)
  s = icl.fit_debiased_gd_step(tasks.x, tasks.y, tasks.x_query, tasks.y_query)
  loss = lambda t: float(jnp.mean((t * g - tasks.y_query) ** 2))
  assert loss(s) < min(loss(0.99 * s), loss(1.01 * s))
  lin = icl.linear_attention_predict(tasks.x, tasks.y, tasks.x_query, 1.0)
  np.testing.assert_allclose(lin, np.einsum("bl,bld,bd->b", tasks.y, tasks.x, tasks.x_query) / L, rtol=1e-5,
                             atol=1e-6)
  s = float(icl.fit_linear_attention_step(tasks.x, tasks.y, tasks.x_query, -0.5 * lin))
  assert s == pytest.approx(-0.5, rel=1e-5)
  # With every y_l = 0 the feature vanishes and the step is undefined: 0, not NaN.
  assert float(icl.fit_debiased_gd_step(tasks.x, 0 * tasks.y, tasks.x_query, tasks.y_query)) == 0.0


def test_debiased_gd_is_gd_on_the_centred_context(tasks):
  x, y, xq = (np.asarray(a, np.float64) for a in (tasks.x, tasks.y, tasks.x_query))
  want = 0.7 * np.einsum("bl,bld,bd->b", y - y.mean(1, keepdims=True), x - x.mean(1, keepdims=True), xq) / L
  np.testing.assert_allclose(icl.debiased_gd_predict(tasks.x, tasks.y, tasks.x_query, 0.7), want, rtol=1e-4,
                             atol=1e-6)


def test_r_squared():
  t = jnp.array([1.0, 2.0, 3.0, 4.0])
  assert float(icl.r_squared(t, t)) == 1.0
  assert float(icl.r_squared(jnp.full(4, 2.5), t)) == pytest.approx(0.0)
  assert float(icl.r_squared(t + 1.0, t)) == pytest.approx(1 - 4 / 5)


# ------------------------------------------------------------------------------------------------
# Tasks.


def test_sample_tasks_statistics():
  b = icl.sample_tasks(jax.random.key(7), 8000, d=D, context=L, noise_var=0.1)
  assert b.x.shape == (8000, L, D) and b.y.shape == (8000, L)
  assert b.x_query.shape == (8000, D) and b.y_query.shape == (8000,) and b.beta.shape == (8000, D)
  x, y, xq, yq, beta = (np.asarray(a, np.float64) for a in b)
  assert x.mean() == pytest.approx(0.0, abs=0.005)
  assert x.var() == pytest.approx(1.0, abs=0.01)
  assert xq.var() == pytest.approx(1.0, abs=0.03)
  assert beta.var() == pytest.approx(1 / D, abs=0.006)  # 40k entries: s.e. ~0.0014
  assert np.max(np.abs(np.cov(beta.T) - np.eye(D) / D)) < 0.015
  noise = y - np.einsum("bld,bd->bl", x, beta)
  assert noise.var() == pytest.approx(0.1, abs=0.002)  # 320k entries: s.e. ~0.00025
  assert (yq - np.einsum("bd,bd->b", xq, beta)).var() == pytest.approx(0.1, abs=0.008)
  assert np.mean(y ** 2) == pytest.approx(1.1, abs=0.04)
  assert abs(np.mean(xq * x[:, 0])) < 0.01  # the query input is independent of the context
  exact = icl.sample_tasks(jax.random.key(7), 4, d=3, context=6, noise_var=0.0)
  np.testing.assert_allclose(exact.y, np.einsum("bld,bd->bl", exact.x, exact.beta), rtol=1e-5, atol=1e-6)
  again = icl.sample_tasks(jax.random.key(7), 4, d=3, context=6, noise_var=0.0)
  np.testing.assert_array_equal(exact.x, again.x)


# ------------------------------------------------------------------------------------------------
# Training.


@pytest.fixture(scope="module")
def trained():
  return icl.train_icl(jax.random.key(0), num_heads=2, steps=400, log_every=100)


def test_short_training_learns_well_below_the_trivial_predictor(trained):
  params, hist = trained
  assert hist["step"].tolist() == [0, 100, 200, 300, 400]
  assert hist["kq"].shape == (5, 2) and hist["ov"].shape == (5, 2) and hist["train_loss"].shape == (400,)
  np.testing.assert_allclose(hist["loss"][1:], hist["train_loss"].reshape(4, 100).mean(1), rtol=1e-6)
  np.testing.assert_allclose(hist["kq"][-1], icl.kq_diagonal(params), rtol=1e-6)
  np.testing.assert_allclose(hist["ov"][-1], icl.ov_last_entry(params), rtol=1e-6)
  test = icl.sample_tasks(jax.random.key(99), 4096, d=D, context=L)
  mse = float(icl.icl_loss(params, test))
  # Measured 0.31 after 400 steps (trivial E y^2 = 1.1; debiased GD with its best step ~0.25).
  assert mse < 0.45
  assert hist["loss"][0] > 1.0


def test_training_is_pure_and_history_is_the_state_after_each_row(trained):
  # Step t's tasks come from fold_in(data_key, t): stopping at 200 steps replays the first 200 of 400.
  _, full = trained
  params, hist = icl.train_icl(jax.random.key(0), num_heads=2, steps=200, log_every=100)
  np.testing.assert_array_equal(hist["train_loss"], full["train_loss"][:200])
  np.testing.assert_array_equal(icl.kq_diagonal(params), full["kq"][2])
  np.testing.assert_array_equal(icl.ov_last_entry(params), full["ov"][2])


# ------------------------------------------------------------------------------------------------
# Bad inputs.


def test_bad_inputs_raise_named(tasks):
  key = jax.random.key(0)
  b = tasks
  p = icl.init_icl_attention(jax.random.key(4), d=D, num_heads=2)
  Z = icl.icl_tokens(b.x, b.y, b.x_query)
  cases = [
      (ValueError, "batch:", lambda: icl.sample_tasks(key, 0)),
      (ValueError, "d:", lambda: icl.sample_tasks(key, 2, d=0)),
      (ValueError, "context:", lambda: icl.sample_tasks(key, 2, context=2.0)),
      (ValueError, "noise_var:", lambda: icl.sample_tasks(key, 2, noise_var=-0.1)),
      (TypeError, "key:", lambda: icl.sample_tasks(0, 2)),
      (ValueError, "x:", lambda: icl.icl_tokens(b.x[0], b.y, b.x_query)),
      (ValueError, "y:", lambda: icl.icl_tokens(b.x, b.y[:, :3], b.x_query)),
      (ValueError, "x_query:", lambda: icl.icl_tokens(b.x, b.y, b.x_query[:, :2])),
      (ValueError, "x:", lambda: icl.icl_tokens(b.x.at[0, 0, 0].set(jnp.nan), b.y, b.x_query)),
      (ValueError, "num_heads:", lambda: icl.init_icl_attention(key, d=D, num_heads=0)),
      (ValueError, "init_scale:", lambda: icl.init_icl_attention(key, d=D, num_heads=1, init_scale=0.0)),
      (TypeError, "params:", lambda: icl.icl_attention([p["q"]], Z)),
      (ValueError, "params:", lambda: icl.icl_attention({"q": p["q"]}, Z)),
      (ValueError, "params:", lambda: icl.icl_attention({**p, "o": p["o"][:1]}, Z)),
      (ValueError, "Z:", lambda: icl.icl_attention(p, Z[..., :3])),
      (ValueError, "Z:", lambda: icl.icl_attention(p, Z[:, :1])),
      (ValueError, "Z:", lambda: icl.icl_attention(p, Z[0])),
      (TypeError, "batch:", lambda: icl.icl_loss(p, (b.x, b.y))),
      (ValueError, "d:", lambda: icl.kq_diagonal(p, 3)),
      (ValueError, "step:", lambda: icl.debiased_gd_predict(b.x, b.y, b.x_query, float("nan"))),
      (ValueError, "target:", lambda: icl.fit_debiased_gd_step(b.x, b.y, b.x_query, b.y_query[:2])),
      (ValueError, "lam:", lambda: icl.ridge_predict(b.x, b.y, b.x_query, 0.0)),
      (ValueError, "x:", lambda: icl.ridge_predict(b.x[:0], b.y[:0], b.x_query[:0], 1.0)),
      (ValueError, "Z:", lambda: icl.icl_attention(p, Z[:0])),
      (ValueError, "noise_var:", lambda: icl.bayes_predict(b.x, b.y, b.x_query, noise_var=0.0)),
      (ValueError, "pred:", lambda: icl.r_squared(b.y, b.y_query)),
      (ValueError, "steps:", lambda: icl.train_icl(key, num_heads=1, steps=0)),
      (ValueError, "learning_rate:", lambda: icl.train_icl(key, num_heads=1, steps=1, learning_rate=0.0)),
      (ValueError, "log_every:", lambda: icl.train_icl(key, num_heads=1, steps=1, log_every=0)),
  ]
  for exc, prefix, call in cases:
    with pytest.raises(exc, match=f"^{prefix}"):
      call()
