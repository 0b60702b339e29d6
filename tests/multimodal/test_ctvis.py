"""CTVIS (jaxdyn.multimodal._ctvis): memory bank, momentum average, items, loss, tracker and pseudo-videos."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import multimodal as mm

R2 = np.sqrt(0.5)


def _update(mem, rows, present, **kw):
  return mm.ctvis_memory_update(mem, jnp.asarray(rows, jnp.float32), jnp.asarray(present), **kw)


def test_memory_similarity_guided_momentum_by_hand():
  mem = mm.ctvis_memory_init(2, 2)
  mem = _update(mem, [[1.0, 0.0], [0.0, 0.0]], [True, False])
  np.testing.assert_allclose(mem.average[0], [1.0, 0.0])
  assert mem.valid.tolist() == [True, False] and mem.count.tolist() == [1, 0] and mem.age.tolist() == [0, 0]
  # e2 = (1, 1): cos with e1 is 1/sqrt(2), so beta = 0.7071 and average = (1 - beta) (1, 0) + beta (1, 1)
  mem = _update(mem, [[1.0, 1.0], [0.0, 5.0]], [True, True])
  np.testing.assert_allclose(mem.average[0], [1.0, R2], rtol=1e-6)
  np.testing.assert_allclose(mem.direction_sum[0], [1.0 + R2, R2], rtol=1e-6)
  np.testing.assert_allclose(mem.average[1], [0.0, 5.0])  # a new slot starts at its embedding
  assert mem.count.tolist() == [2, 1]
  # e3 = (0, -1): cosines 0 and -1/sqrt(2), mean < 0, beta = max(0, .) = 0: the average stays, last moves
  mem = _update(mem, [[0.0, -1.0], [9.0, 9.0]], [True, False])
  np.testing.assert_allclose(mem.average[0], [1.0, R2], rtol=1e-6)
  np.testing.assert_allclose(mem.last[0], [0.0, -1.0])
  np.testing.assert_allclose(mem.average[1], [0.0, 5.0])  # absent: unchanged, one frame older
  assert mem.age.tolist() == [0, 1] and mem.count.tolist() == [3, 1]


def test_memory_fixed_momentum_and_max_age():
  mem = mm.ctvis_memory_init(2, 1)
  mem = _update(mem, [[4.0], [2.0]], [True, True], momentum=0.75)
  mem = _update(mem, [[0.0], [0.0]], [True, False], momentum=0.75, max_age=1)
  np.testing.assert_allclose(mem.average[:, 0], [1.0, 2.0])  # 0.25 * 4 + 0.75 * 0
  assert mem.valid.tolist() == [True, True]
  mem = _update(mem, [[0.0], [0.0]], [True, False], momentum=0.75, max_age=1)
  assert mem.valid.tolist() == [True, False] and mem.age.tolist() == [0, 2]  # dropped after 2 frames away
  mem = _update(mem, [[0.0], [7.0]], [False, True], momentum=0.75)
  np.testing.assert_allclose(mem.average[1, 0], 7.0)  # a dropped slot restarts from scratch
  assert mem.count.tolist()[1] == 1


def test_memory_update_is_jittable_and_equal():
  mem = mm.ctvis_memory_init(3, 4)
  rows = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)
  p = jnp.array([True, False, True])
  a = _update(_update(mem, rows, p), rows[::-1], jnp.ones(3, bool))
  f = jax.jit(lambda m, r, q: mm.ctvis_memory_update(m, r, q))
  b = f(f(mem, rows, p), rows[::-1], jnp.ones(3, bool))
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=1e-6)


def _np_loss(a, pos, neg, nmask, imask, aux_weight):
  """A NumPy reference: per item log(1 + sum exp(a.n - a.p)) and mean squared (cos - label)."""
  con, aux = [], []
  for k in range(len(a)):
    if not imask[k]:
      continue
    sp = a[k] @ pos[k]
    sn = np.array([a[k] @ neg[k, j] for j in range(neg.shape[1]) if nmask[k, j]])
    con.append(np.log1p(np.sum(np.exp(sn - sp))))
    cos = lambda x, y: x @ y / np.linalg.norm(x) / np.linalg.norm(y)  # noqa: E731
    terms = [(cos(a[k], pos[k]) - 1) ** 2] + [cos(a[k], neg[k, j]) ** 2 for j in range(neg.shape[1]) if nmask[k, j]]
    aux.append(np.mean(terms))
  return np.mean(con) + aux_weight * np.mean(aux)


def test_loss_by_hand():
  items = mm.CtvisItems(
      anchors=jnp.array([[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]),
      positives=jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]]),
      negatives=jnp.array([[[0.0, 1.0], [2.0, 0.0]], [[0.0, 2.0], [9.0, 9.0]], [[1.0, 0.0], [0.0, 1.0]]]),
      negative_mask=jnp.array([[True, False], [True, False], [True, True]]),
      item_mask=jnp.array([True, True, False]))
  # item 1: log(1 + e^-1); item 2: s+ = 1, s- = 2: log(1 + e); aux: 0 and ((R2 - 1)^2 + R2^2) / 2
  con = (np.log1p(np.exp(-1.0)) + np.log1p(np.e)) / 2
  aux = (0.0 + ((R2 - 1) ** 2 + 0.5) / 2) / 2
  np.testing.assert_allclose(mm.ctvis_contrastive_loss(items, aux_weight=0.0), con, rtol=1e-6)
  np.testing.assert_allclose(mm.ctvis_contrastive_loss(items), con + 1.5 * aux, rtol=1e-6)
  np.testing.assert_allclose(con + 1.5 * aux, 1.03293, atol=1e-5)


def test_loss_against_numpy_and_empty():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(6, 5)).astype(np.float32)
  pos = rng.normal(size=(6, 5)).astype(np.float32)
  neg = rng.normal(size=(6, 4, 5)).astype(np.float32)
  nmask = np.array([[1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0], [1, 0, 1, 0]], bool)
  imask = np.array([1, 1, 0, 1, 1, 1], bool)
  items = mm.CtvisItems(*(jnp.asarray(x) for x in (a, pos, neg, nmask, imask)))
  np.testing.assert_allclose(mm.ctvis_contrastive_loss(items, aux_weight=0.7),
                             _np_loss(a, pos, neg, nmask, imask, 0.7), rtol=1e-5)
  none = items._replace(item_mask=jnp.zeros(6, bool))
  assert float(mm.ctvis_contrastive_loss(none)) == 0.0  # no items: 0, as the authors' code
  assert np.isnan(float(mm.ctvis_contrastive_loss(items._replace(anchors=items.anchors.at[0, 0].set(jnp.nan)))))


def _clip():
  # T = 3 frames, M = 2 identities; identity 1 is hidden in frame 1
  e = jnp.array([[[1.0, 0.0], [0.0, 1.0]],
                 [[1.0, 1.0], [7.0, 7.0]],
                 [[2.0, 0.0], [0.0, 3.0]]])
  present = jnp.array([[True, True], [True, False], [True, True]])
  return e, present


def test_ctvis_items_by_hand():
  e, present = _clip()
  items = mm.ctvis_contrastive_items(e, present, average_prob=1.0)
  assert items.anchors.shape == (6, 2) and items.negatives.shape == (6, 2, 2)
  # frame 0: no memory yet; frame 1: identity 0 only; frame 2: both, identity 1 against its memory of frame 0
  assert items.item_mask.tolist() == [False, False, True, False, True, True]
  np.testing.assert_allclose(items.positives[2], [1.0, 0.0])
  np.testing.assert_allclose(items.positives[4], [1.0, R2], rtol=1e-6)  # the momentum average of frames 0, 1
  np.testing.assert_allclose(items.positives[5], [0.0, 1.0])  # back after the occlusion: its memory
  # negatives: the other track's average; at frame 1 identity 0's negative is identity 1's memory
  assert items.negative_mask[2].tolist() == [False, True]
  np.testing.assert_allclose(items.negatives[2, 1], [0.0, 1.0])
  np.testing.assert_allclose(items.negatives[5, 0], [1.0, R2], rtol=1e-6)
  np.testing.assert_allclose(items.anchors[5], [0.0, 3.0])
  # average_prob = 0: the positive is the last embedding instead
  last = mm.ctvis_contrastive_items(e, present, key=jax.random.key(0), average_prob=0.0)
  np.testing.assert_allclose(last.positives[4], [1.0, 1.0])


def test_reference_items_by_hand():
  e, present = _clip()
  items = mm.ctvis_reference_items(e, present)
  # identity 1 at frame 2 has no reference (hidden in frame 1): no item, unlike CTVIS
  assert items.item_mask.tolist() == [False, False, True, False, True, False]
  np.testing.assert_allclose(items.positives[4], [1.0, 1.0])
  assert items.negative_mask[2].tolist() == [False, True] and items.negative_mask[4].tolist() == [False, False]
  back = jnp.ones((3, 1, 2))
  with_b = mm.ctvis_reference_items(e, present, background=back)
  assert with_b.negatives.shape == (6, 3, 2) and with_b.negative_mask[:, 2].tolist() == [False] * 2 + [True] * 4


def test_items_and_loss_grad():
  e, present = _clip()  # the shapes of the tests above: their compiled programs are reused
  key = jax.random.key(4)

  def f(x):
    return mm.ctvis_contrastive_loss(mm.ctvis_contrastive_items(x, present, key=key, noise_rate=0.3))

  val, g = jax.value_and_grad(f)(e)
  np.testing.assert_allclose(val, f(e), rtol=1e-5)
  assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_noise():
  e, present = _clip()
  same, p0 = mm.ctvis_noise(jax.random.key(0), e, present, rate=0.0)
  np.testing.assert_array_equal(same, e) and np.testing.assert_array_equal(p0, present)
  noisy, p1 = mm.ctvis_noise(jax.random.key(0), e, present, rate=1.0)
  assert p1.tolist() == [[True, True]] * 3  # every absent entry took an embedding
  np.testing.assert_allclose(noisy[1, 1], [1.0, 1.0])  # the only other embedding of frame 1
  np.testing.assert_allclose(noisy[present], e[present])  # present entries are never noised
  again, _ = mm.ctvis_noise(jax.random.key(0), e, present, rate=1.0)
  np.testing.assert_array_equal(again, noisy)
  back = jnp.full((3, 2, 2), -1.0)
  draws = [mm.ctvis_noise(jax.random.key(s), e, present, rate=1.0, background=back)[0][1, 1].tolist()
           for s in range(16)]
  assert {tuple(d) for d in draws} == {(1.0, 1.0), (-1.0, -1.0)}  # instance or background, both drawn
  # a frame with no candidate adds no noise
  _, p2 = mm.ctvis_noise(jax.random.key(0), e, jnp.zeros((3, 2), bool), rate=1.0)
  assert not p2.any()


def test_associate_threshold_and_full_slots():
  mem = mm.ctvis_memory_init(2, 2)
  ids, mem = mm.ctvis_associate(mem, jnp.array([[5.0, 0.0], [0.0, 5.0], [1.0, 1.0]]), jnp.array([True, True, False]))
  assert ids.tolist() == [0, 1, -1]
  # a third object: its scores over two tracks are about 1/2 each and one is taken: it needs a slot, none is free
  ids, mem = mm.ctvis_associate(mem, jnp.array([[0.0, 5.0], [5.0, 0.0], [-5.0, -5.0]]),
                                jnp.array([True, True, True]))
  assert ids.tolist() == [1, 0, -1]
  # a high threshold refuses every match: new tracks where slots are free
  mem2 = mm.ctvis_memory_init(4, 2)
  _, mem2 = mm.ctvis_associate(mem2, jnp.array([[5.0, 0.0]]), jnp.array([True]))
  ids, _ = mm.ctvis_associate(mem2, jnp.array([[5.0, 0.0]]), jnp.array([True]), threshold=1.0)
  assert ids.tolist() == [1]


def test_track_keeps_identities_through_occlusion():
  e = jnp.array([[[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]] * 4)
  det = jnp.array([[True, True, True], [True, False, True], [False, False, True], [True, True, True]])
  ids = np.asarray(mm.ctvis_track(e, det, num_slots=6))
  assert ids.tolist() == [[0, 1, 2], [0, -1, 2], [-1, -1, 2], [0, 1, 2]]
  with pytest.raises(ValueError, match="embeddings"):
    mm.ctvis_track(e.at[0, 0, 0].set(jnp.nan), det, num_slots=6)


def test_pseudo_video_deterministic_and_identity():
  img = jnp.asarray(np.random.default_rng(0).uniform(size=(9, 11, 2)), jnp.float32)
  a = mm.ctvis_pseudo_video(jax.random.key(5), img, num_frames=3)
  b = mm.ctvis_pseudo_video(jax.random.key(5), img, num_frames=3)
  c = mm.ctvis_pseudo_video(jax.random.key(6), img, num_frames=3)
  assert a.shape == (3, 9, 11, 2)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert not np.allclose(a[0], a[-1])  # the pose moves along the clip
  still = mm.ctvis_pseudo_video(jax.random.key(5), img, num_frames=3, max_rotation=0.0, max_scale=0.0, max_shift=0.0)
  np.testing.assert_allclose(still, jnp.broadcast_to(img, (3, 9, 11, 2)), atol=1e-6)


def test_pseudo_video_masks_follow_the_image():
  mask = (jnp.arange(64).reshape(8, 8) % 3 == 0).astype(jnp.float32)
  img = jnp.stack([mask * 2.0, mask], axis=-1)
  clip = mm.ctvis_pseudo_video(jax.random.key(1), img, num_frames=3, order=0)
  alone = mm.ctvis_pseudo_video(jax.random.key(1), mask, num_frames=3, order=0)
  np.testing.assert_array_equal(clip[..., 1], alone)
  np.testing.assert_array_equal(clip[..., 0], 2.0 * alone)
  assert set(np.unique(np.asarray(alone)).tolist()) <= {0.0, 1.0}  # nearest: still a mask


def test_shift_by_hand():
  img = jnp.zeros((5, 5)).at[2, 2].set(1.0)
  # rotation and scale off; a shift u * 0.2 * 5 = u pixels along each axis, u ~ U(-1, 1) per pose
  clip = mm.ctvis_pseudo_video(jax.random.key(3), img, num_frames=2, max_rotation=0.0, max_scale=0.0,
                               max_shift=0.2, order=1)
  u = jax.random.uniform(jax.random.key(3), (2, 4), minval=-1.0, maxval=1.0)
  for t in range(2):
    dy, dx = float(u[t, 2]), float(u[t, 3])
    # the bright pixel's mass lands around (2 + dy, 2 + dx): its centroid
    w = np.asarray(clip[t])
    yy, xx = np.mgrid[:5, :5]
    np.testing.assert_allclose([(w * yy).sum() / w.sum(), (w * xx).sum() / w.sum()], [2 + dy, 2 + dx], atol=1e-5)


@pytest.mark.parametrize("call, name", [
    (lambda: mm.ctvis_memory_init(0, 2), "num_slots"),
    (lambda: mm.ctvis_memory_init(2, 2.0), "dim"),
    (lambda: mm.ctvis_memory_update(mm.ctvis_memory_init(2, 2), jnp.ones((3, 2)), jnp.ones(2, bool)), "embeddings"),
    (lambda: mm.ctvis_memory_update(mm.ctvis_memory_init(2, 2), jnp.ones((2, 2)), jnp.ones(2)), "present"),
    (lambda: mm.ctvis_memory_update(mm.ctvis_memory_init(2, 2), jnp.ones((2, 2)), jnp.ones(2, bool), momentum=1.5),
     "momentum"),
    (lambda: mm.ctvis_memory_update((1, 2), jnp.ones((2, 2)), jnp.ones(2, bool)), "memory"),
    (lambda: mm.ctvis_contrastive_items(jnp.ones((1, 2, 2)), jnp.ones((1, 2), bool)), "embeddings"),
    (lambda: mm.ctvis_contrastive_items(jnp.ones((3, 2, 2)), jnp.ones((3, 3), bool)), "present"),
    (lambda: mm.ctvis_contrastive_items(jnp.ones((3, 2, 2)), jnp.ones((3, 2), bool), noise_rate=0.1), "key"),
    (lambda: mm.ctvis_contrastive_items(jnp.ones((3, 2, 2)), jnp.ones((3, 2), bool), average_prob=-0.1),
     "average_prob"),
    (lambda: mm.ctvis_reference_items(jnp.ones((3, 2), jnp.float32), jnp.ones((3, 2), bool)), "embeddings"),
    (lambda: mm.ctvis_reference_items(jnp.ones((3, 2, 2)), jnp.ones((3, 2), bool), background=jnp.ones((2, 1, 2))),
     "background"),
    (lambda: mm.ctvis_contrastive_loss((1, 2)), "items"),
    (lambda: mm.ctvis_noise(0, jnp.ones((3, 2, 2)), jnp.ones((3, 2), bool), rate=0.1), "key"),
    (lambda: mm.ctvis_noise(jax.random.key(0), jnp.ones((3, 2, 2)), jnp.ones((3, 2), bool), rate=2.0), "rate"),
    (lambda: mm.ctvis_track(jnp.ones((2, 2, 2)), jnp.ones((2, 2), bool), num_slots=0), "num_slots"),
    (lambda: mm.ctvis_associate(mm.ctvis_memory_init(2, 3), jnp.ones((2, 2)), jnp.ones(2, bool)), "embeddings"),
    (lambda: mm.ctvis_associate(mm.ctvis_memory_init(2, 2), jnp.ones((2, 2)), jnp.ones(2, bool), threshold=-1.0),
     "threshold"),
    (lambda: mm.ctvis_pseudo_video(jax.random.key(0), jnp.ones((4,)), num_frames=2), "image"),
    (lambda: mm.ctvis_pseudo_video(jax.random.key(0), jnp.ones((4, 4), jnp.int32), num_frames=2), "image"),
    (lambda: mm.ctvis_pseudo_video(jax.random.key(0), jnp.ones((4, 4)), num_frames=0), "num_frames"),
    (lambda: mm.ctvis_pseudo_video(jax.random.key(0), jnp.ones((4, 4)), num_frames=2, max_scale=1.0), "max_scale"),
    (lambda: mm.ctvis_pseudo_video(jax.random.key(0), jnp.ones((4, 4)), num_frames=2, order=3), "order"),
    (lambda: mm.ctvis_pseudo_video(None, jnp.ones((4, 4)), num_frames=2), "key"),
])
def test_bad_inputs(call, name):
  with pytest.raises((ValueError, TypeError), match=f"{name}"):
    call()
