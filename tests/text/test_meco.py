"""MeCo: metadata prefixes, loss masks per document and per packed token, the cooldown switch, prompts."""

import numpy as np
import pytest

from jaxdyn import data, text
from jaxdyn.data import EOS_ID


def _doc(b):
  return np.frombuffer(b, np.uint8)


def test_prefix_is_the_templates_utf8_bytes():
  assert bytes(text.metadata_prefix("json")) == b"package: json\n\n"
  assert len(text.metadata_prefix("json")) == len("package: json\n\n") == 15
  # a non-ASCII name: one token per UTF-8 byte ("e-acute" is 2 bytes)
  assert bytes(text.metadata_prefix("caf\u00e9", template="{name}")) == b"caf\xc3\xa9"


def test_single_document_mask_counts_the_metadata_and_bytes_round_trip():
  doc = _doc(b"import os\n")
  seq, mask = text.meco_document(doc, "os")
  m = len(b"package: os\n\n")
  assert seq.dtype == np.int32 and mask.dtype == np.float32 and len(seq) == len(mask) == m + len(doc)
  assert int((mask == 0).sum()) == m
  assert mask[:m].tolist() == [0.0] * m and mask[m:].tolist() == [1.0] * len(doc)
  assert bytes(seq.astype(np.uint8)) == b"package: os\n\nimport os\n"
  assert bytes(seq[mask == 1].astype(np.uint8)) == bytes(doc)
  # next-token weights: target t+1 carries mask[t+1]; the first document token (b"i") is predicted
  targets, weights = seq[1:], mask[1:]
  assert int((weights == 0).sum()) == m - 1  # m_2 .. m_M (m_1 is no target)
  assert chr(int(targets[weights == 1][0])) == "i"


def test_cooldown_is_the_plain_document():
  doc = _doc(b"x = 1\n")
  seq, mask = text.meco_document(doc, "os", condition=False)
  assert seq.tolist() == doc.tolist() and mask.tolist() == [1.0] * len(doc)


def test_packed_rows_match_concat_and_chunk_of_prefixed_documents_by_hand():
  docs = [np.array([7, 8]), np.array([5])]
  b = text.meco_pack(docs, ["a", "bc"], 4, template="{name}:", eos_id=9)
  # stream: a : 7 8 9 | b c : 5 9  (11 tokens -> 2 rows of 4, 3 dropped)
  assert b.tokens.tolist() == [[97, 58, 7, 8], [9, 98, 99, 58]]
  assert b.loss_mask.tolist() == [[0, 0, 1, 1], [1, 0, 0, 0]]
  assert b.segment_ids.tolist() == [[0, 0, 0, 0], [0, 1, 1, 1]]
  assert b.positions.tolist() == [[0, 1, 2, 3], [0, 0, 1, 2]]


def test_packed_corpus_masks_each_prefix_and_keeps_segments_consistent():
  corpus = data.synthetic_documents(3, 12, min_len=5, max_len=40)
  seq_len = 64
  b = text.meco_pack(list(corpus.documents), list(corpus.packages), seq_len)
  prefixes = [text.metadata_prefix(p) for p in corpus.packages]
  stream_len = sum(len(p) + len(d) + 1 for p, d in zip(prefixes, corpus.documents))
  assert b.tokens.shape == (stream_len // seq_len, seq_len)
  flat_tokens, flat_mask = b.tokens.reshape(-1), b.loss_mask.reshape(-1)
  # walk the stream document by document: each prefix is masked, nothing else
  i = 0
  for p, d in zip(prefixes, corpus.documents):
    n = len(p) + len(d) + 1
    if i + n > len(flat_tokens):
      break
    assert int((flat_mask[i:i + n] == 0).sum()) == len(p)  # masked count = metadata length, per document
    assert flat_tokens[i:i + len(p)].tolist() == p.tolist()
    assert flat_tokens[i + len(p):i + n - 1].tolist() == d.tolist() and flat_tokens[i + n - 1] == EOS_ID
    i += n
  # a prefix starts a segment (a new piece) unless it opens a row, and shares it with its document
  for r in range(b.tokens.shape[0]):
    seg, toks = b.segment_ids[r], b.tokens[r]
    starts = np.flatnonzero(np.diff(seg)) + 1
    for s in starts:
      assert toks[s - 1] == EOS_ID and b.loss_mask[r, s] == 0  # new segment: after an EOS, at a prefix
      assert bytes(toks[s:s + 9].astype(np.uint8)) == b"package: "[:seq_len - s]
    # positions restart at every segment start
    assert all(b.positions[r, s] == 0 for s in starts)


def test_after_the_switch_no_prefix_appears_and_rows_equal_the_plain_baseline():
  corpus = data.synthetic_documents(0, 8, min_len=3, max_len=30)
  plain = text.meco_pack(list(corpus.documents), list(corpus.packages), 16, condition=False)
  base = text.concat_and_chunk(list(corpus.documents), 16)
  np.testing.assert_array_equal(plain.tokens, base.tokens)
  np.testing.assert_array_equal(plain.segment_ids, base.segment_ids)
  np.testing.assert_array_equal(plain.positions, base.positions)
  assert np.all(plain.loss_mask == 1)
  assert b"package: " not in bytes(np.where(plain.tokens < 256, plain.tokens, 0).astype(np.uint8).reshape(-1))


def test_stdlib_corpus_round_trip_and_schedule_driven_conditioning():
  corpus = data.load_stdlib_corpus("validation")
  docs, pkgs = list(corpus.documents[:5]), list(corpus.packages[:5])
  total = 20
  switch = text.meco_switch_step(total)
  assert switch == 18
  for step in (0, switch - 1, switch, total - 1):
    cond = text.meco_conditioned(step, total)
    assert cond == (step < 18)
    b = text.meco_pack(docs, pkgs, 256, condition=cond)
    joined = bytes(np.where(b.tokens < 256, b.tokens, 0).astype(np.uint8).reshape(-1))
    assert (b"package: " + pkgs[0].encode() + b"\n\n" in joined) == cond
    assert (b.loss_mask == 0).any() == cond
  # bytes round-trip of one whole document through the prefixed layout
  seq, mask = text.meco_document(docs[0], pkgs[0])
  assert bytes(seq[mask == 1].astype(np.uint8)) == bytes(docs[0])


@pytest.mark.parametrize("total,f,switch", [(40000, 0.1, 36000), (10, 0.1, 9), (15, 0.1, 13), (5, 0.1, 4),
                                            (4, 0.1, 4), (7, 0.5, 3), (10, 0.0, 10), (10, 1.0, 0)])
def test_switch_step_by_hand(total, f, switch):
  # S = T - floor(f T + 1/2): 15 * 0.1 = 1.5 -> 2 cooldown steps; 4 * 0.1 = 0.4 -> none; 7 * 0.5 = 3.5 -> 4
  assert text.meco_switch_step(total, cooldown_fraction=f) == switch
  assert [text.meco_conditioned(t, total, cooldown_fraction=f) for t in range(total)] == (
      [True] * switch + [False] * (total - switch))


def test_conditional_prompt_prepends_the_prefix_as_in_training():
  prompt = _doc(b"def f(")
  got = text.meco_prompt(prompt, "json")
  seq, mask = text.meco_document(prompt, "json")
  np.testing.assert_array_equal(got, seq)
  assert bytes(got.astype(np.uint8)) == b"package: json\n\ndef f("
  assert bytes(text.meco_prompt(np.zeros(0, np.uint8), "re").astype(np.uint8)) == b"package: re\n\n"


@pytest.mark.parametrize("template,exc", [("no field", ValueError), ("{name} {other}", ValueError), (3, TypeError)])
def test_bad_templates_raise_naming_template(template, exc):
  with pytest.raises(exc, match="template:"):
    text.metadata_prefix("os", template=template)
