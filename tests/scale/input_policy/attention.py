"""Input-policy declarations for `jaxdyn.attention` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

ATT = "jaxdyn.attention"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

# --- attention -----------------------------------------------------------------------------------
L, NH, D = 8, 2, 4
_rng = np.random.default_rng(0)
Q, K, V = (_rng.standard_normal((2, L, NH, D)).astype(np.float32) for _ in range(3))
MASK = np.tril(np.ones((L, L), bool)) & ~np.tril(np.ones((L, L), bool), -3)  # a window of 3
bad_length = st.one_of(st.integers(max_value=-1), non_integral, st.booleans())
bad_mask = st.sampled_from([np.ones((L, L), np.float32), np.ones((L, L), np.int32), np.ones(L, bool),
                            np.ones((L, L + 1), bool), np.ones((3, L, L), bool), "causal", None])
not_bool = st.sampled_from([0, 1, "yes", 1.0])

_MASK_FNS = {
    "causal_mask": {},
    "sliding_window_mask": dict(window=3),
    "sink_window_mask": dict(sink=1, window=3),
    "block_sparse_mask": dict(block_size=2, local_blocks=1, vertical_stride=2),
}
for name, kw in _MASK_FNS.items():
  f = f"{ATT}.{name}"
  case(f, "q_len", bad_length)(lambda v, f=f, kw=kw: fn(f)(v, **kw))
  case(f, "k_len", bad_length)(lambda v, f=f, kw=kw: fn(f)(4, v, **kw))
  case(f, "q_offset", bad_length)(lambda v, f=f, kw=kw: fn(f)(4, q_offset=v, **kw))
  for arg in kw:
    strategy = bad_length if arg == "sink" else bad_count
    case(f, arg, strategy)(lambda v, f=f, kw=kw, arg=arg: fn(f)(4, **{**kw, arg: v}))
case(f"{ATT}.block_sparse_mask", "head_offset", bad_length)(
    lambda v: fn(f"{ATT}.block_sparse_mask")(4, head_offset=v, **_MASK_FNS["block_sparse_mask"]))
case(f"{ATT}.block_sparse_mask", "num_heads", bad_count)(
    lambda v: fn(f"{ATT}.block_sparse_mask")(4, num_heads=v, **_MASK_FNS["block_sparse_mask"]))
case(f"{ATT}.block_layout", "mask", bad_mask.filter(lambda m: not (isinstance(m, np.ndarray) and m.dtype == bool
                                                                   and m.ndim in (2, 3))))(
    lambda v: fn(f"{ATT}.block_layout")(v, 2, 2))
for arg in ("block_q", "block_k"):
  case(f"{ATT}.block_layout", arg, bad_count)(
      lambda v, arg=arg: fn(f"{ATT}.block_layout")(MASK, **{"block_q": 2, "block_k": 2, arg: v}))
case(f"{ATT}.layout_indices", "layout", st.sampled_from([np.ones((2, 2), np.float32), np.ones(2, bool),
                                                        np.ones((1, 1, 2, 2), bool), "layout"]))(
    lambda v: fn(f"{ATT}.layout_indices")(v))

for name in ("dense_masked_attention", "block_sparse_attention"):
  f = f"{ATT}.{name}"
  case(f, "mask", bad_mask.filter(lambda m: m is not None))(lambda v, f=f: fn(f)(Q, K, V, v))
  case(f, "scale", nonpositive)(lambda v, f=f: fn(f)(Q, K, V, MASK, scale=v))
  case(f, "q", st.sampled_from([Q[0], Q.astype(np.complex64), Q[None]]))(lambda v, f=f: fn(f)(v, K, V, MASK))
  case(f, "v", st.integers(1, 6).filter(lambda n: n != L).map(lambda n: np.ones((2, n, NH, D), np.float32)))(
      lambda v, f=f: fn(f)(Q, K, v, MASK))
  case(f, "k", st.integers(1, 4).filter(lambda n: n != NH).map(lambda n: np.ones((2, L, n, D), np.float32)))(
      lambda v, f=f: fn(f)(Q, v, v, MASK))
_BSA = f"{ATT}.block_sparse_attention"
for arg in ("block_q", "block_k"):
  case(_BSA, arg, bad_count)(lambda v, arg=arg: fn(_BSA)(Q, K, V, MASK, **{arg: v}, interpret=True))
case(_BSA, "implementation", bad_name.filter(lambda s: s not in ("pallas", "jnp")))(
    lambda v: fn(_BSA)(Q, K, V, MASK, implementation=v))
case(_BSA, "interpret", not_bool)(lambda v: fn(_BSA)(Q, K, V, MASK, interpret=v))
case(_BSA, "precision", bad_name.filter(lambda s: s not in ("highest", "default")))(
    lambda v: fn(_BSA)(Q, K, V, MASK, precision=v))

# LongGen hybrid stacks.
_PLAN = ("sparse", "full", "sparse")
bad_plan = st.sampled_from(["full", (), ("full", "dense"), None, 3])
bad_fraction = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.000001), st.just(float("nan")),
                         st.booleans())
case(f"{ATT}.layer_plan", "depth", bad_count)(lambda v: fn(f"{ATT}.layer_plan")(v))
case(f"{ATT}.layer_plan", "full_fraction", bad_fraction)(lambda v: fn(f"{ATT}.layer_plan")(6, full_fraction=v))
case(f"{ATT}.layer_plan", "placement", bad_name.filter(lambda s: s not in ("middle", "bottom", "top", "interleave")))(
    lambda v: fn(f"{ATT}.layer_plan")(6, placement=v))
case(f"{ATT}.sink_window_attention", "sink", bad_length)(lambda v: fn(f"{ATT}.sink_window_attention")(v, 2))
case(f"{ATT}.sink_window_attention", "window", bad_count)(lambda v: fn(f"{ATT}.sink_window_attention")(1, v))
_SWA = f"{ATT}.sink_window_attention"
case(_SWA, "implementation", bad_name.filter(lambda s: s not in ("auto", "dense", "pallas", "jnp")))(
    lambda v: fn(_SWA)(1, 2, implementation=v))
case(_SWA, "block_size", st.one_of(bad_count, st.sampled_from([3, 12, 48])))(
    lambda v: fn(_SWA)(1, 2, block_size=v))
case(f"{ATT}.hybrid_attention_fns", "implementation", bad_name.filter(
    lambda s: s not in ("auto", "dense", "pallas", "jnp")))(
    lambda v: fn(f"{ATT}.hybrid_attention_fns")(_PLAN, sink=1, window=2, implementation=v))
case(f"{ATT}.hybrid_attention_fns", "plan", bad_plan)(lambda v: fn(f"{ATT}.hybrid_attention_fns")(v, sink=1, window=2))
case(f"{ATT}.hybrid_attention_fns", "sink", bad_length)(
    lambda v: fn(f"{ATT}.hybrid_attention_fns")(_PLAN, sink=v, window=2))
case(f"{ATT}.hybrid_attention_fns", "window", bad_count)(
    lambda v: fn(f"{ATT}.hybrid_attention_fns")(_PLAN, sink=1, window=v))
_SIZES = f"{ATT}.hybrid_cache_sizes"
case(_SIZES, "plan", bad_plan)(lambda v: fn(_SIZES)(v, 16, sink=1, window=2))
case(_SIZES, "max_len", bad_count)(lambda v: fn(_SIZES)(_PLAN, v, sink=1, window=2))
case(_SIZES, "sink", bad_length)(lambda v: fn(_SIZES)(_PLAN, 16, sink=v, window=2))
case(_SIZES, "window", bad_count)(lambda v: fn(_SIZES)(_PLAN, 16, sink=1, window=v))
_KVB = f"{ATT}.kv_cache_bytes"
_KVB_KW = dict(num_heads=2, head_dim=4, sink=1, window=3, batch=1)
case(_KVB, "plan", bad_plan)(lambda v: fn(_KVB)(v, 16, **_KVB_KW))
case(_KVB, "seq_len", bad_count)(lambda v: fn(_KVB)(_PLAN, v, **_KVB_KW))
for _arg in ("num_heads", "head_dim", "window", "batch"):
  case(_KVB, _arg, bad_count)(lambda v, a=_arg: fn(_KVB)(_PLAN, 16, **{**_KVB_KW, a: v}))
case(_KVB, "sink", bad_length)(lambda v: fn(_KVB)(_PLAN, 16, **{**_KVB_KW, "sink": v}))
_HC = f"{ATT}.hybrid_cache"


def _transformer():
  from flax import nnx
  return fn("jaxdyn.models.Transformer")(vocab_size=8, dim=8, depth=3, num_heads=2, rngs=nnx.Rngs(0))


case(_HC, "model", st.sampled_from([None, 3, "model"]))(lambda v: fn(_HC)(v, _PLAN, 1, 8, sink=1, window=2))
case(_HC, "plan", bad_plan)(lambda v: fn(_HC)(_transformer(), v, 1, 8, sink=1, window=2))
case(_HC, "plan", st.sampled_from([("full",), ("full", "sparse"), ("full",) * 4]))(
    lambda v: fn(_HC)(_transformer(), v, 1, 8, sink=1, window=2))
case(_HC, "max_len", bad_count)(lambda v: fn(_HC)(_transformer(), _PLAN, 1, v, sink=1, window=2))
case(_HC, "batch", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: fn(_HC)(_transformer(), _PLAN, v, 8, sink=1, window=2))

EXEMPT: dict[str, str] = {}


# --- clause specs ---------------------------------------------------------------------------------
def _as_float(name):
  return lambda **kw: np.asarray(fn(f"{ATT}.{name}")(**kw), np.float32)


_LENGTHS = dict(q_len=6, k_len=9, q_offset=2)
_NA_ATT = {"mask": "a concrete boolean pattern: no non-finite values; its dtype and shape are Cases"}
SPECS += [
    Spec(f"{ATT}.{name}", {**_LENGTHS, **kw}, call=_as_float(name),
         numbers=("q_len", "k_len", "q_offset", *kw),
         ranges={"q_len": st.integers(0, 40), "q_offset": st.integers(0, 40)})
    for name, kw in _MASK_FNS.items()
]
SPECS += [
    Spec(f"{ATT}.block_sparse_mask", dict(_LENGTHS, **_MASK_FNS["block_sparse_mask"], head_offset=1, num_heads=3),
         call=_as_float("block_sparse_mask"), numbers=("head_offset", "num_heads"),
         not_applicable={k: "the Spec without num_heads covers it" for k in ("q_len", "k_len", "q_offset")}),
    Spec(f"{ATT}.block_layout", dict(mask=MASK, block_q=3, block_k=2), call=_as_float("block_layout"),
         numbers=("block_q", "block_k"), ranges={"block_q": st.integers(1, 100), "block_k": st.integers(1, 100)},
         not_applicable=_NA_ATT),
    Spec(f"{ATT}.layout_indices", dict(layout=MASK),
         call=lambda layout: np.concatenate([a.ravel() for a in fn(f"{ATT}.layout_indices")(layout)]).astype(
             np.float32),
         not_applicable={"layout": "a concrete boolean layout: its dtype and shape are Cases"}),
    Spec(f"{ATT}.dense_masked_attention", dict(q=Q, k=K, v=V, mask=MASK, scale=0.5), floats=("q", "k", "v"),
         jit=True, batch=("q", "k", "v"), empty=lambda out: np.shape(out) == (0, L, NH, D), numbers=("scale",),
         ranges={"scale": st.floats(1e-4, 1e3), "q": st.floats(-1e3, 1e3).map(lambda c: Q * np.float32(c))},
         not_applicable=_NA_ATT),
]
for impl in ("pallas", "jnp"):
  SPECS.append(Spec(
      _BSA, dict(q=Q, k=K, v=V, mask=MASK, block_q=4, block_k=4, scale=0.5, implementation=impl, interpret=True),
      floats=("q", "k", "v"), jit=True, batch=("q", "k", "v"), empty=lambda out: np.shape(out) == (0, L, NH, D),
      numbers=("block_q", "block_k", "scale"),
      ranges={"scale": st.floats(1e-4, 1e3), "q": st.floats(-1e3, 1e3).map(lambda c: Q * np.float32(c))},
      not_applicable={**_NA_ATT, "implementation": "a name (a Case)",
                      "interpret": "a mode switch (None: by backend); both modes compute the same values"}))

_NOT_ARRAYS = "a size (a Case); the result is a Python structure, not an array"
SPECS += [
    Spec(f"{ATT}.layer_plan", dict(depth=6, full_fraction=0.5),
         call=lambda **kw: np.asarray([p == "full" for p in fn(f"{ATT}.layer_plan")(**kw)], np.float32),
         numbers=("depth", "full_fraction"), not_applicable={"placement": "a name (a Case)"}),
    Spec(f"{ATT}.sink_window_attention", dict(q=Q, k=K, v=V, sink=1, window=3),
         call=lambda q, k, v, sink, window: fn(f"{ATT}.sink_window_attention")(sink, window)(
             q, k, v, q_positions=np.arange(q.shape[1]), k_positions=np.arange(k.shape[1])),
         floats=("q", "k", "v"), batch=("q", "k", "v"), empty=lambda out: np.shape(out) == (0, L, NH, D),
         numbers=("sink", "window"), ranges={"q": st.floats(-1e3, 1e3).map(lambda c: Q * np.float32(c))},
         not_applicable={"implementation": "a name (a Case)",
                         "block_size": "a tiling of the whole-sequence path (a Case); the positional call "
                                       "computed here does not use it"}),
    Spec(f"{ATT}.hybrid_attention_fns", dict(q=Q, k=K, v=V, sink=1, window=3),
         call=lambda q, k, v, sink, window: fn(f"{ATT}.hybrid_attention_fns")(_PLAN, sink=sink, window=window)[0](
             q, k, v, q_positions=np.arange(q.shape[1]), k_positions=np.arange(k.shape[1])),
         floats=("q", "k", "v"), batch=("q", "k", "v"), empty=lambda out: np.shape(out) == (0, L, NH, D),
         numbers=("sink", "window"), not_applicable={"plan": "names (a Case)", "implementation": "a name (a Case)"}),
    Spec(_SIZES, dict(max_len=16, sink=1, window=3),
         call=lambda **kw: np.asarray(fn(_SIZES)(_PLAN, **kw), np.float32), numbers=("max_len", "sink", "window"),
         not_applicable={"plan": "names (a Case)"}),
    Spec(_KVB, dict(seq_len=16, **_KVB_KW),
         call=lambda **kw: np.asarray(fn(_KVB)(_PLAN, **kw)["per_layer"], np.float32),
         numbers=("seq_len", "num_heads", "head_dim", "sink", "window", "batch"),
         not_applicable={"plan": "names (a Case)", "dtype": "a dtype, read by NumPy"}),
    Spec(_HC, dict(batch=2, max_len=8, sink=1, window=3),
         call=lambda **kw: np.asarray([x.size for x in jax.tree.leaves(fn(_HC)(_transformer(), _PLAN, **kw))],
                                      np.float32),
         numbers=("batch", "max_len", "sink", "window"),
         not_applicable={"model": "a module (a Case)", "plan": "names (a Case)", "dtype": "the stored dtype"}),
]


# The in-context regression declarations.
from tests.scale.input_policy import _attention_icl  # noqa: E402

CASES += _attention_icl.CASES
SPECS += _attention_icl.SPECS
EXEMPT.update(_attention_icl.EXEMPT)
