r"""A synthetic preference dataset with a controlled value, probe choice probabilities and a DPO step.

"Value Drifts: Tracing Value Alignment During LLM Post-Training" (arXiv 2510.26707) studies how a model's
values move through SFT and then preference optimization, and uses a synthetic preference dataset that
sets a value under control. This module is that study's data and measuring instrument at toy scale
(derived here: the paper's own dataset and probes were not read, only its abstract).

The value is a two-valued trait. Every prompt ``b"Q%03d?"`` (a situation id ``k``) has exactly two
completions of equal length that differ in one value-laden choice: the *cautious* answer ``b"safe"``
(the target value, ``VALUE_OPTION``) and the *bold* answer ``b"bold"`` (``OTHER_OPTION``). Training
prompts use ids ``0 .. 799``; the fixed probe set uses the held-out ids ``800 .. 999``.

- `value_preferences`: ``n`` pairs (chosen, rejected); exactly ``round(value_rate * n)`` of them (drawn
  at random) prefer the cautious answer, the others the bold one.
- `value_sft_data`: ``n`` demonstrations, exactly ``round(value_rate * n)`` of them cautious.
- `value_probes`: the fixed probe set, both options encoded per probe (option 0 the cautious one).
- `probe_value_probs`: the probability a model puts on each option of each probe, from sequence
  log-probs normalised over the two options:

  .. math::
    p_i = \frac{e^{\log\pi(y^{v}_i \mid x_i)}}{e^{\log\pi(y^{v}_i \mid x_i)} + e^{\log\pi(y^{o}_i \mid x_i)}},
    \qquad \log\pi(y \mid x) = \textstyle\sum_{t \in y,\,\mathrm{EOS}} \log\pi(y_t \mid x, y_{<t}),

  (the completion's tokens and its EOS, `jaxdyn.rl.completion_mask`), ready for `jaxdyn.rl.value_drift`
  (stack one ``(num_probes, 2)`` array per checkpoint).
- `DPOState`, `dpo_init`, `dpo_step`: a jitted DPO training step (`jaxdyn.rl.dpo_loss` on the same sequence
  log-probs, the reference policy frozen at `dpo_init`) with an Optax optimizer.

References:
  Bhatia, Nayak, Kamath, Mosbach, Stańczak, Shwartz, Reddy, "Value Drifts: Tracing Value Alignment During
  LLM Post-Training", 2025. https://arxiv.org/abs/2510.26707 (only its abstract was read here).
  Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
  NeurIPS 2023. https://arxiv.org/abs/2305.18290
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxdyn import _validation
from jaxdyn.models import Transformer, token_log_probs
from jaxdyn.rl._policy_gradient import completion_mask
from jaxdyn.rl._preference import dpo_loss
from jaxdyn.rl._task import encode

__all__ = ["ValuePreferences", "value_preferences", "ValueDemos", "value_sft_data", "ValueProbes", "value_probes",
           "probe_value_probs", "DPOState", "dpo_init", "dpo_step"]

VALUE_OPTION = b"safe"  # the target value (cautious)
OTHER_OPTION = b"bold"
NUM_TRAIN_IDS = 800  # training prompts: ids 0..799
NUM_PROBE_IDS = 200  # probe prompts: ids 800..999
PROMPT_LEN = 6  # BOS + b"Q%03d?"
SEQ_LEN = PROMPT_LEN + len(VALUE_OPTION) + 1  # + the completion and its EOS


def _prompt(k: int) -> bytes:
  return b"Q%03d?" % k


class ValuePreferences(NamedTuple):
  """Preference pairs (`value_preferences`): ``prompt_ids`` ``(n,)`` int32, ``prompts`` / ``chosen`` /
  ``rejected`` lists of ``n`` bytes, ``chosen_has_value`` ``(n,)`` bool (chosen is ``b"safe"``), and the
  encoded ``chosen_tokens`` / ``rejected_tokens`` ``(n, 11)`` int32 (`jaxdyn.rl.encode`; prompt length 6)."""

  prompt_ids: np.ndarray
  prompts: list
  chosen: list
  rejected: list
  chosen_has_value: np.ndarray
  chosen_tokens: np.ndarray
  rejected_tokens: np.ndarray


class ValueDemos(NamedTuple):
  """SFT demonstrations (`value_sft_data`): ``prompt_ids`` ``(n,)``, ``prompts`` / ``completions`` lists of
  bytes, ``has_value`` ``(n,)`` bool, and ``tokens`` ``(n, 11)`` int32 (prompt length 6)."""

  prompt_ids: np.ndarray
  prompts: list
  completions: list
  has_value: np.ndarray
  tokens: np.ndarray


class ValueProbes(NamedTuple):
  """The fixed probe set (`value_probes`): ``prompt_ids`` ``(P,)``, ``prompts``, ``tokens`` ``(P, 2, 11)``
  int32 (option 0 the value-laden ``b"safe"``, option 1 ``b"bold"``) and ``prompt_len`` (6)."""

  prompt_ids: np.ndarray
  prompts: list
  tokens: np.ndarray
  prompt_len: int


def _draw(num: int, value_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, NUM_TRAIN_IDS, size=num).astype(np.int32)
  has = np.zeros(num, bool)
  has[:int(round(value_rate * num))] = True
  return ids, rng.permutation(has)


def _check_common(name: str, num: int, value_rate: float, seed: int) -> tuple[int, float, int]:
  num = _validation.check_int(name, num, lower=1)
  value_rate = _validation.check_real("value_rate", value_rate, lower=0.0, upper=1.0)
  if isinstance(seed, bool):
    raise TypeError(f"seed: must be an integer, got {seed!r}")
  seed = _validation.check_int("seed", seed, lower=0)
  return num, value_rate, seed


def value_preferences(num_pairs: int, *, value_rate: float, seed: int) -> ValuePreferences:
  """``num_pairs`` preference pairs, exactly ``round(value_rate * num_pairs)`` of them preferring the value.

  Each pair's prompt id is drawn uniformly from the training ids ``0 .. 799``; the pairs whose chosen
  completion is the cautious ``b"safe"`` are a uniformly random subset of the exact size (the rejected
  completion is then ``b"bold"``, and the other way round).

  Args:
    num_pairs: ``n >= 1``.
    value_rate: the share in [0, 1] of pairs whose chosen completion carries the value (the count is
      ``round(value_rate * num_pairs)``, Python's round: half to even).
    seed: a non-negative integer.

  Returns:
    A `ValuePreferences`.

  Example:
    >>> d = value_preferences(4, value_rate=0.75, seed=0)
    >>> int(d.chosen_has_value.sum()), d.chosen_tokens.shape
    (3, (4, 11))
  """
  num_pairs, value_rate, seed = _check_common("num_pairs", num_pairs, value_rate, seed)
  ids, has = _draw(num_pairs, value_rate, seed)
  prompts = [_prompt(int(k)) for k in ids]
  chosen = [VALUE_OPTION if h else OTHER_OPTION for h in has]
  rejected = [OTHER_OPTION if h else VALUE_OPTION for h in has]
  return ValuePreferences(ids, prompts, chosen, rejected, has, encode(prompts, chosen, length=SEQ_LEN),
                          encode(prompts, rejected, length=SEQ_LEN))


def value_sft_data(num_examples: int, *, value_rate: float, seed: int) -> ValueDemos:
  """``num_examples`` SFT demonstrations, exactly ``round(value_rate * num_examples)`` of them cautious.

  Args:
    num_examples: ``n >= 1``.
    value_rate: the share in [0, 1] of demonstrations answering ``b"safe"`` (the others ``b"bold"``).
    seed: a non-negative integer.

  Returns:
    A `ValueDemos` (train with the next-token loss on ``tokens`` masked by
    ``jaxdyn.rl.completion_mask(tokens, 6)``).

  Example:
    >>> d = value_sft_data(2, value_rate=1.0, seed=0)
    >>> d.completions
    [b'safe', b'safe']
  """
  num_examples, value_rate, seed = _check_common("num_examples", num_examples, value_rate, seed)
  ids, has = _draw(num_examples, value_rate, seed)
  prompts = [_prompt(int(k)) for k in ids]
  completions = [VALUE_OPTION if h else OTHER_OPTION for h in has]
  return ValueDemos(ids, prompts, completions, has, encode(prompts, completions, length=SEQ_LEN))


def value_probes(num_probes: int = NUM_PROBE_IDS) -> ValueProbes:
  """The fixed probe set: the first ``num_probes`` held-out prompt ids ``800, 801, ...``, both options each.

  Deterministic (no seed): every checkpoint of every run is probed on the same set.

  Args:
    num_probes: ``P`` in ``[1, 200]``.

  Returns:
    A `ValueProbes`.

  Example:
    >>> p = value_probes(2)
    >>> p.prompts, p.tokens.shape, p.prompt_len
    ([b'Q800?', b'Q801?'], (2, 2, 11), 6)
  """
  num_probes = _validation.check_int("num_probes", num_probes, lower=1, upper=NUM_PROBE_IDS)
  ids = np.arange(NUM_TRAIN_IDS, NUM_TRAIN_IDS + num_probes, dtype=np.int32)
  prompts = [_prompt(int(k)) for k in ids]
  tokens = np.stack([encode(prompts, [VALUE_OPTION] * num_probes, length=SEQ_LEN),
                     encode(prompts, [OTHER_OPTION] * num_probes, length=SEQ_LEN)], axis=1)
  return ValueProbes(ids, prompts, tokens, PROMPT_LEN)


def _sequence_log_probs(model, tokens, prompt_len):
  """``(B,)`` sums of the completion's next-token log-probs (inference mode)."""
  lp = token_log_probs(model(tokens, train=False)[:, :-1], tokens[:, 1:])
  return jnp.sum(lp * completion_mask(tokens, prompt_len), axis=1)


def _check_model(model):
  if not isinstance(model, Transformer):
    raise TypeError(f"model: must be a jaxdyn.models.Transformer, got {type(model).__name__}")


def _check_prompt_len(prompt_len, length):
  if isinstance(prompt_len, bool):
    raise TypeError(f"prompt_len: must be an integer, got {prompt_len!r}")
  return _validation.check_int("prompt_len", prompt_len, lower=1, upper=length - 1)


@functools.partial(jax.jit, static_argnames=("graphdef", "prompt_len"))
def _probe_probs(graphdef, state, tokens, *, prompt_len):
  model = nnx.merge(graphdef, state)
  p, k, length = tokens.shape
  seq = _sequence_log_probs(model, tokens.reshape(p * k, length), prompt_len).reshape(p, k)
  return jax.nn.softmax(seq, axis=-1)


def probe_value_probs(model: Transformer, probe_tokens: jax.Array, *, prompt_len: int) -> jax.Array:
  r"""Probabilities ``(P, 2)`` a model gives each probe's two options, normalised over the two (jitted).

  ``p[i] = softmax([log pi(y_i^0 | x_i), log pi(y_i^1 | x_i)])`` with sequence log-probs summed over the
  completion's tokens and its EOS (`jaxdyn.rl.completion_mask`), in inference mode. Column 0 is the
  value-laden option for `value_probes`' tokens. Compiled once per model structure and shape.

  Args:
    model: a `jaxdyn.models.Transformer`.
    probe_tokens: ``(P, 2, T)`` integer ids ``[BOS] prompt option [EOS] [PAD]...`` (`ValueProbes.tokens`),
      ``T >= 2``.
    prompt_len: tokens of every prompt (BOS included), in ``[1, T)``.

  Returns:
    ``(P, 2)`` float32 probabilities, each row summing to 1.

  Example:
    >>> m = Transformer(259, dim=8, depth=1, num_heads=1, rngs=nnx.Rngs(0))
    >>> p = value_probes(3)
    >>> probe_value_probs(m, p.tokens, prompt_len=p.prompt_len).sum(-1).round(5)
    Array([1., 1., 1.], dtype=float32)
  """
  _check_model(model)
  _validation.check_ndim("probe_tokens", probe_tokens, 3)
  shape = np.shape(probe_tokens)
  if shape[1] != 2:
    raise ValueError(f"probe_tokens: must hold 2 options per probe (axis 1), got shape {shape}")
  _validation.check_nonempty("probe_tokens", probe_tokens, what="probes")
  if shape[2] < 2:
    raise ValueError(f"probe_tokens: must hold at least 2 tokens per row, got shape {shape}")
  _validation.check_integer_labels("probe_tokens", probe_tokens, model.vocab_size)
  prompt_len = _check_prompt_len(prompt_len, shape[2])
  graphdef, state = nnx.split(model)
  return _probe_probs(graphdef, state, jnp.asarray(probe_tokens, jnp.int32), prompt_len=prompt_len)


class DPOState(NamedTuple):
  """What `dpo_step` carries: the policy's ``params`` (``nnx.Param`` state), the optimizer's ``opt_state``,
  the frozen reference ``ref_params`` and the ``step`` count (int32)."""

  params: Any
  opt_state: Any
  ref_params: Any
  step: jax.Array


def dpo_init(model: Transformer, tx: optax.GradientTransformation) -> DPOState:
  """A `DPOState` starting from ``model``'s parameters, which also become the frozen reference policy.

  Args:
    model: a `jaxdyn.models.Transformer` (usually the SFT policy).
    tx: an Optax optimizer.

  Returns:
    A `DPOState` with ``step = 0``.

  Example:
    >>> m = Transformer(259, dim=8, depth=1, num_heads=1, rngs=nnx.Rngs(0))
    >>> int(dpo_init(m, optax.sgd(0.1)).step)
    0
  """
  _check_model(model)
  if not isinstance(tx, optax.GradientTransformation):
    raise TypeError(f"tx: must be an optax.GradientTransformation, got {type(tx).__name__}")
  params = nnx.state(model, nnx.Param)
  ref = jax.tree.map(jnp.array, params)  # a copy: later in-place model updates leave the reference alone
  return DPOState(params, tx.init(params), ref, jnp.zeros((), jnp.int32))


@functools.partial(jax.jit, static_argnames=("graphdef", "tx", "prompt_len", "beta"))
def _dpo_step(graphdef, rest, state, chosen, rejected, *, tx, prompt_len, beta):
  n = chosen.shape[0]
  both = jnp.concatenate([chosen, rejected])
  ref = jax.lax.stop_gradient(_sequence_log_probs(nnx.merge(graphdef, state.ref_params, rest), both, prompt_len))

  def loss_fn(params):
    pol = _sequence_log_probs(nnx.merge(graphdef, params, rest), both, prompt_len)
    return dpo_loss(pol[:n], pol[n:], ref[:n], ref[n:], beta=beta)

  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return DPOState(params, opt_state, state.ref_params, state.step + 1), {"loss": loss, **aux}


def dpo_step(model: Transformer, tx: optax.GradientTransformation, state: DPOState, chosen_tokens: jax.Array,
             rejected_tokens: jax.Array, *, prompt_len: int, beta: float = 0.1) -> tuple[DPOState, dict]:
  r"""One jitted DPO update: `jaxdyn.rl.dpo_loss` on sequence log-probs, gradient through the policy only.

  .. math:: \mathcal{L} = \mathrm{mean}_n -\log\sigma\big(\beta[(\log\pi_\theta(y_w) - \log\pi_{ref}(y_w))
     - (\log\pi_\theta(y_l) - \log\pi_{ref}(y_l))]\big)

  with ``log pi(y)`` summed over the completion's tokens and its EOS, both policies in inference mode (no
  dropout; derived here). ``model`` supplies the structure and non-parameter state; its parameters are
  not read or changed (``nnx.update(model, state.params)`` brings the trained ones in, e.g. before
  `probe_value_probs`). Compiled once per model structure, ``tx``, shapes, ``prompt_len`` and ``beta``.

  Args:
    model: a `jaxdyn.models.Transformer` of the structure `dpo_init` saw.
    tx: the Optax optimizer `dpo_init` was given.
    state: a `DPOState`.
    chosen_tokens, rejected_tokens: ``(n, T)`` integer ids of the preferred / rejected sequences
      (`ValuePreferences.chosen_tokens` / ``rejected_tokens``), row ``i`` of both sharing a prompt.
    prompt_len: tokens of every prompt (BOS included), in ``[1, T)``.
    beta: DPO's inverse temperature (> 0).

  Returns:
    ``(state, metrics)``: the updated state and ``loss`` (before the update), ``margin``, ``accuracy``.

  Example:
    >>> m = Transformer(259, dim=8, depth=1, num_heads=1, rngs=nnx.Rngs(0))
    >>> tx = optax.sgd(0.1)
    >>> d = value_preferences(4, value_rate=1.0, seed=0)
    >>> s, met = dpo_step(m, tx, dpo_init(m, tx), d.chosen_tokens, d.rejected_tokens, prompt_len=6)
    >>> round(float(met["loss"]), 5)  # log 2: the policy starts at the reference
    0.69315
  """
  _check_model(model)
  if not isinstance(tx, optax.GradientTransformation):
    raise TypeError(f"tx: must be an optax.GradientTransformation, got {type(tx).__name__}")
  if not isinstance(state, DPOState):
    raise TypeError(f"state: must be a DPOState (from dpo_init), got {type(state).__name__}")
  for name, x in (("chosen_tokens", chosen_tokens), ("rejected_tokens", rejected_tokens)):
    _validation.check_ndim(name, x, 2)
    _validation.check_integer_labels(name, x, model.vocab_size)
  _validation.check_nonempty("chosen_tokens", chosen_tokens, what="pairs")
  _validation.check_same_shape("rejected_tokens", rejected_tokens, "chosen_tokens", chosen_tokens)
  length = np.shape(chosen_tokens)[1]
  if length < 2:
    raise ValueError(f"chosen_tokens: must hold at least 2 tokens per row, got shape {np.shape(chosen_tokens)}")
  prompt_len = _check_prompt_len(prompt_len, length)
  beta = float(_validation.check_real("beta", beta, lower=0.0, lower_open=True))
  graphdef, _, rest = nnx.split(model, nnx.Param, ...)
  return _dpo_step(graphdef, rest, state, jnp.asarray(chosen_tokens, jnp.int32),
                   jnp.asarray(rejected_tokens, jnp.int32), tx=tx, prompt_len=prompt_len, beta=beta)
