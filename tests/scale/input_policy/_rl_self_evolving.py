"""Input-policy declarations for M-STaR's self-evolving pieces in `jaxdyn.rl` (merged by ``rl.py``)."""

from __future__ import annotations

import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, bad_name, collector, fn, negative, non_integral

RL = "jaxdyn.rl"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

VOCAB = 259
CORRECT = np.array([True, False, True, True, False, False])
SCORES = np.array([0.3, 0.9, -0.2, 0.1, 0.5, 0.4], np.float32)
ANSWERS = np.array([7, 5, 7, 3, 4, 4], np.int32)
VALID = np.array([True, True, True, True, True, False])
TOKENS = np.array([[256, 49, 43, 50, 61, 35, 51, 257], [256, 52, 43, 53, 61, 35, 57, 257]], np.int32)
LENGTHS = np.array([8, 5], np.int32)
_Z = np.array([0.5, -1.0, 2.0], np.float32)
_MODEL = {}


def _rm():
  if "m" not in _MODEL:
    backbone = fn("jaxdyn.models.Transformer")(VOCAB, dim=8, depth=1, num_heads=1, rngs=nnx.Rngs(0))
    _MODEL["m"] = fn(f"{RL}.RewardModel")(backbone, rngs=nnx.Rngs(1))
  return _MODEL["m"]


bad_bool = st.sampled_from([CORRECT.astype(np.int32), CORRECT.astype(np.float32), CORRECT[None]])
bad_seq = st.sampled_from([None, "0.5", [], [[0.5]], [True, False], [0.5, np.nan], [0.5, 0.5], [1.0, 0.5]])

# --- selection and the monitor ---------------------------------------------------------------------------------
case(f"{RL}.select_answers", "correct", bad_bool)(lambda v: fn(f"{RL}.select_answers")(v, 3, SCORES))
case(f"{RL}.select_answers", "group_size", st.one_of(bad_count, st.sampled_from([4, 5, 7])))(
    lambda v: fn(f"{RL}.select_answers")(CORRECT, v, SCORES))
case(f"{RL}.select_answers", "top_k", bad_count)(lambda v: fn(f"{RL}.select_answers")(CORRECT, 3, SCORES, top_k=v))
case(f"{RL}.select_answers", "scores", st.sampled_from([SCORES[:5], SCORES[None], np.ones(7)]))(
    lambda v: fn(f"{RL}.select_answers")(CORRECT, 3, v))
case(f"{RL}.reward_pass_at_k", "correct", bad_bool)(lambda v: fn(f"{RL}.reward_pass_at_k")(v, SCORES, 3))
case(f"{RL}.reward_pass_at_k", "scores", st.sampled_from([SCORES[:5], SCORES[None], np.ones(7)]))(
    lambda v: fn(f"{RL}.reward_pass_at_k")(CORRECT, v, 3))
case(f"{RL}.reward_pass_at_k", "group_size", st.one_of(bad_count, st.sampled_from([4, 5, 7])))(
    lambda v: fn(f"{RL}.reward_pass_at_k")(CORRECT, SCORES, v))
case(f"{RL}.reward_pass_at_k", "k", st.one_of(bad_count, st.integers(min_value=4, max_value=100)))(
    lambda v: fn(f"{RL}.reward_pass_at_k")(CORRECT, SCORES, 3, k=v))
case(f"{RL}.choose_temperature", "temperatures", bad_seq)(lambda v: fn(f"{RL}.choose_temperature")(v, [0.1, 0.2]))
case(f"{RL}.choose_temperature", "monitor", st.sampled_from([None, "0.5", [0.1], [0.1, np.nan], [0.1, 0.2, 0.3],
                                                             [[0.1, 0.2]], [True, False]]))(
    lambda v: fn(f"{RL}.choose_temperature")([0.5, 1.0], v))

# --- schedules and prompt variation ---------------------------------------------------------------------------
case(f"{RL}.evolve_schedule", "step", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: fn(f"{RL}.evolve_schedule")(v))
case(f"{RL}.evolve_schedule", "mode", bad_name.filter(lambda s: s not in ("online", "iterative", "continuous")))(
    lambda v: fn(f"{RL}.evolve_schedule")(3, mode=v))
case(f"{RL}.evolve_schedule", "interval", bad_count)(
    lambda v: fn(f"{RL}.evolve_schedule")(3, mode="iterative", interval=v))
case(f"{RL}.evolve_schedule", "interval", st.integers(min_value=2, max_value=100))(
    lambda v: fn(f"{RL}.evolve_schedule")(3, mode="online", interval=v))
case(f"{RL}.majority_vote", "answers", st.sampled_from([ANSWERS.astype(np.float32), ANSWERS[:, None], ANSWERS[None]]))(
    lambda v: fn(f"{RL}.majority_vote")(v, VALID, 3))
case(f"{RL}.majority_vote", "valid", bad_bool)(lambda v: fn(f"{RL}.majority_vote")(ANSWERS, v, 3))
case(f"{RL}.majority_vote", "group_size", st.one_of(bad_count, st.sampled_from([4, 5, 7])))(
    lambda v: fn(f"{RL}.majority_vote")(ANSWERS, VALID, v))

# --- reward model and its losses -------------------------------------------------------------------------------
case(f"{RL}.RewardModel", "backbone", st.sampled_from([None, 3, "t", lambda x: x]))(
    lambda v: fn(f"{RL}.RewardModel")(v, rngs=nnx.Rngs(0)))
case(f"{RL}.RewardModel", "lengths", st.sampled_from([np.array([0, 5]), np.array([9, 5]), np.array([8]),
                                                      np.array([8.0, 5.0])]))(lambda v: _rm()(TOKENS, v))
case(f"{RL}.reward_pairwise_loss", "rejected", st.sampled_from([_Z[:2], _Z[None], np.ones(4)]))(
    lambda v: fn(f"{RL}.reward_pairwise_loss")(_Z, v))
case(f"{RL}.reward_pairwise_loss", "chosen",
     st.sampled_from([_Z[None], np.float32(1.0), _Z[:, None], np.ones((2, 3), np.float32)]))(
    lambda v: fn(f"{RL}.reward_pairwise_loss")(v, v))
case(f"{RL}.reward_pointwise_loss", "labels", st.one_of(
    st.sampled_from([_Z[:2], np.ones(4)]), st.floats(min_value=1.001, max_value=1e6).map(lambda x: np.full(3, x)),
    negative.filter(lambda x: x == x).map(lambda x: np.full(3, x))))(
    lambda v: fn(f"{RL}.reward_pointwise_loss")(_Z, v))
_LP = -np.abs(np.linspace(0.1, 2.0, 8, dtype=np.float32)).reshape(2, 4)
_MASK = np.array([[0, 1, 1, 0], [1, 1, 1, 1]], np.float32)
case(f"{RL}.selected_sft_loss", "weights", st.sampled_from([np.ones(3), np.array([1.0, -1.0]), np.ones((2, 1))]))(
    lambda v: fn(f"{RL}.selected_sft_loss")(_LP, _MASK, v))
case(f"{RL}.selected_sft_loss", "mask", st.sampled_from([_MASK[:, :3], -_MASK, _MASK[None]]))(
    lambda v: fn(f"{RL}.selected_sft_loss")(_LP, v, np.ones(2)))
case(f"{RL}.selected_sft_loss", "log_probs", st.sampled_from([_LP[0], _LP[None], np.float32(1.0)]))(
    lambda v: fn(f"{RL}.selected_sft_loss")(v, _MASK, np.ones(2)))


def _step(**kw):
  return np.asarray(fn(f"{RL}.evolve_schedule")(**kw), np.float64)


def _vote(**kw):
  labels, has, ok = fn(f"{RL}.majority_vote")(**kw)
  return np.concatenate([np.asarray(labels, np.float64), np.asarray(has, np.float64), np.asarray(ok, np.float64)])


_BOOL = "a boolean array (no NaN to hold), its kind and shape checked by Cases"
SPECS += [
    Spec(f"{RL}.select_answers", dict(correct=CORRECT, group_size=3, scores=SCORES, top_k=1), floats=("scores",),
         jit=True, batch=("correct", "scores"), numbers=("group_size", "top_k"),
         ranges={"scores": st.sampled_from([SCORES * 1e30, SCORES * 1e-30, SCORES.astype(np.float16)])},
         not_applicable={"correct": _BOOL}),
    Spec(f"{RL}.reward_pass_at_k", dict(correct=CORRECT, scores=SCORES, group_size=3, k=2), floats=("scores",),
         jit=True, batch=("correct", "scores"), numbers=("group_size", "k"), not_applicable={"correct": _BOOL}),
    Spec(f"{RL}.choose_temperature", dict(temperatures=[0.3, 0.7, 1.0], monitor=[0.2, 0.6, 0.5]),
         call=lambda **kw: fn(f"{RL}.choose_temperature")(**kw)[0],
         not_applicable={"temperatures": "a sequence of numbers, checked by a Case",
                         "monitor": "a sequence of numbers, checked by a Case"}),
    Spec(f"{RL}.evolve_schedule", dict(step=7, mode="iterative", interval=3), call=_step,
         numbers=("step", "interval"), not_applicable={"mode": "a name, checked by a Case"}),
    Spec(f"{RL}.majority_vote", dict(answers=ANSWERS, valid=VALID, group_size=3), call=_vote,
         batch=("answers", "valid"), numbers=("group_size",),
         not_applicable={"answers": "any integers (parsed answers), kind and shape checked by Cases",
                         "valid": _BOOL}),
    Spec(f"{RL}.RewardModel", dict(tokens=TOKENS, lengths=LENGTHS), call=lambda **kw: _rm()(**kw),
         labels=("tokens",), num_classes=VOCAB, batch=("tokens", "lengths"),
         empty=lambda out: np.shape(out) == (0,),
         not_applicable={"backbone": "a Transformer, checked by a Case",
                         "lengths": "integers in [1, seq], checked by a Case"}),
    Spec(f"{RL}.reward_pairwise_loss", dict(chosen=_Z, rejected=_Z[::-1]), call=lambda **kw: fn(
        f"{RL}.reward_pairwise_loss")(**kw)[0], floats=("chosen", "rejected"), jit=True,
         batch=("chosen", "rejected"),
         ranges={"chosen": st.sampled_from([_Z * 1e30, _Z * 1e-30, _Z.astype(np.float16)])}),
    Spec(f"{RL}.reward_pointwise_loss", dict(scores=_Z, labels=np.array([1.0, 0.0, 0.5], np.float32)),
         call=lambda **kw: fn(f"{RL}.reward_pointwise_loss")(**kw)[0], floats=("scores", "labels"), jit=True,
         batch=("scores", "labels"),
         ranges={"scores": st.sampled_from([_Z * 1e30, _Z * 1e-30, _Z.astype(np.float16)])}),
    Spec(f"{RL}.selected_sft_loss", dict(log_probs=_LP, mask=_MASK, weights=np.array([1.0, 0.5], np.float32)),
         floats=("log_probs", "mask", "weights"), jit=True, batch=("log_probs", "mask", "weights"),
         ranges={"log_probs": st.sampled_from([_LP * 1e30, _LP * 1e-30, _LP.astype(np.float16)])}),
]

EXEMPT = {
    f"{RL}.EvolveStep": "a NamedTuple of Python values returned by evolve_schedule",
}
