"""Input-policy declarations for `jaxdyn.diffusion` and for `jaxdyn.models.DiT` (the vocabulary is in ``spec.py``).

The numbers are checked in ``tests/diffusion/``. `jaxdyn.models.DiT` is declared here, beside the family
that trains it (the completeness test reads every family module's specs by function name).
"""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import (B, C, KEY, LABELS, LOGITS, Case, Spec, bad_count, bad_rate, collector, fn,
                                           non_integral, nonpositive)

DIF = "jaxdyn.diffusion"
DIT = "jaxdyn.models.DiT"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

SIGMA = np.linspace(0.05, 20.0, B).astype(np.float32)
IMAGES = np.asarray(jax.random.normal(jax.random.key(1), (B, 4, 4, 1)))
TARGET = np.asarray(jax.random.normal(jax.random.key(2), (B, 4, 4, 1)))
KEEP = np.tile(np.array([[0, 3]], np.int32), (B, 1))  # 2 of the 4 patches of side 2
FEATS = np.asarray(jax.random.normal(jax.random.key(3), (12, 3)), np.float64)
bad_sigma_data = st.one_of(nonpositive, st.floats(min_value=1e3 + 1), st.just(math.nan), st.booleans())
bad_levels = st.one_of(st.sampled_from([0.0, -1.0]), st.just(math.nan)).map(
    lambda v: np.where(np.arange(B) == 3, v, SIGMA).astype(np.float32))
nonneg_int = st.one_of(st.integers(max_value=-1), non_integral, st.booleans())


def _exact(x, sigma):
  return x / (1.0 + sigma**2)


def _loss(**kw):
  return fn(f"{DIF}.edm_loss")(**kw)


# --- EDM ---------------------------------------------------------------------------------------------
for _name in ("edm_preconditioning", "edm_loss_weight"):
  case(f"{DIF}.{_name}", "sigma_data", bad_sigma_data)(lambda v, n=_name: fn(f"{DIF}.{n}")(SIGMA, sigma_data=v))
  case(f"{DIF}.{_name}", "sigma", bad_levels)(lambda v, n=_name: fn(f"{DIF}.{n}")(v))
case(f"{DIF}.edm_sigma_sample", "shape", st.one_of(nonneg_int, st.just((2, -1)), st.just((2.5,))))(
    lambda v: fn(f"{DIF}.edm_sigma_sample")(KEY, v))
case(f"{DIF}.edm_sigma_sample", "p_mean", st.one_of(st.floats(min_value=10.001), st.floats(max_value=-10.001),
                                                   st.just(math.nan), st.booleans()))(
    lambda v: fn(f"{DIF}.edm_sigma_sample")(KEY, 3, p_mean=v))
case(f"{DIF}.edm_sigma_sample", "p_std", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=5.001),
                                                  st.just(math.nan), st.booleans()))(
    lambda v: fn(f"{DIF}.edm_sigma_sample")(KEY, 3, p_std=v))
case(f"{DIF}.edm_loss", "sigma", bad_levels)(lambda v: _loss(denoised=IMAGES, clean=TARGET, sigma=v))
case(f"{DIF}.edm_loss", "sigma", st.integers(0, 12).filter(lambda n: n != B))(
    lambda n: _loss(denoised=IMAGES, clean=TARGET, sigma=np.ones(n, np.float32)))
case(f"{DIF}.edm_loss", "clean", st.integers(1, 6).filter(lambda n: n != 4))(
    lambda n: _loss(denoised=IMAGES, clean=np.ones((B, n, 4, 1), np.float32), sigma=SIGMA))
case(f"{DIF}.edm_loss", "sigma_data", bad_sigma_data)(
    lambda v: _loss(denoised=IMAGES, clean=TARGET, sigma=SIGMA, sigma_data=v))
case(f"{DIF}.edm_loss", "keep", st.one_of(st.integers(4, 100), st.integers(-100, -1)))(
    lambda v: _loss(denoised=IMAGES, clean=TARGET, sigma=SIGMA, keep=np.where(KEEP == 3, v, KEEP), patch_size=2))
case(f"{DIF}.edm_loss", "keep", st.sampled_from([(B, 0), (B, 5), (B,), (B - 1, 2), (B, 2, 1)]))(
    lambda shape: _loss(denoised=IMAGES, clean=TARGET, sigma=SIGMA, keep=np.zeros(shape, np.int32), patch_size=2))
case(f"{DIF}.edm_loss", "keep", st.sampled_from([np.float32, np.float64, np.bool_]))(
    lambda dt: _loss(denoised=IMAGES, clean=TARGET, sigma=SIGMA, keep=KEEP.astype(dt), patch_size=2))
case(f"{DIF}.edm_loss", "patch_size", st.one_of(bad_count, st.sampled_from([3, 5, 6, 7, 8])))(
    lambda v: _loss(denoised=IMAGES, clean=TARGET, sigma=SIGMA, keep=KEEP, patch_size=v))
case(f"{DIF}.karras_sigmas", "num_steps", bad_count)(lambda v: fn(f"{DIF}.karras_sigmas")(v))
case(f"{DIF}.karras_sigmas", "sigma_max", st.one_of(nonpositive, st.floats(min_value=1e4 + 1), st.booleans()))(
    lambda v: fn(f"{DIF}.karras_sigmas")(5, sigma_min=1e-9, sigma_max=v))
case(f"{DIF}.karras_sigmas", "sigma_min", st.one_of(nonpositive, st.floats(min_value=80.0), st.booleans()))(
    lambda v: fn(f"{DIF}.karras_sigmas")(5, sigma_min=v, sigma_max=80.0))
case(f"{DIF}.karras_sigmas", "rho",
     st.one_of(st.floats(max_value=0.0999), st.floats(min_value=100.001), st.booleans()))(
    lambda v: fn(f"{DIF}.karras_sigmas")(5, rho=v))
case(f"{DIF}.heun_sampler", "denoiser", st.sampled_from([None, 3, "exact", [1]]))(
    lambda v: fn(f"{DIF}.heun_sampler")(v, IMAGES, num_steps=3))
case(f"{DIF}.heun_sampler", "num_steps", bad_count)(lambda v: fn(f"{DIF}.heun_sampler")(_exact, IMAGES, num_steps=v))
case(f"{DIF}.heun_sampler", "noise", st.sampled_from([np.complex64, np.complex128, "0d"]))(
    lambda dt: fn(f"{DIF}.heun_sampler")(_exact, np.float32(1.0) if dt == "0d" else IMAGES.astype(dt), num_steps=3))

# --- masking -----------------------------------------------------------------------------------------
case(f"{DIF}.num_kept_patches", "num_patches", bad_count)(lambda v: fn(f"{DIF}.num_kept_patches")(v, 0.5))
case(f"{DIF}.num_kept_patches", "mask_ratio", st.one_of(bad_rate, st.booleans()))(
    lambda v: fn(f"{DIF}.num_kept_patches")(16, v))
case(f"{DIF}.random_keep_indices", "batch", nonneg_int)(lambda v: fn(f"{DIF}.random_keep_indices")(KEY, v, 16, 0.5))
case(f"{DIF}.random_keep_indices", "num_patches", bad_count)(
    lambda v: fn(f"{DIF}.random_keep_indices")(KEY, 4, v, 0.5))
case(f"{DIF}.random_keep_indices", "mask_ratio", st.one_of(bad_rate, st.booleans()))(
    lambda v: fn(f"{DIF}.random_keep_indices")(KEY, 4, 16, v))

# --- quality -----------------------------------------------------------------------------------------
case(f"{DIF}.frechet_distance", "features_b", st.integers(1, 8).filter(lambda n: n != 3))(
    lambda n: fn(f"{DIF}.frechet_distance")(FEATS, np.ones((12, n))))
case(f"{DIF}.frechet_distance", "features_a", st.sampled_from([(12,), (12, 3, 1), (1, 3), ()]))(
    lambda shape: fn(f"{DIF}.frechet_distance")(np.ones(shape), FEATS))
case(f"{DIF}.frechet_distance", "features_a", st.sampled_from([None, 3, "x", 1.5]))(
    lambda v: fn(f"{DIF}.frechet_distance")(v, FEATS))
case(f"{DIF}.conditional_accuracy", "requested", st.integers(1, 3 * B).filter(lambda n: n != B))(
    lambda n: fn(f"{DIF}.conditional_accuracy")(LOGITS, np.arange(n, dtype=np.int32) % C))
case(f"{DIF}.conditional_accuracy", "logits", st.sampled_from([(B,), (B, C, 1), ()]))(
    lambda shape: fn(f"{DIF}.conditional_accuracy")(np.ones(shape, np.float32), LABELS))

SPECS += [
    Spec(f"{DIF}.edm_preconditioning", dict(sigma=SIGMA, sigma_data=0.5), floats=("sigma",), jit=True,
         batch=("sigma",), empty=lambda out: all(np.shape(v) == (0,) for v in out), numbers=("sigma_data",)),
    Spec(f"{DIF}.edm_loss_weight", dict(sigma=SIGMA, sigma_data=0.9), floats=("sigma",), jit=True,
         batch=("sigma",), empty=lambda out: np.shape(out) == (0,), numbers=("sigma_data",)),
    Spec(f"{DIF}.edm_sigma_sample", dict(key=KEY, shape=(B,), p_mean=-1.2, p_std=1.2), keys=("key",),
         numbers=("p_mean", "p_std"), not_applicable={"shape": "a shape tuple, checked by a Case"}),
    # Every entry counts without keep: a NaN anywhere reaches the loss.
    Spec(f"{DIF}.edm_loss", dict(denoised=IMAGES, clean=TARGET, sigma=SIGMA, sigma_data=0.5),
         floats=("denoised", "clean", "sigma"), jit=True, batch=("denoised", "clean", "sigma"),
         numbers=("sigma_data",)),
    # With keep, the entries of masked patches are not read (that is the point: zero gradient there).
    Spec(f"{DIF}.edm_loss", dict(denoised=IMAGES, clean=TARGET, sigma=SIGMA, keep=KEEP, patch_size=2),
         numbers=("patch_size",), not_applicable={"keep": "integer patch indices (not class ids); range, shape "
                                                          "and dtype checked by Cases"}),
    Spec(f"{DIF}.karras_sigmas", dict(num_steps=6, sigma_min=0.002, sigma_max=80.0, rho=7.0),
         numbers=("num_steps", "sigma_min", "sigma_max", "rho"),
         ranges={"rho": st.sampled_from([0.1, 0.5, 100.0]), "sigma_max": st.sampled_from([1e-2, 1e4])}),
    Spec(f"{DIF}.heun_sampler", dict(noise=IMAGES, num_steps=4, sigma_min=0.002, sigma_max=80.0, rho=7.0),
         call=lambda **kw: fn(f"{DIF}.heun_sampler")(_exact, **kw), floats=("noise",), jit=True, batch=("noise",),
         empty=lambda out: np.shape(out) == (0, 4, 4, 1), numbers=("num_steps", "sigma_min", "sigma_max", "rho"),
         not_applicable={"denoiser": "a callable, checked by a Case"}),
    Spec(f"{DIF}.num_kept_patches", dict(num_patches=16, mask_ratio=0.75), numbers=("num_patches", "mask_ratio"),
         call=lambda **kw: float(fn(f"{DIF}.num_kept_patches")(**kw))),
    Spec(f"{DIF}.random_keep_indices", dict(key=KEY, batch=4, num_patches=16, mask_ratio=0.75), keys=("key",),
         numbers=("batch", "num_patches", "mask_ratio"),
         call=lambda **kw: fn(f"{DIF}.random_keep_indices")(**kw).astype(np.float32)),
    Spec(f"{DIF}.frechet_distance", dict(features_a=FEATS, features_b=FEATS[::-1] + 1.0),
         floats=("features_a", "features_b"), batch=("features_a", "features_b")),
    Spec(f"{DIF}.conditional_accuracy", dict(logits=LOGITS, requested=LABELS), floats=("logits",),
         labels=("requested",), jit=True, batch=("logits", "requested"),
         empty=lambda out: np.shape(out) == (C,) and np.isnan(np.asarray(out)).all()),
]
EXEMPT = {f"{DIF}.EDMScalings": "a NamedTuple of the four coefficients edm_preconditioning returns"}

# --- jaxdyn.models.DiT ---------------------------------------------------------------------------------
X8 = np.asarray(jax.random.normal(jax.random.key(4), (B, 8, 8, 1)))
NOISE = np.linspace(-1.0, 1.0, B).astype(np.float32)
_ARCH = dict(image_size=8, patch_size=2, dim=8, depth=1, num_heads=2, mlp_ratio=2)


def _dit(x=X8, noise_labels=NOISE, class_labels=LABELS, keep=None, **kw):
  arch = {"in_channels": 1, "num_classes": C, **_ARCH, "mixer_depth": 1, **kw}
  return fn(DIT)(**arch, rngs=nnx.Rngs(0))(x, noise_labels, class_labels, keep=keep)


for _arg in ("in_channels", "num_classes", "image_size", "dim", "depth", "num_heads", "mlp_ratio"):
  case(DIT, _arg, bad_count)(lambda v, a=_arg: fn(DIT)(**{"in_channels": 1, "num_classes": C, **_ARCH, a: v},
                                                      rngs=nnx.Rngs(0)))
case(DIT, "patch_size", st.sampled_from([3, 5, 6, 7]))(
    lambda v: fn(DIT)(1, C, **{**_ARCH, "patch_size": v}, rngs=nnx.Rngs(0)))
case(DIT, "num_heads", st.sampled_from([3, 5, 6, 7]))(
    lambda v: fn(DIT)(1, C, **{**_ARCH, "num_heads": v}, rngs=nnx.Rngs(0)))
case(DIT, "mixer_depth", nonneg_int)(lambda v: fn(DIT)(1, C, **_ARCH, mixer_depth=v, rngs=nnx.Rngs(0)))
case(DIT, "x", st.integers(1, 12).filter(lambda n: n != 8))(lambda n: _dit(x=np.ones((B, n, n, 1), np.float32)))
case(DIT, "noise_labels", st.integers(0, 12).filter(lambda n: n != B))(
    lambda n: _dit(noise_labels=np.zeros(n, np.float32)))
case(DIT, "keep", st.one_of(st.integers(16, 100), st.integers(-100, -1)))(
    lambda v: _dit(keep=np.tile(np.array([[0, v]], np.int32), (B, 1))))
case(DIT, "keep", st.sampled_from([(B, 0), (B, 17), (B,), (B - 1, 2)]))(lambda s: _dit(keep=np.zeros(s, np.int32)))
case(DIT, "keep", st.sampled_from([np.float32, np.float64, np.bool_]))(lambda dt: _dit(keep=np.zeros((B, 2), dt)))
_SIZES = "a structural size, checked by a Case; the NumPy-scalar clause covers dim and mixer_depth"
SPECS.append(Spec(DIT, dict(x=X8, noise_labels=NOISE, class_labels=LABELS, dim=8, mixer_depth=1), call=_dit,
                  floats=("x", "noise_labels"), labels=("class_labels",), jit=True,
                  batch=("x", "noise_labels", "class_labels"), empty=lambda out: np.shape(out) == (0, 8, 8, 1),
                  numbers=("dim", "mixer_depth"),
                  not_applicable={**{n: _SIZES for n in ("in_channels", "num_classes", "image_size", "patch_size",
                                                         "depth", "num_heads", "mlp_ratio")},
                                  "keep": "integer patch indices (not class ids); range, shape and dtype checked by "
                                          "Cases; entries of masked patches are not read"}))

# --- MotionMaster camera-motion disentanglement (jaxdyn.diffusion._camera_motion) ----------------------
FLOW = np.asarray(jax.random.normal(jax.random.key(5), (6, 7, 2)), np.float32)
MASK = np.zeros((6, 7), bool)
MASK[2:4, 2:5] = True
AFFINE = np.array([[0.1, -0.2, 1.0], [0.3, 0.05, -2.0]], np.float32)
_MASK_WHY = "a boolean region (not a float or class id); its shape and dtype are checked by Cases"
bad_iters = st.one_of(st.integers(max_value=-1), non_integral, st.booleans())
for _name, _field in (("fit_affine_flow", "flow"), ("harmonic_fill", "field"), ("disentangle_camera_motion", "flow")):
  case(f"{DIF}.{_name}", "mask", st.sampled_from([(6, 6), (5, 7), (6,), (6, 7, 1)]))(
      lambda shape, n=_name: fn(f"{DIF}.{n}")(FLOW, np.zeros(shape, bool)))
  case(f"{DIF}.{_name}", "mask", st.sampled_from([np.float32, np.int32, np.uint8]))(
      lambda dt, n=_name: fn(f"{DIF}.{n}")(FLOW, MASK.astype(dt)))
  case(f"{DIF}.{_name}", _field, st.sampled_from([(6, 7), (6,), (2, 6, 7, 2)]))(
      lambda shape, n=_name: fn(f"{DIF}.{n}")(np.zeros(shape, np.float32), MASK))
  case(f"{DIF}.{_name}", _field, st.sampled_from([np.complex64, np.complex128, "0-row"]))(
      lambda dt, n=_name: fn(f"{DIF}.{n}")(FLOW[:0] if dt == "0-row" else FLOW.astype(dt),
                                           MASK[:0] if dt == "0-row" else MASK))
for _name in ("harmonic_fill", "disentangle_camera_motion"):
  case(f"{DIF}.{_name}", "num_iters", bad_iters)(lambda v, n=_name: fn(f"{DIF}.{n}")(FLOW, MASK, num_iters=v))
  case(f"{DIF}.{_name}", "tol", st.one_of(bad_rate, st.booleans()))(
      lambda v, n=_name: fn(f"{DIF}.{n}")(FLOW, MASK, tol=v))
case(f"{DIF}.affine_flow", "params", st.sampled_from([(2, 2), (2, 4), (6,), (2, 3, 1)]))(
    lambda shape: fn(f"{DIF}.affine_flow")(np.zeros(shape, np.float32), 4, 5))
for _arg in ("height", "width"):
  case(f"{DIF}.affine_flow", _arg, bad_count)(lambda v, a=_arg: fn(f"{DIF}.affine_flow")(AFFINE, **{
      "height": 4, "width": 5, a: v}))

SPECS += [
    Spec(f"{DIF}.affine_flow", dict(params=AFFINE, height=4, width=5), floats=("params",), jit=True,
         batch=("params",), empty=lambda out: np.shape(out) == (4, 5, 0), numbers=("height", "width")),
    Spec(f"{DIF}.fit_affine_flow", dict(flow=FLOW, mask=MASK), floats=("flow",), jit=True, batch=("flow", "mask"),
         not_applicable={"mask": _MASK_WHY}),
    Spec(f"{DIF}.harmonic_fill", dict(field=FLOW, mask=MASK, num_iters=30, tol=1e-6), floats=("field",), jit=True,
         batch=("field", "mask"), numbers=("num_iters", "tol"), not_applicable={"mask": _MASK_WHY}),
    Spec(f"{DIF}.disentangle_camera_motion", dict(flow=FLOW, mask=MASK, num_iters=30, tol=1e-6), floats=("flow",),
         jit=True, batch=("flow", "mask"), numbers=("num_iters", "tol"), not_applicable={"mask": _MASK_WHY}),
]

# --- UniID normalised rescaling (jaxdyn.diffusion._identity) -------------------------------------------
F_ID = np.asarray(jax.random.normal(jax.random.key(6), (B, 3, 4)), np.float32)
F_TXT = np.asarray(jax.random.normal(jax.random.key(7), (B, 3, 4)), np.float32)
bad_scale = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=100.001), st.just(math.nan), st.booleans())
_ID_ARGS = {"normalized_rescale": ("identity", "reference"), "inject_identity": ("reference", "identity")}
for _name, (_a0, _a1) in _ID_ARGS.items():
  case(f"{DIF}.{_name}", "scale", bad_scale)(lambda v, n=_name: fn(f"{DIF}.{n}")(identity=F_ID, reference=F_TXT,
                                                                                 scale=v))
  case(f"{DIF}.{_name}", "reference", st.sampled_from([(B, 3, 5), (B, 2, 4), (B - 1, 3, 4), (B, 12)]))(
      lambda shape, n=_name: fn(f"{DIF}.{n}")(identity=F_ID, reference=np.ones(shape, np.float32)))
  case(f"{DIF}.{_name}", "identity", st.sampled_from([(4,), (B, 3, 4, 1), ()]))(
      lambda shape, n=_name: fn(f"{DIF}.{n}")(identity=np.ones(shape, np.float32),
                                              reference=np.ones(shape, np.float32)))
  SPECS.append(Spec(f"{DIF}.{_name}", dict(identity=F_ID, reference=F_TXT, scale=1.5), floats=(_a0, _a1), jit=True,
                    batch=(_a0, _a1), empty=lambda out: np.shape(out) == (0, 3, 4), numbers=("scale",),
                    ranges={"scale": st.sampled_from([0.0, 1e-3, 100.0])}))

# --- techniques declared in their own ``_diffusion_<technique>.py`` beside this file, merged here ----------
import importlib as _importlib  # noqa: E402
import pathlib as _pathlib  # noqa: E402

for _path in sorted(_pathlib.Path(__file__).parent.glob("_diffusion_*.py")):
  _mod = _importlib.import_module(f"tests.scale.input_policy.{_path.stem}")
  CASES.extend(_mod.CASES)
  SPECS.extend(_mod.SPECS)
  EXEMPT.update(_mod.EXEMPT)
