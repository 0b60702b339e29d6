"""Block-sparse attention (Pallas interpret mode and the jnp path) against the dense masked reference.

Compiling an interpret-mode kernel costs seconds on CPU, so one call covers every pattern: each head
of a per-head mask ``(heads, q_len, k_len)`` carries a different pattern.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import _pallas
from jaxdyn.attention import (
    block_sparse_attention,
    block_sparse_mask,
    causal_mask,
    dense_masked_attention,
    sink_window_mask,
    sliding_window_mask,
)

TOL = dict(rtol=1e-5, atol=1e-5)


def qkv(batch, q_len, k_len, heads, dim, seed=0):
  """NumPy draws (a jax.random call compiles per shape, which dominates small CPU tests)."""
  rng = np.random.default_rng(seed)
  return tuple(jnp.asarray(rng.standard_normal((batch, n, heads, dim)), jnp.float32) for n in (q_len, k_len, k_len))


def all_patterns(q_len, k_len, q_offset):
  """One head per pattern; the last an arbitrary mask with empty rows (and a fully masked block row)."""
  rng = np.random.default_rng(1)
  arbitrary = rng.random((q_len, k_len)) < 0.2
  arbitrary[[0, 5, q_len - 1]] = False
  kw = dict(q_offset=q_offset)
  return np.stack([
      causal_mask(q_len, k_len, **kw),
      sliding_window_mask(q_len, k_len, window=7, **kw),
      sink_window_mask(q_len, k_len, sink=3, window=5, **kw),
      block_sparse_mask(q_len, k_len, block_size=4, local_blocks=2, vertical_stride=3, **kw),
      arbitrary,
  ])


def out_and_grads(attend, q):
  """A compiled (q, k, v) -> (attend(q, k, v), gradients of sum(out * w)) for a generic w."""
  w = jnp.asarray(np.random.default_rng(9).standard_normal(q.shape), jnp.float32)

  @jax.jit
  def run(q, k, v):
    out, vjp = jax.vjp(attend, q, k, v)
    return out, vjp(w)

  return run


@pytest.mark.parametrize("q_len,k_len,q_offset,block_q,block_k", [
    (40, 40, 0, 8, 16),    # ragged last key block (40 = 2 * 16 + 8)
    (40, 40, 0, 16, 8),    # ragged last query block
    (24, 40, 16, 32, 32),  # queries after a cache of 16 keys; one query block shrunk to 32 > 24
])
def test_kernel_and_jnp_equal_the_dense_reference(q_len, k_len, q_offset, block_q, block_k):
  q, k, v = qkv(1, q_len, k_len, 5, 8)
  mask = all_patterns(q_len, k_len, q_offset)
  want_out, want_grads = out_and_grads(lambda *a: dense_masked_attention(*a, mask), q)(q, k, v)
  for implementation in ("pallas", "jnp"):
    out, grads = out_and_grads(lambda *a: block_sparse_attention(
        *a, mask, block_q=block_q, block_k=block_k, implementation=implementation, interpret=True), q)(q, k, v)
    np.testing.assert_allclose(out, want_out, **TOL)
    for g, w in zip(grads, want_grads):
      np.testing.assert_allclose(g, w, **TOL)
      assert np.isfinite(np.asarray(g)).all()
    # Rows with no allowed key give exactly 0 (the arbitrary head's empty rows), not NaN.
    empty = ~mask[-1].any(1)
    assert empty.sum() >= 3
    np.testing.assert_array_equal(np.asarray(out)[0, empty, -1], 0.0)


def test_causal_kernel_equals_jax_dot_product_attention():
  q, k, v = qkv(2, 33, 33, 2, 16, seed=3)  # ragged: 33 = 4 * 8 + 1
  # interpret=None: chosen by the backend (interpret mode on CPU).
  ours = out_and_grads(lambda *a: block_sparse_attention(*a, causal_mask(33), block_q=8, block_k=8), q)
  theirs = out_and_grads(lambda *a: jax.nn.dot_product_attention(*a, is_causal=True), q)
  got, want = ours(q, k, v), theirs(q, k, v)
  np.testing.assert_allclose(got[0], want[0], **TOL)
  for a, b in zip(got[1], want[1]):
    np.testing.assert_allclose(a, b, **TOL)
  # A NaN in one query row stays in that row (forward) and is not hidden by the masking.
  out, grads = ours(q.at[1, 3, 0, 1].set(jnp.nan), k, v)
  assert np.isnan(out[1, 3, 0]).all()
  assert np.isfinite(np.delete(np.asarray(out[1, :, 0]), 3, axis=0)).all() and np.isfinite(out[0]).all()
  assert np.isnan(grads[0][1, 3, 0]).all()
  # An infinite key entry reaches every query that reads it: +inf scores and -inf scores both give NaN.
  out, _ = ours(q, k.at[0, 5, 1, 2].set(-jnp.inf), v)
  assert np.isnan(out[0, 5:, 1]).all() and np.isfinite(out[0, :5, 1]).all() and np.isfinite(out[:, :, 0]).all()


def test_no_mask_is_full_attention_and_scale_is_used():
  q, k, v = qkv(1, 12, 20, 2, 4, seed=5)
  out = jax.jit(lambda *a: block_sparse_attention(*a, None, block_q=8, block_k=8, scale=0.3,
                                                   implementation="jnp"))(q, k, v)
  np.testing.assert_allclose(out, jax.jit(lambda *a: jax.nn.dot_product_attention(*a, scale=0.3))(q, k, v), **TOL)


def test_no_dense_score_matrix():
  """No float intermediate as large as q_len * k_len, in either implementation (forward and backward)."""
  length = 64
  q, k, v = qkv(1, length, length, 1, 8)
  mask = sliding_window_mask(length, window=8)
  for implementation in ("pallas", "jnp"):
    jaxpr = jax.make_jaxpr(jax.grad(lambda q, k, v: block_sparse_attention(
        q, k, v, mask, block_q=8, block_k=8, implementation=implementation).sum(), argnums=(0, 1, 2)))(q, k, v)
    sizes = []

    def walk(j):
      for eqn in j.eqns:
        sizes.extend(int(np.prod(x.aval.shape)) for x in eqn.outvars
                     if hasattr(x.aval, "dtype") and jnp.issubdtype(x.aval.dtype, jnp.floating))
        for sub in jax.core.jaxprs_in_params(eqn.params):
          walk(sub)

    walk(jaxpr.jaxpr)
    assert max(sizes) < length * length // 2, (implementation, max(sizes))


def test_jnp_path_keeps_half_precision_and_matches():
  q, k, v = qkv(1, 16, 16, 1, 8, seed=6)
  mask = sink_window_mask(16, sink=2, window=4)
  out = jax.jit(lambda *a: block_sparse_attention(*a, mask, block_q=4, block_k=4, implementation="jnp"))(
      q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16))
  assert out.dtype == jnp.bfloat16
  ref = jax.jit(lambda *a: dense_masked_attention(*a, mask))(q, k, v)
  np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=5e-2)


@pytest.mark.parametrize("dtype,precision", [(jnp.float32, "highest"), (jnp.bfloat16, "default")])
def test_kernels_lower_to_triton_for_a_gpu(monkeypatch, dtype, precision):
  """Pallas lowers to Triton in Python, with no GPU: an operation Triton has no rule for fails here.

  The forward and both backward kernels appear as three Triton calls in the GPU program; compiling and
  running them needs a GPU (``benchmarks/gpu_kernels.py``).
  """
  monkeypatch.setattr(_pallas, "target", lambda interpret: "gpu")
  q = jax.ShapeDtypeStruct((1, 200, 2, 64), dtype)  # ragged: 200 = 3 * 64 + 8
  mask = sink_window_mask(200, sink=16, window=64)

  def loss(q, k, v):
    return block_sparse_attention(q, k, v, mask, precision=precision).astype(jnp.float32).sum()

  text = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(q, q, q).lower(lowering_platforms=("cuda",)).as_text()
  assert text.count("custom_call @__gpu$xla.gpu.triton(") == 3


def test_plan_shares_tile_masks():
  """The plan stores each distinct tile mask once: its size follows the listed tiles, not their elements."""
  from jaxdyn.attention._kernel import _plan  # noqa: PLC0415 (the kernel's private plan)
  (idx, cnt, tid), (idx_t, cnt_t, tid_t), table = _plan(sink_window_mask(1024, sink=16, window=128), 64, 64)
  # empty, full, the causal diagonal, the window's edge, the sink alone, the sink meeting the edge
  assert table.shape == (6, 64, 64)
  np.testing.assert_array_equal(table[:2].reshape(2, -1).mean(1), [0, 1])
  assert idx.shape == tid.shape == (1, 16, 4) and cnt.max() == 4  # sink block + at most 3 window blocks
  assert idx_t.shape == tid_t.shape == (1, 16, 16)  # the sink's key block is read by every query block
  assert np.all(tid[idx < 0] == 0) and np.all(tid[idx >= 0] > 0)
  assert _plan(sink_window_mask(4096, sink=16, window=128), 64, 64)[2].shape == (6, 64, 64)  # 4x longer


def test_precision_default_is_the_fast_path_and_highest_the_reference():
  q, k, v = qkv(1, 24, 24, 2, 8)
  mask = causal_mask(24)
  ref = dense_masked_attention(q, k, v, mask)
  for precision in ("highest", "default"):  # the same on CPU, where float32 matmuls are exact either way
    out = block_sparse_attention(q, k, v, mask, block_q=8, block_k=8, implementation="jnp", precision=precision)
    np.testing.assert_allclose(out, ref, **TOL)
  with pytest.raises(ValueError, match="precision: must be one of"):
    block_sparse_attention(q, k, v, mask, precision="fast")


def test_empty_batch_gives_an_empty_result():
  q, k, v = qkv(0, 8, 8, 1, 4)
  out = block_sparse_attention(q, k, v, causal_mask(8))
  assert out.shape == (0, 8, 1, 4)
  assert dense_masked_attention(q, k, v, causal_mask(8)).shape == (0, 8, 1, 4)


# --- bad inputs ------------------------------------------------------------------------------------

Q, K, V = qkv(1, 8, 8, 2, 4)
M = causal_mask(8)


@pytest.mark.parametrize("call,name", [
    (lambda: block_sparse_attention(Q, K, V, causal_mask(8, 9)), "mask"),
    (lambda: block_sparse_attention(Q, K, V, np.stack([M, M, M])), "mask"),
    (lambda: block_sparse_attention(Q, K, V, M.astype(np.float32)), "mask"),
    (lambda: block_sparse_attention(Q, K, V, M[0]), "mask"),
    (lambda: block_sparse_attention(Q, K, V, M, block_q=0), "block_q"),
    (lambda: block_sparse_attention(Q, K, V, M, block_k=2.5), "block_k"),
    (lambda: block_sparse_attention(Q, K, V, M, scale=-1.0), "scale"),
    (lambda: block_sparse_attention(Q, K, V, M, scale=float("nan")), "scale"),
    (lambda: block_sparse_attention(Q, K, V, M, implementation="triton"), "implementation"),
    (lambda: block_sparse_attention(Q, K, V, M, interpret="yes"), "interpret"),
    (lambda: block_sparse_attention(Q[0], K, V, M), "q"),
    (lambda: block_sparse_attention(Q, K[..., :1, :], V, M), "v"),
    (lambda: block_sparse_attention(Q, K[..., :1, :], V[..., :1, :], M), "k"),
    (lambda: block_sparse_attention(Q.astype(jnp.complex64), K, V, M), "q"),
    (lambda: dense_masked_attention(Q, K, V, causal_mask(8, 7)), "mask"),
    (lambda: dense_masked_attention(Q, K, V, M, scale=0.0), "scale"),
])
def test_bad_inputs_are_named(call, name):
  with pytest.raises((ValueError, TypeError), match=f"^{name}: must"):
    call()


def test_a_traced_mask_is_rejected():
  with pytest.raises(TypeError, match="^mask: must be a concrete"):
    jax.jit(lambda m: block_sparse_attention(Q, K, V, m, implementation="jnp"))(M)
