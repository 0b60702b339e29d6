"""Input-policy declarations for repository context (RepoFusion) in `jaxdyn.text` (merged by ``text.py``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, collector, fn, non_integral

TXT = "jaxdyn.text"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

DOC = np.frombuffer(b"import os\nfrom .b import f\nx = f(1)\n", np.uint8)
DOCS = [DOC, np.frombuffer(b"def f(a):\n  return a\n", np.uint8), np.frombuffer(b"y = 2\n", np.uint8)]
NAMES = ["p/a.py", "p/b.py", "p/c.py"]


def _prop(**kw):
  return fn(f"{TXT}.Proposal")(**{"kind": "imports", "source": "p/b.py", "tokens": np.arange(3, dtype=np.int32),
                                   **kw})


bad_tokens = st.sampled_from([np.zeros((2, 2), np.int32), np.ones(3, np.float32), np.int32(3), "abc"])
bad_index = st.one_of(st.integers(max_value=-1), non_integral, st.booleans())
bad_name = st.sampled_from([3, None, b"p/a.py", ["p/a.py"]])


def _cl(**kw):
  return fn(f"{TXT}.completion_lines")(**{"tokens": DOC, **kw})


case(f"{TXT}.completion_lines", "tokens", bad_tokens)(lambda v: _cl(tokens=v))
case(f"{TXT}.completion_lines", "min_bytes", bad_count)(lambda v: _cl(min_bytes=v))
case(f"{TXT}.completion_lines", "max_bytes", st.one_of(st.integers(max_value=4), non_integral, st.booleans()))(
    lambda v: _cl(min_bytes=5, max_bytes=v))


def _sp(**kw):
  return fn(f"{TXT}.split_at_point")(**{"tokens": DOC, "line": 1, **kw})


case(f"{TXT}.split_at_point", "tokens", st.one_of(bad_tokens, st.just(np.zeros(0, np.uint8))))(
    lambda v: _sp(tokens=v))
case(f"{TXT}.split_at_point", "line", st.one_of(bad_index, st.integers(min_value=3)))(lambda v: _sp(line=v))
case(f"{TXT}.split_at_point", "column", st.one_of(bad_index, st.integers(min_value=16)))(lambda v: _sp(column=v))

case(f"{TXT}.parse_imports", "tokens", bad_tokens)(lambda v: fn(f"{TXT}.parse_imports")(v, "p/a.py"))
case(f"{TXT}.parse_imports", "name", bad_name)(lambda v: fn(f"{TXT}.parse_imports")(DOC, v))


def _rp(**kw):
  return fn(f"{TXT}.repo_proposals")(**{"documents": DOCS, "names": NAMES, "target": 0, "line": 2, **kw})


case(f"{TXT}.repo_proposals", "documents", st.sampled_from([[], "abc", [np.ones(3, np.float32)] * 3,
                                                             [np.ones((2, 2), np.int32)] * 3, 3]))(
    lambda v: _rp(documents=v))
case(f"{TXT}.repo_proposals", "names", st.one_of(st.sampled_from(["abc", None, [1, 2, 3], ["a", "a", "b"]]),
                                                  st.integers(0, 5).filter(lambda n: n != 3).map(
                                                      lambda n: [f"f{i}.py" for i in range(n)])))(
    lambda v: _rp(names=v))
case(f"{TXT}.repo_proposals", "target", st.one_of(bad_index, st.integers(min_value=3)))(lambda v: _rp(target=v))
case(f"{TXT}.repo_proposals", "line", st.one_of(bad_index, st.integers(min_value=3)))(lambda v: _rp(line=v))
case(f"{TXT}.repo_proposals", "column", st.one_of(bad_index, st.integers(min_value=9)))(lambda v: _rp(column=v))
case(f"{TXT}.repo_proposals", "packages", st.sampled_from(["p", 3, ["p"], ["p", "p", 3], [b"p"] * 3]))(
    lambda v: _rp(packages=v))
case(f"{TXT}.repo_proposals", "kinds", st.one_of(
    st.text(max_size=8).filter(lambda s: s not in ("imports", "siblings", "similar_names", "prior_lines")).map(
        lambda s: [s]),
    st.sampled_from(["imports", 3, ["imports", "imports"], [["imports"]], ["post_lines"]])))(lambda v: _rp(kinds=v))
case(f"{TXT}.repo_proposals", "budget", bad_count)(lambda v: _rp(budget=v))
case(f"{TXT}.repo_proposals", "max_per_kind", bad_count)(lambda v: _rp(max_per_kind=v))
case(f"{TXT}.repo_proposals", "content", st.one_of(st.text(max_size=8).filter(
    lambda s: s not in ("head", "signatures")), st.sampled_from([None, 3, ["head"]])))(lambda v: _rp(content=v))

TARGET = np.frombuffer(b"f(1)\n", np.uint8)


def _ec(**kw):
  return fn(f"{TXT}.encode_completion")(**{"proposals": [_prop()], "prefix": DOC[:20], "target": TARGET,
                                           "seq_len": 32, **kw})


case(f"{TXT}.encode_completion", "proposals", st.sampled_from(["abc", 3, [("imports", "a", np.ones(2, np.int32))],
                                                               None]))(lambda v: _ec(proposals=v))
case(f"{TXT}.encode_completion", "proposals", st.sampled_from([np.ones(2, np.float32), np.ones((2, 2), np.int32),
                                                                                np.int32(3)]))(
    lambda v: _ec(proposals=[_prop(tokens=v)]))
case(f"{TXT}.encode_completion", "prefix", bad_tokens)(lambda v: _ec(prefix=v))
case(f"{TXT}.encode_completion", "target", st.one_of(bad_tokens, st.just(np.zeros(0, np.int32))))(
    lambda v: _ec(target=v))
case(f"{TXT}.encode_completion", "seq_len", st.one_of(bad_count, st.integers(1, 5)))(lambda v: _ec(seq_len=v))
case(f"{TXT}.encode_completion", "prefix_reserve", bad_index)(lambda v: _ec(prefix_reserve=v))
case(f"{TXT}.encode_completion", "sep_id", bad_index)(lambda v: _ec(sep_id=v))
case(f"{TXT}.encode_completion", "pad_id", bad_index)(lambda v: _ec(pad_id=v))

_TOKENS = "token arrays moved into the sequence, never computed with (any integer ids); their kind is checked by Cases"
_STR = "a str (or a sequence of str), checked by Cases"


def _flat_props(**kw):
  props = fn(f"{TXT}.repo_proposals")(**kw)
  return np.concatenate([np.zeros(0)] + [p.tokens.astype(np.float64) for p in props])


def _encoded(**kw):
  e = fn(f"{TXT}.encode_completion")(**kw)
  return np.concatenate([e.inputs, e.targets, e.weights]).astype(np.float64)


SPECS += [
    Spec(f"{TXT}.completion_lines", dict(tokens=DOC, min_bytes=1, max_bytes=40),
         call=lambda **kw: fn(f"{TXT}.completion_lines")(**kw).astype(np.float64), batch=("tokens",),
         empty=lambda out: out.shape == (0,), numbers=("min_bytes", "max_bytes")),
    Spec(f"{TXT}.split_at_point", dict(tokens=DOC, line=1, column=2),
         call=lambda **kw: np.concatenate(fn(f"{TXT}.split_at_point")(**kw)).astype(np.float64), batch=("tokens",),
         numbers=("line", "column")),
    Spec(f"{TXT}.parse_imports", dict(tokens=DOC, name="p/a.py"),
         call=lambda **kw: np.asarray([len(m) for m in fn(f"{TXT}.parse_imports")(**kw)], np.float64),
         batch=("tokens",), empty=lambda out: out.shape == (0,), not_applicable={"name": _STR}),
    Spec(f"{TXT}.repo_proposals", dict(documents=DOCS, names=NAMES, target=0, line=2, column=1, budget=8,
                                       max_per_kind=2),
         call=_flat_props, batch=("names",), numbers=("target", "line", "column", "budget", "max_per_kind"),
         # an empty repository (documents=[]) is a Case; ragged documents cannot be sliced to [:0] here
         not_applicable={"packages": _STR, "kinds": "a sequence of kind names, checked by Cases",
                         "content": "a name, checked by a Case"}),
    Spec(f"{TXT}.encode_completion", dict(proposals=[_prop()], prefix=DOC[:20], target=TARGET, seq_len=32,
                                          prefix_reserve=4, sep_id=0, pad_id=1),
         call=_encoded, batch=("target",), numbers=("seq_len", "prefix_reserve", "sep_id", "pad_id"),
         not_applicable={"proposals": "Proposal records (their tokens are moved, not computed with), checked by Cases",
                         "prefix": _TOKENS}),
]

EXEMPT = {
    f"{TXT}.Proposal": "a NamedTuple record built by repo_proposals",
    f"{TXT}.RepoExample": "a NamedTuple of arrays built by encode_completion",
}
