"""MaskSearch's RAMP core: salient spans, masking, the lexical retriever, the curriculum, the encoding."""

from __future__ import annotations

import builtins
import json.decoder
import keyword
import math

import numpy as np
import pytest

from jaxdyn.data import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE
from jaxdyn.text import (MASK_ID, RAMP_VOCAB_SIZE, LexicalRetriever, choose_spans, mask_spans, ramp_example,
                         salient_spans, span_curriculum, span_exact_match, unmask)


def _b(text: bytes) -> np.ndarray:
  return np.frombuffer(text, np.uint8)


def _texts(src: bytes, spans) -> list[bytes]:
  return [src[a:b] for a, b in spans]


# --- salient spans ----------------------------------------------------------------------------------
SRC = b"import os\nx = os.path.join(a, 'k', 0x1F)\nif x: print(x)\n"


def test_salient_spans_hand_example():
  # os (2x) and x (3x) repeat; import / if are keywords; print is a builtin.
  spans = salient_spans(_b(SRC))
  assert _texts(SRC, spans) == [b"path", b"join", b"a", b"'k'", b"0x1F"]
  assert spans.tolist() == [[17, 21], [22, 26], [27, 28], [30, 33], [35, 39]]
  every = salient_spans(_b(SRC), unique=False)
  assert _texts(SRC, every) == [b"os", b"x", b"os", b"path", b"join", b"a", b"'k'", b"0x1F", b"x", b"x"]


def test_salient_spans_kinds_and_max_len():
  assert _texts(SRC, salient_spans(_b(SRC), kinds=("number",))) == [b"0x1F"]
  assert _texts(SRC, salient_spans(_b(SRC), kinds=("string", "number"))) == [b"'k'", b"0x1F"]
  assert _texts(SRC, salient_spans(_b(SRC), max_len=3)) == [b"a", b"'k'"]


def test_salient_spans_soft_keywords_builtins_and_self():
  src = b"match self.v:\n    case _: type(None)\n"
  assert _texts(src, salient_spans(_b(src))) == [b"self", b"v"]


def test_salient_spans_byte_offsets_after_non_ascii():
  src = "s = '\u00e9t\u00e9'; caf\u00e9 = 25\n".encode()
  spans = salient_spans(_b(src))
  assert _texts(src, spans) == [b"s", "'\u00e9t\u00e9'".encode(), "caf\u00e9".encode(), b"25"]
  assert spans.tolist() == [[0, 1], [4, 11], [13, 18], [21, 23]]


def test_salient_spans_official_compat_counts_substrings():
  src = b"x = max(y)\n"
  assert _texts(src, salient_spans(_b(src))) == [b"x", b"y"]
  assert _texts(src, salient_spans(_b(src), official_compat=True)) == [b"y"]  # 'x' occurs inside 'max'


def test_salient_spans_on_a_real_module_are_salient_and_disjoint():
  with open(json.decoder.__file__, "rb") as f:
    src = f.read()
  spans = salient_spans(_b(src))
  assert len(spans) > 20
  assert np.all(spans[:, 1] > spans[:, 0]) and np.all(spans[1:, 0] >= spans[:-1, 1])
  texts = [t.decode() for t in _texts(src, spans)]
  assert len(set(texts)) == len(texts)
  for t in texts:
    assert len(t.encode()) <= 32 and not keyword.iskeyword(t) and t not in dir(builtins)
    assert t.isidentifier() or t[0].isdigit() or t[-1] in "'\""
    assert src.count(t.encode()) >= 1


def test_salient_spans_bad_inputs():
  with pytest.raises(ValueError, match="tokens: must be Python source"):
    salient_spans(_b(b"x = (1,\n"))
  with pytest.raises(ValueError, match="tokens: must be UTF-8"):
    salient_spans(_b(b"x = '\xff'\n"))
  with pytest.raises(ValueError, match="tokens: must hold ids"):
    salient_spans(np.array([120, 300]))
  with pytest.raises(ValueError, match="kinds"):
    salient_spans(_b(SRC), kinds=("ident",))
  with pytest.raises(ValueError, match="max_len"):
    salient_spans(_b(SRC), max_len=0)
  with pytest.raises(TypeError, match="unique"):
    salient_spans(_b(SRC), unique=1)


# --- masking ----------------------------------------------------------------------------------------
def test_choose_spans_draws_k_distinct_and_official_compat_may_draw_fewer():
  spans = np.array([[0, 1], [3, 5], [7, 8]])
  sizes = {len(choose_spans(spans, 3, seed=s, official_compat=True)) for s in range(40)}
  assert sizes <= {1, 2, 3} and min(sizes) < 3  # with replacement: P(3 distinct of 3) = 6/27
  for s in range(20):
    out = choose_spans(spans, 2, seed=s)
    assert out.shape == (2, 2) and np.all(np.diff(out[:, 0]) > 0)
    assert {tuple(r) for r in out} <= {tuple(r) for r in spans}
  assert np.array_equal(choose_spans(spans, 2, seed=5), choose_spans(spans, 2, seed=5))
  # Over seeds, every pair of the three is drawn (uniform without replacement).
  pairs = {tuple(map(tuple, choose_spans(spans, 2, seed=s))) for s in range(60)}
  assert len(pairs) == 3
  with pytest.raises(ValueError, match=r"k: must be at most the number of spans \(3\)"):
    choose_spans(spans, 4, seed=0)


def test_mask_and_unmask_round_trip():
  src = _b(SRC)
  spans = salient_spans(src)
  chosen = choose_spans(spans, 3, seed=1)
  m = mask_spans(src, chosen)
  assert int(np.sum(m.tokens == MASK_ID)) == 3
  assert len(m.tokens) == len(src) - int(np.sum(chosen[:, 1] - chosen[:, 0])) + 3
  assert [bytes(a.astype(np.uint8)) for a in m.answers] == _texts(SRC, chosen)
  assert np.array_equal(unmask(m.tokens, m.answers), src)
  hand = mask_spans(np.array([1, 2, 3, 4, 5, 6]), [[0, 1], [3, 5]], mask_id=9)
  assert hand.tokens.tolist() == [9, 2, 3, 9, 6] and [a.tolist() for a in hand.answers] == [[1], [4, 5]]


def test_mask_spans_bad_inputs():
  with pytest.raises(ValueError, match="tokens: must not contain mask_id"):
    mask_spans(np.array([1, 9]), [[0, 1]], mask_id=9)
  with pytest.raises(ValueError, match="spans: must be sorted, disjoint"):
    mask_spans(np.arange(6), [[2, 4], [3, 5]])
  with pytest.raises(ValueError, match="spans: must lie within the 6 tokens"):
    mask_spans(np.arange(6), [[2, 7]])
  with pytest.raises(ValueError, match="answers: must have one entry per mask id"):
    unmask(np.array([MASK_ID, 1]), [])


# --- retrieval --------------------------------------------------------------------------------------
PASSAGES = ["def parse_header(line): return line.split(':')",
            "class Scanner: def scan_once(self, text, idx): pass",
            "def scan_once(text, idx): return text[idx]",
            "import struct; struct.unpack('<I', data)"]


def test_retriever_returns_the_exact_match_first():
  r = LexicalRetriever(PASSAGES, groups=[0, 1, 2, 3])
  for j, p in enumerate(PASSAGES):
    idx, scores = r.search(p, 4)
    assert idx[0] == j and scores[0] == pytest.approx(1.0)
    assert np.all(np.diff(scores) <= 0)
  idx, _ = r.search(_b(b"x = struct.\x00unpack(fmt)"), 1)
  assert idx.tolist() == [3]


def test_retriever_never_returns_the_own_document():
  groups = [0, 5, 5, 7]
  r = LexicalRetriever(PASSAGES, groups=groups)
  for j, p in enumerate(PASSAGES):
    for n in (1, 2, 4):
      idx, _ = r.search(p, n, exclude=groups[j])
      assert groups[j] not in [groups[i] for i in idx]
      assert len(idx) == min(n, sum(g != groups[j] for g in groups))
  # Scanning text: its best passage (index 1 or 2) is its own document 5, so the next best comes back.
  idx, _ = r.search("scan_once text idx", 1, exclude=5)
  assert idx.tolist() != [1] and idx.tolist() != [2]


def test_retriever_scores_are_tfidf_cosines():
  r = LexicalRetriever(["a b", "a c"])
  idf_a, idf_b = 1.0, math.log(3 / 2) + 1.0  # smooth idf: ln((1 + N) / (1 + df)) + 1
  s = r.scores("b")
  assert s.tolist() == pytest.approx([idf_b / math.hypot(idf_a, idf_b), 0.0])
  # Mask ids in a token query are read as spaces: "a<MASK>b" is the query "a b".
  assert r.scores(np.array([97, MASK_ID, 98])).tolist() == pytest.approx(r.scores("a b").tolist())


def test_retriever_bad_inputs():
  with pytest.raises(ValueError, match="passages: must not be empty"):
    LexicalRetriever([])
  with pytest.raises(ValueError, match="passages: must hold at least one word"):
    LexicalRetriever(["  ", "!!"])
  with pytest.raises(ValueError, match=r"groups: must have one entry per passage \(2\)"):
    LexicalRetriever(["a", "b"], groups=[0])
  r = LexicalRetriever(["a", "b"])
  with pytest.raises(ValueError, match="n: must be an int"):
    r.search("a", 0)


# --- curriculum -------------------------------------------------------------------------------------
def test_span_curriculum_stages():
  assert [span_curriculum(t, 100) for t in (0, 24, 25, 49, 50, 74, 75, 99, 100, 500)] == [1, 1, 2, 2, 3, 3, 4, 4, 4, 4]
  assert [span_curriculum(t, 10, max_spans=3, min_spans=2) for t in range(10)] == [2] * 5 + [3] * 5
  assert [span_curriculum(t, 7, max_spans=2, min_spans=2) for t in range(7)] == [2] * 7
  assert [span_curriculum(t, 3, max_spans=4) for t in range(3)] == [1, 2, 3]  # fewer steps than stages
  with pytest.raises(ValueError, match="max_spans"):
    span_curriculum(0, 10, max_spans=1, min_spans=2)
  with pytest.raises(ValueError, match="step"):
    span_curriculum(-1, 10)


# --- encoding ---------------------------------------------------------------------------------------
def test_ramp_example_layout_and_weights():
  masked = np.array([7, MASK_ID, 8, MASK_ID])
  answers = [np.array([1, 2]), np.array([3])]
  passages = [np.array([40, 41, 42]), np.array([50, 51])]
  ex = ramp_example(masked, answers, passages, seq_len=16)
  seq = [BOS_ID, 40, 41, 42, EOS_ID, 50, 51, EOS_ID, 7, MASK_ID, 8, MASK_ID, MASK_ID, 1, 2, MASK_ID, 3, EOS_ID]
  # 18 tokens do not fit in 17: the second passage is cut to one token.
  seq = seq[:6] + seq[7:]
  assert ex.inputs.tolist() == seq[:-1] and ex.targets.tolist() == seq[1:]
  # Weighted: answer 1's bytes 1, 2 and its end (the next mask), answer 2's byte 3 and the final EOS.
  assert ex.answer_ids.tolist() == [0] * 11 + [1, 1, 1, 2, 2]
  assert np.array_equal(ex.weights, (ex.answer_ids > 0).astype(np.float32))
  assert ex.targets[ex.weights > 0].tolist() == [1, 2, MASK_ID, 3, EOS_ID]


def test_ramp_example_weights_only_on_answers_and_budget():
  rng = np.random.default_rng(0)
  src = _b(SRC)
  m = mask_spans(src, choose_spans(salient_spans(src), 2, seed=3))
  passages = [rng.integers(0, 256, n) for n in (30, 50, 70)]
  for seq_len, passage_len in ((128, None), (128, 20), (200, 40), (len(m.tokens) + 12, None)):
    ex = ramp_example(m.tokens, list(m.answers), passages, seq_len=seq_len, passage_len=passage_len)
    w = ex.weights > 0
    assert all(v.shape == (seq_len,) for v in ex)
    assert int(w.sum()) == sum(len(a) + 1 for a in m.answers)
    for i, a in enumerate(m.answers):
      assert ex.targets[ex.answer_ids == i + 1].tolist() == a.tolist() + [MASK_ID if i == 0 else EOS_ID]
    # Nothing else is weighted: not the passages, the masked text, the first delimiter or the padding.
    first = int(np.flatnonzero(w)[0])
    assert ex.targets[first - 1] == MASK_ID and not w[:first].any()
    assert not w[ex.targets == PAD_ID].any()
    # The masked text sits right before the first delimiter, whole.
    assert ex.targets[first - 1 - len(m.tokens):first - 1].tolist() == m.tokens.tolist()
    if passage_len is not None:
      head = ex.inputs[1:first - len(m.tokens)]
      between = np.split(head, np.flatnonzero(head == EOS_ID))
      assert max(len(b) for b in between) <= passage_len + 1
  plain = ramp_example(m.tokens, list(m.answers), seq_len=128)
  assert plain.inputs[0] == BOS_ID and plain.inputs[1:1 + len(m.tokens)].tolist() == m.tokens.tolist()
  assert RAMP_VOCAB_SIZE == VOCAB_SIZE + 1 == MASK_ID + 1


def test_ramp_example_bad_inputs():
  with pytest.raises(ValueError, match=r"seq_len: must hold the masked text and its answers \(6 tokens\)"):
    ramp_example(np.array([7, MASK_ID]), [np.array([1, 2])], seq_len=5)
  with pytest.raises(ValueError, match="answers: must have one entry per mask id"):
    ramp_example(np.array([7, MASK_ID]), [np.array([1]), np.array([2])], seq_len=20)
  with pytest.raises(ValueError, match="answers: must be a non-empty sequence"):
    ramp_example(np.array([7]), [], seq_len=20)
  with pytest.raises(ValueError, match="passage_len"):
    ramp_example(np.array([MASK_ID]), [np.array([1])], seq_len=20, passage_len=0)


def test_span_exact_match():
  assert span_exact_match(np.array([1, 5, 5, 2]), np.array([1, 5, 6, 2]), np.array([0, 1, 2, 2])) == (1, 2)
  p = np.array([[3, 3, 0], [4, 4, 4]])
  t = np.array([[3, 3, 1], [4, 0, 4]])
  a = np.array([[1, 1, 0], [1, 1, 2]])
  assert span_exact_match(p, t, a) == (2, 3)  # row 0: span 1 right; row 1: span 1 wrong, span 2 right
  assert span_exact_match(p, t, np.zeros_like(a)) == (0, 0)
  with pytest.raises(ValueError, match=r"targets: must have the shape of predictions \(2, 3\), got \(2, 2\)"):
    span_exact_match(p, t[:, :2], a)


def test_encoding_round_trip_from_targets():
  src = _b(SRC)
  m = mask_spans(src, choose_spans(salient_spans(src), 4, seed=2))
  ex = ramp_example(m.tokens, list(m.answers), [src[:20]], seq_len=160)
  answers = [ex.targets[ex.answer_ids == i + 1][:-1] for i in range(len(m.answers))]
  assert np.array_equal(unmask(m.tokens, answers), src)
  assert span_exact_match(ex.targets, ex.targets, ex.answer_ids) == (4, 4)
