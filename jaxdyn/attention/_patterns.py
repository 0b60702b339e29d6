"""Attention patterns as pure functions: boolean masks for a dense reference, block layouts for kernels.

A query at position p (query row i sits at p = q_offset + i; the keys sit at 0, 1, ..., k_len - 1)
may attend to key j when

- causal: j <= p;
- sliding window (w): 0 <= p - j < w, the last w keys including itself;
- attention sink + window (s, w), StreamingLLM-style: j <= p and (j < s or p - j < w), the first s
  tokens (the sink) plus the sliding window;
- block-sparse local + strided (block size b, local blocks n_l, vertical stride v), dkernel's rule
  with P = p // b and J = j // b: j <= p and (P - J < n_l or (J + o) % v == 0), i.e. causal at block
  granularity, the n_l latest blocks (the own block included) plus every v-th block (block 0 first,
  which acts as a sink; o is the head's offset), and causal inside the diagonal block.

The masks are NumPy arrays, True where a query may attend, of shape ``(q_len, k_len)``: a pattern is
static (it decides the shapes of a kernel's loops), so it is built from Python integers, never traced.
``q_offset`` places the queries after cached keys (generation: ``q_offset = k_len - q_len``); it is 0
by default, where ``causal_mask`` is ``jnp.tril`` as in ``jax.nn.dot_product_attention(is_causal=True)``.

For a kernel, `block_layout` reduces a mask to blocks, (query block I, key block J) listed iff some
entry of the mask in it is True, and `layout_indices` lists each query block's key blocks, padded to
the longest row, with a count: a kernel loops over ``indices[I, :counts[I]]`` only.

References:
  Ge et al., "A Little Goes a Long Way: Efficient Long Context Training and Inference with Partial
  Contexts" (LongGen), 2024, https://arxiv.org/abs/2410.01485 (sparse layers: sink + window, or
  block-sparse local + strided); Xiao et al., "Efficient Streaming Language Models with Attention
  Sinks", ICLR 2024, https://arxiv.org/abs/2309.17453; the block-sparse rule of
  https://github.com/linxihui/dkernel (``dkernel/utils.py``, ``get_sparse_attn_mask``).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxdyn import _validation

__all__ = [
    "PATTERNS",
    "block_layout",
    "block_sparse_mask",
    "causal_mask",
    "layout_indices",
    "sink_window_mask",
    "sliding_window_mask",
]


def _positions(q_len: Any, k_len: Any, q_offset: Any) -> tuple[np.ndarray, np.ndarray]:
  """Checked lengths -> query positions ``(q_len, 1)`` and key positions ``(1, k_len)``."""
  q_len = _validation.check_int("q_len", q_len, lower=0)
  q_offset = _validation.check_int("q_offset", q_offset, lower=0)
  k_len = q_offset + q_len if k_len is None else _validation.check_int("k_len", k_len, lower=0)
  return np.arange(q_offset, q_offset + q_len)[:, None], np.arange(k_len)[None, :]


def causal_mask(q_len: int, k_len: int | None = None, *, q_offset: int = 0) -> np.ndarray:
  """The causal mask: query position p = q_offset + i attends to keys j <= p.

  M[i, j] = [j <= q_offset + i].

  Args:
    q_len: number of queries (>= 0).
    k_len: number of keys; default ``q_offset + q_len`` (every key up to the last query).
    q_offset: position of the first query (>= 0; 0 is ``jnp.tril``).

  Returns:
    Boolean ``(q_len, k_len)``, True where the query may attend.

  Example:
    >>> causal_mask(3).astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
  """
  p, j = _positions(q_len, k_len, q_offset)
  return j <= p


def sliding_window_mask(q_len: int, k_len: int | None = None, *, window: int, q_offset: int = 0) -> np.ndarray:
  """A causal sliding window: each query attends to the last ``window`` keys, itself included.

  M[i, j] = [0 <= p - j < window], p = q_offset + i. ``window >= k_len`` is `causal_mask`.

  Args:
    q_len, k_len, q_offset: as in `causal_mask`.
    window: keys per query (>= 1).

  Returns:
    Boolean ``(q_len, k_len)``.

  Example:
    >>> sliding_window_mask(4, window=2).astype(int)
    array([[1, 0, 0, 0],
           [1, 1, 0, 0],
           [0, 1, 1, 0],
           [0, 0, 1, 1]])

  References:
    Beltagy et al., "Longformer", 2020, https://arxiv.org/abs/2004.05150 (its causal form).
  """
  window = _validation.check_int("window", window, lower=1)
  p, j = _positions(q_len, k_len, q_offset)
  return (j <= p) & (j > p - window)


def sink_window_mask(q_len: int, k_len: int | None = None, *, sink: int, window: int,
                     q_offset: int = 0) -> np.ndarray:
  """Attention sink + sliding window (StreamingLLM, LongGen's first sparse pattern).

  M[i, j] = [j <= p] [j < sink or p - j < window], p = q_offset + i: the first ``sink`` tokens stay
  visible to every later query, the rest through the window. ``sink=0`` is `sliding_window_mask`.

  Args:
    q_len, k_len, q_offset: as in `causal_mask`.
    sink: number of leading sink tokens (>= 0).
    window: the sliding window (>= 1, the query itself included).

  Returns:
    Boolean ``(q_len, k_len)``.

  Example:
    >>> sink_window_mask(5, sink=1, window=2).astype(int)
    array([[1, 0, 0, 0, 0],
           [1, 1, 0, 0, 0],
           [1, 1, 1, 0, 0],
           [1, 0, 1, 1, 0],
           [1, 0, 0, 1, 1]])

  References:
    Xiao et al., ICLR 2024, https://arxiv.org/abs/2309.17453; LongGen (Ge et al., 2024),
    https://arxiv.org/abs/2410.01485.
  """
  sink = _validation.check_int("sink", sink, lower=0)
  window = _validation.check_int("window", window, lower=1)
  p, j = _positions(q_len, k_len, q_offset)
  return (j <= p) & ((j < sink) | (j > p - window))


def block_sparse_mask(q_len: int, k_len: int | None = None, *, block_size: int, local_blocks: int,
                      vertical_stride: int, head_offset: int = 0, num_heads: int | None = None,
                      q_offset: int = 0) -> np.ndarray:
  """Block-sparse local + strided attention, dkernel's rule (LongGen's second sparse pattern).

  With P = p // block_size, J = j // block_size (p = q_offset + i):

    M[i, j] = [j <= p] [P - J < local_blocks  or  (J + head_offset) % vertical_stride == 0],

  block-causal, the ``local_blocks`` latest blocks (the query's own included) plus every
  ``vertical_stride``-th block (with offset 0 block 0 is one of them and acts as a sink), and causal
  inside the diagonal block (dkernel multiplies its block mask by the token-level causal mask).

  dkernel's ``get_sparse_attn_mask`` also rotates the strided columns over heads (``homo_head=False``):
  head h uses offset ``head_offset + h * max(1, vertical_stride // num_heads)``, so that different
  heads read different blocks. ``num_heads=None`` gives one pattern for all heads (dkernel's
  ``homo_head=True``); ``num_heads=H`` returns the ``(H, q_len, k_len)`` heterogeneous masks, which
  `jaxdyn.attention.block_sparse_attention` accepts as per-head masks. dkernel's dense heads
  (``num_dense_heads``) and GQA grouping are not modelled (use `causal_mask` for a dense head).

  Args:
    q_len, k_len, q_offset: as in `causal_mask`.
    block_size: tokens per block (>= 1).
    local_blocks: latest blocks each query reads, its own included (>= 1).
    vertical_stride: every this-many-th block is read by all later queries (>= 1; 1 is causal).
    head_offset: the strided columns' phase (>= 0; dkernel's ``head_sliding_offset``).
    num_heads: None for a single pattern, or H >= 1 for dkernel's per-head rotation.

  Returns:
    Boolean ``(q_len, k_len)``, or ``(num_heads, q_len, k_len)``.

  Example:
    >>> block_sparse_mask(8, block_size=2, local_blocks=1, vertical_stride=2).astype(int)
    array([[1, 0, 0, 0, 0, 0, 0, 0],
           [1, 1, 0, 0, 0, 0, 0, 0],
           [1, 1, 1, 0, 0, 0, 0, 0],
           [1, 1, 1, 1, 0, 0, 0, 0],
           [1, 1, 0, 0, 1, 0, 0, 0],
           [1, 1, 0, 0, 1, 1, 0, 0],
           [1, 1, 0, 0, 1, 1, 1, 0],
           [1, 1, 0, 0, 1, 1, 1, 1]])

  References:
    https://github.com/linxihui/dkernel (``dkernel/utils.py``); LongGen (Ge et al., 2024),
    https://arxiv.org/abs/2410.01485.
  """
  block_size = _validation.check_int("block_size", block_size, lower=1)
  local_blocks = _validation.check_int("local_blocks", local_blocks, lower=1)
  vertical_stride = _validation.check_int("vertical_stride", vertical_stride, lower=1)
  head_offset = _validation.check_int("head_offset", head_offset, lower=0)
  if num_heads is not None:
    num_heads = _validation.check_int("num_heads", num_heads, lower=1)
  p, j = _positions(q_len, k_len, q_offset)
  big_p, big_j = p // block_size, j // block_size
  local = (j <= p) & (big_p - big_j < local_blocks)
  if num_heads is None:
    return local | ((j <= p) & ((big_j + head_offset) % vertical_stride == 0))
  step = max(1, vertical_stride // num_heads)
  offsets = head_offset + step * np.arange(num_heads)[:, None, None]
  return local[None] | ((j <= p)[None] & ((big_j[None] + offsets) % vertical_stride == 0))


PATTERNS = {
    "causal": causal_mask,
    "sliding_window": sliding_window_mask,
    "sink_window": sink_window_mask,
    "block_sparse": block_sparse_mask,
}


def check_mask(name: str, mask: Any) -> np.ndarray:
  """A concrete boolean mask ``(q_len, k_len)`` or ``(heads, q_len, k_len)`` as a NumPy array."""
  if not _validation.is_concrete(mask):
    raise TypeError(f"{name}: must be a concrete boolean array (a pattern is static: build it with "
                    f"jaxdyn.attention's mask functions outside jit), got a tracer")
  if isinstance(mask, (jax.Array, np.ndarray)):
    arr = np.asarray(mask)
  else:
    try:
      arr = np.asarray(mask)
    except (TypeError, ValueError):
      raise TypeError(f"{name}: must be a boolean array, got {type(mask).__name__}") from None
  if arr.dtype != np.bool_:
    raise TypeError(f"{name}: must be a boolean array (True = may attend), got dtype {arr.dtype}")
  _validation.check_ndim(name, arr, (2, 3))
  return arr


def block_layout(mask: Any, block_q: int, block_k: int) -> np.ndarray:
  """Which key blocks each query block reads: (I, J) is listed iff the mask has a True in it.

  L[I, J] = OR over i in [I b_q, (I+1) b_q), j in [J b_k, (J+1) b_k) of M[i, j], the last
  (ragged) blocks padded with False.

  Args:
    mask: boolean ``(q_len, k_len)`` or per-head ``(heads, q_len, k_len)`` (concrete).
    block_q: queries per block (>= 1).
    block_k: keys per block (>= 1).

  Returns:
    Boolean ``(..., ceil(q_len / block_q), ceil(k_len / block_k))``.

  Example:
    >>> block_layout(causal_mask(5), 2, 2).astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
  """
  mask = check_mask("mask", mask)
  block_q = _validation.check_int("block_q", block_q, lower=1)
  block_k = _validation.check_int("block_k", block_k, lower=1)
  *lead, q_len, k_len = mask.shape
  nq, nk = -(-q_len // block_q), -(-k_len // block_k)
  pad = [(0, 0)] * len(lead) + [(0, nq * block_q - q_len), (0, nk * block_k - k_len)]
  padded = np.pad(mask, pad)
  return padded.reshape(*lead, nq, block_q, nk, block_k).any(axis=(-3, -1))


def layout_indices(layout: Any) -> tuple[np.ndarray, np.ndarray]:
  """Each query block's key blocks as a padded list and a count: the kernel's compact layout.

  For row I, ``indices[I, :counts[I]]`` are the J with L[I, J] True, ascending, and
  ``indices[I, counts[I]:] == -1``; the list length is ``max(1, max_I counts[I])``, static.

  Args:
    layout: boolean ``(..., n_q_blocks, n_k_blocks)`` (`block_layout`; concrete).

  Returns:
    ``(indices int32 (..., n_q_blocks, max_k), counts int32 (..., n_q_blocks))``.

  Example:
    >>> idx, cnt = layout_indices(block_layout(causal_mask(5), 2, 2))
    >>> idx.tolist(), cnt.tolist()
    ([[0, -1, -1], [0, 1, -1], [0, 1, 2]], [1, 2, 3])
  """
  layout = check_mask("layout", layout)
  counts = layout.sum(-1).astype(np.int32)
  max_k = max(1, int(counts.max(initial=0)))
  # Stable sort of "not listed" puts the listed blocks first, in ascending order.
  order = np.argsort(~layout, axis=-1, kind="stable")[..., :max_k]
  if order.shape[-1] < max_k:  # no key blocks at all
    order = np.zeros(layout.shape[:-1] + (max_k,), np.int64)
  slot = np.arange(max_k)
  indices = np.where(slot < counts[..., None], order, -1).astype(np.int32)
  return indices, counts
