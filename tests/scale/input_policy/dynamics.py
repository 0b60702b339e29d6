"""Input-policy declarations for `jaxdyn.dynamics` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
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

# Public names with nothing to validate, each with the reason.
EXEMPT = {
}
