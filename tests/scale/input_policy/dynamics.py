"""Input-policy declarations for `jaxdyn.dynamics` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import math

import jax
import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

DYN = "jaxdyn.dynamics"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

# --- dynamics -------------------------------------------------------------------------------------
Z = np.asarray(jax.random.normal(jax.random.key(1), (16, 3)))
bad_points = st.sampled_from([(16,), (1, 3), (16, 0), (2, 3, 4), ()])
bad_sigma = st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.just(math.nan), st.just(math.inf))
for name in ("gaussian_affinity", "diffusion_kernel", "diffusion_spectral_entropy"):
  f = f"{DYN}.{name}"
  case(f, "sigma", bad_sigma)(lambda v, f=f: fn(f)(Z, sigma=v))
  # One point has a 1x1 affinity and kernel; its spectral entropy needs two.
  shapes = bad_points if name == "diffusion_spectral_entropy" else bad_points.filter(lambda s: s != (1, 3))
  case(f, "Z", shapes)(lambda s, f=f: fn(f)(np.ones(s, np.float32)))
case(f"{DYN}.diffusion_spectral_entropy", "t", bad_count)(lambda v: fn(f"{DYN}.diffusion_spectral_entropy")(Z, t=v))
case(f"{DYN}.diffusion_spectral_entropy", "method", bad_name)(
    lambda v: fn(f"{DYN}.diffusion_spectral_entropy")(Z, method=v))
case(f"{DYN}.diffusion_spectral_entropy", "max_n", st.one_of(st.integers(max_value=1), non_integral))(
    lambda v: fn(f"{DYN}.diffusion_spectral_entropy")(Z, max_n=v))
case(f"{DYN}.diffusion_spectral_entropy", "num_probes", bad_count)(
    lambda v: fn(f"{DYN}.diffusion_spectral_entropy")(Z, method="slq", key=KEY, num_probes=v))
case(f"{DYN}.diffusion_spectral_entropy", "key", bad_key)(
    lambda v: fn(f"{DYN}.diffusion_spectral_entropy")(Z, method="slq", key=v))
case(f"{DYN}.spectral_entropy", "eigenvalues", st.sampled_from([(), (0,), (3, 3)]))(
    lambda s: fn(f"{DYN}.spectral_entropy")(np.ones(s, np.float32)))
case(f"{DYN}.spectral_entropy", "t", bad_count)(lambda v: fn(f"{DYN}.spectral_entropy")(np.ones(4), t=v))
K16 = np.eye(16, dtype=np.float32)
case(f"{DYN}.spectral_entropy_slq", "K", st.sampled_from([(16, 15), (16,), (1, 1)]))(
    lambda s: fn(f"{DYN}.spectral_entropy_slq")(np.ones(s, np.float32), key=KEY))
for arg in ("num_probes", "lanczos_steps", "head_blocks"):
  case(f"{DYN}.spectral_entropy_slq", arg, bad_count)(
      lambda v, arg=arg: fn(f"{DYN}.spectral_entropy_slq")(K16, key=KEY, **{arg: v}))
case(f"{DYN}.spectral_entropy_slq", "key", bad_key)(lambda v: fn(f"{DYN}.spectral_entropy_slq")(K16, key=v))
Y16 = np.arange(16) % 3


def _dsmi(**kw):
  kw = {"key": KEY, **kw}
  return fn(f"{DYN}.diffusion_spectral_mutual_information")(Z, kw.pop("Y", Y16), **kw)


case(f"{DYN}.diffusion_spectral_mutual_information", "Y", st.integers(1, 40).filter(lambda n: n != 16))(
    lambda n: _dsmi(Y=np.arange(n) % 3))
case(f"{DYN}.diffusion_spectral_mutual_information", "num_repeats", bad_count)(lambda v: _dsmi(num_repeats=v))
case(f"{DYN}.diffusion_spectral_mutual_information", "sigma", bad_sigma)(lambda v: _dsmi(sigma=v))
case(f"{DYN}.diffusion_spectral_mutual_information", "y_kind", bad_name)(lambda v: _dsmi(y_kind=v))
case(f"{DYN}.diffusion_spectral_mutual_information", "key", bad_key)(lambda v: _dsmi(key=v))
case(f"{DYN}.reference_classes", "kind", bad_name)(lambda v: fn(f"{DYN}.reference_classes")(Y16, kind=v))
case(f"{DYN}.reference_classes", "num_bins", bad_count)(
    lambda v: fn(f"{DYN}.reference_classes")(Z[:, 0], kind="scalar", num_bins=v))
case(f"{DYN}.reference_classes", "num_clusters", st.one_of(bad_count, st.integers(16, 100)))(
    lambda v: fn(f"{DYN}.reference_classes")(Z, kind="vector", num_clusters=v))
case(f"{DYN}.binned_shannon_entropy", "num_bins_per_dim", bad_count)(
    lambda v: fn(f"{DYN}.binned_shannon_entropy")(Z, num_bins_per_dim=v))
case(f"{DYN}.binned_shannon_entropy", "Z", bad_points)(
    lambda s: fn(f"{DYN}.binned_shannon_entropy")(np.ones(s, np.float32)))
case(f"{DYN}.knn_mutual_information_discrete", "k", bad_count)(
    lambda v: fn(f"{DYN}.knn_mutual_information_discrete")(Z, Y16, k=v))
case(f"{DYN}.knn_mutual_information_discrete", "labels", st.integers(1, 40).filter(lambda n: n != 16))(
    lambda n: fn(f"{DYN}.knn_mutual_information_discrete")(Z, np.arange(n) % 3))
case(f"{DYN}.ksg_mutual_information", "k", st.one_of(bad_count, st.integers(16, 100)))(
    lambda v: fn(f"{DYN}.ksg_mutual_information")(Z, Z, k=v))
case(f"{DYN}.ksg_mutual_information", "Y", st.integers(1, 40).filter(lambda n: n != 16))(
    lambda n: fn(f"{DYN}.ksg_mutual_information")(Z, np.ones((n, 2), np.float32)))


def _mine(**kw):
  kw = {"key": KEY, **kw}
  return fn(f"{DYN}.mine_mutual_information")(Z, Z, **kw)


case(f"{DYN}.mine_mutual_information", "learning_rate", bad_sigma)(lambda v: _mine(learning_rate=v))
case(f"{DYN}.mine_mutual_information", "ema_rate", st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.000001),
                                                             st.just(math.nan)))(lambda v: _mine(ema_rate=v))
case(f"{DYN}.mine_mutual_information", "steps", bad_count)(lambda v: _mine(steps=v))
case(f"{DYN}.mine_mutual_information", "batch_size", bad_count)(lambda v: _mine(batch_size=v))
case(f"{DYN}.mine_mutual_information", "hidden", st.tuples(st.integers(1, 8), nonpositive_int))(
    lambda v: _mine(hidden=v))
case(f"{DYN}.mine_mutual_information", "key", bad_key)(lambda v: _mine(key=v))
case(f"{DYN}.mine_mutual_information", "Y", st.integers(1, 40).filter(lambda n: n != 16))(
    lambda n: fn(f"{DYN}.mine_mutual_information")(Z, np.ones((n, 2), np.float32), key=KEY))

case(f"{DYN}.diffusion_spectral_mutual_information", "method", bad_name)(lambda v: _dsmi(method=v))
case(f"{DYN}.diffusion_spectral_mutual_information", "num_probes", bad_count)(
    lambda v: _dsmi(method="slq", num_probes=v))
case(f"{DYN}.reference_classes", "seed", st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32),
                                                    non_integral, st.booleans()))(
    lambda v: fn(f"{DYN}.reference_classes")(Z, kind="vector", num_clusters=2, seed=v))


# --- clause specs ---------------------------------------------------------------------------------
# Values the checks accept that stress the numerics: bandwidths across the float64 range (the
# float32 kernel cannot even hold 1e39 or 1e-50), points scaled across the float32 range, half
# precision (no LAPACK kernels) and diffusion times up to the int32 limit.
_SIGMAS = st.one_of(st.sampled_from([1e-300, 1e-50, 1e-30, 1e-12, 1e12, 1e39, 1e300]),
                    st.floats(min_value=1e-300, max_value=1e300))


def _scaled(X, factors=(1e-38, 1e-25, 1e-12, 1e12, 1e20, 1e37), dtype=np.float32):
  X = np.asarray(X, np.float64)
  return st.sampled_from(factors).map(lambda c: (X * c).astype(dtype))


def _half(X):
  return st.sampled_from([np.asarray(X, np.float16), jax.numpy.asarray(X, jax.numpy.bfloat16)])


def _points(X, **kw):
  return st.one_of(_scaled(X, **kw), _half(X))


_TIMES = st.one_of(st.sampled_from([2**31 - 1, 10**6]), st.integers(1, 2**31 - 1))
# Small slq options: the fast path itself (not its exact fallback) runs at N = 16.
_SLQ = dict(num_probes=4, lanczos_steps=4, deflation_rank=2, subspace_iters=1, head_blocks=1)
_SLQ_NAMES = tuple(_SLQ)
LAM = np.linspace(0.05, 1.0, 8).astype(np.float32)
K16_DIFF = np.asarray(fn(f"{DYN}.diffusion_kernel")(Z, sigma=1.0))
# Continuous references: a scalar whose 3 equal-width bins are the classes of Y16 (sizes 6, 5, 5,
# so DSMI's DSEs reuse compiled shapes) and a vector of three blobs for the spectral clustering.
YF = Y16 + 0.01 * np.asarray(Z[:, 0], np.float64)
YV = 10.0 * np.eye(3)[Y16, :2] + 0.01 * np.asarray(Z[:, :2], np.float64)


def _class_ids(num_bins=None, num_clusters=None, **kw):
  """reference_classes as floats, NaN for a class id outside [0, classes): the clauses read floats."""
  kw.update({k: v for k, v in (("num_bins", num_bins), ("num_clusters", num_clusters)) if v is not None})
  ids = np.asarray(fn(f"{DYN}.reference_classes")(**kw), np.float64)
  kind = kw.get("kind", "auto")
  bound = kw.get("num_clusters", 10) if kind == "vector" else kw.get("num_bins", 10)
  return np.where((ids >= 0) & (ids < bound), ids, np.nan)


_DSE = dict(Z=Z, sigma=1.0, t=1, max_n=10000)
SPECS += [
    Spec(f"{DYN}.gaussian_affinity", dict(Z=Z, sigma=1.0), floats=("Z",), jit=True, batch=("Z",),
         numbers=("sigma",), ranges={"sigma": _SIGMAS, "Z": _points(Z)}),
    Spec(f"{DYN}.diffusion_kernel", dict(Z=Z, sigma=1.0), floats=("Z",), jit=True, batch=("Z",),
         numbers=("sigma",), ranges={"sigma": _SIGMAS, "Z": _points(Z)}),
    Spec(f"{DYN}.spectral_entropy", dict(eigenvalues=LAM, t=2), floats=("eigenvalues",), jit=True,
         batch=("eigenvalues",), numbers=("t",),
         ranges={"eigenvalues": _points(LAM, factors=(1e-30, 1e-12, 1e12, 1e30)), "t": _TIMES}),
    # The slq fast path (N = 16 > deflation_rank * head_blocks + lanczos_steps; it runs jitted even
    # when called eagerly, so the jit clause is left to the fallback below: each jit recompiles) ...
    Spec(f"{DYN}.spectral_entropy_slq", dict(K=K16_DIFF, t=1, key=KEY, **_SLQ), floats=("K",),
         batch=("K",), numbers=("t", *_SLQ_NAMES), keys=("key",),
         ranges={"K": _points(K16_DIFF, factors=(1e-30, 1e-12, 1e12, 1e30)), "t": _TIMES}),
    # ... and its exact fallback (the default options at N = 16).
    Spec(f"{DYN}.spectral_entropy_slq", dict(K=K16_DIFF, t=1, key=KEY), floats=("K",), jit=True, batch=("K",),
         ranges={"K": _points(K16_DIFF, factors=(1e-30, 1e-12, 1e12, 1e30)), "t": _TIMES}),
    Spec(f"{DYN}.diffusion_spectral_entropy", _DSE, floats=("Z",), jit=True, batch=("Z",),
         numbers=("sigma", "t", "max_n"), ranges={"sigma": _SIGMAS, "Z": _points(Z), "t": _TIMES}),
    # Under jit the slq path is checked through spectral_entropy_slq above (each jit compiles it anew).
    Spec(f"{DYN}.diffusion_spectral_entropy", dict(_DSE, method="slq", key=KEY, **_SLQ), floats=("Z",),
         batch=("Z",), numbers=("sigma", "t", "max_n", *_SLQ_NAMES), keys=("key",),
         ranges={"sigma": _SIGMAS, "Z": _points(Z), "t": _TIMES}),
    # A subsample of max_n < N rows: a NaN left out of it must still show.
    Spec(f"{DYN}.diffusion_spectral_entropy", dict(_DSE, max_n=8, key=KEY), floats=("Z",), jit=True, batch=("Z",),
         numbers=("max_n",), keys=("key",), ranges={"sigma": _SIGMAS, "Z": _points(Z)}),
    # DSMI runs on the host: non-finite points raise.
    Spec(f"{DYN}.diffusion_spectral_mutual_information",
         dict(Z=Z, Y=Y16, sigma=1.0, t=1, num_repeats=1, key=KEY, max_n=10000), floats=("Z",), batch=("Z", "Y"),
         numbers=("sigma", "t", "num_repeats", "max_n"), keys=("key",), ranges={"sigma": _SIGMAS, "Z": _points(Z)}),
    Spec(f"{DYN}.diffusion_spectral_mutual_information",
         dict(Z=Z, Y=YF, sigma=1.0, num_repeats=1, key=KEY, num_bins=3), floats=("Z", "Y"), batch=("Z", "Y"),
         numbers=("num_bins",)),
    Spec(f"{DYN}.diffusion_spectral_mutual_information",
         dict(Z=Z, Y=YV, sigma=1.0, num_repeats=1, key=KEY, num_clusters=3), floats=("Y",), batch=("Z", "Y"),
         numbers=("num_clusters",)),
    Spec(f"{DYN}.reference_classes", dict(Y=YF, kind="scalar", num_bins=4), call=_class_ids, floats=("Y",),
         batch=("Y",), numbers=("num_bins",),
         ranges={"Y": _points(YF, factors=(1e-300, 1e-30, 1e30, 1e300), dtype=np.float64)}),
    Spec(f"{DYN}.reference_classes", dict(Y=YV, kind="vector", num_clusters=3, seed=0), call=_class_ids,
         floats=("Y",), batch=("Y",), numbers=("num_clusters", "seed")),
    Spec(f"{DYN}.binned_shannon_entropy", dict(Z=Z, num_bins_per_dim=2), floats=("Z",), batch=("Z",),
         numbers=("num_bins_per_dim",),
         ranges={"Z": _points(Z, factors=(1e-300, 1e-30, 1e30, 1e300), dtype=np.float64)}),
    Spec(f"{DYN}.ksg_mutual_information", dict(X=Z, Y=Z[:, :2] + 0.5 * Z[:, 2:], k=3), floats=("X", "Y"), jit=True,
         batch=("X", "Y"), numbers=("k",), ranges={"X": _points(Z), "Y": _points(Z[:, :2])}),
    Spec(f"{DYN}.knn_mutual_information_discrete", dict(Z=Z, labels=Y16, k=3), floats=("Z",), jit=True,
         batch=("Z", "labels"), numbers=("k",), ranges={"Z": _points(Z)},
         not_applicable={"labels": "discrete labels of any value np.unique can sort (they name classes, they "
                                   "index nothing): no range to check; their shape is a Case"}),
    Spec(f"{DYN}.mine_mutual_information",
         dict(X=Z, Y=Z[:, :2], key=KEY, hidden=(4,), steps=5, batch_size=8, learning_rate=1e-3, ema_rate=0.01,
              eval_permutations=2),
         floats=("X", "Y"), batch=("X", "Y"),  # a fitting loop: non-finite data raise (its compile is slow)
         numbers=("steps", "batch_size", "learning_rate", "ema_rate", "eval_permutations"), keys=("key",),
         ranges={"X": _points(Z), "Y": _points(Z[:, :2])}),
]

# Public names with nothing to validate, each with the reason.
EXEMPT = {
}
