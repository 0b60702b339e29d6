"""Input-policy declarations for the plans part of `jaxdyn.memory` (merged by ``memory.py``).

``jaxdyn/memory/_plans.py``: the planner's arithmetic runs on a made-up `StepProfile`; `profile_step`
and `step_memory` compile a 2-block, dim-8 model's step at 16 tokens (the persistent compilation cache
turns the repeats into cache hits).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, collector, fn, nonpositive

M = "jaxdyn.memory"
CASES: list[Case] = []
SPECS: list[Spec] = []
EXEMPT: dict[str, str] = {
    f"{M}.LayerPlan": "a frozen record of one block's plan that plan_memory builds; nothing to validate",
    f"{M}.MemoryPlan": "a frozen record that plan_memory builds (step_memory checks that it matches the model)",
    f"{M}.StepProfile": "a frozen record of measured bytes per token that profile_step builds",
}
case = collector(CASES)

_T = 16
_RNG = np.random.default_rng(0)
Q, K, V = (_RNG.normal(size=(2, _T, 2, 4)).astype(np.float32) for _ in range(3))
POS = np.arange(_T, dtype=np.int32)
not_a_model = st.sampled_from([None, 3, "transformer", (1, 2)])
bad_int = st.one_of(bad_count, st.just(2.0))


def _model():
  from jaxdyn.models import Transformer  # pylint: disable=g-import-not-at-top
  return Transformer(dim=8, depth=2, num_heads=2, mlp_ratio=2, attention_fns=fn(f"{M}.flash_causal_attention")(8),
                     rngs=nnx.Rngs(0))


_MODEL = _model()
_GRAPHDEF, _STATE = nnx.split(_MODEL)
_TOKENS = jnp.asarray(_RNG.integers(0, 256, (1, _T)), jnp.int32)


def _profile(seq_shards=1, batch=1):
  return fn(f"{M}.StepProfile")(plain_layer=5000.0, remat_layer=200.0, plain_base=3000.0, remat_base=3500.0,
                                seq_len=_T, batch=batch, seq_shards=seq_shards)


# --- flash_causal_attention -------------------------------------------------------------------------

FA = f"{M}.flash_causal_attention"


def _flash(block, q, k, v):
  return fn(FA)(block)(q, k, v, q_positions=POS, k_positions=POS)


case(FA, "block", bad_int)(lambda v: fn(FA)(v))
case(FA, "k", st.sampled_from([3, 5, 7]))(lambda n: _flash(8, Q, K[:, :n], V[:, :n]))  # not a multiple of block
case(FA, "q", st.sampled_from([(2, _T, 8), (_T, 2, 4, 1, 1), (_T,), ()]))(
    lambda s: _flash(8, np.ones(s, np.float32), K, V))
SPECS.append(Spec(FA, dict(block=8, q=Q, k=K, v=V), call=_flash, floats=("q", "k", "v"), jit=True,
                  batch=("q", "k", "v"), empty=lambda out: np.shape(out) == (0, _T, 2, 4), numbers=("block",)))

# --- activation_bytes ------------------------------------------------------------------------------

AB = f"{M}.activation_bytes"
case(AB, "model", not_a_model)(lambda v: fn(AB)(v))
case(AB, "batch", bad_int)(lambda v: fn(AB)(_MODEL, batch=v))
SPECS.append(Spec(AB, dict(model=_MODEL, batch=2), call=lambda model, batch: np.asarray(
    list(fn(AB)(model, batch=batch).values()), np.float64), numbers=("batch",),
                  ranges={"batch": st.integers(1, 10**6)}))

# --- plan_memory -----------------------------------------------------------------------------------

PM = f"{M}.plan_memory"
_PM = dict(model=_MODEL, seq_len=_T, device_budget=math.inf, profile=_profile(), batch=1, seq_shards=1,
           host_budget=0.0, host_bandwidth=None, device_flops=None)


def _plan(**kw):
  p = fn(PM)(**{**_PM, **kw})
  return np.asarray([p.predicted_peak_bytes, p.predicted_resident_bytes, p.host_bytes], np.float64)


case(PM, "model", not_a_model)(lambda v: _plan(model=v))
case(PM, "seq_len", bad_int)(lambda v: _plan(seq_len=v))
case(PM, "seq_len", st.sampled_from([3, 5, 7]))(lambda v: _plan(seq_len=v, seq_shards=2, profile=_profile(2)))
case(PM, "device_budget", nonpositive)(lambda v: _plan(device_budget=v))
case(PM, "device_budget", st.floats(1.0, 6e4))(lambda v: _plan(device_budget=v))  # below the floor
case(PM, "profile", st.sampled_from([None, 3, "profile", (1.0, 2.0)]))(lambda v: _plan(profile=v))
case(PM, "profile", st.integers(2, 9))(lambda b: _plan(profile=_profile(batch=b)))  # measured at another batch
case(PM, "batch", bad_int)(lambda v: _plan(batch=v))
case(PM, "seq_shards", bad_int)(lambda v: _plan(seq_shards=v))
case(PM, "host_budget", st.one_of(st.floats(max_value=-1e-6), st.just(math.nan)))(lambda v: _plan(host_budget=v))
case(PM, "host_bandwidth", nonpositive)(lambda v: _plan(host_bandwidth=v))
case(PM, "device_flops", nonpositive)(lambda v: _plan(device_flops=v))
SPECS += [
    Spec(PM, dict(seq_len=_T, device_budget=300000.0, batch=1, seq_shards=1, host_budget=0.0), call=_plan,
         numbers=("seq_len", "device_budget", "batch", "seq_shards", "host_budget"),
         ranges={"device_budget": st.floats(1.0, 1e30), "host_budget": st.floats(0.0, 1e30)},
         not_applicable={"model": "a Transformer; anything else is a Case",
                         "profile": "a StepProfile record; a wrong type or batch is a Case"}),
    Spec(PM, dict(device_budget=75000.0, host_budget=1e4, host_bandwidth=1e9, device_flops=1e12), call=_plan,
         numbers=("host_bandwidth", "device_flops"),
         ranges={"host_bandwidth": st.floats(1e-3, 1e30), "device_flops": st.floats(1e-3, 1e30)}),
]

# --- lm_train_step ---------------------------------------------------------------------------------

LT = f"{M}.lm_train_step"


def _step(learning_rate=0.1, remat=None):
  state, loss = fn(LT)(_GRAPHDEF, remat=remat, learning_rate=learning_rate)(_STATE, _TOKENS, _TOKENS)
  return loss


case(LT, "learning_rate", nonpositive)(lambda v: fn(LT)(_GRAPHDEF, learning_rate=v))
case(LT, "remat", st.sampled_from([3, "abc", (None,), (None,) * 5]))(lambda v: _step(remat=v))
SPECS.append(Spec(LT, dict(learning_rate=0.1), call=lambda learning_rate: _step(learning_rate),
                  numbers=("learning_rate",),
                  not_applicable={"graphdef": "an nnx graphdef of the model, used as is by nnx.merge"}))

# --- profile_step and step_memory (compile) ---------------------------------------------------------

PS, SM = f"{M}.profile_step", f"{M}.step_memory"


def _profiled(seq_len=_T, batch=1, seq_shards=1):
  p = fn(PS)(_MODEL, seq_len=seq_len, batch=batch, seq_shards=seq_shards)
  return np.asarray([p.plain_layer, p.remat_layer, p.plain_base, p.remat_base], np.float64)


def _memory(seq_len=_T, batch=1, seq_shards=1, plan=None):
  return np.asarray(list(fn(SM)(_MODEL, seq_len=seq_len, batch=batch, seq_shards=seq_shards, plan=plan).values()),
                    np.float64)


for f, call in ((PS, _profiled), (SM, _memory)):
  case(f, "model", not_a_model)(lambda v, f=f: fn(f)(v, seq_len=_T))
  case(f, "seq_len", bad_int)(lambda v, call=call: call(seq_len=v))
  case(f, "batch", bad_int)(lambda v, call=call: call(batch=v))
  case(f, "seq_shards", bad_int)(lambda v, call=call: call(seq_shards=v))
  case(f, "seq_shards", st.integers(10**3, 10**4))(lambda v, call=call: call(seq_len=v, seq_shards=v))  # > devices
  SPECS.append(Spec(f, dict(seq_len=_T, batch=1, seq_shards=1), call=call, numbers=("batch", "seq_shards"),
                    not_applicable={"model": "a Transformer; anything else is a Case",
                                    "seq_len": "an int (a Case); its value sets the compiled shapes"}))
case(SM, "plan", st.sampled_from([3, "plan", (None, None)]))(lambda v: _memory(plan=v))
case(SM, "plan", st.sampled_from([fn(PM)(_MODEL, seq_len=n * _T, device_budget=math.inf, profile=_profile())
                                   for n in (2, 3, 4)]))(lambda v: _memory(plan=v))  # planned for another length
SPECS.append(Spec(SM, dict(plan=fn(PM)(_MODEL, seq_len=_T, device_budget=math.inf, profile=_profile())),
                  call=lambda plan: _memory(plan=plan),
                  not_applicable={"plan": "a MemoryPlan or None; anything else, or another step's plan, is a Case"}))
