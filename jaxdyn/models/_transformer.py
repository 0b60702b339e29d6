"""A small decoder-only transformer with rotary positions, pluggable attention and a KV cache.

The model is the language model that the attention (LongGen), language-model-data and post-training
families share: byte-level by default (``vocab_size=256``), pre-norm, causal, rotary position
embeddings on queries and keys, and one attention function per layer, so a hybrid stack (some layers
full attention, some sparse) is a list of functions. It decodes with a key-value cache whose slots
store the absolute position of the token they hold, so a layer can keep a short ring buffer (the last
tokens plus a few sink tokens) and still attend exactly.

The attention-function interface
--------------------------------
Every layer calls ``fn(q, k, v, *, q_positions, k_positions) -> out`` with

- ``q``: ``(batch, q_len, heads, head_dim)``, ``k``, ``v``: ``(batch, k_len, heads, head_dim)``, rotary
  positions already applied to ``q`` and ``k`` and no scaling applied (the function scales the scores,
  ``1/sqrt(head_dim)`` as `jax.nn.dot_product_attention` does);
- ``q_positions``: ``(q_len,)`` and ``k_positions``: ``(k_len,)`` integer arrays of absolute token
  positions, shared by the batch. In training both are ``0 .. seq-1`` (or the ``positions`` passed to
  the model); when decoding, ``k_positions`` lists the cache's slots (in slot order, which need not be
  sorted once a ring buffer wraps) followed by the new chunk's tokens, and **an empty slot has position
  -1: the function must give keys with a negative position no weight** (`causal_attention` does, and
  any mask built as ``(k_positions >= 0) & (k_positions <= q_positions) & ...`` does);
- ``out``: ``(batch, q_len, heads, head_dim)``.

Masking by position rather than by index is what makes one function serve training (full sequences),
prefill and token-by-token decoding: a sliding window is ``q_pos - k_pos < window`` wherever the keys
come from. The default, `causal_attention`, is dense attention with the mask ``0 <= k_pos <= q_pos``.

A function may also carry a ``contiguous`` attribute, ``fn.contiguous(q, k, v) -> out``, that the model
calls instead when it runs a whole sequence at the default positions ``0 .. seq-1`` with no cache (a
training step, `Transformer.features` without ``positions``). It must equal
``fn(q, k, v, q_positions=arange(seq), k_positions=arange(seq))``; since the positions are then known
from the static shape, it can build a concrete mask and run a block-sparse kernel
(`jaxdyn.attention.sink_window_attention` does, on GPU and TPU).

Document-boundary masks (segment ids)
-------------------------------------
`Transformer.features` (and ``__call__``) take optional ``segment_ids`` ``(batch, seq)`` integers: a token
then attends only to earlier tokens (by index and by position) of its own segment, as packed
sequences of several documents need (`jaxdyn.text.concat_and_chunk`). Positions become per row,
``(batch, seq)``: by default they restart at 0 at the start of every run of equal consecutive segment
ids, so each document sees the positions it would see alone. Per-row positions and segment ids do not
fit the protocol above (positions shared by the batch), so they reach an attention function only
through a second form it may carry, a ``segments`` attribute:
``fn.segments(q, k, v, *, q_positions, k_positions, q_segment_ids, k_segment_ids) -> out`` with
``(batch, len)`` positions and segment ids for queries and keys (here the same tokens: there is no
cache). `causal_attention` carries one (dense attention with the mask ``seg_k == seg_q``, ``0 <= k_pos
<= q_pos`` and key index <= query index); a layer whose attention function has no ``segments`` form
makes a call with ``segment_ids`` raise a ``ValueError`` naming ``segment_ids`` and the layer, rather
than silently attending across documents. Without ``segment_ids`` nothing changes: the same
functions run on the same arrays (the results are bit-identical to a model without this feature).

The cache layout
----------------
`Transformer.init_cache` returns a `KVCache`: ``layers``, one `LayerKVCache` per block, each with
``k`` and ``v`` of shape ``(batch, capacity, heads, head_dim)``, ``positions`` ``(capacity,)`` int32
(-1 where empty) and a static ``sink_tokens``; and ``length``, a 0-d int32, the number of tokens
written so far (the next token's position). A token at position ``p`` goes to slot ``p`` when
``p < sink_tokens``, else to ``sink_tokens + (p - sink_tokens) mod (capacity - sink_tokens)``. With
``capacity`` at least the sequence length nothing is overwritten (slot = position); a smaller
capacity keeps the ``sink_tokens`` first tokens and the last ``capacity - sink_tokens`` (a ring
buffer, StreamingLLM's sink + window), which is exact for a layer whose attention never reads the
tokens dropped: a query reads the cache and its own chunk, so a layer that reads the sinks and the
last ``W`` tokens (itself included) needs ``capacity >= sink_tokens + W - 1`` when decoding one token
at a time. A decoded chunk attends over the cache's slots and the chunk itself before it is written,
so a prefill longer than a ring buffer is still exact. A full-attention layer must get a capacity of
the whole sequence: past it, it silently keeps only its last tokens (nothing can raise under ``jit``).

References:
  Vaswani et al., "Attention Is All You Need", NeurIPS 2017. https://arxiv.org/abs/1706.03762
  Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021.
  https://arxiv.org/abs/2104.09864
  Zhang & Sennrich, "Root Mean Square Layer Normalization", NeurIPS 2019. https://arxiv.org/abs/1910.07467
  Shazeer, "GLU Variants Improve Transformer", 2020. https://arxiv.org/abs/2002.05202
  Xiao et al., "Efficient Streaming Language Models with Attention Sinks", ICLR 2024.
  https://arxiv.org/abs/2309.17453
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct
from jax.ad_checkpoint import checkpoint_name

from jaxdyn import _validation
from jaxdyn.models._base import is_training

AttentionFn = Callable[..., jax.Array]
NORMS = ("rmsnorm", "layernorm")
MLPS = ("swiglu", "gelu")
# The activations each block tags with `jax.ad_checkpoint.checkpoint_name`, in the order it computes them
# (a `jax.checkpoint` policy of `Transformer.features(..., remat=...)` saves, offloads or recomputes them):
# attn_in = norm1(x), q and k after RoPE, v, attn_out (the attention function's output, before the output
# projection), resid_mid = x + proj(attn_out) (the residual stream between the two halves), mlp_in =
# norm2(resid_mid), mlp_up (the up projection: gate and value for SwiGLU), mlp_hidden (the input of the
# down projection). The block's input is an argument of the checkpointed block, so it is always saved.
ACTIVATION_NAMES = ("attn_in", "q", "k", "v", "attn_out", "resid_mid", "mlp_in", "mlp_up", "mlp_hidden")


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, q_positions: jax.Array,
                     k_positions: jax.Array) -> jax.Array:
  r"""Dense causal softmax attention, masked by absolute positions (the default attention function).

  .. math::
    \mathrm{out}_{bih} = \sum_j \mathrm{softmax}_j\Big(\frac{q_{bih} \cdot k_{bjh}}{\sqrt{d}}
    + \log m_{ij}\Big) v_{bjh}, \qquad m_{ij} = [0 \le p^k_j \le p^q_i],

  with ``d = head_dim``. With ``q_positions == k_positions == arange(seq)`` this is
  ``jax.nn.dot_product_attention(q, k, v, is_causal=True)``; keys at a negative position (empty
  cache slots) get no weight, and a query that may read no key at all gets zeros (with zero
  gradients). Scores and softmax are computed in float32 at least. Non-finite inputs propagate: a
  ``+inf`` score or a row whose allowed scores are all ``-inf`` gives NaN, an infinite value gives a
  non-finite output wherever it is read; a single ``-inf`` score drops its key, as a ``-inf`` bias would.

  Args:
    q: ``(batch, q_len, heads, head_dim)`` queries.
    k: ``(batch, k_len, heads, head_dim)`` keys.
    v: ``(batch, k_len, heads, head_dim)`` values.
    q_positions: ``(q_len,)`` integer positions of the queries.
    k_positions: ``(k_len,)`` integer positions of the keys; negative marks an empty slot.

  Returns:
    ``(batch, q_len, heads, head_dim)``, the dtype of ``v``.

  Example:
    >>> q = k = v = jnp.ones((1, 3, 2, 4))
    >>> p = jnp.arange(3)
    >>> causal_attention(q, k, v, q_positions=p, k_positions=p).shape
    (1, 3, 2, 4)
  """
  for name, x in (("q", q), ("k", k), ("v", v)):
    _validation.check_ndim(name, x, 4)
  if jnp.shape(k) != jnp.shape(v) or jnp.shape(q)[::2] != jnp.shape(k)[::2] or jnp.shape(q)[3] != jnp.shape(k)[3]:
    raise ValueError(f"k: must be (batch, k_len, heads, head_dim) matching q {jnp.shape(q)} and v, got "
                     f"{jnp.shape(k)} and v {jnp.shape(v)}")
  _check_positions("q_positions", q_positions, jnp.shape(q)[1])
  _check_positions("k_positions", k_positions, jnp.shape(k)[1])
  qp, kp = jnp.asarray(q_positions), jnp.asarray(k_positions)
  mask = (kp[None, :] >= 0) & (kp[None, :] <= qp[:, None])
  return _masked_attention(q, k, v, mask)


def _segment_causal_attention(q, k, v, *, q_positions, k_positions, q_segment_ids, k_segment_ids):
  """`causal_attention` within segments: ``(batch, len)`` positions and segment ids (the ``segments`` form).

  The mask ``m_bij = [seg^k_bj = seg^q_bi] [0 <= p^k_bj <= p^q_bi] [j <= i]``; queries and keys are the
  same tokens (no cache), so the index condition keeps a segment that reappears later in a row causal.
  """
  qp, kp = jnp.asarray(q_positions), jnp.asarray(k_positions)
  qs, ks = jnp.asarray(q_segment_ids), jnp.asarray(k_segment_ids)
  index = jnp.arange(k.shape[1])[None, :] <= jnp.arange(q.shape[1])[:, None]
  mask = ((ks[:, None, :] == qs[:, :, None]) & (kp[:, None, :] >= 0) & (kp[:, None, :] <= qp[:, :, None])
          & index[None])
  return _masked_attention(q, k, v, mask[:, None])  # (batch, 1, q_len, k_len)


causal_attention.segments = _segment_causal_attention


def _masked_attention(q, k, v, mask):
  """Softmax attention with a boolean mask; rows with no allowed key give zeros.

  ``mask``: ``(q_len, k_len)``, or ``(batch or 1, 1, q_len, k_len)`` (per example, shared by the heads).
  Masked scores are -inf, so a row whose allowed scores are all -inf (a non-finite q or k) gives NaN
  rather than weight on masked keys; a row with no allowed key is computed on zero scores (finite,
  so its gradient is zero, not NaN) and replaced by zeros.
  """
  mask = mask[None, None] if mask.ndim == 2 else mask  # (b, 1, q_len, k_len)
  dtype = jnp.promote_types(q.dtype, jnp.float32)
  scale = 1.0 / math.sqrt(q.shape[-1])
  s = jnp.einsum("bqhd,bkhd->bhqk", q.astype(dtype), k.astype(dtype)) * scale
  live = jnp.any(mask, axis=-1, keepdims=True)  # (b, 1, q_len, 1)
  s = jnp.where(live, jnp.where(mask, s, -jnp.inf), 0.0)
  w = jax.nn.softmax(s, axis=-1)
  out = jnp.einsum("bhqk,bkhd->bqhd", w, v.astype(dtype))
  return jnp.where(jnp.swapaxes(live, 1, 2), out, 0.0).astype(v.dtype)


def _check_positions(name, positions, length):
  shape = jnp.shape(positions)
  if shape != (length,):
    raise ValueError(f"{name}: must be integer positions of shape ({length},), got shape {shape}")
  if not jnp.issubdtype(jnp.asarray(positions).dtype, jnp.integer):
    raise ValueError(f"{name}: must be integer positions, got dtype {jnp.asarray(positions).dtype}")


def rope(x: jax.Array, positions: jax.Array, *, base: float = 10000.0) -> jax.Array:
  """Rotary position embedding of ``x`` (..., seq, heads, head_dim) at integer ``positions`` (seq,).

  ``positions`` may also be ``(batch, seq)`` for ``x`` ``(batch, seq, heads, head_dim)``: one row of
  positions per sequence (packed documents, see `Transformer.features`).

  The half-split form (GPT-NeoX, LLaMA): dimension ``i < head_dim/2`` is paired with ``i + head_dim/2``
  and the pair is rotated by the angle ``p * base**(-2i/head_dim)``. Su et al. pair neighbouring
  dimensions ``(2i, 2i+1)`` instead; the two differ by a fixed permutation of the head dimensions, which
  the learnt projections absorb. Rotations compose, so ``<rope(q, m), rope(k, n)>`` depends on ``m - n``
  only. Angles are computed in float32 from the positions (no table, so no maximum length).
  """
  half = x.shape[-1] // 2
  inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / x.shape[-1])
  angle = jnp.asarray(positions, jnp.float32)[..., None] * inv_freq  # (seq, half) or (batch, seq, half)
  cos, sin = jnp.cos(angle)[..., None, :], jnp.sin(angle)[..., None, :]  # broadcast over heads
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


@struct.dataclass
class LayerKVCache:
  """One layer's keys and values: ``k``, ``v`` ``(batch, capacity, heads, head_dim)``, ``positions``
  ``(capacity,)`` int32 (-1 = empty), and the static number of ``sink_tokens`` never overwritten."""

  k: jax.Array
  v: jax.Array
  positions: jax.Array
  sink_tokens: int = struct.field(pytree_node=False, default=0)

  @property
  def capacity(self) -> int:
    return self.k.shape[1]

  def write(self, k_new: jax.Array, v_new: jax.Array, pos_new: jax.Array) -> LayerKVCache:
    """Stores a chunk of consecutive positions; of the ring tokens only the last ``capacity - sinks``."""
    if pos_new.shape[0] == 0:
      return self
    sinks, ring = self.sink_tokens, self.capacity - self.sink_tokens
    slot = jnp.where(pos_new < sinks, pos_new, sinks + (pos_new - sinks) % ring)
    keep = (pos_new < sinks) | (pos_new > pos_new[-1] - ring)  # later chunk tokens win a shared slot
    idx = jnp.where(keep, slot, self.capacity)  # out of range: dropped
    return self.replace(
        k=self.k.at[:, idx].set(k_new.astype(self.k.dtype), mode="drop"),
        v=self.v.at[:, idx].set(v_new.astype(self.v.dtype), mode="drop"),
        positions=self.positions.at[idx].set(pos_new.astype(jnp.int32), mode="drop"))


@struct.dataclass
class KVCache:
  """The decoding cache of a `Transformer`: ``layers`` (one `LayerKVCache` per block) and ``length``
  (0-d int32, tokens written so far = the next token's position)."""

  layers: tuple[LayerKVCache, ...]
  length: jax.Array


def _per_layer(name, value, depth, *, lower, upper=None):
  values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * depth
  if len(values) != depth:
    raise ValueError(f"{name}: must be an int or a sequence of depth={depth} ints, got {len(values)} values")
  return tuple(_validation.check_int(name, v, lower=lower, upper=upper) for v in values)


def _check_tokens(name, tokens, vocab_size):
  _validation.check_ndim(name, tokens, 2)
  _validation.check_integer_labels(name, tokens, vocab_size)


def _dropout(x, rate, key):
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def _tag(x, name, split):
  """``checkpoint_name(x, name)``; for a name in a token split, its chunks' leading tokens apart.

  ``split`` is None or ``(names, chunks, head)``: the sequence axis (axis 1) is viewed as ``chunks``
  contiguous chunks (the shards of a sequence-sharded array, so the split is local to each shard) and
  the first ``head`` tokens of every chunk are tagged ``name + "_head"``, the rest ``name + "_tail"``.
  The value is unchanged (the two parts are concatenated back).
  """
  if split is None or name not in split[0]:
    return checkpoint_name(x, name)
  _, chunks, head = split
  b, t = x.shape[:2]
  if head == 0:
    return checkpoint_name(x, name + "_tail")
  if head == t // chunks:
    return checkpoint_name(x, name + "_head")
  y = x.reshape(b, chunks, t // chunks, *x.shape[2:])
  y = jnp.concatenate([checkpoint_name(y[:, :, :head], name + "_head"),
                       checkpoint_name(y[:, :, head:], name + "_tail")], axis=2)
  return y.reshape(x.shape)


def _remat_entries(remat, depth, seq):
  """``remat`` as ``depth`` entries ``None | (policy, split)`` (see `Transformer.features`), checked."""
  if remat is None:
    return (None,) * depth
  if not isinstance(remat, Sequence) or isinstance(remat, str) or len(remat) != depth:
    raise ValueError(f"remat: must be None or a sequence of depth={depth} entries (None, a jax.checkpoint "
                     f"policy, or a layer plan with .policy and .token_split), got {remat!r}")
  entries = []
  for entry in remat:
    if entry is None:
      entries.append(None)
      continue
    if hasattr(entry, "policy"):
      policy, split = entry.policy, getattr(entry, "token_split", None)
    else:
      policy, split = entry, None
    if policy is not None and not callable(policy):
      raise TypeError(f"remat: a layer's policy must be a jax.checkpoint policy (callable) or None, got "
                      f"{type(policy).__name__}")
    if split is not None:
      names, chunks, head = split
      unknown = sorted(set(names) - set(ACTIVATION_NAMES))
      if unknown:
        raise ValueError(f"remat: token_split names must be among {ACTIVATION_NAMES}, got {unknown}")
      chunks = _validation.check_int("remat", chunks, lower=1)
      if seq % chunks:
        raise ValueError(f"remat: token_split chunks={chunks} must divide the sequence length {seq}")
      head = _validation.check_int("remat", head, lower=0, upper=seq // chunks)
      split = (tuple(names), chunks, head)
    entries.append((policy, split))
  return tuple(entries)


class _Block(nnx.Module):
  """Pre-norm block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

  def __init__(self, dim, num_heads, mlp_ratio, norm, mlp, attention_fn, rope_base, *, rngs):
    make_norm = nnx.RMSNorm if norm == "rmsnorm" else nnx.LayerNorm
    self.num_heads, self.head_dim, self.mlp, self.rope_base = num_heads, dim // num_heads, mlp, rope_base
    self.attention_fn = attention_fn
    self.norm1 = make_norm(dim, rngs=rngs)
    self.qkv = nnx.Linear(dim, 3 * dim, use_bias=False, rngs=rngs)
    self.proj = nnx.Linear(dim, dim, use_bias=False, rngs=rngs)
    self.norm2 = make_norm(dim, rngs=rngs)
    hidden = mlp_ratio * dim
    self.up = nnx.Linear(dim, (2 if mlp == "swiglu" else 1) * hidden, use_bias=False, rngs=rngs)
    self.down = nnx.Linear(hidden, dim, use_bias=False, rngs=rngs)

  def __call__(self, x, positions, *, cache=None, dropout=None, contiguous=False, split=None, segment_ids=None):
    """``dropout`` is ``(rate, key)`` or None; returns the new residual stream and the written cache.

    ``segment_ids``: None, or ``(batch, seq)`` ids with ``positions`` ``(batch, seq)`` (no cache): the
    attention function's ``segments`` form runs.

    ``contiguous``: ``positions`` is ``0 .. seq-1`` (then, without a cache, the attention function's
    ``contiguous`` form runs if it has one). ``split``: the token split of the named activations
    (`_tag`); the names (`ACTIVATION_NAMES`) only matter under ``jax.checkpoint``.
    """
    b, t, _ = x.shape
    h_in = _tag(self.norm1(x), "attn_in", split)
    q, k, v = jnp.split(self.qkv(h_in).reshape(b, t, 3 * self.num_heads, self.head_dim), 3, axis=2)
    q, k = rope(q, positions, base=self.rope_base), rope(k, positions, base=self.rope_base)
    q, k, v = _tag(q, "q", split), _tag(k, "k", split), _tag(v, "v", split)
    if cache is None:
      keys, values, k_pos = k, v, positions
    else:
      keys = jnp.concatenate([cache.k.astype(k.dtype), k], axis=1)
      values = jnp.concatenate([cache.v.astype(v.dtype), v], axis=1)
      k_pos = jnp.concatenate([cache.positions, positions])
      cache = cache.write(k, v, positions)
    whole = getattr(self.attention_fn, "contiguous", None) if contiguous and cache is None else None
    if segment_ids is not None:
      a = self.attention_fn.segments(q, keys, values, q_positions=positions, k_positions=k_pos,
                                     q_segment_ids=segment_ids, k_segment_ids=segment_ids)
    elif whole is not None:
      a = whole(q, keys, values)
    else:
      a = self.attention_fn(q, keys, values, q_positions=positions, k_positions=k_pos)
    a = _tag(a, "attn_out", split)
    a = self.proj(a.reshape(b, t, self.num_heads * self.head_dim))
    if dropout is not None:
      a = _dropout(a, dropout[0], jax.random.fold_in(dropout[1], 0))
    x = _tag(x + a, "resid_mid", split)
    h = _tag(self.up(_tag(self.norm2(x), "mlp_in", split)), "mlp_up", split)
    if self.mlp == "swiglu":
      gate, h = jnp.split(h, 2, axis=-1)
      h = nnx.silu(gate) * h
    else:
      h = nnx.gelu(h)
    h = self.down(_tag(h, "mlp_hidden", split))
    if dropout is not None:
      h = _dropout(h, dropout[0], jax.random.fold_in(dropout[1], 1))
    return x + h, cache


def _checkpointed_block(blk, x, positions, dropout, contiguous, policy, split, segment_ids=None):
  """One block under ``jax.checkpoint(policy)``: its named activations are saved, offloaded or recomputed."""
  rate = None if dropout is None else dropout[0]

  def run(x, positions, key, segment_ids):
    return blk(x, positions, dropout=None if key is None else (rate, key), contiguous=contiguous, split=split,
               segment_ids=segment_ids)[0]

  return jax.checkpoint(run, policy=policy)(x, positions, None if dropout is None else dropout[1], segment_ids)


class Transformer(nnx.Module):
  r"""Decoder-only transformer language model: tokens ``(batch, seq)`` to next-token logits.

  .. math::
    h_0 = E[x], \quad
    h'_l = h_{l-1} + W^O_l\, \mathrm{attn}_l\big(\mathrm{rope}(Q_l), \mathrm{rope}(K_l), V_l\big),\quad
    h_l = h'_l + \mathrm{MLP}_l(\mathrm{norm}(h'_l)), \quad
    \mathrm{logits} = \mathrm{norm}(h_L)\, W_{\mathrm{head}},

  with ``Q_l, K_l, V_l`` projections of ``norm(h_{l-1})`` split into heads, ``attn_l`` the layer's
  attention function (see the module docstring for its interface; default `causal_attention`), RoPE
  on queries and keys (`rope`, Su et al. 2021), ``norm`` RMSNorm (default) or LayerNorm, and the MLP
  SwiGLU ``W_2 (silu(x W_g) * x W_1)`` (default, Shazeer 2020) or GELU ``W_2 gelu(x W_1)`` with hidden
  width ``mlp_ratio * dim`` either way (so SwiGLU has 1.5x the MLP parameters). No biases. The output
  head is untied from the embedding (an ``nnx.Linear`` without bias, ``self.head``): at a byte
  vocabulary the embedding is a small share of the parameters, and an untied head is a plain final
  layer that head-level techniques can act on. Dropout (``dropout_rate``) applies to the embeddings
  and to each residual branch, in training only, drawn from the raw key ``key``.

  The model follows the `Model` and `HeadSplit` contracts per token: ``features`` gives the
  final-normed hidden states ``(batch, seq, dim)`` and ``apply_head`` the logits. It is not a
  `Classifier` (whose inputs are one example per row and whose logits are one row per example).
  Like every jaxdyn model it starts in inference mode (``model.train()`` / ``model.eval()``).

  Token ids are checked eagerly (integers in ``[0, vocab_size)``); under ``jit`` an out-of-range id
  gives NaN logits in its sequence (its embedding is NaN, and attention's value products carry NaN to
  every position of the row, masked or not: ``0 * NaN`` is NaN). Other sequences are unaffected.

  Args:
    vocab_size: number of token ids (256: bytes).
    dim: residual width.
    depth: number of blocks.
    num_heads: attention heads; ``dim / num_heads`` must be even (RoPE rotates pairs).
    mlp_ratio: MLP hidden width as a multiple of ``dim``.
    dropout_rate: dropout on embeddings and residual branches in training, in [0, 1).
    norm: ``"rmsnorm"`` or ``"layernorm"``.
    mlp: ``"swiglu"`` or ``"gelu"``.
    attention_fns: one attention function for every layer, a sequence of ``depth`` of them (a hybrid
      layer plan), or None for `causal_attention` everywhere.
    rope_base: the RoPE frequency base (10000 in Su et al.).
    rngs: ``nnx.Rngs`` for initialisation.

  Example:
    >>> model = Transformer(dim=32, depth=2, num_heads=2, rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((3, 10), jnp.int32)).shape
    (3, 10, 256)
  """

  deterministic: bool = True  # NNX's mode attribute: model.train() sets False, model.eval() True

  def __init__(
      self,
      vocab_size: int = 256,
      *,
      dim: int = 128,
      depth: int = 4,
      num_heads: int = 4,
      mlp_ratio: int = 4,
      dropout_rate: float = 0.0,
      norm: str = "rmsnorm",
      mlp: str = "swiglu",
      attention_fns: Sequence[AttentionFn] | AttentionFn | None = None,
      rope_base: float = 10000.0,
      rngs: nnx.Rngs,
  ):
    vocab_size, dim, depth, num_heads, mlp_ratio = (
        _validation.check_int(name, v, lower=1) for name, v in dict(
            vocab_size=vocab_size, dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio).items())
    if dim % num_heads or (dim // num_heads) % 2:
      raise ValueError(f"num_heads: must divide dim={dim} into heads of even size (RoPE rotates pairs), "
                       f"got {num_heads}")
    _validation.check_choice("norm", norm, NORMS)
    _validation.check_choice("mlp", mlp, MLPS)
    self.rope_base = _validation.check_real("rope_base", rope_base, lower=1.0, lower_open=True)
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)
    if attention_fns is None:
      attention_fns = causal_attention
    if callable(attention_fns):
      attention_fns = (attention_fns,) * depth
    elif not isinstance(attention_fns, Sequence) or isinstance(attention_fns, str):
      raise TypeError(f"attention_fns: must be a callable, a sequence of depth={depth} callables or None, "
                      f"got {type(attention_fns).__name__}")
    attention_fns = tuple(attention_fns)
    if len(attention_fns) != depth or not all(callable(f) for f in attention_fns):
      raise ValueError(f"attention_fns: must be a callable, a sequence of depth={depth} callables or None, "
                       f"got {len(attention_fns)} entries")
    self.vocab_size, self.dim, self.depth, self.num_heads = vocab_size, dim, depth, num_heads
    self.attention_fns = attention_fns
    self.embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (vocab_size, dim)))
    self.blocks = nnx.List([_Block(dim, num_heads, mlp_ratio, norm, mlp, fn, self.rope_base, rngs=rngs)
                            for fn in attention_fns])
    self.norm = (nnx.RMSNorm if norm == "rmsnorm" else nnx.LayerNorm)(dim, rngs=rngs)
    self.head = nnx.Linear(dim, vocab_size, use_bias=False, rngs=rngs)

  @property
  def head_dim(self) -> int:
    return self.dim // self.num_heads

  def _embed(self, tokens):
    table = self.embed[...]
    ok = _validation.labels_valid(tokens, self.vocab_size)
    return _validation.nan_unless(ok[..., None], table[jnp.clip(tokens, 0, self.vocab_size - 1)])

  def features(self, tokens: jax.Array, *, positions: jax.Array | None = None, segment_ids: jax.Array | None = None,
               train: bool | None = None, key: jax.Array | None = None,
               remat: Sequence[Any] | None = None, prefix: jax.Array | None = None) -> jax.Array:
    """The final-normed hidden states ``(batch, seq, dim)`` of ``tokens`` at ``positions``.

    ``positions`` (``(seq,)`` integers, default ``0 .. seq-1``) are the absolute positions RoPE and the
    attention functions see; shifting them all by a constant leaves the output unchanged up to float
    rounding of the rotation angles (RoPE is relative).

    ``segment_ids`` (default None) are ``(batch, seq)`` integers marking which document each token
    belongs to (`jaxdyn.text.concat_and_chunk`): a token attends only to earlier tokens of its own
    segment, so each segment's output equals the model run on that segment alone (up to float
    rounding). ``positions`` may then be ``(seq,)``, ``(batch, seq)``, or None: per row, restarting at
    0 at the start of every run of equal consecutive ids. Every layer's attention function needs a
    ``segments`` form (module docstring; `causal_attention` has one), else this raises.

    ``remat`` (default None: no block is checkpointed) runs blocks under ``jax.checkpoint``, one entry per
    block: None (the block runs plainly and its backward keeps whatever autodiff saves), a
    ``jax.checkpoint`` policy over the names in `ACTIVATION_NAMES`, or a layer plan, an object with
    ``policy`` (a policy, or None for the default of ``jax.checkpoint``: save nothing) and
    ``token_split``: None or ``(names, chunks, head)``, which tags the first ``head`` tokens of each
    of ``chunks`` equal chunks of the sequence as ``name + "_head"`` and the rest as ``name + "_tail"``
    for the listed names (MEMO's token-wise split, local to each shard of a sequence-sharded array;
    `jaxdyn.memory.plan_memory` builds such plans). Values and gradients do not depend on ``remat``.

    ``prefix`` (default None) is ``(batch, p, dim)`` float embeddings placed before the token embeddings
    at positions ``0 .. p-1`` (the tokens then sit at ``p .. p+seq-1``), e.g. an image encoder's output
    for a captioner (`jaxdyn.models.Captioner`); every token attends to the whole prefix, and only the
    tokens' hidden states are returned. It cannot be combined with ``positions`` or ``segment_ids``.
    """
    _check_tokens("tokens", tokens, self.vocab_size)
    tokens = jnp.asarray(tokens)
    num_prefix = 0
    if prefix is not None:
      if positions is not None or segment_ids is not None:
        raise ValueError("prefix: cannot be combined with positions or segment_ids")
      prefix = _validation.check_floating("prefix", prefix)
      if prefix.ndim != 3 or prefix.shape[0] != tokens.shape[0] or prefix.shape[2] != self.dim:
        raise ValueError(f"prefix: must be (batch={tokens.shape[0]}, p, dim={self.dim}) embeddings, got shape "
                         f"{prefix.shape}")
      num_prefix = prefix.shape[1]
    seq = tokens.shape[1] + num_prefix
    if segment_ids is not None:
      positions = self._segment_positions(tokens, positions, segment_ids)
      contiguous = False
    else:
      contiguous = positions is None
      if contiguous:
        positions = jnp.arange(seq, dtype=jnp.int32)
      _check_positions("positions", positions, seq)
    train = is_training(self, train)
    drop = train and self.dropout_rate > 0.0
    if drop:
      _validation.check_key("key", key, why=" in training with dropout_rate > 0")
    entries = _remat_entries(remat, self.depth, seq)
    x = self._embed(tokens)
    if num_prefix:
      x = jnp.concatenate([prefix.astype(x.dtype), x], axis=1)
    if drop:
      x = _dropout(x, self.dropout_rate, jax.random.fold_in(key, self.depth))
    for i, (blk, entry) in enumerate(zip(self.blocks, entries)):
      dropout = (self.dropout_rate, jax.random.fold_in(key, i)) if drop else None
      if entry is None:
        x, _ = blk(x, positions, dropout=dropout, contiguous=contiguous, segment_ids=segment_ids)
      else:
        x = _checkpointed_block(blk, x, positions, dropout, contiguous, *entry, segment_ids=segment_ids)
    return self.norm(x[:, num_prefix:])

  def _segment_positions(self, tokens, positions, segment_ids):
    """Checks ``segment_ids`` and the attention functions; returns ``(batch, seq)`` int32 positions."""
    shape = jnp.shape(tokens)
    if jnp.shape(segment_ids) != shape:
      raise ValueError(f"segment_ids: must have the shape of tokens {shape}, got {jnp.shape(segment_ids)}")
    if not jnp.issubdtype(jnp.asarray(segment_ids).dtype, jnp.integer):
      raise ValueError(f"segment_ids: must be integers, got dtype {jnp.asarray(segment_ids).dtype}")
    for i, fn in enumerate(self.attention_fns):
      if not callable(getattr(fn, "segments", None)):
        raise ValueError(f"segment_ids: layer {i}'s attention function {getattr(fn, '__name__', fn)!r} has no "
                         f"`segments` form, so it cannot keep tokens within their segment (use causal_attention)")
    if positions is None:
      seg = jnp.asarray(segment_ids)
      idx = jnp.broadcast_to(jnp.arange(shape[1], dtype=jnp.int32), shape)
      new = jnp.concatenate([jnp.ones((shape[0], min(shape[1], 1)), bool), seg[:, 1:] != seg[:, :-1]], axis=1)
      return idx - jax.lax.cummax(jnp.where(new, idx, 0), axis=1)
    if jnp.ndim(positions) == 1:
      _check_positions("positions", positions, shape[1])
      return jnp.broadcast_to(jnp.asarray(positions), shape)
    if jnp.shape(positions) != shape or not jnp.issubdtype(jnp.asarray(positions).dtype, jnp.integer):
      raise ValueError(f"positions: must be integer positions of shape ({shape[1]},) or {shape} with segment_ids, "
                       f"got {jnp.asarray(positions).dtype} of shape {jnp.shape(positions)}")
    return jnp.asarray(positions)

  def apply_head(self, h: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    """Logits ``(..., vocab_size)`` of final-normed hidden states ``h`` (no dropout at the head)."""
    del train, key
    return self.head(h)

  def __call__(
      self,
      tokens: jax.Array,
      *,
      positions: jax.Array | None = None,
      segment_ids: jax.Array | None = None,
      train: bool | None = None,
      key: jax.Array | None = None,
      return_features: bool = False,
      remat: Sequence[Any] | None = None,
      prefix: jax.Array | None = None,
  ):
    """Next-token logits ``(batch, seq, vocab_size)`` of integer ``tokens`` ``(batch, seq)``.

    Position ``t``'s logits predict token ``t + 1`` and depend on tokens ``0 .. t`` only (with causal
    attention functions). With ``return_features=True`` returns ``(logits, features)``. ``remat``: the
    per-block ``jax.checkpoint`` plans of `features`. ``segment_ids``: ``(batch, seq)`` document ids, a
    token attends only within its segment (`features`). ``prefix``: ``(batch, p, dim)`` embeddings before
    the tokens (`features`); the logits are the tokens' only.
    """
    h = self.features(tokens, positions=positions, segment_ids=segment_ids, train=train, key=key, remat=remat,
                      prefix=prefix)
    logits = self.apply_head(h)
    return (logits, h) if return_features else logits

  def init_cache(self, batch: int, max_len: int | Sequence[int], dtype: Any = jnp.float32, *,
                 sink_tokens: int | Sequence[int] = 0) -> KVCache:
    """An empty `KVCache` for ``batch`` sequences.

    Args:
      batch: the batch size ``decode`` will be called with.
      max_len: slots per layer: one int for every layer, or ``depth`` ints (a short ring buffer for a
        sliding-window layer, the full length for a full-attention layer). A layer whose capacity is
        below the number of tokens decoded keeps its sink tokens and its last ``capacity -
        sink_tokens`` tokens.
      dtype: the dtype keys and values are stored in.
      sink_tokens: leading tokens per layer (int or ``depth`` ints) that are never overwritten, in
        ``[0, max_len)``.
    """
    batch = _validation.check_int("batch", batch, lower=0)
    lens = _per_layer("max_len", max_len, self.depth, lower=1)
    sinks = _per_layer("sink_tokens", sink_tokens, self.depth, lower=0)
    for n, s in zip(lens, sinks):
      if s >= n:
        raise ValueError(f"sink_tokens: must be < max_len (a ring needs one slot), got {s} and {n}")
    layers = tuple(LayerKVCache(k=jnp.zeros((batch, n, self.num_heads, self.head_dim), dtype),
                                v=jnp.zeros((batch, n, self.num_heads, self.head_dim), dtype),
                                positions=jnp.full((n,), -1, jnp.int32), sink_tokens=s)
                   for n, s in zip(lens, sinks))
    return KVCache(layers=layers, length=jnp.zeros((), jnp.int32))

  def decode(self, tokens: jax.Array, cache: KVCache) -> tuple[jax.Array, KVCache]:
    """Logits of a chunk of ``tokens`` ``(batch, chunk)`` that continues ``cache``, and the new cache.

    The chunk sits at positions ``cache.length .. cache.length + chunk - 1``; each layer attends over its
    cached slots and the chunk (masked by position, through its attention function), then stores the
    chunk. A prefill is one call with the prompt, then one call per generated token; the logits equal
    those of the full forward pass on the concatenated tokens (inference mode, no dropout). Jittable:
    shapes are static, the cache a PyTree.
    """
    _check_tokens("tokens", tokens, self.vocab_size)
    if not isinstance(cache, KVCache) or len(cache.layers) != self.depth:
      raise ValueError(f"cache: must be a KVCache with depth={self.depth} layers (Transformer.init_cache)")
    if jnp.shape(tokens)[0] != cache.layers[0].k.shape[0]:
      raise ValueError(f"tokens: must have the cache's batch size {cache.layers[0].k.shape[0]}, got shape "
                       f"{jnp.shape(tokens)}")
    tokens = jnp.asarray(tokens)
    positions = cache.length + jnp.arange(tokens.shape[1], dtype=jnp.int32)
    x = self._embed(tokens)
    layers = []
    for blk, layer in zip(self.blocks, cache.layers):
      x, layer = blk(x, positions, cache=layer)
      layers.append(layer)
    logits = self.head(self.norm(x))
    return logits, KVCache(layers=tuple(layers), length=cache.length + jnp.shape(tokens)[1])


def token_log_probs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  r"""Log-probability of each token under its logits: ``log softmax(logits)[..., tokens]``.

  .. math:: \ell_{t} = z_{t, y_t} - \log \textstyle\sum_v e^{z_{t, v}}

  For a language model's next-token log-probs shift by one: ``token_log_probs(model(seq)[:, :-1],
  seq[:, 1:])`` (what policy-gradient losses and per-token KL terms read). Computed in float32 at least.
  Out-of-range token ids raise eagerly and give NaN under ``jit``; a row of ``logits`` holding a NaN or
  an infinity gives NaN (mask vocabulary entries with a large finite negative number, not ``-inf``).

  Args:
    logits: ``(..., vocab)`` unnormalised log-probabilities.
    tokens: integer ids with shape ``logits.shape[:-1]``.

  Returns:
    ``logits.shape[:-1]`` log-probabilities (<= 0).

  Example:
    >>> token_log_probs(jnp.zeros((2, 4)), jnp.array([0, 3]))
    Array([-1.3862944, -1.3862944], dtype=float32)
  """
  _validation.check_labels_for_logits("tokens", tokens, logits)
  logits = jnp.asarray(logits)
  z = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  tokens = jnp.asarray(tokens)
  ok = _validation.labels_valid(tokens, z.shape[-1]) & jnp.all(jnp.isfinite(z), axis=-1)
  lp = jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), jnp.clip(tokens, 0, z.shape[-1] - 1)[..., None],
                           axis=-1)[..., 0]
  return _validation.nan_unless(ok, lp)


def generate(model: Transformer, prompt_tokens: jax.Array, *, max_new_tokens: int, key: jax.Array,
             temperature: float = 1.0, greedy: bool = False, cache_len: int | Sequence[int] | None = None,
             sink_tokens: int | Sequence[int] = 0) -> jax.Array:
  r"""Samples ``max_new_tokens`` continuations of ``prompt_tokens`` with a KV cache, under ``jax.jit``.

  One `Transformer.decode` call prefills the prompt, then a ``lax.fori_loop`` decodes one token per
  step: token ``t`` is ``argmax z_t`` (``greedy``) or drawn from ``softmax(z_t / temperature)`` with the
  key ``fold_in(key, t)``. The compiled loop is cached per model structure, shapes and cache sizes;
  new parameters, keys, temperatures or ``greedy`` do not recompile. The model runs in inference mode.

  Args:
    model: a `Transformer`.
    prompt_tokens: ``(batch, prompt_len)`` integer ids, ``prompt_len >= 1`` (all rows the same length).
    max_new_tokens: tokens to generate, >= 1.
    key: a `jax.random` key (read only when sampling, but always required).
    temperature: softmax temperature (> 0) when sampling.
    greedy: take the argmax instead of sampling.
    cache_len: cache slots per layer (int or ``depth`` ints; see `Transformer.init_cache`); default
      ``prompt_len + max_new_tokens`` everywhere. Shorter ring buffers are exact for layers whose
      attention never reads the tokens they drop (a sliding window of at most that many tokens).
    sink_tokens: never-overwritten leading tokens per layer (with ``cache_len``).

  Returns:
    ``(batch, prompt_len + max_new_tokens)`` int32: the prompt followed by the generated tokens.
  """
  if not isinstance(model, Transformer):
    raise TypeError(f"model: must be a jaxdyn.models.Transformer, got {type(model).__name__}")
  _check_tokens("prompt_tokens", prompt_tokens, model.vocab_size)
  if jnp.shape(prompt_tokens)[1] < 1:
    raise ValueError(f"prompt_tokens: must hold at least one token per row, got shape {jnp.shape(prompt_tokens)}")
  max_new_tokens = _validation.check_int("max_new_tokens", max_new_tokens, lower=1)
  _validation.check_key("key", key)
  temperature = _validation.check_real("temperature", temperature, lower=0.0, lower_open=True)
  total = jnp.shape(prompt_tokens)[1] + max_new_tokens
  cache_len = _per_layer("cache_len", total if cache_len is None else cache_len, model.depth, lower=1)
  sink_tokens = _per_layer("sink_tokens", sink_tokens, model.depth, lower=0)
  graphdef, state = nnx.split(model)
  return _generate(graphdef, state, jnp.asarray(prompt_tokens, jnp.int32), key, temperature, jnp.asarray(greedy),
                   max_new_tokens=max_new_tokens, cache_len=cache_len, sink_tokens=sink_tokens)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "cache_len", "sink_tokens"))
def _generate(graphdef, state, prompt, key, temperature, greedy, *, max_new_tokens, cache_len, sink_tokens):
  # greedy and temperature are traced: switching between sampling and argmax does not recompile.
  model = nnx.merge(graphdef, state)
  batch = prompt.shape[0]

  def pick(logits, i):
    sample = jax.random.categorical(jax.random.fold_in(key, i), logits / temperature, axis=-1)
    return jnp.where(greedy, jnp.argmax(logits, axis=-1), sample).astype(jnp.int32)

  cache = model.init_cache(batch, cache_len, sink_tokens=sink_tokens)
  logits, cache = model.decode(prompt, cache)
  out = jnp.zeros((batch, max_new_tokens), jnp.int32).at[:, 0].set(pick(logits[:, -1], 0))

  def step(i, carry):
    out, cache = carry
    logits, cache = model.decode(jax.lax.dynamic_slice_in_dim(out, i - 1, 1, axis=1), cache)
    return out.at[:, i].set(pick(logits[:, -1], i)), cache

  out, _ = jax.lax.fori_loop(1, max_new_tokens, step, (out, cache))
  return jnp.concatenate([prompt, out], axis=1)
