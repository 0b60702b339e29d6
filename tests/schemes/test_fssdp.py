"""Hecate FSSDP, plain FSDP and expert parallelism of a routed MoE layer against the unsharded layer.

The 8-device checks run in ONE subprocess with 8 forced CPU devices (this process's JAX already has
one device), which prints JSON; the tests below read it. Routing is designed: the router is ``3 I``
plus a little noise and token ``t`` is ``2 e_{k(t)}`` plus noise, so token ``t`` goes to expert
``k(t)`` (asserted in the subprocess), which fixes the loads and the overflow by hand.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxdyn import schemes

REPO = pathlib.Path(__file__).resolve().parents[2]
E, D, H, N = 8, 16, 32, 8  # experts, token width, hidden width, tokens per device (8 devices)

# Expert of each token, device by device (rows: the 8 devices, N tokens each).
BALANCED = [[j if t < 4 else (j + 1) % 8 for t in range(N)] for j in range(8)]  # every expert: 8 tokens
IMBALANCED = [[0 if t < 6 else j for t in range(N)] for j in range(8)]  # expert 0: 50 tokens; 1..7: 2 each
# Hand-made overflow: device 0 uses experts 0,0,0,1,1,2,3,3; devices 1..7 send all tokens to expert j.
OVERFLOW = [[0, 0, 0, 1, 1, 2, 3, 3]] + [[j] * N for j in range(1, 8)]

_RUN = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxdyn import schemes

E, D, H, N = %(dims)s
loads = json.loads(sys.argv[1])
mesh = Mesh(np.array(jax.devices()), ("data",))
assert len(jax.devices()) == 8
base = schemes.init_moe_params(jax.random.key(0), D, H, E)
base["router"] = 3.0 * jnp.eye(D, E) + 0.1 * base["router"]
base["b1"] = 0.1 * jax.random.normal(jax.random.key(5), base["b1"].shape)
base["b2"] = 0.1 * jax.random.normal(jax.random.key(6), base["b2"].shape)
target = jax.random.normal(jax.random.key(2), (8 * N, D))


def tokens(experts, seed):
  k = np.asarray(experts).reshape(-1)
  return 2.0 * jax.nn.one_hot(k, D) + 0.3 * jax.random.normal(jax.random.key(seed), (k.size, D))


def place(p, scheme):
  specs = schemes.moe_param_specs(scheme)
  return {k: jax.device_put(v, NamedSharding(mesh, specs[k])) for k, v in p.items()}


def ref_loss(p, x, keep):  # keep: which tokens the scheme serves (1) or drops (0)
  return jnp.mean((keep[:, None] * schemes.moe_reference(p, x) - target) ** 2)


ref = jax.jit(jax.value_and_grad(ref_loss, argnums=(0, 1)))
SCHEMES = {"fsdp": (schemes.moe_fsdp, {}), "fssdp": (schemes.moe_fssdp, {"capacity": 2}),
           "ep": (schemes.moe_expert_parallel, {"capacity": N}),
           "ep_cap2": (schemes.moe_expert_parallel, {"capacity": 2})}


def sharded(name):
  fn, kw = SCHEMES[name]

  def loss(p, x):
    y, overflow = fn(p, x, mesh=mesh, **kw)
    return jnp.mean((y - target) ** 2), (y, overflow)
  return loss


steps = {name: jax.jit(jax.value_and_grad(sharded(name), argnums=(0, 1), has_aux=True)) for name in SCHEMES}
out = {}
for case, seed in (("balanced", 1), ("imbalanced", 3), ("overflow", 4)):
  x = tokens(loads[case], seed)
  routed = np.asarray(jnp.argmax(x @ base["router"], axis=-1))
  assert routed.tolist() == np.asarray(loads[case]).reshape(-1).tolist(), (case, routed)
  names = ("fsdp", "fssdp", "ep") if case != "overflow" else ("fssdp", "ep_cap2")
  for name in names:
    (loss, (y, overflow)), (gp, gx) = steps[name](place(base, name.split("_")[0]), x)
    dropped = np.all(np.asarray(y) == 0.0, axis=1)  # rows exactly zero: the overflowing tokens
    (rloss, (rp, rx)) = ref(base, x, jnp.asarray(~dropped, jnp.float32))
    err = {k: float(jnp.max(jnp.abs(gp[k] - rp[k]))) for k in gp}
    err["x"] = float(jnp.max(jnp.abs(gx - rx)))
    err["loss"] = abs(float(loss) - float(rloss))
    y_ref = schemes.moe_reference(base, x)
    err["y_kept"] = float(jnp.max(jnp.abs(jnp.where(dropped[:, None], 0.0, y - y_ref))))
    out[f"{case}/{name}"] = {"err": err, "overflow": np.asarray(overflow).tolist(),
                             "dropped": np.flatnonzero(dropped).tolist(),
                             "grad_scale": float(max(jnp.max(jnp.abs(v)) for v in gp.values()))}
  if case == "imbalanced":
    for name in ("fsdp", "fssdp", "ep"):
      step = jax.value_and_grad(sharded(name), argnums=(0, 1), has_aux=True)
      out[f"bytes/{name}"] = schemes.collective_bytes(step, place(base, name), x)

# The counter on a known program (per device: f32 operands).
def known(a, b, c, dvec, e):
  def body(a, b, c, dvec, e):
    g = jax.lax.all_gather(a, "data")  # (4,) f32: 16 B to 7 devices = 112
    t = jax.lax.all_to_all(b, "data", 0, 0, tiled=True)  # (8, 3): 96 B * 7/8 = 84
    s = jax.lax.psum_scatter(c, "data", tiled=True)  # (8,): 32 B * 7/8 = 28
    r = jax.lax.psum(dvec, "data")  # (5,): 2 * 20 B * 7/8 = 35
    perm = [(i, (i + 1) %% 8) for i in range(8)]
    q, _ = jax.lax.scan(lambda q, _: (jax.lax.ppermute(q, "data", perm), None), e, None, length=3)  # 3 * 8 B
    return (g.sum() + t.sum() + s.sum() + r.sum() + q.sum())[None]
  f = jax.shard_map(body, mesh=mesh, in_specs=(P("data"), P("data"), P("data"), P(), P("data")), out_specs=P("data"))
  return f(a, b, c, dvec, e)

out["bytes/known"] = schemes.collective_bytes(
    known, jnp.ones(32), jnp.ones((64, 3)), jnp.ones(64), jnp.ones(5), jnp.ones(16))
print(json.dumps(out))
""" % {"dims": (E, D, H, N)}


@pytest.fixture(scope="module")
def eight():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  loads = json.dumps({"balanced": BALANCED, "imbalanced": IMBALANCED, "overflow": OVERFLOW})
  out = subprocess.run([sys.executable, "-c", _RUN, loads], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-4000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["balanced", "imbalanced"])
@pytest.mark.parametrize("scheme", ["fsdp", "fssdp", "ep"])
def test_loss_and_gradients_equal_the_unsharded_moe(eight, case, scheme):
  r = eight[f"{case}/{scheme}"]
  assert r["overflow"] == [0] * 8 and r["dropped"] == []
  assert r["grad_scale"] > 1e-3  # the gradients compared are not all zero
  for name, err in r["err"].items():  # loss, y, the router's, the experts' and the tokens' gradients
    assert err <= 1e-5, (name, err)


def test_overflow_is_counted_exactly_and_the_dropped_tokens_give_zero(eight):
  # FSSDP, C = 2: device 0's experts by load are 0 (3 tokens), then 1 and 3 (2 each; the tie goes to 1);
  # expert 2's token (5) and expert 3's (6, 7) overflow. Devices 1..7 use one expert each: none.
  fssdp = eight["overflow/fssdp"]
  assert fssdp["overflow"] == [3, 0, 0, 0, 0, 0, 0, 0]
  assert fssdp["dropped"] == [5, 6, 7]
  # EP, 2 slots per expert per device: device 0's third token of expert 0 (token 2) overflows; devices
  # 1..7 send 8 tokens to one expert, so their tokens 2..7 overflow.
  ep = eight["overflow/ep_cap2"]
  assert ep["overflow"] == [1] + [6] * 7
  assert ep["dropped"] == [2] + [8 * j + t for j in range(1, 8) for t in range(2, 8)]
  # The tokens served match the reference, and the gradients are those of the reference with the
  # dropped tokens' outputs set to zero (a dropped token contributes no gradient).
  for r in (fssdp, ep):
    for name, err in r["err"].items():
      assert err <= 1e-5, (name, err)


def test_byte_counter_on_a_known_program(eight):
  assert eight["bytes/known"] == {"all_gather": 112, "all_to_all": 84, "reduce_scatter": 28, "psum": 35,
                                  "ppermute": 24, "total": 283}


def test_bytes_per_step_follow_the_docstring_formulas(eight):
  n_dev, p = 8, 2 * D * H + H + D
  frac = (n_dev - 1) / n_dev
  router = 2 * frac * D * E * 4  # the replicated router's gradient, all-reduced
  fsdp, fssdp, ep = (eight[f"bytes/{s}"] for s in ("fsdp", "fssdp", "ep"))
  assert fsdp["all_gather"] == round(frac * E * p * 4) and fsdp["reduce_scatter"] == round(frac * E * p * 4)
  assert fssdp["all_to_all"] == round(2 * frac * 2 * p * 4)  # C = 2 experts, forward and backward
  assert fssdp["all_gather"] == (n_dev - 1) * 2 * 4  # the id lists
  assert ep["all_to_all"] == round(4 * frac * E * N * D * 4)  # tokens there and back, twice
  for b in (fsdp, fssdp, ep):
    assert b["psum"] == round(router)
    assert b["total"] == sum(v for k, v in b.items() if k != "total")
  assert fssdp["total"] < 0.3 * fsdp["total"]  # C / E = 1/4 of the expert traffic


# --- in-process checks (one device) -------------------------------------------------------------------

def _one_device():
  return Mesh(np.array(jax.devices()[:1]), ("data",))


def test_one_device_schemes_equal_the_reference_and_bytes_are_zero():
  p = schemes.init_moe_params(jax.random.key(0), 4, 8, 3)
  x = jax.random.normal(jax.random.key(1), (6, 4))
  ref = schemes.moe_reference(p, x)
  mesh = _one_device()
  for fn, kw in ((schemes.moe_fsdp, {}), (schemes.moe_fssdp, {"capacity": 3}),
                 (schemes.moe_expert_parallel, {"capacity": 6})):
    f = functools.partial(fn, mesh=mesh, **kw)
    y, overflow = jax.jit(f)(p, x)
    np.testing.assert_allclose(y, ref, atol=1e-6)
    assert overflow.tolist() == [0]
    assert schemes.collective_bytes(f, p, x)["total"] == 0


def test_reference_is_the_gated_top1_expert():
  p = schemes.init_moe_params(jax.random.key(0), 4, 8, 3)
  x = jax.random.normal(jax.random.key(1), (5, 4))
  probs = jax.nn.softmax(x @ p["router"])
  for t in range(5):
    e = int(jnp.argmax(probs[t]))
    ffn = jax.nn.gelu(x[t] @ p["w1"][e] + p["b1"][e]) @ p["w2"][e] + p["b2"][e]
    np.testing.assert_allclose(schemes.moe_reference(p, x)[t], probs[t, e] * ffn, rtol=1e-5, atol=1e-6)


def test_param_specs_and_validation():
  assert schemes.moe_param_specs("fssdp", "x")["w1"] == P(None, None, "x")
  assert schemes.moe_param_specs("ep")["b2"] == P("data", None)
  p = schemes.init_moe_params(jax.random.key(0), 4, 8, 3)
  mesh = _one_device()
  with pytest.raises(ValueError, match="capacity:"):
    schemes.moe_fssdp(p, jnp.ones((2, 4)), mesh=mesh, capacity=4)  # more than E = 3
  with pytest.raises(ValueError, match="capacity:"):
    schemes.moe_expert_parallel(p, jnp.ones((2, 4)), mesh=mesh, capacity=3)  # more than T / D = 2
  with pytest.raises(ValueError, match="axis:"):
    schemes.moe_fsdp(p, jnp.ones((2, 4)), mesh=mesh, axis="model")
  with pytest.raises(ValueError, match="params:"):
    schemes.moe_fsdp({**p, "b1": jnp.zeros((3, 7))}, jnp.ones((2, 4)), mesh=mesh)
  with pytest.raises(ValueError, match="x:"):
    schemes.moe_reference(p, jnp.ones((2, 5)))
