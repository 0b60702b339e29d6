"""Input-policy declarations for the frozen-spatial ViViT part of `jaxdyn.memory` (merged by ``memory.py``).

``jaxdyn/memory/_vivit.py``: the freezing transform, its partition, and the initialisation from an image
model. They act on parameter trees, not on data: no batch, labels or keys. The numbers are checked in
``tests/memory/test_vivit.py``.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import optax
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, collector, fn

MEM = "jaxdyn.memory"
CASES: list[Case] = []
SPECS: list[Spec] = []
EXEMPT: dict[str, str] = {}
case = collector(CASES)

PARAMS = {"spatial": {"w": jnp.ones((2, 3))}, "head": {"w": jnp.ones(3)}}
_ARCH = dict(image_size=8, dim=8, num_heads=2)


@functools.cache
def _vivit_and_vit():
  m = fn("jaxdyn.models.ViViT")(1, 3, num_frames=2, spatial_depth=2, temporal_depth=1, **_ARCH, rngs=nnx.Rngs(0))
  v = fn("jaxdyn.models.ViT")(1, 16, depth=2, **_ARCH, rngs=nnx.Rngs(1))
  return nnx.to_pure_dict(nnx.state(m, nnx.Param)), nnx.to_pure_dict(nnx.state(v, nnx.Param))


def _init(**kw):
  params, image = _vivit_and_vit()
  return fn(f"{MEM}.init_from_image_model")(**{"params": params, "image_params": image, **kw})


@functools.cache
def _short_vivit():
  m = fn("jaxdyn.models.ViViT")(1, 3, num_frames=1, spatial_depth=2, temporal_depth=1, **_ARCH, rngs=nnx.Rngs(2))
  return nnx.to_pure_dict(nnx.state(m, nnx.Param))


def _init_short(**kw):
  params, _ = _vivit_and_vit()
  return fn(f"{MEM}.init_from_short_clip_model")(**{"params": params, "short_params": _short_vivit(), **kw})


POS = jnp.linspace(-1.0, 1.0, 4 * 3, dtype=jnp.float32).reshape(1, 4, 3)


def _freeze_and_update(**kw):
  tx = fn(f"{MEM}.freeze_spatial")(**{"tx": optax.adam(0.1), **kw})
  grads = {"spatial": {"w": jnp.ones((2, 3))}, "head": {"w": jnp.ones(3)}}
  return tx.update(grads, tx.init(PARAMS), PARAMS)[0]


bad_prefix = st.sampled_from(["", 3, None, ("spatial",)])
not_a_tree = st.sampled_from([None, 3, "params", [1, 2]])
absent_prefix = st.text(min_size=1, max_size=6).filter(lambda s: s not in ("spatial", "head"))

case(f"{MEM}.spatial_labels", "prefix", bad_prefix)(lambda v: fn(f"{MEM}.spatial_labels")(PARAMS, prefix=v))
case(f"{MEM}.spatial_labels", "params", absent_prefix)(lambda v: fn(f"{MEM}.spatial_labels")(PARAMS, prefix=v))
case(f"{MEM}.freeze_spatial", "tx", st.sampled_from([None, "adam", 0.1, optax.adam]))(
    lambda v: fn(f"{MEM}.freeze_spatial")(v))
case(f"{MEM}.freeze_spatial", "prefix", bad_prefix)(lambda v: fn(f"{MEM}.freeze_spatial")(optax.sgd(0.1), prefix=v))
case(f"{MEM}.init_from_image_model", "source", st.text(max_size=6).filter(lambda s: s not in ("last", "first")))(
    lambda v: _init(source=v))
case(f"{MEM}.init_from_image_model", "params", not_a_tree)(lambda v: _init(params=v))
case(f"{MEM}.init_from_image_model", "image_params", not_a_tree)(lambda v: _init(image_params=v))
case(f"{MEM}.init_from_image_model", "image_params", st.integers(3, 5))(  # deeper than the spatial transformer
    lambda d: _init(image_params=nnx.to_pure_dict(nnx.state(
        fn("jaxdyn.models.ViT")(1, 16, depth=d, **_ARCH, rngs=nnx.Rngs(0)), nnx.Param))))
case(f"{MEM}.init_from_short_clip_model", "params", not_a_tree)(lambda v: _init_short(params=v))
case(f"{MEM}.init_from_short_clip_model", "short_params", not_a_tree)(lambda v: _init_short(short_params=v))
case(f"{MEM}.init_from_short_clip_model", "short_params", st.integers(3, 5))(  # a deeper spatial transformer
    lambda d: _init_short(short_params=nnx.to_pure_dict(nnx.state(fn("jaxdyn.models.ViViT")(
        1, 3, num_frames=2, spatial_depth=d, temporal_depth=1, **_ARCH, rngs=nnx.Rngs(0)), nnx.Param))))
case(f"{MEM}.resize_temporal_positions", "num_frames", bad_count)(
    lambda v: fn(f"{MEM}.resize_temporal_positions")(POS, v))
case(f"{MEM}.resize_temporal_positions", "pos", st.sampled_from([(3,), (4, 3), (2, 4, 3), (1, 1, 3), (1, 4, 3, 1)]))(
    lambda shape: fn(f"{MEM}.resize_temporal_positions")(jnp.ones(shape), 5))

_TREE = "a parameter PyTree (labels come from its top-level names); a wrong one is checked by a Case"
SPECS += [
    Spec(f"{MEM}.spatial_labels", dict(params=PARAMS, prefix="spatial"),
         not_applicable={"params": _TREE, "prefix": "a name, checked by a Case"}),
    Spec(f"{MEM}.freeze_spatial", dict(prefix="spatial"), call=_freeze_and_update,
         not_applicable={"tx": "an optax transform, checked by a Case", "prefix": "a name, checked by a Case"}),
    Spec(f"{MEM}.init_from_image_model", dict(source="last"), call=_init,
         not_applicable={"params": "a ViViT's parameter pure dict; structure and shapes checked by Cases",
                         "image_params": "a ViT's parameter pure dict; structure and shapes checked by Cases",
                         "source": "a name, checked by a Case"}),
    Spec(f"{MEM}.init_from_short_clip_model", {}, call=_init_short,
         not_applicable={"params": "a ViViT's parameter pure dict; structure and shapes checked by Cases",
                         "short_params": "a ViViT's parameter pure dict; structure and shapes checked by Cases"}),
    Spec(f"{MEM}.resize_temporal_positions", dict(pos=POS, num_frames=5), floats=("pos",), numbers=("num_frames",),
         not_applicable={"batch": "embeddings of one model: no batch axis"}),
]
