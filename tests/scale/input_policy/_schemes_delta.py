"""Input-policy declarations for the delta activation layer in `jaxdyn.schemes` (merged by ``schemes.py``).

Every function acts on ``(batch, time, ..., channels)`` activations; the numbers are checked in
``tests/schemes/test_delta.py``.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, collector, fn

SCH = "jaxdyn.schemes"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

ACTS = np.asarray(jax.nn.relu(jax.random.normal(jax.random.key(5), (4, 6, 3))))  # (batch, time, channels)
THETA = np.array([0.1, 0.25, 0.5], np.float32)
bad_nonneg = st.one_of(st.floats(max_value=-1e-6, allow_infinity=False), st.just(math.nan), st.booleans())
bad_positive = st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.just(math.nan), st.booleans())
not_a_bool = st.sampled_from([0, 1, "yes", None, 1.0])
low_rank = st.one_of(st.just(np.float32(1.0)), st.integers(0, 6).map(lambda n: np.ones((n,), np.float32)))  # < 2-D


def _layer(x, **kw):
  return fn(f"{SCH}.DeltaActivation")(**kw)(x)


for _f in ("delta_quantize", "delta_encode", "delta_decode", "temporal_sparsity_loss", "count_nonzero_deltas",
           "delta_sparsity"):
  _arg = {"delta_quantize": "x", "delta_decode": "deltas"}.get(_f, "q")
  _extra = (THETA[:1],) if _f == "delta_quantize" else ()
  case(f"{SCH}.{_f}", _arg, low_rank)(lambda v, _f=_f, _extra=_extra: fn(f"{SCH}.{_f}")(v, *_extra))

case(f"{SCH}.delta_quantize", "threshold", st.sampled_from([0.0, -0.5, math.nan]))(
    lambda v: fn(f"{SCH}.delta_quantize")(ACTS, np.array([0.1, v, 0.5], np.float32)))
case(f"{SCH}.delta_quantize", "threshold", st.integers(2, 8).filter(lambda n: n != 3))(  # wrong channel count
    lambda n: fn(f"{SCH}.delta_quantize")(ACTS, np.full((n,), 0.5, np.float32)))
case(f"{SCH}.temporal_sparsity_loss", "sp_rate", bad_nonneg)(
    lambda v: fn(f"{SCH}.temporal_sparsity_loss")(ACTS, sp_rate=v))
case(f"{SCH}.temporal_sparsity_loss", "fan_out", bad_nonneg)(
    lambda v: fn(f"{SCH}.temporal_sparsity_loss")(ACTS, fan_out=v))
case(f"{SCH}.temporal_sparsity_loss", "q", st.tuples(st.integers(1, 5), st.integers(0, 1)))(  # < 2 frames
    lambda bt: fn(f"{SCH}.temporal_sparsity_loss")(np.ones((*bt, 3), np.float32)))
for _f in ("count_nonzero_deltas", "delta_sparsity"):
  case(f"{SCH}.{_f}", "include_first", not_a_bool)(lambda v, _f=_f: fn(f"{SCH}.{_f}")(ACTS, include_first=v))
case(f"{SCH}.DeltaActivation", "num_features", bad_count)(lambda v: _layer(ACTS, num_features=v))
case(f"{SCH}.DeltaActivation", "sp_rate", bad_nonneg)(lambda v: _layer(ACTS, num_features=3, sp_rate=v))
case(f"{SCH}.DeltaActivation", "fan_out", bad_nonneg)(lambda v: _layer(ACTS, num_features=3, fan_out=v))
case(f"{SCH}.DeltaActivation", "threshold_init", bad_positive)(
    lambda v: _layer(ACTS, num_features=3, threshold_init=v))
case(f"{SCH}.DeltaActivation", "x", st.integers(1, 8).filter(lambda n: n != 3))(
    lambda n: _layer(np.ones((2, 4, n), np.float32), num_features=3))
case(f"{SCH}.DeltaActivation", "x", low_rank)(lambda v: _layer(v, num_features=3))

_EMPTY_LIKE = {"empty": lambda out: np.shape(out) == (0, 6, 3)}
SPECS += [
    Spec(f"{SCH}.delta_quantize", dict(x=ACTS, threshold=THETA), floats=("x", "threshold"), jit=True, batch=("x",),
         **_EMPTY_LIKE),
    Spec(f"{SCH}.delta_encode", dict(q=ACTS), floats=("q",), jit=True, batch=("q",), **_EMPTY_LIKE),
    Spec(f"{SCH}.delta_decode", dict(deltas=ACTS), floats=("deltas",), jit=True, batch=("deltas",), **_EMPTY_LIKE),
    Spec(f"{SCH}.temporal_sparsity_loss", dict(q=ACTS, sp_rate=0.5, fan_out=2.0), floats=("q",), jit=True,
         batch=("q",), numbers=("sp_rate", "fan_out")),
    Spec(f"{SCH}.count_nonzero_deltas", dict(q=ACTS), floats=("q",), jit=True, batch=("q",),
         not_applicable={"include_first": "a bool, checked by a Case"}),
    Spec(f"{SCH}.delta_sparsity", dict(q=ACTS), floats=("q",), jit=True, batch=("q",),
         not_applicable={"include_first": "a bool, checked by a Case"}),
    Spec(f"{SCH}.DeltaActivation", dict(x=ACTS, num_features=3, sp_rate=0.5, fan_out=2.0, threshold_init=0.25),
         call=_layer, floats=("x",), batch=("x",), **_EMPTY_LIKE,
         numbers=("num_features", "sp_rate", "fan_out", "threshold_init")),
]
EXEMPT: dict[str, str] = {}
