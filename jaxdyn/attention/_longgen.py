"""LongGen hybrid stacks: which layers attend to everything, which to a sink and a window, and the cache.

Ge et al. (LongGen, arXiv 2410.01485) extend a pretrained LM's context by fine-tuning it at the long
length with most layers on a sparse pattern and a few on full attention: "1/3 full attention layers
in the middle" and 2/3 sparse layers (attention sink + sliding window, or block-sparse strided),
which keeps the long-context retrieval of full attention (the full layers give "direct access to
all tokens") while the sparse layers keep only a constant-size KV cache at inference (the paper
reports a 62% smaller cache). This module gives:

- `layer_plan(depth, full_fraction=1/3, placement="middle")`: a tuple of ``"full"`` / ``"sparse"``
  per layer. With n_f = round(full_fraction * depth) full layers, ``"middle"`` puts them in the
  contiguous middle span [floor((depth - n_f) / 2), + n_f) (the paper's choice), ``"bottom"`` and
  ``"top"`` at either end, ``"interleave"`` evenly spaced (the placements the paper compares).
- `sink_window_attention(sink, window)`: an attention function for `jaxdyn.models.Transformer`
  (``fn(q, k, v, *, q_positions, k_positions)``) masked by absolute positions,
  M_ij = [0 <= p_j <= p_i] [p_j < sink or p_i - p_j < window], so the same function serves training
  (positions 0..L-1) and cached decoding (whatever slots a ring buffer holds).
- `hybrid_attention_fns(plan, sink, window)`: one function per layer (`jaxdyn.models.causal_attention`
  for full layers).
- `hybrid_cache(model, plan, batch, max_len, sink, window)`: a `KVCache` whose sparse layers are
  ring buffers of ``sink + window`` slots (the first ``sink`` never overwritten) and whose full
  layers hold ``max_len``; the pattern never reads a token the ring has dropped, so decoding with it
  gives exactly what decoding with full caches gives.
- `kv_cache_bytes(plan, seq_len, ...)`: the cache's size per layer and in total, 2 (K and V) x heads
  x head_dim x bytes per element x tokens kept (seq_len for a full layer, min(seq_len, sink + window)
  for a sparse one), plus the int32 position of each slot.

In cached decoding the sparse layers compute their (chunk x cache) scores densely and mask them by
position. On a whole sequence at positions 0..L-1 (a training step) the positions are known from the
static length, so `sink_window_attention`'s ``contiguous`` form builds the concrete mask and runs the
block-sparse kernel (`block_sparse_attention`) on GPU and TPU, where it is several times faster than
dense attention at long lengths (see its docstring's H200 table); on CPU, where Pallas only
interprets, ``implementation="auto"`` takes the kernel's jnp path on long sequences and the dense
masked path on short ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation
from jaxdyn.attention._kernel import _masked_softmax, block_sparse_attention
from jaxdyn.attention._patterns import sink_window_mask
from jaxdyn.models import Transformer, causal_attention

__all__ = ["PLACEMENTS", "SPARSE_IMPLEMENTATIONS", "hybrid_attention_fns", "hybrid_cache", "hybrid_cache_sizes", "kv_cache_bytes",
           "layer_plan", "sink_window_attention"]

PLACEMENTS = ("middle", "bottom", "top", "interleave")
SPARSE_IMPLEMENTATIONS = ("auto", "dense", "pallas", "jnp")
_CPU_JNP_MIN_LENGTH = 1024


def layer_plan(depth: int, *, full_fraction: float = 1 / 3, placement: str = "middle") -> tuple[str, ...]:
  """Which layers are full attention and which sparse, LongGen's hybrid stack.

  n_f = round(full_fraction * depth) layers are ``"full"`` (at least one when full_fraction > 0);
  ``"middle"`` (the paper's default) makes layers [s, s + n_f) full with s = floor((depth - n_f) / 2),
  ``"bottom"`` the first n_f, ``"top"`` the last n_f, ``"interleave"`` layers
  floor((i + 1/2) depth / n_f) for i < n_f. The rest are ``"sparse"``.

  Args:
    depth: layers, >= 1.
    full_fraction: in [0, 1]; 0 is an all-sparse stack, 1 all full.
    placement: one of `PLACEMENTS`.

  Returns:
    A tuple of ``depth`` strings.

  Example:
    >>> layer_plan(6)
    ('sparse', 'sparse', 'full', 'full', 'sparse', 'sparse')

  References:
    Ge et al., "A Little Goes a Long Way: Efficient Long Context Training and Inference with Partial
    Contexts", 2024, https://arxiv.org/abs/2410.01485.
  """
  depth = _validation.check_int("depth", depth, lower=1)
  full_fraction = _validation.check_real("full_fraction", full_fraction, lower=0.0, upper=1.0)
  placement = _validation.check_choice("placement", placement, PLACEMENTS)
  n = min(depth, max(1, round(full_fraction * depth))) if full_fraction > 0 else 0
  if placement == "middle":
    s = (depth - n) // 2
    full = set(range(s, s + n))
  elif placement == "bottom":
    full = set(range(n))
  elif placement == "top":
    full = set(range(depth - n, depth))
  else:
    full = {math.floor((i + 0.5) * depth / n) for i in range(n)}
  return tuple("full" if i in full else "sparse" for i in range(depth))


def _check_plan(plan) -> tuple[str, ...]:
  if isinstance(plan, (str, bytes)) or not isinstance(plan, Sequence) or not plan:
    raise ValueError(f"plan: must be a non-empty sequence of 'full' / 'sparse', got {plan!r}")
  for p in plan:
    if p not in ("full", "sparse"):
      raise ValueError(f"plan: must hold only 'full' and 'sparse', got {p!r}")
  return tuple(plan)


def sink_window_attention(sink: int, window: int, *, implementation: str = "auto",
                          block_size: int = 64) -> Callable[..., jax.Array]:
  """An attention function (``fn(q, k, v, *, q_positions, k_positions)``) on a sink and a window.

  Query i at position p_i reads key j at position p_j when 0 <= p_j <= p_i and (p_j < sink or
  p_i - p_j < window): the first ``sink`` tokens and the last ``window`` (itself included), as
  `sink_window_mask` with positions; a negative position is an empty cache slot. Softmax over
  the allowed keys with scale 1/sqrt(head_dim), in float32 at least; a query with no allowed key
  gives zeros, and an allowed score of -inf (a non-finite input) gives NaN rather than dropping its
  key (`block_sparse_attention`'s rule).

  The function's ``contiguous(q, k, v)`` form (what `jaxdyn.models.Transformer` calls on a whole
  sequence at positions 0..L-1) computes the same with ``implementation``:

  - ``"auto"``: on GPU and TPU the Pallas kernel when the head dimension is a power of two >= 16
    (Triton's matmul), else ``"dense"``; on CPU the jnp path from 1,024 tokens when the sequence is
    at least twice the sink plus the window, else ``"dense"`` (measured with a 1,024 window:
    the jnp path takes 1.22x the dense time at 1,024 tokens, 0.71x at 2,048, 0.38x at 4,096);
  - ``"dense"``: the position-masked dense scores (O(L^2) memory), as in decoding;
  - ``"pallas"`` / ``"jnp"``: `block_sparse_attention` on `sink_window_mask` with that
    implementation (``"pallas"`` interprets on CPU: for tests), at JAX's default matmul precision,
    as the dense path (TF32 for float32 on NVIDIA GPUs, exact float32 on CPU).

  Args:
    sink: leading tokens every query reads, >= 0.
    window: the sliding window, >= 1.
    implementation: one of `SPARSE_IMPLEMENTATIONS`, for whole sequences.
    block_size: the kernel's query and key block (a power of two; shrunk for a short sequence).

  Returns:
    The function, for `jaxdyn.models.Transformer`'s ``attention_fns``.

  Example:
    >>> fn = sink_window_attention(1, 2)
    >>> q = k = jnp.zeros((1, 4, 1, 2)); v = jnp.arange(4.0).reshape(1, 4, 1, 1) * jnp.ones(2)
    >>> p = jnp.arange(4)
    >>> out = fn(q, k, v, q_positions=p, k_positions=p)  # reads {0}, {0, 1}, {0, 1, 2}, {0, 2, 3}
    >>> [round(x, 4) for x in out[0, :, 0, 0].tolist()]
    [0.0, 0.5, 1.0, 1.6667]
  """
  sink = _validation.check_int("sink", sink, lower=0)
  window = _validation.check_int("window", window, lower=1)
  implementation = _validation.check_choice("implementation", implementation, SPARSE_IMPLEMENTATIONS)
  block_size = _validation.check_int("block_size", block_size, lower=1)
  if block_size & (block_size - 1):
    raise ValueError(f"block_size: must be a power of two, got {block_size}")

  def attend(q, k, v, *, q_positions, k_positions):
    for name, x in (("q", q), ("k", k), ("v", v)):
      _validation.check_ndim(name, x, 4)
    qp, kp = jnp.asarray(q_positions)[:, None], jnp.asarray(k_positions)[None, :]
    allowed = (kp >= 0) & (kp <= qp) & ((kp < sink) | (qp - kp < window))
    dtype = jnp.promote_types(q.dtype, jnp.float32)
    s = jnp.einsum("bqhd,bkhd->bhqk", q.astype(dtype), k.astype(dtype)) / math.sqrt(q.shape[-1])
    w = _masked_softmax(s, jnp.broadcast_to(allowed, s.shape))
    return jnp.einsum("bhqk,bkhd->bqhd", w, v.astype(dtype)).astype(v.dtype)

  def contiguous(q, k, v):
    impl, d = implementation, q.shape[-1]
    if impl == "auto":
      length = q.shape[1]
      if jax.default_backend() != "cpu":
        impl = "pallas" if d >= 16 and not d & (d - 1) else "dense"
      else:  # where the gathered blocks beat the dense scores (benchmarks/attention.py)
        impl = "jnp" if length >= max(_CPU_JNP_MIN_LENGTH, 2 * (sink + window)) else "dense"
    if impl == "dense" or q.shape[1] != k.shape[1]:
      positions = jnp.arange(q.shape[1], dtype=jnp.int32)
      return attend(q, k, v, q_positions=positions, k_positions=positions)
    mask = sink_window_mask(q.shape[1], sink=sink, window=window)
    out = block_sparse_attention(q, k, v, mask, block_q=block_size, block_k=block_size, implementation=impl)
    return out.astype(v.dtype)

  attend.sink, attend.window, attend.contiguous = sink, window, contiguous
  return attend


def hybrid_attention_fns(plan: Sequence[str], *, sink: int, window: int,
                         implementation: str = "auto") -> tuple[Callable[..., jax.Array], ...]:
  """Per layer of ``plan``: `jaxdyn.models.causal_attention` (full) or `sink_window_attention` (sparse).

  ``implementation`` is the sparse layers' whole-sequence path (`sink_window_attention`).

  Example:
    >>> [f.__name__ for f in hybrid_attention_fns(("sparse", "full"), sink=1, window=4)]
    ['attend', 'causal_attention']
  """
  plan = _check_plan(plan)
  sparse = sink_window_attention(sink, window, implementation=implementation)
  return tuple(causal_attention if p == "full" else sparse for p in plan)


def hybrid_cache(model, plan: Sequence[str], batch: int, max_len: int, *, sink: int, window: int, dtype=jnp.float32):
  """An empty KV cache for ``model`` under ``plan``: full layers ``max_len`` slots, sparse ones a ring.

  A sparse layer keeps ``min(max_len, sink + window)`` slots, its first ``sink`` fixed (the sink
  tokens) and the rest a ring over the latest tokens (`jaxdyn.models.Transformer.init_cache`). A
  query at position p reads at most the sink and positions p - window + 1 .. p, all of which the
  ring still holds when the chunk is decoded, so the result equals decoding with full caches.

  Args:
    model: a `jaxdyn.models.Transformer` with ``len(plan)`` layers.
    plan: from `layer_plan`.
    batch: sequences decoded together.
    max_len: the longest sequence (prompt and generated tokens).
    sink, window: the sparse layers' pattern (those of `hybrid_attention_fns`).
    dtype: the stored keys' and values' dtype.
  """
  if not isinstance(model, Transformer):
    raise TypeError(f"model: must be a jaxdyn.models.Transformer, got {type(model).__name__}")
  plan = _check_plan(plan)
  if len(plan) != model.depth:
    raise ValueError(f"plan: must give one entry per layer ({model.depth}), got {len(plan)}")
  lens, sinks = hybrid_cache_sizes(plan, max_len, sink=sink, window=window)
  return model.init_cache(batch, lens, dtype, sink_tokens=sinks)


def hybrid_cache_sizes(plan: Sequence[str], max_len: int, *, sink: int, window: int
                       ) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Per layer, the cache slots and fixed sink slots of `hybrid_cache` (``cache_len``, ``sink_tokens``
  of `jaxdyn.models.generate`): ``max_len`` and 0 for a full layer, ``min(max_len, sink + window)``
  and ``sink`` for a sparse one (0 when the ring never wraps).

  Example:
    >>> hybrid_cache_sizes(("sparse", "full"), 100, sink=2, window=8)
    ((10, 100), (2, 0))
  """
  plan = _check_plan(plan)
  max_len = _validation.check_int("max_len", max_len, lower=1)
  sink = _validation.check_int("sink", sink, lower=0)
  window = _validation.check_int("window", window, lower=1)
  ring = min(max_len, sink + window)
  lens = tuple(max_len if p == "full" else ring for p in plan)
  sinks = tuple(0 if p == "full" or ring == max_len else sink for p in plan)
  return lens, sinks


def kv_cache_bytes(plan: Sequence[str], seq_len: int, *, num_heads: int, head_dim: int, sink: int, window: int,
                   dtype=jnp.float32, batch: int = 1) -> dict[str, object]:
  """KV-cache bytes of a plan at ``seq_len`` tokens, per layer and in total, against all-full.

  Per layer: slots x (batch 2 heads head_dim itemsize + 4), the 4 bytes being the int32 position
  of each slot, with slots = seq_len for a full layer and min(seq_len, sink + window) for a sparse
  one; the total adds the cache's int32 length: exactly the arrays `hybrid_cache` allocates.

  Returns:
    ``{"per_layer": [bytes...], "total": bytes, "full_total": bytes of the all-full plan,
    "saving": 1 - total / full_total, "bytes_per_token": total / seq_len}``.

  Example:
    >>> r = kv_cache_bytes(("sparse", "full", "sparse"), 1024, num_heads=2, head_dim=8, sink=4, window=60)
    >>> r["per_layer"], round(r["saving"], 3)
    ([8448, 135168, 8448], 0.625)
  """
  plan = _check_plan(plan)
  seq_len = _validation.check_int("seq_len", seq_len, lower=1)
  num_heads = _validation.check_int("num_heads", num_heads, lower=1)
  head_dim = _validation.check_int("head_dim", head_dim, lower=1)
  sink = _validation.check_int("sink", sink, lower=0)
  window = _validation.check_int("window", window, lower=1)
  batch = _validation.check_int("batch", batch, lower=1)
  per_slot = batch * 2 * num_heads * head_dim * np.dtype(dtype).itemsize + 4
  slots = [seq_len if p == "full" else min(seq_len, sink + window) for p in plan]
  per_layer = [s * per_slot for s in slots]
  total, full_total = sum(per_layer) + 4, len(plan) * seq_len * per_slot + 4
  return {"per_layer": per_layer, "total": total, "full_total": full_total, "saving": 1 - total / full_total,
          "bytes_per_token": total / seq_len}
