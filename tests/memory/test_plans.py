"""MEMO-style keep / offload / recompute plans (`jaxdyn.memory._plans`) and the Transformer's remat hooks."""

import functools
import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import memory
from jaxdyn.memory import _plans
from jaxdyn.models import Transformer, causal_attention

REPO = pathlib.Path(__file__).resolve().parents[2]
SMALL = dict(dim=32, depth=4, num_heads=2, mlp_ratio=2)
T = 64
_FLASH = memory.flash_causal_attention(16)


@functools.cache
def _model(**kw):
  return Transformer(**{**SMALL, "attention_fns": _FLASH, **kw}, rngs=nnx.Rngs(0))


def _profile(seq_len=T, seq_shards=1, batch=1):
  # A made-up profile (bytes per token): the planner's arithmetic, without compiling.
  return memory.StepProfile(plain_layer=5000.0, remat_layer=200.0, plain_base=3000.0, remat_base=3500.0,
                            seq_len=seq_len, batch=batch, seq_shards=seq_shards)


def _batch(seq_len=T, batch=2, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, 256, (batch, seq_len + 1)).astype(np.int32)
  return jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])


def _grads(model, remat, tokens, targets):
  graphdef, state = nnx.split(model)

  def loss_fn(s):
    lp = jax.nn.log_softmax(nnx.merge(graphdef, s)(tokens, remat=remat))
    return -jnp.mean(jnp.take_along_axis(lp, targets[..., None], axis=-1))

  return jax.jit(jax.value_and_grad(loss_fn))(state)


# --- sizes and the planner's arithmetic -----------------------------------------------------------

def test_activation_bytes_follow_the_shapes():
  sizes = memory.activation_bytes(_model(), batch=3)
  d, f = 32 * 4 * 3, 64 * 4 * 3  # dim and mlp hidden (ratio 2), float32, batch 3
  assert sizes == dict(attn_in=d, q=d, k=d, v=d, attn_out=d, resid_mid=d, mlp_in=d, mlp_up=2 * f, mlp_hidden=f)
  gelu = memory.activation_bytes(_model(mlp="gelu"))
  assert gelu["mlp_up"] == gelu["mlp_hidden"] == 256


def test_unlimited_budget_is_the_plain_step_and_trains_identically():
  model = _model()
  plan = memory.plan_memory(model, seq_len=T, device_budget=math.inf, profile=_profile())
  assert plan.is_plain and plan.remat == (None,) * 4 and plan.host_bytes == 0
  per_layer = sum(memory.activation_bytes(model).values()) * T
  assert all(lp.kept_bytes == per_layer for lp in plan.layers)
  assert plan.predicted_peak_bytes == round(T * (3000.0 + 4 * 5000.0))
  graphdef, state = nnx.split(model)
  tokens, targets = _batch()
  a = jax.jit(_plans.lm_train_step(graphdef))(state, tokens, targets)
  b = jax.jit(_plans.lm_train_step(graphdef, remat=plan.remat))(state, tokens, targets)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_budget_lowers_layers_round_robin_and_prediction_is_the_formula():
  model = _model()
  sizes = memory.activation_bytes(model)
  names = sum(sizes.values())
  assert names == 7 * 128 + 512 + 256  # bytes per token of one block's names
  plain_peak = T * (3000 + 4 * 5000)
  # Layer 0 checkpointed keeping everything: base max(3000, 3500 + 0) + 3 plain + (200 + names).
  one = T * (3500 + 3 * 5000 + 200 + names)
  plan = memory.plan_memory(model, seq_len=T, device_budget=one, profile=_profile())
  assert [lp.checkpointed for lp in plan.layers] == [True, False, False, False]
  assert plan.layers[0].keep == memory.ACTIVATION_NAMES and plan.predicted_peak_bytes == one < plain_peak
  # Every layer dropping everything: base 3500 + names (one layer's recompute), 4 x 200 saved.
  floor = T * (3500 + names + 4 * 200)
  plan = memory.plan_memory(model, seq_len=T, device_budget=floor, profile=_profile())
  assert all(lp.checkpointed and lp.keep == () and lp.recomputed_bytes == names * T for lp in plan.layers)
  assert plan.predicted_peak_bytes == floor
  with pytest.raises(ValueError, match=f"device_budget: must be at least {floor} bytes"):
    memory.plan_memory(model, seq_len=T, device_budget=floor - 1, profile=_profile())


def test_offload_fraction_is_memos_alpha():
  model = _model()
  sizes = memory.activation_bytes(model)
  td = T // 2  # tokens per device over 2 sequence shards
  dropped = sum(sizes.values()) * td  # every name dropped in every layer at the tightest level
  floor = td * (3500 + sum(sizes.values()) + 4 * 200)
  host = 0.3 * 4 * dropped  # alpha = M_host / sum_l S_l = 0.3 when every name of every layer is dropped
  plan = memory.plan_memory(model, seq_len=T, device_budget=floor - 1, profile=_profile(seq_shards=2), seq_shards=2,
                            host_budget=host)
  lp = plan.layers[0]
  dropped_all = sum((lp.offloaded_bytes + lp.recomputed_bytes) for lp in plan.layers)
  alpha = min(1.0, host / dropped_all)
  assert 0 < alpha < 1 and lp.chunks == 2
  assert lp.head == math.floor(alpha * 32) and lp.offload_fraction == lp.head / 32 and lp.tokens_per_chunk == 32
  assert lp.token_split == (lp.offload, 2, lp.head)
  assert lp.offloaded_bytes == sum(sizes[n] for n in lp.offload) * lp.head  # per device
  assert plan.host_bytes == sum(p.offloaded_bytes for p in plan.layers) <= host
  assert plan.predicted_resident_bytes - plan.predicted_peak_bytes == plan.host_bytes
  # The overlap bound: alpha <= T_fwd B / S with T_fwd = FLOPs / device_flops.
  d, f, up = 32, 64, 128
  flops = 2 * td * (4 * d * d + (up + f) * d) + 4 * td * T * d
  bounded = memory.plan_memory(model, seq_len=T, device_budget=floor - 1, profile=_profile(seq_shards=2),
                               seq_shards=2, host_budget=math.inf, device_flops=flops, host_bandwidth=0.5 * dropped)
  s_max = max(lp.offloaded_bytes + lp.recomputed_bytes for lp in bounded.layers)
  assert bounded.layers[0].head == math.floor(min(1.0, 0.5 * dropped / s_max) * 32) < 32


def test_table_has_a_row_per_layer_with_bytes():
  model = _model()
  names = sum(memory.activation_bytes(model).values())
  plan = memory.plan_memory(model, seq_len=T, device_budget=T * (3500 + 3 * 5000 + 200 + names), profile=_profile())
  table = plan.table()
  rows = [r for r in table.splitlines() if r.startswith("| ") and r[2].isdigit()]
  assert len(rows) == 4 and rows[0].startswith("| 0 | checkpoint") and rows[1].startswith("| 1 | plain")
  assert f"| {names * T / 2**20:.2f} | 0.00 | 0.00 |" in rows[0] and plan.to_markdown() == table


# --- values and gradients ---------------------------------------------------------------------------

def test_flash_attention_equals_causal_attention_and_its_gradient():
  k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
  q, k, v = (jax.random.normal(kk, (2, 48, 2, 8)) for kk in (k1, k2, k3))
  p = jnp.arange(48)
  flash = memory.flash_causal_attention(16)
  f = lambda fn: jax.jit(jax.value_and_grad(
      lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v, q_positions=p, k_positions=p))), (0, 1, 2)))
  (a0, ga), (b0, gb) = f(flash)(q, k, v), f(causal_attention)(q, k, v)
  np.testing.assert_allclose(a0, b0, rtol=1e-5)
  for a, b in zip(ga, gb):
    np.testing.assert_allclose(a, b, atol=5e-6)
  # An empty slot (position -1) gets no weight; a query with no key gets zeros.
  kp = p.at[:16].set(-1)
  out = jax.jit(lambda q, k, v: flash(q, k, v, q_positions=p, k_positions=kp))(q, k, v)
  np.testing.assert_allclose(out, causal_attention(q, k, v, q_positions=p, k_positions=kp), atol=2e-6)
  assert np.all(np.asarray(out[:, :16]) == 0)


def test_gradient_with_any_plan_equals_the_plain_gradient():
  model = _model()
  tokens, targets = _batch()
  loss0, g0 = _grads(model, None, tokens, targets)
  prof = _profile(seq_shards=2)
  names = sum(memory.activation_bytes(model).values())
  td = T // 2
  floor = td * (3500 + names + 4 * 200)
  plans = [memory.plan_memory(model, seq_len=T, device_budget=b, profile=prof, seq_shards=2, host_budget=h)
           for b, h in ((td * 15000, 0.0), (floor - 1, 0.3 * 4 * names * td), (floor - 1, math.inf))]
  assert any(not lp.checkpointed for lp in plans[0].layers) and any(lp.checkpointed for lp in plans[0].layers)
  splits = [lp.token_split for p in plans for lp in p.layers]
  assert any(s is not None for s in splits)  # a token-wise split is among them
  assert any(lp.offload and lp.head == lp.tokens_per_chunk for lp in plans[-1].layers)  # whole offload too
  for plan in plans:
    loss, g = _grads(model, plan.remat, tokens, targets)
    np.testing.assert_allclose(loss, loss0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g0)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_checkpoint_names_do_not_change_the_model():
  model = _model(attention_fns=None)
  tokens, _ = _batch()
  everything = [jax.checkpoint_policies.save_only_these_names(*memory.ACTIVATION_NAMES)] * 4
  np.testing.assert_array_equal(jax.jit(lambda t: model(t))(tokens),
                                jax.jit(lambda t: model(t, remat=[None] * 4))(tokens))
  np.testing.assert_allclose(jax.jit(lambda t: model(t, remat=everything))(tokens), jax.jit(lambda t: model(t))(tokens),
                             atol=1e-6)


_NO_FLAG = """
import json, math
from flax import nnx
from jaxdyn import memory
from jaxdyn.models import Transformer
model = Transformer(**{SMALL!r}, attention_fns=memory.flash_causal_attention(16), depth=3, rngs=nnx.Rngs(0))
plain = memory.step_memory(model, seq_len={T})["temp"]
plan = memory.MemoryPlan((memory.LayerPlan(True),) * 3, {T}, 1, 1, math.inf, 0.0, 0, 0, 0)
print(json.dumps({{"plain": plain, "planned": memory.step_memory(model, seq_len={T}, plan=plan)["temp"]}}))
"""


def test_on_cpu_without_the_flag_checkpointing_saves_nothing():
  # XLA:CPU's cse_barrier_expander + CSE merge the recomputation into the forward pass. Run in a
  # process of its own on XLA:CPU with XLA_FLAGS that lack CPU_REMAT_XLA_FLAG, whatever this one has.
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_cpu_multi_thread_eigen=false")
  small = {k: v for k, v in SMALL.items() if k != "depth"}
  code = _NO_FLAG.format(SMALL=small, T=T)
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  m = json.loads(out.stdout.strip().splitlines()[-1])
  # Measured 2026-12-01: 821,088 against 869,216 bytes (5.5%); the same process with the flag: 473,504
  # against 794,464 (40%), which this assertion rejects.
  assert 0.9 * m["plain"] < m["planned"] <= m["plain"]


# --- predicted peak against memory_analysis on 8 forced CPU devices ---------------------------------

_RUN = """
import json, math, jax
from flax import nnx
from jaxdyn import memory
from jaxdyn.models import Transformer
t, n = 1024, 8
model = Transformer(dim=32, depth=4, num_heads=2, mlp_ratio=2, attention_fns=memory.flash_causal_attention(64),
                    rngs=nnx.Rngs(0))
prof = memory.profile_step(model, seq_len=t, seq_shards=n)
plain = memory.plan_memory(model, seq_len=t, device_budget=math.inf, profile=prof, seq_shards=n).predicted_peak_bytes
rows = []
for frac, host in ((1.0, 0.0), (0.5, 0.0), (0.5, 3e4)):
  plan = memory.plan_memory(model, seq_len=t, device_budget=frac * plain, profile=prof, seq_shards=n, host_budget=host)
  m = memory.step_memory(model, seq_len=t, seq_shards=n, plan=plan)
  rows.append({"frac": frac, "host": host, "predicted": plan.predicted_resident_bytes,
               "predicted_device": plan.predicted_peak_bytes, "measured": m["temp"], "host_temp": m["host_temp"],
               "levels": [len(lp.keep) if lp.checkpointed else -1 for lp in plan.layers],
               "alpha": [lp.offload_fraction for lp in plan.layers]})
  print(plan.table())
print(json.dumps({"devices": jax.device_count(), "rows": rows}))
"""


def test_predicted_peak_matches_memory_analysis_on_8_devices():
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count=8 {_plans.CPU_REMAT_XLA_FLAG}")
  out = subprocess.run([sys.executable, "-c", _RUN], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  info = json.loads(out.stdout.strip().splitlines()[-1])
  assert info["devices"] == 8
  rows = info["rows"]
  assert rows[0]["levels"] == [-1] * 4  # the plain step
  assert any(0 <= lv < 9 for lv in rows[1]["levels"])  # names dropped
  assert 0 < rows[2]["alpha"][0] < 1  # a token-wise split
  for r in rows:
    assert abs(r["predicted"] / r["measured"] - 1) < 0.15, r
    assert r["host_temp"] == 0  # CPU: offload is a no-op, offloaded bytes stay in temp
  assert rows[1]["measured"] < 0.6 * rows[0]["measured"]  # remat takes effect under the flag
  # On CPU the offloaded bytes are resident: the device-side prediction is below the measurement.
  assert rows[2]["predicted_device"] < rows[2]["predicted"]
