import numpy as np
import pytest

from jaxdyn import data


def _images(b=6, h=5, w=7, c=2):
  return np.random.default_rng(0).random((b, h, w, c)).astype(np.float32) + 1.0  # no zeros inside


def test_no_padding_no_flip_is_the_identity():
  x = _images()
  np.testing.assert_array_equal(data.random_crop_flip(np.random.default_rng(1), x, padding=0, flip=False), x)


def test_flip_only_gives_each_image_or_its_mirror_about_half_the_time():
  x = _images(b=400)
  out = data.get_augmentation("flip")(np.random.default_rng(2), x)
  same = np.all(out == x, axis=(1, 2, 3))
  mirrored = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(same ^ mirrored)
  assert 160 <= mirrored.sum() <= 240  # Binomial(400, 1/2): mean 200, sd 10


def test_every_crop_is_a_window_of_the_padded_image_and_every_offset_occurs():
  p = 2
  x = _images(b=300, h=4, w=4, c=1)
  out = data.random_crop_flip(np.random.default_rng(3), x, padding=p, flip=True)
  assert out.shape == x.shape and out.dtype == x.dtype
  padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
  seen = set()
  for b in range(len(x)):
    matches = [(dy, dx, f) for dy in range(2 * p + 1) for dx in range(2 * p + 1) for f in (False, True)
               if np.array_equal(out[b], (lambda win: win[:, ::-1] if f else win)(
                   padded[b, dy:dy + 4, dx:dx + 4]))]
    assert matches, b
    seen.update(matches)
  # The seed is fixed, so this is deterministic; for a random seed, P(some offset never drawn) <=
  # 25 (24/25)^300 ~ 1e-4.
  assert {(dy, dx) for dy, dx, _ in seen} == {(i, j) for i in range(2 * p + 1) for j in range(2 * p + 1)}
  assert {f for _, _, f in seen} == {False, True}


def test_pipeline_augments_deterministically_and_resumes():
  x = np.random.default_rng(0).random((64, 8, 8, 3)).astype(np.float32)
  src = data.ArraySource(x, np.arange(64, dtype=np.int32) % 10)
  plain = data.train_pipeline(src, batch_size=16, seed=0)
  aug = data.train_pipeline(src, batch_size=16, seed=0, augment="crop_flip")
  again = data.train_pipeline(src, batch_size=16, seed=0, augment="crop_flip")
  for s in range(5):
    np.testing.assert_array_equal(aug[s]["x"], again[s]["x"])
    np.testing.assert_array_equal(aug[s]["y"], plain[s]["y"])  # the same examples, only x changes
    assert not np.array_equal(aug[s]["x"], plain[s]["x"])
  it = iter(aug)
  for _ in range(3):
    next(it)
  resumed = iter(data.train_pipeline(src, batch_size=16, seed=0, augment="crop_flip"))
  resumed.set_state(it.get_state())
  np.testing.assert_array_equal(next(resumed)["x"], next(it)["x"])


def test_processes_draw_differently():
  x = np.ones((64, 8, 8, 3), np.float32)  # the same image everywhere: only the draws differ
  src = data.ArraySource(x, np.zeros(64, np.int32))
  a, b = (data.train_pipeline(src, batch_size=16, seed=0, process_index=i, process_count=2, augment="crop_flip")
          for i in (0, 1))
  assert not np.array_equal(a[0]["x"], b[0]["x"])


def test_bad_augmentation_arguments():
  with pytest.raises(ValueError, match="name: must be an augmentation in"):
    data.get_augmentation("cutout")
  with pytest.raises(ValueError, match="x: random_crop_flip needs an NHWC"):
    data.random_crop_flip(np.random.default_rng(0), np.zeros((4, 40)))
  with pytest.raises(ValueError, match="padding: must be an int >= 0"):
    data.random_crop_flip(np.random.default_rng(0), _images(), padding=-1)
