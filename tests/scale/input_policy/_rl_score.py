"""Input-policy declarations for SCoRe in `jaxdyn.rl` (merged by ``rl.py``; vocabulary in ``spec.py``)."""

from __future__ import annotations

import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import (
    KEY,
    Case,
    Spec,
    bad_count,
    bad_name,
    collector,
    fn,
    negative,
    non_integral,
    nonpositive,
)

RL = "jaxdyn.rl"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

PROMPTS = [b"12+07=", b"30+04="]
FIRST = [b"#18", b"#34"]
SECOND = [b"9,1#19", b"#34"]
R1 = np.array([0.0, 1.0, 1.0, 0.0], np.float32)
R2 = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
LP1 = -np.abs(np.linspace(0.1, 2.0, 8, dtype=np.float32)).reshape(2, 4)
LP2 = LP1[::-1] * 0.5
MASK = np.array([[0, 1, 1, 1], [0, 0, 1, 1]], np.float32)
ADV = np.array([1.0, -0.5], np.float32)

bad_bytes = st.sampled_from([None, 3, "1+2=", ["#3"], 1.5])
bad_byte_list = st.sampled_from([b"#3", "#3", ["#3", "#4"], [3, 4], None, [b"#3"], [b"#3", b"#4", b"#5"]])


_MODEL = {}


def _model():
  if "m" not in _MODEL:
    _MODEL["m"] = fn("jaxdyn.models.Transformer")(259, dim=8, depth=1, num_heads=1, rngs=nnx.Rngs(0))
  return _MODEL["m"]


def _problems():
  return fn(f"{RL}.AdditionProblems")(np.array([0, 1]), np.array([12, 58]), np.array([7, 67]), 2)


def _bytes_out(b):
  return np.frombuffer(b, np.uint8).astype(np.float64)


# --- episodes --------------------------------------------------------------------------------------
case(f"{RL}.score_turn2_prompt", "prompt", bad_bytes)(lambda v: fn(f"{RL}.score_turn2_prompt")(v, b"#3"))
case(f"{RL}.score_turn2_prompt", "first_attempt", bad_bytes)(lambda v: fn(f"{RL}.score_turn2_prompt")(b"1+2=", v))
case(f"{RL}.score_turn2_prompt", "instruction", st.one_of(bad_bytes, st.just(b"")))(
    lambda v: fn(f"{RL}.score_turn2_prompt")(b"1+2=", b"#3", instruction=v))
case(f"{RL}.score_episode", "prompts", st.sampled_from([b"1+2=", "1+2=", [1, 2], ["1+2="], [], None]))(
    lambda v: fn(f"{RL}.score_episode")(v, FIRST, SECOND, length=30))
for _name in ("first_attempts", "second_attempts"):
  case(f"{RL}.score_episode", _name, bad_byte_list)(
      lambda v, _n=_name: fn(f"{RL}.score_episode")(PROMPTS, **{"first_attempts": FIRST, "second_attempts": SECOND,
                                                               _n: v}, length=30))
  case(f"{RL}.score_rewards", _name, bad_byte_list)(
      lambda v, _n=_name: fn(f"{RL}.score_rewards")(PROMPTS, **{"first_attempts": FIRST, "second_attempts": SECOND,
                                                               _n: v}))
case(f"{RL}.score_episode", "length", st.one_of(st.integers(max_value=21), non_integral, st.booleans()))(
    lambda v: fn(f"{RL}.score_episode")(PROMPTS, FIRST, SECOND, length=v))
case(f"{RL}.score_episode", "instruction", st.one_of(bad_bytes, st.just(b"")))(
    lambda v: fn(f"{RL}.score_episode")(PROMPTS, FIRST, SECOND, length=30, instruction=v))
case(f"{RL}.score_rewards", "prompts", st.sampled_from([b"1+2=", "1+2=", [1, 2], [], None]))(
    lambda v: fn(f"{RL}.score_rewards")(v, FIRST, SECOND))

# --- stage II rewards, stage I loss ----------------------------------------------------------------
case(f"{RL}.score_stage2_rewards", "alpha", negative)(lambda v: fn(f"{RL}.score_stage2_rewards")(R1, R2, alpha=v))
case(f"{RL}.score_stage2_rewards", "first_rewards", st.sampled_from([R1[None], np.float32(1.0), R1[:, None]]))(
    lambda v: fn(f"{RL}.score_stage2_rewards")(v, R2))
case(f"{RL}.score_stage2_rewards", "second_rewards", st.sampled_from([R2[:3], R2[None], np.ones(5, np.float32)]))(
    lambda v: fn(f"{RL}.score_stage2_rewards")(R1, v))


def _stage1(**kw):
  args = dict(first_log_probs=LP1, first_ref_log_probs=LP1 * 0.8, first_mask=MASK, second_log_probs=LP2,
              second_old_log_probs=LP2, second_advantages=ADV, second_mask=MASK)
  args.update(kw)
  return fn(f"{RL}.score_stage1_loss")(**args)


_WRONG = [LP1[:, :3], LP1.T, LP1[None], LP1[:1]]
case(f"{RL}.score_stage1_loss", "first_log_probs", st.sampled_from([LP1[0], LP1[None], np.zeros((0, 4), np.float32)]))(
    lambda v: _stage1(first_log_probs=v, first_ref_log_probs=v, first_mask=np.ones(np.shape(v), np.float32)))
case(f"{RL}.score_stage1_loss", "first_ref_log_probs", st.sampled_from(_WRONG))(
    lambda v: _stage1(first_ref_log_probs=v))
case(f"{RL}.score_stage1_loss", "first_mask", st.sampled_from(_WRONG + [np.zeros_like(MASK), -MASK]))(
    lambda v: _stage1(first_mask=v))
case(f"{RL}.score_stage1_loss", "second_log_probs", st.sampled_from([LP2[0], LP2[None], np.zeros((0, 4), np.float32)]))(
    lambda v: _stage1(second_log_probs=v, second_old_log_probs=v, second_mask=np.ones(np.shape(v), np.float32),
                      second_advantages=np.ones(np.shape(v)[:1], np.float32)))
case(f"{RL}.score_stage1_loss", "second_old_log_probs", st.sampled_from(_WRONG))(
    lambda v: _stage1(second_old_log_probs=v))
case(f"{RL}.score_stage1_loss", "second_mask", st.sampled_from(_WRONG + [np.zeros_like(MASK), -MASK]))(
    lambda v: _stage1(second_mask=v))
case(f"{RL}.score_stage1_loss", "second_advantages",
     st.sampled_from([np.ones(3), np.ones((2, 3)), np.ones((1, 4))]))(lambda v: _stage1(second_advantages=v))
case(f"{RL}.score_stage1_loss", "beta2", negative)(lambda v: _stage1(beta2=v))
case(f"{RL}.score_stage1_loss", "clip_eps", negative)(lambda v: _stage1(clip_eps=v))
case(f"{RL}.score_stage1_loss", "aggregation", bad_name.filter(lambda s: s not in ("token", "sequence")))(
    lambda v: _stage1(aggregation=v))

# --- the SFT baseline ------------------------------------------------------------------------------
_EMPTY = fn(f"{RL}.AdditionProblems")(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 2)
case(f"{RL}.score_sft_corrections", "problems", st.sampled_from([None, (np.ones(2), np.ones(2)), 3, _EMPTY]))(
    lambda v: fn(f"{RL}.score_sft_corrections")(v, [1, 1], length=40))
case(f"{RL}.score_sft_corrections", "errors", st.sampled_from([[1], [1, 0], [1, 1.5], [-100, 1], "ab", 3, [True, 1]]))(
    lambda v: fn(f"{RL}.score_sft_corrections")(_problems(), v, length=40))
case(f"{RL}.score_sft_corrections", "length", st.one_of(st.integers(max_value=20), non_integral, st.booleans()))(
    lambda v: fn(f"{RL}.score_sft_corrections")(_problems(), [1, 1], length=v))
case(f"{RL}.score_sft_corrections", "verbosity", st.one_of(st.integers(min_value=3), st.integers(max_value=-1),
                                                           st.sampled_from([[0], [0, 3], "0"])))(
    lambda v: fn(f"{RL}.score_sft_corrections")(_problems(), [1, 1], length=40, verbosity=v))
case(f"{RL}.score_sft_corrections", "instruction", bad_bytes)(
    lambda v: fn(f"{RL}.score_sft_corrections")(_problems(), [1, 1], length=40, instruction=v))


# --- the episode sampler ---------------------------------------------------------------------------
def _sample(**kw):
  args = dict(prompts=[b"1+2="], key=KEY, max_new_tokens=2, greedy=True)
  args.update(kw)
  return fn(f"{RL}.score_sample")(_model(), **args)


case(f"{RL}.score_sample", "model", st.sampled_from([None, 3, "m", lambda x: x]))(
    lambda v: fn(f"{RL}.score_sample")(v, [b"1+2="], key=KEY, max_new_tokens=2))
case(f"{RL}.score_sample", "prompts", st.sampled_from([b"1+2=", "1+2=", [1], [], [b"1+2=", b"12+3="]]))(
    lambda v: _sample(prompts=v))
case(f"{RL}.score_sample", "max_new_tokens", bad_count)(lambda v: _sample(max_new_tokens=v))
case(f"{RL}.score_sample", "temperature", nonpositive)(lambda v: _sample(temperature=v))
case(f"{RL}.score_sample", "instruction", st.one_of(bad_bytes, st.just(b"")))(lambda v: _sample(instruction=v))


def _sample_out(**kw):
  first, second = fn(f"{RL}.score_sample")(_model(), **kw)
  return [_bytes_out(b) for b in first + second]


# --- clause specs ---------------------------------------------------------------------------------
def _episode_out(**kw):
  ep = fn(f"{RL}.score_episode")(**kw)
  return [np.asarray(x, np.float64) for x in ep]


def _sft_out(**kw):
  tokens, mask = fn(f"{RL}.score_sft_corrections")(_problems(), [-1, 3], **kw)
  return [tokens.astype(np.float64), mask]


_BYTES = "bytes, not an array; its kind is checked by a Case"
SPECS += [
    Spec(f"{RL}.score_turn2_prompt", dict(prompt=b"1+2=", first_attempt=b"#4"),
         call=lambda **kw: _bytes_out(fn(f"{RL}.score_turn2_prompt")(**kw)),
         not_applicable={"prompt": _BYTES, "first_attempt": _BYTES, "instruction": _BYTES}),
    Spec(f"{RL}.score_episode", dict(prompts=PROMPTS, first_attempts=FIRST, second_attempts=SECOND, length=30),
         call=_episode_out, batch=("prompts", "first_attempts", "second_attempts"), numbers=("length",),
         not_applicable={"instruction": _BYTES}),
    Spec(f"{RL}.score_rewards", dict(prompts=PROMPTS, first_attempts=FIRST, second_attempts=SECOND),
         batch=("prompts", "first_attempts", "second_attempts")),
    Spec(f"{RL}.score_stage2_rewards", dict(first_rewards=R1, second_rewards=R2, alpha=10.0),
         floats=("first_rewards", "second_rewards"), jit=True, batch=("first_rewards", "second_rewards"),
         numbers=("alpha",), empty=lambda out: all(np.shape(x) == (0,) for x in out),
         ranges={"first_rewards": st.sampled_from([R1 * 1e30, R1 * 1e-30, R1.astype(np.float16)])}),
    Spec(f"{RL}.score_stage1_loss", dict(first_log_probs=LP1, first_ref_log_probs=LP1 * 0.8, first_mask=MASK,
                                         second_log_probs=LP2, second_old_log_probs=LP2 * 1.1, second_advantages=ADV,
                                         second_mask=MASK, beta2=0.1, clip_eps=0.2),
         floats=("first_log_probs", "first_ref_log_probs", "first_mask", "second_log_probs", "second_old_log_probs",
                 "second_advantages", "second_mask"), jit=True,
         batch=("first_log_probs", "first_ref_log_probs", "first_mask", "second_log_probs", "second_old_log_probs",
                "second_advantages", "second_mask"),
         numbers=("beta2", "clip_eps"), not_applicable={"aggregation": "a name, checked by a Case"}),
    Spec(f"{RL}.score_sft_corrections", dict(length=40, verbosity=1), call=_sft_out, numbers=("length", "verbosity"),
         not_applicable={"problems": "an AdditionProblems (its kind and emptiness checked by Cases)",
                         "errors": "a sequence of ints, checked by a Case", "instruction": _BYTES}),
    Spec(f"{RL}.score_sample", dict(prompts=[b"1+2="], key=KEY, max_new_tokens=2, temperature=0.5, greedy=True),
         call=_sample_out, keys=("key",), numbers=("max_new_tokens", "temperature"), batch=("prompts",),
         not_applicable={"model": "a Transformer, checked by a Case", "instruction": _BYTES}),
]

EXEMPT = {
    f"{RL}.ScoreEpisode": "a NamedTuple of arrays built by score_episode",
}
