"""Input-policy declarations for Embedded Representation Warmup in `jaxdyn.diffusion` (merged by ``diffusion.py``).

The numbers are checked in ``tests/diffusion/test_erw.py``; the DiT's ``features_at`` hook is declared here too.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import B, C, LABELS, Case, Spec, bad_count, collector, fn, non_integral

DIF = "jaxdyn.diffusion"
DIT = "jaxdyn.models.DiT"
CASES: list[Case] = []
SPECS: list[Spec] = []
EXEMPT: dict[str, str] = {}
case = collector(CASES)

Z = np.asarray(jax.random.normal(jax.random.key(11), (B, 5, 3)), np.float32)
Y = np.asarray(jax.random.normal(jax.random.key(12), (B, 5, 3)), np.float32)
TOKENS = np.asarray(jax.random.normal(jax.random.key(13), (B, 6, 4)), np.float32)
_ARCH = dict(image_size=8, patch_size=2, dim=8, depth=2, num_heads=2, mlp_ratio=2)
not_a_bool = st.sampled_from([0, 1, "yes", None, 1.0])
bad_nonneg_int = st.one_of(st.integers(max_value=-1), non_integral, st.booleans())
bad_weight = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1e6 + 1), st.just(math.nan), st.booleans())
bad_half_life = st.one_of(st.floats(max_value=0.0), st.floats(min_value=1e12 * 1.01), st.just(math.nan),
                          st.booleans())


def _weight(**kw):
  return fn(f"{DIF}.erw_alignment_weight")(**{"step": 50, "warmup_steps": 10, "total_steps": 100, **kw})


def _projector(x=TOKENS, **kw):
  return fn(f"{DIF}.Projector")(**{"in_features": 4, "out_features": 3, "hidden_features": 5, **kw},
                                 rngs=nnx.Rngs(0))(x)


def _dits(dim=8, depth=2):
  return (fn(DIT)(1, C, **_ARCH, rngs=nnx.Rngs(0)),
          fn(DIT)(1, C, **{**_ARCH, "dim": dim, "depth": depth}, rngs=nnx.Rngs(1)))


def _copy(depth=1, warm=None):
  model, w = _dits()
  out = fn(f"{DIF}.copy_warmup_layers")(model, w if warm is None else warm, depth)
  return nnx.state(out, nnx.Param)


# --- representation_alignment_loss ---------------------------------------------------------------------
case(f"{DIF}.representation_alignment_loss", "target", st.sampled_from([(B, 5, 4), (B, 4, 3), (B - 1, 5, 3)]))(
    lambda shape: fn(f"{DIF}.representation_alignment_loss")(Z, np.ones(shape, np.float32)))
case(f"{DIF}.representation_alignment_loss", "projected", st.sampled_from([(B, 15), (B,), (B, 5, 3, 1), ()]))(
    lambda shape: fn(f"{DIF}.representation_alignment_loss")(np.ones(shape, np.float32), np.ones(shape, np.float32)))
case(f"{DIF}.representation_alignment_loss", "projected", st.sampled_from([(B, 0, 3), (1, 0, 2), (2, 0, 5)]))(  # no tokens
    lambda shape: fn(f"{DIF}.representation_alignment_loss")(np.ones(shape, np.float32), np.ones(shape, np.float32)))
case(f"{DIF}.representation_alignment_loss", "official_compat", not_a_bool)(
    lambda v: fn(f"{DIF}.representation_alignment_loss")(Z, Y, official_compat=v))

# --- erw_alignment_weight ------------------------------------------------------------------------------
case(f"{DIF}.erw_alignment_weight", "step", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: _weight(step=v))
case(f"{DIF}.erw_alignment_weight", "warmup_steps", bad_nonneg_int)(lambda v: _weight(warmup_steps=v))
case(f"{DIF}.erw_alignment_weight", "total_steps", st.one_of(st.integers(max_value=9), non_integral, st.booleans()))(
    lambda v: _weight(total_steps=v))
case(f"{DIF}.erw_alignment_weight", "initial_weight", bad_weight)(lambda v: _weight(initial_weight=v))
case(f"{DIF}.erw_alignment_weight", "half_life", bad_half_life)(lambda v: _weight(half_life=v))

# --- Projector -----------------------------------------------------------------------------------------
for _arg in ("in_features", "out_features", "hidden_features"):
  case(f"{DIF}.Projector", _arg, bad_count)(lambda v, a=_arg: _projector(**{a: v}))
case(f"{DIF}.Projector", "x", st.integers(1, 8).filter(lambda n: n != 4))(
    lambda n: _projector(x=np.ones((B, 6, n), np.float32)))

# --- copy_warmup_layers --------------------------------------------------------------------------------
case(f"{DIF}.copy_warmup_layers", "depth", st.one_of(bad_count, st.integers(3, 50)))(lambda v: _copy(depth=v))
case(f"{DIF}.copy_warmup_layers", "warm", st.sampled_from([None, "warm", 3, np.ones(3)]))(
    lambda v: fn(f"{DIF}.copy_warmup_layers")(_dits()[0], v, 1))
case(f"{DIF}.copy_warmup_layers", "warm", st.sampled_from([16, 4, 6]))(lambda d: _copy(warm=_dits(dim=d)[1]))
case(f"{DIF}.copy_warmup_layers", "depth", st.integers(2, 4))(  # deeper than the warm-up model's 1 block
    lambda d: fn(f"{DIF}.copy_warmup_layers")(fn(DIT)(1, C, **{**_ARCH, "depth": 4}, rngs=nnx.Rngs(0)),
                                              _dits(depth=1)[1], d))
case(f"{DIF}.copy_warmup_layers", "model", st.sampled_from([None, "model", 3]))(
    lambda v: fn(f"{DIF}.copy_warmup_layers")(v, _dits()[1], 1))

# --- the DiT's features_at hook (jaxdyn.models.DiT.__call__) ------------------------------------------
X8 = np.asarray(jax.random.normal(jax.random.key(14), (B, 8, 8, 1)), np.float32)
case(DIT, "features_at", st.one_of(bad_count, st.integers(3, 50)))(
    lambda v: fn(DIT)(1, C, **_ARCH, rngs=nnx.Rngs(0))(X8, np.zeros(B, np.float32), LABELS, features_at=v))

SPECS += [
    Spec(f"{DIF}.representation_alignment_loss", dict(projected=Z, target=Y), floats=("projected", "target"),
         jit=True, batch=("projected", "target"),
         ranges={"projected": st.sampled_from([Z * 1e-30, Z * 1e30, Z.astype(np.float16)])}),
    Spec(f"{DIF}.erw_alignment_weight", dict(step=50, warmup_steps=10, total_steps=100, initial_weight=2.0,
                                             half_life=20.0),
         numbers=("step", "warmup_steps", "total_steps", "initial_weight", "half_life"),
         ranges={"half_life": st.sampled_from([1e-30, 1e12]), "initial_weight": st.sampled_from([0.0, 1e6])}),
    Spec(f"{DIF}.Projector", dict(x=TOKENS, in_features=4, out_features=3, hidden_features=5), call=_projector,
         floats=("x",), jit=True, batch=("x",), empty=lambda out: np.shape(out) == (0, 6, 3),
         numbers=("in_features", "out_features", "hidden_features")),
    Spec(f"{DIF}.copy_warmup_layers", dict(depth=1), call=_copy, numbers=("depth",),
         not_applicable={"model": "a DiT module (not an array); its kind is checked by a Case",
                         "warm": "a DiT module (not an array); its kind and architecture are checked by Cases"}),
]
