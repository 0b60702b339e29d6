"""Input-policy declarations for `jaxdyn.data` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations


import jax
import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

DATA = "jaxdyn.data"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

case(f"{DATA}.load_dataset", "name", st.text(max_size=12).filter(lambda s: s not in ("mnist1d", "digits", "synthetic")))(
    lambda v: fn(f"{DATA}.load_dataset")(v))
case(f"{DATA}.check_dataset_name", "name", st.text(max_size=12).filter(lambda s: s not in ("mnist1d", "digits", "synthetic")))(
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
case(f"{DATA}.get_augmentation", "name", bad_name)(
    lambda v: fn(f"{DATA}.get_augmentation")(v))
case(f"{DATA}.random_crop_flip", "x", st.sampled_from([(4,), (4, 5), (4, 5, 5), (1, 2, 3, 4, 5)]))(
    lambda s: fn(f"{DATA}.random_crop_flip")(np.random.default_rng(0), np.ones(s, np.float32)))
case(f"{DATA}.random_crop_flip", "padding", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: fn(f"{DATA}.random_crop_flip")(np.random.default_rng(0), np.ones((2, 4, 4, 1), np.float32),
                                             padding=v))
case(f"{DATA}.ArraySource", "y", wrong_batch)(
    lambda n: fn(f"{DATA}.ArraySource")(np.zeros((B, 2), np.float32), np.zeros(n, np.int32)))

empty_source = st.integers(1, 6).map(lambda d: fn(f"{DATA}.ArraySource")(np.zeros((0, d), np.float32),
                                                                        np.zeros(0, np.int32)))
case(f"{DATA}.train_pipeline", "source", empty_source)(lambda v: fn(f"{DATA}.train_pipeline")(v, batch_size=8, seed=0))
case(f"{DATA}.eval_batches", "source", empty_source)(lambda v: list(fn(f"{DATA}.eval_batches")(v, batch_size=8)))
case(f"{DATA}.eval_batches", "batch_size", st.one_of(nonpositive_int, non_integral))(
    lambda v: list(fn(f"{DATA}.eval_batches")(_src(), batch_size=v)))
case(f"{DATA}.eval_batches", "process_index", st.one_of(st.integers(max_value=-1), st.integers(min_value=2)))(
    lambda v: list(fn(f"{DATA}.eval_batches")(_src(), batch_size=8, process_index=v, process_count=2)))
case(f"{DATA}.random_crop_flip", "rng", st.sampled_from([None, 0, "rng", KEY]))(
    lambda v: fn(f"{DATA}.random_crop_flip")(v, np.ones((2, 4, 4, 1), np.float32)))
case(f"{DATA}.ArraySource", "y", st.sampled_from([np.float32, np.float64, np.bool_]))(
    lambda d: fn(f"{DATA}.ArraySource")(np.zeros((B, 2), np.float32), np.zeros(B, d)))
case(f"{DATA}.load_dataset", "cache_dir", st.sampled_from([3, 1.5, ["a"], b"x"]))(
    lambda v: fn(f"{DATA}.load_dataset")("digits", cache_dir=v))


# --- clause specs ---------------------------------------------------------------------------------
XD = np.asarray(jax.random.normal(jax.random.key(3), (16, 2)))
YD = np.arange(16, dtype=np.int32) % C
IMG = np.asarray(jax.random.uniform(jax.random.key(4), (4, 6, 6, 2)))
_SRC_ARGS = {"x": "the source's examples: whatever they hold comes out unchanged (the floats clause checks it)",
             "y": "class ids of a source that does not know num_classes; the harness checks them against "
                  "the dataset's"}


def _pipeline_batch(x, y, **kw):
  return next(iter(fn(f"{DATA}.train_pipeline")(fn(f"{DATA}.ArraySource")(x, y), **kw)))


def _eval_batches(x, y, **kw):
  return list(fn(f"{DATA}.eval_batches")(fn(f"{DATA}.ArraySource")(x, y), **kw))


_SOURCE = "an empty source is rejected naming `source` (a Case)"
_MOVES = ("moves examples (or pixels) without computing with them: a NaN comes out wherever its element is "
          "selected, and an unselected one is legitimately absent (tests/data)")
SPECS += [
    Spec(f"{DATA}.ArraySource", dict(x=XD, y=YD), call=lambda x, y: fn(f"{DATA}.ArraySource")(x, y).gather(
        np.arange(len(y))), floats=("x",), batch=("x", "y"), empty=lambda out: len(out["y"]) == 0,
         not_applicable={"y": _SRC_ARGS["y"]}),
    Spec(f"{DATA}.train_pipeline", dict(x=XD, y=YD, batch_size=8, seed=0, process_index=0, process_count=1),
         call=_pipeline_batch, numbers=("batch_size", "seed", "process_index", "process_count"),
         not_applicable={"source": _SOURCE + "; " + _MOVES, "y": _SRC_ARGS["y"]}),
    Spec(f"{DATA}.eval_batches", dict(x=XD, y=YD, batch_size=8, process_index=0, process_count=1),
         call=_eval_batches, floats=("x",), numbers=("batch_size", "process_index", "process_count"),
         not_applicable={"source": _SOURCE, "batch": _SOURCE, "y": _SRC_ARGS["y"]}),
    Spec(f"{DATA}.random_crop_flip", dict(x=IMG, padding=2),
         call=lambda x, padding: fn(f"{DATA}.random_crop_flip")(np.random.default_rng(0), x, padding=padding),
         batch=("x",), empty=lambda out: np.shape(out) == (0, 6, 6, 2), numbers=("padding",),
         not_applicable={"rng": "a NumPy Generator, checked by a Case (not a jax.random key)", "x": _MOVES}),
    Spec(f"{DATA}.load_dataset", dict(name="digits"), call=lambda name: fn(f"{DATA}.load_dataset")(name).train.x,
         not_applicable={"data_dir": "a TFDS directory path"}),
    Spec(f"{DATA}.check_dataset_name", dict(name="digits")),
    Spec(f"{DATA}.get_augmentation", dict(name="flip")),
]

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{DATA}.Dataset": "a plain record of already-built sources",
    f"{DATA}.DatasetNotPreparedError": "an exception type",
    f"{DATA}.default_cache_dir": "takes no arguments",
}

# The text corpora (jaxdyn/data/_text.py) are declared in _data_text.py.
from tests.scale.input_policy import _data_text  # noqa: E402

CASES += _data_text.CASES
SPECS += _data_text.SPECS
EXEMPT.update(_data_text.EXEMPT)

# The paired image-text data (jaxdyn/data/_paired.py) is declared in _data_paired.py.
from tests.scale.input_policy import _data_paired  # noqa: E402

CASES += _data_paired.CASES
SPECS += _data_paired.SPECS
EXEMPT.update(_data_paired.EXEMPT)
