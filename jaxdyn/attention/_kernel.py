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

The pattern is data, so any boolean mask works (per head too): the layout's index lists and, for
each listed tile, its element mask as int8 ``(n_q_blocks, max_k, block_q, block_k)`` (as many
entries as there are visited scores) go into the kernels as inputs, in both orientations.

Off GPU/TPU the kernels run in Pallas interpret mode (the only mode on CPU), which is much slower than
the jnp path there. The kernel is written GPU-style (Triton: a dynamic loop over key blocks of the
whole per-head K, V in the program, dynamic slices ``pl.ds``), for which block sizes and the head
dimension should be powers of two; on TPU that puts a head's whole K and V in VMEM (no pipelined key
blocks through scalar prefetch). It has been run in interpret mode only, not compiled for a GPU or TPU.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn.attention._patterns import block_layout, check_mask, layout_indices

__all__ = ["IMPLEMENTATIONS", "block_sparse_attention", "dense_masked_attention"]

IMPLEMENTATIONS = ("pallas", "jnp")
_F32 = jnp.float32
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


def _plan(mask: np.ndarray, block_q: int, block_k: int):
  """NumPy: indices/counts and (n, max, block_q, block_k) int8 element masks, both orientations."""
  mask3 = mask if mask.ndim == 3 else mask[None]
  layout = block_layout(mask3, block_q, block_k)
  hm, nq, nk = layout.shape
  padded = np.pad(mask3, [(0, 0), (0, nq * block_q - mask3.shape[1]), (0, nk * block_k - mask3.shape[2])])
  tiles = padded.reshape(hm, nq, block_q, nk, block_k).transpose(0, 1, 3, 2, 4)  # (hm, nq, nk, bq, bk)

  def gather(tiles_rows, lay):
    idx, cnt = layout_indices(lay)
    rows = np.take_along_axis(tiles_rows, np.maximum(idx, 0)[..., None, None], axis=2)
    rows = rows & (idx >= 0)[..., None, None]
    return idx, cnt, rows.astype(np.int8)

  idx, cnt, bm = gather(tiles, layout)
  idx_t, cnt_t, bm_t = gather(tiles.transpose(0, 2, 1, 3, 4), layout.transpose(0, 2, 1))
  return (idx, cnt, bm), (idx_t, cnt_t, bm_t)


# --- Pallas kernels --------------------------------------------------------------------------------

def _forward_kernel(scale: float, block_k: int):
  def kernel(q_ref, k_ref, v_ref, idx_ref, cnt_ref, bm_ref, o_ref, lse_ref):
    q = q_ref[...].astype(_F32)
    block_q = q.shape[0]

    def body(t, carry):
      m, l, acc, seen = carry
      start = idx_ref[t] * block_k
      kb = k_ref[pl.ds(start, block_k), :].astype(_F32)
      vb = v_ref[pl.ds(start, block_k), :].astype(_F32)
      allowed = bm_ref[t] != 0
      s = jax.lax.dot_general(q, kb, _NT, preferred_element_type=_F32) * scale
      s = jnp.where(allowed, _no_minus_inf(s), -jnp.inf)
      m_new = jnp.maximum(m, s.max(axis=1))
      m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)
      p = jnp.exp(s - m_safe[:, None])
      alpha = jnp.exp(m - m_safe)
      l = alpha * l + p.sum(axis=1)
      acc = alpha[:, None] * acc + jax.lax.dot(p, vb, preferred_element_type=_F32)
      return m_new, l, acc, seen | allowed.any(axis=1)

    init = (jnp.full((block_q,), -jnp.inf, _F32), jnp.zeros((block_q,), _F32),
            jnp.zeros(q.shape, _F32), jnp.zeros((block_q,), jnp.bool_))
    m, l, acc, seen = jax.lax.fori_loop(0, cnt_ref[0], body, init)
    o_ref[...] = jnp.where(seen[:, None], acc / jnp.where(seen, l, 1.0)[:, None], 0.0).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(seen, m + jnp.log(l), jnp.inf)

  return kernel


def _dq_kernel(scale: float, block_k: int):
  def kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, idx_ref, cnt_ref, bm_ref, dq_ref):
    q = q_ref[...].astype(_F32)
    do = do_ref[...].astype(_F32)
    lse, delta = lse_ref[...], delta_ref[...]

    def body(t, dq):
      start = idx_ref[t] * block_k
      kb = k_ref[pl.ds(start, block_k), :].astype(_F32)
      vb = v_ref[pl.ds(start, block_k), :].astype(_F32)
      s = jax.lax.dot_general(q, kb, _NT, preferred_element_type=_F32) * scale
      p = jnp.where(bm_ref[t] != 0, jnp.exp(s - lse[:, None]), 0.0)
      dp = jax.lax.dot_general(do, vb, _NT, preferred_element_type=_F32)
      ds = p * (dp - delta[:, None])
      return dq + jax.lax.dot(ds, kb, preferred_element_type=_F32)

    dq = jax.lax.fori_loop(0, cnt_ref[0], body, jnp.zeros(q.shape, _F32))
    dq_ref[...] = (dq * scale).astype(dq_ref.dtype)

  return kernel


def _dkv_kernel(scale: float, block_q: int):
  def kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, idx_ref, cnt_ref, bm_ref, dk_ref, dv_ref):
    kb = k_ref[...].astype(_F32)
    vb = v_ref[...].astype(_F32)

    def body(t, carry):
      dk, dv = carry
      start = idx_ref[t] * block_q
      qb = q_ref[pl.ds(start, block_q), :].astype(_F32)
      dob = do_ref[pl.ds(start, block_q), :].astype(_F32)
      lse = lse_ref[pl.ds(start, block_q)]
      delta = delta_ref[pl.ds(start, block_q)]
      s = jax.lax.dot_general(qb, kb, _NT, preferred_element_type=_F32) * scale
      p = jnp.where(bm_ref[t] != 0, jnp.exp(s - lse[:, None]), 0.0)
      dv = dv + jax.lax.dot_general(p, dob, _TN, preferred_element_type=_F32)
      dp = jax.lax.dot_general(dob, vb, _NT, preferred_element_type=_F32)
      ds = p * (dp - delta[:, None])
      return dk + jax.lax.dot_general(ds, qb, _TN, preferred_element_type=_F32), dv

    zeros = jnp.zeros(kb.shape, _F32)
    dk, dv = jax.lax.fori_loop(0, cnt_ref[0], body, (zeros, zeros))
    dk_ref[...] = (dk * scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)

  return kernel


@functools.lru_cache(maxsize=None)
def _build(batch: int, heads: int, q_pad: int, k_pad: int, head_dim: int, dtype, block_q: int, block_k: int,
           max_k: int, max_q: int, per_head: bool, scale: float, interpret: bool):
  nq, nk = q_pad // block_q, k_pad // block_k
  mh = (lambda h: h) if per_head else (lambda h: 0)

  def rows(block, length):  # one block of rows of a (batch, length, heads, head_dim) array
    return pl.BlockSpec((None, block, None, head_dim), lambda b, h, i: (b, i, h, 0))

  whole_q = pl.BlockSpec((None, q_pad, None, head_dim), lambda b, h, i: (b, 0, h, 0))
  whole_k = pl.BlockSpec((None, k_pad, None, head_dim), lambda b, h, i: (b, 0, h, 0))
  vec_q = pl.BlockSpec((None, None, block_q), lambda b, h, i: (b, h, i))
  whole_vec_q = pl.BlockSpec((None, None, q_pad), lambda b, h, i: (b, h, 0))

  def layout_specs(slots, bq, bk):
    return [pl.BlockSpec((None, None, slots), lambda b, h, i: (mh(h), i, 0)),
            pl.BlockSpec((None, None, 1), lambda b, h, i: (mh(h), i, 0)),
            pl.BlockSpec((None, None, slots, bq, bk), lambda b, h, i: (mh(h), i, 0, 0, 0))]

  qkv = jax.ShapeDtypeStruct
  q_shape, k_shape = qkv((batch, q_pad, heads, head_dim), dtype), qkv((batch, k_pad, heads, head_dim), dtype)
  lse_shape = qkv((batch, heads, q_pad), _F32)
  forward = pl.pallas_call(
      _forward_kernel(scale, block_k), grid=(batch, heads, nq),
      in_specs=[rows(block_q, q_pad), whole_k, whole_k, *layout_specs(max_k, block_q, block_k)],
      out_specs=[rows(block_q, q_pad), vec_q], out_shape=[q_shape, lse_shape], interpret=interpret)
  dq_call = pl.pallas_call(
      _dq_kernel(scale, block_k), grid=(batch, heads, nq),
      in_specs=[rows(block_q, q_pad), whole_k, whole_k, rows(block_q, q_pad), vec_q, vec_q,
                *layout_specs(max_k, block_q, block_k)],
      out_specs=rows(block_q, q_pad), out_shape=q_shape, interpret=interpret)
  dkv_call = pl.pallas_call(
      _dkv_kernel(scale, block_q), grid=(batch, heads, nk),
      in_specs=[whole_q, rows(block_k, k_pad), rows(block_k, k_pad), whole_q, whole_vec_q, whole_vec_q,
                *layout_specs(max_q, block_q, block_k)],
      out_specs=[rows(block_k, k_pad), rows(block_k, k_pad)], out_shape=[k_shape, k_shape],
      interpret=interpret)

  @jax.custom_vjp
  def attend(q, k, v, fwd_plan, bwd_plan):
    return forward(q, k, v, *fwd_plan)[0]

  def attend_fwd(q, k, v, fwd_plan, bwd_plan):
    o, lse = forward(q, k, v, *fwd_plan)
    return o, (q, k, v, o, lse, fwd_plan, bwd_plan)

  def attend_bwd(res, do):
    q, k, v, o, lse, fwd_plan, bwd_plan = res
    delta = jnp.swapaxes(jnp.sum(do.astype(_F32) * o.astype(_F32), axis=-1), 1, 2)  # (batch, heads, q_pad)
    dq = dq_call(q, k, v, do, lse, delta, *fwd_plan)
    dk, dv = dkv_call(q, k, v, do, lse, delta, *bwd_plan)
    return dq, dk, dv, None, None

  attend.defvjp(attend_fwd, attend_bwd)
  return attend


def _jnp_blockwise(q, k, v, plan, block_q, block_k, scale):
  """Gathered key blocks per query block, one masked softmax: (batch, q_pad, heads, head_dim), f32."""
  idx, _, bm = plan  # (hm, nq, max_k), (hm, nq, max_k, bq, bk)
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
  s = jnp.einsum("bnqhd,bhnkd->bhnqk", qb, kg, precision=jax.lax.Precision.HIGHEST) * scale
  allowed = jnp.asarray(bm.transpose(0, 1, 3, 2, 4).reshape(-1, nq, block_q, max_k * block_k) != 0)
  w = _masked_softmax(s, jnp.broadcast_to(allowed[None], s.shape))
  out = jnp.einsum("bhnqk,bhnkd->bnqhd", w, vg, precision=jax.lax.Precision.HIGHEST)
  return out.reshape(batch, q_pad, heads, d)


def block_sparse_attention(q: ArrayLike, k: ArrayLike, v: ArrayLike, mask: ArrayLike | None = None, *,
                           block_q: int = 64, block_k: int = 64, scale: float | None = None,
                           implementation: str = "pallas", interpret: bool | None = None) -> jax.Array:
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
  if interpret is not None and not isinstance(interpret, (bool, np.bool_)):
    raise TypeError(f"interpret: must be None or a bool, got {interpret!r}")
  batch, q_len, heads, d = q.shape
  k_len = k.shape[1]
  if 0 in (batch, q_len, heads, d, k_len):  # nothing to attend: zeros, without launching a kernel
    return jnp.zeros(q.shape, q.dtype)
  bq, bk = _round_block(block_q, q_len), _round_block(block_k, k_len)
  fwd_plan, bwd_plan = _plan(mask, bq, bk)
  q_pad, k_pad = -(-q_len // bq) * bq, -(-k_len // bk) * bk
  qp = jnp.pad(q, ((0, 0), (0, q_pad - q_len), (0, 0), (0, 0)))
  kp = jnp.pad(k, ((0, 0), (0, k_pad - k_len), (0, 0), (0, 0)))
  vp = jnp.pad(v, ((0, 0), (0, k_pad - k_len), (0, 0), (0, 0)))
  if implementation == "jnp":
    return _jnp_blockwise(qp, kp, vp, fwd_plan, bq, bk, c)[:, :q_len].astype(q.dtype)
  if interpret is None:
    interpret = jax.default_backend() not in ("gpu", "cuda", "rocm", "tpu")
  run = _build(batch, heads, q_pad, k_pad, d, jnp.dtype(q.dtype), bq, bk, fwd_plan[0].shape[-1],
               bwd_plan[0].shape[-1], fwd_plan[0].shape[0] > 1, c, bool(interpret))
  fwd_plan = tuple(jnp.asarray(a) for a in (fwd_plan[0], fwd_plan[1][..., None], fwd_plan[2]))
  bwd_plan = tuple(jnp.asarray(a) for a in (bwd_plan[0], bwd_plan[1][..., None], bwd_plan[2]))
  return run(qp, kp, vp, fwd_plan, bwd_plan)[:, :q_len]
