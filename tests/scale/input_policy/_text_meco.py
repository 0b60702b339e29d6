"""Input-policy declarations for MeCo in `jaxdyn.text` (merged by ``text.py``; vocabulary in ``spec.py``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, collector, fn, non_integral

TXT = "jaxdyn.text"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

DOCS = [np.arange(5, dtype=np.uint8), np.arange(3, dtype=np.uint8) + 40]
PKGS = ["json", "os"]
DOC = np.frombuffer(b"import os\n", np.uint8)

bad_metadata = st.sampled_from([None, 3, 1.5, b"json", ["json"]])
bad_template = st.one_of(st.text(max_size=12).filter(lambda s: "{name}" not in s),
                         st.sampled_from(["{name}{x}", "{name}{0}", "{name", 3, None, b"{name}"]))
bad_tokens = st.sampled_from([np.zeros((2, 2), np.int32), np.ones(3, np.float32), np.int32(3), "abc"])
bad_fraction = st.one_of(st.floats(max_value=-1e-6, allow_infinity=False), st.floats(min_value=1.000001),
                         st.just(float("nan")), st.booleans())

case(f"{TXT}.metadata_prefix", "metadata", bad_metadata)(lambda v: fn(f"{TXT}.metadata_prefix")(v))
case(f"{TXT}.metadata_prefix", "template", bad_template)(lambda v: fn(f"{TXT}.metadata_prefix")("os", template=v))
case(f"{TXT}.meco_document", "tokens", bad_tokens)(lambda v: fn(f"{TXT}.meco_document")(v, "os"))
case(f"{TXT}.meco_document", "metadata", bad_metadata)(lambda v: fn(f"{TXT}.meco_document")(DOC, v))
case(f"{TXT}.meco_document", "template", bad_template)(lambda v: fn(f"{TXT}.meco_document")(DOC, "os", template=v))
case(f"{TXT}.meco_document", "condition", st.sampled_from([0, 1, "yes", None]))(
    lambda v: fn(f"{TXT}.meco_document")(DOC, "os", condition=v))
case(f"{TXT}.meco_pack", "documents", st.sampled_from([[], "abc", [np.ones((2, 2), np.int32)],
                                                       [np.ones(3, np.float32)], 3]))(
    lambda v: fn(f"{TXT}.meco_pack")(v, PKGS[:1], 4))
case(f"{TXT}.meco_pack", "metadata", st.one_of(st.sampled_from(["json", None, 3, ["a", 3], [b"a", b"b"]]),
                                               st.integers(0, 5).filter(lambda n: n != 2).map(lambda n: ["a"] * n)))(
    lambda v: fn(f"{TXT}.meco_pack")(DOCS, v, 4))
case(f"{TXT}.meco_pack", "seq_len", bad_count)(lambda v: fn(f"{TXT}.meco_pack")(DOCS, PKGS, v))
case(f"{TXT}.meco_pack", "eos_id", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: fn(f"{TXT}.meco_pack")(DOCS, PKGS, 4, eos_id=v))
case(f"{TXT}.meco_pack", "template", bad_template)(lambda v: fn(f"{TXT}.meco_pack")(DOCS, PKGS, 4, template=v))
case(f"{TXT}.meco_pack", "condition", st.sampled_from([0, 1, "yes", None]))(
    lambda v: fn(f"{TXT}.meco_pack")(DOCS, PKGS, 4, condition=v))
case(f"{TXT}.meco_pack", "document_mask", st.sampled_from([0, 1, "yes", None]))(
    lambda v: fn(f"{TXT}.meco_pack")(DOCS, PKGS, 4, document_mask=v))
case(f"{TXT}.meco_switch_step", "total_steps", bad_count)(lambda v: fn(f"{TXT}.meco_switch_step")(v))
case(f"{TXT}.meco_switch_step", "cooldown_fraction", bad_fraction)(
    lambda v: fn(f"{TXT}.meco_switch_step")(10, cooldown_fraction=v))
case(f"{TXT}.meco_conditioned", "step", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: fn(f"{TXT}.meco_conditioned")(v, 10))
case(f"{TXT}.meco_conditioned", "total_steps", bad_count)(lambda v: fn(f"{TXT}.meco_conditioned")(0, v))
case(f"{TXT}.meco_conditioned", "cooldown_fraction", bad_fraction)(
    lambda v: fn(f"{TXT}.meco_conditioned")(0, 10, cooldown_fraction=v))
case(f"{TXT}.meco_prompt", "prompt", bad_tokens)(lambda v: fn(f"{TXT}.meco_prompt")(v, "os"))
case(f"{TXT}.meco_prompt", "metadata", bad_metadata)(lambda v: fn(f"{TXT}.meco_prompt")(DOC, v))
case(f"{TXT}.meco_prompt", "template", bad_template)(lambda v: fn(f"{TXT}.meco_prompt")(DOC, "os", template=v))

_STR = "a str (or a format string), checked by Cases"
_TOKENS = "token documents moved into rows, never computed with (any integer ids); their kind is checked by a Case"


def _mask(**kw):
  return fn(f"{TXT}.meco_document")(**kw)[1].astype(np.float64)


SPECS += [
    Spec(f"{TXT}.metadata_prefix", dict(metadata="json"),
         call=lambda **kw: fn(f"{TXT}.metadata_prefix")(**kw).astype(np.float64),
         not_applicable={"metadata": _STR, "template": _STR}),
    Spec(f"{TXT}.meco_document", dict(tokens=DOC, metadata="os"), call=_mask, batch=("tokens",),
         empty=lambda out: out.shape == (len(b"package: os\n\n"),) and not out.any(),
         not_applicable={"metadata": _STR, "template": _STR}),
    Spec(f"{TXT}.meco_pack", dict(documents=DOCS, metadata=PKGS, seq_len=7, eos_id=9),
         call=lambda **kw: fn(f"{TXT}.meco_pack")(**kw).loss_mask.astype(np.float64), numbers=("seq_len", "eos_id"),
         not_applicable={"documents": _TOKENS, "metadata": "one str per document, checked by Cases",
                         "template": _STR}),
    Spec(f"{TXT}.meco_switch_step", dict(total_steps=40, cooldown_fraction=0.1),
         call=lambda **kw: float(fn(f"{TXT}.meco_switch_step")(**kw)), numbers=("total_steps", "cooldown_fraction")),
    Spec(f"{TXT}.meco_conditioned", dict(step=35, total_steps=40, cooldown_fraction=0.1),
         call=lambda **kw: float(fn(f"{TXT}.meco_conditioned")(**kw)),
         numbers=("step", "total_steps", "cooldown_fraction")),
    Spec(f"{TXT}.meco_prompt", dict(prompt=DOC, metadata="os"),
         call=lambda **kw: fn(f"{TXT}.meco_prompt")(**kw).astype(np.float64), batch=("prompt",),
         empty=lambda out: bytes(out.astype(np.uint8)) == b"package: os\n\n",
         not_applicable={"metadata": _STR, "template": _STR}),
]

EXEMPT = {f"{TXT}.MecoBatch": "a NamedTuple of arrays built by meco_pack"}
