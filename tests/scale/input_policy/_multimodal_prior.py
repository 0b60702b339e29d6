"""Input-policy declarations for PRIOR in `jaxdyn.multimodal` (merged by ``multimodal.py``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import C, Case, Spec, collector, fn

MM = "jaxdyn.multimodal"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

B, L = 2, 4
REF = np.log(np.linspace(0.05, 0.95, B * L, dtype=np.float32)).reshape(B, L)
MASK = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32)
LOGITS = np.linspace(-2.0, 2.0, B * L * C, dtype=np.float32).reshape(B, L, C)
TARGETS = (np.arange(B * L, dtype=np.int32) % C).reshape(B, L)

bad_alpha = st.one_of(st.floats(max_value=-1e-6, allow_infinity=True), st.just(float("nan")), st.booleans(),
                      st.just(float("inf")), st.sampled_from(["1", None, [1.0]]))
positive_log_prob = st.floats(min_value=1e-6, max_value=1e30)
bad_mask = st.sampled_from([np.ones((B, L + 1), np.float32), np.ones((B,), np.float32), -MASK - 1.0,
                            np.full((B, L), "a"), np.ones((B, L), np.complex64)])


def _with(x, index, value):
  x = np.array(x, copy=True)
  x.flat[index] = value
  return x


ptw = f"{MM}.prior_token_weights"
case(ptw, "ref_log_probs", positive_log_prob)(lambda v: fn(ptw)(_with(REF, 3, v), MASK))
case(ptw, "ref_log_probs", st.sampled_from([np.float32(-1.0), np.full((B, L), -1, np.int32), np.ones((B, L), bool),
                                            np.full((B, L), "a")]))(lambda v: fn(ptw)(v))
case(ptw, "mask", bad_mask)(lambda v: fn(ptw)(REF, v))
case(ptw, "alpha", bad_alpha)(lambda v: fn(ptw)(REF, MASK, alpha=v))

pl = f"{MM}.prior_loss"
case(pl, "logits", st.sampled_from([LOGITS[0, 0], LOGITS[0, 0, :1], np.float32(1.0)]))(
    lambda v: fn(pl)(v, np.zeros(np.shape(v)[:-1], np.int32), np.full(np.shape(v)[:-1], -1.0, np.float32)))
case(pl, "targets", st.sampled_from([TARGETS[:, :3], TARGETS.astype(np.float32), TARGETS[None]]))(
    lambda v: fn(pl)(LOGITS, v, REF))
case(pl, "ref_log_probs", st.sampled_from([REF[:, :3], REF[None], REF[0]]))(lambda v: fn(pl)(LOGITS, TARGETS, v))
case(pl, "ref_log_probs", positive_log_prob)(lambda v: fn(pl)(LOGITS, TARGETS, _with(REF, 5, v)))
case(pl, "mask", bad_mask)(lambda v: fn(pl)(LOGITS, TARGETS, REF, mask=v))
case(pl, "alpha", bad_alpha)(lambda v: fn(pl)(LOGITS, TARGETS, REF, alpha=v))

_ALPHA = st.sampled_from([1e-30, 1e-8, 1e3, 1e8, 1e30])
SPECS += [
    Spec(ptw, dict(ref_log_probs=REF, mask=MASK, alpha=1.0), floats=("ref_log_probs", "mask"), jit=True,
         batch=("ref_log_probs", "mask"), empty=lambda out: np.shape(out) == (0, L), numbers=("alpha",),
         ranges={"alpha": _ALPHA,
                 "ref_log_probs": st.sampled_from([REF * 1e-30, REF * 1e30, REF.astype(np.float16), REF * 0.0])}),
    Spec(pl, dict(logits=LOGITS, targets=TARGETS, ref_log_probs=REF, mask=MASK, alpha=1.0),
         floats=("logits", "ref_log_probs", "mask"), labels=("targets",), num_classes=C, jit=True,
         batch=("logits", "targets", "ref_log_probs", "mask"), numbers=("alpha",),
         ranges={"alpha": _ALPHA, "logits": st.sampled_from([LOGITS * 1e30, LOGITS * 1e-30, LOGITS.astype(np.float16)]),
                 "ref_log_probs": st.sampled_from([REF * 1e-30, REF * 1e30])}),
]

EXEMPT: dict[str, str] = {}
