"""Input-policy declarations for `jaxdyn.data` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import math

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

DATA = "jaxdyn.data"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

case(f"{DATA}.load_dataset", "dataset", st.text(max_size=12).filter(lambda s: s not in ("mnist1d", "digits", "synthetic")))(
    lambda v: fn(f"{DATA}.load_dataset")(v))
case(f"{DATA}.check_dataset_name", "dataset", st.text(max_size=12).filter(lambda s: s not in ("mnist1d", "digits", "synthetic")))(
    lambda v: fn(f"{DATA}.check_dataset_name")(v))
_SRC = None


def _src():
  global _SRC
  if _SRC is None:
    _SRC = fn(f"{DATA}.ArraySource")(np.zeros((64, 2), np.float32), np.zeros(64, np.int32))
  return _SRC


case(f"{DATA}.train_pipeline", "batch_size", st.one_of(nonpositive_int, st.integers(65, 10**6)))(
    lambda v: fn(f"{DATA}.train_pipeline")(_src(), batch_size=v, seed=0))
case(f"{DATA}.train_pipeline", "process_index", st.one_of(st.integers(max_value=-1), st.integers(min_value=2)))(
    lambda v: fn(f"{DATA}.train_pipeline")(_src(), batch_size=8, seed=0, process_index=v, process_count=2))
case(f"{DATA}.train_pipeline", "augment", bad_name.filter(bool))(
    lambda v: fn(f"{DATA}.train_pipeline")(_src(), batch_size=8, seed=0, augment=v))
case(f"{DATA}.get_augmentation", "augment", bad_name)(
    lambda v: fn(f"{DATA}.get_augmentation")(v))
case(f"{DATA}.random_crop_flip", "x", st.sampled_from([(4,), (4, 5), (4, 5, 5), (1, 2, 3, 4, 5)]))(
    lambda s: fn(f"{DATA}.random_crop_flip")(np.random.default_rng(0), np.ones(s, np.float32)))
case(f"{DATA}.random_crop_flip", "padding", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: fn(f"{DATA}.random_crop_flip")(np.random.default_rng(0), np.ones((2, 4, 4, 1), np.float32),
                                             padding=v))
case(f"{DATA}.ArraySource", "y", wrong_batch)(
    lambda n: fn(f"{DATA}.ArraySource")(np.zeros((B, 2), np.float32), np.zeros(n, np.int32)))

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{DATA}.Dataset": "a plain record of already-built sources",
    f"{DATA}.DatasetNotPreparedError": "an exception type",
    f"{DATA}.default_cache_dir": "takes no arguments",
    f"{DATA}.eval_batches": "a generator over an already-validated source (covered through the harness)",
}
