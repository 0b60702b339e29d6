"""The contract every Optax transform in jaxdyn keeps (after optax's contrib/_common_test.py).

Extra keyword arguments accepted; no recompilation on a second call; works inside optax.chain,
optax.MultiSteps and optax.inject_hyperparams; dtypes kept; the state's sharding on 8 forced CPU
devices unchanged by update. ``test_every_transform_is_listed`` finds jaxdyn's transform factories by
their return annotation so a new one cannot skip the contract.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdyn
from jaxdyn import bayes, memory, schemes, sparsity

REPO = pathlib.Path(__file__).resolve().parents[2]
FAMILIES = tuple(f"jaxdyn.{f}" for f in jaxdyn.FAMILIES)


def _params(dtype=jnp.float32):
  k1, k2 = jax.random.split(jax.random.key(0))
  mask = jax.random.bernoulli(k1, 0.5, (8, 16))
  return {
      "dense": {
          "kernel_mu": jnp.where(mask, 0.1 * jax.random.normal(k2, (8, 16)), 0.0).astype(dtype),
          "kernel_rho": jnp.where(mask, -5.0, 0.0).astype(dtype),
          "bias": jnp.zeros((16,), dtype),
      },
      "head": {"kernel": (0.1 * jax.random.normal(k1, (16, 4))).astype(dtype)},
  }


def _grads(params, seed):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


# name -> (factory, kwargs, (kwargs, static args) for inject_hyperparams, injected hyperparameter)
TRANSFORMS = {
    "ssvi": (lambda **kw: bayes.ssvi(optax.sgd(0.1, momentum=0.9), **kw),
             {"total_steps": 20, "update_every": 2}, None, None),
    "ssvi_sgd": (bayes.ssvi_sgd, {"learning_rate": 0.05, "total_steps": 20, "update_every": 2},
                 ({"learning_rate": 0.05, "total_steps": 20, "update_every": 2}, ()), "learning_rate"),
    # The sparse-training wrappers, with a topology step every 2 updates.
    "static_sparse": (lambda **kw: sparsity.static_sparse(optax.adam(1e-2), **kw),
                      {"density": 0.3, "key": jax.random.key(1)}, None, None),
    "gmp": (lambda **kw: sparsity.gmp(optax.sgd(0.1, momentum=0.9), **kw),
            {"schedule": sparsity.PruningSchedule(final_density=0.2, end_step=8, update_every=2)}, None, None),
    "rigl": (lambda **kw: sparsity.rigl(optax.adam(1e-2), **kw),
             {"density": 0.3, "key": jax.random.key(1), "end_step": 8, "update_every": 2}, None, None),
    "set_sparse": (lambda **kw: sparsity.set_sparse(optax.adam(1e-2), **kw),
                   {"density": 0.3, "key": jax.random.key(1), "end_step": 8, "update_every": 2}, None, None),
    "granet": (lambda **kw: sparsity.granet(optax.sgd(0.1, momentum=0.9), **kw),
               {"schedule": sparsity.PruningSchedule(final_density=0.2, end_step=8, update_every=2)}, None, None),
}
# Frozen sub-tree (frozen-spatial ViViT): the "head" leaves get zero updates and no state.
TRANSFORMS["freeze_spatial"] = (lambda **kw: memory.freeze_spatial(optax.adam(1e-2), **kw), {"prefix": "head"},
                                None, None)
# Experts Weights Averaging after Adam, the "dense" leaves as 8 (or 16) stacked experts; share rate
# (N - 1) / N = 7/8 makes the kernel's 8 experts equal after every real step.
TRANSFORMS["experts_weights_averaging"] = (
    lambda **kw: optax.chain(optax.adam(1e-2), schemes.experts_weights_averaging(**kw)),
    {"share_rate": 7 / 8, "mask": lambda p: {"dense": jax.tree.map(lambda _: True, p["dense"]),
                                             "head": jax.tree.map(lambda _: False, p["head"])}}, None, None)
SPARSE = ("static_sparse", "gmp", "rigl", "set_sparse", "granet")


def _make(name):
  factory, kwargs, _, _ = TRANSFORMS[name]
  return factory(**kwargs)


def _run(tx, params, steps=5, **extra):
  state = tx.init(params)
  for s in range(steps):
    updates, state = tx.update(_grads(params, s), state, params, **extra)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize("name", TRANSFORMS)
def test_extra_kwargs_accepted(name):
  tx = _make(name)
  a, _ = _run(tx, _params())
  b, _ = _run(tx, _params(), unused_extra=jnp.ones(3), another="x")
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_no_recompilation_on_second_call(name):
  tx = _make(name)
  traces = {"n": 0}

  @jax.jit
  def step(g, state, params):
    traces["n"] += 1
    return tx.update(g, state, params)

  params = _params()
  state = tx.init(params)
  for s in range(4):  # crosses a topology step (update_every=2) and regular ones
    updates, state = step(_grads(params, s), state, params)
    params = optax.apply_updates(params, updates)
  assert traces["n"] == 1


@pytest.mark.parametrize("name", TRANSFORMS)
def test_inside_chain_and_multisteps(name):
  params = _params()
  chained = optax.chain(optax.clip_by_global_norm(1.0), _make(name))
  p, _ = _run(chained, params)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(p))
  multi = optax.MultiSteps(_make(name), every_k_schedule=2)
  p2, state = _run(multi, params, steps=4)
  assert int(state.gradient_step) == 2
  # Inactive entries stay exactly zero through both wrappers (the transform's masks hold).
  if name in SPARSE:
    for pp, st in ((p, _run(chained, params)[1]), (p2, state)):
      masks = optax.tree_utils.tree_get(st, "masks")
      for x, m in zip(jax.tree.leaves(pp), jax.tree.leaves(masks)):
        if m.ndim:
          np.testing.assert_array_equal(np.asarray(x)[~np.asarray(m)], 0.0)
    return
  if name == "freeze_spatial":  # the frozen sub-tree is bit-identical through both wrappers, the rest trains
    for pp in (p, p2):
      np.testing.assert_array_equal(pp["head"]["kernel"], params["head"]["kernel"])
      assert not np.array_equal(pp["dense"]["kernel_mu"], params["dense"]["kernel_mu"])
    return
  if name == "experts_weights_averaging":  # every real step leaves the 8 kernel experts equal
    for pp in (p, p2):
      k = np.asarray(pp["dense"]["kernel_mu"])
      np.testing.assert_allclose(k, np.broadcast_to(k.mean(0), k.shape), atol=1e-6)
      assert not np.array_equal(k, params["dense"]["kernel_mu"])
    return
  for pp in (p, p2):
    inactive = params["dense"]["kernel_rho"] == 0
    still_inactive = pp["dense"]["kernel_rho"] == 0
    assert int(still_inactive.sum()) == int(inactive.sum())  # density conserved
    np.testing.assert_array_equal(np.asarray(pp["dense"]["kernel_mu"])[np.asarray(still_inactive)], 0.0)


@pytest.mark.parametrize("name", [n for n, v in TRANSFORMS.items() if v[3]])
def test_inject_hyperparams(name):
  factory, _, (kwargs, static), hyper = TRANSFORMS[name]
  tx = optax.inject_hyperparams(factory, static_args=static)(**kwargs)
  params = _params()
  state = tx.init(params)
  assert float(state.hyperparams[hyper]) == pytest.approx(kwargs[hyper])
  state.hyperparams[hyper] = jnp.asarray(0.0)
  g = _grads(params, 0)
  updates, state = tx.update(g, state, params)
  # A zero learning rate on a regular step (iteration 1) changes nothing.
  for u in jax.tree.leaves(updates):
    np.testing.assert_array_equal(u, 0.0)


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtypes_kept(name, dtype):
  tx = _make(name)
  params = _params(dtype)
  state0 = tx.init(params)
  p, state = _run(tx, params, steps=3)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(p)):
    assert a.dtype == b.dtype
  for a, b in zip(jax.tree.leaves(state0), jax.tree.leaves(state)):
    assert a.dtype == b.dtype


_SHARDING = """
import jax, jax.numpy as jnp, numpy as np, optax, sys
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
sys.path.insert(0, sys.argv[1])
import test_optax_contract as t
assert jax.device_count() == 8
mesh = Mesh(np.array(jax.devices()), ("data",))
for name in t.TRANSFORMS:
  tx = t._make(name)
  params = t._params()
  spec = lambda x: NamedSharding(mesh, P("data") if x.ndim and x.shape[0] % 8 == 0 else P())
  params = jax.tree.map(lambda x: jax.device_put(x, spec(x)), params)
  state = jax.tree.map(lambda x: jax.device_put(x, spec(x)), tx.init(params))
  before = [x.sharding for x in jax.tree.leaves(state)]
  step = jax.jit(tx.update)
  for s in range(4):
    updates, state = step(t._grads(params, s), state, params)
    params = optax.apply_updates(params, updates)
  after = [x.sharding for x in jax.tree.leaves(state)]
  assert all(a.is_equivalent_to(b, x.ndim) for a, b, x in zip(before, after, jax.tree.leaves(state))), name
  assert any(not s.is_fully_replicated for s in after), name
print("ok")
"""


@pytest.mark.slow
def test_state_sharding_kept_on_eight_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _SHARDING, str(pathlib.Path(__file__).parent)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_every_transform_is_listed():
  found = []
  for fam in FAMILIES:
    mod = importlib.import_module(fam)
    for name in mod.__all__:
      obj = getattr(mod, name)
      if inspect.isfunction(obj) and "GradientTransformation" in str(inspect.signature(obj).return_annotation):
        found.append(name)
  assert sorted(found) == sorted(TRANSFORMS), f"jaxdyn transforms {found}; contract covers {sorted(TRANSFORMS)}"
