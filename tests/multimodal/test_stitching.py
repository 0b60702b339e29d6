"""Visual stitching's data construction and measurement against hand-worked examples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import multimodal as mm
from jaxdyn.data import _paired


# --- patches ------------------------------------------------------------------------------------------
def test_patches_hand_worked_2x2():
  x = np.arange(16.0, dtype=np.float32).reshape(1, 4, 4, 1)
  p = np.asarray(mm.stitching_patches(x, 2, mode="place"))[0, ..., 0]
  crops = [[[0, 1], [4, 5]], [[2, 3], [6, 7]], [[8, 9], [12, 13]], [[10, 11], [14, 15]]]  # row-major
  where = [(0, 0), (0, 2), (2, 0), (2, 2)]
  for k, ((r, c), crop) in enumerate(zip(where, crops)):
    want = np.zeros((4, 4), np.float32)
    want[r:r + 2, c:c + 2] = crop
    np.testing.assert_array_equal(p[k], want)
  np.testing.assert_array_equal(p.sum(0), x[0, ..., 0])  # the placed patches tile the image exactly
  r = np.asarray(mm.stitching_patches(x, 2))[0, ..., 0]
  np.testing.assert_array_equal(r[1], [[2, 2, 3, 3], [2, 2, 3, 3], [6, 6, 7, 7], [6, 6, 7, 7]])
  np.testing.assert_array_equal(r[2], np.kron(np.array([[8, 9], [12, 13]]), np.ones((2, 2))))


@pytest.mark.parametrize("s", [1, 2, 3, 4, 6])
def test_patches_tile_the_image(s):
  x = np.random.default_rng(s).random((3, 24, 24, 2)).astype(np.float32)
  resized = np.asarray(mm.stitching_patches(x, s))
  placed = np.asarray(mm.stitching_patches(x, s, mode="place"))
  assert resized.shape == placed.shape == (3, s * s, 24, 24, 2)
  h = 24 // s
  rebuilt = np.zeros_like(x)
  for i in range(s):
    for j in range(s):
      crop = resized[:, i * s + j, ::s, ::s]  # undo the nearest-neighbour upsampling
      np.testing.assert_array_equal(resized[:, i * s + j], np.repeat(np.repeat(crop, s, 1), s, 2))
      rebuilt[:, i * h:(i + 1) * h, j * h:(j + 1) * h] = crop
  np.testing.assert_array_equal(rebuilt, x)
  np.testing.assert_array_equal(placed.sum(1), x)
  if s == 1:
    np.testing.assert_array_equal(resized[:, 0], x)


def test_patches_bad_inputs():
  x = np.zeros((2, 24, 24, 1), np.float32)
  with pytest.raises(ValueError, match="split_factor"):
    mm.stitching_patches(x, 5)
  with pytest.raises(ValueError, match="split_factor"):
    mm.stitching_patches(x, 0)
  with pytest.raises(ValueError, match="split_factor"):
    mm.stitching_patches(x, 2.0)
  with pytest.raises(ValueError, match="mode"):
    mm.stitching_patches(x, 2, mode="crop")
  with pytest.raises(ValueError, match="images"):
    mm.stitching_patches(x[0], 2)
  with pytest.raises(ValueError, match="images"):
    mm.stitching_patches(x[:0], 2)


# --- IDs ----------------------------------------------------------------------------------------------
def test_ids_unique_deterministic_in_range():
  a = np.asarray(mm.stitching_ids(jax.random.key(3), 50, id_length=2))
  b = np.asarray(mm.stitching_ids(jax.random.key(3), 50, id_length=2))
  c = np.asarray(mm.stitching_ids(jax.random.key(4), 50, id_length=2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.shape == (50, 2) and a.dtype == np.int32
  assert len({tuple(r) for r in a.tolist()}) == 50
  assert a.min() >= 0 and a.max() < len(mm.ID_WORDS)
  # every string drawn once: a permutation of all vocab_size ** id_length IDs
  full = np.asarray(mm.stitching_ids(jax.random.key(0), 27, id_length=3, vocab_size=3))
  assert sorted(int(r[0]) * 9 + int(r[1]) * 3 + int(r[2]) for r in full) == list(range(27))


def test_id_texts():
  assert mm.stitching_id_texts(np.array([[6, 8], [0, 19]])) == ("ke mu", "ba zo")
  assert mm.stitching_id_texts([[1, 0]], words=("x", "y")) == ("y x",)
  assert not set(mm.ID_WORDS) & set(_paired.CaptionVocab.build().words)


def test_ids_bad_inputs():
  with pytest.raises(ValueError, match="num_ids"):
    mm.stitching_ids(jax.random.key(0), 401)  # 20 ** 2 = 400 possible IDs
  with pytest.raises(ValueError, match="num_ids"):
    mm.stitching_ids(jax.random.key(0), 0)
  with pytest.raises(ValueError, match="id_length"):
    mm.stitching_ids(jax.random.key(0), 3, id_length=0)
  with pytest.raises(ValueError, match="vocab_size"):
    mm.stitching_ids(jax.random.key(0), 1, vocab_size=1)
  with pytest.raises(ValueError, match="id_length"):
    mm.stitching_ids(jax.random.key(0), 1, id_length=8)  # 20 ** 8 > 2 ** 31
  with pytest.raises((TypeError, ValueError), match="key"):
    mm.stitching_ids(0, 3)
  with pytest.raises(ValueError, match="ids"):
    mm.stitching_id_texts([[0, 20]])
  with pytest.raises(ValueError, match="ids"):
    mm.stitching_id_texts([[-1, 0]])
  with pytest.raises(ValueError, match="words"):
    mm.stitching_id_texts([[0]], words=("a", "a"))
  with pytest.raises(TypeError, match="words"):
    mm.stitching_id_texts([[0]], words="ab")


# --- ranks and the measurement ------------------------------------------------------------------------
def test_ranks_hand_worked():
  scores = np.array([[0.0, 2.0, 1.0, -1.0],   # true 2: one higher -> rank 1, miss
                     [3.0, 3.0, 3.0, 0.0],    # true 0: tied with two -> rank 1, hit 1/3
                     [5.0, 1.0, 1.0, 1.0],    # true 0: best -> rank 0, hit 1
                     [0.0, 0.0, 0.0, 0.0]],   # constant: chance, rank 1.5, hit 1/4
                    np.float32)
  ranks, hits = mm.stitching_ranks(scores, np.array([2, 0, 0, 3]))
  np.testing.assert_allclose(ranks, [1.0, 1.0, 0.0, 1.5])
  np.testing.assert_allclose(hits, [0.0, 1 / 3, 1.0, 0.25], rtol=1e-6)
  r2, h2 = jax.jit(mm.stitching_ranks)(scores, np.array([2, 0, 0, 3]))
  np.testing.assert_allclose(r2, ranks)
  np.testing.assert_allclose(h2, hits)


def test_ranks_nonfinite_and_labels_under_jit():
  scores = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]], np.float32)
  ranks, hits = mm.stitching_ranks(scores, np.array([0, 2]))
  assert np.isnan(ranks[0]) and np.isnan(hits[0]) and ranks[1] == 0 and hits[1] == 1
  r, _ = jax.jit(mm.stitching_ranks)(scores[1:], jnp.array([3]))
  assert np.isnan(r[0])
  with pytest.raises(ValueError, match="targets"):
    mm.stitching_ranks(scores, np.array([0, 3]))
  with pytest.raises(ValueError, match="targets"):
    mm.stitching_ranks(scores, np.array([0, -1]))
  with pytest.raises(ValueError, match="scores"):
    mm.stitching_ranks(np.zeros((2, 1), np.float32), np.array([0, 0]))
  with pytest.raises(ValueError, match="scores"):
    mm.stitching_ranks(np.zeros(3, np.float32), np.array([0]))


def test_measure_known_answers():
  k = 5
  targets = np.array([3, 1, 4, 0, 2, 2])
  queries = {"id": targets.copy(), "shift": np.array([0, 0, 1, 0, 2, 0])}

  def score_fn(batch):  # the true ID scores highest unless shifted: then ``shift`` IDs score higher
    out = -np.abs(np.arange(k)[None, :] - batch["id"][:, None]).astype(np.float32)
    out[np.arange(len(batch["id"])), batch["id"]] = 0.5
    for row, s in enumerate(batch["shift"]):
      others = [j for j in range(k) if j != batch["id"][row]][:s]
      out[row, others] = 1.0
    return out

  res = mm.stitching_measure(score_fn, queries, targets)
  np.testing.assert_allclose(res.ranks, [0, 0, 1, 0, 2, 0])
  np.testing.assert_allclose(res.hits, [1, 1, 0, 1, 0, 1])
  assert res.mean_rank == pytest.approx(0.5) and res.accuracy == pytest.approx(4 / 6)
  assert res.chance_rank == 2.0 and res.chance_accuracy == pytest.approx(0.2)
  batched = mm.stitching_measure(score_fn, queries, targets, batch_size=4)
  np.testing.assert_array_equal(batched.ranks, res.ranks)
  const = mm.stitching_measure(lambda q: np.zeros((len(q), k)), np.arange(6), targets, batch_size=5)
  assert const.mean_rank == pytest.approx(const.chance_rank) and const.accuracy == pytest.approx(0.2)
  worst = mm.stitching_measure(lambda q: -np.eye(k)[q], targets, targets)
  assert worst.mean_rank == k - 1 and worst.accuracy == 0.0


def test_measure_bad_inputs():
  t = np.array([0, 1])
  ok = lambda q: np.zeros((len(q), 3))  # noqa: E731
  with pytest.raises(TypeError, match="score_fn"):
    mm.stitching_measure(3, np.arange(2), t)
  with pytest.raises(ValueError, match="score_fn"):
    mm.stitching_measure(lambda q: np.zeros((len(q) + 1, 3)), np.arange(2), t)
  with pytest.raises(ValueError, match="score_fn"):
    mm.stitching_measure(lambda q: np.zeros((len(q), 1)), np.arange(2), t)
  with pytest.raises(ValueError, match="score_fn"):
    mm.stitching_measure(lambda q: np.zeros((len(q), 3 + int(q[0]))), np.arange(2), t, batch_size=1)
  with pytest.raises(ValueError, match="score_fn"):
    mm.stitching_measure(lambda q: np.full((len(q), 3), np.nan), np.arange(2), t)
  with pytest.raises(ValueError, match="queries"):
    mm.stitching_measure(ok, np.zeros(0), t[:0])
  with pytest.raises(ValueError, match="queries"):
    mm.stitching_measure(ok, {"a": np.zeros(2), "b": np.zeros(3)}, t)
  with pytest.raises(ValueError, match="targets"):
    mm.stitching_measure(ok, np.arange(2), np.array([0, 1, 2]))
  with pytest.raises(ValueError, match="targets"):
    mm.stitching_measure(ok, np.arange(2), np.array([0, 3]))
  with pytest.raises(ValueError, match="batch_size"):
    mm.stitching_measure(ok, np.arange(2), t, batch_size=0)
