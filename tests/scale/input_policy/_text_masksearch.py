"""Input-policy declarations for MaskSearch's RAMP in `jaxdyn.text` (merged by ``text.py``; vocabulary in
``spec.py``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, collector, fn, non_integral

TXT = "jaxdyn.text"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

SRC = np.frombuffer(b"import os\nx = os.path.join(a, 'k', 0x1F)\n", np.uint8)
SPANS = np.array([[17, 21], [22, 26], [27, 28]])
MASKED = np.array([7, 259, 8, 259])
ANSWERS = [np.array([1, 2]), np.array([3, 4])]
PASSAGES = ["alpha beta", "beta gamma", "gamma delta"]

bad_tokens = st.sampled_from([np.zeros((2, 2), np.int32), np.ones(3, np.float32), np.int32(3), "abc", b"x=1"])
bad_flag = st.sampled_from([0, 1, "yes", None])
bad_nonneg = st.one_of(st.integers(max_value=-1), non_integral, st.booleans())
bad_spans = st.sampled_from([np.array([[3, 2]]), np.array([[0, 2], [1, 3]]), np.array([[-1, 2]]), np.ones((2, 3), int),
                             np.array([[0.5, 2.0]]), "spans"])

case(f"{TXT}.salient_spans", "tokens", st.one_of(bad_tokens, st.sampled_from(
    [np.array([120, 256]), np.array([-1, 120]), np.frombuffer(b"x = (1,\n", np.uint8),
     np.frombuffer(b"'\xff'\n", np.uint8)])))(lambda v: fn(f"{TXT}.salient_spans")(v))
case(f"{TXT}.salient_spans", "kinds", st.sampled_from(["name", (), ("ident",), ("name", "name"), None, [3]]))(
    lambda v: fn(f"{TXT}.salient_spans")(SRC, kinds=v))
case(f"{TXT}.salient_spans", "max_len", bad_count)(lambda v: fn(f"{TXT}.salient_spans")(SRC, max_len=v))
case(f"{TXT}.salient_spans", "unique", bad_flag)(lambda v: fn(f"{TXT}.salient_spans")(SRC, unique=v))
case(f"{TXT}.salient_spans", "official_compat", bad_flag)(
    lambda v: fn(f"{TXT}.salient_spans")(SRC, official_compat=v))
case(f"{TXT}.choose_spans", "spans", st.one_of(bad_spans, st.just(np.zeros((0, 2), int))))(
    lambda v: fn(f"{TXT}.choose_spans")(v, 1, seed=0))
case(f"{TXT}.choose_spans", "k", st.one_of(bad_count, st.integers(min_value=4)))(
    lambda v: fn(f"{TXT}.choose_spans")(SPANS, v, seed=0))
case(f"{TXT}.choose_spans", "seed", bad_nonneg)(lambda v: fn(f"{TXT}.choose_spans")(SPANS, 1, seed=v))
case(f"{TXT}.choose_spans", "official_compat", bad_flag)(
    lambda v: fn(f"{TXT}.choose_spans")(SPANS, 1, seed=0, official_compat=v))
case(f"{TXT}.mask_spans", "tokens", st.one_of(bad_tokens, st.just(np.array([1, 259]))))(
    lambda v: fn(f"{TXT}.mask_spans")(v, [[0, 1]]))
case(f"{TXT}.mask_spans", "spans", st.one_of(bad_spans, st.just(np.array([[0, 99]]))))(
    lambda v: fn(f"{TXT}.mask_spans")(SRC, v))
case(f"{TXT}.mask_spans", "mask_id", bad_nonneg)(lambda v: fn(f"{TXT}.mask_spans")(SRC, SPANS, mask_id=v))
case(f"{TXT}.unmask", "tokens", bad_tokens)(lambda v: fn(f"{TXT}.unmask")(v, []))
case(f"{TXT}.unmask", "answers", st.sampled_from([[], [np.array([1])] * 3, "ab", None, [np.ones(2, np.float32)] * 2]))(
    lambda v: fn(f"{TXT}.unmask")(MASKED, v))
case(f"{TXT}.unmask", "mask_id", bad_nonneg)(lambda v: fn(f"{TXT}.unmask")(MASKED, ANSWERS, mask_id=v))
case(f"{TXT}.LexicalRetriever", "passages",
     st.sampled_from([[], "abc", None, 3, ["  ", "!"], [np.ones(2, np.float32)]]))(
    lambda v: fn(f"{TXT}.LexicalRetriever")(v))
case(f"{TXT}.LexicalRetriever", "groups",
     st.one_of(st.integers(0, 6).filter(lambda n: n != 3).map(lambda n: list(range(n))), st.just([0.5, 1.0, 2.0]),
               st.just([[0, 1, 2]])))(
    lambda v: fn(f"{TXT}.LexicalRetriever")(PASSAGES, groups=v))
case(f"{TXT}.span_curriculum", "step", bad_nonneg)(lambda v: fn(f"{TXT}.span_curriculum")(v, 10))
case(f"{TXT}.span_curriculum", "total_steps", bad_count)(lambda v: fn(f"{TXT}.span_curriculum")(0, v))
case(f"{TXT}.span_curriculum", "max_spans", st.one_of(st.integers(max_value=1), non_integral, st.booleans()))(
    lambda v: fn(f"{TXT}.span_curriculum")(0, 10, max_spans=v, min_spans=2))
case(f"{TXT}.span_curriculum", "min_spans", bad_count)(lambda v: fn(f"{TXT}.span_curriculum")(0, 10, min_spans=v))
case(f"{TXT}.ramp_example", "masked", bad_tokens)(lambda v: fn(f"{TXT}.ramp_example")(v, ANSWERS, seq_len=32))
case(f"{TXT}.ramp_example", "answers", st.sampled_from([[], [np.array([1])], [np.array([1]), np.array([], int)],
                                                         "ab", None]))(
    lambda v: fn(f"{TXT}.ramp_example")(MASKED, v, seq_len=32))
case(f"{TXT}.ramp_example", "passages", st.sampled_from(["ab", None, 3, [np.ones((2, 2), int)]]))(
    lambda v: fn(f"{TXT}.ramp_example")(MASKED, ANSWERS, v, seq_len=32))
case(f"{TXT}.ramp_example", "seq_len", st.one_of(st.integers(max_value=9), non_integral, st.booleans()))(
    lambda v: fn(f"{TXT}.ramp_example")(MASKED, ANSWERS, seq_len=v))
case(f"{TXT}.ramp_example", "passage_len", bad_count)(
    lambda v: fn(f"{TXT}.ramp_example")(MASKED, ANSWERS, [np.arange(5)], seq_len=32, passage_len=v))
case(f"{TXT}.ramp_example", "mask_id", bad_nonneg)(lambda v: fn(f"{TXT}.ramp_example")(MASKED, ANSWERS, seq_len=32,
                                                                                      mask_id=v))
P2 = np.array([[3, 3, 0], [4, 4, 4]])
case(f"{TXT}.span_exact_match", "predictions",
     st.sampled_from([np.ones((2, 3), np.float32), np.zeros((1, 2, 3), int), "p"]))(
    lambda v: fn(f"{TXT}.span_exact_match")(v, P2, P2 % 2))
case(f"{TXT}.span_exact_match", "targets",
     st.sampled_from([np.ones((2, 2), int), np.ones((2, 3), np.float32), np.ones((3, 3), int)]))(
    lambda v: fn(f"{TXT}.span_exact_match")(P2, v, P2 % 2))
case(f"{TXT}.span_exact_match", "answer_ids", st.sampled_from([-P2, np.ones((3, 3), int), "a"]))(
    lambda v: fn(f"{TXT}.span_exact_match")(P2, P2, v))


def _retrieve(passages, groups):
  r = fn(f"{TXT}.LexicalRetriever")(passages, groups=groups)
  idx, scores = r.search("beta", 2, exclude=0)
  return np.concatenate([idx.astype(np.float64), scores])


def _ramp(**kw):
  ex = fn(f"{TXT}.ramp_example")(**kw)
  return np.concatenate([ex.targets, ex.weights]).astype(np.float64)


_TOKENS = "token ids moved into sequences, never computed with; their kind is checked by Cases"
SPECS += [
    Spec(f"{TXT}.salient_spans", dict(tokens=SRC, max_len=8),
         call=lambda **kw: fn(f"{TXT}.salient_spans")(**kw).astype(np.float64), batch=("tokens",),
         empty=lambda out: out.shape == (0, 2), numbers=("max_len",),
         not_applicable={"kinds": "a sequence of names, checked by a Case",
                         "unique": "a bool, checked by a Case", "official_compat": "a bool, checked by a Case"}),
    Spec(f"{TXT}.choose_spans", dict(spans=SPANS, k=2, seed=3),
         call=lambda **kw: fn(f"{TXT}.choose_spans")(**kw).astype(np.float64), batch=("spans",),
         numbers=("k", "seed"), not_applicable={"official_compat": "a bool, checked by a Case"}),
    Spec(f"{TXT}.mask_spans", dict(tokens=SRC, spans=SPANS, mask_id=300),
         call=lambda **kw: fn(f"{TXT}.mask_spans")(**kw).tokens.astype(np.float64), batch=("tokens", "spans"),
         empty=lambda out: out.shape == (0,), numbers=("mask_id",)),
    Spec(f"{TXT}.unmask", dict(tokens=MASKED, answers=ANSWERS, mask_id=259),
         call=lambda **kw: fn(f"{TXT}.unmask")(**kw).astype(np.float64), batch=("tokens", "answers"),
         empty=lambda out: out.shape == (0,), numbers=("mask_id",)),
    Spec(f"{TXT}.LexicalRetriever", dict(passages=PASSAGES, groups=np.array([0, 1, 2])), call=_retrieve,
         batch=("passages", "groups")),
    Spec(f"{TXT}.span_curriculum", dict(step=30, total_steps=100, max_spans=4, min_spans=1),
         call=lambda **kw: float(fn(f"{TXT}.span_curriculum")(**kw)),
         numbers=("step", "total_steps", "max_spans", "min_spans")),
    Spec(f"{TXT}.ramp_example", dict(masked=MASKED, answers=ANSWERS, passages=[np.arange(6)], seq_len=20,
                                     passage_len=4, mask_id=259), call=_ramp, batch=("masked", "answers"),
         numbers=("seq_len", "passage_len", "mask_id"), not_applicable={"passages": _TOKENS}),
    Spec(f"{TXT}.span_exact_match", dict(predictions=P2, targets=P2 * 0 + 3, answer_ids=P2 % 2),
         call=lambda **kw: np.asarray(fn(f"{TXT}.span_exact_match")(**kw), np.float64),
         batch=("predictions", "targets", "answer_ids"), empty=lambda out: out.tolist() == [0.0, 0.0]),
]

EXEMPT = {
    f"{TXT}.MaskedText": "a NamedTuple of arrays built by mask_spans",
    f"{TXT}.RampExample": "a NamedTuple of arrays built by ramp_example",
}
