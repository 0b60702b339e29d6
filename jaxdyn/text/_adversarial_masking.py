r"""Adversarial-MidiBERT: adversarial (unbiased) masking for masked-LM pre-training, and mask fine-tuning.

Zhao, "Adversarial-MidiBERT: Symbolic Music Understanding Model Based on Unbias Pre-training and Mask
Fine-tuning", 2024 (v2: "Let Network Decide What to Learn ...", ICMR 2025). https://arxiv.org/abs/2407.08306;
authors' code https://github.com/RS2002/Adversarial-MidiBERT (read at commit ``4f2c10b``).

A BERT-style (bidirectional) model is pre-trained by masked-token prediction. Random masking also
masks tokens that *cannot be inferred from their context* (the paper's "bias-carrying" tokens: the
only way to predict them is to memorise the training distribution, which the paper argues is where
a pre-trained model's bias comes from). Adversarial-MidiBERT lets a second player, the *masker*
(a sigmoid head on the shared encoder), decide what to mask, and keeps such tokens out of the game.

**Masked-LM corruption** (`random_selection`, `corrupt`). A selection ``S_b`` of ``n_b`` positions of
row ``b``; exactly ``round(0.8 n_b)`` of them become ``[MASK]``, ``round(0.1 n_b)`` a uniformly drawn
token, the rest stay (BERT's 80/10/10 rule, as the code's ``get_mask_ind``). The loss covers all of
``S_b``; the positions actually altered are ``R_b \subseteq S_b`` (``replaced``). Random masking draws
``S_b`` uniformly with ``n_b = round(0.15 |valid_b|)``.

**The adversary's selection** (`adversarial_selection`). The masker scores every token of the *clean*
input, ``s_{bi} = \sigma(g(h_{bi})) \in (0, 1)``, and masks the top-scoring available ones:

.. math::
   n_b = \min\big(\lfloor u_b A_b \rfloor, \lfloor 0.15 L \rfloor\big), \quad u_b \sim U(0.1, 0.3), \qquad
   S_b = \operatorname{top}_{n_b}\{ s_{bi} : i \text{ available} \},

``A_b`` the number of available positions (valid and not frozen in the mask book, below). Selection
is a hard top-k (no sampling, no gradient through it): the code trains the masker by regression, not
by REINFORCE or a relaxation.

**The losses of both players.** The recoverer (MLM model) minimises the cross-entropy on ``S``
(`mlm_loss`):

.. math:: \mathcal{L}_{\text{MLM}} = \frac{\sum_{b,i} m_{bi}\, \ell_{bi}}{\sum_{b,i} m_{bi}}, \qquad
   \ell_{bi} = -\log p_\theta(x_{bi} \mid \tilde x_b),

``m`` the loss mask (0 when nothing is masked). The masker learns to *predict which masked tokens the
recoverer fails on* (`masker_loss`): with ``k_b = \lfloor 0.3 n_b \rfloor``, ``H_b`` the ``k_b`` positions
of ``R_b`` with the largest ``\ell`` and ``E_b`` the ``k_b`` with the smallest,

.. math:: \mathcal{L}_{\text{masker}} = \frac1B \sum_b \Big[ \frac{1}{k_b} \sum_{i \in H_b} (s_{bi} - 1)^2
   + \frac{1}{k_b} \sum_{i \in E_b} s_{bi}^2 \Big]

(a row with ``k_b = 0`` adds 0; ``\ell`` enters only through the ranking, so no gradient reaches the
recoverer through it). The two are added and minimised together, the masker's gradient also flowing
into the shared encoder. The game is adversarial through the selection: the masker scores high
what the recoverer reconstructs worst and the top-k then masks exactly those, so the masker plays to
*maximise* the recoverer's loss while the recoverer minimises it.

**Fewer bias-carrying tokens in the game** (`update_mask_book`). Tokens that stay hard however well
the recoverer learns the context are the context-free ones; the masker keeps scoring them highest.
Every few epochs a per-example *mask book* ``\beta \in \{0, 1\}^{N \times L}`` freezes them:

.. math:: \beta_{bi} \leftarrow 0 \ \text{ for } i \in \operatorname{top}_{\lfloor v_b A_b \rfloor}
   \{ s_{bi} : \beta_{bi} = 1 \}, \ v_b \sim U(0.1, 0.3); \qquad
   \beta_{bi} \leftarrow 1 \ \text{ with probability } w_b \sim U(0, 0.1) \text{ (each position)},

and frozen positions are never selected, so a token the masker keeps flagging is masked less often
than under random masking (the few random unfreezings give it a chance to show it became inferable).

**Mask fine-tuning** (`mask_fine_tuning`). Fine-tuning inputs get ``[MASK]`` at a share ``p`` of their
positions (``round(p |valid_b|)`` positions per row, drawn uniformly), labels unchanged, so the
fine-tuned model sees the masked inputs of pre-training (the paper: it narrows the pre-train /
fine-tune data gap, and acts like dropout on tokens). ``p = 0`` returns the inputs unchanged.

**Bidirectional attention** (`bidirectional_attention`): the attention function that turns
`jaxdyn.models.Transformer` into a BERT-style encoder (every token attends to every token).

**Paper and code.** Only the abstract and third-party summaries of the paper could be read; the
details here (the counts, the 0.3 share of the masker's targets, the mask book's ranges, the MSE
form) are taken from the authors' code, and what the code does differently from the standard MLM
the paper describes is reproduced by ``official_compat=True``:

- `mlm_loss`: the code adds the mean cross-entropy over *all* positions (masked or not) to the masked
  mean; default: the masked mean alone.
- `mask_fine_tuning`: the code draws ``round(p L)`` positions over the whole row (padding included)
  and masks ``round(0.8 round(p L))`` of them (the 80 of its 80/10/10 helper, the 10/10 discarded);
  default: ``round(p |valid|)`` valid positions, all masked.

Not reproduced, each named: the code's masker loss negates its whole loss buffer in place once per
row, so for odd rows it ranks by the negated loss (targets 1 on the easiest tokens); here every row
uses the intended ranking. The code multiplies the scores by the book before its top-k; here frozen
positions are excluded exactly (the same unless a sigmoid underflows to 0). The code's per-attribute
loss weights of the Octuple encoding (by inverse accuracy) have no counterpart for single tokens.
The random token of the 80/10/10 rule is drawn from ``[0, random_vocab)`` (the code draws any id).

Example:
  >>> import jax, jax.numpy as jnp
  >>> x = jnp.arange(20).reshape(2, 10)
  >>> sel = random_selection(x, key=jax.random.key(0), rate=0.5)
  >>> sel.sum(axis=-1).tolist()
  [5, 5]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation
from jaxdyn.models._transformer import _masked_attention

__all__ = [
    "MaskedTokens",
    "adversarial_selection",
    "bidirectional_attention",
    "corrupt",
    "mask_fine_tuning",
    "masker_loss",
    "mlm_loss",
    "random_selection",
    "update_mask_book",
]


class MaskedTokens(NamedTuple):
  """What `corrupt` returns.

  Attributes:
    inputs: the corrupted tokens (``[MASK]``, random or unchanged at the selected positions).
    targets: the original tokens.
    loss_mask: float32, 1 at every selected position (the MLM loss covers them all).
    replaced: bool, True where the token was altered (``[MASK]`` or a random draw; ``R`` in the module).
  """

  inputs: jax.Array
  targets: jax.Array
  loss_mask: jax.Array
  replaced: jax.Array


# --- checks ---------------------------------------------------------------------------------------
def _tokens(name, tokens):
  x = jnp.asarray(tokens)
  if x.ndim < 1 or not jnp.issubdtype(x.dtype, jnp.integer):
    raise ValueError(f"{name}: must be an integer token array of shape (..., L), got {x.dtype} of shape {x.shape}")
  _validation.check_nonempty(name, x, axis=x.ndim - 1, what="positions")
  return x


def _bool_like(name, value, shape, default=True):
  if value is None:
    return jnp.full(shape, default)
  v = jnp.asarray(value)
  try:
    ok = jnp.broadcast_shapes(v.shape, tuple(shape)) == tuple(shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(f"{name}: must have (or broadcast to) shape {tuple(shape)}, got {v.shape}")
  if v.dtype != jnp.bool_:
    if not (jnp.issubdtype(v.dtype, jnp.integer) or jnp.issubdtype(v.dtype, jnp.floating)):
      raise ValueError(f"{name}: must be a boolean (or 0/1) array, got dtype {v.dtype}")
    if _validation.is_concrete(v) and v.size and not bool(jnp.all((v == 0) | (v == 1))):
      raise ValueError(f"{name}: must hold only 0 and 1 (or booleans), got values outside {{0, 1}}")
    v = v != 0
  return jnp.broadcast_to(v, tuple(shape))


def _check_bool(name, value):
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name}: must be a bool, got {type(value).__name__}")


def _range(name, value, lower=0.0, upper=1.0):
  try:
    lo, hi = value
  except (TypeError, ValueError):
    raise ValueError(f"{name}: must be a pair (low, high) of real numbers in [{lower}, {upper}], got {value!r}"
                     ) from None
  lo = _validation.check_real(name, lo, lower=lower, upper=upper)
  hi = _validation.check_real(name, hi, lower=lower, upper=upper)
  if _validation.is_concrete(lo) and _validation.is_concrete(hi) and lo > hi:
    raise ValueError(f"{name}: must have low <= high, got {value!r}")
  return lo, hi


def _scores(name, scores, shape=None):
  s = _validation.check_floating(name, scores)
  if shape is not None and s.shape != tuple(shape):
    raise ValueError(f"{name}: must have shape {tuple(shape)}, got {s.shape}")
  if s.ndim < 1:
    raise ValueError(f"{name}: must have shape (..., L), got {s.shape}")
  _validation.check_nonempty(name, s, axis=s.ndim - 1, what="positions")
  _validation.check_finite(name, s)
  return s


def _ranks(values, allowed):
  """Per row, the 0-based descending rank of ``values`` among ``allowed`` positions (ties: lower index first);
  positions not allowed rank after every allowed one."""
  v = jnp.where(allowed, values.astype(jnp.float32), -jnp.inf)
  order = jnp.argsort(-v, axis=-1, stable=True)
  return jnp.argsort(order, axis=-1, stable=True)


def _round(x):
  return jnp.round(x).astype(jnp.int32)  # half to even, as Python's round


# --- attention ------------------------------------------------------------------------------------
def _check_qkv(q, k, v):
  for name, x in (("q", q), ("k", k), ("v", v)):
    _validation.check_ndim(name, x, 4)
  if jnp.shape(k) != jnp.shape(v) or jnp.shape(q)[::2] != jnp.shape(k)[::2] or jnp.shape(q)[3] != jnp.shape(k)[3]:
    raise ValueError(f"k: must be (batch, k_len, heads, head_dim) matching q {jnp.shape(q)} and v, got "
                     f"{jnp.shape(k)} and v {jnp.shape(v)}")


def _check_positions(name, positions, shape):
  p = jnp.asarray(positions)
  if p.shape != tuple(shape) or not jnp.issubdtype(p.dtype, jnp.integer):
    raise ValueError(f"{name}: must be integer positions of shape {tuple(shape)}, got {p.dtype} of shape {p.shape}")
  return p


def bidirectional_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, q_positions: jax.Array,
                            k_positions: jax.Array) -> jax.Array:
  r"""Dense bidirectional softmax attention (BERT's): every query reads every key.

  .. math:: \mathrm{out}_{bih} = \sum_j \mathrm{softmax}_j\Big(\frac{q_{bih} \cdot k_{bjh}}{\sqrt d}
     + \log m_j\Big) v_{bjh}, \qquad m_j = [p^k_j \ge 0],

  so with non-negative key positions it equals ``jax.nn.dot_product_attention(q, k, v)`` (no mask);
  a key at a negative position (an empty cache slot) gets no weight, and a query with no key to read
  gets zeros. Positions otherwise play no part (RoPE is applied before, by the model). Scores and the
  softmax are computed in float32 at least; non-finite inputs propagate. Pass it as
  ``jaxdyn.models.Transformer(..., attention_fns=bidirectional_attention)``; its ``segments`` form
  (``q_segment_ids``, ``k_segment_ids`` of shape ``(batch, len)``) lets a token read only keys of its own
  segment, so padding can be put in a segment of its own.

  Args:
    q: ``(batch, q_len, heads, head_dim)`` queries.
    k: ``(batch, k_len, heads, head_dim)`` keys.
    v: ``(batch, k_len, heads, head_dim)`` values.
    q_positions: ``(q_len,)`` integer positions of the queries (checked, otherwise unused).
    k_positions: ``(k_len,)`` integer positions of the keys; negative marks an empty slot.

  Returns:
    ``(batch, q_len, heads, head_dim)``, the dtype of ``v``.

  Example:
    >>> q = k = v = jnp.ones((1, 3, 2, 4))
    >>> p = jnp.arange(3)
    >>> bidirectional_attention(q, k, v, q_positions=p, k_positions=p).shape
    (1, 3, 2, 4)
  """
  _check_qkv(q, k, v)
  _check_positions("q_positions", q_positions, (jnp.shape(q)[1],))
  kp = _check_positions("k_positions", k_positions, (jnp.shape(k)[1],))
  mask = jnp.broadcast_to((kp >= 0)[None, None, None, :], (1, 1, jnp.shape(q)[1], jnp.shape(k)[1]))
  return _masked_attention(q, k, v, mask)


def _segment_bidirectional_attention(q, k, v, *, q_positions, k_positions, q_segment_ids, k_segment_ids):
  """`bidirectional_attention` within segments: ``(batch, len)`` positions and segment ids."""
  _check_qkv(q, k, v)
  b = jnp.shape(q)[0]
  _check_positions("q_positions", q_positions, (b, jnp.shape(q)[1]))
  kp = _check_positions("k_positions", k_positions, (b, jnp.shape(k)[1]))
  qs = _check_positions("q_segment_ids", q_segment_ids, (b, jnp.shape(q)[1]))
  ks = _check_positions("k_segment_ids", k_segment_ids, (b, jnp.shape(k)[1]))
  mask = (ks[:, None, :] == qs[:, :, None]) & (kp[:, None, :] >= 0)
  return _masked_attention(q, k, v, mask[:, None])


bidirectional_attention.segments = _segment_bidirectional_attention


# --- selection and corruption ---------------------------------------------------------------------
def random_selection(tokens: Any, *, key: Any, rate: Any = 0.15, valid: Any = None) -> jax.Array:
  r"""Random masked-LM selection: exactly ``round(rate |valid_b|)`` valid positions per row, uniformly.

  Args:
    tokens: ``(..., L)`` integer tokens (only the shape is used).
    key: a `jax.random` key.
    rate: the share of valid positions to select, in [0, 1] (0.15 in BERT and the code).
    valid: optional ``(..., L)`` booleans (or 0/1), False on padding; default all valid.

  Returns:
    ``(..., L)`` bool, True at the selected positions.

  Example:
    >>> x = jnp.zeros((1, 8), jnp.int32)
    >>> int(random_selection(x, key=jax.random.key(1), rate=0.25, valid=jnp.arange(8) < 4).sum())
    1
  """
  x = _tokens("tokens", tokens)
  key = _validation.check_key("key", key)
  rate = _validation.check_real("rate", rate, lower=0.0, upper=1.0)
  ok = _bool_like("valid", valid, x.shape)
  n = _round(rate * ok.sum(-1, keepdims=True))
  return (_ranks(jax.random.uniform(key, x.shape), ok) < n) & ok


def adversarial_selection(scores: Any, *, key: Any, book: Any = None, valid: Any = None,
                          ratio_range: Any = (0.1, 0.3), max_rate: Any = 0.15) -> jax.Array:
  r"""The masker's top-k selection (module docstring):
  ``n_b = min(floor(u_b A_b), floor(max_rate L))``, ``u_b ~ U(ratio_range)``, the ``n_b`` highest scores.

  Args:
    scores: ``(..., L)`` the masker's scores ``s`` on the clean input (larger: masked first); no gradient
      flows through the selection.
    key: a `jax.random` key for the per-row ratio ``u_b``.
    book: optional ``(..., L)`` mask book (bool or 0/1): 0 freezes a position (never selected). Default all 1.
    valid: optional ``(..., L)`` booleans, False on padding (never selected).
    ratio_range: ``(low, high)`` of ``u_b``, within [0, 1] (the code: (0.1, 0.3)).
    max_rate: the cap on ``n_b`` as a share of ``L``, in [0, 1] (the code: 0.15).

  Returns:
    ``(..., L)`` bool, True at the selected positions.

  Example:
    >>> s = jnp.array([[0.1, 0.9, 0.5, 0.7, 0.2, 0.3, 0.4, 0.6, 0.8, 0.05]])
    >>> adversarial_selection(s, key=jax.random.key(0), ratio_range=(0.2, 0.2), max_rate=1.0)[0].nonzero()[0].tolist()
    [1, 8]
  """
  s = jax.lax.stop_gradient(_scores("scores", scores))
  key = _validation.check_key("key", key)
  lo, hi = _range("ratio_range", ratio_range)
  max_rate = _validation.check_real("max_rate", max_rate, lower=0.0, upper=1.0)
  avail = _bool_like("valid", valid, s.shape) & _bool_like("book", book, s.shape)
  u = jax.random.uniform(key, s.shape[:-1] + (1,), minval=lo, maxval=hi)
  a = avail.sum(-1, keepdims=True)
  # floor(u * A) in float32; the tiny slack keeps an exact product (0.2 * 10) from flooring to one less
  n = jnp.minimum(jnp.floor(u * a + 1e-6), jnp.floor(max_rate * s.shape[-1] + 1e-6)).astype(jnp.int32)
  return (_ranks(s, avail) < n) & avail


def corrupt(tokens: Any, selected: Any, *, key: Any, mask_id: int, random_vocab: int, mask_fraction: Any = 0.8,
            random_fraction: Any = 0.1) -> MaskedTokens:
  r"""BERT's 80/10/10 corruption of the selected positions, with exact counts per row.

  Of the ``n_b`` selected positions of row ``b`` (in a uniformly random order), the first
  ``round(mask_fraction n_b)`` become ``mask_id``, the next ``round(random_fraction n_b)`` a token drawn
  uniformly from ``[0, random_vocab)``, the rest keep their token. All ``n_b`` are in the loss mask.

  Args:
    tokens: ``(..., L)`` integer tokens.
    selected: ``(..., L)`` booleans (or 0/1), the positions to corrupt (`random_selection`,
      `adversarial_selection`).
    key: a `jax.random` key.
    mask_id: the ``[MASK]`` id, an int >= 0.
    random_vocab: random tokens are drawn from ``[0, random_vocab)``, an int >= 1.
    mask_fraction: share of the selection set to ``[MASK]``, in [0, 1].
    random_fraction: share set to a random token, in [0, 1 - mask_fraction].

  Returns:
    A `MaskedTokens` ``(inputs, targets, loss_mask, replaced)``.

  Example:
    >>> x = jnp.arange(10)[None]
    >>> out = corrupt(x, jnp.ones((1, 10), bool), key=jax.random.key(0), mask_id=99, random_vocab=10)
    >>> int((out.inputs == 99).sum()), int(out.loss_mask.sum())
    (8, 10)
  """
  x = _tokens("tokens", tokens)
  sel = _bool_like("selected", selected, x.shape)
  key = _validation.check_key("key", key)
  mask_id = _validation.check_int("mask_id", mask_id, lower=0)
  random_vocab = _validation.check_int("random_vocab", random_vocab, lower=1)
  mf = _validation.check_real("mask_fraction", mask_fraction, lower=0.0, upper=1.0)
  rf = _validation.check_real("random_fraction", random_fraction, lower=0.0, upper=1.0)
  if _validation.is_concrete(mf) and _validation.is_concrete(rf) and mf + rf > 1.0 + 1e-12:
    raise ValueError(f"random_fraction: must be at most 1 - mask_fraction = {1.0 - mf}, got {rf}")
  k_order, k_tok = jax.random.split(key)
  n = sel.sum(-1, keepdims=True)
  n_mask, n_rand = _round(mf * n), _round(rf * n)
  r = _ranks(jax.random.uniform(k_order, x.shape), sel)
  to_mask = sel & (r < n_mask)
  to_rand = sel & (r >= n_mask) & (r < n_mask + n_rand)
  rand = jax.random.randint(k_tok, x.shape, 0, random_vocab).astype(x.dtype)
  inputs = jnp.where(to_mask, jnp.asarray(mask_id, x.dtype), jnp.where(to_rand, rand, x))
  return MaskedTokens(inputs, x, sel.astype(jnp.float32), to_mask | to_rand)


# --- losses ---------------------------------------------------------------------------------------
def mlm_loss(logits: Any, targets: Any, loss_mask: Any, *, official_compat: bool = False
             ) -> tuple[jax.Array, jax.Array]:
  r"""The recoverer's masked-LM loss and the per-token cross-entropy (module docstring).

  .. math:: \mathcal{L} = \frac{\sum m_{bi} \ell_{bi}}{\sum m_{bi}} \ (0 \text{ if } \textstyle\sum m = 0),
     \qquad \ell_{bi} = -\log \mathrm{softmax}(z_{bi})_{x_{bi}};

  with ``official_compat=True`` the code's extra term, the mean of ``\ell`` over all positions, is added.

  Args:
    logits: ``(..., L, V)`` floating logits of the model on the corrupted input.
    targets: ``(..., L)`` integer original tokens in ``[0, V)``.
    loss_mask: ``(..., L)`` weights (the `MaskedTokens` ``loss_mask``), non-negative.
    official_compat: add the all-position mean as the authors' code does.

  Returns:
    ``(loss, token_nll)``: a scalar and the ``(..., L)`` per-token cross-entropy ``\ell``.

  Example:
    >>> z = jnp.log(jnp.array([[[0.5, 0.5], [0.25, 0.75]]]))
    >>> loss, nll = mlm_loss(z, jnp.array([[0, 1]]), jnp.array([[1.0, 0.0]]))
    >>> round(float(loss), 4)
    0.6931
  """
  z = _validation.check_floating("logits", logits)
  if z.ndim < 2:
    raise ValueError(f"logits: must have shape (..., L, V), got {z.shape}")
  y = jnp.asarray(targets)
  if y.shape != z.shape[:-1]:
    raise ValueError(f"targets: must have shape logits.shape[:-1] = {z.shape[:-1]}, got {y.shape}")
  _validation.check_integer_labels("targets", y, z.shape[-1])
  m = _validation.check_floating("loss_mask", loss_mask)
  if m.shape != y.shape:
    raise ValueError(f"loss_mask: must have the shape of targets {y.shape}, got {m.shape}")
  _validation.check_finite("loss_mask", m)
  _validation.check_nonnegative("loss_mask", m)
  _check_bool("official_compat", official_compat)
  logp = jax.nn.log_softmax(z.astype(jnp.promote_types(z.dtype, jnp.float32)), axis=-1)
  yc = jnp.clip(y, 0, z.shape[-1] - 1)
  nll = -jnp.take_along_axis(logp, yc[..., None], axis=-1)[..., 0]
  nll = _validation.nan_unless(_validation.labels_valid(y, z.shape[-1]), nll)
  total = jnp.sum(m)
  loss = jnp.where(total > 0, jnp.sum(m * nll) / jnp.where(total > 0, total, 1.0), 0.0 * jnp.sum(nll))
  loss = loss + 0.0 * (total + jnp.sum(z))  # a non-finite logit (even -inf) or mask entry propagates under jit
  if official_compat:
    loss = loss + jnp.mean(nll)
  return loss, nll


def masker_loss(scores: Any, token_loss: Any, replaced: Any, selected: Any, *, fraction: Any = 0.3) -> jax.Array:
  r"""The masker's regression onto the recoverer's hardest and easiest masked tokens (module docstring).

  .. math:: \frac1B \sum_b \frac{1}{k_b}\Big[\sum_{i \in H_b} (s_{bi} - 1)^2 + \sum_{i \in E_b} s_{bi}^2\Big],
     \qquad k_b = \lfloor \text{fraction} \cdot |S_b| \rfloor,

  ``H_b`` / ``E_b`` the ``k_b`` positions of ``R_b`` (``replaced``) with the largest / smallest ``token_loss``
  (ties: lower index first), ``S_b`` the ``selected`` positions; a row with ``k_b = 0`` adds 0 (the code's
  row would be NaN). ``token_loss`` enters only through the ranking (no gradient); the gradient in
  ``s`` is ``2 (s - 1) / (B k_b)`` on ``H`` and ``2 s / (B k_b)`` on ``E``: descent raises the scores of the
  tokens the recoverer fails on and lowers the others. Leading axes are flattened into rows ``B``.

  Args:
    scores: ``(..., L)`` the masker's scores ``s`` in [0, 1] (differentiable) on the clean input.
    token_loss: ``(..., L)`` the recoverer's per-token loss (`mlm_loss`'s ``token_nll``).
    replaced: ``(..., L)`` booleans ``R`` (`MaskedTokens.replaced`).
    selected: ``(..., L)`` booleans ``S`` (the selection, `MaskedTokens.loss_mask`).
    fraction: the share of ``|S_b|`` taken as ``k_b``, in [0, 0.5] (the code: 0.3).

  Returns:
    A scalar.

  Example:
    >>> s = jnp.full((1, 4), 0.5)
    >>> float(masker_loss(s, jnp.array([[3.0, 1.0, 2.0, 0.5]]), jnp.ones((1, 4)), jnp.ones((1, 4)), fraction=0.5))
    0.5
  """
  s = _validation.check_floating("scores", scores)
  if s.ndim < 1:
    raise ValueError(f"scores: must have shape (..., L), got {s.shape}")
  _validation.check_nonempty("scores", s, axis=s.ndim - 1, what="positions")
  lt = jax.lax.stop_gradient(_validation.check_floating("token_loss", token_loss))
  if lt.shape != s.shape:
    raise ValueError(f"token_loss: must have the shape of scores {s.shape}, got {lt.shape}")
  _validation.check_finite("token_loss", lt)
  rep = _bool_like("replaced", replaced, s.shape)
  sel = _bool_like("selected", selected, s.shape)
  fraction = _validation.check_real("fraction", fraction, lower=0.0, upper=0.5)
  k = jnp.floor(fraction * sel.sum(-1, keepdims=True) + 1e-6).astype(jnp.int32)
  hard = (_ranks(lt, rep) < k) & rep
  easy = (_ranks(-lt, rep) < k) & rep
  per_row = (jnp.sum(jnp.where(hard, (s - 1.0) ** 2, 0.0), -1) + jnp.sum(jnp.where(easy, s ** 2, 0.0), -1))
  per_row = per_row / jnp.maximum(k[..., 0], 1) + 0.0 * jnp.sum(lt, -1)  # a NaN loss propagates under jit
  return jnp.mean(per_row) if per_row.size else jnp.sum(per_row)


def update_mask_book(book: Any, scores: Any, *, key: Any, valid: Any = None, freeze_range: Any = (0.1, 0.3),
                     unfreeze_range: Any = (0.0, 0.1)) -> jax.Array:
  r"""One mask-book update (module docstring): freeze the top-scored available tokens, unfreeze a few at random.

  Per row: ``A_b`` available positions (book 1 and valid), ``floor(v_b A_b)`` of the highest scores among
  them frozen (book 0), ``v_b ~ U(freeze_range)``; then every position of the row set back to 1 with
  probability ``w_b ~ U(unfreeze_range)`` (the code's order; invalid positions stay as they were).

  Args:
    book: ``(N, L)`` (or ``(..., L)``) mask book, bool or 0/1; 1 = may be masked.
    scores: the masker's scores on these examples, the book's shape.
    key: a `jax.random` key.
    valid: optional booleans of the book's shape, False on padding.
    freeze_range: ``(low, high)`` in [0, 1] of the frozen share ``v_b`` (the code: (0.1, 0.3)).
    unfreeze_range: ``(low, high)`` in [0, 1] of the unfreezing probability ``w_b`` (the code: (0, 0.1)).

  Returns:
    The new book, bool, of the book's shape.

  Example:
    >>> b = update_mask_book(jnp.ones((1, 5)), jnp.array([[0.1, 0.9, 0.2, 0.3, 0.4]]), key=jax.random.key(0),
    ...                      freeze_range=(0.2, 0.2), unfreeze_range=(0.0, 0.0))
    >>> b.astype(int).tolist()
    [[1, 0, 1, 1, 1]]
  """
  s = jax.lax.stop_gradient(_scores("scores", scores))
  bk = _bool_like("book", book, s.shape)
  key = _validation.check_key("key", key)
  ok = _bool_like("valid", valid, s.shape)
  f_lo, f_hi = _range("freeze_range", freeze_range)
  u_lo, u_hi = _range("unfreeze_range", unfreeze_range)
  k_v, k_w, k_r = jax.random.split(key, 3)
  avail = bk & ok
  v = jax.random.uniform(k_v, s.shape[:-1] + (1,), minval=f_lo, maxval=f_hi)
  n = jnp.floor(v * avail.sum(-1, keepdims=True) + 1e-6).astype(jnp.int32)
  frozen = (_ranks(s, avail) < n) & avail
  w = jax.random.uniform(k_w, s.shape[:-1] + (1,), minval=u_lo, maxval=u_hi)
  unfreeze = (jax.random.uniform(k_r, s.shape) < w) & ok
  return (bk & ~frozen) | unfreeze


# --- mask fine-tuning -----------------------------------------------------------------------------
def mask_fine_tuning(tokens: Any, *, key: Any, rate: Any, mask_id: int, valid: Any = None,
                     official_compat: bool = False) -> tuple[jax.Array, jax.Array]:
  r"""Mask fine-tuning: ``[MASK]`` at a share ``rate`` of the inputs of a fine-tuning batch (labels unchanged).

  Default: ``round(rate |valid_b|)`` valid positions per row, uniformly, all set to ``mask_id``. With
  ``official_compat=True`` (the code): ``n = round(rate L)`` positions over the whole row (padding
  included), of which ``round(0.8 n)`` become ``mask_id``. ``rate = 0`` returns the tokens unchanged.

  Args:
    tokens: ``(..., L)`` integer tokens.
    key: a `jax.random` key.
    rate: the share masked, in [0, 1] (the code: 0.15).
    mask_id: the ``[MASK]`` id, an int >= 0.
    valid: optional ``(..., L)`` booleans, False on padding (default all valid).
    official_compat: the code's counts (above).

  Returns:
    ``(inputs, masked)``: the tokens with ``[MASK]`` inserted (tokens' dtype) and the bool positions masked.

  Example:
    >>> x = jnp.arange(10)[None]
    >>> inputs, masked = mask_fine_tuning(x, key=jax.random.key(0), rate=0.2, mask_id=99)
    >>> int(masked.sum()), int((inputs == 99).sum())
    (2, 2)
  """
  x = _tokens("tokens", tokens)
  key = _validation.check_key("key", key)
  rate = _validation.check_real("rate", rate, lower=0.0, upper=1.0)
  mask_id = _validation.check_int("mask_id", mask_id, lower=0)
  ok = _bool_like("valid", valid, x.shape)
  _check_bool("official_compat", official_compat)
  noise = jax.random.uniform(key, x.shape)
  if official_compat:
    n = _round(0.8 * _round(jnp.full(x.shape[:-1] + (1,), rate * x.shape[-1])))
    masked = _ranks(noise, jnp.ones(x.shape, bool)) < n
  else:
    n = _round(rate * ok.sum(-1, keepdims=True))
    masked = (_ranks(noise, ok) < n) & ok
  return jnp.where(masked, jnp.asarray(mask_id, x.dtype), x), masked

