"""BPTT, SLTT and SLTT-K gradients against unrolled references; step sampling; state through time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn.snn import (
    SpikingMLP,
    lif_step,
    sample_steps,
    sltt_step_loss,
    spiking_loss,
    step_function,
    through_time_loss,
)

B, D, H, C, T = 8, 5, 7, 3, 4


def mlp_step(p, state, carry, x, t):
  """Two LIF layers; ``state`` counts the steps (stands for statistics updated at every step)."""
  v1, v2 = (None, None) if carry is None else carry
  s1, v1 = lif_step(v1, x @ p["w1"] + 0.1 * t)
  s2, v2 = lif_step(v2, s1 @ p["w2"], tau=2.0)
  return s2 @ p["w3"], (v1, v2), state + 1


def problem(seed=0):
  k = jax.random.split(jax.random.key(seed), 4)
  p = {"w1": jax.random.normal(k[0], (D, H)), "w2": jax.random.normal(k[1], (H, H)) * 0.8,
       "w3": jax.random.normal(k[2], (H, C))}
  x = jax.random.normal(k[3], (B, D)) + 0.5
  y = jnp.arange(B) % C
  return p, x, y


def unrolled(step_fn, p, state, inputs, y, *, stop_carry, steps=None, lam_l=0.05):
  """The network as a Python loop of T steps; SLTT = the carry stopped between steps."""
  carry, total = None, 0.0
  for t in range(T):
    c = jax.lax.stop_gradient(carry) if (stop_carry and carry is not None) else carry
    out, carry, state = step_fn(p, state, c, inputs, t)
    l = sltt_step_loss(logits=out, labels=y, lam_l=lam_l) / T
    total = total + (l if steps is None or steps[t] else jax.lax.stop_gradient(l))
  return total, state


def jvg(f, **kw):
  """jit(value_and_grad): compiled once, much faster on CPU than op-by-op autodiff of the loops."""
  return jax.jit(jax.value_and_grad(f, **kw))


def jg(f):
  return jax.jit(jax.grad(f))


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def tt(mode, p, x, y, **kw):
  return through_time_loss(mlp_step, p, jnp.int32(0), x, y, num_steps=T, mode=mode, **kw)


def check_against_unrolled(mode, p, x, y, *, rtol=1e-6, grad_rtol=1e-5, atol=1e-6):
  """Loss and gradients of ``mode`` equal the unrolled loop's (SLTT: the carry stopped between steps)."""
  (loss, aux), g = jvg(lambda p: tt(mode, p, x, y), has_aux=True)(p)
  (ref, _), g_ref = jvg(
      lambda p: unrolled(mlp_step, p, 0, x, y, stop_carry=mode == "sltt"), has_aux=True)(p)
  np.testing.assert_allclose(loss, ref, rtol=rtol)
  assert_trees_close(g, g_ref, rtol=grad_rtol, atol=atol)
  return loss, aux, g


def test_bptt_equals_grad_of_unrolled_network():
  _, aux, _ = check_against_unrolled("bptt", *problem())
  assert int(aux.state) == T


def test_sltt_equals_unrolled_with_stopped_membrane_and_differs_from_bptt():
  p, x, y = problem()
  _, aux, g = check_against_unrolled("sltt", p, x, y)
  g_bptt = jg(lambda p: tt("bptt", p, x, y)[0])(p)
  assert float(jnp.abs(g["w1"] - g_bptt["w1"]).max()) > 1e-3  # the temporal path matters here
  # Same forward: outputs, state and final carry agree with BPTT's.
  _, aux_b = tt("bptt", p, x, y)
  assert_trees_close(aux, aux_b, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["bptt", "sltt"])
def test_float64_parameters_train_in_float64(mode):
  # Before: the loss accumulator was float32, so lax.scan raised a TypeError (carry float32 in,
  # float64 out) for float64 parameters.
  p, x, y = problem()
  loss32 = tt(mode, p, x, y)[0]
  with jax.enable_x64(True):
    p64, x64 = jax.tree.map(lambda a: np.asarray(a, np.float64), (p, x))
    loss, _, g = check_against_unrolled(mode, p64, x64, y, rtol=1e-13, grad_rtol=1e-12, atol=1e-13)
    assert loss.dtype == jnp.float64 and all(a.dtype == jnp.float64 for a in jax.tree.leaves(g))
  assert loss32.dtype == jnp.float32
  np.testing.assert_allclose(loss, loss32, rtol=1e-5)


def test_sltt_k_with_k_equal_t_is_sltt():
  p, x, y = problem(1)
  g = jg(lambda p: tt("sltt", p, x, y)[0])(p)
  g_k = jg(lambda p: tt("sltt_k", p, x, y, k=T, key=jax.random.key(3))[0])(p)
  assert_trees_close(g_k, g, rtol=0, atol=0)


def test_sltt_k_keeps_only_the_sampled_steps_and_reports_the_full_loss():
  p, x, y = problem(2)
  key = jax.random.key(4)
  chosen = np.asarray(sample_steps(key, T, 2))
  assert chosen.sum() == 2 and not chosen[0]  # a draw that skips the first step (steps 1 and 3)
  loss, g = jvg(lambda p: tt("sltt_k", p, x, y, k=2, key=key)[0])(p)
  ref, g_ref = jvg(
      lambda p: unrolled(mlp_step, p, 0, x, y, stop_carry=True, steps=chosen)[0])(p)
  np.testing.assert_allclose(loss, ref, rtol=1e-6)  # loss over all T steps, divided by T
  assert_trees_close(g, g_ref)


def test_sltt_k_explicit_steps_equal_the_draw_that_picks_them():
  p, x, y = problem(2)
  key = jax.random.key(4)
  mask = sample_steps(key, T, 2)
  loss_key, g_key = jvg(lambda p: tt("sltt_k", p, x, y, k=2, key=key)[0])(p)
  for steps, k in ((mask, 2), (np.asarray(mask), None), (np.flatnonzero(mask).tolist(), 2),
                   (tuple(np.flatnonzero(mask)[::-1]), None)):
    loss, g = jvg(lambda p: tt("sltt_k", p, x, y, k=k, steps=steps)[0])(p)  # no key needed
    assert_trees_close(g, g_key, rtol=0, atol=0)
    np.testing.assert_array_equal(loss, loss_key)
  # A traced mask: jit over the steps, one compilation for every choice.
  g_of = jax.jit(jax.grad(lambda p, m: tt("sltt_k", p, x, y, steps=m)[0]))
  assert_trees_close(g_of(p, mask), g_key, rtol=0, atol=0)
  g_first = jg(lambda p: tt("sltt_k", p, x, y, steps=[0])[0])(p)
  assert_trees_close(g_of(p, jnp.array([True, False, False, False])), g_first, rtol=0, atol=0)


def test_sltt_k_steps_hand_check():
  # o_t = (t + 1) x w and l(o_t) = sum(o_t): L = (1/T) sum_t (t + 1) x w, so the SLTT-K gradient over
  # the trained steps S is (1/T) sum_{t in S} (t + 1) x^T, while the loss still sums every step.
  def step(w, state, carry, x, t):
    return (t + 1.0) * (x @ w), carry, state

  def total(*, logits, labels):
    del labels
    return jnp.sum(logits)

  x, w = jnp.array([[1.0, 2.0]]), jnp.ones((2, 1))
  for steps, weight in (([0, 2], (1 + 3) / 3), ([1], 2 / 3), (np.array([True, True, True]), (1 + 2 + 3) / 3)):
    loss, g = jax.value_and_grad(lambda w: through_time_loss(step, w, None, x, jnp.zeros(1), num_steps=3,
                                                             mode="sltt_k", steps=steps, loss_fn=total)[0])(w)
    np.testing.assert_allclose(g, weight * x.T, rtol=1e-6)
    np.testing.assert_allclose(loss, (1 + 2 + 3) * 3.0 / 3, rtol=1e-6)


@pytest.mark.parametrize("steps,match", [
    ([0, 1, 2], r"steps: must select exactly k = 2 of the 4 steps, got 3"),
    ([0, 0], r"steps: step indices must be distinct"),
    ([1, 4], r"steps: step indices must lie in \[0, 4\)"),
    ([-1, 2], r"steps: step indices must lie in \[0, 4\)"),
    (np.array([True, False, True]), r"steps: a bool mask must have shape \(4,\)"),
    ([], r"steps: must select exactly k = 2 of the 4 steps, got 0"),
])
def test_steps_errors_name_the_argument(steps, match):
  p, x, y = problem()
  with pytest.raises(ValueError, match=match):
    tt("sltt_k", p, x, y, k=2, steps=steps)
  with pytest.raises(TypeError, match="steps: must be a bool"):
    tt("sltt_k", p, x, y, steps=[0.5, 1.0])
  with pytest.raises(ValueError, match="steps: only used with mode='sltt_k'"):
    tt("sltt", p, x, y, steps=[0, 1])


def test_policy_labels_empty_batch_keys_and_numpy_scalars():
  p, x, y = problem()
  with pytest.raises(ValueError, match=r"labels: must lie in \[0, 3\)"):
    tt("sltt", p, x, y.at[2].set(3))
  with pytest.raises(ValueError, match=r"labels: must lie in \[0, 3\)"):
    tt("bptt", p, x, y.at[0].set(-1))  # a negative label never wraps to the last class
  # Under jit an out-of-range label cannot be checked: the loss is NaN, never a plausible number.
  loss = jax.jit(lambda y: tt("sltt", p, x, y)[0])(y.at[2].set(7))
  assert np.isnan(loss)
  # Empty batch (before: a NaN mean of nothing, silently).
  with pytest.raises(ValueError, match="labels: must hold at least one"):
    tt("sltt", p, x[:0], y[:0])
  with pytest.raises(TypeError, match="key: must be a jax.random key"):
    tt("sltt", p, x, y, key="seed")
  with pytest.raises(ValueError, match="loss_fn: must return a scalar"):
    tt("sltt", p, x, y, loss_fn=lambda *, logits, labels: logits.sum(0))
  ref = tt("sltt_k", p, x, y, k=2, key=jax.random.key(1))[0]
  got = through_time_loss(mlp_step, p, jnp.int32(0), x, y, num_steps=np.int64(T), mode="sltt_k", k=np.int32(2),
                          key=jax.random.key(1), lam_l=np.float32(0.05), unroll=np.int64(2))[0]
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  np.testing.assert_array_equal(sample_steps(jax.random.key(1), np.int64(T), np.int32(2)),
                                sample_steps(jax.random.key(1), T, 2))


def test_sltt_step_loss_nonfinite_logits_and_traced_labels_give_nan():
  logits = jnp.array([[2.0, -jnp.inf, 0.5], [0.1, 0.2, 0.3]])
  y = jnp.array([0, 2])
  # lam_L = 0: a -inf logit of a wrong class left the cross-entropy finite (1.13...) before.
  assert np.isnan(sltt_step_loss(logits=logits, labels=y, lam_l=0.0))
  assert not np.isfinite(sltt_step_loss(logits=logits, labels=y))
  ok = jnp.array([[2.0, 0.0, 0.5], [0.1, 0.2, 0.3]])
  f = jax.jit(lambda y: sltt_step_loss(logits=ok, labels=y, lam_l=0.0))
  assert np.isnan(f(jnp.array([0, 3]))) and np.isnan(f(jnp.array([-1, 2])))
  np.testing.assert_allclose(f(y), sltt_step_loss(logits=ok, labels=y, lam_l=0.0), rtol=1e-6)
  with pytest.raises(ValueError, match="logits: must hold at least one"):
    sltt_step_loss(logits=jnp.zeros((0, 3)), labels=jnp.zeros(0, int))
  np.testing.assert_allclose(sltt_step_loss(logits=ok, labels=y, lam_l=np.float32(0.5), mse_target=np.int64(1)),
                             sltt_step_loss(logits=ok, labels=y, lam_l=0.5), rtol=1e-6)


def test_sampled_steps_are_k_distinct_and_uniform():
  keys = jax.random.split(jax.random.key(0), 3000)
  masks = np.asarray(jax.vmap(lambda k: sample_steps(k, 4, 2))(keys))
  assert np.all(masks.sum(1) == 2)
  # Each of the C(4, 2) = 6 subsets has probability 1/6; each step 1/2.
  codes = masks @ (2 ** np.arange(4))
  counts = np.array([np.sum(codes == c) for c in (3, 5, 6, 9, 10, 12)])
  assert counts.sum() == 3000
  chi2 = np.sum((counts - 500) ** 2 / 500)
  assert chi2 < 20.5  # 5 degrees of freedom: p ~ 0.001
  np.testing.assert_allclose(masks.mean(0), 0.5, atol=5 * np.sqrt(0.25 / 3000))


def test_spiking_model_with_batchnorm_sltt_against_unrolled(numpy_init):
  model = numpy_init(lambda: SpikingMLP(D, C, hidden=(H, 6), num_steps=T, rngs=nnx.Rngs(0)))
  graphdef, params, state = nnx.split(model, nnx.Param, ...)
  _, x, y = problem(3)
  inputs = {"x": 2.0 * x, "masks": None, "key": None}
  fn = step_function(graphdef)
  (loss, aux), g = jvg(
      lambda p: through_time_loss(fn, p, state, inputs, y, num_steps=T, mode="sltt"), has_aux=True)(params)
  (ref, ref_state), g_ref = jvg(
      lambda p: unrolled(fn, p, state, inputs, y, stop_carry=True), has_aux=True)(params)
  np.testing.assert_allclose(loss, ref, rtol=1e-6)
  assert_trees_close(g, g_ref, rtol=2e-5, atol=1e-6)
  # BatchNorm ran once per step: its running statistics moved T times, as in the unrolled loop.
  assert_trees_close(aux.state, ref_state, rtol=1e-6, atol=1e-7)
  mean0 = state["norms"][0]["mean"][...]
  h0 = (2.0 * x) @ params["layers"][0]["kernel"][...] + params["layers"][0]["bias"][...]
  np.testing.assert_allclose(aux.state["norms"][0]["mean"][...],
                             (1 - 0.9**T) * h0.mean(0) + 0.9**T * mean0, rtol=1e-5, atol=1e-6)


def test_spiking_loss_writes_batchnorm_state_back_into_the_model(numpy_init):
  model = numpy_init(lambda: SpikingMLP(D, C, hidden=(H,), num_steps=T, rngs=nnx.Rngs(1)))
  _, x, y = problem(4)
  before = np.asarray(model.norms[0].mean[...])
  loss, logits = spiking_loss(model, x, y, mode="sltt")
  assert logits.shape == (B, C) and np.isfinite(float(loss))
  assert not np.allclose(before, np.asarray(model.norms[0].mean[...]))


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "rtrl"}, r"mode: must be one of \['bptt', 'sltt', 'sltt_k'\]"),
    ({"mode": "sltt_k", "k": T + 1, "key": jax.random.key(0)}, r"k: must be an int in \[1, 4\]"),
    ({"mode": "sltt_k", "k": 0, "key": jax.random.key(0)}, r"k: must be an int in \[1, 4\]"),
    ({"mode": "sltt_k", "key": jax.random.key(0)}, r"k: mode='sltt_k' needs k"),
    ({"mode": "sltt_k", "k": 2}, "key: mode='sltt_k' needs a jax.random key"),
    ({"mode": "sltt", "k": 2}, "k: only used with mode='sltt_k'"),
    ({"lam_l": 1.5}, r"lam_l: must be a finite real number in \[0, 1\]"),
    ({"num_steps": 0}, "num_steps: must be an int >= 1"),
])
def test_errors_name_the_argument(kwargs, match):
  p, x, y = problem()
  kwargs = {"num_steps": T, **kwargs}
  with pytest.raises(ValueError, match=match):
    through_time_loss(mlp_step, p, 0, x, y, **kwargs)
  if "k" in kwargs and kwargs.get("mode") == "sltt_k" and kwargs.get("key") is not None:
    with pytest.raises(ValueError, match="k: must be an int"):
      sample_steps(jax.random.key(0), T, kwargs["k"])
