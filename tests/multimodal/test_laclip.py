"""LaCLIP's text sampling: uniform over {original, rewrites}, a seeded grain transform that resumes exactly,
and CLIP when there are no rewrites."""

import grain
import numpy as np
import pytest
from scipy import stats

from jaxdyn.data import CaptionVocab, PairedData, with_rewrites
from jaxdyn.multimodal import LaclipTextSampler, LaclipVariants, laclip_choose, laclip_pipeline, laclip_variants

CAPTIONS = ("a photo of a digit zero", "here is 1 , a thin digit", "the number two", "3", "a scan of a four",
            "5", "six", "the digit 7")
REWRITES = ((), ("the digit one", "1 digit"), ("2 , a numeral",), ("three", "the figure 3", "a 3"),
            ("four",), (), ("a six", "6"), ("seven", "7 number", "the 7 figure"))


def _data(rewrites=REWRITES, copies=1):
  n = len(CAPTIONS) * copies
  images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1), np.float32)
  return PairedData(images=images, labels=np.arange(n, dtype=np.int32) % 10, captions=CAPTIONS * copies,
                    rewrites=tuple(rewrites) * copies, attributes={}, vocab=CaptionVocab.build(), num_classes=10)


def _iter(ds):
  """An iterator without grain's default 500-batch prefetch (which dominates these tests' time)."""
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1)))


def _chi2_ok(counts, alpha=1e-4):
  """Pearson's chi-square test of uniformity at level ``alpha`` (draws are seeded: the test is deterministic)."""
  counts = np.asarray(counts, np.float64)
  expected = counts.sum() / len(counts)
  stat = float(((counts - expected) ** 2 / expected).sum())
  return stat < stats.chi2.ppf(1 - alpha, len(counts) - 1), stat


def test_variants_encode_original_first_then_rewrites():
  d = _data()
  var = laclip_variants(d)
  assert isinstance(var, LaclipVariants)
  assert var.tokens.shape == (8, 4, d.max_words() + 2) and var.tokens.dtype == np.int32
  assert var.counts.tolist() == [1, 3, 2, 4, 2, 1, 3, 4]
  for i in range(8):
    assert d.vocab.decode(var.tokens[i, :var.counts[i]]) == list(d.texts(i))
    assert not var.tokens[i, var.counts[i]:].any()  # padding rows, never drawn
  assert laclip_variants(d, max_len=20).tokens.shape[2] == 20
  with pytest.raises(ValueError, match=f"max_len: must be an int >= {d.max_words() + 2}"):
    laclip_variants(d, max_len=d.max_words() + 1)
  with pytest.raises(TypeError, match="data: must be a jaxdyn.data.PairedData"):
    laclip_variants(CAPTIONS)


def test_choose_is_uniform_over_variants():
  rng = np.random.default_rng(0)
  for k in (2, 3, 5):
    draws = laclip_choose(np.full(30_000, k, np.int32), rng)
    assert draws.min() == 0 and draws.max() == k - 1
    ok, stat = _chi2_ok(np.bincount(draws, minlength=k))
    assert ok, (k, stat)
  # Mixed counts in one batch: each image draws from its own range.
  counts = np.tile(np.array([1, 2, 4], np.int32), 10_000)
  draws = laclip_choose(counts, rng)
  assert (draws[counts == 1] == 0).all()
  for k in (2, 4):
    ok, stat = _chi2_ok(np.bincount(draws[counts == k], minlength=k))
    assert ok, (k, stat)
  # A biased draw is caught by the same bound (the test can fail): variant 0 with probability 0.3 of 2.
  biased = (rng.random(30_000) < 0.7).astype(int)
  assert not _chi2_ok(np.bincount(biased, minlength=2))[0]


def test_choose_without_rewrites_is_clip_and_bad_inputs():
  assert laclip_choose(np.array([3, 4, 1]), np.random.default_rng(0), rewrites=False).tolist() == [0, 0, 0]
  assert laclip_choose(np.zeros(0, np.int32), np.random.default_rng(0)).shape == (0,)
  with pytest.raises(ValueError, match="counts: every image needs at least one variant"):
    laclip_choose(np.array([2, 0]), np.random.default_rng(0))
  with pytest.raises(ValueError, match="counts: must be a 1-D integer array"):
    laclip_choose(np.array([2.0, 1.0]), np.random.default_rng(0))
  with pytest.raises(TypeError, match="rng: must be a numpy.random.Generator"):
    laclip_choose(np.array([2]), 0)
  with pytest.raises(TypeError, match="rewrites: must be a bool"):
    laclip_choose(np.array([2]), np.random.default_rng(0), rewrites=1)


def test_sampler_bad_inputs():
  var = laclip_variants(_data())
  with pytest.raises(TypeError, match="variants: must be a LaclipVariants"):
    LaclipTextSampler((var.tokens, var.counts))
  with pytest.raises(ValueError, match="text_key: must be a non-empty str"):
    LaclipTextSampler(var, text_key="")
  s = LaclipTextSampler(var)
  with pytest.raises(ValueError, match="element: must be a dict holding 'index'"):
    s.random_map({"idx": np.arange(2)}, np.random.default_rng(0))
  with pytest.raises(ValueError, match=r"element: 'index' must be 1-D integer indices in \[0, 8\)"):
    s.random_map({"index": np.array([0, 8])}, np.random.default_rng(0))


def test_sampler_draws_uniformly_per_image():
  d = _data()
  var = laclip_variants(d)
  sampler = LaclipTextSampler(var)
  rng = np.random.default_rng(11)
  seen = {i: [] for i in range(8)}
  for _ in range(3000):  # each image drawn 3,000 times
    b = sampler.random_map({"index": np.arange(8), "image": d.images}, rng)
    np.testing.assert_array_equal(b["text"], var.tokens[np.arange(8), b["variant"]])
    for i, k in enumerate(b["variant"]):
      seen[i].append(int(k))
  for i, ks in seen.items():
    if var.counts[i] == 1:
      assert max(ks) == 0
      continue
    ok, stat = _chi2_ok(np.bincount(ks, minlength=int(var.counts[i])))
    assert ok and max(ks) == var.counts[i] - 1, (i, stat)


def test_pipeline_texts_are_drawn_uniformly():
  d = _data(copies=4)  # 32 images
  var = laclip_variants(d)
  it = _iter(laclip_pipeline(d, batch_size=32, seed=3))
  by_count = {k: [] for k in (2, 3, 4)}
  for _ in range(60):  # 60 epochs
    b = next(it)
    np.testing.assert_array_equal(b["text"], var.tokens[b["index"], b["variant"]])
    np.testing.assert_array_equal(b["image"][:, 0, 0, 0], b["index"])  # image i is filled with i
    assert (b["variant"] < var.counts[b["index"]]).all()
    for i, k in zip(b["index"], b["variant"]):
      if var.counts[i] > 1:
        by_count[int(var.counts[i])].append(int(k))
  for k, ks in by_count.items():  # 480, 480 and 480 draws of images with 2, 3 and 4 variants
    ok, stat = _chi2_ok(np.bincount(ks, minlength=k))
    assert ok and max(ks) == k - 1, (k, stat)


def test_no_rewrites_equals_clip():
  d = _data()
  plain = with_rewrites(d, [()] * len(d))
  max_len = d.max_words() + 2
  clip = laclip_pipeline(d, batch_size=4, seed=5, max_len=max_len, rewrites=False)
  laclip_none = laclip_pipeline(plain, batch_size=4, seed=5, max_len=max_len)
  laclip = laclip_pipeline(d, batch_size=4, seed=5, max_len=max_len)
  differs = 0
  for a, b, c, _ in zip(_iter(clip), _iter(laclip_none), _iter(laclip), range(12)):
    for key in ("index", "image", "label", "text", "variant"):
      np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(a["index"], c["index"])  # the same images at every step ...
    assert not a["variant"].any()
    differs += int((a["text"] != c["text"]).any())
  assert differs > 6  # ... and other texts when there are rewrites


def test_resumed_iterator_draws_the_same_texts():
  d = _data()
  ds = laclip_pipeline(d, batch_size=4, seed=7)
  it = _iter(ds)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  resumed = _iter(laclip_pipeline(d, batch_size=4, seed=7))  # a fresh process would rebuild the pipeline
  resumed.set_state(state)
  for a, b in zip(expected, (next(resumed) for _ in range(4))):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  # Step s's draws are a function of (seed, s) alone; another seed draws otherwise.
  np.testing.assert_array_equal(ds[5]["text"], expected[2]["text"])
  other = laclip_pipeline(d, batch_size=4, seed=8)
  assert any((a["variant"] != b["variant"]).any() for a, b, _ in zip(_iter(other), _iter(ds), range(4)))
