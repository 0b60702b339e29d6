"""Input-policy declarations for `jaxdyn.rl`'s value data, probe probabilities and DPO step (merged by ``rl.py``)."""

from __future__ import annotations

import numpy as np
import optax
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, collector, fn, non_integral

RL = "jaxdyn.rl"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

VOCAB = 259  # jaxdyn.data.VOCAB_SIZE
TX = optax.sgd(0.1)
_CACHE = {}


def _model():
  if "m" not in _CACHE:
    _CACHE["m"] = fn("jaxdyn.models.Transformer")(VOCAB, dim=8, depth=1, num_heads=1, rngs=nnx.Rngs(0))
  return _CACHE["m"]


def _state():
  return fn(f"{RL}.dpo_init")(_model(), TX)


def _probes():
  return fn(f"{RL}.value_probes")(2).tokens


def _pairs():
  d = fn(f"{RL}.value_preferences")(2, value_rate=0.5, seed=0)
  return d.chosen_tokens, d.rejected_tokens


bad_rate01 = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.000001), st.just(np.nan))
bad_seed = st.one_of(st.integers(max_value=-1), non_integral, st.booleans())
bad_model = st.sampled_from([None, 3, "m", lambda x: x])
bad_tokens2 = st.sampled_from([np.zeros(11, np.int32), np.zeros((2, 11), np.float32), np.zeros((2, 1), np.int32),
                               np.full((2, 11), VOCAB, np.int32)])

for _name, _count in (("value_preferences", "num_pairs"), ("value_sft_data", "num_examples")):
  case(f"{RL}.{_name}", _count, bad_count)(lambda v, _n=_name: fn(f"{RL}.{_n}")(v, value_rate=0.5, seed=0))
  case(f"{RL}.{_name}", "value_rate", bad_rate01)(lambda v, _n=_name: fn(f"{RL}.{_n}")(4, value_rate=v, seed=0))
  case(f"{RL}.{_name}", "seed", bad_seed)(lambda v, _n=_name: fn(f"{RL}.{_n}")(4, value_rate=0.5, seed=v))
case(f"{RL}.value_probes", "num_probes", st.one_of(bad_count, st.integers(min_value=201)))(
    lambda v: fn(f"{RL}.value_probes")(v))
case(f"{RL}.probe_value_probs", "model", bad_model)(lambda v: fn(f"{RL}.probe_value_probs")(v, _probes(), prompt_len=6))
case(f"{RL}.probe_value_probs", "probe_tokens",
     st.sampled_from([np.zeros((2, 11), np.int32), np.zeros((2, 2, 11), np.float32), np.zeros((2, 3, 11), np.int32),
                      np.zeros((2, 2, 1), np.int32), np.full((2, 2, 11), VOCAB, np.int32)]))(
    lambda v: fn(f"{RL}.probe_value_probs")(_model(), v, prompt_len=1))
case(f"{RL}.probe_value_probs", "prompt_len", st.one_of(st.integers(max_value=0), st.integers(min_value=11),
                                                        non_integral, st.booleans()))(
    lambda v: fn(f"{RL}.probe_value_probs")(_model(), _probes(), prompt_len=v))
case(f"{RL}.dpo_init", "model", bad_model)(lambda v: fn(f"{RL}.dpo_init")(v, TX))
case(f"{RL}.dpo_init", "tx", st.sampled_from([None, "adam", optax.sgd, (1, 2)]))(
    lambda v: fn(f"{RL}.dpo_init")(_model(), v))


def _step(**kw):
  c, r = _pairs()
  args = dict(model=_model(), tx=TX, state=None, chosen_tokens=c, rejected_tokens=r, prompt_len=6, beta=0.1)
  args.update(kw)
  if args["state"] is None:
    args["state"] = _state()
  return fn(f"{RL}.dpo_step")(**args)


case(f"{RL}.dpo_step", "model", bad_model)(lambda v: _step(model=v))
case(f"{RL}.dpo_step", "tx", st.sampled_from([None, "adam", optax.sgd]))(lambda v: _step(tx=v))
case(f"{RL}.dpo_step", "state", st.sampled_from([1, "s", (1, 2, 3, 4)]))(lambda v: _step(state=v))
case(f"{RL}.dpo_step", "chosen_tokens", bad_tokens2)(
    lambda v: _step(chosen_tokens=v, rejected_tokens=np.zeros(np.shape(v), np.int32), prompt_len=1))
case(f"{RL}.dpo_step", "rejected_tokens", st.sampled_from([np.zeros((1, 11), np.int32), np.zeros((2, 11), np.float32),
                                                           np.full((2, 11), VOCAB, np.int32)]))(
    lambda v: _step(rejected_tokens=v))
case(f"{RL}.dpo_step", "prompt_len", st.one_of(st.integers(max_value=0), st.integers(min_value=11), non_integral,
                                               st.booleans()))(lambda v: _step(prompt_len=v))
case(f"{RL}.dpo_step", "beta", st.one_of(st.floats(max_value=0.0, allow_infinity=False), st.just(np.nan)))(
    lambda v: _step(beta=v))

_MODEL_NA = "a Transformer, checked by a Case"
SPECS += [
    Spec(f"{RL}.value_preferences", dict(num_pairs=5, value_rate=0.4, seed=1),
         call=lambda **kw: fn(f"{RL}.value_preferences")(**kw).chosen_tokens.astype(np.float64),
         numbers=("num_pairs", "value_rate", "seed")),
    Spec(f"{RL}.value_sft_data", dict(num_examples=5, value_rate=0.4, seed=1),
         call=lambda **kw: fn(f"{RL}.value_sft_data")(**kw).tokens.astype(np.float64),
         numbers=("num_examples", "value_rate", "seed")),
    Spec(f"{RL}.value_probes", dict(num_probes=3),
         call=lambda **kw: fn(f"{RL}.value_probes")(**kw).tokens.astype(np.float64), numbers=("num_probes",)),
    Spec(f"{RL}.probe_value_probs", dict(probe_tokens=np.asarray(fn(f"{RL}.value_probes")(2).tokens), prompt_len=6),
         call=lambda **kw: fn(f"{RL}.probe_value_probs")(_model(), **kw), labels=("probe_tokens",),
         num_classes=VOCAB, jit=True, batch=("probe_tokens",), numbers=("prompt_len",),
         not_applicable={"model": _MODEL_NA}),
    Spec(f"{RL}.dpo_init", dict(), call=lambda **kw: fn(f"{RL}.dpo_init")(_model(), TX).step,
         not_applicable={"model": _MODEL_NA, "tx": "an Optax GradientTransformation, checked by a Case"}),
    Spec(f"{RL}.dpo_step", dict(chosen_tokens=np.asarray(_pairs()[0]), rejected_tokens=np.asarray(_pairs()[1]),
                                prompt_len=6, beta=0.1),
         call=lambda **kw: fn(f"{RL}.dpo_step")(_model(), TX, _state(), **kw)[1], labels=("chosen_tokens",
                                                                                          "rejected_tokens"),
         num_classes=VOCAB, jit=True, batch=("chosen_tokens", "rejected_tokens"), numbers=("prompt_len", "beta"),
         ranges={"beta": st.sampled_from([1e-30, 1e30])},
         not_applicable={"model": _MODEL_NA, "tx": "an Optax GradientTransformation, checked by a Case",
                         "state": "a DPOState from dpo_init, checked by a Case"}),
]

EXEMPT = {
    f"{RL}.ValuePreferences": "a NamedTuple of arrays and byte lists built (and checked) by value_preferences",
    f"{RL}.ValueDemos": "a NamedTuple of arrays and byte lists built (and checked) by value_sft_data",
    f"{RL}.ValueProbes": "a NamedTuple of arrays and byte lists built (and checked) by value_probes",
    f"{RL}.DPOState": "a NamedTuple of parameter / optimizer PyTrees built by dpo_init and dpo_step",
}
