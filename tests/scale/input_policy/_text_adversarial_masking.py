"""Input-policy declarations for Adversarial-MidiBERT in `jaxdyn.text` (merged by ``text.py``)."""

from __future__ import annotations

import math

import jax
import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import KEY, Case, Spec, collector, fn, non_integral

TXT = "jaxdyn.text"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

V = 7
X = np.array([[1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5]], np.int32)
SCORES = np.asarray(jax.random.uniform(jax.random.key(1), X.shape), np.float32)
LOGITS = np.asarray(jax.random.normal(jax.random.key(2), X.shape + (V,)), np.float32)
MASK = np.array([[1, 0, 1, 0, 1, 1], [0, 1, 1, 1, 0, 1]], np.float32)
ONES = np.ones(X.shape, bool)
QKV = np.asarray(jax.random.normal(jax.random.key(3), (2, 4, 2, 4)), np.float32)
POS = np.arange(4, dtype=np.int32)

bad_unit = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.000001), st.just(math.nan), st.booleans())
bad_id = st.one_of(st.integers(max_value=-1), non_integral, st.booleans())
bad_tokens = st.sampled_from([X.astype(np.float32), np.int32(3), X[:, :0]])
bad_bool = st.sampled_from([X[:, :4] > 0, np.full(X.shape, 2), np.full(X.shape, 0.5), np.ones((3, 6), bool)])
bad_pair = st.sampled_from([(0.3, 0.1), (-0.1, 0.2), (0.1, 1.5), (0.1,), 0.2, None, (math.nan, 0.2)])
bad_flag = st.sampled_from([0, 1, "yes", None])


def _call(name, base):
  return lambda **kw: fn(f"{TXT}.{name}")(**{**base, **kw})


_rs = _call("random_selection", dict(tokens=X, key=KEY))
_as = _call("adversarial_selection", dict(scores=SCORES, key=KEY))
_co = _call("corrupt", dict(tokens=X, selected=MASK > 0, key=KEY, mask_id=9, random_vocab=V))
_ml = _call("mlm_loss", dict(logits=LOGITS, targets=X, loss_mask=MASK))
_mk = _call("masker_loss", dict(scores=SCORES, token_loss=SCORES * 3, replaced=MASK, selected=MASK))
_ub = _call("update_mask_book", dict(book=ONES, scores=SCORES, key=KEY))
_mf = _call("mask_fine_tuning", dict(tokens=X, key=KEY, rate=0.2, mask_id=9))
_ba = _call("bidirectional_attention", dict(q=QKV, k=QKV, v=QKV, q_positions=POS, k_positions=POS))

case(f"{TXT}.random_selection", "tokens", bad_tokens)(lambda v: _rs(tokens=v))
case(f"{TXT}.random_selection", "rate", bad_unit)(lambda v: _rs(rate=v))
case(f"{TXT}.random_selection", "valid", bad_bool)(lambda v: _rs(valid=v))
case(f"{TXT}.adversarial_selection", "scores", st.sampled_from([SCORES[:, :0], np.float32(1.0),
                                                                SCORES.astype(np.complex64)]))(lambda v: _as(scores=v))
case(f"{TXT}.adversarial_selection", "book", bad_bool)(lambda v: _as(book=v))
case(f"{TXT}.adversarial_selection", "valid", bad_bool)(lambda v: _as(valid=v))
case(f"{TXT}.adversarial_selection", "ratio_range", bad_pair)(lambda v: _as(ratio_range=v))
case(f"{TXT}.adversarial_selection", "max_rate", bad_unit)(lambda v: _as(max_rate=v))
case(f"{TXT}.corrupt", "tokens", bad_tokens)(lambda v: _co(tokens=v))
case(f"{TXT}.corrupt", "selected", bad_bool)(lambda v: _co(selected=v))
case(f"{TXT}.corrupt", "mask_id", bad_id)(lambda v: _co(mask_id=v))
case(f"{TXT}.corrupt", "random_vocab", st.one_of(st.integers(max_value=0), non_integral, st.booleans()))(
    lambda v: _co(random_vocab=v))
case(f"{TXT}.corrupt", "mask_fraction", bad_unit)(lambda v: _co(mask_fraction=v))
case(f"{TXT}.corrupt", "random_fraction", st.one_of(bad_unit, st.floats(0.21, 1.0)))(
    lambda v: _co(random_fraction=v))
case(f"{TXT}.mlm_loss", "logits", st.sampled_from([LOGITS[0, 0], LOGITS.astype(np.complex64), np.float32(1.0)]))(
    lambda v: _ml(logits=v))
case(f"{TXT}.mlm_loss", "targets", st.sampled_from([X[:, :3], X.astype(np.float32), X + V, X - 1]))(
    lambda v: _ml(targets=v))
case(f"{TXT}.mlm_loss", "loss_mask", st.sampled_from([MASK[:, :3], -MASK, MASK.astype(np.complex64)]))(
    lambda v: _ml(loss_mask=v))
case(f"{TXT}.mlm_loss", "official_compat", bad_flag)(lambda v: _ml(official_compat=v))
case(f"{TXT}.masker_loss", "scores", st.sampled_from([np.float32(0.5), SCORES[:, :0], SCORES.astype(np.complex64)]))(
    lambda v: _mk(scores=v))
case(f"{TXT}.masker_loss", "token_loss", st.sampled_from([SCORES[:, :3], SCORES.astype(np.complex64), SCORES[0]]))(
    lambda v: _mk(token_loss=v))
case(f"{TXT}.masker_loss", "replaced", bad_bool)(lambda v: _mk(replaced=v))
case(f"{TXT}.masker_loss", "selected", bad_bool)(lambda v: _mk(selected=v))
case(f"{TXT}.masker_loss", "fraction", st.one_of(bad_unit, st.floats(0.51, 1.0)))(lambda v: _mk(fraction=v))
case(f"{TXT}.update_mask_book", "book", bad_bool)(lambda v: _ub(book=v))
case(f"{TXT}.update_mask_book", "scores", st.sampled_from([SCORES[:, :0], SCORES.astype(np.complex64),
                                                           np.float32(0.5)]))(
    lambda v: _ub(scores=v, book=np.ones(np.shape(v), bool)))
case(f"{TXT}.update_mask_book", "valid", bad_bool)(lambda v: _ub(valid=v))
case(f"{TXT}.update_mask_book", "freeze_range", bad_pair)(lambda v: _ub(freeze_range=v))
case(f"{TXT}.update_mask_book", "unfreeze_range", bad_pair)(lambda v: _ub(unfreeze_range=v))
case(f"{TXT}.mask_fine_tuning", "tokens", bad_tokens)(lambda v: _mf(tokens=v))
case(f"{TXT}.mask_fine_tuning", "rate", bad_unit)(lambda v: _mf(rate=v))
case(f"{TXT}.mask_fine_tuning", "mask_id", bad_id)(lambda v: _mf(mask_id=v))
case(f"{TXT}.mask_fine_tuning", "valid", bad_bool)(lambda v: _mf(valid=v))
case(f"{TXT}.mask_fine_tuning", "official_compat", bad_flag)(lambda v: _mf(official_compat=v))
for _arg in ("q", "k", "v"):
  case(f"{TXT}.bidirectional_attention", _arg, st.integers(1, 6).filter(lambda n: n != 4))(
      lambda n, a=_arg: _ba(**{a: np.ones((2, 4, 2, 4, 1, 1)[:n], np.float32)}))
for _arg in ("q_positions", "k_positions"):
  case(f"{TXT}.bidirectional_attention", _arg, st.integers(0, 9).filter(lambda n: n != 4))(
      lambda n, a=_arg: _ba(**{a: np.arange(n, dtype=np.int32)}))

_BOOL = "a boolean (0/1) mask, compared only; shape and values checked by a Case"
_TOK = "integer tokens, moved (never computed with); kind checked by a Case"
SPECS += [
    Spec(f"{TXT}.bidirectional_attention", dict(q=QKV, k=QKV, v=QKV, q_positions=POS, k_positions=POS),
         floats=("q", "k", "v"), jit=True, batch=("q", "k", "v"), empty=lambda out: np.shape(out) == (0, 4, 2, 4),
         not_applicable={"q_positions": "integer positions, any value valid; shape checked by a Case",
                         "k_positions": "integer positions, any value valid (negative: an empty slot); shape "
                                        "checked by a Case"}),
    Spec(f"{TXT}.random_selection", dict(tokens=X, key=KEY, rate=0.5),
         call=lambda **kw: np.asarray(fn(f"{TXT}.random_selection")(**kw), np.float64), batch=("tokens",),
         empty=lambda out: np.shape(out) == (0, 6), numbers=("rate",), keys=("key",),
         not_applicable={"valid": _BOOL}),
    Spec(f"{TXT}.adversarial_selection", dict(scores=SCORES, key=KEY, max_rate=0.5),
         call=lambda **kw: np.asarray(fn(f"{TXT}.adversarial_selection")(**kw), np.float64), floats=("scores",),
         batch=("scores",), empty=lambda out: np.shape(out) == (0, 6), numbers=("max_rate",), keys=("key",),
         ranges={"scores": st.sampled_from([SCORES * 1e30, SCORES * 1e-30, SCORES.astype(np.float16)])},
         not_applicable={"book": _BOOL, "valid": _BOOL,
                         "ratio_range": "a pair of reals, checked element by element by a Case"}),
    Spec(f"{TXT}.corrupt", dict(tokens=X, selected=MASK > 0, key=KEY, mask_id=9, random_vocab=V, mask_fraction=0.5,
                                random_fraction=0.25),
         call=lambda **kw: np.asarray(fn(f"{TXT}.corrupt")(**kw).loss_mask, np.float64), batch=("tokens", "selected"),
         empty=lambda out: np.shape(out) == (0, 6), numbers=("mask_id", "random_vocab", "mask_fraction",
                                                             "random_fraction"), keys=("key",),
         not_applicable={"tokens": _TOK, "selected": _BOOL}),
    Spec(f"{TXT}.mlm_loss", dict(logits=LOGITS, targets=X, loss_mask=MASK),
         call=lambda **kw: fn(f"{TXT}.mlm_loss")(**kw)[0], floats=("logits", "loss_mask"), labels=("targets",),
         num_classes=V, jit=True, batch=("logits", "targets", "loss_mask"), empty=0.0,
         ranges={"logits": st.sampled_from([LOGITS * 1e4, LOGITS * 1e-30, LOGITS.astype(np.float16)]),
                 "loss_mask": st.sampled_from([MASK * 1e30, MASK * 1e-30])},
         not_applicable={"official_compat": "a flag, checked by a Case"}),
    Spec(f"{TXT}.masker_loss", dict(scores=SCORES, token_loss=SCORES * 3, replaced=MASK, selected=MASK, fraction=0.5),
         floats=("scores", "token_loss"), jit=True, batch=("scores", "token_loss", "replaced", "selected"), empty=0.0,
         numbers=("fraction",), ranges={"token_loss": st.sampled_from([SCORES * 1e30, SCORES * 1e-30])},
         not_applicable={"replaced": _BOOL, "selected": _BOOL}),
    Spec(f"{TXT}.update_mask_book", dict(book=ONES, scores=SCORES, key=KEY),
         call=lambda **kw: np.asarray(fn(f"{TXT}.update_mask_book")(**kw), np.float64), floats=("scores",),
         batch=("book", "scores"), empty=lambda out: np.shape(out) == (0, 6), keys=("key",),
         not_applicable={"book": _BOOL, "valid": _BOOL, "freeze_range": "a pair of reals, checked by a Case",
                         "unfreeze_range": "a pair of reals, checked by a Case"}),
    Spec(f"{TXT}.mask_fine_tuning", dict(tokens=X, key=KEY, rate=0.5, mask_id=9),
         call=lambda **kw: np.asarray(fn(f"{TXT}.mask_fine_tuning")(**kw)[1], np.float64), batch=("tokens",),
         empty=lambda out: np.shape(out) == (0, 6), numbers=("rate", "mask_id"), keys=("key",),
         not_applicable={"tokens": _TOK, "valid": _BOOL, "official_compat": "a flag, checked by a Case"}),
]

EXEMPT = {f"{TXT}.MaskedTokens": "a NamedTuple of arrays built by corrupt"}
