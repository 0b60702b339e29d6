r"""ToMAP's opponent-aware persuasion core on a toy two-party dialogue game (Han et al., 2025).

ToMAP trains an LLM persuader with RL; its two theory-of-mind modules are (1) listing the counter-claims
an opponent may hold against the thesis and (2) a *stance predictor*, a text encoder with a trained MLP
classifier, that predicts the opponent's attitude towards each counter-claim from the dialogue so far;
the prediction is shown to the persuader, whose reward is the change of the opponent's agreement with
the thesis. Here the same pieces are built on a game small enough for 2 CPU cores.

**The opponent** (a toy stand-in for the persuadee LLM, derived here). It holds a hidden stance
``s in [0, 1]^K``, its belief in each of ``K`` fixed counter-claims, and its agreement with the thesis is

.. math::
  a(s) = 1 - \tfrac{1}{K} \textstyle\sum_k s_k .

Each turn the persuader addresses one counter-claim ``c``. If the opponent holds it (``s_c >= tau``) the
rebuttal lands, ``s_c <- (1 - rate) s_c``; if it does not, the argument is beside the point and backfires,
``s_c <- s_c + backfire (1 - s_c)``; the other stances are unchanged (deterministic). The opponent then
replies with a short byte string, one byte per claim: with probability ``reveal`` the noisy level
``clip(round(4 (s_k + noise * eps)), 0, 4)`` (``eps ~ N(0, 1)``) written as ``b"0" .. b"4"`` (the paper's five
attitudes, Disagree .. Agree, towards the counter-claim), otherwise ``b"?"``.

**The stance predictor** (`StancePredictor`): an MLP (the authors' ``MLPClassifier``: Linear-ReLU layers,
five classes) over `reply_features` of the replies so far, giving per-claim logits over the five levels.
Its loss (`stance_loss`) is the authors' unweighted cross-entropy with the label ``round(4 s_k)``
(``utils/train_agreement_predictor.py``: ``label = round(agreement * 4)``, Python's round-half-to-even,
as `jax.numpy.round`). The text encoder is replaced by the byte featurisation (derived here).

**The persuader's observation** (`persuader_observation`): the reply features with the predictor's
per-claim probabilities and expected stance appended (the paper writes the predicted attitudes into the
persuader's prompt; features here, derived).

**The persuasion reward** (`persuasion_reward`, `dialogue_rewards`): the authors' ``make_debate_reward``
(``verl/utils/rewards.py``). The change of agreement from ``old`` to ``new`` is normalised by the room left,

.. math::
  d(\mathrm{new}, \mathrm{old}) = \begin{cases} (\mathrm{new} - \mathrm{old}) / (1 - \mathrm{old}) &
  \mathrm{new} > \mathrm{old}\ (1 \text{ if } \mathrm{old} > 0.999) \\
  (\mathrm{new} - \mathrm{old}) / \mathrm{old} & \mathrm{new} \le \mathrm{old}\ (0 \text{ if } \mathrm{old} < 0.001)
  \end{cases}

clipped at 0 unless ``keep_negative``; the turn-``t`` reward mixes the local change and the whole dialogue's,
``r_t = (1 - g) d(a_t, a_{t-1}) + g d(a_T, a_0)``. ``normalized=False`` is the code's ``raw`` form,
``a_t - a_{t-1}`` (and ``a_T - a_0``). The paper's text could not be read here (only its abstract, which
says the persuader is rewarded for changing the opponent's opinion); the code is taken as its definition,
so no ``official_compat`` switch exists. Not reproduced: the code's ``curve_exp`` power (1 here), its
format, length and repetition rewards; the defaults ``keep_negative=True``, ``global_factor=0`` are chosen
here (the authors' run configs were not read).

**A claim run** plays games with `play_dialogue` (a random persuader to collect data), trains a
`StancePredictor` on `dialogue_stance_examples` with `stance_loss`, then trains / compares persuaders whose
``choose`` reads `persuader_observation` with and without the predictor's logits, scored by the returned
`Dialogue`'s ``rewards`` (tests: an oracle that sees the hidden stance gains about twice a random persuader's
reward, and a greedy persuader over the trained predictor's `predicted_stance` lies between them).

Reference: Han et al., "ToMAP: Training Opponent-Aware LLM Persuaders with Theory of Mind", 2025.
https://arxiv.org/abs/2505.22961 ; code: https://github.com/ulab-uiuc/ToMAP
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdyn import _validation

__all__ = [
    "NUM_LEVELS", "opponent_update", "opponent_reply", "thesis_agreement", "reply_features", "StancePredictor",
    "stance_loss", "predicted_stance", "persuader_observation", "persuasion_reward", "dialogue_rewards",
    "Dialogue", "play_dialogue", "dialogue_stance_examples",
]

NUM_LEVELS = 5  # the paper's attitudes: Disagree, Partly Disagree, Neutral, Partly Agree, Agree
_SYMBOLS = np.frombuffer(b"01234?", np.uint8)  # reply bytes: a level, or nothing revealed
_FEATURES_PER_CLAIM = 2 * len(_SYMBOLS)


def _check_stance(name, stance, min_ndim=1):
  _validation.check_ndim(name, stance, tuple(range(min_ndim, 8)))
  _validation.check_finite(name, stance)
  s = _validation.check_floating(name, stance)
  if _validation.is_concrete(s) and s.size and (np.any(np.asarray(s) < 0) or np.any(np.asarray(s) > 1)):
    raise ValueError(f"{name}: must lie in [0, 1], got values in [{float(s.min())}, {float(s.max())}]")
  return s


def opponent_update(stance, claim, *, rate=0.5, backfire=0.1, threshold=0.5):
  r"""The opponent's stance after the persuader addresses counter-claim ``claim``.

  ``s_c <- (1 - rate) s_c`` if ``s_c >= threshold`` (a held claim is rebutted), else
  ``s_c <- s_c + backfire (1 - s_c)`` (an argument against a claim it does not hold backfires); the other
  claims are unchanged. Derived here (a toy persuadee).

  Args:
    stance: ``(..., K)`` beliefs in the counter-claims, in [0, 1].
    claim: ``(...)`` integer ids in ``[0, K)`` of the addressed claims (NaN rows under ``jit`` when out of range).
    rate: fraction of a held belief removed, in [0, 1].
    backfire: fraction of the remaining room a misdirected argument adds, in [0, 1].
    threshold: the belief at which a claim counts as held, in [0, 1].

  Returns:
    ``(..., K)`` float32 updated stance.

  Example:
    >>> opponent_update(jnp.array([0.8, 0.2]), jnp.array(0))
    Array([0.4, 0.2], dtype=float32)
  """
  s = _check_stance("stance", stance).astype(jnp.float32)
  k = s.shape[-1]
  _validation.check_integer_labels("claim", claim, k, shape=s.shape[:-1])
  rate = _validation.check_real("rate", rate, lower=0.0, upper=1.0)
  backfire = _validation.check_real("backfire", backfire, lower=0.0, upper=1.0)
  threshold = _validation.check_real("threshold", threshold, lower=0.0, upper=1.0)
  return _update(s, jnp.asarray(claim), rate, backfire, threshold)


def _update(s, claim, rate, backfire, threshold):
  k = s.shape[-1]
  hit = jax.nn.one_hot(claim, k, dtype=bool)
  moved = jnp.where(s >= threshold, (1.0 - rate) * s, s + backfire * (1.0 - s))
  return _validation.nan_unless(_validation.labels_valid(claim, k)[..., None], jnp.where(hit, moved, s))


def opponent_reply(key, stance, *, noise=0.1, reveal=0.5):
  r"""The opponent's reply: one byte per counter-claim, a noisy attitude level ``b"0" .. b"4"`` or ``b"?"``.

  Byte ``k`` is ``b"0" + clip(round(4 (s_k + noise * eps_k)), 0, 4)`` with probability ``reveal`` and ``b"?"``
  otherwise (``eps_k ~ N(0, 1)``). Derived here (the persuadee LLM's free-text reply in the paper).

  Args:
    key: a `jax.random` key.
    stance: ``(..., K)`` beliefs in [0, 1].
    noise: standard deviation of the belief noise, >= 0.
    reveal: probability that a claim's level is shown, in [0, 1].

  Returns:
    ``(..., K)`` uint8 bytes from ``b"01234?"``.

  Example:
    >>> bytes(opponent_reply(jax.random.key(0), jnp.array([1.0, 0.0]), noise=0.0, reveal=1.0))
    b'40'
  """
  _validation.check_key("key", key)
  s = _check_stance("stance", stance).astype(jnp.float32)
  noise = _validation.check_real("noise", noise, lower=0.0)
  reveal = _validation.check_real("reveal", reveal, lower=0.0, upper=1.0)
  return _reply(key, s, noise, reveal)


def _reply(key, s, noise, reveal):
  k_noise, k_show = jax.random.split(key)
  level = jnp.clip(jnp.round(4.0 * (s + noise * jax.random.normal(k_noise, s.shape))), 0, 4).astype(jnp.uint8)
  shown = jax.random.uniform(k_show, s.shape) < reveal
  return jnp.where(shown, level + jnp.uint8(ord("0")), jnp.uint8(ord("?")))


def thesis_agreement(stance):
  r"""The opponent's agreement with the thesis, ``a(s) = 1 - mean_k s_k`` (derived here).

  Args:
    stance: ``(..., K)`` beliefs in the counter-claims, in [0, 1].

  Returns:
    ``(...)`` agreement in [0, 1].

  Example:
    >>> thesis_agreement(jnp.array([0.5, 0.25]))
    Array(0.625, dtype=float32)
  """
  return 1.0 - jnp.mean(_check_stance("stance", stance), axis=-1)


def reply_features(replies):
  r"""Features of the replies so far: per claim, the one-hot of the last reply's byte and the mean one-hot
  over all replies (symbols ``b"01234?"``), ``12 K`` numbers (derived here; the paper encodes the dialogue
  text with a frozen text encoder).

  Args:
    replies: ``(..., T, K)`` uint8 reply bytes (`opponent_reply`), ``T >= 1``.

  Returns:
    ``(..., 12 K)`` float32 features, claim-major (under ``jit`` bytes are not checked: another byte gives zeros).

  Example:
    >>> reply_features(jnp.array([[ord("4")], [ord("?")]], jnp.uint8)).tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5]
  """
  if not hasattr(replies, "dtype") or replies.dtype != np.uint8:
    raise TypeError(f"replies: must be a uint8 array of reply bytes, got {type(replies).__name__} "
                    f"{getattr(replies, 'dtype', '')}".rstrip())
  _validation.check_ndim("replies", replies, tuple(range(2, 8)))
  _validation.check_nonempty("replies", replies, axis=replies.ndim - 2, what="replies")
  if _validation.is_concrete(replies) and not np.isin(np.asarray(replies), _SYMBOLS).all():
    raise ValueError("replies: must hold only the bytes b'01234?', got others")
  onehot = (jnp.asarray(replies)[..., None] == jnp.asarray(_SYMBOLS)).astype(jnp.float32)  # (..., T, K, 6)
  feats = jnp.concatenate([onehot[..., -1, :, :], jnp.mean(onehot, axis=-3)], axis=-1)  # (..., K, 12)
  return feats.reshape(*feats.shape[:-2], feats.shape[-2] * feats.shape[-1])


class StancePredictor(nnx.Module):
  r"""The stance predictor: an MLP from `reply_features` to per-claim logits over the five attitude levels.

  ``Linear(12 K, hidden) - ReLU - ... - Linear(hidden, 5 K)`` (the authors' ``MLPClassifier`` without
  dropout, with one head per claim here), trained with `stance_loss`.

  Args:
    num_claims: ``K``, the number of counter-claims (>= 1).
    hidden: width of each hidden layer (>= 1).
    depth: number of hidden layers (>= 1).
    rngs: `flax.nnx.Rngs` for the initialisation.

  Example:
    >>> model = StancePredictor(2, hidden=8, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((3, 24))).shape
    (3, 2, 5)
  """

  def __init__(self, num_claims: int, *, hidden: int = 32, depth: int = 1, rngs: nnx.Rngs):
    self.num_claims = _validation.check_int("num_claims", num_claims, lower=1)
    hidden = _validation.check_int("hidden", hidden, lower=1)
    depth = _validation.check_int("depth", depth, lower=1)
    if not isinstance(rngs, nnx.Rngs):
      raise TypeError(f"rngs: must be a flax.nnx.Rngs, got {type(rngs).__name__}")
    dims = [_FEATURES_PER_CLAIM * self.num_claims] + [hidden] * depth
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
    self.out = nnx.Linear(hidden, NUM_LEVELS * self.num_claims, rngs=rngs)

  def __call__(self, features):
    """``(..., 12 K)`` features -> ``(..., K, 5)`` logits."""
    want = _FEATURES_PER_CLAIM * self.num_claims
    if np.ndim(features) < 1 or np.shape(features)[-1] != want:
      raise ValueError(f"features: must have {want} features on the last axis (12 per claim), got shape "
                       f"{np.shape(features)}")
    _validation.check_finite("features", features)
    h = _validation.check_floating("features", features)
    for layer in self.hidden:
      h = jax.nn.relu(layer(h))
    return self.out(h).reshape(*h.shape[:-1], self.num_claims, NUM_LEVELS)


def stance_loss(logits, stance):
  r"""The stance predictor's loss: mean cross-entropy with the level label ``y_k = round(4 s_k)``.

  .. math:: L = -\tfrac{1}{N K} \textstyle\sum_{n, k} \log \mathrm{softmax}(z_{nk})_{y_{nk}}

  (the authors' unweighted ``CrossEntropyLoss`` with ``label = round(agreement * 4)``, half to even).

  Args:
    logits: ``(..., K, 5)`` predictor logits.
    stance: ``(..., K)`` true beliefs in [0, 1].

  Returns:
    The scalar mean loss.

  Example:
    >>> float(stance_loss(jnp.zeros((1, 5)), jnp.array([0.3])))  # log 5
    1.609...
  """
  _validation.check_ndim("logits", logits, tuple(range(2, 8)))
  if np.shape(logits)[-1] != NUM_LEVELS:
    raise ValueError(f"logits: must have {NUM_LEVELS} levels on the last axis, got shape {np.shape(logits)}")
  s = _check_stance("stance", stance)
  _validation.check_same_shape("stance", s, "logits[..., 0]", np.empty(np.shape(logits)[:-1]))
  _validation.check_nonempty("logits", logits, what="stances")
  z = _validation.check_floating("logits", logits)
  _validation.check_finite("logits", z)
  label = jnp.clip(jnp.round(4.0 * jnp.nan_to_num(s)), 0, NUM_LEVELS - 1).astype(jnp.int32)
  nll = -jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), label[..., None], axis=-1)[..., 0]
  ok = (s >= 0) & (s <= 1) & jnp.all(jnp.isfinite(z), axis=-1)
  return jnp.mean(_validation.nan_unless(ok, nll))  # a NaN or out-of-range stance: NaN (jit)


def predicted_stance(logits):
  r"""The predictor's expected belief per claim, ``sum_l p_l l / 4`` with ``p = softmax(logits)``.

  Args:
    logits: ``(..., K, 5)`` predictor logits.

  Returns:
    ``(..., K)`` expected beliefs in [0, 1].

  Example:
    >>> predicted_stance(jnp.array([[0.0, 0.0, 0.0, 0.0, 0.0]]))
    Array([0.5], dtype=float32)
  """
  _validation.check_ndim("logits", logits, tuple(range(1, 8)))
  if np.shape(logits)[-1] != NUM_LEVELS:
    raise ValueError(f"logits: must have {NUM_LEVELS} levels on the last axis, got shape {np.shape(logits)}")
  z = _validation.check_floating("logits", logits)
  _validation.check_finite("logits", z)
  out = jax.nn.softmax(z, axis=-1) @ (jnp.arange(NUM_LEVELS, dtype=z.dtype) / (NUM_LEVELS - 1))
  return _validation.nan_unless(jnp.all(jnp.isfinite(z), axis=-1), out)  # an infinite logit: NaN, not a guess


def persuader_observation(features, logits=None):
  r"""The persuader's observation: the reply features, with the predictor's per-claim probabilities
  (``5 K``) and expected beliefs (``K``) appended when ``logits`` is given (the ToMAP arm; ``None`` is the
  arm without the stance predictor).

  Args:
    features: ``(..., 12 K)`` `reply_features`.
    logits: ``(..., K, 5)`` `StancePredictor` logits, or None.

  Returns:
    ``(..., 12 K)`` or ``(..., 18 K)`` float32.

  Example:
    >>> persuader_observation(jnp.zeros(12), jnp.zeros((1, 5))).shape
    (18,)
  """
  _validation.check_ndim("features", features, tuple(range(1, 8)))
  _validation.check_finite("features", features)
  f = _validation.check_floating("features", features)
  if f.shape[-1] % _FEATURES_PER_CLAIM:
    raise ValueError(f"features: must have 12 per claim on the last axis, got shape {f.shape}")
  if logits is None:
    return f
  k = f.shape[-1] // _FEATURES_PER_CLAIM
  want = (*f.shape[:-1], k, NUM_LEVELS)
  if np.shape(logits) != want:
    raise ValueError(f"logits: must have shape {want} for features of shape {f.shape}, got {np.shape(logits)}")
  z = _validation.check_floating("logits", logits)
  p = _validation.nan_unless(jnp.all(jnp.isfinite(z), axis=-1, keepdims=True), jax.nn.softmax(z, axis=-1))
  return jnp.concatenate([f, p.reshape(*f.shape[:-1], k * NUM_LEVELS), predicted_stance(z).astype(f.dtype)], axis=-1)


def _diff(new, old, normalized, keep_negative):
  if normalized:
    up = jnp.where(old > 0.999, 1.0, (new - old) / jnp.maximum(1.0 - old, 1e-12))
    down = jnp.where(old < 0.001, 0.0, (new - old) / jnp.maximum(old, 1e-12))
    r = jnp.where(new > old, up, down)
  else:
    r = new - old
  r = r if keep_negative else jnp.maximum(r, 0.0)
  return _validation.nan_unless(jnp.isfinite(new) & jnp.isfinite(old), r)  # NaN in, NaN out (under jit)


def _check_flag(name, value):
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name}: must be a bool, got {type(value).__name__}")
  return bool(value)


def persuasion_reward(old, new, *, normalized=True, keep_negative=True):
  r"""The reward for moving the opponent's agreement from ``old`` to ``new`` (the authors' ``calc_diff``).

  ``(new - old) / (1 - old)`` for a gain (1 when ``old > 0.999``), ``(new - old) / old`` otherwise (0 when
  ``old < 0.001``); ``normalized=False`` gives ``new - old``; ``keep_negative=False`` clips at 0.

  Args:
    old: agreement before, in [0, 1] (any shape).
    new: agreement after, same shape.
    normalized: divide by the room left (the code's training reward) or not (its ``raw`` form).
    keep_negative: keep losses negative (else clip at 0).

  Returns:
    float32 rewards, the shape of ``old``.

  Example:
    >>> persuasion_reward(jnp.array([0.5, 0.5]), jnp.array([0.75, 0.25])).tolist()
    [0.5, -0.5]
  """
  o = _check_stance("old", old, min_ndim=0)
  n = _check_stance("new", new, min_ndim=0)
  _validation.check_same_shape("new", n, "old", o)
  return _diff(n, o, _check_flag("normalized", normalized), _check_flag("keep_negative", keep_negative)).astype(
      jnp.float32)


def dialogue_rewards(agreement, *, global_factor=0.0, normalized=True, keep_negative=True):
  r"""Per-turn rewards of a dialogue, ``r_t = (1 - g) d(a_t, a_{t-1}) + g d(a_T, a_0)`` (``make_debate_reward``).

  Args:
    agreement: ``(..., T + 1)`` the opponent's agreement before the first turn and after each, in [0, 1].
    global_factor: ``g``, the weight of the whole dialogue's change, in [0, 1].
    normalized: as in `persuasion_reward`.
    keep_negative: as in `persuasion_reward`.

  Returns:
    ``(..., T)`` float32 rewards.

  Example:
    >>> dialogue_rewards(jnp.array([0.5, 0.75, 0.5]), global_factor=0.5).tolist()
    [0.25, -0.1666666716337204]
  """
  a = _check_stance("agreement", agreement)
  if a.shape[-1] < 2:
    raise ValueError(f"agreement: must hold at least 2 values (before and after a turn) on its last axis, got "
                     f"shape {a.shape}")
  g = _validation.check_real("global_factor", global_factor, lower=0.0, upper=1.0)
  normalized = _check_flag("normalized", normalized)
  keep_negative = _check_flag("keep_negative", keep_negative)
  return _rewards(a, g, normalized, keep_negative)


def _rewards(a, g, normalized, keep_negative):
  local = _diff(a[..., 1:], a[..., :-1], normalized, keep_negative)
  total = _diff(a[..., -1:], a[..., :1], normalized, keep_negative)
  return ((1.0 - g) * local + g * total).astype(jnp.float32)


_reply_jit = jax.jit(_reply)


@jax.jit
def _turn_jit(key, stance, claim, rate, backfire, threshold, noise, reveal):
  stance = _update(stance, claim, rate, backfire, threshold)
  return stance, _reply(key, stance, noise, reveal)


class Dialogue(NamedTuple):
  """One batch of games: ``stance`` ``(B, T + 1, K)`` (before the first turn and after each), ``claims``
  ``(B, T)`` the addressed claims, ``replies`` ``(B, T + 1, K)`` uint8 (the opening reply, then one per turn),
  ``agreement`` ``(B, T + 1)`` and ``rewards`` ``(B, T)`` (`dialogue_rewards`)."""

  stance: jax.Array
  claims: jax.Array
  replies: jax.Array
  agreement: jax.Array
  rewards: jax.Array


def play_dialogue(key, choose: Callable, *, num_games: int = 1, num_claims: int = 4, num_turns: int = 3,
                  rate=0.5, backfire=0.1, threshold=0.5, noise=0.1, reveal=0.5, global_factor=0.0,
                  normalized: bool = True, keep_negative: bool = True) -> Dialogue:
  r"""Plays ``num_games`` dialogues of ``num_turns`` turns against fresh opponents (stances ``U[0, 1]^K``).

  Each turn: the opponent's replies so far go to ``choose(key, replies, stance) -> (B,)`` claim ids (``replies``
  ``(B, t + 1, K)`` uint8; ``stance`` ``(B, K)`` is the hidden truth, for oracle baselines and tests only), the
  stance moves by `opponent_update` and the opponent replies (`opponent_reply`). Everything is drawn from
  ``key``: the same key (and a deterministic ``choose``) gives the same games.

  Args:
    key: a `jax.random` key.
    choose: the persuader, ``choose(key, replies, stance) -> (B,)`` integer claim ids.
    num_games: ``B`` (>= 1).
    num_claims: ``K`` (>= 1).
    num_turns: ``T`` (>= 1).
    rate, backfire, threshold: `opponent_update`'s rule.
    noise, reveal: `opponent_reply`'s noise.
    global_factor, normalized, keep_negative: `dialogue_rewards`' form.

  Returns:
    A `Dialogue`.

  Example:
    >>> oracle = lambda key, replies, stance: jnp.argmax(stance, axis=-1)
    >>> play_dialogue(jax.random.key(0), oracle, num_games=2, num_turns=3).rewards.shape
    (2, 3)
  """
  _validation.check_key("key", key)
  if not callable(choose):
    raise TypeError(f"choose: must be a callable (key, replies, stance) -> claims, got {type(choose).__name__}")
  b = _validation.check_int("num_games", num_games, lower=1)
  k = _validation.check_int("num_claims", num_claims, lower=1)
  t_max = _validation.check_int("num_turns", num_turns, lower=1)
  unit = dict(lower=0.0, upper=1.0)
  rule = tuple(_validation.check_real(n, v, **unit) for n, v in (("rate", rate), ("backfire", backfire),
                                                                 ("threshold", threshold)))
  talk = (_validation.check_real("noise", noise, lower=0.0), _validation.check_real("reveal", reveal, **unit))
  g = _validation.check_real("global_factor", global_factor, **unit)
  normalized = _check_flag("normalized", normalized)
  keep_negative = _check_flag("keep_negative", keep_negative)
  key, k_init, k_reply = jax.random.split(key, 3)
  stance = jax.random.uniform(k_init, (b, k))
  stances, replies, claims = [stance], [_reply_jit(k_reply, stance, *talk)], []
  for _ in range(t_max):
    key, k_choose, k_reply = jax.random.split(key, 3)
    claim = jnp.asarray(choose(k_choose, jnp.stack(replies, axis=1), stance))
    if claim.shape != (b,) or not jnp.issubdtype(claim.dtype, jnp.integer):
      raise ValueError(f"choose: must return ({b},) integer claim ids, got shape {claim.shape} dtype {claim.dtype}")
    stance, reply = _turn_jit(k_reply, stance, claim, *rule, *talk)
    stances.append(stance)
    replies.append(reply)
    claims.append(claim)
  return _record(jnp.stack(stances, axis=1), jnp.stack(claims, axis=1), jnp.stack(replies, axis=1), g,
                 normalized=normalized, keep_negative=keep_negative)


@functools.partial(jax.jit, static_argnames=("normalized", "keep_negative"))
def _record(stance, claims, replies, g, *, normalized, keep_negative):
  agreement = 1.0 - jnp.mean(stance, axis=-1)
  return Dialogue(stance, claims.astype(jnp.int32), replies, agreement, _rewards(agreement, g, normalized,
                                                                                  keep_negative))


def dialogue_stance_examples(dialogue: Dialogue):
  r"""Training pairs for the stance predictor from played games: after each reply ``t`` (``0 .. T``), the
  features of the replies so far and the opponent's true stance at that point.

  Args:
    dialogue: a `Dialogue` (`play_dialogue`).

  Returns:
    ``(features, stance)``: ``(B (T + 1), 12 K)`` `reply_features` and ``(B (T + 1), K)`` beliefs, game-major.

  Example:
    >>> d = play_dialogue(jax.random.key(0), lambda key, r, s: jnp.zeros(2, jnp.int32), num_games=2, num_turns=1)
    >>> [x.shape for x in dialogue_stance_examples(d)]
    [(4, 48), (4, 4)]
  """
  if not isinstance(dialogue, Dialogue):
    raise TypeError(f"dialogue: must be a Dialogue (play_dialogue), got {type(dialogue).__name__}")
  return _examples(dialogue.replies, dialogue.stance)


@jax.jit
def _examples(replies, stance):
  b, t1, k = replies.shape
  feats = jnp.stack([reply_features(replies[:, :t + 1]) for t in range(t1)], axis=1)
  return feats.reshape(b * t1, feats.shape[-1]), stance.reshape(b * t1, k)
