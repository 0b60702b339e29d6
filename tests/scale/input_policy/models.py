"""Input-policy declarations for `jaxdyn.models` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

MOD = "jaxdyn.models"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)


case(f"{MOD}.MLP", "dropout_rate", bad_rate)(lambda v: fn(f"{MOD}.MLP")(4, C, dropout_rate=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.MLP", "in_features", bad_count)(lambda v: fn(f"{MOD}.MLP")(v, C, rngs=nnx.Rngs(0)))
case(f"{MOD}.CNN", "spatial_dims", st.integers().filter(lambda d: d not in (1, 2)))(
    lambda v: fn(f"{MOD}.CNN")(1, C, spatial_dims=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.CNN", "num_classes", bad_count)(lambda v: fn(f"{MOD}.CNN")(1, v, rngs=nnx.Rngs(0)))
case(f"{MOD}.ViT", "patch_size", st.integers(2, 7).filter(lambda p: 8 % p))(
    lambda v: fn(f"{MOD}.ViT")(3, C, image_size=8, patch_size=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.ResNet", "block", st.text(max_size=8).filter(lambda s: s not in ("basic", "bottleneck")))(
    lambda v: fn(f"{MOD}.ResNet")(3, C, block=v, rngs=nnx.Rngs(0)))
for name in ("ResNet18", "ResNet50"):
  case(f"{MOD}.{name}", "width", bad_count)(lambda v, n=name: fn(f"{MOD}.{n}")(3, C, width=v, rngs=nnx.Rngs(0)))

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{MOD}.Classifier": "an abstract base class",
    f"{MOD}.Model": "a typing Protocol",
    f"{MOD}.HeadSplit": "a typing Protocol",
}
