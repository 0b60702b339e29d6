"""Input-policy declarations for crafted distribution shifts in `jaxdyn.multimodal` (merged by ``multimodal.py``)."""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import KEY, Case, Spec, collector, fn, nonpositive

MM = "jaxdyn.multimodal"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

IMAGES = np.linspace(0.0, 1.0, 3 * 6 * 6, dtype=np.float32).reshape(3, 6, 6, 1)
KEYS = np.asarray(jax.random.key_data(jax.random.split(KEY, 3)))  # raw uint32 keys: slicing to 0 works
YS = np.array([1, 0, 2], np.int32)
FAM = ("contrast",)  # the cheapest family to compile; every family takes the same arguments
MAG = np.abs(np.sin(np.arange(2 * 4 * 5, dtype=np.float32))).reshape(2, 4, 5)
GX, GY = np.cos(MAG), np.sin(MAG)

bad_images = st.sampled_from([IMAGES[0], IMAGES[..., 0], np.zeros((3, 6, 6, 2), np.float32),
                              np.zeros((3, 2, 6, 1), np.float32), IMAGES.astype(np.int32), [[1.0]], None])
bad_families = st.sampled_from([(), ("blur", "blur"), ("fog",), "blur", None, (3,), ["Blur"]])
_AUG = f"{MM}.crafted_augment"
_VAL = f"{MM}.crafted_validation_set"
_EDGE = f"{MM}.crafted_edge_map"
_THIN = f"{MM}.crafted_thin_edges"
_FOLDS = f"{MM}.crafted_folds"

case(_AUG, "images", bad_images)(lambda v: fn(_AUG)(v, KEYS, FAM))
case(_AUG, "keys", st.sampled_from([KEYS[:2], KEYS[None], KEYS[:, :1], np.zeros(3, np.float32)]))(
    lambda v: fn(_AUG)(IMAGES, v, FAM))
case(_AUG, "families", bad_families)(lambda v: fn(_AUG)(IMAGES, KEYS, v))
case(_VAL, "images", bad_images)(lambda v: fn(_VAL)(v, YS, KEY, FAM))
case(_VAL, "labels", st.sampled_from([YS[:2], YS[None], YS.astype(np.float32), [1, 0, 2]]))(
    lambda v: fn(_VAL)(IMAGES, v, KEY, FAM))
case(_VAL, "families", bad_families)(lambda v: fn(_VAL)(IMAGES, YS, KEY, v))
case(f"{MM}.crafted_sobel_magnitude", "images", bad_images)(lambda v: fn(f"{MM}.crafted_sobel_magnitude")(v))
case(_EDGE, "images", bad_images)(lambda v: fn(_EDGE)(v))
case(_EDGE, "sigma", st.one_of(st.floats(max_value=-1e-6, allow_infinity=False), st.floats(min_value=10.001),
                               st.just(float("nan"))))(lambda v: fn(_EDGE)(IMAGES, sigma=v))
case(_EDGE, "low", nonpositive)(lambda v: fn(_EDGE)(IMAGES, low=v))
case(_EDGE, "high", st.one_of(nonpositive, st.floats(min_value=1e-6, max_value=0.49)))(
    lambda v: fn(_EDGE)(IMAGES, low=0.5, high=v))
for _name, _bad in (("magnitude", [MAG[0], MAG[None], [[1.0]]]), ("gx", [GX[:1], GX[..., :2], GX[0]]),
                    ("gy", [GY[:1], GY[:, :2], GY[0]])):
  case(_THIN, _name, st.sampled_from(_bad))(
      lambda v, _n=_name: fn(_THIN)(**{"magnitude": MAG, "gx": GX, "gy": GY, _n: v}))
case(_FOLDS, "k", st.one_of(st.integers(max_value=1), st.integers(min_value=11), st.floats(allow_nan=True),
                            st.booleans()))(lambda v: fn(_FOLDS)(v))
case(_FOLDS, "families", st.sampled_from([(), ("blur",), ("blur", "blur"), ("fog", "blur"), "blur", None]))(
    lambda v: fn(_FOLDS)(2, v))

_IMAGE_RANGES = st.sampled_from([IMAGES * 1e30, IMAGES * 1e-30, IMAGES.astype(np.float16), IMAGES * -3.0])
_FAMILIES = "a sequence of family names, checked by a Case"

SPECS += [
    Spec(_AUG, dict(images=IMAGES, keys=KEYS, families=FAM), floats=("images",), jit=True,
         batch=("images", "keys"), keys=("keys",), ranges={"images": _IMAGE_RANGES},
         not_applicable={"families": _FAMILIES,
                         "keys": "one jax.random key per image (Spec.keys), neither floats nor labels"}),
    Spec(_VAL, dict(images=IMAGES, labels=YS, key=KEY, families=FAM), floats=("images",), jit=True,
         batch=("images", "labels"), keys=("key",), ranges={"images": _IMAGE_RANGES},
         not_applicable={"families": _FAMILIES,
                         "labels": "copied with their images, never indexed: any integer ids (shape and dtype: "
                                   "a Case)"}),
    Spec(f"{MM}.crafted_sobel_magnitude", dict(images=IMAGES), floats=("images",), jit=True, batch=("images",),
         ranges={"images": _IMAGE_RANGES}),
    Spec(_EDGE, dict(images=IMAGES, sigma=1.0, low=0.5, high=1.5), floats=("images",), jit=True,
         batch=("images",), numbers=("sigma", "low", "high"), ranges={"images": _IMAGE_RANGES}),
    Spec(_THIN, dict(magnitude=MAG, gx=GX, gy=GY), floats=("magnitude", "gx", "gy"), jit=True,
         batch=("magnitude", "gx", "gy"),
         ranges={"magnitude": st.sampled_from([MAG * 1e30, MAG * 1e-30, MAG.astype(np.float16)])}),
    Spec(_FOLDS, dict(k=2, families=("blur", "color", "edges")), numbers=("k",),
         not_applicable={"families": _FAMILIES}),
]

EXEMPT: dict[str, str] = {}
