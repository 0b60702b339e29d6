"""Input-policy declarations for historical object prediction (`jaxdyn.detection._hop`, the sequence mode of
`jaxdyn.detection._scenes`) and `jaxdyn.models.TemporalDetector`; merged into ``detection.py``.

The sequence generator is host-side NumPy (no array inputs); the temporal decoder and the detector are NNX
modules whose array input is checked eagerly for shape, and a NaN or infinity in it comes out as NaN (the
decoder poisons an example whose frame ``t - k``, which it does not read, is non-finite). The numbers are
checked in ``tests/detection/test_hop.py``.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, bad_name, collector, fn, non_integral

DET = "jaxdyn.detection"
MOD = "jaxdyn.models"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

bad_int_ge0 = st.one_of(st.integers(max_value=-1), non_integral, st.booleans())
bad_unit = st.one_of(st.floats(max_value=-1e-6, allow_infinity=False), st.floats(min_value=1.0 + 1e-6),
                     st.just(math.nan), st.booleans())
bad_weight = st.one_of(st.floats(max_value=-1e-6, allow_infinity=False), st.just(math.nan), st.just(math.inf),
                       st.booleans())

# --- synthetic_sequences ---------------------------------------------------------------------------
_SEQ = dict(seed=0, num_sequences=2, num_frames=3, image_size=24, max_objects=2, min_size=4, max_size=10,
            noise=0.05, max_speed=2, dim_rate=0.5, dim_factor=0.25)


def _seq(**kw):
  return fn(f"{DET}.synthetic_sequences")(**{**_SEQ, **kw})


case(f"{DET}.synthetic_sequences", "seed", bad_int_ge0)(lambda v: _seq(seed=v))
case(f"{DET}.synthetic_sequences", "num_sequences", bad_count)(lambda v: _seq(num_sequences=v))
case(f"{DET}.synthetic_sequences", "num_frames", bad_count)(lambda v: _seq(num_frames=v))
case(f"{DET}.synthetic_sequences", "max_speed", bad_int_ge0)(lambda v: _seq(max_speed=v))
case(f"{DET}.synthetic_sequences", "dim_rate", bad_unit)(lambda v: _seq(dim_rate=v))
case(f"{DET}.synthetic_sequences", "dim_factor", bad_unit)(lambda v: _seq(dim_factor=v))
case(f"{DET}.synthetic_sequences", "max_size", st.integers(25, 100))(lambda v: _seq(max_size=v))
case(f"{DET}.synthetic_sequences", "min_size", st.one_of(st.integers(max_value=2), non_integral))(
    lambda v: _seq(min_size=v))
case(f"{DET}.synthetic_sequences", "noise", st.one_of(st.floats(max_value=-1e-6, allow_infinity=False),
                                                      st.just(math.nan)))(lambda v: _seq(noise=v))
SPECS.append(Spec(f"{DET}.synthetic_sequences", dict(_SEQ),
                  numbers=tuple(k for k in _SEQ),
                  not_applicable={"batch": "no batch input (num_sequences is a count, checked by a Case)"}))

# --- hop_frame_indices, hop_loss -------------------------------------------------------------------
case(f"{DET}.hop_frame_indices", "num_frames", st.one_of(st.integers(max_value=1), non_integral, st.booleans()))(
    lambda v: fn(f"{DET}.hop_frame_indices")(v, 1))
case(f"{DET}.hop_frame_indices", "k", st.one_of(st.integers(max_value=0), st.integers(4, 100), non_integral,
                                                st.booleans()))(lambda v: fn(f"{DET}.hop_frame_indices")(4, v))
case(f"{DET}.hop_frame_indices", "mode", bad_name)(lambda v: fn(f"{DET}.hop_frame_indices")(4, 1, v))
SPECS.append(Spec(f"{DET}.hop_frame_indices", dict(num_frames=4, k=2, mode="long"), numbers=("num_frames", "k")))

case(f"{DET}.hop_loss", "weight", bad_weight)(lambda v: fn(f"{DET}.hop_loss")(1.0, 2.0, v))
_NOT_SCALAR = [np.ones(2, np.float32), np.ones((1, 1), np.float32), np.ones((2, 3), np.float32)]
case(f"{DET}.hop_loss", "main_loss", st.sampled_from(_NOT_SCALAR))(
    lambda v: fn(f"{DET}.hop_loss")(v, 2.0, 0.5))
case(f"{DET}.hop_loss", "historical_loss", st.sampled_from(_NOT_SCALAR))(
    lambda v: fn(f"{DET}.hop_loss")(1.0, v, 0.5))
SPECS.append(Spec(f"{DET}.hop_loss", dict(main_loss=np.float32(1.5), historical_loss=np.float32(2.0), weight=0.5),
                  floats=("main_loss", "historical_loss"), jit=True, numbers=("weight",),
                  ranges={"weight": st.sampled_from([0.0, 1e-12, 1e6])},
                  not_applicable={"batch": "scalar losses: no batch axis"}))

# --- TemporalDecoder -------------------------------------------------------------------------------
FEATS = np.asarray(jax.random.normal(jax.random.key(7), (2, 3, 4, 4, 4)))


def _decoder(features, channels=4, num_frames=3, k=1):
  from flax import nnx  # pylint: disable=import-outside-toplevel
  return fn(f"{DET}.TemporalDecoder")(channels, num_frames, k, rngs=nnx.Rngs(0))(features)


case(f"{DET}.TemporalDecoder", "channels", bad_count)(lambda v: _decoder(FEATS, channels=v))
case(f"{DET}.TemporalDecoder", "num_frames", st.one_of(st.integers(max_value=1), non_integral, st.booleans()))(
    lambda v: _decoder(FEATS, num_frames=v))
case(f"{DET}.TemporalDecoder", "k", st.one_of(st.integers(max_value=0), st.integers(3, 100), non_integral))(
    lambda v: _decoder(FEATS, k=v))
case(f"{DET}.TemporalDecoder", "features",
     st.sampled_from([np.ones((2, 2, 4, 4, 4)), np.ones((2, 3, 4, 4, 3)), np.ones((3, 4, 4, 4)), np.ones((2, 3, 4))]))(
         lambda v: _decoder(v))
SPECS.append(Spec(f"{DET}.TemporalDecoder", dict(features=FEATS, channels=4, num_frames=3, k=1), call=_decoder,
                  floats=("features",), batch=("features",), empty=lambda out: np.shape(out) == (0, 4, 4, 4),
                  numbers=("channels", "num_frames", "k"),
                  ranges={"features": st.sampled_from([FEATS * 1e-6, FEATS * 1e6, np.zeros_like(FEATS)])}))
EXEMPT = {f"{DET}.Sequences": "a NamedTuple of arrays"}

# --- jaxdyn.models.TemporalDetector ----------------------------------------------------------------
CLIP = np.asarray(jax.random.uniform(jax.random.key(8), (2, 2, 16, 16, 1)))
_TD = dict(in_channels=1, num_classes=3, width=4, image_size=16, anchor_scale=4.0, num_frames=2, hop_frames=3,
           hop_k=1)


def _temporal(x, **kw):
  from flax import nnx  # pylint: disable=import-outside-toplevel
  return fn(f"{MOD}.TemporalDetector")(**{**_TD, **kw}, hop=True, rngs=nnx.Rngs(0))(x)


for _arg in ("in_channels", "num_classes", "width", "num_frames"):
  case(f"{MOD}.TemporalDetector", _arg, bad_count)(lambda v, _arg=_arg: _temporal(CLIP, **{_arg: v}))
case(f"{MOD}.TemporalDetector", "image_size",
     st.one_of(st.integers(max_value=7), st.integers(9, 100).filter(lambda n: n % 8), non_integral))(
         lambda v: _temporal(CLIP, image_size=v))
case(f"{MOD}.TemporalDetector", "anchor_scale", st.one_of(st.floats(max_value=0.0), st.just(math.nan)))(
    lambda v: _temporal(CLIP, anchor_scale=v))
case(f"{MOD}.TemporalDetector", "hop_frames", st.one_of(st.integers(max_value=1), non_integral, st.booleans()))(
    lambda v: _temporal(CLIP, hop_frames=v))
case(f"{MOD}.TemporalDetector", "hop_k", st.one_of(st.integers(max_value=0), st.integers(3, 100), non_integral))(
    lambda v: _temporal(CLIP, hop_k=v))
case(f"{MOD}.TemporalDetector", "x", st.sampled_from([np.ones((2, 3, 16, 16, 1)), np.ones((2, 2, 8, 8, 1)),
                                                      np.ones((2, 16, 16, 1)), np.ones((2, 2, 16, 16, 3))]))(
    lambda v: _temporal(v))
SPECS.append(Spec(f"{MOD}.TemporalDetector", dict(x=CLIP, **_TD), call=_temporal,
                  floats=("x",), batch=("x",), empty=lambda out: all(np.shape(o)[0] == 0 for o in out),
                  numbers=("in_channels", "num_classes", "width", "image_size", "anchor_scale", "num_frames",
                           "hop_frames", "hop_k"),
                  not_applicable={"train": "unused (no dropout or normalisation statistics)",
                                  "key": "unused (as train)"}))
