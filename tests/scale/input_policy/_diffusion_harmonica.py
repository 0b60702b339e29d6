"""Input-policy declarations for HarmoniCa's feature cache and router in `jaxdyn.diffusion` (merged by diffusion.py).

The numbers are checked in ``tests/diffusion/test_harmonica.py``. The samplers run a tiny DiT (4x4 images,
2x2 patches, one block) for 2 Euler steps, so each call compiles quickly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import (B, C, LABELS, Case, Spec, bad_count, bad_name, collector, fn,
                                           nonpositive)

DIF = "jaxdyn.diffusion"
CASES: list[Case] = []
SPECS: list[Spec] = []
EXEMPT: dict[str, str] = {}
case = collector(CASES)

STEPS = 2  # Euler: 2 cache steps
NOISE = np.asarray(jax.random.normal(jax.random.key(11), (B, 4, 4, 1)))
SCHED = np.array([[True], [False]])
ROUTER_LOGITS = np.asarray(jax.random.normal(jax.random.key(12), (STEPS, 1)))
PROXY = np.array([0.0, 1.5], np.float32)
SCORES = np.array([[1.0, 1.0], [0.2, 0.9], [0.6, 0.4]])
SAMPLER = dict(num_steps=STEPS, sigma_data=0.5, sigma_min=0.002, sigma_max=20.0, rho=7.0)
SAMPLER_NUMBERS = ("num_steps", "sigma_data", "sigma_min", "sigma_max", "rho")
_MODEL = "a jaxdyn.models.DiT module (not an array); its kind is checked by a Case"
_SCHED = "a static boolean schedule; its dtype, shape, first row and concreteness are checked by Cases"
bad_threshold = st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(math.nan), st.booleans())
bad_sigma_data = st.one_of(nonpositive, st.floats(min_value=1e3 + 1), st.booleans())


def _dit():
  m = fn("jaxdyn.models.DiT")(1, C, image_size=4, patch_size=2, dim=8, depth=1, num_heads=2, mlp_ratio=2,
                              rngs=nnx.Rngs(0))
  g, p = nnx.split(m)  # perturb the zero-initialised layers so the blocks act
  p = jax.tree.map(lambda a: a + 0.2 * jnp.cos(jnp.arange(a.size, dtype=a.dtype).reshape(a.shape)), p)
  return nnx.merge(g, p)


MODEL = _dit()


def _sampler(**kw):
  return fn(f"{DIF}.cached_sampler")(**{"model": MODEL, "noise": NOISE, "class_labels": LABELS, "schedule": SCHED,
                                         **SAMPLER, "second_order": False, **kw})


def _loss(**kw):
  args = {"logits": ROUTER_LOGITS, "model": MODEL, "noise": NOISE, "class_labels": LABELS, "proxy": PROXY,
          "beta": 0.1, **SAMPLER, "second_order": False, **kw}
  return fn(f"{DIF}.harmonica_loss")(**args)[0]


def _iepo(**kw):
  args = {"logits": ROUTER_LOGITS, "model": MODEL, "noise": NOISE, "class_labels": LABELS, **SAMPLER,
          "second_order": False, **kw}
  return fn(f"{DIF}.iepo_weights")(**args)


def _denoise(model=MODEL, class_labels=LABELS, sigma_data=0.5, x=NOISE):
  return fn(f"{DIF}.dit_denoiser")(model, class_labels, sigma_data=sigma_data)(x, jnp.float32(1.5))


# --- schedules ---------------------------------------------------------------------------------------
case(f"{DIF}.num_cache_steps", "num_steps", bad_count)(lambda v: fn(f"{DIF}.num_cache_steps")(v))
for _arg in ("num_steps", "num_blocks", "interval"):
  case(f"{DIF}.fixed_interval_schedule", _arg, bad_count)(
      lambda v, a=_arg: fn(f"{DIF}.fixed_interval_schedule")(**{"num_steps": 5, "num_blocks": 2, "interval": 2,
                                                                 a: v}))
case(f"{DIF}.cache_ratio", "schedule", st.sampled_from([np.float32, np.int32, np.uint8]))(
    lambda dt: fn(f"{DIF}.cache_ratio")(np.ones((3, 2), dt)))
case(f"{DIF}.cache_ratio", "schedule", st.sampled_from([(3,), (3, 2, 1), (0, 2), (3, 0), ()]))(
    lambda shape: fn(f"{DIF}.cache_ratio")(np.ones(shape, bool)))
case(f"{DIF}.cache_ratio", "schedule", st.sampled_from([(False, True), (True, False), (False, False)]))(
    lambda first: fn(f"{DIF}.cache_ratio")(np.array([first, (True, True)])))  # a first row that reuses

# --- the cached sampler and the uncached denoiser ----------------------------------------------------
_NOT_DIT = st.sampled_from([None, 3, "dit", [1]])
case(f"{DIF}.cached_sampler", "model", _NOT_DIT)(lambda v: _sampler(model=v))
case(f"{DIF}.cached_sampler", "schedule", st.sampled_from([(1, 1), (3, 1), (2, 2), (2,)]))(
    lambda shape: _sampler(schedule=np.ones(shape, bool)))
case(f"{DIF}.cached_sampler", "schedule", st.sampled_from([np.float32, np.int32, np.uint8]))(
    lambda dt: _sampler(schedule=SCHED.astype(dt)))
case(f"{DIF}.cached_sampler", "schedule", st.integers(0, 7))(  # a traced schedule, whichever its values
    lambda i: jax.jit(lambda s: _sampler(schedule=s))(np.array([[True], [bool(i % 2)]])))
case(f"{DIF}.cached_sampler", "noise", st.sampled_from([(B, 4, 4), (B, 8, 8, 1), (B, 4, 4, 2)]))(
    lambda shape: _sampler(noise=np.ones(shape, np.float32)))
case(f"{DIF}.cached_sampler", "class_labels", st.integers(1, 3 * B).filter(lambda n: n != B))(
    lambda n: _sampler(class_labels=np.arange(n, dtype=np.int32) % C))
case(f"{DIF}.cached_sampler", "num_steps", bad_count)(lambda v: _sampler(num_steps=v))
case(f"{DIF}.cached_sampler", "sigma_data", bad_sigma_data)(lambda v: _sampler(sigma_data=v))
case(f"{DIF}.dit_denoiser", "model", _NOT_DIT)(lambda v: _denoise(model=v))
case(f"{DIF}.dit_denoiser", "sigma_data", bad_sigma_data)(lambda v: _denoise(sigma_data=v))

# --- the router, its loss and proxy --------------------------------------------------------------------
for _arg in ("num_steps", "num_blocks"):
  case(f"{DIF}.Router", _arg, bad_count)(
      lambda v, a=_arg: fn(f"{DIF}.Router")(**{"num_steps": 3, "num_blocks": 2, a: v}, rngs=nnx.Rngs(0)))
case(f"{DIF}.router_weights", "threshold", bad_threshold)(
    lambda v: fn(f"{DIF}.router_weights")(ROUTER_LOGITS, threshold=v))
case(f"{DIF}.router_weights", "estimator", bad_name)(lambda v: fn(f"{DIF}.router_weights")(ROUTER_LOGITS,
                                                                                             estimator=v))
case(f"{DIF}.router_weights", "logits", st.sampled_from([(3,), (3, 2, 1), (0, 2), ()]))(
    lambda shape: fn(f"{DIF}.router_weights")(np.ones(shape, np.float32)))
case(f"{DIF}.matched_threshold", "cache_ratio", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=0.67),
                                                          st.just(math.nan), st.booleans()))(
    lambda v: fn(f"{DIF}.matched_threshold")(SCORES, v))
case(f"{DIF}.matched_threshold", "scores", st.sampled_from([(6,), (3, 2, 1), ()]))(
    lambda shape: fn(f"{DIF}.matched_threshold")(np.ones(shape), 0.0))
for _name, _call in (("harmonica_loss", _loss), ("iepo_weights", _iepo)):
  case(f"{DIF}.{_name}", "model", _NOT_DIT)(lambda v, c=_call: c(model=v))
  case(f"{DIF}.{_name}", "logits", st.sampled_from([(3, 1), (2, 2), (2,)]))(
      lambda shape, c=_call: c(logits=np.zeros(shape, np.float32)))
  case(f"{DIF}.{_name}", "threshold", bad_threshold)(lambda v, c=_call: c(threshold=v))
  case(f"{DIF}.{_name}", "estimator", bad_name)(lambda v, c=_call: c(estimator=v))
  case(f"{DIF}.{_name}", "num_steps", bad_count)(lambda v, c=_call: c(num_steps=v))
case(f"{DIF}.harmonica_loss", "beta", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1e6 + 1),
                                                st.just(math.nan), st.booleans()))(lambda v: _loss(beta=v))
case(f"{DIF}.harmonica_loss", "proxy", st.sampled_from([(1,), (3,), (2, 1)]))(
    lambda shape: _loss(proxy=np.ones(shape, np.float32)))
case(f"{DIF}.harmonica_loss", "proxy", st.floats(min_value=-1e30, max_value=-1e-6))(
    lambda v: _loss(proxy=np.array([0.0, v], np.float32)))

_is_empty_images = lambda out: np.shape(out) == (0, 4, 4, 1)  # noqa: E731
SPECS += [
    Spec(f"{DIF}.num_cache_steps", dict(num_steps=4), numbers=("num_steps",),
         call=lambda **kw: float(fn(f"{DIF}.num_cache_steps")(**kw))),
    Spec(f"{DIF}.fixed_interval_schedule", dict(num_steps=5, num_blocks=2, interval=2),
         numbers=("num_steps", "num_blocks", "interval"),
         call=lambda **kw: fn(f"{DIF}.fixed_interval_schedule")(**kw).astype(np.float32)),
    Spec(f"{DIF}.cache_ratio", dict(schedule=np.array([[True, True], [False, True]])),
         not_applicable={"schedule": "a boolean schedule (no floats, labels or batch); dtype, shape and the first "
                                     "row are checked by Cases"}),
    Spec(f"{DIF}.cached_sampler", dict(noise=NOISE, class_labels=LABELS, **SAMPLER), call=_sampler,
         floats=("noise",), labels=("class_labels",), jit=True, batch=("noise", "class_labels"),
         empty=_is_empty_images, numbers=SAMPLER_NUMBERS, not_applicable={"model": _MODEL, "schedule": _SCHED}),
    Spec(f"{DIF}.dit_denoiser", dict(class_labels=LABELS, sigma_data=0.5, x=NOISE), call=_denoise,
         floats=("x",), labels=("class_labels",), jit=True, batch=("class_labels", "x"), empty=_is_empty_images,
         numbers=("sigma_data",), not_applicable={"model": _MODEL}),
    Spec(f"{DIF}.Router", dict(num_steps=3, num_blocks=2), numbers=("num_steps", "num_blocks"),
         call=lambda **kw: fn(f"{DIF}.Router")(**kw, rngs=nnx.Rngs(0)).logits.value),
    Spec(f"{DIF}.router_weights", dict(logits=ROUTER_LOGITS, threshold=0.5), floats=("logits",), jit=True,
         numbers=("threshold",), ranges={"threshold": st.sampled_from([1e-6, 0.999999])},
         not_applicable={"estimator": "a name, checked by a Case",
                         "batch": "logits is a (steps, blocks) table, not a batch; an empty one is a Case"}),
    Spec(f"{DIF}.matched_threshold", dict(scores=SCORES, cache_ratio=0.5), floats=("scores",), batch=("scores",),
         numbers=("cache_ratio",)),
    Spec(f"{DIF}.harmonica_loss", dict(logits=ROUTER_LOGITS, noise=NOISE, class_labels=LABELS, proxy=PROXY,
                                       beta=0.1, threshold=0.5, **SAMPLER), call=_loss,
         floats=("logits", "noise", "proxy"), labels=("class_labels",), jit=True, batch=("noise", "class_labels"),
         numbers=("beta", "threshold", *SAMPLER_NUMBERS),
         not_applicable={"model": _MODEL, "estimator": "a name, checked by a Case"}),
    Spec(f"{DIF}.iepo_weights", dict(logits=ROUTER_LOGITS, noise=NOISE, class_labels=LABELS, threshold=0.5,
                                     **SAMPLER), call=_iepo,
         floats=("logits", "noise"), labels=("class_labels",), jit=True, batch=("noise", "class_labels"),
         numbers=("threshold", *SAMPLER_NUMBERS),
         not_applicable={"model": _MODEL, "estimator": "a name, checked by a Case"}),
]
