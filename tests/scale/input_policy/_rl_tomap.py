"""Input-policy declarations for ToMAP in `jaxdyn.rl` (merged by ``rl.py``; vocabulary in ``spec.py``)."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import KEY, Case, Spec, bad_count, collector, fn, negative

RL = "jaxdyn.rl"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

STANCE = np.array([[0.8, 0.2, 0.5], [0.1, 0.6, 0.9], [0.3, 0.3, 0.3], [1.0, 0.0, 0.7]], np.float32)
CLAIM = np.array([0, 2, 1, 1], np.int32)
STANCE2 = STANCE[:2]
REPLIES = np.frombuffer(b"1?42?0", np.uint8).reshape(2, 3)  # T = 2, K = 3
FEATS = np.linspace(0.0, 1.0, 2 * 36, dtype=np.float32).reshape(2, 36)
LOGITS = np.linspace(-1.0, 1.0, 2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
LOGITS6 = np.concatenate([LOGITS, LOGITS[..., :1]], axis=-1)
OLD = np.array([0.2, 0.6, 0.5], np.float32)
NEW = np.array([0.4, 0.3, 0.5], np.float32)
AGREE = np.array([[0.2, 0.6, 0.4], [0.5, 0.5, 0.9]], np.float32)
_MODEL = {}


def _predictor():
  if "m" not in _MODEL:
    _MODEL["m"] = fn(f"{RL}.StancePredictor")(3, hidden=4, rngs=nnx.Rngs(0))
  return _MODEL["m"]


def _random(key, replies, stance):
  del replies
  return jax.random.randint(key, (stance.shape[0],), 0, stance.shape[1])


def _play(**kw):
  args = dict(num_games=2, num_claims=2, num_turns=1)
  args.update(kw)
  return fn(f"{RL}.play_dialogue")(KEY, _random, **args)


bad_unit = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0 + 1e-6), st.just(float("nan")))
bad_stance = st.sampled_from([STANCE + 1.0, -STANCE, np.float32(0.5), np.full((4, 3), np.nan, np.float32)])

# --- the opponent ----------------------------------------------------------------------------------
case(f"{RL}.opponent_update", "stance", bad_stance)(lambda v: fn(f"{RL}.opponent_update")(v, CLAIM))
case(f"{RL}.opponent_update", "claim", st.sampled_from([CLAIM[:1], CLAIM.astype(np.float32), CLAIM[None]]))(
    lambda v: fn(f"{RL}.opponent_update")(STANCE, v))
for _name in ("rate", "backfire", "threshold"):
  case(f"{RL}.opponent_update", _name, bad_unit)(lambda v, _n=_name: fn(f"{RL}.opponent_update")(STANCE, CLAIM,
                                                                                                  **{_n: v}))
case(f"{RL}.opponent_reply", "stance", bad_stance)(lambda v: fn(f"{RL}.opponent_reply")(KEY, v))
case(f"{RL}.opponent_reply", "noise", negative)(lambda v: fn(f"{RL}.opponent_reply")(KEY, STANCE, noise=v))
case(f"{RL}.opponent_reply", "reveal", bad_unit)(lambda v: fn(f"{RL}.opponent_reply")(KEY, STANCE, reveal=v))
case(f"{RL}.thesis_agreement", "stance", bad_stance)(lambda v: fn(f"{RL}.thesis_agreement")(v))
case(f"{RL}.reply_features", "replies", st.sampled_from([REPLIES.astype(np.int32), REPLIES[0], REPLIES[:0],
                                                          np.zeros((2, 3), np.uint8), "1?4", None]))(
    lambda v: fn(f"{RL}.reply_features")(v))

# --- the predictor ---------------------------------------------------------------------------------
for _name in ("num_claims", "hidden", "depth"):
  case(f"{RL}.StancePredictor", _name, bad_count)(
      lambda v, _n=_name: fn(f"{RL}.StancePredictor")(**{"num_claims": 2, _n: v}, rngs=nnx.Rngs(0)))
case(f"{RL}.StancePredictor", "rngs", st.sampled_from([None, 0, jax.random.key(0)]))(
    lambda v: fn(f"{RL}.StancePredictor")(2, rngs=v))
case(f"{RL}.StancePredictor", "features", st.sampled_from([FEATS[:, :24], FEATS[0, 0], FEATS[:, :35]]))(
    lambda v: _predictor()(v))
case(f"{RL}.stance_loss", "logits", st.sampled_from([LOGITS[..., :4], LOGITS[0, 0], LOGITS6]))(
    lambda v: fn(f"{RL}.stance_loss")(v, STANCE2))
case(f"{RL}.stance_loss", "stance", st.sampled_from([STANCE[:2, :2], STANCE[0], STANCE[:2] + 1.0]))(
    lambda v: fn(f"{RL}.stance_loss")(LOGITS, v))
case(f"{RL}.predicted_stance", "logits", st.sampled_from([LOGITS[..., :4], np.float32(1.0), LOGITS6]))(
    lambda v: fn(f"{RL}.predicted_stance")(v))
case(f"{RL}.persuader_observation", "logits", st.sampled_from([LOGITS[:1], LOGITS[..., :4], LOGITS[:, :2]]))(
    lambda v: fn(f"{RL}.persuader_observation")(FEATS, v))
case(f"{RL}.persuader_observation", "features",
     st.sampled_from([np.float32(1.0), FEATS[:, :35], FEATS.astype(np.complex64)]))(
    lambda v: fn(f"{RL}.persuader_observation")(v, LOGITS))

# --- the reward ------------------------------------------------------------------------------------
case(f"{RL}.persuasion_reward", "old", st.sampled_from([OLD + 1.0, -OLD, np.full(3, np.nan, np.float32)]))(
    lambda v: fn(f"{RL}.persuasion_reward")(v, NEW))
case(f"{RL}.persuasion_reward", "new", st.sampled_from([NEW[:2], NEW + 1.0, NEW[None]]))(
    lambda v: fn(f"{RL}.persuasion_reward")(OLD, v))
case(f"{RL}.dialogue_rewards", "agreement", st.sampled_from([AGREE[:, :1], AGREE + 1.0, np.float32(0.5)]))(
    lambda v: fn(f"{RL}.dialogue_rewards")(v))
case(f"{RL}.dialogue_rewards", "global_factor", bad_unit)(
    lambda v: fn(f"{RL}.dialogue_rewards")(AGREE, global_factor=v))

# --- the game --------------------------------------------------------------------------------------
case(f"{RL}.play_dialogue", "choose", st.sampled_from([None, 3, "oracle"]))(
    lambda v: fn(f"{RL}.play_dialogue")(KEY, v))
for _name in ("num_games", "num_claims", "num_turns"):
  case(f"{RL}.play_dialogue", _name, bad_count)(lambda v, _n=_name: _play(**{_n: v}))
for _name in ("rate", "backfire", "threshold", "reveal", "global_factor"):
  case(f"{RL}.play_dialogue", _name, bad_unit)(lambda v, _n=_name: _play(**{_n: v}))
case(f"{RL}.play_dialogue", "noise", negative)(lambda v: _play(noise=v))
case(f"{RL}.dialogue_stance_examples", "dialogue", st.sampled_from([None, (1, 2), STANCE]))(
    lambda v: fn(f"{RL}.dialogue_stance_examples")(v))

_SHAPE0 = {"empty": lambda out: np.shape(out)[0] == 0}

SPECS += [
    Spec(f"{RL}.opponent_update", dict(stance=STANCE, claim=CLAIM, rate=0.5, backfire=0.1, threshold=0.5),
         floats=("stance",), labels=("claim",), num_classes=3, jit=True, batch=("stance", "claim"), **_SHAPE0,
         numbers=("rate", "backfire", "threshold")),
    Spec(f"{RL}.opponent_reply", dict(key=KEY, stance=STANCE, noise=0.1, reveal=0.5), floats=("stance",),
         call=lambda **kw: np.asarray(fn(f"{RL}.opponent_reply")(**kw)).astype(np.float64), batch=("stance",),
         **_SHAPE0, numbers=("noise", "reveal"), keys=("key",),
         ranges={"noise": st.sampled_from([0.0, 1e3, 1e30])}),
    Spec(f"{RL}.thesis_agreement", dict(stance=STANCE), floats=("stance",), jit=True, batch=("stance",), **_SHAPE0),
    Spec(f"{RL}.reply_features", dict(replies=REPLIES[None]), batch=("replies",), **_SHAPE0),
    Spec(f"{RL}.StancePredictor", dict(features=FEATS), call=lambda **kw: _predictor()(**kw), floats=("features",),
         batch=("features",), **_SHAPE0),
    Spec(f"{RL}.StancePredictor", dict(num_claims=2, hidden=4, depth=1),
         call=lambda **kw: fn(f"{RL}.StancePredictor")(**kw, rngs=nnx.Rngs(0)), numbers=("num_claims", "hidden",
                                                                                         "depth")),
    Spec(f"{RL}.stance_loss", dict(logits=LOGITS, stance=STANCE2), floats=("logits", "stance"), jit=True,
         batch=("logits", "stance")),
    Spec(f"{RL}.predicted_stance", dict(logits=LOGITS), floats=("logits",), jit=True, batch=("logits",), **_SHAPE0),
    Spec(f"{RL}.persuader_observation", dict(features=FEATS, logits=LOGITS), floats=("features", "logits"), jit=True,
         batch=("features", "logits"), **_SHAPE0),
    Spec(f"{RL}.persuasion_reward", dict(old=OLD, new=NEW), floats=("old", "new"), jit=True, batch=("old", "new"),
         **_SHAPE0),
    Spec(f"{RL}.dialogue_rewards", dict(agreement=AGREE, global_factor=0.25), floats=("agreement",), jit=True,
         batch=("agreement",), **_SHAPE0, numbers=("global_factor",)),
    Spec(f"{RL}.play_dialogue", dict(key=KEY, num_games=2, num_claims=2, num_turns=1, rate=0.5, backfire=0.1,
                                     threshold=0.5, noise=0.1, reveal=0.5, global_factor=0.0),
         call=lambda **kw: fn(f"{RL}.play_dialogue")(choose=_random, **kw).rewards, keys=("key",),
         numbers=("num_games", "num_claims", "num_turns", "rate", "backfire", "threshold", "noise", "reveal",
                  "global_factor"),
         not_applicable={"choose": "a callable, checked by a Case"}),
    Spec(f"{RL}.dialogue_stance_examples", dict(dialogue=None),
         call=lambda **kw: fn(f"{RL}.dialogue_stance_examples")(_play(num_turns=2)),
         not_applicable={"dialogue": "a Dialogue NamedTuple from play_dialogue, checked by a Case"}),
]

EXEMPT = {
    f"{RL}.Dialogue": "a NamedTuple of arrays returned by play_dialogue",
}
