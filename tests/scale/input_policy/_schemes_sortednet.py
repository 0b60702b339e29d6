"""Input-policy declarations for SortedNet in `jaxdyn.schemes` (merged by ``schemes.py``).

SortedNet acts on sorted models (`SortedMLP`, `SortedViT`), their sub-model specs and ladders, and on
batches (the sampled sub-models' loss, every sub-model's accuracy); the numbers are checked in
``tests/schemes/test_sortednet.py``.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import (B, C, H, KEY, LABELS, Case, Spec, bad_count, bad_key, bad_name,
                                           bad_rate, collector, fn, non_integral)

SCH = "jaxdyn.schemes"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

IMAGES = np.asarray(jax.random.uniform(jax.random.key(2), (B, 8, 8, 1)))
_EMPTY = lambda out: np.shape(out) == (0, C)  # noqa: E731  an empty batch gives empty logits


def _sub(*args):
  return fn(f"{SCH}.SubModel")(*args)


def _mlp(**kw):
  return fn(f"{SCH}.SortedMLP")(**{"in_features": 4, "num_classes": C, "hidden": 8, "depth": 2, **kw},
                                rngs=nnx.Rngs(0))


def _vit(**kw):
  return fn(f"{SCH}.SortedViT")(1, C, **{"image_size": 8, "patch_size": 4, "dim": 8, "depth": 2, "num_heads": 2,
                                         "mlp_dim": 8, **kw}, rngs=nnx.Rngs(0))


def _ladder():
  return (_sub(1, 4), _sub(2, 8))


_DEFAULT = object()


def _loss(x, labels, key, num_samples=2, submodels=None, model=_DEFAULT):
  model = _mlp() if model is _DEFAULT else model
  return fn(f"{SCH}.sortednet_loss")(model, x, labels, _ladder() if submodels is None else submodels, key,
                                     num_samples=num_samples)[0]


def _evaluate(x, labels, submodels=None, model=_DEFAULT):
  model = _mlp() if model is _DEFAULT else model
  return fn(f"{SCH}.evaluate_submodels")(model, x, labels, _ladder() if submodels is None else submodels)


bad_width = st.one_of(st.integers(max_value=0), st.integers(9, 100), non_integral, st.booleans())
not_a_submodel = st.sampled_from([None, (1, 4), [1, 4], 3, "full", {"depth": 1, "width": 4}])
bad_ladder = st.one_of(st.sampled_from([(), [], None, 3, "ladder"]),
                       bad_width.map(lambda w: (fn(f"{SCH}.SubModel")(1, w),)),
                       st.integers(3, 9).map(lambda d: (fn(f"{SCH}.SubModel")(d, 4),)))
not_a_sorted_model = st.sampled_from([None, 3, "mlp", lambda x: x])

case(f"{SCH}.SortedMLP", "hidden", bad_count)(lambda v: _mlp(hidden=v))
case(f"{SCH}.SortedMLP", "depth", bad_count)(lambda v: _mlp(depth=v))
case(f"{SCH}.SortedMLP", "in_features", bad_count)(lambda v: _mlp(in_features=v))
case(f"{SCH}.SortedMLP", "num_classes", bad_count)(lambda v: _mlp(num_classes=v))
case(f"{SCH}.SortedMLP", "dropout_rate", bad_rate)(lambda v: _mlp(dropout_rate=v))
case(f"{SCH}.SortedMLP", "x", st.integers(1, 12).filter(lambda n: n != 4))(
    lambda n: _mlp()(np.ones((B, n), np.float32)))
case(f"{SCH}.SortedMLP", "submodel", bad_width)(lambda w: _mlp()(H, submodel=_sub(1, w)))
case(f"{SCH}.SortedMLP", "submodel", not_a_submodel.filter(lambda v: v is not None))(  # None: the full model
    lambda v: _mlp()(H, submodel=v))
case(f"{SCH}.SortedViT", "patch_size", st.sampled_from([3, 5, 6, 7]))(lambda v: _vit(patch_size=v))
case(f"{SCH}.SortedViT", "num_heads", st.sampled_from([3, 5, 6, 7, 16]))(lambda v: _vit(num_heads=v))
case(f"{SCH}.SortedViT", "mlp_dim", bad_count)(lambda v: _vit(mlp_dim=v))
case(f"{SCH}.SortedViT", "image_size", bad_count)(lambda v: _vit(image_size=v))
case(f"{SCH}.SortedViT", "x", st.integers(2, 12).filter(lambda n: n != 8))(
    lambda n: _vit()(np.ones((B, n, n, 1), np.float32)))
case(f"{SCH}.SortedViT", "submodel", st.integers(3, 9))(lambda h: _vit()(IMAGES, submodel=_sub(1, 4, h)))
case(f"{SCH}.sorted_ladder", "num_submodels", st.one_of(bad_count, st.integers(65, 1000)))(
    lambda v: fn(f"{SCH}.sorted_ladder")(_sub(2, 64), v))
case(f"{SCH}.sorted_ladder", "full", not_a_submodel)(lambda v: fn(f"{SCH}.sorted_ladder")(v, 2))
case(f"{SCH}.sorted_ladder", "along", st.one_of(bad_name.map(lambda s: (s,)), st.sampled_from(
    [(), "width", ("heads",), ("width", "width"), None])))(
    lambda v: fn(f"{SCH}.sorted_ladder")(_sub(2, 64), 2, along=v))
case(f"{SCH}.sample_submodels", "num_submodels", bad_count)(lambda v: fn(f"{SCH}.sample_submodels")(KEY, v, 2))
case(f"{SCH}.sample_submodels", "num_samples", bad_count)(lambda v: fn(f"{SCH}.sample_submodels")(KEY, 4, v))
case(f"{SCH}.sortednet_loss", "num_samples", bad_count)(lambda v: _loss(H, LABELS, KEY, num_samples=v))
case(f"{SCH}.sortednet_loss", "x", st.sampled_from([3, 5, 6, 7]))(  # B = 8 does not split into n micro-batches
    lambda n: _loss(H, LABELS, KEY, num_samples=n))
case(f"{SCH}.sortednet_loss", "submodels", bad_ladder)(lambda v: _loss(H, LABELS, KEY, submodels=v))
case(f"{SCH}.sortednet_loss", "model", not_a_sorted_model)(lambda v: _loss(H, LABELS, KEY, model=v))
case(f"{SCH}.evaluate_submodels", "submodels", bad_ladder)(lambda v: _evaluate(H, LABELS, submodels=v))
case(f"{SCH}.evaluate_submodels", "model", not_a_sorted_model)(lambda v: _evaluate(H, LABELS, model=v))
case(f"{SCH}.export_submodel", "submodel", st.one_of(not_a_submodel, bad_width.map(lambda w: _sub(1, w))))(
    lambda v: fn(f"{SCH}.export_submodel")(_mlp(), v))
case(f"{SCH}.export_submodel", "model", not_a_sorted_model)(lambda v: fn(f"{SCH}.export_submodel")(v, _sub(1, 4)))

_MODEL = "a SortedMLP or SortedViT, checked by a Case"
_LADDER = "a sequence of SubModels, checked by Cases"
SPECS += [
    Spec(f"{SCH}.SortedMLP", dict(x=H, in_features=4, num_classes=C, hidden=8, depth=2, dropout_rate=0.1),
         call=lambda x, **kw: fn(f"{SCH}.SortedMLP")(**kw, rngs=nnx.Rngs(0))(x, submodel=_sub(1, 3)),
         floats=("x",), batch=("x",), empty=_EMPTY,
         numbers=("in_features", "num_classes", "hidden", "depth", "dropout_rate")),
    Spec(f"{SCH}.SortedViT", dict(x=IMAGES, dim=8, depth=2, num_heads=2, mlp_dim=8, dropout_rate=0.1),
         call=lambda x, **kw: fn(f"{SCH}.SortedViT")(1, C, image_size=8, patch_size=4, **kw, rngs=nnx.Rngs(0))(
             x, submodel=_sub(1, 3, 1)),
         floats=("x",), batch=("x",), empty=_EMPTY, numbers=("dim", "depth", "num_heads", "mlp_dim", "dropout_rate"),
         not_applicable={n: "a structural size, checked by a Case" for n in
                         ("in_channels", "num_classes", "image_size", "patch_size")}),
    Spec(f"{SCH}.sorted_ladder", dict(full=_sub(2, 64, 4), num_submodels=8), numbers=("num_submodels",),
         not_applicable={"full": "a SubModel, checked by a Case", "along": "dimension names, checked by a Case"}),
    Spec(f"{SCH}.sample_submodels", dict(key=KEY, num_submodels=8, num_samples=3),
         numbers=("num_submodels", "num_samples"), keys=("key",)),
    Spec(f"{SCH}.sortednet_loss", dict(x=H, labels=LABELS, key=KEY, num_samples=2), call=_loss,
         floats=("x",), labels=("labels",), jit=True, batch=("x", "labels"), numbers=("num_samples",), keys=("key",),
         not_applicable={"model": _MODEL, "submodels": _LADDER}),
    Spec(f"{SCH}.evaluate_submodels", dict(x=H, labels=LABELS), call=_evaluate, floats=("x",), labels=("labels",),
         jit=True, batch=("x", "labels"), not_applicable={"model": _MODEL, "submodels": _LADDER}),
    Spec(f"{SCH}.export_submodel", dict(submodel=_sub(1, 4)), call=lambda **kw: fn(f"{SCH}.export_submodel")(
        _mlp(), **kw)(H), not_applicable={"model": _MODEL, "submodel": "a SubModel, checked by Cases"}),
]
EXEMPT = {f"{SCH}.SubModel": "a NamedTuple of three sizes, checked where it is used (Cases of each function)"}
del bad_key
