"""Paired image-text data that needs no download: rendered digits with grammar captions and rewrites.

`paired_digits` renders scikit-learn's 8x8 digits onto a larger canvas with drawn attributes (size,
stroke thickness, position) and captions each image from those attributes with a small grammar, plus
filler words that do not depend on the image. LaCLIP's caption rewrites (Fan et al., NeurIPS 2023,
https://arxiv.org/abs/2305.20088) come from the same grammar's paraphrases: the same facts in other
templates, word orders and synonyms. The paper rewrites captions with an LLM (ChatGPT, Bard, human
rewrites as in-context examples, then LLaMA); this module uses a grammar, which keeps the facts exactly
and is reproducible offline. `load_rewrites` / `with_rewrites` plug in user-supplied rewrites (e.g. an
LLM's) from a JSON-lines file, and `load_tfds_paired` reads a prepared TFDS image-text dataset the same
way (its extra captions as rewrites).

Captions are word-level: `CaptionVocab` maps words to ids (``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2) and
marks the image-related words (the attribute words: a digit's name or numeral, size, thickness,
position), so a token-weighting study (PRIOR) can measure the tokens that depend on the image.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from collections.abc import Mapping, Sequence

import numpy as np

from jaxdyn import _validation

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CLASS_NUMERALS = tuple(str(i) for i in range(10))
NOUNS = ("digit", "number", "numeral", "figure")
SIZES = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
THICKNESS = {"thin": ("thin", "light", "fine"), "thick": ("thick", "bold", "heavy")}
HORIZONTAL = {"left": ("left",), "center": ("center", "middle"), "right": ("right",)}
VERTICAL = {"top": ("top", "upper"), "middle": ("middle", "central"), "bottom": ("bottom", "lower")}
FILLERS = ("a photo of", "an image of", "a picture showing", "a scan of", "look at", "here is", "we see",
           "this is")
TAILS = ("on a dark background", "from a form", "very clear", "handwritten", "in the dataset", "nice",
         "scanned today", "for the record")
ATTRIBUTES = ("size", "thickness", "horizontal", "vertical")
ATTRIBUTE_VALUES = {"size": tuple(SIZES), "thickness": tuple(THICKNESS), "horizontal": tuple(HORIZONTAL),
                    "vertical": tuple(VERTICAL)}

# Templates: slots ({...}) and literal words. A bracketed group [...] is dropped when a slot in it is empty
# (an attribute the caption leaves out, or no tail). Originals use the first two, rewrites all of them.
TEMPLATES = (
    "{filler} a [{size}] [{thickness}] {noun} {cls} [in the {vertical} {horizontal}] [{tail}]",
    "{filler} {cls} , a [{thickness}] [{size}] {noun} [at the {vertical} {horizontal}]",
    "[{vertical} {horizontal} :] {filler} the [{size}] {noun} {cls} [, drawn {thickness}]",
    "the {noun} {cls} [written {thickness}] [, {size} in size] [, {horizontal} {vertical}] [{tail}]",
    "[placed {vertical} {horizontal} ,] a [{size}] {cls} [drawn {thickness}]",
    "{cls} [( {horizontal} , {vertical} )] [{size}] [{thickness}] {noun} [{tail}]",
)
NUM_ORIGINAL_TEMPLATES = 2


def _words(text: str) -> list[str]:
  return re.findall(r"[a-z0-9<>]+|[^\sa-z0-9]", text.lower())


def _image_words() -> frozenset[str]:
  words = set(CLASS_NAMES) | set(CLASS_NUMERALS)
  for table in (SIZES, THICKNESS, HORIZONTAL, VERTICAL):
    for synonyms in table.values():
      words.update(synonyms)
  return frozenset(words)


IMAGE_WORDS = _image_words()


def _grammar_words() -> list[str]:
  words = set(IMAGE_WORDS) | set(NOUNS)
  for text in (*FILLERS, *TAILS, *TEMPLATES):
    words.update(w for w in _words(re.sub(r"\{\w+\}|[\[\]]", " ", text)))
  return sorted(words)


@dataclasses.dataclass(frozen=True)
class CaptionVocab:
  """A word-level caption vocabulary: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, then ``words``.

  ``encode`` lower-cases and splits a text into words and punctuation marks; a word outside the
  vocabulary raises (build the vocabulary from every text it will see: `CaptionVocab.build`).
  ``image_related[i]`` is True for the ids of image-related words (`IMAGE_WORDS`: what a caption says
  about its image's class and attributes).
  """

  words: tuple[str, ...]

  def __post_init__(self):
    if tuple(self.words[:3]) != SPECIALS or len(set(self.words)) != len(self.words):
      raise ValueError(f"words: must start with {SPECIALS} and hold no duplicates")
    object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

  @classmethod
  def build(cls, texts: Sequence[str] = ()) -> CaptionVocab:
    """The grammar's words plus every word of ``texts`` (sorted, so the ids do not depend on order)."""
    extra = set()
    for text in texts:
      if not isinstance(text, str):
        raise TypeError(f"texts: must be strings, got {type(text).__name__}")
      extra.update(_words(text))
    return cls(SPECIALS + tuple(sorted(set(_grammar_words()) | extra - set(SPECIALS))))

  @property
  def size(self) -> int:
    return len(self.words)

  @property
  def image_related(self) -> np.ndarray:
    return np.array([w in IMAGE_WORDS for w in self.words])

  def encode(self, texts: Sequence[str], max_len: int) -> np.ndarray:
    """``(len(texts), max_len)`` int32 ids: ``<bos>``, the words, ``<eos>``, then ``<pad>``.

    Raises ``ValueError`` for a text longer than ``max_len - 2`` words or holding an unknown word.
    """
    max_len = _validation.check_int("max_len", max_len, lower=3)
    if isinstance(texts, str):
      raise TypeError("texts: must be a sequence of strings, got one str")
    out = np.full((len(texts), max_len), PAD, np.int32)
    for row, text in enumerate(texts):
      if not isinstance(text, str):
        raise TypeError(f"texts: must be strings, got {type(text).__name__}")
      words = _words(text)
      if len(words) > max_len - 2:
        raise ValueError(f"max_len: text {row} has {len(words)} words, more than max_len - 2 = {max_len - 2}")
      unknown = [w for w in words if w not in self._index]
      if unknown:
        raise ValueError(f"texts: text {row} has words outside the vocabulary: {unknown[:5]} "
                         f"(build it with CaptionVocab.build(texts))")
      out[row, 0] = BOS
      out[row, 1:len(words) + 1] = [self._index[w] for w in words]
      out[row, len(words) + 1] = EOS
    return out

  def decode(self, tokens) -> list[str]:
    """Texts of id rows (stopping at ``<eos>``; ``<bos>`` and ``<pad>`` dropped)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
      raise ValueError(f"tokens: must be a 2-D integer array, got {tokens.dtype} of shape {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() >= self.size):
      raise ValueError(f"tokens: ids must lie in [0, {self.size})")
    texts = []
    for row in tokens:
      words = []
      for t in row:
        if t == EOS:
          break
        if t not in (PAD, BOS):
          words.append(self.words[t])
      texts.append(" ".join(words))
    return texts


@dataclasses.dataclass(frozen=True)
class PairedData:
  """Images with captions, their rewrites and (optionally) class labels and drawn attributes.

  Attributes:
    images: ``(N, H, W, C)`` float32 in [0, 1].
    labels: ``(N,)`` int32 class ids, or None (a TFDS dataset without labels).
    captions: N original captions.
    rewrites: N tuples of rewrites of each caption (possibly empty).
    attributes: attribute name -> ``(N,)`` int32 index into `ATTRIBUTE_VALUES` (empty for TFDS data).
    vocab: a `CaptionVocab` covering every caption and rewrite.
    num_classes: number of classes (0 without labels).
  """

  images: np.ndarray
  labels: np.ndarray | None
  captions: tuple[str, ...]
  rewrites: tuple[tuple[str, ...], ...]
  attributes: Mapping[str, np.ndarray]
  vocab: CaptionVocab
  num_classes: int

  def __len__(self) -> int:
    return len(self.captions)

  def texts(self, i: int) -> tuple[str, ...]:
    """Image ``i``'s caption variants: the original first, then its rewrites."""
    return (self.captions[i],) + self.rewrites[i]

  def max_words(self) -> int:
    """The most words in any caption or rewrite (``encode`` needs ``max_len >= max_words() + 2``)."""
    return max(len(_words(t)) for i in range(len(self)) for t in self.texts(i))


def _fill(template: str, parts: Mapping[str, str | None]) -> str:
  def bracket(m):
    inner = m.group(1)
    slots = re.findall(r"\{(\w+)\}", inner)
    return inner if all(parts.get(s) for s in slots) else ""
  text = re.sub(r"\[([^\]]*)\]", bracket, template)
  text = re.sub(r"\{(\w+)\}", lambda m: parts.get(m.group(1)) or "", text)
  return " ".join(text.split())


def _caption(rng: np.random.Generator, label: int, attrs: Mapping[str, int], keep: Mapping[str, bool],
             templates: Sequence[str]) -> str:
  """One caption of the facts ``label`` and the kept ``attrs``, in a drawn template and drawn synonyms."""
  tables = {"size": SIZES, "thickness": THICKNESS, "horizontal": HORIZONTAL, "vertical": VERTICAL}
  parts: dict[str, str | None] = {
      "cls": CLASS_NAMES[label] if rng.random() < 0.5 else CLASS_NUMERALS[label],
      "noun": NOUNS[rng.integers(len(NOUNS))],
      "filler": FILLERS[rng.integers(len(FILLERS))],
      "tail": TAILS[rng.integers(len(TAILS))] if rng.random() < 0.5 else None,
  }
  for name, table in tables.items():
    synonyms = table[ATTRIBUTE_VALUES[name][attrs[name]]]
    parts[name] = synonyms[rng.integers(len(synonyms))] if keep[name] else None
  return _fill(templates[rng.integers(len(templates))], parts)


def render_digit(digit: np.ndarray, *, canvas: int, size: int, thickness: int, horizontal: int,
                 vertical: int) -> np.ndarray:
  """An 8x8 digit on a ``(canvas, canvas)`` black canvas: scaled x1 (size 0) or x2 (size 1), its strokes
  widened by a 3x3 grey dilation (thickness 1), placed at left / center / right and top / middle /
  bottom (index 0, 1, 2: offsets 0, (canvas - s) / 2, canvas - s for a digit of side s)."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top  (scikit-learn's own dependency)

  digit = np.asarray(digit)
  if digit.ndim != 2 or digit.shape[0] != digit.shape[1] or not np.issubdtype(digit.dtype, np.floating):
    raise ValueError(f"digit: must be a square 2-D float image, got {digit.dtype} of shape {digit.shape}")
  _validation.check_finite("digit", digit)
  size = _validation.check_int("size", size, lower=0, upper=1)
  thickness = _validation.check_int("thickness", thickness, lower=0, upper=1)
  horizontal = _validation.check_int("horizontal", horizontal, lower=0, upper=2)
  vertical = _validation.check_int("vertical", vertical, lower=0, upper=2)
  canvas = _validation.check_int("canvas", canvas, lower=digit.shape[0] * (1 + size))
  img = np.kron(digit, np.ones((1 + size, 1 + size), np.float32)) if size else digit.astype(np.float32)
  if thickness:
    img = ndimage.grey_dilation(img, size=(3, 3))
  side = img.shape[0]
  free = canvas - side
  out = np.zeros((canvas, canvas), np.float32)
  r, c = (free * vertical) // 2, (free * horizontal) // 2
  out[r:r + side, c:c + side] = img
  return out


def paired_digits(split: str = "train", *, canvas: int = 24, copies: int = 1, num_rewrites: int = 3,
                  keep_prob: float = 0.5, seed: int = 0) -> PairedData:
  """Scikit-learn's digits rendered with drawn attributes and captioned by the grammar.

  Each of the split's digits (`jaxdyn.data.load_dataset("digits")`: 1,437 train, 360 eval) is rendered
  ``copies`` times, each with size, thickness and position drawn uniformly (`render_digit`). A caption
  always names the class (as a word or a numeral) and states the size, the thickness and the position
  (both coordinates) each with probability ``keep_prob``; its filler (``"a photo of"``, ...) and optional tail (``"handwritten"``, ...) do not
  depend on the image. Originals use the first `NUM_ORIGINAL_TEMPLATES` templates (a narrow, alt-text-like
  style); each of the ``num_rewrites`` rewrites states the same facts (the same kept attributes) in any of
  the `TEMPLATES` with fresh synonyms, which is what an LLM rewrite does in LaCLIP, without its errors.

  Args:
    split: ``"train"`` or ``"eval"``.
    canvas: canvas side in pixels, >= 16 (a large digit is 16 pixels).
    copies: renderings per digit, >= 1.
    num_rewrites: rewrites per caption, >= 0.
    keep_prob: probability that a caption states each attribute, in [0, 1].
    seed: seeds the attributes, captions and rewrites (the split is fixed by `load_dataset`).

  Returns:
    `PairedData` with ``num_classes=10`` and the four `ATTRIBUTES`.

  Example:
    >>> d = paired_digits("eval", num_rewrites=2)
    >>> d.images.shape, len(d.rewrites[0])
    ((360, 24, 24, 1), 2)
  """
  _validation.check_choice("split", split, ("train", "eval"))
  canvas = _validation.check_int("canvas", canvas, lower=16)
  copies = _validation.check_int("copies", copies, lower=1)
  num_rewrites = _validation.check_int("num_rewrites", num_rewrites, lower=0)
  keep_prob = _validation.check_real("keep_prob", keep_prob, lower=0.0, upper=1.0)
  seed = _validation.check_int("seed", seed, lower=0)
  from jaxdyn.data._sources import load_dataset  # pylint: disable=g-import-not-at-top

  ds = load_dataset("digits")
  source = ds.train if split == "train" else ds.eval
  digits = np.repeat(source.x[..., 0], copies, axis=0)
  labels = np.repeat(source.y, copies).astype(np.int32)
  n = len(labels)
  rng = np.random.default_rng([seed, 0 if split == "train" else 1])
  attributes = {name: rng.integers(0, len(ATTRIBUTE_VALUES[name]), n).astype(np.int32) for name in ATTRIBUTES}
  images = np.stack([
      render_digit(digits[i], canvas=canvas, **{k: int(v[i]) for k, v in attributes.items()}) for i in range(n)
  ])[..., None]
  captions, rewrites = [], []
  originals = TEMPLATES[:NUM_ORIGINAL_TEMPLATES]
  for i in range(n):
    attrs = {k: int(v[i]) for k, v in attributes.items()}
    keep = {k: bool(rng.random() < keep_prob) for k in ("size", "thickness", "horizontal")}
    keep["vertical"] = keep["horizontal"]  # a caption states the position whole or not at all
    captions.append(_caption(rng, int(labels[i]), attrs, keep, originals))
    rewrites.append(tuple(_caption(rng, int(labels[i]), attrs, keep, TEMPLATES) for _ in range(num_rewrites)))
  return PairedData(images=images, labels=labels, captions=tuple(captions), rewrites=tuple(rewrites),
                    attributes=attributes, vocab=CaptionVocab.build(), num_classes=10)


def load_rewrites(path: str | os.PathLike, num_images: int) -> tuple[tuple[str, ...], ...]:
  """User-supplied rewrites from a JSON-lines file: one ``{"index": i, "rewrites": [str, ...]}`` per line.

  Images without a line get no rewrites. A line with an index outside ``[0, num_images)``, a repeated
  index, or anything but a list of non-empty strings raises naming the line.
  """
  if not isinstance(path, (str, os.PathLike)):
    raise TypeError(f"path: must be a path, got {type(path).__name__}")
  num_images = _validation.check_int("num_images", num_images, lower=1)
  out: list[tuple[str, ...] | None] = [None] * num_images
  for line_no, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
    if not line.strip():
      continue
    try:
      rec = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"path: line {line_no} of {path} is not JSON ({e.msg})") from e
    idx, texts = (rec.get("index"), rec.get("rewrites")) if isinstance(rec, dict) else (None, None)
    if (not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < num_images
        or not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts)):
      raise ValueError(f"path: line {line_no} of {path} must be {{\"index\": i in [0, {num_images}), "
                       f"\"rewrites\": [non-empty strings]}}, got {line[:80]!r}")
    if out[idx] is not None:
      raise ValueError(f"path: line {line_no} of {path} repeats index {idx}")
    out[idx] = tuple(texts)
  return tuple(t or () for t in out)


def with_rewrites(data: PairedData, rewrites: Sequence[Sequence[str]]) -> PairedData:
  """``data`` with its rewrites replaced by ``rewrites`` (one sequence per image) and the vocabulary grown
  to cover them."""
  if not isinstance(data, PairedData):
    raise TypeError(f"data: must be a PairedData, got {type(data).__name__}")
  if isinstance(rewrites, str) or len(rewrites) != len(data):
    raise ValueError(f"rewrites: must hold one sequence of strings per image ({len(data)}), got "
                     f"{'a str' if isinstance(rewrites, str) else len(rewrites)}")
  rewrites = tuple(tuple(r) for r in rewrites)
  texts = [t for r in rewrites for t in r]
  vocab = CaptionVocab.build([*data.captions, *texts])
  return dataclasses.replace(data, rewrites=rewrites, vocab=vocab)


def load_tfds_paired(name: str, split: str = "train", *, image: str = "image", text: str = "caption",
                     label: str | None = None, num_classes: int = 0, max_examples: int | None = None,
                     data_dir: str | os.PathLike | None = None) -> PairedData:
  """A prepared TFDS image-text dataset as `PairedData` (never downloading; TensorFlow not needed).

  ``text`` names the caption feature, dotted for a nested one (``"captions/text"``). A record with
  several captions (COCO has five) gives its first as the caption and the rest as rewrites. Images are
  scaled to [0, 1]; ``label`` optionally names an integer class feature (with ``num_classes``).
  """
  for arg, value in (("name", name), ("split", split), ("image", image), ("text", text)):
    if not isinstance(value, str) or not value:
      raise TypeError(f"{arg}: must be a non-empty str, got {value!r}")
  if label is not None:
    if not isinstance(label, str) or not label:
      raise TypeError(f"label: must be a non-empty str or None, got {label!r}")
    num_classes = _validation.check_int("num_classes", num_classes, lower=1)
  if max_examples is not None:
    max_examples = _validation.check_int("max_examples", max_examples, lower=1)
  from jaxdyn.data._sources import tfds_data_source  # pylint: disable=g-import-not-at-top

  source = tfds_data_source(name, split, data_dir)
  n = len(source) if max_examples is None else min(len(source), max_examples)
  images, labels, captions, rewrites = [], [], [], []
  for i in range(n):
    rec = source[i]
    value = rec
    for key in text.split("/"):
      if not isinstance(value, Mapping) or key not in value:
        raise ValueError(f"text: tfds:{name} records have no {text!r}; they have {sorted(rec)}")
      value = value[key]
    texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in np.atleast_1d(np.asarray(value, object))]
    if image not in rec:
      raise ValueError(f"image: tfds:{name} records have no {image!r}; they have {sorted(rec)}")
    images.append(np.asarray(rec[image], np.float32) / 255.0)
    captions.append(texts[0])
    rewrites.append(tuple(texts[1:]))
    if label is not None:
      if label not in rec:
        raise ValueError(f"label: tfds:{name} records have no {label!r}; they have {sorted(rec)}")
      labels.append(int(rec[label]))
  shapes = {im.shape for im in images}
  if len(shapes) != 1:
    raise ValueError(f"image: tfds:{name} images have several shapes {sorted(shapes)[:3]}; resize them when "
                     f"preparing the dataset")
  lab = None
  if label is not None:
    lab = np.asarray(labels, np.int32)
    _validation.check_integer_labels("labels", lab, num_classes)
  return PairedData(images=np.stack(images), labels=lab, captions=tuple(captions), rewrites=tuple(rewrites),
                    attributes={}, vocab=CaptionVocab.build([*captions, *(t for r in rewrites for t in r)]),
                    num_classes=num_classes if label is not None else 0)
