"""Input-policy declarations for self-generated tokens in `jaxdyn.text` (merged by ``text.py``)."""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import KEY, Case, Spec, bad_count, collector, fn, non_integral

TXT = "jaxdyn.text"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

V = 6
X = np.array([[1, 2, 3, 4], [5, 0, 1, 2]], np.int32)
LOGITS = np.asarray(jax.random.normal(jax.random.key(1), (2, 4, V)))


def _sg(**kw):
  return fn(f"{TXT}.self_generated_inputs")(**{"inputs": X, "logits": LOGITS, "p": 0.5, "key": KEY, **kw})


bad_p = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.000001), st.just(float("nan")), st.booleans())
case(f"{TXT}.self_generated_inputs", "inputs", st.sampled_from([X.astype(np.float32), np.int32(3), X[:, :0]]))(
    lambda v: _sg(inputs=v))
case(f"{TXT}.self_generated_inputs", "logits", st.sampled_from([LOGITS[:, :3], LOGITS[0], LOGITS[..., 0],
                                                                 LOGITS.astype(np.complex64)]))(
    lambda v: _sg(logits=v))
case(f"{TXT}.self_generated_inputs", "p", bad_p)(lambda v: _sg(p=v))
case(f"{TXT}.self_generated_inputs", "segment_ids", st.sampled_from([X[:, :3], X.astype(np.float32), X[0]]))(
    lambda v: _sg(segment_ids=v))


def _sp(**kw):
  return fn(f"{TXT}.sampling_probability")(**{"step": 3, "total_steps": 10, **kw})


case(f"{TXT}.sampling_probability", "step", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: _sp(step=v))
case(f"{TXT}.sampling_probability", "total_steps", bad_count)(lambda v: _sp(total_steps=v))
case(f"{TXT}.sampling_probability", "schedule", st.text(max_size=8).filter(
    lambda s: s not in ("constant", "linear", "batch")))(lambda v: _sp(schedule=v))
case(f"{TXT}.sampling_probability", "p_max", bad_p)(lambda v: _sp(p_max=v))
case(f"{TXT}.sampling_probability", "stages", st.one_of(st.integers(max_value=1), non_integral, st.booleans()))(
    lambda v: _sp(stages=v))

bad_tokens = st.sampled_from([np.zeros((2, 2), np.int32), np.ones(3, np.float32), np.int32(3), [1.5]])


def _cs(**kw):
  return fn(f"{TXT}.correction_sequence")(**{"prompt": [1], "generated": [2], "reference": [3], **kw})


for _arg in ("prompt", "generated", "reference", "separator"):
  case(f"{TXT}.correction_sequence", _arg, bad_tokens)(lambda v, _arg=_arg: _cs(**{_arg: v}))
case(f"{TXT}.correction_sequence", "reference", st.sampled_from([[], (), np.zeros(0, np.int32), ""]))(
    lambda v: _cs(reference=v))

_TOKENS = "token ids moved into the sequence, never computed with; their kind is checked by Cases"
SPECS += [
    Spec(f"{TXT}.self_generated_inputs", dict(inputs=X, logits=LOGITS, p=0.5, key=KEY),
         call=lambda **kw: np.asarray(fn(f"{TXT}.self_generated_inputs")(**kw).inputs, np.float64),
         floats=("logits",), batch=("inputs", "logits"), empty=lambda out: out.shape == (0, 4),
         numbers=("p",), keys=("key",),
         not_applicable={"inputs": "integer tokens (moved, never computed with); kind checked by a Case",
                         "segment_ids": "integer ids compared for equality only; shape and kind checked by a Case"}),
    Spec(f"{TXT}.sampling_probability", dict(step=3, total_steps=10, p_max=0.5, stages=4),
         call=lambda **kw: float(fn(f"{TXT}.sampling_probability")(**kw, schedule="batch")),
         numbers=("step", "total_steps", "p_max", "stages"),
         not_applicable={"schedule": "a name, checked by a Case"}),
    Spec(f"{TXT}.correction_sequence", dict(prompt=np.array([1, 2]), generated=np.array([3]), reference=np.array([4])),
         call=lambda **kw: fn(f"{TXT}.correction_sequence")(**kw)[1].astype(np.float64), batch=("reference",),
         not_applicable={"prompt": _TOKENS, "generated": _TOKENS, "separator": _TOKENS}),
]

EXEMPT = {f"{TXT}.SelfGenerated": "a NamedTuple of arrays built by self_generated_inputs"}
