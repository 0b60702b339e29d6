"""Block-sparse flash attention: a Pallas kernel (forward and backward) and a blockwise jnp path.

For a query row i with allowed keys A_i (the mask's True entries) and scale c = 1/sqrt(d),

  s_ij = c q_i . k_j,   p_ij = exp(s_ij - lse_i) [j in A_i],   lse_i = log sum_{j in A_i} exp(s_ij),
  o_i = sum_j p_ij v_j,

and o_i = 0 for a row whose A_i is empty (the dense softmax would be 0/0; this is where
``jax.nn.dot_product_attention``, which masks with a large finite negative, averages all keys).
An allowed score of -inf (from a non-finite input, or an overflow) is made NaN, like +inf and NaN
scores, so a non-finite q, k or v shows as NaN in the rows that read it (exp(-inf) = 0 would drop
the key silently); no input is checked for finiteness, so this holds under ``jit`` too.

Forward kernel (FlashAttention-2's loop), one program per (batch, head, query block I), over only the
key blocks J that the layout lists for I (`jaxdyn.attention.layout_indices`), with the element mask
inside each block applied exactly:

  m' = max(m, max_j s_ij),  l' = e^(m - m') l + sum_j e^(s_ij - m'),  acc' = e^(m - m') acc + sum_j e^(s_ij - m') v_j,

then o = acc / l and lse = m + log l are written; no score matrix larger than one
``(block_q, block_k)`` tile exists at any time.

Backward (custom VJP), with delta_i = sum_d dO_id O_id and the probabilities recomputed blockwise
from the saved lse:

  dP = dO V^T,  dS = P * (dP - delta),  dQ = c dS K,  dK = c dS^T Q,  dV = P^T dO,

as two Pallas kernels: dQ over (batch, head, query block) looping over the layout's key blocks, and
dK, dV over (batch, head, key block) looping over the query blocks that read it (the transposed
layout). Ragged sequences are zero-padded to whole blocks; padded keys are masked and padded query
rows are empty, and both are cut off the result.

The ``"jnp"`` implementation gathers each query block's listed key blocks (``(batch, heads, n_q_blocks,
block_q, max_k block_k)`` scores, proportional to the sparse work, not to q_len k_len) and takes one
masked softmax over them; autodiff gives its gradients. It is the path a model uses where Pallas
cannot run, and the one the kernel is tested against, with `dense_masked_attention` the reference.

The pattern is data, so any boolean mask works (per head too): the layout's index lists, and for
each listed tile the id of its element mask in one table of distinct int8 ``(block_q, block_k)``
masks, go into the kernels as inputs, in both orientations. A causal or sink + window pattern has a
handful of distinct tiles at any length, so the plan costs int32 per listed tile, not a byte per
visited score.

Off GPU/TPU the kernels run in Pallas interpret mode (the only mode on CPU), which is much slower than
the jnp path there. The kernel is written GPU-style (a dynamic loop over key blocks of the whole
per-head K, V in the program, dynamic slices ``pl.ds``) and compiles on GPU through Pallas's Triton
lowering (`jaxdyn._pallas.call_options`; the tests lower it for CUDA on CPU, which catches any
operation Triton has no rule for). Block sizes and the head dimension must be powers of two, and at
least 16 on GPU (Triton's matmul); see below for the shared memory that bounds the blocks. On TPU it would put a head's whole K and V in VMEM (no pipelined
key blocks through scalar prefetch); it has not been compiled for a TPU.

Measured on one NVIDIA H200 (jax 0.11.2, 2026-11-30, ``benchmarks/gpu_kernels.py``):

- Correctness, compiled, length 1,000 (ragged for every block size), 5 heads of different patterns
  (causal, sliding, sink + window, dkernel block-sparse, an arbitrary mask with empty rows), head
  dim 64, batch 2; max abs error over the reference's max abs, output and dq, dk, dv:
  float32 ``precision="highest"``, blocks (64, 64), (32, 64), (128, 32): <= 5.4e-7;
  float32 ``"default"`` (TF32): <= 7.8e-4; bfloat16 inputs (against the reference on the same
  rounded inputs): <= 3.8e-3. Empty rows are 0, every output finite.
- Forward + backward, bfloat16, batch 1, 8 heads, head dim 64, 64 x 64 blocks; sink + window is 64
  sink tokens and a 1,024 window; milliseconds (compiled temp memory):

  ======  ==================  ==================  ====================  ================  ===============
  L       sparse, this kernel  sparse, jnp path    full causal, cuDNN    full causal, XLA  full causal,
                                                   flash attention                         this kernel
  ======  ==================  ==================  ====================  ================  ===============
  4,096   0.47 (0.3 MiB)       1.60 (864 MiB)      0.54 (12 MiB)         1.97 (1.3 GiB)    0.67
  16,384  1.39 (1 MiB)         4.87 (3.4 GiB)      2.61 (49 MiB)         27.7 (20 GiB)     5.43
  32,768  2.39 (2 MiB)         9.41 (6.8 GiB)      9.39 (98 MiB)         -                 -
  ======  ==================  ==================  ====================  ================  ===============

  Sparse attention grows linearly, 3.9x faster than cuDNN's full causal attention at 32k; on the full
  causal mask the kernel is about 2x slower than cuDNN (a plain Triton loop, no warp specialisation).
- Precision and blocks (sink + window at 4,096, 4 heads, forward + backward): float32 at
  ``"default"`` (TF32) 0.75 ms, bfloat16 0.43 ms, float32 at ``"highest"`` 30 ms: Triton's exact
  float32 matmul is 40x slower, for checking rather than training. Blocks of 32 or 64 fit; 128 x 128
  in float32 asks the backward kernels for more shared memory than an H200 has (247 KB > 232 KB, a
  RESOURCE_EXHAUSTED error at run time); bfloat16 128 x 64 fits.
- In a model: a training step of a LongGen hybrid `jaxdyn.models.Transformer` (6 layers, the middle 2
  full, dim 256, 4 heads, float32, batch 1) with its 4 sparse layers on this kernel
  (`sink_window_attention`'s whole-sequence path) against the same layers dense and masked: 7.3 against
  9.6 ms and 1.6 against 4.0 GiB at 4,096 tokens, 50 against 108 ms and 21 against 58 GiB at 16,384
  (the full layers stay dense); loss within 1e-5, gradients within 8e-4 relative (TF32 on both sides).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.typing import ArrayLike

from jaxdyn import _pallas, _validation
from jaxdyn.attention._patterns import block_layout, check_mask, layout_indices

__all__ = ["IMPLEMENTATIONS", "PRECISIONS", "block_sparse_attention", "dense_masked_attention"]

IMPLEMENTATIONS = ("pallas", "jnp")
PRECISIONS = {"highest": jax.lax.Precision.HIGHEST, "default": jax.lax.Precision.DEFAULT}
_F32 = jnp.float32
_NN = (((1,), (0,)), ((), ()))  # a @ b
_NT = (((1,), (1,)), ((), ()))  # a @ b.T
_TN = (((0,), (0,)), ((), ()))  # a.T @ b


def _check_qkv(q, k, v) -> tuple[jax.Array, jax.Array, jax.Array]:
  arrays = []
  for name, x in (("q", q), ("k", k), ("v", v)):
    x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)
            or x.dtype == jnp.bool_):
      raise TypeError(f"{name}: must be a real floating array, got dtype {x.dtype}")
    _validation.check_ndim(name, x, 4)
    arrays.append(x)
  q, k, v = arrays
  if k.shape != v.shape:
    raise ValueError(f"v: must have the shape of k (batch, k_len, heads, head_dim), got {v.shape} and {k.shape}")
  if (q.shape[0], q.shape[2], q.shape[3]) != (k.shape[0], k.shape[2], k.shape[3]):
    raise ValueError(f"k: must match q's batch, heads and head_dim (shapes (batch, seq, heads, head_dim)), "
                     f"got q {q.shape} and k {k.shape}")
  dtype = jnp.result_type(q, k, v)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.result_type(float)
  return q.astype(dtype), k.astype(dtype), v.astype(dtype)


def _check_attention_mask(mask, q, k) -> np.ndarray:
  heads, q_len, k_len = q.shape[2], q.shape[1], k.shape[1]
  if mask is None:
    return np.ones((q_len, k_len), bool)
  mask = check_mask("mask", mask)
  if mask.shape[-2:] != (q_len, k_len) or (mask.ndim == 3 and mask.shape[0] not in (1, heads)):
    raise ValueError(f"mask: must have shape (q_len, k_len) = {(q_len, k_len)} or (heads, q_len, k_len) with "
                     f"heads in (1, {heads}), got {mask.shape}")
  return mask


def _scale(scale, head_dim: int) -> float:
  if scale is None:
    return 1.0 / math.sqrt(head_dim) if head_dim else 1.0
  return _validation.check_real("scale", scale, lower=0.0, lower_open=True)


def _no_minus_inf(s: jax.Array) -> jax.Array:
  """A score of -inf (a non-finite input or an overflow) becomes NaN, so that it shows in the output.

  Left alone, exp(-inf) = 0 would drop the key silently and give a finite, wrong-looking result.
  """
  return jnp.where(s == -jnp.inf, jnp.nan, s)


def _masked_softmax(s: jax.Array, allowed: jax.Array) -> jax.Array:
  """softmax over the last axis restricted to ``allowed``; rows with no allowed entry give 0."""
  empty = ~allowed.any(-1, keepdims=True)
  s = jnp.where(allowed, _no_minus_inf(s), -jnp.inf)
  m = jax.lax.stop_gradient(jnp.where(empty, 0.0, s.max(-1, keepdims=True)))
  p = jnp.exp(s - m)
  l = p.sum(-1, keepdims=True)
  return jnp.where(empty, 0.0, p / jnp.where(empty, 1.0, l))


def dense_masked_attention(q: ArrayLike, k: ArrayLike, v: ArrayLike, mask: ArrayLike | None = None, *,
                           scale: float | None = None) -> jax.Array:
  """The dense reference: softmax over the allowed keys, a full ``(q_len, k_len)`` score matrix.

  o_i = sum_j softmax_j(c q_i . k_j + log M_ij) v_j (log 0 = -inf), c = ``scale`` (1/sqrt(head_dim)
  by default); a query row with no allowed key gives 0. Computed in float32, returned in the
  inputs' dtype.

  Args:
    q: queries ``(batch, q_len, heads, head_dim)`` (``jax.nn.dot_product_attention``'s layout).
    k: keys ``(batch, k_len, heads, head_dim)``.
    v: values, the shape of ``k``.
    mask: boolean ``(q_len, k_len)`` or per-head ``(heads, q_len, k_len)``, True = may attend;
      None: every key (no mask).
    scale: the score scale c > 0; None for 1/sqrt(head_dim).

  Returns:
    ``(batch, q_len, heads, head_dim)``: 0 in rows with no allowed key, NaN in rows that read a
    non-finite input (as `block_sparse_attention`).

  Example:
    >>> from jaxdyn.attention import causal_mask
    >>> q = jnp.ones((1, 3, 1, 2)); v = jnp.arange(3.0).reshape(1, 3, 1, 1) * jnp.ones(2)
    >>> dense_masked_attention(q, q, v, causal_mask(3))[0, :, 0, 0].tolist()
    [0.0, 0.5, 1.0]
  """
  q, k, v = _check_qkv(q, k, v)
  mask = _check_attention_mask(mask, q, k)
  c = _scale(scale, q.shape[-1])
  s = jnp.einsum("bqhd,bkhd->bhqk", q.astype(_F32), k.astype(_F32), precision=jax.lax.Precision.HIGHEST) * c
  allowed = jnp.broadcast_to(jnp.asarray(mask if mask.ndim == 3 else mask[None])[None], s.shape)
  w = _masked_softmax(s, allowed)
  return jnp.einsum("bhqk,bkhd->bqhd", w, v.astype(_F32), precision=jax.lax.Precision.HIGHEST).astype(q.dtype)


# --- the static plan: layout, indices, per-block element masks ------------------------------------

def _round_block(block: int, length: int) -> int:
  """The block, shrunk to the next power of two >= length for a short sequence."""
  return max(1, min(block, 1 << max(length - 1, 0).bit_length()))


EMPTY_TILE, FULL_TILE = 0, 1  # the tile table's first two entries


def _plan(mask: np.ndarray, block_q: int, block_k: int):
  """NumPy: per orientation (indices, counts, tile ids), and the shared table of tile masks.

  Each listed (query block, key block) tile's element mask is an entry of one table of distinct
  ``(block_q, block_k)`` int8 masks (entry 0 all False, 1 all True), so the plan's size grows with the
  number of listed tiles (int32 ids), not with their elements: a causal or sink + window pattern has a
  handful of distinct tiles whatever the length. Unlisted slots hold index -1 and tile 0.
  """
  mask3 = mask if mask.ndim == 3 else mask[None]
  layout = block_layout(mask3, block_q, block_k)
  hm, nq, nk = layout.shape
  q_len, k_len = mask3.shape[1:]
  if (q_len, k_len) != (nq * block_q, nk * block_k):
    mask3 = np.pad(mask3, [(0, 0), (0, nq * block_q - q_len), (0, nk * block_k - k_len)])
  view = mask3.reshape(hm, nq, block_q, nk, block_k)
  h, i, j = np.nonzero(layout)
  tiles = view[h, i, :, j, :]  # (listed, block_q, block_k): only the tiles the layout lists
  full = tiles.all(axis=(1, 2))
  partial, inverse = np.unique(tiles[~full].reshape(-1, block_q * block_k), axis=0, return_inverse=True)
  ids = np.full(layout.shape, EMPTY_TILE, np.int32)
  ids[h[full], i[full], j[full]] = FULL_TILE
  ids[h[~full], i[~full], j[~full]] = 2 + inverse.reshape(-1)
  table = np.concatenate([np.zeros((1, block_q, block_k), np.int8), np.ones((1, block_q, block_k), np.int8),
                          partial.reshape(-1, block_q, block_k).astype(np.int8)])

  def orient(lay, tile_ids):
    idx, cnt = layout_indices(lay)
    tid = np.take_along_axis(tile_ids, np.maximum(idx, 0), axis=2)
    return idx, cnt, np.where(idx >= 0, tid, EMPTY_TILE).astype(np.int32)

  return orient(layout, ids), orient(layout.transpose(0, 2, 1), ids.transpose(0, 2, 1)), table


# --- Pallas kernels --------------------------------------------------------------------------------

def _dot(a, b, dims, precision):
  """a . b over ``dims`` (`jax.lax.dot_general` numbers), accumulated in float32."""
  return jax.lax.dot_general(a, b, dims, precision=precision, preferred_element_type=_F32)


def _forward_kernel(scale: float, block_k: int, precision):
  def kernel(q_ref, k_ref, v_ref, idx_ref, cnt_ref, tid_ref, tab_ref, o_ref, lse_ref):
    q = q_ref[...]
    block_q = q.shape[0]

    def body(t, carry):
      m, l, acc, seen = carry
      start = idx_ref[t] * block_k
      kb = k_ref[pl.ds(start, block_k), :]
      vb = v_ref[pl.ds(start, block_k), :]
      allowed = tab_ref[tid_ref[t]] != 0
      s = _dot(q, kb, _NT, precision) * scale
      s = jnp.where(allowed, _no_minus_inf(s), -jnp.inf)
      m_new = jnp.maximum(m, s.max(axis=1))
      m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)
      p = jnp.exp(s - m_safe[:, None])
      alpha = jnp.exp(m - m_safe)
      l = alpha * l + p.sum(axis=1)
      acc = alpha[:, None] * acc + _dot(p.astype(vb.dtype), vb, _NN, precision)
      # "any allowed key in the row" as a float max: Triton has no boolean reduction.
      return m_new, l, acc, jnp.maximum(seen, jnp.where(allowed, 1.0, 0.0).max(axis=1))

    init = (jnp.full((block_q,), -jnp.inf, _F32), jnp.zeros((block_q,), _F32),
            jnp.zeros(q.shape, _F32), jnp.zeros((block_q,), _F32))
    m, l, acc, seen = jax.lax.fori_loop(0, cnt_ref[0], body, init)
    seen = seen > 0
    o_ref[...] = jnp.where(seen[:, None], acc / jnp.where(seen, l, 1.0)[:, None], 0.0).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(seen, m + jnp.log(l), jnp.inf)

  return kernel


def _dq_kernel(scale: float, block_k: int, precision):
  def kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, idx_ref, cnt_ref, tid_ref, tab_ref, dq_ref):
    q = q_ref[...]
    do = do_ref[...]
    lse, delta = lse_ref[...], delta_ref[...]

    def body(t, dq):
      start = idx_ref[t] * block_k
      kb = k_ref[pl.ds(start, block_k), :]
      vb = v_ref[pl.ds(start, block_k), :]
      s = _dot(q, kb, _NT, precision) * scale
      p = jnp.where(tab_ref[tid_ref[t]] != 0, jnp.exp(s - lse[:, None]), 0.0)
      dp = _dot(do, vb, _NT, precision)
      ds = p * (dp - delta[:, None])
      return dq + _dot(ds.astype(kb.dtype), kb, _NN, precision)

    dq = jax.lax.fori_loop(0, cnt_ref[0], body, jnp.zeros(q.shape, _F32))
    dq_ref[...] = (dq * scale).astype(dq_ref.dtype)

  return kernel


def _dkv_kernel(scale: float, block_q: int, precision):
  def kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, idx_ref, cnt_ref, tid_ref, tab_ref, dk_ref,
             dv_ref):
    kb = k_ref[...]
    vb = v_ref[...]

    def body(t, carry):
      dk, dv = carry
      start = idx_ref[t] * block_q
      qb = q_ref[pl.ds(start, block_q), :]
      dob = do_ref[pl.ds(start, block_q), :]
      lse = lse_ref[pl.ds(start, block_q)]
      delta = delta_ref[pl.ds(start, block_q)]
      s = _dot(qb, kb, _NT, precision) * scale
      p = jnp.where(tab_ref[tid_ref[t]] != 0, jnp.exp(s - lse[:, None]), 0.0)
      dv = dv + _dot(p.astype(dob.dtype), dob, _TN, precision)
      dp = _dot(dob, vb, _NT, precision)
      ds = p * (dp - delta[:, None])
      return dk + _dot(ds.astype(qb.dtype), qb, _TN, precision), dv

    zeros = jnp.zeros(kb.shape, _F32)
    dk, dv = jax.lax.fori_loop(0, cnt_ref[0], body, (zeros, zeros))
    dk_ref[...] = (dk * scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)

  return kernel


@functools.lru_cache(maxsize=None)
def _build(batch: int, heads: int, q_pad: int, k_pad: int, head_dim: int, dtype, block_q: int, block_k: int,
           max_k: int, max_q: int, n_tiles: int, per_head: bool, scale: float, precision, target: str):
  nq, nk = q_pad // block_q, k_pad // block_k
  call = functools.partial(pl.pallas_call, **_pallas.call_options(target))
  mh = (lambda h: h) if per_head else (lambda h: 0)

  def rows(block, length):  # one block of rows of a (batch, length, heads, head_dim) array
    return pl.BlockSpec((None, block, None, head_dim), lambda b, h, i: (b, i, h, 0))

  whole_q = pl.BlockSpec((None, q_pad, None, head_dim), lambda b, h, i: (b, 0, h, 0))
  whole_k = pl.BlockSpec((None, k_pad, None, head_dim), lambda b, h, i: (b, 0, h, 0))
  vec_q = pl.BlockSpec((None, None, block_q), lambda b, h, i: (b, h, i))
  whole_vec_q = pl.BlockSpec((None, None, q_pad), lambda b, h, i: (b, h, 0))

  def layout_specs(slots):  # this block's key (query) block list, its count, tile ids; the tile table
    return [pl.BlockSpec((None, None, slots), lambda b, h, i: (mh(h), i, 0)),
            pl.BlockSpec((None, None, 1), lambda b, h, i: (mh(h), i, 0)),
            pl.BlockSpec((None, None, slots), lambda b, h, i: (mh(h), i, 0)),
            pl.BlockSpec((n_tiles, block_q, block_k), lambda b, h, i: (0, 0, 0))]

  qkv = jax.ShapeDtypeStruct
  q_shape, k_shape = qkv((batch, q_pad, heads, head_dim), dtype), qkv((batch, k_pad, heads, head_dim), dtype)
  lse_shape = qkv((batch, heads, q_pad), _F32)
  forward = call(
      _forward_kernel(scale, block_k, precision), grid=(batch, heads, nq),
      in_specs=[rows(block_q, q_pad), whole_k, whole_k, *layout_specs(max_k)],
      out_specs=[rows(block_q, q_pad), vec_q], out_shape=[q_shape, lse_shape])
  dq_call = call(
      _dq_kernel(scale, block_k, precision), grid=(batch, heads, nq),
      in_specs=[rows(block_q, q_pad), whole_k, whole_k, rows(block_q, q_pad), vec_q, vec_q,
                *layout_specs(max_k)],
      out_specs=rows(block_q, q_pad), out_shape=q_shape)
  dkv_call = call(
      _dkv_kernel(scale, block_q, precision), grid=(batch, heads, nk),
      in_specs=[whole_q, rows(block_k, k_pad), rows(block_k, k_pad), whole_q, whole_vec_q, whole_vec_q,
                *layout_specs(max_q)],
      out_specs=[rows(block_k, k_pad), rows(block_k, k_pad)], out_shape=[k_shape, k_shape])

  @jax.custom_vjp
  def attend(q, k, v, fwd_plan, bwd_plan, table):
    return forward(q, k, v, *fwd_plan, table)[0]

  def attend_fwd(q, k, v, fwd_plan, bwd_plan, table):
    o, lse = forward(q, k, v, *fwd_plan, table)
    return o, (q, k, v, o, lse, fwd_plan, bwd_plan, table)

  def attend_bwd(res, do):
    q, k, v, o, lse, fwd_plan, bwd_plan, table = res
    delta = jnp.swapaxes(jnp.sum(do.astype(_F32) * o.astype(_F32), axis=-1), 1, 2)  # (batch, heads, q_pad)
    dq = dq_call(q, k, v, do, lse, delta, *fwd_plan, table)
    dk, dv = dkv_call(q, k, v, do, lse, delta, *bwd_plan, table)
    return dq, dk, dv, None, None, None

  attend.defvjp(attend_fwd, attend_bwd)
  return attend


def _jnp_blockwise(q, k, v, plan, table, block_q, block_k, scale, precision):
  """Gathered key blocks per query block, one masked softmax: (batch, q_pad, heads, head_dim), f32."""
  idx, _, tid = plan  # (hm, nq, max_k) each
  bm = table[tid]  # (hm, nq, max_k, bq, bk): the gathered scores' element mask (tile 0 where unlisted)
  batch, q_pad, heads, d = q.shape
  nq, max_k = idx.shape[1:]
  nk = k.shape[1] // block_k
  idx = np.broadcast_to(np.maximum(idx, 0), (heads, nq, max_k))
  qb = q.astype(_F32).reshape(batch, nq, block_q, heads, d)
  kb = k.astype(_F32).reshape(batch, nk, block_k, heads, d)
  vb = v.astype(_F32).reshape(batch, nk, block_k, heads, d)
  hh = np.arange(heads)[:, None, None]
  kh = jnp.transpose(kb, (0, 3, 1, 2, 4))  # (batch, heads, nk, block_k, d)
  vh = jnp.transpose(vb, (0, 3, 1, 2, 4))
  kg = kh[:, hh, idx].reshape(batch, heads, nq, max_k * block_k, d)
  vg = vh[:, hh, idx].reshape(batch, heads, nq, max_k * block_k, d)
  s = jnp.einsum("bnqhd,bhnkd->bhnqk", qb, kg, precision=precision) * scale
  allowed = jnp.asarray(bm.transpose(0, 1, 3, 2, 4).reshape(-1, nq, block_q, max_k * block_k) != 0)
  w = _masked_softmax(s, jnp.broadcast_to(allowed[None], s.shape))
  out = jnp.einsum("bhnqk,bhnkd->bnqhd", w, vg, precision=precision)
  return out.reshape(batch, q_pad, heads, d)


def block_sparse_attention(q: ArrayLike, k: ArrayLike, v: ArrayLike, mask: ArrayLike | None = None, *,
                           block_q: int = 64, block_k: int = 64, scale: float | None = None,
                           implementation: str = "pallas", interpret: bool | None = None,
                           precision: str = "default") -> jax.Array:
  """Masked attention that visits only the key blocks the mask touches (flash-attention style).

  Equals `dense_masked_attention` (values and gradients): o_i = sum_{j in A_i} softmax(c q_i . k_j) v_j
  over the mask's allowed keys A_i, 0 for an empty row. The mask is reduced to a block layout
  (`block_layout`); each query block runs an online softmax over its listed key blocks only, with the
  element mask applied exactly inside a block (see the module docstring for the recursions).

  Args:
    q: queries ``(batch, q_len, heads, head_dim)`` (``jax.nn.dot_product_attention``'s layout).
    k: keys ``(batch, k_len, heads, head_dim)``.
    v: values, the shape of ``k``.
    mask: concrete boolean ``(q_len, k_len)`` or per-head ``(heads, q_len, k_len)`` (the pattern is
      static: build it with `causal_mask`, `sink_window_mask`, ... outside ``jit``); None: all keys.
    block_q: queries per block (>= 1; shrunk for a short sequence; a power of two on GPU).
    block_k: keys per block (>= 1; as ``block_q``).
    scale: the score scale c > 0; None for 1/sqrt(head_dim).
    implementation: ``"pallas"`` (the kernel, with a Pallas backward in a ``custom_vjp``) or
      ``"jnp"`` (gathered blocks and one masked softmax, autodiff gradients; the model's path where
      Pallas cannot run).
    interpret: Pallas interpret mode; None chooses it off GPU/TPU (the only mode that runs on CPU).
      On a GPU the kernels compile through Pallas's Triton lowering.
    precision: the matmuls' precision (`PRECISIONS`): ``"default"``, JAX's default matmul precision
      (exact float32 on CPU, TF32 for float32 on NVIDIA GPUs: about 1e-3 relative), or
      ``"highest"`` (float32 multiplies in full float32 everywhere, as the reference; on an H200
      40x slower). Scores and the softmax are float32 either way; bfloat16 and float16 inputs
      multiply in their own dtype with float32 accumulation.

  Returns:
    ``(batch, q_len, heads, head_dim)`` in the inputs' dtype (computed in float32; integer inputs
    become the default float); 0 in rows with no allowed key, NaN in rows that read a non-finite
    input; an empty batch, sequence or head axis gives zeros of that shape without a kernel launch.

  Example:
    >>> from jaxdyn.attention import sink_window_mask
    >>> q = jax.random.normal(jax.random.key(0), (1, 8, 1, 4))
    >>> mask = sink_window_mask(8, sink=1, window=2)
    >>> out = block_sparse_attention(q, q, q, mask, block_q=4, block_k=4)
    >>> bool(jnp.allclose(out, dense_masked_attention(q, q, q, mask), atol=1e-6))
    True

  References:
    Dao, "FlashAttention-2", 2023, https://arxiv.org/abs/2307.08691 (the loops); block-sparse
    layout as in https://github.com/linxihui/dkernel; LongGen (Ge et al., 2024),
    https://arxiv.org/abs/2410.01485.
  """
  q, k, v = _check_qkv(q, k, v)
  mask = _check_attention_mask(mask, q, k)
  block_q = _validation.check_int("block_q", block_q, lower=1)
  block_k = _validation.check_int("block_k", block_k, lower=1)
  c = _scale(scale, q.shape[-1])
  _validation.check_choice("implementation", implementation, IMPLEMENTATIONS)
  prec = PRECISIONS[_validation.check_choice("precision", precision, tuple(PRECISIONS))]
  if interpret is not None and not isinstance(interpret, (bool, np.bool_)):
    raise TypeError(f"interpret: must be None or a bool, got {interpret!r}")
  batch, q_len, heads, d = q.shape
  k_len = k.shape[1]
  if 0 in (batch, q_len, heads, d, k_len):  # nothing to attend: zeros, without launching a kernel
    return jnp.zeros(q.shape, q.dtype)
  bq, bk = _round_block(block_q, q_len), _round_block(block_k, k_len)
  fwd_plan, bwd_plan, table = _plan(mask, bq, bk)
  q_pad, k_pad = -(-q_len // bq) * bq, -(-k_len // bk) * bk
  qp = jnp.pad(q, ((0, 0), (0, q_pad - q_len), (0, 0), (0, 0)))
  kp = jnp.pad(k, ((0, 0), (0, k_pad - k_len), (0, 0), (0, 0)))
  vp = jnp.pad(v, ((0, 0), (0, k_pad - k_len), (0, 0), (0, 0)))
  if implementation == "jnp":
    return _jnp_blockwise(qp, kp, vp, fwd_plan, table, bq, bk, c, prec)[:, :q_len].astype(q.dtype)
  run = _build(batch, heads, q_pad, k_pad, d, jnp.dtype(q.dtype), bq, bk, fwd_plan[0].shape[-1],
               bwd_plan[0].shape[-1], len(table), fwd_plan[0].shape[0] > 1, c, prec, _pallas.target(interpret))
  fwd_plan = tuple(jnp.asarray(a) for a in (fwd_plan[0], fwd_plan[1][..., None], fwd_plan[2]))
  bwd_plan = tuple(jnp.asarray(a) for a in (bwd_plan[0], bwd_plan[1][..., None], bwd_plan[2]))
  return run(qp, kp, vp, fwd_plan, bwd_plan, jnp.asarray(table))[:, :q_len]
