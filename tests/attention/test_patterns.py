"""Attention masks against a direct loop over their definitions; block layouts against the mask."""

import itertools

import jax
import numpy as np
import pytest

from jaxdyn.attention import (
    PATTERNS,
    block_layout,
    block_sparse_mask,
    causal_mask,
    layout_indices,
    sink_window_mask,
    sliding_window_mask,
)

SIZES = [(1, None, 0), (7, None, 0), (13, None, 0), (5, 12, 7), (9, 20, 3), (6, 4, 0)]  # q_len, k_len, q_offset


def loop(q_len, k_len, q_offset, allows):
  k_len = q_offset + q_len if k_len is None else k_len
  out = np.zeros((q_len, k_len), bool)
  for i in range(q_len):
    for j in range(k_len):
      out[i, j] = allows(q_offset + i, j)
  return out


@pytest.mark.parametrize("q_len,k_len,q_offset", SIZES)
def test_causal_mask_is_its_definition(q_len, k_len, q_offset):
  got = causal_mask(q_len, k_len, q_offset=q_offset)
  assert got.dtype == np.bool_
  np.testing.assert_array_equal(got, loop(q_len, k_len, q_offset, lambda p, j: j <= p))


def test_causal_mask_is_tril():
  np.testing.assert_array_equal(causal_mask(6), np.tril(np.ones((6, 6), bool)))
  np.testing.assert_array_equal(causal_mask(3, 5), np.tril(np.ones((3, 5), bool)))


@pytest.mark.parametrize("q_len,k_len,q_offset", SIZES)
@pytest.mark.parametrize("window", [1, 2, 5, 30])
def test_sliding_window_mask_is_its_definition(q_len, k_len, q_offset, window):
  got = sliding_window_mask(q_len, k_len, window=window, q_offset=q_offset)
  want = loop(q_len, k_len, q_offset, lambda p, j: j <= p and p - j < window)
  np.testing.assert_array_equal(got, want)
  # Each query sees exactly min(window, p + 1) keys when all of them exist.
  if k_len is None:
    np.testing.assert_array_equal(got.sum(1), np.minimum(window, np.arange(q_len) + q_offset + 1))


@pytest.mark.parametrize("q_len,k_len,q_offset", SIZES)
@pytest.mark.parametrize("sink,window", [(0, 3), (1, 1), (2, 3), (4, 2), (20, 1)])
def test_sink_window_mask_is_its_definition(q_len, k_len, q_offset, sink, window):
  got = sink_window_mask(q_len, k_len, sink=sink, window=window, q_offset=q_offset)
  want = loop(q_len, k_len, q_offset, lambda p, j: j <= p and (j < sink or p - j < window))
  np.testing.assert_array_equal(got, want)


def test_sink_window_special_cases():
  np.testing.assert_array_equal(sink_window_mask(9, sink=0, window=3), sliding_window_mask(9, window=3))
  np.testing.assert_array_equal(sink_window_mask(9, sink=9, window=1), causal_mask(9))


@pytest.mark.parametrize("q_len,k_len,q_offset", SIZES + [(33, None, 0), (40, 48, 8)])
@pytest.mark.parametrize("block_size,local_blocks,vertical_stride,head_offset",
                         [(1, 1, 1, 0), (2, 1, 2, 0), (4, 2, 3, 0), (3, 1, 4, 1), (4, 3, 2, 5)])
def test_block_sparse_mask_is_its_definition(q_len, k_len, q_offset, block_size, local_blocks, vertical_stride,
                                             head_offset):
  got = block_sparse_mask(q_len, k_len, block_size=block_size, local_blocks=local_blocks,
                          vertical_stride=vertical_stride, head_offset=head_offset, q_offset=q_offset)

  def allows(p, j):
    bp, bj = p // block_size, j // block_size
    return j <= p and (bp - bj < local_blocks or (bj + head_offset) % vertical_stride == 0)

  np.testing.assert_array_equal(got, loop(q_len, k_len, q_offset, allows))


@pytest.mark.parametrize("seq,block_size,local_blocks,vertical_stride,num_heads",
                         [(37, 4, 2, 4, 2), (64, 8, 1, 3, 4), (30, 3, 2, 8, 3)])
def test_block_sparse_mask_follows_dkernel(seq, block_size, local_blocks, vertical_stride, num_heads):
  """dkernel's get_sparse_attn_mask, written out: a block mask, expanded with kron, times tril."""
  blocks = -(-seq // block_size)
  qb, kb = np.arange(blocks)[:, None], np.arange(blocks)[None, :]
  step = max(1, vertical_stride // num_heads)
  want = []
  for h in range(num_heads):
    vert = (np.arange(blocks) + h * step) % vertical_stride == 0
    block_mask = (qb >= kb) & ((qb - kb < local_blocks) | vert[None, :])
    dense = np.kron(block_mask, np.ones((block_size, block_size), bool))[:seq, :seq]
    want.append(dense & np.tril(np.ones((seq, seq), bool)))
  got = block_sparse_mask(seq, block_size=block_size, local_blocks=local_blocks, vertical_stride=vertical_stride,
                          num_heads=num_heads)
  assert got.shape == (num_heads, seq, seq)
  np.testing.assert_array_equal(got, np.stack(want))
  homo = block_sparse_mask(seq, block_size=block_size, local_blocks=local_blocks, vertical_stride=vertical_stride)
  np.testing.assert_array_equal(homo, want[0])  # dkernel's homo_head=True: head 0's pattern for all


def test_block_sparse_with_stride_one_is_causal():
  np.testing.assert_array_equal(block_sparse_mask(11, block_size=3, local_blocks=1, vertical_stride=1),
                                causal_mask(11))


def test_patterns_by_name():
  assert set(PATTERNS) == {"causal", "sliding_window", "sink_window", "block_sparse"}
  np.testing.assert_array_equal(PATTERNS["sink_window"](6, sink=1, window=2), sink_window_mask(6, sink=1, window=2))


def test_every_query_sees_itself():
  for mask in (causal_mask(20), sliding_window_mask(20, window=1), sink_window_mask(20, sink=2, window=1),
               block_sparse_mask(20, block_size=4, local_blocks=1, vertical_stride=7)):
    assert np.diagonal(mask).all()


# --- block layouts ---------------------------------------------------------------------------------

def _masks():
  rng = np.random.default_rng(0)
  yield causal_mask(13)
  yield sliding_window_mask(17, 20, window=3, q_offset=3)
  yield sink_window_mask(21, sink=2, window=4)
  yield block_sparse_mask(19, block_size=3, local_blocks=1, vertical_stride=3)
  yield block_sparse_mask(16, block_size=4, local_blocks=1, vertical_stride=4, num_heads=2)
  yield rng.random((11, 9)) < 0.15  # arbitrary, with empty rows and columns
  yield np.zeros((5, 7), bool)


@pytest.mark.parametrize("block_q,block_k", [(1, 1), (2, 3), (4, 4), (5, 2), (8, 16), (32, 32)])
def test_block_layout_lists_exactly_the_nonzero_blocks(block_q, block_k):
  for mask in _masks():
    layout = block_layout(mask, block_q, block_k)
    *lead, q_len, k_len = mask.shape
    nq, nk = -(-q_len // block_q), -(-k_len // block_k)
    assert layout.shape == (*lead, nq, nk) and layout.dtype == np.bool_
    for idx in itertools.product(*map(range, lead)):
      for bi in range(nq):
        for bj in range(nk):
          tile = mask[idx][bi * block_q:(bi + 1) * block_q, bj * block_k:(bj + 1) * block_k]
          assert layout[idx][bi, bj] == tile.any()
    # The layout covers the mask: expanding it back contains every True entry.
    expanded = np.kron(layout, np.ones((block_q, block_k), bool))[..., :q_len, :k_len]
    assert not (mask & ~expanded).any()


def test_block_layout_of_a_sliding_window_is_banded():
  layout = block_layout(sliding_window_mask(64, window=16), 16, 16)
  np.testing.assert_array_equal(layout, np.tril(np.ones((4, 4), bool)) & ~np.tril(np.ones((4, 4), bool), -2))


@pytest.mark.parametrize("block", [(2, 3), (4, 4), (3, 1)])
def test_layout_indices_list_each_rows_blocks_in_order(block):
  for mask in _masks():
    layout = block_layout(mask, *block)
    indices, counts = layout_indices(layout)
    assert indices.dtype == np.int32 and counts.dtype == np.int32
    assert indices.shape == layout.shape[:-1] + (max(1, int(layout.sum(-1).max())),)
    np.testing.assert_array_equal(counts, layout.sum(-1))
    for idx in np.ndindex(*layout.shape[:-1]):
      row = indices[idx]
      np.testing.assert_array_equal(row[:counts[idx]], np.flatnonzero(layout[idx]))
      assert (row[counts[idx]:] == -1).all()


def test_layout_indices_hand_example():
  layout = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], bool)
  indices, counts = layout_indices(layout)
  assert indices.tolist() == [[0, 2, 3], [-1, -1, -1], [1, -1, -1]]
  assert counts.tolist() == [3, 0, 1]


# --- bad inputs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,name", [
    (lambda: causal_mask(-1), "q_len"),
    (lambda: causal_mask(2.5), "q_len"),
    (lambda: causal_mask(True), "q_len"),
    (lambda: causal_mask(3, -2), "k_len"),
    (lambda: causal_mask(3, q_offset=-1), "q_offset"),
    (lambda: sliding_window_mask(4, window=0), "window"),
    (lambda: sliding_window_mask(4, window=1.5), "window"),
    (lambda: sink_window_mask(4, sink=-1, window=2), "sink"),
    (lambda: sink_window_mask(4, sink=1, window=0), "window"),
    (lambda: block_sparse_mask(4, block_size=0, local_blocks=1, vertical_stride=2), "block_size"),
    (lambda: block_sparse_mask(4, block_size=2, local_blocks=0, vertical_stride=2), "local_blocks"),
    (lambda: block_sparse_mask(4, block_size=2, local_blocks=1, vertical_stride=0), "vertical_stride"),
    (lambda: block_sparse_mask(4, block_size=2, local_blocks=1, vertical_stride=2, head_offset=-1), "head_offset"),
    (lambda: block_sparse_mask(4, block_size=2, local_blocks=1, vertical_stride=2, num_heads=0), "num_heads"),
    (lambda: block_layout(causal_mask(4), 0, 2), "block_q"),
    (lambda: block_layout(causal_mask(4), 2, 2.0), "block_k"),
    (lambda: block_layout(np.ones((4, 4), np.float32), 2, 2), "mask"),
    (lambda: block_layout(np.ones(4, bool), 2, 2), "mask"),
    (lambda: block_layout("causal", 2, 2), "mask"),
    (lambda: layout_indices(np.ones((2, 2), np.int32)), "layout"),
    (lambda: layout_indices(np.ones((2, 2, 2, 2), bool)), "layout"),
])
def test_bad_inputs_are_named(call, name):
  with pytest.raises((ValueError, TypeError), match=f"^{name}: must"):
    call()


def test_a_traced_mask_is_rejected():
  with pytest.raises(TypeError, match="^mask: must be a concrete"):
    jax.jit(lambda m: block_layout(m, 2, 2))(causal_mask(4))


def test_numpy_integers_are_integers():
  np.testing.assert_array_equal(sliding_window_mask(np.int64(6), window=np.int32(2)), sliding_window_mask(6, window=2))
