"""Input-policy declarations for Noise-Aware Training in `jaxdyn.text` (merged by ``text.py``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import (
    LABELS,
    LOGITS,
    Case,
    Spec,
    bad_count,
    bad_label_value,
    collector,
    fn,
    labels_with,
    nonpositive,
)

TXT = "jaxdyn.text"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

CONF = np.linspace(0.1, 1.0, len(LABELS)).astype(np.float32)
MASK = np.array([1, 1, 0, 1, 2, 1, 1, 0], np.float32)
SRC = np.frombuffer(b"import os\nclass A(B):\n  def f(self, x=y.z): pass\n", np.uint8)
DOCS = ["import os\nx = os.path\n", "def g(a, b):\n  return a.b\n"]

bad_source = st.sampled_from([None, 3, 1.5, ["x"], np.zeros(3, np.int32), np.zeros((2, 2), np.uint8)])
bad_confidence = st.one_of(st.floats(min_value=1.000001, allow_infinity=True),
                           st.floats(max_value=-1e-6, allow_infinity=True))
bad_form = st.text(max_size=12).filter(lambda s: s not in ("weighted", "noise_aware"))
cwce = f"{TXT}.confidence_weighted_cross_entropy"
case(cwce, "labels", bad_label_value)(lambda v: fn(cwce)(LOGITS, labels_with(v), CONF))
case(cwce, "confidence", bad_confidence)(lambda v: fn(cwce)(LOGITS, LABELS, np.full(len(LABELS), v, np.float32)))
case(cwce, "confidence", st.integers(1, 12).filter(lambda n: n != len(LABELS)))(
    lambda n: fn(cwce)(LOGITS, LABELS, np.ones(n, np.float32)))
case(cwce, "confidence", st.sampled_from([np.ones(len(LABELS), bool), np.array(["a"] * len(LABELS)),
                                          np.ones(len(LABELS), np.complex64)]))(
    lambda v: fn(cwce)(LOGITS, LABELS, v))
case(cwce, "mask", st.floats(max_value=-1e-6, allow_infinity=True))(
    lambda v: fn(cwce)(LOGITS, LABELS, CONF, mask=np.full(len(LABELS), v, np.float32)))
case(cwce, "form", bad_form)(lambda v: fn(cwce)(LOGITS, LABELS, CONF, form=v))
lc = f"{TXT}.label_confidence"
case(lc, "labels", bad_label_value)(lambda v: fn(lc)(LOGITS, labels_with(v)))
case(lc, "temperature", st.one_of(nonpositive, st.booleans(), st.just(float("inf"))))(
    lambda v: fn(lc)(LOGITS, LABELS, temperature=v))
ct = f"{TXT}.calibrate_temperature"
case(ct, "labels", bad_label_value)(lambda v: fn(ct)(LOGITS, labels_with(v)))
case(ct, "mask", st.sampled_from([np.zeros(len(LABELS), np.float32), -np.ones(len(LABELS), np.float32),
                                  np.full(len(LABELS), np.inf, np.float32)]))(
    lambda v: fn(ct)(LOGITS, LABELS, mask=v))
case(ct, "bounds", st.sampled_from([(2.0, 1.0), (0.0, 1.0), (-1.0, 2.0), (1.0, float("inf")), (1.0,), 3.0,
                                    (float("nan"), 1.0)]))(lambda v: fn(ct)(LOGITS, LABELS, bounds=v))
case(ct, "iterations", bad_count)(lambda v: fn(ct)(LOGITS, LABELS, iterations=v))
for _name in ("identifier_kinds", "weak_identifier_kinds"):
  case(f"{TXT}.{_name}", "source", bad_source)(lambda v, _n=_name: fn(f"{TXT}.{_n}")(v))
  case(f"{TXT}.{_name}", "source", st.sampled_from(["(\n", "x = (1,\n", b"x = '\xff'\n"]))(
      lambda v, _n=_name: fn(f"{TXT}.{_n}")(v))
case(f"{TXT}.identifier_kinds", "source",
     st.sampled_from(["x = = 1\n", "def f(:\n  pass\n)\n", "f(x for x in y, 1)\n"]))(
    lambda v: fn(f"{TXT}.identifier_kinds")(v))
it = f"{TXT}.identifier_task"
case(it, "documents", st.sampled_from([[], "x = 1\n", b"x = 1\n", 3, None]))(lambda v: fn(it)(v, window=4))
case(it, "documents", bad_source.filter(lambda v: not isinstance(v, list)))(lambda v: fn(it)([v], window=4))
case(it, "window", bad_count)(lambda v: fn(it)(DOCS, window=v))
case(it, "max_windows_per_document", bad_count)(lambda v: fn(it)(DOCS, window=4, max_windows_per_document=v))

_SRC = "Python source (str, bytes or uint8 bytes); kinds checked by Cases, any bytes are valid tokens"
SPECS += [
    Spec(cwce, dict(logits=LOGITS, labels=LABELS, confidence=CONF, mask=MASK), floats=("logits", "confidence", "mask"),
         labels=("labels",), jit=True, batch=("logits", "labels", "confidence", "mask"),
         not_applicable={"form": "a name, checked by a Case"}),
    Spec(f"{cwce}", dict(logits=LOGITS, labels=LABELS, confidence=CONF, form="noise_aware"),
         floats=("logits", "confidence"), labels=("labels",), jit=True, batch=("logits", "labels", "confidence"),
         not_applicable={"form": "a name, checked by a Case", "mask": "covered by the weighted-form Spec"}),
    Spec(lc, dict(logits=LOGITS, labels=LABELS, temperature=0.7), floats=("logits",), labels=("labels",), jit=True,
         batch=("logits", "labels"), numbers=("temperature",),
         ranges={"temperature": st.sampled_from([1e-30, 1e-8, 1e8, 1e30]),
                 "logits": st.sampled_from([LOGITS * 1e30, LOGITS * 1e-30])}),
    Spec(ct, dict(logits=LOGITS, labels=LABELS, mask=MASK, iterations=30), call=lambda **kw: float(fn(ct)(**kw)),
         floats=("logits", "mask"), labels=("labels",), batch=("logits", "labels", "mask"), numbers=("iterations",),
         not_applicable={"bounds": "a pair of reals, checked by Cases"}),
    Spec(f"{TXT}.identifier_kinds", dict(source=SRC),
         call=lambda **kw: fn(f"{TXT}.identifier_kinds")(**kw).astype(np.float64), batch=("source",),
         empty=lambda out: np.shape(out) == (0,), not_applicable={"source": _SRC}),
    Spec(f"{TXT}.weak_identifier_kinds", dict(source=SRC),
         call=lambda **kw: fn(f"{TXT}.weak_identifier_kinds")(**kw).astype(np.float64), batch=("source",),
         empty=lambda out: np.shape(out) == (0,), not_applicable={"source": _SRC}),
    Spec(it, dict(documents=DOCS, window=4, max_windows_per_document=3),
         call=lambda **kw: fn(it)(**kw).labels.astype(np.float64), batch=("documents",),
         numbers=("window", "max_windows_per_document"), not_applicable={"documents": _SRC + ", one per document"}),
]

EXEMPT = {f"{TXT}.IdentifierTask": "a NamedTuple of arrays built by identifier_task"}
