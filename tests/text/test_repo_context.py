"""Tests for repository context (RepoFusion) in `jaxdyn.text._repo_context`, on a tiny synthetic repository."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdyn.data import BOS_ID, PAD_ID
from jaxdyn.text import (
    REPO_KINDS,
    Proposal,
    completion_lines,
    encode_completion,
    parse_imports,
    repo_proposals,
    split_at_point,
)

FILES = {
    "pkg/__init__.py": b'"""Pkg."""\nfrom .util import helper\n',
    "pkg/util.py": b"def helper(x):\n    return x + 1\n\ndef other():\n    pass\n",
    "pkg/core.py": (b"import os\nfrom .util import helper\n\ndef run(x):\n    # call\n    return helper(x)\n"
                    b"from .late import SECRET\nFUTURE_MARKER = 1\n"),
    "pkg/late.py": b"SECRET = 42\n",
    "pkg/core_extra.py": b"def core_helper():\n    pass\n",
    "other/core.py": b"def core():\n    return helper\n",
}
NAMES = list(FILES)
DOCS = [np.frombuffer(FILES[n], np.uint8) for n in NAMES]
PACKAGES = [n.split("/")[0] for n in NAMES]
CORE = NAMES.index("pkg/core.py")


def b(a):
  return bytes(np.asarray(a).astype(np.uint8))


def _sources(props):
  return [(p.kind, p.source) for p in props]


# --- lines and points -----------------------------------------------------------------------------
def test_completion_lines_hand_worked():
  # 0 import os | 1 from .util | 2 blank | 3 def run | 4 comment | 5 return | 6 from .late | 7 FUTURE
  assert completion_lines(DOCS[CORE]).tolist() == [0, 1, 3, 5, 6, 7]
  # byte counts with the newline: 10, 25, 12, 21, 25, 18 -> keep 12..21
  assert completion_lines(DOCS[CORE], min_bytes=12, max_bytes=21).tolist() == [3, 5, 7]


def test_split_at_point_conserves_and_stops_at_line_end():
  doc = DOCS[CORE]
  for line in completion_lines(doc):
    for column in (0, 3):
      prefix, target = split_at_point(doc, int(line), column=column)
      whole = np.concatenate([prefix, target])
      assert np.array_equal(whole, doc[:len(whole)])
      assert b(target).endswith(b"\n") and b(target).count(b"\n") == 1
  prefix, target = split_at_point(doc, 5, column=4)
  assert b(target) == b"return helper(x)\n" and b(prefix).endswith(b"# call\n    ")
  p, y = split_at_point(np.frombuffer(b"a\nxyz", np.uint8), 1, column=2)  # last line without a newline
  assert b(p) == b"a\nxy" and b(y) == b"z"


def test_parse_imports_hand_worked():
  src = np.frombuffer(b"import a.b as c, d  # note\nfrom .m import (p, q as r\nfrom ..up import z\n"
                      b"from ... import too_far\nif x:\n    from json import loads\n", np.uint8)
  assert parse_imports(src, "pkg/sub/f.py") == ("a.b", "d", "pkg.sub.m.p", "pkg.sub.m.q", "pkg.sub.m", "pkg.up.z",
                                                "pkg.up", "json.loads", "json")
  assert parse_imports(np.frombuffer(b"from . import x\n", np.uint8), "pkg/__init__.py") == ("pkg.x", "pkg")


# --- proposals ------------------------------------------------------------------------------------
def test_proposals_hand_worked_ranking():
  props = repo_proposals(DOCS, NAMES, CORE, 5, packages=PACKAGES, budget=1000)
  # imports (prefix only): pkg.util; siblings by shared identifiers with the prefix:
  # __init__ {from, import, util, helper} = 4 > util 2 > core_extra 1 > late 0; similar names: core_extra
  assert _sources(props) == [("imports", "pkg/util.py"), ("siblings", "pkg/__init__.py"),
                             ("similar_names", "pkg/core_extra.py")]
  assert all(np.array_equal(p.tokens, DOCS[NAMES.index(p.source)]) for p in props)
  props2 = repo_proposals(DOCS, NAMES, CORE, 5, packages=PACKAGES, budget=1000, max_per_kind=3)
  assert _sources(props2) == [("imports", "pkg/util.py"), ("siblings", "pkg/__init__.py"),
                              ("siblings", "pkg/core_extra.py"), ("siblings", "pkg/late.py")]
  # without packages the repository is every file: other/core.py shares all name parts with the target
  props3 = repo_proposals(DOCS, NAMES, CORE, 5, kinds=("similar_names",), max_per_kind=2)
  assert _sources(props3) == [("similar_names", "other/core.py"), ("similar_names", "pkg/core_extra.py")]


def test_imports_only_from_before_the_point():
  kinds = ("imports",)
  big = dict(packages=PACKAGES, budget=1000, max_per_kind=5, kinds=kinds)
  assert _sources(repo_proposals(DOCS, NAMES, CORE, 6, **big)) == [("imports", "pkg/util.py")]
  assert _sources(repo_proposals(DOCS, NAMES, CORE, 7, **big)) == [("imports", "pkg/util.py"),
                                                                    ("imports", "pkg/late.py")]
  assert repo_proposals(DOCS, NAMES, CORE, 1, **big) == ()  # the import on line 1 is the target itself


@pytest.mark.parametrize("content", ["head", "signatures"])
def test_no_leakage_of_the_target_files_future(content):
  doc = DOCS[CORE]
  for line in completion_lines(doc):
    for column in (0, 2):
      prefix, target = split_at_point(doc, int(line), column=column)
      future = b(doc[len(prefix):])
      props = repo_proposals(DOCS, NAMES, CORE, int(line), column=column, kinds=REPO_KINDS, budget=1000,
                             max_per_kind=10, content=content)
      for p in props:
        if p.source == "pkg/core.py":
          assert p.kind == "prior_lines"
          assert np.array_equal(p.tokens, prefix[len(prefix) - len(p.tokens):])  # a suffix of the prefix
        else:
          assert p.kind != "prior_lines"
      text = b"".join(b(p.tokens) for p in props if p.source == "pkg/core.py")
      assert b"FUTURE_MARKER" not in text and (future[:12] not in text or future[:12] in b(prefix))
      assert "pkg/core.py" not in [p.source for p in props if p.kind != "prior_lines"]


def test_budgets_and_truncation_ends():
  props = repo_proposals(DOCS, NAMES, CORE, 7, kinds=REPO_KINDS, packages=PACKAGES, budget=7, max_per_kind=10)
  prefix, _ = split_at_point(DOCS[CORE], 7)
  assert all(len(p.tokens) <= 7 for p in props)
  for p in props:
    if p.kind == "prior_lines":
      assert b(p.tokens) == b(prefix)[-7:] == b"SECRET\n"  # keeps the end, next to the hole
    else:
      assert b(p.tokens) == FILES[p.source][:7]  # keeps the start
  sig = repo_proposals(DOCS, NAMES, CORE, 5, kinds=("imports",), budget=100, content="signatures")
  assert b(sig[0].tokens) == b"def helper(x):\ndef other():\n"


def test_deterministic_under_reordering():
  perm = [4, 0, 5, 2, 3, 1]
  docs = [DOCS[i] for i in perm]
  names = [NAMES[i] for i in perm]
  pk = [PACKAGES[i] for i in perm]
  a = repo_proposals(DOCS, NAMES, CORE, 5, packages=PACKAGES, kinds=REPO_KINDS, max_per_kind=10)
  c = repo_proposals(docs, names, names.index("pkg/core.py"), 5, packages=pk, kinds=REPO_KINDS, max_per_kind=10)
  assert _sources(a) == _sources(c) and all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, c))
  kinds = ("similar_names", "siblings")
  d = repo_proposals(DOCS, NAMES, CORE, 5, packages=PACKAGES, kinds=kinds, max_per_kind=10)
  assert _sources(d) == [("similar_names", "pkg/core_extra.py"), ("siblings", "pkg/__init__.py"),
                         ("siblings", "pkg/util.py"), ("siblings", "pkg/late.py")]


# --- encoding -------------------------------------------------------------------------------------
def _prop(kind, source, n, start=100):
  return Proposal(kind, source, np.arange(start, start + n, dtype=np.int32))


P1, P2 = _prop("imports", "a.py", 10), _prop("siblings", "b.py", 10, 120)  # blocks: 1+16+10 = 27, 1+17+10 = 28
PREFIX = np.arange(50, dtype=np.int32) + 1
TARGET = np.array([65, 66, 67, 68, 10], np.int32)


def _sequence(e):
  return np.append(e.inputs[:e.length], e.targets[e.length - 1])


def test_encoding_token_conservation_and_weights():
  e = encode_completion([P1, P2], PREFIX, TARGET, seq_len=200)
  head1 = np.frombuffer(b"# imports: a.py\n", np.uint8).astype(np.int32)
  head2 = np.frombuffer(b"# siblings: b.py\n", np.uint8).astype(np.int32)
  expected = np.concatenate([[BOS_ID], head1, P1.tokens, [BOS_ID], head2, P2.tokens, [BOS_ID], PREFIX, TARGET])
  assert np.array_equal(_sequence(e), expected)
  assert (e.length, e.num_context, e.num_prefix, e.num_target) == (len(expected) - 1, 55, 50, 5)
  assert np.array_equal(e.inputs[1:e.length], e.targets[:e.length - 1])
  assert (e.inputs[e.length:] == PAD_ID).all() and (e.targets[e.length:] == PAD_ID).all()
  w = np.zeros(200, np.float32)
  w[e.length - 5:e.length] = 1.0
  assert np.array_equal(e.weights, w) and np.array_equal(e.targets[e.weights == 1], TARGET)


@pytest.mark.parametrize("seq_len,reserve,ctx,pre", [
    (100, 20, 55, 40),  # room 95: both blocks (55), the prefix gets the remaining 40
    (70, 20, 27, 38),   # room 65, free 45: P1 (27) fits, P2 needs 19 of 18 left -> dropped
    (72, 20, 47, 20),   # room 67, free 47: P1, then P2 cut to its 20 first tokens
    (40, 0, 27, 8),     # room 35: P1, P2 dropped, prefix 8
    (40, 50, 0, 35),    # the reserve takes the whole room: no proposal
    (300, 0, 55, 50),   # everything fits
])
def test_encoding_cut_order(seq_len, reserve, ctx, pre):
  e = encode_completion([P1, P2], PREFIX, TARGET, seq_len=seq_len, prefix_reserve=reserve)
  assert (e.num_context, e.num_prefix) == (ctx, pre)
  assert e.length == ctx + 1 + pre + 5 - 1 <= seq_len
  s = _sequence(e)
  full = np.concatenate([[BOS_ID], np.frombuffer(b"# imports: a.py\n", np.uint8), P1.tokens, [BOS_ID],
                         np.frombuffer(b"# siblings: b.py\n", np.uint8), P2.tokens]).astype(np.int32)
  assert np.array_equal(s[:ctx], full[:ctx])  # proposals keep their start
  assert s[ctx] == BOS_ID and np.array_equal(s[ctx + 1:ctx + 1 + pre], PREFIX[50 - pre:])  # the prefix its end
  assert np.array_equal(s[-5:], TARGET) and e.weights.sum() == 5


def test_no_context_encoding_is_prefix_only():
  e = encode_completion([], PREFIX, TARGET, seq_len=30)
  assert np.array_equal(_sequence(e), np.concatenate([[BOS_ID], PREFIX[-25:], TARGET]))
  assert e.num_context == 0 and e.length == 30


def test_end_to_end_on_the_repository():
  prefix, target = split_at_point(DOCS[CORE], 5)
  props = repo_proposals(DOCS, NAMES, CORE, 5, packages=PACKAGES, budget=16)
  e = encode_completion(props, prefix, target, seq_len=256, prefix_reserve=32)
  text = b(_sequence(e)[_sequence(e) < 256])
  assert text.startswith(b"# imports: pkg/util.py\ndef helper(x):\n ")
  assert text.endswith(b"# call\n    return helper(x)\n")
  assert b"FUTURE_MARKER" not in text and b"SECRET" not in text


# --- bad inputs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,err,msg", [
    (dict(kinds=("imports", "post_lines")), ValueError, "kinds"),
    (dict(kinds=("imports", "imports")), ValueError, "kinds"),
    (dict(kinds="imports"), TypeError, "kinds"),
    (dict(budget=0), ValueError, "budget"),
    (dict(max_per_kind=0), ValueError, "max_per_kind"),
    (dict(content="tail"), ValueError, "content"),
    (dict(column=99), ValueError, "column"),
    (dict(line=8), ValueError, "line"),
    (dict(target=6), ValueError, "target"),
    (dict(target=1.0), ValueError, "target"),
    (dict(packages=PACKAGES[:2]), ValueError, "packages"),
    (dict(names=NAMES[:3]), ValueError, "names"),
    (dict(names=["a.py"] * 6), ValueError, "names"),
    (dict(names="abc"), TypeError, "names"),
    (dict(documents=[np.ones(3, np.float32)] * 6), ValueError, "documents"),
])
def test_proposals_bad_inputs(kw, err, msg):
  args = dict(documents=DOCS, names=NAMES, target=CORE, line=5, packages=PACKAGES)
  args.update(kw)
  with pytest.raises(err, match=f"^{msg}"):
    repo_proposals(**args)


@pytest.mark.parametrize("kw,err,msg", [
    (dict(target=np.zeros(0, np.int32)), ValueError, "target"),
    (dict(seq_len=5), ValueError, "seq_len"),
    (dict(seq_len=0), ValueError, "seq_len"),
    (dict(prefix_reserve=-1), ValueError, "prefix_reserve"),
    (dict(sep_id=-1), ValueError, "sep_id"),
    (dict(proposals=[("imports", "a.py", np.ones(2, np.int32))]), TypeError, "proposals"),
    (dict(proposals=P1), TypeError, "proposals"),
    (dict(prefix=np.ones((2, 2), np.int32)), ValueError, "prefix"),
])
def test_encoding_bad_inputs(kw, err, msg):
  args = dict(proposals=[P1], prefix=PREFIX, target=TARGET, seq_len=64)
  args.update(kw)
  with pytest.raises(err, match=f"^{msg}"):
    encode_completion(**args)


def test_lines_bad_inputs():
  with pytest.raises(ValueError, match="^max_bytes"):
    completion_lines(DOCS[0], min_bytes=5, max_bytes=4)
  with pytest.raises(ValueError, match="^tokens"):
    split_at_point(np.zeros(0, np.uint8), 0)
  with pytest.raises(TypeError, match="^name"):
    parse_imports(DOCS[0], 3)
