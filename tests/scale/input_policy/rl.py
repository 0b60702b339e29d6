"""Input-policy declarations for `jaxdyn.rl` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, bad_count, bad_name, collector, fn, non_integral

RL = "jaxdyn.rl"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

VOCAB = 259  # jaxdyn.data.VOCAB_SIZE
TOKENS = np.array([[256, 49, 43, 50, 61, 35, 51, 257, 258], [256, 52, 43, 53, 61, 35, 57, 257, 258]], np.int32)
LP = -np.abs(np.linspace(0.1, 2.0, 16, dtype=np.float32)).reshape(2, 8)
MASK = np.array([[0, 0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1, 1, 0]], np.float32)
ADV = np.array([0.5, -0.5], np.float32)
REWARDS = np.array([1.0, 0.0, 0.5, 0.25], np.float32)
IDS = np.array([0, 1, 1, 2], np.int32)
LENGTHS = np.array([3.0, 7.0, 12.0, 1.0], np.float32)
CORRECT = np.array([True, False, True, True])
PROBS = np.array([[0.1, 0.5, 0.9], [0.3, 0.5, 0.6], [0.4, 0.2, 0.6]], np.float32)
_MODEL = {}


def _model():
  if "m" not in _MODEL:
    _MODEL["m"] = fn("jaxdyn.models.Transformer")(VOCAB, dim=8, depth=1, num_heads=1, rngs=nnx.Rngs(0))
  return _MODEL["m"]


def _history():
  return fn(f"{RL}.HAPOHistory")(jnp.array([4.0, np.inf, 10.0]))


def _bytes_out(b):
  return np.frombuffer(b, np.uint8).astype(np.float64)


bad_bytes = st.sampled_from([None, 3, "1+2=", ["#3"], 1.5])
bad_bool = st.sampled_from([np.array([1, 0, 1, 1]), np.array([1.0, 0.0, 1.0, 1.0]), np.zeros(3, bool)])

# --- the task --------------------------------------------------------------------------------------
case(f"{RL}.addition_problems", "num_problems", bad_count)(lambda v: fn(f"{RL}.addition_problems")(v, digits=2, seed=0))
case(f"{RL}.addition_problems", "digits", st.one_of(st.integers(max_value=0), st.integers(min_value=10), non_integral))(
    lambda v: fn(f"{RL}.addition_problems")(3, digits=v, seed=0))
case(f"{RL}.addition_problems", "seed", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: fn(f"{RL}.addition_problems")(3, digits=2, seed=v))
case(f"{RL}.format_prompt", "a", st.one_of(st.integers(max_value=-1), st.integers(min_value=100), non_integral))(
    lambda v: fn(f"{RL}.format_prompt")(v, 1, digits=2))
case(f"{RL}.format_prompt", "b", st.one_of(st.integers(max_value=-1), st.integers(min_value=100), non_integral))(
    lambda v: fn(f"{RL}.format_prompt")(1, v, digits=2))
case(f"{RL}.format_prompt", "digits", st.one_of(st.integers(max_value=0), st.integers(min_value=10)))(
    lambda v: fn(f"{RL}.format_prompt")(1, 1, digits=v))
case(f"{RL}.format_completion", "verbosity", st.one_of(st.integers(min_value=3), st.integers(max_value=-1), bad_name))(
    lambda v: fn(f"{RL}.format_completion")(1, 2, digits=1, verbosity=v))
case(f"{RL}.format_completion", "error", st.one_of(st.integers(max_value=-4), non_integral))(
    lambda v: fn(f"{RL}.format_completion")(1, 2, digits=1, error=v))
case(f"{RL}.format_completion", "a", st.integers(min_value=10))(lambda v: fn(f"{RL}.format_completion")(v, 2, digits=1))
case(f"{RL}.format_completion", "b", st.integers(max_value=-1))(lambda v: fn(f"{RL}.format_completion")(1, v, digits=1))
case(f"{RL}.format_completion", "digits", st.integers(max_value=0))(
    lambda v: fn(f"{RL}.format_completion")(1, 2, digits=v))
case(f"{RL}.parse_answer", "completion", bad_bytes)(lambda v: fn(f"{RL}.parse_answer")(v))
case(f"{RL}.verify", "prompt", st.one_of(bad_bytes, st.sampled_from([b"1*2=", b"1+2", b"a+b=", b"+2="])))(
    lambda v: fn(f"{RL}.verify")(v, b"#3"))
case(f"{RL}.verify", "answer_bytes", bad_bytes)(lambda v: fn(f"{RL}.verify")(b"1+2=", v))
case(f"{RL}.encode", "prompts", st.sampled_from([b"1+2=", "1+2=", [1, 2], ["1+2="], []]))(
    lambda v: fn(f"{RL}.encode")(v, length=8))
case(f"{RL}.encode", "completions", st.sampled_from([b"#3", [b"#3", b"#4"], ["#3"], [3]]))(
    lambda v: fn(f"{RL}.encode")([b"1+2="], v, length=8))
case(f"{RL}.encode", "length", st.one_of(st.integers(max_value=6), non_integral))(
    lambda v: fn(f"{RL}.encode")([b"1+2="], [b"#3"], length=v))
case(f"{RL}.decode_completion", "tokens", st.sampled_from([np.zeros((2, 2), np.int32), np.array([1.0, 2.0]),
                                                           np.array([1, VOCAB])]))(
    lambda v: fn(f"{RL}.decode_completion")(v))

# --- policy gradient -------------------------------------------------------------------------------
case(f"{RL}.completion_mask", "tokens", st.sampled_from([TOKENS[0], TOKENS[:, :1], TOKENS.astype(np.float32)]))(
    lambda v: fn(f"{RL}.completion_mask")(v, 1))
case(f"{RL}.completion_mask", "prompt_len",
     st.one_of(st.integers(max_value=0), st.integers(min_value=9), non_integral))(
    lambda v: fn(f"{RL}.completion_mask")(TOKENS, v))
case(f"{RL}.completion_mask", "eos_id", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: fn(f"{RL}.completion_mask")(TOKENS, 5, eos_id=v))
case(f"{RL}.completion_mask", "pad_id", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: fn(f"{RL}.completion_mask")(TOKENS, 5, pad_id=v))
case(f"{RL}.policy_log_probs", "model", st.sampled_from([None, 3, "m", lambda x: x]))(
    lambda v: fn(f"{RL}.policy_log_probs")(v, TOKENS))
case(f"{RL}.policy_log_probs", "tokens", st.sampled_from([TOKENS[0], TOKENS[:, :1], TOKENS.astype(np.float32)]))(
    lambda v: fn(f"{RL}.policy_log_probs")(_model(), v))
case(f"{RL}.group_advantages", "group_size", bad_count)(lambda v: fn(f"{RL}.group_advantages")(REWARDS, v))
case(f"{RL}.group_advantages", "rewards", st.sampled_from([REWARDS[:3], REWARDS[None], REWARDS[:0]]))(
    lambda v: fn(f"{RL}.group_advantages")(v, 2))
case(f"{RL}.group_advantages", "scale", bad_name.filter(lambda s: s not in ("std", "none")))(
    lambda v: fn(f"{RL}.group_advantages")(REWARDS, 2, scale=v))
case(f"{RL}.group_advantages", "eps", nonpositive)(lambda v: fn(f"{RL}.group_advantages")(REWARDS, 2, eps=v))
case(f"{RL}.group_advantages", "baseline", st.sampled_from([np.ones(3), np.ones((2, 1)), np.ones(4)]))(
    lambda v: fn(f"{RL}.group_advantages")(REWARDS, 2, baseline=v))
case(f"{RL}.kl_k3", "ref_log_probs", st.sampled_from([LP[0], LP[:, :3], LP.T]))(lambda v: fn(f"{RL}.kl_k3")(LP, v))


def _loss(**kw):
  args = dict(log_probs=LP, old_log_probs=LP, advantages=ADV, mask=MASK)
  args.update(kw)
  return fn(f"{RL}.clipped_surrogate_loss")(**args)


case(f"{RL}.clipped_surrogate_loss", "log_probs", st.sampled_from([LP[0], np.zeros((0, 8), np.float32), LP[None],
                                                                          LP[:, :, None]]))(
    lambda v: _loss(log_probs=v, old_log_probs=v, mask=np.ones(np.shape(v), np.float32)))
case(f"{RL}.clipped_surrogate_loss", "old_log_probs", st.sampled_from([LP[:, :3], LP.T, LP[None], LP[:1]]))(
    lambda v: _loss(old_log_probs=v))
case(f"{RL}.clipped_surrogate_loss", "advantages", st.sampled_from([np.ones(3), np.ones((2, 3)), np.ones((1, 8))]))(
    lambda v: _loss(advantages=v))
case(f"{RL}.clipped_surrogate_loss", "mask", st.sampled_from([MASK[:, :3], np.zeros_like(MASK), -MASK]))(
    lambda v: _loss(mask=v))
case(f"{RL}.clipped_surrogate_loss", "clip_eps", negative)(lambda v: _loss(clip_eps=v))
case(f"{RL}.clipped_surrogate_loss", "kl_coef", negative)(lambda v: _loss(kl_coef=v, ref_log_probs=LP))
case(f"{RL}.clipped_surrogate_loss", "ref_log_probs", st.sampled_from([None, LP[:, :3], LP.T, LP[:1]]))(
    lambda v: _loss(kl_coef=0.1, ref_log_probs=v))
case(f"{RL}.clipped_surrogate_loss", "aggregation", bad_name.filter(lambda s: s not in ("token", "sequence")))(
    lambda v: _loss(aggregation=v))

# --- HAPO ------------------------------------------------------------------------------------------
case(f"{RL}.hapo_init", "num_prompts", bad_count)(lambda v: fn(f"{RL}.hapo_init")(v))
for _name in ("hapo_reward", "hapo_update_history"):
  case(f"{RL}.{_name}", "history", st.sampled_from([None, np.ones(3), (np.ones(3),)]))(
      lambda v, _n=_name: fn(f"{RL}.{_n}")(v, IDS, LENGTHS, CORRECT))
  case(f"{RL}.{_name}", "prompt_ids", st.sampled_from([np.array([0, 1, 3, 0]), np.array([0, -1, 1, 1]), IDS[:3],
                                                       IDS.astype(np.float32)]))(
      lambda v, _n=_name: fn(f"{RL}.{_n}")(_history(), v, LENGTHS, CORRECT))
  case(f"{RL}.{_name}", "lengths", st.sampled_from([-LENGTHS, LENGTHS[None], np.full(4, np.inf, np.float32),
                                                    np.array([1.0, np.nan, 1.0, 1.0], np.float32)]))(
      lambda v, _n=_name: fn(f"{RL}.{_n}")(_history(), IDS, v, CORRECT))
  case(f"{RL}.{_name}", "correct", bad_bool)(lambda v, _n=_name: fn(f"{RL}.{_n}")(_history(), IDS, LENGTHS, v))
case(f"{RL}.hapo_reward", "length_weight", negative)(
    lambda v: fn(f"{RL}.hapo_reward")(_history(), IDS, LENGTHS, CORRECT, length_weight=v))
case(f"{RL}.hapo_length_reward", "correct_floor", st.one_of(st.floats(min_value=1e-3, allow_infinity=False),
                                                             st.floats(max_value=-1.001, allow_infinity=False)))(
    lambda v: fn(f"{RL}.hapo_length_reward")(LENGTHS, LENGTHS, CORRECT, correct_floor=v))
case(f"{RL}.hapo_length_reward", "history_lengths",
     st.sampled_from([LENGTHS[:3], LENGTHS[None], LENGTHS[:1], np.ones(5)]))(
    lambda v: fn(f"{RL}.hapo_length_reward")(LENGTHS, v, CORRECT))
case(f"{RL}.hapo_length_reward", "correct", bad_bool)(lambda v: fn(f"{RL}.hapo_length_reward")(LENGTHS, LENGTHS, v))

# --- DPO and drift ---------------------------------------------------------------------------------
_Z = np.array([-1.0, -2.0, -0.5], np.float32)


def _dpo(**kw):
  args = dict(policy_chosen=_Z, policy_rejected=_Z - 1, ref_chosen=_Z, ref_rejected=_Z + 0.5)
  args.update(kw)
  return fn(f"{RL}.dpo_loss")(**args)


case(f"{RL}.dpo_loss", "beta", nonpositive)(lambda v: _dpo(beta=v))
case(f"{RL}.dpo_loss", "policy_chosen",
     st.sampled_from([_Z[None], np.float32(1.0), np.zeros(0, np.float32), _Z[:, None]]))(
    lambda v: _dpo(policy_chosen=v))
for _name in ("policy_rejected", "ref_chosen", "ref_rejected"):
  case(f"{RL}.dpo_loss", _name, st.sampled_from([_Z[:2], _Z[None], _Z[:1], np.ones(4)]))(
      lambda v, _n=_name: _dpo(**{_n: v}))
case(f"{RL}.value_drift", "probs", st.sampled_from([PROBS[:1], PROBS[0], 1.5 * PROBS, -PROBS, np.ones((3, 2, 3))]))(
    lambda v: fn(f"{RL}.value_drift")(v))
case(f"{RL}.value_drift", "steps", st.sampled_from([[0, 1], [0, 2, 1], [0.0, 1.0, 2.0], [0, 0, 1]]))(
    lambda v: fn(f"{RL}.value_drift")(PROBS, steps=v))
case(f"{RL}.value_drift", "fractions", st.sampled_from([(), (0.0,), (1.5,), (np.nan,), "0.5", 0.5]))(
    lambda v: fn(f"{RL}.value_drift")(PROBS, fractions=v))


# --- clause specs ---------------------------------------------------------------------------------
def _task_out(**kw):
  p = fn(f"{RL}.addition_problems")(**kw)
  return np.concatenate([p.a, p.b]).astype(np.float64)


_BYTES = "bytes, not an array; its kind is checked by a Case"
_HIST = "a HAPOHistory, checked by a Case (its inf entries mean 'no history yet')"
_BOOL = "a boolean array (no NaN to hold), its kind and shape checked by Cases"
SPECS += [
    Spec(f"{RL}.addition_problems", dict(num_problems=4, digits=3, seed=1), call=_task_out,
         numbers=("num_problems", "digits", "seed")),
    Spec(f"{RL}.format_prompt", dict(a=12, b=7, digits=2),
         call=lambda **kw: _bytes_out(fn(f"{RL}.format_prompt")(**kw)),
         numbers=("a", "b", "digits")),
    Spec(f"{RL}.format_completion", dict(a=58, b=67, digits=2, verbosity=2, error=1),
         call=lambda **kw: _bytes_out(fn(f"{RL}.format_completion")(**kw)),
         numbers=("a", "b", "digits", "verbosity", "error")),
    Spec(f"{RL}.parse_answer", dict(completion=b"1,2#34"), not_applicable={"completion": _BYTES}),
    Spec(f"{RL}.verify", dict(prompt=b"1+2=", answer_bytes=b"#3"),
         not_applicable={"prompt": _BYTES, "answer_bytes": _BYTES}),
    Spec(f"{RL}.encode", dict(prompts=[b"1+2=", b"3+4="], completions=[b"#3", b"#7"], length=10),
         call=lambda **kw: fn(f"{RL}.encode")(**kw).astype(np.float64), batch=("prompts",), numbers=("length",),
         not_applicable={"completions": _BYTES}),
    Spec(f"{RL}.decode_completion", dict(tokens=np.array([35, 51, 257, 258])), labels=("tokens",), num_classes=VOCAB,
         call=lambda **kw: _bytes_out(fn(f"{RL}.decode_completion")(**kw)), batch=("tokens",),
         empty=lambda out: np.size(out) == 0),
    Spec(f"{RL}.completion_mask", dict(tokens=TOKENS, prompt_len=5, eos_id=257, pad_id=258),
         numbers=("prompt_len", "eos_id", "pad_id"), batch=("tokens",), empty=lambda out: np.shape(out) == (0, 8),
         not_applicable={"tokens": "token ids compared with eos_id / pad_id, any integers (kind checked by a Case)"}),
    Spec(f"{RL}.policy_log_probs", dict(tokens=TOKENS), call=lambda **kw: fn(f"{RL}.policy_log_probs")(_model(), **kw),
         labels=("tokens",), num_classes=VOCAB, jit=True, batch=("tokens",),
         empty=lambda out: np.shape(out) == (0, 8),
         not_applicable={"model": "a Transformer, checked by a Case"}),
    Spec(f"{RL}.group_advantages", dict(rewards=REWARDS, group_size=2, eps=1e-4, baseline=np.array([0.5, 0.0])),
         floats=("rewards", "baseline"), jit=True, batch=("rewards",), numbers=("group_size", "eps"),
         not_applicable={"scale": "a name, checked by a Case"},
         ranges={"rewards": st.sampled_from([REWARDS * 1e30, REWARDS * 1e-30, REWARDS.astype(np.float16)])}),
    Spec(f"{RL}.kl_k3", dict(log_probs=LP, ref_log_probs=LP[::-1]), floats=("log_probs", "ref_log_probs"), jit=True,
         batch=("log_probs", "ref_log_probs"), empty=lambda out: np.shape(out) == (0, 8)),
    Spec(f"{RL}.clipped_surrogate_loss", dict(log_probs=LP, old_log_probs=LP[::-1], advantages=ADV, mask=MASK,
                                              ref_log_probs=LP * 0.5, clip_eps=0.2, kl_coef=0.1),
         floats=("log_probs", "old_log_probs", "advantages", "mask", "ref_log_probs"), jit=True,
         batch=("log_probs", "old_log_probs", "advantages", "mask", "ref_log_probs"),
         numbers=("clip_eps", "kl_coef"), not_applicable={"aggregation": "a name, checked by a Case"}),
    Spec(f"{RL}.hapo_init", dict(num_prompts=3), call=lambda **kw: fn(f"{RL}.hapo_init")(**kw).min_length,
         numbers=("num_prompts",)),
    Spec(f"{RL}.hapo_length_reward", dict(lengths=LENGTHS, history_lengths=np.array([4.0, 5.0, 6.0, 0.5], np.float32),
                                          correct=CORRECT, correct_floor=-0.7),
         floats=("lengths",), jit=True, batch=("lengths", "history_lengths", "correct"), numbers=("correct_floor",),
         empty=lambda out: np.shape(out) == (0,),
         not_applicable={"history_lengths": "inf (and <= 0) are documented values meaning 'no history' (reward 0); "
                                            "NaN gives NaN", "correct": _BOOL}),
    Spec(f"{RL}.hapo_reward", dict(prompt_ids=IDS, lengths=LENGTHS, correct=CORRECT, length_weight=0.5,
                                   correct_floor=-0.7),
         call=lambda **kw: fn(f"{RL}.hapo_reward")(_history(), **kw), labels=("prompt_ids",), num_classes=3,
         floats=("lengths",), jit=True, batch=("prompt_ids", "lengths", "correct"),
         empty=lambda out: np.shape(out) == (0,), numbers=("length_weight", "correct_floor"),
         not_applicable={"history": _HIST, "correct": _BOOL}),
    Spec(f"{RL}.hapo_update_history", dict(prompt_ids=IDS, lengths=LENGTHS, correct=CORRECT),
         call=lambda **kw: fn(f"{RL}.hapo_update_history")(_history(), **kw).min_length, labels=("prompt_ids",),
         num_classes=3, floats=("lengths",), jit=True, batch=("prompt_ids", "lengths", "correct"),
         empty=lambda out: np.allclose(np.asarray(out), [4.0, np.inf, 10.0]),
         not_applicable={"history": _HIST, "correct": _BOOL}),
    Spec(f"{RL}.dpo_loss", dict(policy_chosen=_Z, policy_rejected=_Z - 1, ref_chosen=_Z, ref_rejected=_Z + 0.5,
                                beta=0.1),
         floats=("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected"), jit=True,
         batch=("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected"), numbers=("beta",),
         ranges={"beta": st.sampled_from([1e-30, 1e30])}),
    Spec(f"{RL}.value_drift", dict(probs=PROBS, steps=[0, 5, 9], fractions=(0.5, 0.9)), floats=("probs",),
         not_applicable={"batch": "axis 0 are checkpoints (at least 2, checked by a Case); probes are axis 1",
                         "steps": "a sequence of ints, checked by a Case",
                         "fractions": "a sequence of numbers, checked by a Case"}),
]

EXEMPT = {
    f"{RL}.AdditionProblems": "a NamedTuple of arrays built (and checked) by addition_problems",
    f"{RL}.HAPOHistory": "a NamedTuple holding one array, built by hapo_init and hapo_update_history",
    f"{RL}.DriftMetrics": "a NamedTuple of arrays returned by value_drift",
}

# --- techniques declared in their own ``_rl_<technique>.py`` beside this file, merged here ------------------
import importlib as _importlib  # noqa: E402
import pathlib as _pathlib  # noqa: E402

for _path in sorted(_pathlib.Path(__file__).parent.glob("_rl_*.py")):
  _mod = _importlib.import_module(f"tests.scale.input_policy.{_path.stem}")
  CASES.extend(_mod.CASES)
  SPECS.extend(_mod.SPECS)
  EXEMPT.update(_mod.EXEMPT)
