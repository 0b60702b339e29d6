"""The block feature cache, the fixed-interval schedule and HarmoniCa's router (jaxdyn.diffusion._cache/_harmonica)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import diffusion
from jaxdyn.models import DiT

DEPTH, STEPS = 2, 3


def _model(seed=0):
  """A tiny DiT whose zero-initialised adaLN and output layers are perturbed, so every block does something."""
  m = DiT(1, 10, image_size=4, patch_size=2, dim=8, depth=DEPTH, num_heads=2, mlp_ratio=2, rngs=nnx.Rngs(seed))
  g, p = nnx.split(m)
  leaves, tree = jax.tree.flatten(p)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  leaves = [a + 0.3 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys)]
  return nnx.merge(g, jax.tree.unflatten(tree, leaves))


M = _model()
Z = jax.random.normal(jax.random.key(2), (3, 4, 4, 1))
Y = jnp.array([0, 4, 9])
KW = dict(num_steps=STEPS, sigma_data=0.5, sigma_max=20.0)


@functools.cache
def _uncached(second_order=True):
  den = diffusion.dit_denoiser(M, Y, sigma_data=0.5)
  return jax.jit(lambda z: diffusion.heun_sampler(den, z, num_steps=STEPS, sigma_max=20.0,
                                                  second_order=second_order))(Z)


def _cached(schedule, second_order=True):
  return jax.jit(lambda z: diffusion.cached_sampler(M, z, Y, schedule, **KW, second_order=second_order))(Z)


@pytest.mark.parametrize("second_order", [True, False])
def test_router_always_compute_equals_uncached_sampler_exactly(second_order):
  rows = diffusion.num_cache_steps(STEPS, second_order=second_order)
  router = diffusion.Router(rows, DEPTH, rngs=nnx.Rngs(0))
  router.logits.value = jnp.full((rows, DEPTH), 5.0)  # the code's clamp: sigmoid(5) = 0.993 >= 0.5
  sched = router.schedule(0.5)
  assert sched.all() and diffusion.cache_ratio(sched) == 0.0
  np.testing.assert_array_equal(np.asarray(_cached(sched, second_order)), np.asarray(_uncached(second_order)))
  # "never reuse": the fixed interval 1 is the same schedule, so the same samples
  np.testing.assert_array_equal(diffusion.fixed_interval_schedule(rows, DEPTH, 1), sched)


def test_reuse_changes_the_samples():
  # the exactness test above could not pass with a cache that did nothing at all
  rows = diffusion.num_cache_steps(STEPS)
  out = _cached(diffusion.fixed_interval_schedule(rows, DEPTH, 2))
  assert float(jnp.max(jnp.abs(out - _uncached()))) > 1e-3


def test_fixed_interval_schedule_and_cache_ratio_by_hand():
  s = diffusion.fixed_interval_schedule(5, 3, 3)
  assert s.dtype == np.bool_ and s.shape == (5, 3)
  np.testing.assert_array_equal(s, np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], [0, 0, 0]], bool))
  assert diffusion.cache_ratio(s) == pytest.approx(9 / 15)
  assert diffusion.cache_ratio(diffusion.fixed_interval_schedule(35, 4, 2)) == pytest.approx(17 / 35)
  assert diffusion.num_cache_steps(18) == 35 and diffusion.num_cache_steps(18, second_order=False) == 18
  # the sampler counts the reused block evaluations as it runs
  rows = diffusion.num_cache_steps(STEPS)
  sched = np.ones((rows, DEPTH), bool)
  sched[[1, 2, 4], 0] = False
  sched[3, 1] = False
  _, reused = jax.jit(lambda z: diffusion.cached_sampler(M, z, Y, sched, **KW, return_reused=True))(Z)
  assert int(reused) == 4 and diffusion.cache_ratio(sched) == pytest.approx(4 / (rows * DEPTH))


def test_reused_block_adds_the_cached_residual_two_euler_steps_by_hand():
  sched = np.array([[True, True], [True, False]])  # step 1 reuses block 1's residual of step 0
  sigmas = np.asarray(diffusion.karras_sigmas(2, sigma_max=20.0))
  pre = lambda s: diffusion.edm_preconditioning(jnp.float32(s), sigma_data=0.5)  # noqa: E731

  def network(x, s, cached=None):
    t, c = M.embed(pre(s).c_in * x, jnp.full((3,), pre(s).c_noise), Y)
    t = M.blocks[0](t, c)
    r = M.blocks[1](t, c) - t
    t = t + (r if cached is None else cached)
    return M.unembed(t, c), r

  x0 = Z * sigmas[0]
  f0, r1 = network(x0, sigmas[0])
  d0 = (x0 - (pre(sigmas[0]).c_skip * x0 + pre(sigmas[0]).c_out * f0)) / sigmas[0]
  x1 = x0 + (sigmas[1] - sigmas[0]) * d0
  f1, _ = network(x1, sigmas[1], cached=r1)
  d1 = (x1 - (pre(sigmas[1]).c_skip * x1 + pre(sigmas[1]).c_out * f1)) / sigmas[1]
  x2 = x1 + (sigmas[2] - sigmas[1]) * d1
  out = jax.jit(lambda z: diffusion.cached_sampler(M, z, Y, sched, num_steps=2, sigma_max=20.0, second_order=False))(Z)
  np.testing.assert_allclose(np.asarray(out), np.asarray(x2), rtol=1e-5, atol=1e-5)
  f1_fresh, _ = network(x1, sigmas[1])
  assert float(jnp.max(jnp.abs(f1_fresh - f1))) > 1e-3  # the residual reused is not the fresh one


def test_router_hard_decision_is_the_threshold_and_ste_gradient():
  a = jnp.array([[-3.0, -3.0], [0.0, -0.01], [2.0, -1.0]])
  p = jax.nn.sigmoid(a)
  r = diffusion.Router(3, 2, rngs=nnx.Rngs(0))
  r.logits.value = a
  np.testing.assert_array_equal(r.schedule(0.5), np.array([[1, 1], [1, 0], [1, 0]], bool))  # p = 0.5 computes
  np.testing.assert_array_equal(r.schedule(0.2), np.array([[1, 1], [1, 1], [1, 1]], bool))
  w = diffusion.router_weights(a, threshold=0.5, estimator="ste")
  np.testing.assert_array_equal(np.asarray(w), np.array([[1, 1], [1, 0], [1, 0]], np.float32))
  soft = diffusion.router_weights(a, estimator="soft")
  np.testing.assert_allclose(np.asarray(soft[1:]), np.asarray(p[1:]), rtol=1e-6)
  assert np.all(np.asarray(soft[0]) == 1.0)
  c = jnp.array([[5.0, 6.0], [1.0, 2.0], [3.0, -4.0]])
  g = jax.grad(lambda a: jnp.sum(c * diffusion.router_weights(a, estimator="ste")))(a)
  expected = np.asarray(c * p * (1 - p)).copy()
  expected[0] = 0.0  # the first step always computes: no gradient
  np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-6)
  assert np.all(np.asarray(g[1:]) != 0)


@jax.jit
def _loss_and_grad(a, lam):
  f = lambda a: diffusion.harmonica_loss(a, M, Z, Y, lam, beta=0.3, estimator="ste", **KW,  # noqa: E731
                                        second_order=False)
  return jax.value_and_grad(f, has_aux=True)(a)


def test_harmonica_loss_closed_forms_and_gradient():
  rows = diffusion.num_cache_steps(STEPS, second_order=False)  # Euler: faster to compile
  lam = jnp.linspace(0.0, 2.0, rows)
  # every entry computes (ste forward = 1): the student is the teacher, only the penalty remains
  (loss, aux), _ = _loss_and_grad(jnp.full((rows, DEPTH), 5.0), lam)
  sig5 = 1 / (1 + np.exp(-5.0))
  assert float(aux["penalty"]) == pytest.approx((rows - 1) * sig5, rel=1e-6)
  assert float(jnp.max(aux["mse"])) < 1e-10
  assert float(loss) == pytest.approx(0.3 * (rows - 1) * sig5, rel=1e-5)
  # a mixed router: loss = sum lambda_i mse_i + beta * penalty; the student's samples are the inference cache's
  a = jnp.array([[0.0, 0.0], [1.0, -1.0], [-2.0, 0.5]])
  (loss, aux), g = _loss_and_grad(a, lam)
  mse = np.asarray(aux["mse"])
  assert mse[0] < 1e-10 and np.all(mse[1:] > 1e-6)
  p = 1 / (1 + np.exp(-np.asarray(a)))
  assert float(aux["penalty"]) == pytest.approx(float(np.sum(np.mean(p[1:], axis=1))), rel=1e-6)
  assert float(loss) == pytest.approx(float(np.sum(np.asarray(lam) * mse)) + 0.3 * float(aux["penalty"]), rel=1e-5)
  sched = p >= 0.5
  sched[0] = True
  np.testing.assert_allclose(np.asarray(aux["samples"]), np.asarray(_cached(sched, False)), rtol=1e-4, atol=1e-4)
  g = np.asarray(g)
  assert np.all(np.isfinite(g)) and np.all(g[0] == 0) and np.count_nonzero(g[1:]) == g[1:].size
  # with the proxy at 0 the gradient is the penalty's alone: beta * sigmoid'(a) / num_blocks
  _, g0 = _loss_and_grad(a, jnp.zeros(rows))
  np.testing.assert_allclose(np.asarray(g0[1:]), 0.3 * p[1:] * (1 - p[1:]) / DEPTH, rtol=1e-5)


def test_iepo_weights_isolate_the_step_that_reuses():
  rows = diffusion.num_cache_steps(STEPS, second_order=False)  # Euler: faster to compile
  iepo = jax.jit(lambda a: diffusion.iepo_weights(a, M, Z, Y, estimator="ste", **KW, second_order=False))
  a = jnp.full((rows, DEPTH), 5.0)
  np.testing.assert_array_equal(np.asarray(iepo(a)), np.zeros(rows, np.float32))  # no reuse: no image error
  lam = np.asarray(iepo(a.at[1, 0].set(-5.0)))  # only step 1 reuses block 0
  sched = np.ones((rows, DEPTH), bool)
  sched[1, 0] = False
  err = float(jnp.mean(jnp.square(_cached(sched, False) - _uncached(False))))
  assert err > 1e-6
  assert lam[1] == pytest.approx(err, rel=1e-3)
  np.testing.assert_array_equal(lam[[0, 2]], np.zeros(2, np.float32))


def test_matched_threshold_by_hand():
  s = np.array([[1.0, 1.0], [0.2, 0.9], [0.6, 0.4]])
  assert diffusion.matched_threshold(s, 0.5) == pytest.approx(0.75)
  assert diffusion.matched_threshold(s, 2 / 6) == pytest.approx(0.5)
  t = diffusion.matched_threshold(s, 4 / 6)
  assert (s >= t).sum() == 2
  assert (s >= diffusion.matched_threshold(s, 0.0)).all()


@pytest.mark.parametrize("call, match, exc", [
    (lambda: diffusion.fixed_interval_schedule(5, 2, 0), "interval: must be an int", ValueError),
    (lambda: diffusion.fixed_interval_schedule(5, 2.0, 1), "num_blocks: must be an int", ValueError),
    (lambda: diffusion.cache_ratio(np.ones((3, 2))), "schedule: must be a boolean", TypeError),
    (lambda: diffusion.cache_ratio(np.array([[True, False], [True, True]])), "schedule: the first row", ValueError),
    (lambda: diffusion.cached_sampler(M, Z, Y, np.ones((4, DEPTH), bool), num_steps=STEPS),
     r"schedule: must have shape \(5, 2\)", ValueError),
    (lambda: diffusion.cached_sampler("dit", Z, Y, np.ones((5, DEPTH), bool), num_steps=STEPS),
     "model: must be a jaxdyn.models.DiT", TypeError),
    (lambda: diffusion.cached_sampler(M, Z, jnp.array([0, 1, 10]), np.ones((5, DEPTH), bool), num_steps=STEPS),
     "class_labels", ValueError),
    (lambda: jax.jit(lambda s: diffusion.cached_sampler(M, Z, Y, s, num_steps=STEPS))(np.ones((5, DEPTH), bool)),
     "schedule: must be a concrete", TypeError),
    (lambda: diffusion.router_weights(jnp.zeros((3, 2)), estimator="hard"), "estimator: must be one of",
     ValueError),
    (lambda: diffusion.router_weights(jnp.zeros((3, 2)), threshold=1.0), "threshold: must be", ValueError),
    (lambda: diffusion.Router(0, 2, rngs=nnx.Rngs(0)), "num_steps: must be an int", ValueError),
    (lambda: diffusion.harmonica_loss(jnp.zeros((5, DEPTH)), M, Z, Y, jnp.ones(4), beta=0.1, num_steps=STEPS),
     r"proxy: must have shape \(5,\)", ValueError),
    (lambda: diffusion.harmonica_loss(jnp.zeros((5, DEPTH)), M, Z, Y, jnp.ones(5), beta=-1.0, num_steps=STEPS),
     "beta: must be", ValueError),
    (lambda: diffusion.iepo_weights(jnp.zeros((5, 3)), M, Z, Y, num_steps=STEPS), r"logits: must have shape",
     ValueError),
    (lambda: diffusion.matched_threshold(np.ones((3, 2)), 0.9), "cache_ratio: must be", ValueError),
])
def test_bad_inputs_raise(call, match, exc):
  with pytest.raises(exc, match=match):
    call()
