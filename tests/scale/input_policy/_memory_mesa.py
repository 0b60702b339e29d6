"""Input-policy declarations for the mesa part of `jaxdyn.memory` (merged by ``memory.py``).

Also the Mesa arguments of `jaxdyn.models.ViT` (``mesa_groups``, ``mesa_implementation``): the
completeness test gathers a callable's clauses from every family's declarations.
"""

from __future__ import annotations

import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import KEY, Case, Spec, bad_count, collector, fn, non_integral, nonpositive

MEM = "jaxdyn.memory"
CASES: list[Case] = []
SPECS: list[Spec] = []
EXEMPT: dict[str, str] = {
    f"{MEM}.QuantRange": "a NamedTuple of arrays (the state init_range and update_range build and check)",
    f"{MEM}.MesaRange": "an nnx.Variable type (a tag for the running ranges); it holds any value",
}
case = collector(CASES)

_RNG = np.random.default_rng(0)
X = _RNG.normal(size=(8, 4)).astype(np.float32)  # (batch, features), 2 channel groups
A4 = _RNG.normal(size=(8, 2, 3, 4)).astype(np.float32)  # (batch, heads, tokens, head_dim)
B4 = _RNG.normal(size=(8, 2, 4, 3)).astype(np.float32)
KERNEL = _RNG.normal(size=(4, 3)).astype(np.float32)
SCALE, BIAS = np.ones(4, np.float32), np.zeros(4, np.float32)
IMAGES = _RNG.normal(size=(2, 8, 8, 1)).astype(np.float32)

bad_impl = st.text(max_size=8).filter(lambda s: s not in ("jnp", "pallas"))
bad_decay = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0), st.just(float("nan")))
bad_range = st.sampled_from([None, 3, "r", (1.0, 2.0), np.zeros(2, np.float32)])
bad_ranges = st.sampled_from([None, 3, (), "ab"])
bad_axis = st.one_of(st.integers(2, 50), st.integers(-50, -3), non_integral)
scaled = st.floats(1e-30, 1e30).map(lambda c: X * np.float32(c))


def _r(groups=2):
  return fn(f"{MEM}.init_range")(groups)


def _rs(n, groups=2):
  return tuple(_r(groups) for _ in range(n))


def _shape(*shape):
  return lambda out: np.shape(out[0] if isinstance(out, tuple) else out) == shape


# --- ranges and the quantizer -----------------------------------------------------------------------
case(f"{MEM}.init_range", "groups", bad_count)(lambda v: fn(f"{MEM}.init_range")(v))
_UPD, _Q = fn(f"{MEM}.update_range"), fn(f"{MEM}.quantize")
for f, call in ((f"{MEM}.update_range", lambda x, r, **kw: _UPD(r, x, **kw)),
                (f"{MEM}.quantize", lambda x, r, **kw: _Q(x, r, KEY, **kw))):
  case(f, "r", bad_range)(lambda v, call=call: call(X, v))
  case(f, "axis", bad_axis)(lambda v, call=call: call(X, _r(), axis=v))
  case(f, "r", st.sampled_from([3, 5, 6]))(lambda g, call=call: call(X, _r(g)))  # groups must divide the axis
case(f"{MEM}.update_range", "decay", bad_decay)(lambda v: _UPD(_r(), X, decay=v))
case(f"{MEM}.quantize", "implementation", bad_impl)(lambda v: fn(f"{MEM}.quantize")(X, _r(), KEY, implementation=v))
case(f"{MEM}.dequantize", "codes", st.sampled_from([np.float32, np.int32, np.uint8]))(
    lambda t: fn(f"{MEM}.dequantize")(np.zeros((8, 4), t), _r()))
case(f"{MEM}.dequantize", "r", bad_range)(lambda v: fn(f"{MEM}.dequantize")(np.zeros((8, 4), np.int8), v))
case(f"{MEM}.dequantize", "axis", bad_axis)(lambda v: fn(f"{MEM}.dequantize")(np.zeros((8, 4), np.int8), _r(), axis=v))
case(f"{MEM}.dequantize", "dtype", st.sampled_from([np.int32, "int8", np.bool_]))(
    lambda v: fn(f"{MEM}.dequantize")(np.zeros((8, 4), np.int8), _r(), dtype=v))
case(f"{MEM}.dequantize", "implementation", bad_impl)(
    lambda v: fn(f"{MEM}.dequantize")(np.zeros((8, 4), np.int8), _r(), implementation=v))


def _round_trip(x, key, axis=-1):
  r = fn(f"{MEM}.update_range")(_r(), x, axis=axis)
  return fn(f"{MEM}.dequantize")(fn(f"{MEM}.quantize")(x, r, key, axis=axis), r, axis=axis)


SPECS += [
    Spec(f"{MEM}.init_range", dict(groups=3), call=lambda groups: fn(f"{MEM}.init_range")(groups).alpha + 1.0,
         numbers=("groups",)),
    Spec(f"{MEM}.update_range", dict(r=_r(), x=X, axis=-1, decay=0.9), floats=("x",), jit=True, batch=("x",),
         empty=lambda out: float(np.asarray(out.count)) == 0, numbers=("axis", "decay"), ranges={"x": scaled}),
    # The codes are int8: the clauses read their round trip (a NaN makes the range, so x^, NaN).
    Spec(f"{MEM}.quantize", dict(x=X, key=KEY), call=_round_trip, floats=("x",), jit=True, batch=("x",),
         empty=_shape(0, 4), keys=("key",), ranges={"x": scaled},
         not_applicable={"r": "the round trip builds it from x (its Case checks a wrong one)",
                         "axis": "the grouped axis: its Case checks a wrong one"}),
    Spec(f"{MEM}.dequantize", dict(codes=np.zeros((8, 4), np.int8), r=_r(), axis=-1),
         call=lambda codes, r, axis: fn(f"{MEM}.dequantize")(codes, r, axis=axis), batch=("codes",),
         empty=_shape(0, 4), numbers=("axis",),
         not_applicable={"codes": "int8 codes: no non-finite values (a non-finite range gives non-finite x^)"}),
]

# --- the operations ---------------------------------------------------------------------------------
OPS = {
    "mesa_dense": (dict(x=X, kernel=KERNEL, bias=np.zeros(3, np.float32), r=_r(), key=KEY), ("x", "kernel", "bias"),
                   _shape(0, 3)),
    "mesa_gelu": (dict(x=X, r=_r(), key=KEY), ("x",), _shape(0, 4)),
    "mesa_layer_norm": (dict(x=X, scale=SCALE, bias=BIAS, r=_r(), key=KEY), ("x", "scale", "bias"), _shape(0, 4)),
    "mesa_softmax": (dict(x=A4, ranges=_rs(1), key=KEY), ("x",), _shape(0, 2, 3, 4)),
    "mesa_matmul": (dict(a=A4, b=B4, ranges=_rs(2), key=KEY), ("a", "b"), _shape(0, 2, 3, 3)),
    "mesa_attention": (dict(q=A4, k=A4, v=A4, ranges=_rs(4), key=KEY), ("q", "k", "v"), _shape(0, 2, 3, 4)),
}
SCORES = ("attention scores: -inf is a mask value and gives exact zeros, as jax.nn.softmax does (the forward is "
          "bit for bit the plain softmax); NaN and +inf come out as NaN")
for name, (inputs, floats, empty) in OPS.items():
  f = f"{MEM}.{name}"
  batch = tuple(a for a in floats if a in ("x", "a", "b", "q", "k", "v"))
  floats_clause = () if name == "mesa_softmax" else floats
  SPECS.append(Spec(f, inputs, floats=floats_clause, jit=True, batch=batch, empty=empty, keys=("key",),
                    not_applicable={"r": "a QuantRange: its Case checks a wrong one",
                                    "ranges": "QuantRanges: their Case checks a wrong one",
                                    **({"x": SCORES} if name == "mesa_softmax" else {})}))
  arg = "r" if "r" in inputs else "ranges"
  case(f, arg, bad_range if arg == "r" else bad_ranges)(lambda v, f=f, i=inputs, a=arg: fn(f)(**{**i, a: v}))
  case(f, "decay", bad_decay)(lambda v, f=f, i=inputs: fn(f)(**i, decay=v))
  case(f, "implementation", bad_impl)(lambda v, f=f, i=inputs: fn(f)(**i, implementation=v))
SPECS += [Spec(f"{MEM}.{n}", {**OPS[n][0], "decay": 0.5}, numbers=("decay",)) for n in ("mesa_dense", "mesa_gelu")]
SPECS.append(Spec(f"{MEM}.mesa_layer_norm", {**OPS["mesa_layer_norm"][0], "epsilon": 1e-5}, numbers=("epsilon",)))
for n in ("mesa_layer_norm", "mesa_softmax", "mesa_matmul", "mesa_attention"):
  SPECS.append(Spec(f"{MEM}.{n}", {**OPS[n][0], "decay": 0.5}, numbers=("decay",)))
case(f"{MEM}.mesa_dense", "kernel", st.sampled_from([(3, 3), (5, 3), (4,), (2, 4, 3)]))(
    lambda s: fn(f"{MEM}.mesa_dense")(X, np.ones(s, np.float32), None, _r(), KEY))
case(f"{MEM}.mesa_layer_norm", "epsilon", nonpositive)(
    lambda v: fn(f"{MEM}.mesa_layer_norm")(X, SCALE, BIAS, _r(), KEY, epsilon=v))
case(f"{MEM}.mesa_matmul", "b", st.sampled_from([(8, 2, 3, 3), (8, 1, 4, 3), (4, 2, 4, 3)]))(
    lambda s: fn(f"{MEM}.mesa_matmul")(A4, np.ones(s, np.float32), _rs(2), KEY))


# --- layers -----------------------------------------------------------------------------------------
def _layer(name, **kw):
  return fn(f"{MEM}.{name}")(**kw, **({} if name in ("MesaGELU", "MesaLayerNorm") else {"rngs": nnx.Rngs(0)}))


LAYERS = {
    "MesaDense": (dict(in_features=4, out_features=3, groups=2, decay=0.9), X, (0, 3)),
    "MesaGELU": (dict(groups=2, decay=0.9), X, (0, 4)),
    "MesaLayerNorm": (dict(num_features=4, epsilon=1e-6, groups=2, decay=0.9), X, (0, 4)),
    "MesaAttention": (dict(dim=4, num_heads=2, groups=2, decay=0.9), X.reshape(2, 4, 4), (0, 4, 4)),
}
for name, (kw, x, empty) in LAYERS.items():
  f = f"{MEM}.{name}"
  SPECS.append(Spec(f, kw, call=lambda name=name, **kw: _layer(name, **kw), numbers=tuple(kw),
                    not_applicable={"implementation": "a name: its Case checks a wrong one"}))
  SPECS.append(Spec(f, dict(x=x, key=KEY), call=lambda x, key, name=name, kw=kw: _layer(name, **kw)(
      x, train=True, key=key), floats=("x",), batch=("x",), empty=_shape(*empty), keys=("key",)))
  case(f, "implementation", bad_impl)(lambda v, name=name, kw=kw: _layer(name, **kw, implementation=v))
  case(f, "groups", bad_count)(lambda v, name=name, kw=kw: _layer(name, **{**kw, "groups": v}))
  case(f, "decay", bad_decay)(lambda v, name=name, kw=kw: _layer(name, **{**kw, "decay": v}))
  case(f, "key", st.sampled_from([None, "key", 0]))(lambda v, name=name, kw=kw, x=x: _layer(name, **kw)(
      x, train=True, key=v))
case(f"{MEM}.MesaDense", "groups", st.sampled_from([3, 5, 6]))(lambda v: _layer("MesaDense", in_features=4,
                                                                             out_features=3, groups=v))
case(f"{MEM}.MesaAttention", "num_heads", st.sampled_from([3, 5, 6]))(
    lambda v: _layer("MesaAttention", dim=4, num_heads=v))

# --- the Mesa ViT (jaxdyn.models.ViT's mesa_* arguments) ---------------------------------------------
VIT = "jaxdyn.models.ViT"


def _vit(**kw):
  return fn(VIT)(1, 5, image_size=8, patch_size=4, dim=8, depth=1, num_heads=2, mesa=True, rngs=nnx.Rngs(0), **kw)


case(VIT, "mesa_groups", st.one_of(bad_count, st.sampled_from([3, 5, 6, 7])))(lambda v: _vit(mesa_groups=v))
case(VIT, "mesa_implementation", bad_impl)(lambda v: _vit(mesa_implementation=v))
case(VIT, "key", st.sampled_from([None, "key", 0]))(lambda v: _vit()(IMAGES, train=True, key=v))
SPECS.append(Spec(VIT, dict(x=IMAGES, key=KEY), call=lambda x, key: _vit(mesa_groups=4)(x, train=True, key=key),
                  floats=("x",), batch=("x",), empty=_shape(0, 5), keys=("key",)))
