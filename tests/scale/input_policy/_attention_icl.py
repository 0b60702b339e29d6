"""Input-policy declarations for the in-context linear regression study (``jaxdyn.attention``).

Merged into ``attention.py``'s lists; the vocabulary is in ``spec.py``.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import RAISES, Case, Spec, collector, fn

ATT = "jaxdyn.attention"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

D, L = 3, 6
_rng = np.random.default_rng(1)
X = _rng.standard_normal((B, L, D)).astype(np.float32)
Y = _rng.standard_normal((B, L)).astype(np.float32)
XQ = _rng.standard_normal((B, D)).astype(np.float32)
T = _rng.standard_normal((B,)).astype(np.float32)
Z = np.concatenate([np.concatenate([X, Y[..., None]], -1),
                    np.concatenate([XQ, np.zeros((B, 1), np.float32)], -1)[:, None]], 1)
PARAMS = {n: (0.3 * _rng.standard_normal((2, D + 1, D + 1))).astype(np.float32) for n in "qkvo"}
bad_params = st.sampled_from([None, [1, 2], {"q": 1}, {n: np.ones((2, 3, 4), np.float32) for n in "qkvo"},
                              {**{n: np.ones((2, 3, 3), np.float32) for n in "qkv"}, "o": np.ones((1, 3, 3))}])
bad_real = st.sampled_from([math.nan, math.inf, "0.1", None])
bad_nonneg = st.one_of(st.floats(max_value=-1e-6), st.just(math.nan), st.booleans())
_CTX = ("x", "y", "x_query")
_wrong = {"x": X[:, :, :2][..., None], "y": Y[:, :3], "x_query": XQ[:, :2]}


def _ctx(**kw):
  return {"x": X, "y": Y, "x_query": XQ, **kw}


_SAMPLE = f"{ATT}.sample_tasks"
case(_SAMPLE, "key", bad_key)(lambda v: fn(_SAMPLE)(v, 4))
case(_SAMPLE, "batch", bad_count)(lambda v: fn(_SAMPLE)(KEY, v))
case(_SAMPLE, "d", bad_count)(lambda v: fn(_SAMPLE)(KEY, 4, d=v))
case(_SAMPLE, "context", bad_count)(lambda v: fn(_SAMPLE)(KEY, 4, context=v))
case(_SAMPLE, "noise_var", bad_nonneg)(lambda v: fn(_SAMPLE)(KEY, 4, noise_var=v))
_INIT = f"{ATT}.init_icl_attention"
case(_INIT, "key", bad_key)(lambda v: fn(_INIT)(v, d=D, num_heads=2))
case(_INIT, "d", bad_count)(lambda v: fn(_INIT)(KEY, d=v, num_heads=2))
case(_INIT, "num_heads", bad_count)(lambda v: fn(_INIT)(KEY, d=D, num_heads=v))
case(_INIT, "init_scale", bad_real)(lambda v: fn(_INIT)(KEY, d=D, num_heads=2, init_scale=v))
for _name in ("icl_tokens", "debiased_gd_predict", "linear_attention_predict", "ridge_predict", "bayes_predict",
              "fit_debiased_gd_step", "fit_linear_attention_step"):
  _f = f"{ATT}.{_name}"
  _extra = ({"step": 0.5} if "predict" in _name and _name not in ("ridge_predict", "bayes_predict") else
            {"lam": 0.5} if _name == "ridge_predict" else {"target": T} if "fit" in _name else {})
  for _arg in _CTX:
    case(_f, _arg, st.sampled_from(["wrong shape", "complex", "nan"]))(
        lambda v, f=_f, a=_arg, e=_extra: fn(f)(**_ctx(**{a: {"wrong shape": _wrong[a],
                                                               "complex": _ctx()[a].astype(np.complex64),
                                                               "nan": np.full_like(_ctx()[a], np.nan)}[v]}), **e))
for _name in ("debiased_gd_predict", "linear_attention_predict"):
  case(f"{ATT}.{_name}", "step", bad_real)(lambda v, n=_name: fn(f"{ATT}.{n}")(X, Y, XQ, v))
case(f"{ATT}.ridge_predict", "lam", nonpositive)(lambda v: fn(f"{ATT}.ridge_predict")(X, Y, XQ, v))
case(f"{ATT}.bayes_predict", "noise_var", bad_nonneg)(lambda v: fn(f"{ATT}.bayes_predict")(X, Y, XQ, noise_var=v))
case(f"{ATT}.bayes_predict", "d", bad_count)(lambda v: fn(f"{ATT}.bayes_predict")(X, Y, XQ, d=v))
for _name in ("fit_debiased_gd_step", "fit_linear_attention_step"):
  case(f"{ATT}.{_name}", "target", st.sampled_from([T[:2], T[None], np.full_like(T, np.nan)]))(
      lambda v, n=_name: fn(f"{ATT}.{n}")(X, Y, XQ, v))
for _name in ("icl_attention", "kq_diagonal", "ov_last_entry", "implied_gd_step"):
  _args = (Z,) if _name == "icl_attention" else ()
  case(f"{ATT}.{_name}", "params", bad_params)(lambda v, n=_name, a=_args: fn(f"{ATT}.{n}")(v, *a))
case(f"{ATT}.icl_attention", "Z", st.sampled_from([Z[0], Z[..., :3], Z.astype(np.complex64)]))(
    lambda v: fn(f"{ATT}.icl_attention")(PARAMS, v))
case(f"{ATT}.kq_diagonal", "d", st.sampled_from([0, -1, 4, 2.5]))(lambda v: fn(f"{ATT}.kq_diagonal")(PARAMS, v))
case(f"{ATT}.icl_loss", "params", bad_params)(
    lambda v: fn(f"{ATT}.icl_loss")(v, fn(_SAMPLE)(KEY, 4, d=D, context=L)))
case(f"{ATT}.icl_loss", "batch", st.sampled_from([None, (X, Y), "batch"]))(lambda v: fn(f"{ATT}.icl_loss")(PARAMS, v))
case(f"{ATT}.r_squared", "target", st.sampled_from([T.astype(np.complex64), np.full_like(T, np.inf),
                                                   np.full_like(T, np.nan)]))(  # a shape mismatch names pred
    lambda v: fn(f"{ATT}.r_squared")(T, v))
case(f"{ATT}.r_squared", "pred", st.sampled_from([T[:2], T.astype(np.complex64), np.full_like(T, np.inf)]))(
    lambda v: fn(f"{ATT}.r_squared")(v, T))
_TRAIN = f"{ATT}.train_icl"
_TRAIN_KW = dict(num_heads=1, d=2, context=4, steps=2, batch=4, log_every=1)
case(_TRAIN, "key", bad_key)(lambda v: fn(_TRAIN)(v, **_TRAIN_KW))
for _arg in ("num_heads", "d", "context", "steps", "batch", "log_every"):
  case(_TRAIN, _arg, bad_count)(lambda v, a=_arg: fn(_TRAIN)(KEY, **{**_TRAIN_KW, a: v}))
case(_TRAIN, "learning_rate", nonpositive)(lambda v: fn(_TRAIN)(KEY, **_TRAIN_KW, learning_rate=v))
case(_TRAIN, "noise_var", bad_nonneg)(lambda v: fn(_TRAIN)(KEY, **_TRAIN_KW, noise_var=v))
case(_TRAIN, "init_scale", bad_real)(lambda v: fn(_TRAIN)(KEY, **_TRAIN_KW, init_scale=v))

EXEMPT = {
    f"{ATT}.ICLBatch": "a NamedTuple that sample_tasks fills in",
    f"{ATT}.ICLTrainResult": "a NamedTuple that train_icl returns",
}

_PARAMS_NA = {"params": "a mapping of four (H, d+1, d+1) arrays: wrong structures and shapes are Cases"}
_FLAG = "a flag"


SPECS += [
    Spec(_SAMPLE, dict(key=KEY, batch=4, d=D, context=L, noise_var=0.1),
         call=lambda **kw: np.concatenate([np.ravel(a) for a in fn(_SAMPLE)(**kw)]), keys=("key",),
         numbers=("batch", "d", "context", "noise_var"), ranges={"noise_var": st.floats(0.0, 1e6)}),
    Spec(_INIT, dict(key=KEY, d=D, num_heads=2, init_scale=1.0),
         call=lambda **kw: np.concatenate([np.ravel(a) for a in fn(_INIT)(**kw).values()]), keys=("key",),
         numbers=("d", "num_heads", "init_scale")),
    Spec(f"{ATT}.icl_tokens", _ctx(), floats=_CTX, batch=_CTX, empty=RAISES),
    Spec(f"{ATT}.icl_attention", dict(params=PARAMS, Z=Z), floats=("Z",), batch=("Z",),
         empty=RAISES, not_applicable={**_PARAMS_NA, "per_head": _FLAG}),
    Spec(f"{ATT}.icl_loss", dict(params=PARAMS), call=lambda params: fn(f"{ATT}.icl_loss")(
        params, fn(_SAMPLE)(KEY, 4, d=D, context=L)),
         not_applicable={**_PARAMS_NA, "batch": "an ICLBatch from sample_tasks (a Case)"}),
    Spec(f"{ATT}.kq_diagonal", dict(params=PARAMS, d=D), numbers=("d",),
         not_applicable={**_PARAMS_NA, "official_compat": _FLAG}),
    Spec(f"{ATT}.ov_last_entry", dict(params=PARAMS), not_applicable=_PARAMS_NA),
    Spec(f"{ATT}.implied_gd_step", dict(params=PARAMS), not_applicable=_PARAMS_NA),
    Spec(f"{ATT}.debiased_gd_predict", _ctx(step=0.5), floats=_CTX, batch=_CTX, empty=RAISES, numbers=("step",)),
    Spec(f"{ATT}.linear_attention_predict", _ctx(step=0.5), floats=_CTX, batch=_CTX, empty=RAISES,
         numbers=("step",)),
    Spec(f"{ATT}.ridge_predict", _ctx(lam=0.5), floats=_CTX, batch=_CTX, empty=RAISES, numbers=("lam",),
         ranges={"lam": st.floats(1e-6, 1e6)}),
    Spec(f"{ATT}.bayes_predict", _ctx(d=D, noise_var=0.1), floats=_CTX, batch=_CTX, empty=RAISES,
         numbers=("d", "noise_var")),
    Spec(f"{ATT}.fit_debiased_gd_step", _ctx(target=T), floats=(*_CTX, "target"), batch=(*_CTX, "target"),
         empty=RAISES),
    Spec(f"{ATT}.fit_linear_attention_step", _ctx(target=T), floats=(*_CTX, "target"), batch=(*_CTX, "target"),
         empty=RAISES),
    Spec(f"{ATT}.r_squared", dict(pred=T, target=T[::-1].copy()), floats=("pred", "target"),
         batch=("pred", "target"), empty=RAISES),
    Spec(_TRAIN, dict(key=KEY, num_heads=1, d=2, context=4, steps=2, batch=4, learning_rate=1e-3, noise_var=0.1,
                      log_every=1, init_scale=1.0),
         call=lambda **kw: np.asarray(fn(_TRAIN)(**kw).history["loss"], np.float64), keys=("key",),
         numbers=("num_heads", "d", "context", "steps", "batch", "learning_rate", "noise_var", "log_every",
                  "init_scale"),
         not_applicable={"official_compat": _FLAG}),
]
_ = jax  # the vocabulary's KEY is a jax key
