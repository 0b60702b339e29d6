"""Input-policy declarations for `jaxdyn.text` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

TXT = "jaxdyn.text"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

LENGTHS = np.array([13, 5, 40, 9], np.int64)
DOCS = [np.arange(n, dtype=np.uint8) for n in LENGTHS]
EQUAL_DOCS = [np.arange(6, dtype=np.int32) + i for i in range(4)]


def _dec(**kw):
  return fn(f"{TXT}.decompose")(LENGTHS, **{"kmin": 1, "kmax": 3, **kw})


def _sampler(**kw):
  return fn(f"{TXT}.VSLSampler")(**{"bucket_sizes": [16, 8, 4], "tokens_per_step": 8, "kmin": 1, **kw})


bad_lengths = st.one_of(st.integers(max_value=-1).map(lambda v: [3, v]), st.just([1.5, 2.0]), st.just([[1, 2]]))
case(f"{TXT}.decompose", "lengths", bad_lengths)(lambda v: fn(f"{TXT}.decompose")(np.asarray(v), kmin=1, kmax=3))
case(f"{TXT}.decompose", "kmin", st.one_of(st.integers(max_value=-1), st.integers(min_value=41), non_integral))(
    lambda v: _dec(kmin=v, kmax=40))
case(f"{TXT}.decompose", "kmax", st.one_of(st.integers(max_value=0), st.integers(min_value=41), non_integral))(
    lambda v: _dec(kmax=v))
case(f"{TXT}.decompose", "official_compat", st.sampled_from([0, 1, "yes", None]))(
    lambda v: _dec(official_compat=v))
case(f"{TXT}.decompose", "seed", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: _dec(seed=v))
case(f"{TXT}.BucketSource", "k", st.one_of(st.integers(max_value=0), st.integers(min_value=4), non_integral))(
    lambda v: fn(f"{TXT}.BucketSource")(DOCS, _dec(), v))
case(f"{TXT}.BucketSource", "documents", st.integers(1, 6).filter(lambda n: n != 4))(
    lambda n: fn(f"{TXT}.BucketSource")(DOCS[:1] * n, _dec(), 2))
case(f"{TXT}.BucketSource", "decomposition", st.sampled_from([None, 3, "d", LENGTHS]))(
    lambda v: fn(f"{TXT}.BucketSource")(DOCS, v, 2))
case(f"{TXT}.curriculum_odds", "curriculum", st.one_of(
    st.text(max_size=10).filter(lambda s: s not in ("grow_p2", "grow_linear", "uniform", "shrink_p2")),
    st.sampled_from([[1, 2], [1, 0, 1], [1, -1, 2], [1, np.nan, 1], [1, np.inf, 1]])))(
    lambda v: fn(f"{TXT}.curriculum_odds")(v, kmin=1, kmax=3))
case(f"{TXT}.curriculum_odds", "kmax", st.one_of(st.integers(max_value=0), non_integral))(
    lambda v: fn(f"{TXT}.curriculum_odds")("uniform", kmin=1, kmax=v))
case(f"{TXT}.curriculum_odds", "kmin", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: fn(f"{TXT}.curriculum_odds")("uniform", kmin=v, kmax=3))
case(f"{TXT}.VSLSampler", "tokens_per_step", st.one_of(nonpositive_int, st.integers(1, 100).filter(lambda n: n % 8),
                                                       non_integral))(lambda v: _sampler(tokens_per_step=v))
case(f"{TXT}.VSLSampler", "bucket_sizes", st.sampled_from([[3, 1, 0], [0, 0, 0], [-1, 8, 4], [1.5, 2.0, 3.0]]))(
    lambda v: _sampler(bucket_sizes=np.asarray(v)))
case(f"{TXT}.VSLSampler", "cycles", st.one_of(nonpositive_int, non_integral, st.booleans()))(
    lambda v: _sampler(cycles=v))
case(f"{TXT}.VSLSampler", "seed", st.one_of(st.integers(max_value=-1), non_integral))(lambda v: _sampler(seed=v))
case(f"{TXT}.VSLSampler", "kmin", st.one_of(st.integers(max_value=-1), non_integral))(lambda v: _sampler(kmin=v))
case(f"{TXT}.VSLSampler", "curriculum", st.text(max_size=8).filter(
    lambda s: s not in ("grow_p2", "grow_linear", "uniform", "shrink_p2")))(lambda v: _sampler(curriculum=v))
case(f"{TXT}.dd_dataset", "decomposition", st.sampled_from([None, 3, "d", LENGTHS]))(
    lambda v: fn(f"{TXT}.dd_dataset")(DOCS, v, tokens_per_step=8))
case(f"{TXT}.dd_dataset", "tokens_per_step", st.one_of(nonpositive_int, st.integers(1, 100).filter(lambda n: n % 8)))(
    lambda v: fn(f"{TXT}.dd_dataset")(DOCS, _dec(), tokens_per_step=v))
case(f"{TXT}.dd_dataset", "documents", st.integers(1, 6).filter(lambda n: n != 4))(
    lambda n: fn(f"{TXT}.dd_dataset")(DOCS[:1] * n, _dec(), tokens_per_step=8))
case(f"{TXT}.concat_and_chunk", "seq_len", bad_count)(lambda v: fn(f"{TXT}.concat_and_chunk")(DOCS, v))
case(f"{TXT}.concat_and_chunk", "eos_id", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: fn(f"{TXT}.concat_and_chunk")(DOCS, 4, eos_id=v))
case(f"{TXT}.concat_and_chunk", "documents", st.sampled_from([[], "abc", [np.ones((2, 2), np.int32)],
                                                              [np.ones(3, np.float32)], 3]))(
    lambda v: fn(f"{TXT}.concat_and_chunk")(v, 4))
case(f"{TXT}.concat_and_chunk", "document_mask", st.sampled_from([0, 1, "yes", None]))(
    lambda v: fn(f"{TXT}.concat_and_chunk")(DOCS, 4, document_mask=v))
case(f"{TXT}.segment_lengths", "segment_ids", st.sampled_from([(4,), (2, 2, 2), ()]))(
    lambda s: fn(f"{TXT}.segment_lengths")(np.zeros(s, np.int32)))
case(f"{TXT}.attention_flops", "lengths", bad_lengths)(lambda v: fn(f"{TXT}.attention_flops")(np.asarray(v), dim=4))
case(f"{TXT}.attention_flops", "dim", bad_count)(lambda v: fn(f"{TXT}.attention_flops")([4], dim=v))
case(f"{TXT}.attention_flops", "depth", bad_count)(lambda v: fn(f"{TXT}.attention_flops")([4], dim=4, depth=v))
case(f"{TXT}.attention_flops", "causal", st.sampled_from([0, 1, "yes", None]))(
    lambda v: fn(f"{TXT}.attention_flops")([4], dim=4, causal=v))


# --- clause specs ---------------------------------------------------------------------------------
def _picks(**kw):
  s = fn(f"{TXT}.VSLSampler")(**kw)
  return np.concatenate([np.append(idx, k) for k, idx in (next(s) for _ in range(6))]).astype(np.float64)


def _dd_first(documents, tokens_per_step, cycles, seed):
  ds = fn(f"{TXT}.dd_dataset")(documents, _dec(), tokens_per_step=tokens_per_step, cycles=cycles, seed=seed)
  return next(iter(ds))["tokens"].astype(np.float64)


_TOKENS = "token documents moved into rows, never computed with (any integer ids); their kind is checked by a Case"
SPECS += [
    Spec(f"{TXT}.decompose", dict(lengths=LENGTHS, kmin=1, kmax=3, seed=0),
         call=lambda **kw: fn(f"{TXT}.decompose")(**kw).chunk_lengths.astype(np.float64),
         batch=("lengths",), numbers=("kmin", "kmax", "seed")),
    Spec(f"{TXT}.BucketSource", dict(k=2), call=lambda k: fn(f"{TXT}.BucketSource")(DOCS, _dec(), k).gather(
        [0])["tokens"].astype(np.float64), numbers=("k",),
         not_applicable={"documents": _TOKENS, "decomposition": "a Decomposition, checked by a Case"}),
    Spec(f"{TXT}.curriculum_odds", dict(curriculum="grow_linear", kmin=1, kmax=3), numbers=("kmin", "kmax"),
         not_applicable={"curriculum": "a name or a sequence of odds, checked by Cases"}),
    Spec(f"{TXT}.VSLSampler", dict(bucket_sizes=np.array([16, 8, 4]), tokens_per_step=8, kmin=1, cycles=2, seed=3),
         call=_picks, batch=("bucket_sizes",), numbers=("tokens_per_step", "kmin", "cycles", "seed"),
         not_applicable={"curriculum": "a name or a sequence of odds, checked by a Case"}),
    Spec(f"{TXT}.dd_dataset", dict(documents=DOCS, tokens_per_step=8, cycles=1, seed=2), call=_dd_first,
         numbers=("tokens_per_step", "cycles", "seed"),
         not_applicable={"documents": _TOKENS, "decomposition": "a Decomposition, checked by a Case",
                         "curriculum": "as VSLSampler's, checked there"}),
    Spec(f"{TXT}.concat_and_chunk", dict(documents=EQUAL_DOCS, seq_len=5, eos_id=9),
         call=lambda **kw: fn(f"{TXT}.concat_and_chunk")(**kw).positions.astype(np.float64),
         batch=("documents",), numbers=("seq_len", "eos_id"), not_applicable={"documents": _TOKENS}),
    Spec(f"{TXT}.segment_lengths", dict(segment_ids=np.array([[0, 0, 1], [2, 2, 2]])),
         call=lambda **kw: fn(f"{TXT}.segment_lengths")(**kw).astype(np.float64),
         batch=("segment_ids",), empty=lambda out: np.shape(out) == (0,)),
    Spec(f"{TXT}.attention_flops", dict(lengths=np.array([4, 1, 3]), dim=8, depth=2),
         call=lambda **kw: float(fn(f"{TXT}.attention_flops")(**kw)), batch=("lengths",), empty=0.0,
         numbers=("dim", "depth")),
]

EXEMPT = {
    f"{TXT}.Decomposition": "a record of index arrays built (and checked) by decompose",
    f"{TXT}.PackedBatch": "a NamedTuple of arrays built by concat_and_chunk",
}

# --- techniques declared in their own ``_text_<technique>.py`` beside this file, merged here ----------------
import importlib as _importlib  # noqa: E402
import pathlib as _pathlib  # noqa: E402

for _path in sorted(_pathlib.Path(__file__).parent.glob("_text_*.py")):
  _mod = _importlib.import_module(f"tests.scale.input_policy.{_path.stem}")
  CASES.extend(_mod.CASES)
  SPECS.extend(_mod.SPECS)
  EXEMPT.update(_mod.EXEMPT)
