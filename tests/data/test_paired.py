"""Paired image-text data: rendering, the caption grammar, its rewrites, the vocabulary, the rewrite and TFDS hooks."""

import json
import re

import numpy as np
import pytest
from scipy import ndimage

from jaxdyn import data
from jaxdyn.data import _paired

TABLES = {"size": _paired.SIZES, "thickness": _paired.THICKNESS, "horizontal": _paired.HORIZONTAL,
          "vertical": _paired.VERTICAL}


@pytest.fixture(scope="module")
def eval_data():
  return data.paired_digits("eval", num_rewrites=3, seed=1)


def test_render_digit_places_scales_and_thickens():
  digit = np.arange(64, dtype=np.float32).reshape(8, 8) / 64
  out = data.render_digit(digit, canvas=24, size=0, thickness=0, horizontal=2, vertical=0)
  np.testing.assert_array_equal(out[0:8, 16:24], digit)
  assert out.sum() == pytest.approx(digit.sum())
  big = data.render_digit(digit, canvas=24, size=1, thickness=0, horizontal=1, vertical=1)
  np.testing.assert_array_equal(big[4:20, 4:20], np.kron(digit, np.ones((2, 2))))
  thick = data.render_digit(digit, canvas=24, size=0, thickness=1, horizontal=0, vertical=2)
  window = np.lib.stride_tricks.sliding_window_view(np.pad(digit, 1, constant_values=-np.inf), (3, 3))
  np.testing.assert_array_equal(thick[16:24, 0:8], window.max(axis=(-1, -2)))
  np.testing.assert_array_equal(thick[16:24, 0:8], ndimage.grey_dilation(digit, size=(3, 3)))


def _facts(text):
  """Attribute name -> the attribute values whose synonyms ``text`` uses."""
  words = set(re.findall(r"[a-z0-9]+", text))
  facts = {}
  for name, table in TABLES.items():
    for value, synonyms in table.items():
      if words & set(synonyms):
        facts.setdefault(name, set()).add(value)
  return facts


def test_captions_and_rewrites_state_true_facts_only(eval_data):
  d = eval_data
  assert d.images.shape == (360, 24, 24, 1) and d.labels.shape == (360,) and len(d.rewrites[0]) == 3
  for i in range(len(d)):
    truth = {name: _paired.ATTRIBUTE_VALUES[name][d.attributes[name][i]] for name in _paired.ATTRIBUTES}
    stated = None
    for text in d.texts(i):
      words = text.split()
      assert (_paired.CLASS_NAMES[d.labels[i]] in words) or (_paired.CLASS_NUMERALS[d.labels[i]] in words), text
      facts = _facts(text)
      # "middle" names both a vertical position and a horizontal synonym; accept it where either is true.
      for name, values in facts.items():
        assert truth[name] in values or "middle" in text, (text, name, values, truth)
      stated = set(facts) if stated is None else stated
      assert {k for k in facts if k not in ("horizontal", "vertical")} == {
          k for k in stated if k not in ("horizontal", "vertical")}, (d.texts(i))


def test_originals_use_the_narrow_templates_and_rewrites_vary(eval_data):
  # Originals open with a filler or a class word (templates 0 and 1); rewrites use all six templates.
  openers = {w for f in _paired.FILLERS for w in [f.split()[0]]}
  assert all(c.split()[0] in openers for c in eval_data.captions)
  firsts = {r.split()[0] for rs in eval_data.rewrites for r in rs}
  assert {"the", "placed", "a"} <= firsts
  assert len({r for rs in eval_data.rewrites for r in rs}) > 0.9 * 3 * len(eval_data)


def test_paired_digits_is_deterministic_under_its_seed():
  a = data.paired_digits("eval", num_rewrites=1, seed=3)
  b = data.paired_digits("eval", num_rewrites=1, seed=3)
  c = data.paired_digits("eval", num_rewrites=1, seed=4)
  assert a.captions == b.captions and a.rewrites == b.rewrites
  np.testing.assert_array_equal(a.images, b.images)
  assert a.captions != c.captions
  np.testing.assert_array_equal(a.labels, c.labels)  # the split is load_dataset's, not the seed's


def test_keep_prob_bounds_state_everything_or_nothing():
  full = data.paired_digits("eval", num_rewrites=0, keep_prob=1.0)
  bare = data.paired_digits("eval", num_rewrites=0, keep_prob=0.0)
  assert all(set(_facts(c)) >= {"size", "thickness"} for c in full.captions)
  assert not any(_facts(c).keys() & {"size", "thickness"} for c in bare.captions)
  assert all(len(r) == 0 for r in bare.rewrites)


def test_vocab_round_trip_and_image_related_ids(eval_data):
  v = eval_data.vocab
  tokens = v.encode(eval_data.captions, eval_data.max_words() + 2)
  assert tokens[:, 0].tolist() == [_paired.BOS] * len(eval_data)
  assert (tokens == _paired.EOS).sum(axis=1).tolist() == [1] * len(eval_data)
  assert v.decode(tokens) == [" ".join(c.split()) for c in eval_data.captions]
  related = {w for w, r in zip(v.words, v.image_related) if r}
  assert related == set(_paired.IMAGE_WORDS)
  assert {"digit", "photo", "the", "<eos>"}.isdisjoint(related)
  with pytest.raises(ValueError, match="outside the vocabulary"):
    v.encode(["a zebra"], 8)
  with pytest.raises(ValueError, match="max_len"):
    v.encode(["a photo of a thin 3 digit"], 5)


def test_user_rewrites_from_a_file(tmp_path, eval_data):
  path = tmp_path / "rewrites.jsonl"
  path.write_text(json.dumps({"index": 2, "rewrites": ["a zebra drew this 7", "seven !"]}) + "\n\n"
                  + json.dumps({"index": 0, "rewrites": ["nothing"]}) + "\n")
  rewrites = data.load_rewrites(path, len(eval_data))
  assert rewrites[2] == ("a zebra drew this 7", "seven !") and rewrites[0] == ("nothing",) and rewrites[1] == ()
  d = data.with_rewrites(eval_data, rewrites)
  assert d.texts(2)[1:] == ("a zebra drew this 7", "seven !") and d.captions == eval_data.captions
  assert "zebra" in d.vocab.words and "zebra" not in eval_data.vocab.words
  d.vocab.encode([t for i in range(len(d)) for t in d.texts(i)], d.max_words() + 2)
  path.write_text(json.dumps({"index": 2, "rewrites": ["a"]}) + "\n" + json.dumps({"index": 2, "rewrites": ["b"]}))
  with pytest.raises(ValueError, match="line 2 .* repeats index 2"):
    data.load_rewrites(path, len(eval_data))


def test_load_tfds_paired_reads_captions_labels_and_extra_captions(monkeypatch):
  from jaxdyn.data import _sources
  recs = [{"image": np.full((4, 4, 3), 51 * i, np.uint8), "label": np.int64(i % 2),
           "captions": {"text": np.array([f"a cat {i}".encode(), b"one cat", b"a feline"], object)}}
          for i in range(3)]
  monkeypatch.setattr(_sources, "tfds_data_source", lambda name, split, data_dir: recs)
  d = data.load_tfds_paired("coco_captions", text="captions/text", label="label", num_classes=2, max_examples=2)
  assert len(d) == 2 and d.captions == ("a cat 0", "a cat 1") and d.rewrites[1] == ("one cat", "a feline")
  np.testing.assert_allclose(d.images[1], 0.2)
  assert d.labels.tolist() == [0, 1] and d.num_classes == 2 and d.attributes == {}
  assert {"cat", "feline"} <= set(d.vocab.words)
  with pytest.raises(ValueError, match="text: tfds:coco_captions records have no 'caption'"):
    data.load_tfds_paired("coco_captions")
