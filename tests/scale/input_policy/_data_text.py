"""Input-policy declarations for the text corpora of `jaxdyn.data` (``jaxdyn/data/_text.py``), merged in data.py."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

DATA = "jaxdyn.data"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)


def _synthetic(**kw):
  return fn(f"{DATA}.synthetic_documents")(**{"seed": 0, "n": 3, "min_len": 2, "max_len": 5, **kw})


case(f"{DATA}.load_stdlib_corpus", "split",
     st.text(max_size=10).filter(lambda s: s not in ("train", "validation", "all")))(
    lambda v: fn(f"{DATA}.load_stdlib_corpus")(v))
case(f"{DATA}.load_stdlib_corpus", "validation_fraction", st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0),
                                                                     st.just(float("nan"))))(
    lambda v: fn(f"{DATA}.load_stdlib_corpus")(validation_fraction=v))
case(f"{DATA}.load_stdlib_corpus", "root", st.sampled_from([3, 1.5, ["a"], "/nonexistent/jaxdyn-root"]))(
    lambda v: fn(f"{DATA}.load_stdlib_corpus")(root=v))
case(f"{DATA}.synthetic_documents", "seed", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: _synthetic(seed=v))
case(f"{DATA}.synthetic_documents", "n", bad_count)(lambda v: _synthetic(n=v))
case(f"{DATA}.synthetic_documents", "min_len", bad_count)(lambda v: _synthetic(min_len=v))
case(f"{DATA}.synthetic_documents", "max_len", st.one_of(st.integers(max_value=1), non_integral))(
    lambda v: _synthetic(max_len=v))
case(f"{DATA}.synthetic_documents", "vocab", st.one_of(st.integers(max_value=1), st.integers(min_value=257),
                                                       non_integral))(lambda v: _synthetic(vocab=v))
case(f"{DATA}.TextCorpus", "documents", st.sampled_from([np.int32, np.float32, np.int64]))(
    lambda dt: fn(f"{DATA}.TextCorpus")((np.zeros(3, dt),), ("a",), ("a",), "3", "synthetic", "all"))



def _tfds_text(**kw):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=3):
    return fn(f"{DATA}.load_tfds_text")(**{"name": "lm1b", **kw})


bad_name = st.sampled_from(["", None, 3, b"lm1b", ["lm1b"]])
case(f"{DATA}.load_tfds_text", "name", bad_name)(lambda v: _tfds_text(name=v))
case(f"{DATA}.load_tfds_text", "split", bad_name)(lambda v: _tfds_text(split=v))
case(f"{DATA}.load_tfds_text", "feature", st.one_of(bad_name, st.just("no_such_feature")))(
    lambda v: _tfds_text(feature=v))
case(f"{DATA}.load_tfds_text", "metadata", st.sampled_from(["", 3, b"x", "no_such_feature"]))(
    lambda v: _tfds_text(metadata=v))
case(f"{DATA}.load_tfds_text", "max_documents", bad_count)(lambda v: _tfds_text(max_documents=v))
case(f"{DATA}.load_tfds_text", "data_dir", st.sampled_from([3, 1.5, ["a"]]))(lambda v: _tfds_text(data_dir=v))

_RECORD = "a record field (a string tuple or label), stored as given"
SPECS += [
    Spec(f"{DATA}.load_tfds_text", dict(max_documents=2),
         call=lambda **kw: _tfds_text(**kw).lengths.astype(np.float64), numbers=("max_documents",),
         not_applicable={"name": "a dataset name, checked by a Case", "split": "a split name, checked by a Case",
                         "feature": "a record key, checked by a Case", "metadata": "a record key, checked by a Case",
                         "data_dir": "a directory path, checked by a Case"}),
    Spec(f"{DATA}.load_stdlib_corpus", dict(split="validation", validation_fraction=0.05),
         call=lambda **kw: fn(f"{DATA}.load_stdlib_corpus")(**kw).lengths.astype(np.float64),
         numbers=("validation_fraction",), not_applicable={"root": "a directory path, checked by a Case"}),
    Spec(f"{DATA}.synthetic_documents", dict(seed=1, n=4, min_len=2, max_len=6, vocab=10),
         call=lambda **kw: np.concatenate(fn(f"{DATA}.synthetic_documents")(**kw).documents).astype(np.float64),
         numbers=("seed", "n", "min_len", "max_len", "vocab")),
    Spec(f"{DATA}.TextCorpus", dict(documents=(np.arange(3, dtype=np.uint8),), names=("a",), packages=("a",)),
         call=lambda **kw: len(fn(f"{DATA}.TextCorpus")(**kw, python_version="3", source="synthetic", split="all")),
         not_applicable={"documents": "uint8 token arrays, checked by a Case", "names": _RECORD, "packages": _RECORD,
                         "python_version": _RECORD, "source": _RECORD, "split": _RECORD}),
]
EXEMPT: dict[str, str] = {}
