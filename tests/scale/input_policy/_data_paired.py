"""Input-policy declarations for the paired image-text data of `jaxdyn.data` (merged by ``data.py``)."""

from __future__ import annotations

import json
import pathlib
import tempfile

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, collector, fn, non_integral

DATA = "jaxdyn.data"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

DIGIT = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)


def _vocab():
  return fn(f"{DATA}.CaptionVocab").build()


def _paired(**kw):
  return fn(f"{DATA}.paired_digits")(**{"split": "eval", "num_rewrites": 1, **kw})


def _render(**kw):
  return fn(f"{DATA}.render_digit")(**{"digit": DIGIT, "canvas": 24, "size": 1, "thickness": 0, "horizontal": 1,
                                       "vertical": 2, **kw})


case(f"{DATA}.paired_digits", "split", st.text(max_size=6).filter(lambda s: s not in ("train", "eval")))(
    lambda v: _paired(split=v))
case(f"{DATA}.paired_digits", "canvas", st.one_of(st.integers(max_value=15), non_integral, st.booleans()))(
    lambda v: _paired(canvas=v))
case(f"{DATA}.paired_digits", "copies", bad_count)(lambda v: _paired(copies=v))
case(f"{DATA}.paired_digits", "num_rewrites", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: _paired(num_rewrites=v))
case(f"{DATA}.paired_digits", "keep_prob", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.000001)))(
    lambda v: _paired(keep_prob=v))
case(f"{DATA}.paired_digits", "seed", st.one_of(st.integers(max_value=-1), non_integral))(lambda v: _paired(seed=v))

case(f"{DATA}.render_digit", "digit", st.sampled_from([(8,), (8, 9), (2, 8, 8)]))(
    lambda shape: _render(digit=np.zeros(shape, np.float32)))
case(f"{DATA}.render_digit", "digit", st.sampled_from([np.nan, np.inf, -np.inf]))(
    lambda v: _render(digit=np.where(np.eye(8) > 0, v, 0.0).astype(np.float32)))
for _arg, _hi in (("size", 1), ("thickness", 1), ("horizontal", 2), ("vertical", 2)):
  case(f"{DATA}.render_digit", _arg, st.one_of(st.integers(max_value=-1), st.integers(min_value=_hi + 1),
                                               non_integral))(lambda v, a=_arg: _render(**{a: v}))
case(f"{DATA}.render_digit", "canvas", st.integers(max_value=15))(lambda v: _render(canvas=v))

case(f"{DATA}.CaptionVocab", "words", st.sampled_from([("a", "b"), ("<pad>", "<bos>", "<eos>", "a", "a"), ("<bos>", "<pad>", "<eos>"), ()]))(
    lambda v: fn(f"{DATA}.CaptionVocab")(tuple(v)))
case(f"{DATA}.CaptionVocab", "max_len", st.one_of(st.integers(max_value=2), non_integral))(
    lambda v: _vocab().encode(["a photo of 3"], v))
case(f"{DATA}.CaptionVocab", "max_len", st.integers(3, 5))(lambda v: _vocab().encode(["a photo of a thin 3 digit"], v))
case(f"{DATA}.CaptionVocab", "texts", st.sampled_from(["one text", [3], ["zebra crossing"], [b"bytes"]]))(
    lambda v: _vocab().encode(v, 12))
case(f"{DATA}.CaptionVocab", "tokens", st.sampled_from([np.array([1, 2]), np.array([[1, 999]]), np.array([[-1]]),
                                                        np.array([[1.0]])]))(lambda v: _vocab().decode(v))


_REWRITES = pathlib.Path(tempfile.mkdtemp()) / "rewrites.jsonl"
_REWRITES.write_text(json.dumps({"index": 1, "rewrites": ["a thin 3", "3 , thin"]}) + "\n")


def _tfds_paired(**kw):
  """`load_tfds_paired` on three in-memory records standing in for a prepared TFDS source."""
  from jaxdyn.data import _sources  # pylint: disable=g-import-not-at-top
  recs = [{"image": np.full((4, 4, 3), 10 * i, np.uint8), "label": np.int64(i),
           "captions": {"text": np.array([b"a cat", b"one cat"], object)}} for i in range(3)]
  saved = _sources.tfds_data_source
  _sources.tfds_data_source = lambda name, split, data_dir: recs
  try:
    return fn(f"{DATA}.load_tfds_paired")(text="captions/text", label="label", **kw).images
  finally:
    _sources.tfds_data_source = saved


def _rewrites_file(tmp_line: str):
  with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
    f.write(tmp_line + "\n")
  return fn(f"{DATA}.load_rewrites")(f.name, 3)


case(f"{DATA}.load_rewrites", "path", st.sampled_from([
    "not json", json.dumps({"index": 3, "rewrites": ["a"]}), json.dumps({"index": -1, "rewrites": ["a"]}),
    json.dumps({"index": True, "rewrites": ["a"]}), json.dumps({"index": 0, "rewrites": "a"}),
    json.dumps({"index": 0, "rewrites": [""]}), json.dumps([0, ["a"]])]))(_rewrites_file)
case(f"{DATA}.load_rewrites", "num_images", bad_count)(lambda v: fn(f"{DATA}.load_rewrites")("x.jsonl", v))
case(f"{DATA}.with_rewrites", "data", st.sampled_from([None, "data", 3]))(
    lambda v: fn(f"{DATA}.with_rewrites")(v, []))
case(f"{DATA}.with_rewrites", "rewrites", st.integers(0, 5).filter(lambda n: n != 360))(
    lambda n: fn(f"{DATA}.with_rewrites")(_paired(), [()] * n))
case(f"{DATA}.load_tfds_paired", "max_examples", bad_count)(
    lambda v: _tfds_paired(name="coco_captions", num_classes=3, max_examples=v))
case(f"{DATA}.load_tfds_paired", "text", st.sampled_from(["", None, 3]))(
    lambda v: fn(f"{DATA}.load_tfds_paired")("coco_captions", text=v))
case(f"{DATA}.load_tfds_paired", "num_classes", bad_count)(
    lambda v: _tfds_paired(name="coco_captions", num_classes=v))

_NAMES = "a name, checked by a Case"
SPECS += [
    Spec(f"{DATA}.paired_digits", dict(split="eval", canvas=24, copies=1, num_rewrites=1, keep_prob=0.5, seed=0),
         call=lambda **kw: fn(f"{DATA}.paired_digits")(**kw).images,
         numbers=("canvas", "copies", "num_rewrites", "keep_prob", "seed"), not_applicable={"split": _NAMES}),
    Spec(f"{DATA}.render_digit", dict(digit=DIGIT, canvas=24, size=1, thickness=1, horizontal=0, vertical=2),
         floats=("digit",), numbers=("canvas", "size", "thickness", "horizontal", "vertical"),
         not_applicable={"batch": "one image, its shape checked by a Case"}),
    Spec(f"{DATA}.CaptionVocab", dict(texts=["a photo of 3"], max_len=12),
         call=lambda texts, max_len: _vocab().encode(texts, max_len), numbers=("max_len",),
         not_applicable={"words": "a tuple of words, checked by a Case"}),
    Spec(f"{DATA}.load_rewrites", dict(path=str(_REWRITES), num_images=3), numbers=("num_images",)),
    Spec(f"{DATA}.with_rewrites", dict(), call=lambda: fn(f"{DATA}.with_rewrites")(_paired(), [("a", "b")] * 360),
         not_applicable={"data": "a PairedData, checked by a Case", "rewrites": "sequences of texts, checked by a Case"}),
    Spec(f"{DATA}.load_tfds_paired", dict(name="coco_captions", num_classes=3, max_examples=2),
         call=_tfds_paired, numbers=("num_classes", "max_examples"), not_applicable={
             "name": "a TFDS dataset name", "split": "a TFDS split string", "image": "a feature name",
             "text": "a feature name, checked by a Case",
             "label": "a feature name", "data_dir": "a TFDS directory path"}),
]
EXEMPT = {f"{DATA}.PairedData": "a frozen record built (and checked) by paired_digits and load_tfds_paired"}
