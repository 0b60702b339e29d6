r"""LaCLIP: CLIP trained with language rewrites as text augmentation (Fan, Krishnan, Isola, Katabi, Tian,
"Improving CLIP Training with Language Rewrites", NeurIPS 2023, https://arxiv.org/abs/2305.20088; code
https://github.com/LijieFan/LaCLIP).

Each image :math:`x_i` has :math:`K_i` caption variants :math:`\{t_{i,0}, \dots, t_{i,K_i-1}\}`: its original
caption :math:`t_{i,0}` and its rewrites. At every step, each image of the batch is paired with one variant
drawn uniformly,

.. math::
   k_i \sim \mathcal{U}\{0, \dots, K_i - 1\}, \qquad \text{text}_i = t_{i, k_i},

and the batch is trained with CLIP's loss (`jaxdyn.multimodal.clip_loss`) unchanged; nothing else of
CLIP's training changes (no extra compute or memory). With no rewrites (:math:`K_i = 1`) it is CLIP.

Which source each detail follows: the uniform draw over {original, rewrites}, per image and per step, the
paper's method and the authors' ``data.py`` (``random.choice`` over the caption list of each image in
``__getitem__``). The authors' loader falls back to the original when a drawn rewrite has fewer than two
words (an LLM failure mode); a grammar's rewrites never do that, so no fallback is made here.

Where rewrites come from: the paper rewrites each caption with LLMs (ChatGPT, Bard, MSCOCO-written examples
and human rewrites as in-context examples for LLaMA-7B, four rewrites per caption). This repository's offline
data (`jaxdyn.data.paired_digits`) rewrites with a grammar instead: the same facts in other templates, word
orders and synonyms. Real rewrites plug in through `jaxdyn.data.load_rewrites` (a JSON-lines file) and
`jaxdyn.data.with_rewrites`, or a prepared TFDS dataset's extra captions (`jaxdyn.data.load_tfds_paired`).

Here the draw is a grain transform (`LaclipTextSampler`, a ``grain.transforms.RandomMap`` over batches) on
the repository's pipeline (`jaxdyn.data.train_pipeline`, through `laclip_pipeline`): grain seeds each
element's generator from the transform's seed and the element's index (the step), so the draws of a
step do not depend on what was drawn before, and a run resumed from the grain iterator's state draws the
same texts as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import grain
import numpy as np

from jaxdyn import _validation as v
from jaxdyn.data import PairedData, train_pipeline


class LaclipVariants(NamedTuple):
  """Every image's caption variants, encoded.

  Attributes:
    tokens: ``(N, V, max_len)`` int32 token ids; ``tokens[i, 0]`` is image ``i``'s original caption,
      ``tokens[i, 1:counts[i]]`` its rewrites, the rest padding (``<pad>`` rows, never drawn).
    counts: ``(N,)`` int32 number of variants of each image, ``1 + len(rewrites[i])``.
  """

  tokens: np.ndarray
  counts: np.ndarray


def laclip_variants(data: PairedData, max_len: int | None = None) -> LaclipVariants:
  """Encodes every image's original caption and rewrites with ``data.vocab`` (`LaclipVariants`).

  Args:
    data: a `jaxdyn.data.PairedData` (its ``rewrites`` may be empty for some or all images).
    max_len: tokens per text, >= ``data.max_words() + 2`` (BOS and EOS), or None for exactly that.

  Returns:
    `LaclipVariants` with ``V = 1 + max(len(r) for r in data.rewrites)``.

  Example:
    >>> from jaxdyn.data import paired_digits
    >>> var = laclip_variants(paired_digits("eval", num_rewrites=2))
    >>> var.tokens.shape[:2], var.counts[:3].tolist()
    ((360, 3), [3, 3, 3])
  """
  if not isinstance(data, PairedData):
    raise TypeError(f"data: must be a jaxdyn.data.PairedData, got {type(data).__name__}")
  if len(data) == 0:
    raise ValueError("data: has no examples")
  need = data.max_words() + 2
  max_len = need if max_len is None else v.check_int("max_len", max_len, lower=need)
  counts = np.array([1 + len(r) for r in data.rewrites], np.int32)
  tokens = np.zeros((len(data), int(counts.max()), max_len), np.int32)
  for i in range(len(data)):
    tokens[i, :counts[i]] = data.vocab.encode(data.texts(i), max_len)
  return LaclipVariants(tokens=tokens, counts=counts)


def _check_rng(rng: Any) -> np.random.Generator:
  if not isinstance(rng, np.random.Generator):
    raise TypeError(f"rng: must be a numpy.random.Generator (grain hands one to a RandomMap), got "
                    f"{type(rng).__name__}")
  return rng


def laclip_choose(counts: Any, rng: np.random.Generator, *, rewrites: bool = True) -> np.ndarray:
  r"""LaCLIP's draw: a variant index :math:`k_i \sim \mathcal{U}\{0, \dots, K_i - 1\}` per image.

  Args:
    counts: ``(B,)`` integer numbers of variants :math:`K_i \ge 1` of the batch's images.
    rng: a ``numpy.random.Generator`` (grain's per-element generator in `LaclipTextSampler`).
    rewrites: False gives CLIP's texts (every index 0, the original caption) and draws nothing.

  Returns:
    ``(B,)`` int32 variant indices.

  Example:
    >>> laclip_choose(np.array([1, 1]), np.random.default_rng(0)).tolist()
    [0, 0]
  """
  counts_arr = np.asarray(counts)
  if counts_arr.ndim != 1 or not np.issubdtype(counts_arr.dtype, np.integer):
    raise ValueError(f"counts: must be a 1-D integer array, got {counts_arr.dtype} of shape {counts_arr.shape}")
  if counts_arr.size and counts_arr.min() < 1:
    raise ValueError(f"counts: every image needs at least one variant (its original caption), got min "
                     f"{int(counts_arr.min())}")
  rng = _check_rng(rng)
  if not isinstance(rewrites, (bool, np.bool_)):
    raise TypeError(f"rewrites: must be a bool, got {type(rewrites).__name__}")
  if not rewrites:
    return np.zeros(counts_arr.shape, np.int32)
  return rng.integers(0, counts_arr).astype(np.int32) if counts_arr.size else np.zeros(0, np.int32)


class LaclipTextSampler(grain.transforms.RandomMap):
  """A grain ``RandomMap`` over batches: adds each image's drawn caption variant (`laclip_choose`).

  The element is a dict holding ``index_key`` (``(B,)`` indices of the images in ``variants``); the result
  adds ``text_key`` (``(B, max_len)`` int32 tokens of the drawn variants) and ``"variant"`` (``(B,)`` the
  drawn indices, 0 = the original caption). Use it with ``MapDataset.random_map(sampler, seed=...)``: grain
  derives each element's generator from that seed and the element's index, so the draws are a function of
  (seed, step) and a resumed iterator draws the same texts.

  Args:
    variants: `LaclipVariants` of the dataset (`laclip_variants`).
    rewrites: False keeps every image's original caption (CLIP).
    index_key: the element's key of image indices.
    text_key: the key the tokens are written to.
  """

  def __init__(self, variants: LaclipVariants, *, rewrites: bool = True, index_key: str = "index",
               text_key: str = "text"):
    if not isinstance(variants, LaclipVariants):
      raise TypeError(f"variants: must be a LaclipVariants (laclip_variants(data)), got {type(variants).__name__}")
    if not isinstance(rewrites, (bool, np.bool_)):
      raise TypeError(f"rewrites: must be a bool, got {type(rewrites).__name__}")
    for name, key in (("index_key", index_key), ("text_key", text_key)):
      if not isinstance(key, str) or not key:
        raise ValueError(f"{name}: must be a non-empty str, got {key!r}")
    self.variants, self.rewrites, self.index_key, self.text_key = variants, bool(rewrites), index_key, text_key

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    if not isinstance(element, dict) or self.index_key not in element:
      raise ValueError(f"element: must be a dict holding {self.index_key!r}, got "
                       f"{sorted(element) if isinstance(element, dict) else type(element).__name__}")
    idx = np.asarray(element[self.index_key])
    n = len(self.variants.counts)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or (idx.size and (idx.min() < 0 or idx.max() >= n)):
      raise ValueError(f"element: {self.index_key!r} must be 1-D integer indices in [0, {n}), got {idx!r}")
    k = laclip_choose(self.variants.counts[idx], rng, rewrites=self.rewrites)
    return {**element, self.text_key: self.variants.tokens[idx, k], "variant": k}


class _PairedSource:
  """A random-access source of ``{"index", "image", "label"}`` records with a vectorised ``gather``."""

  def __init__(self, data: PairedData):
    self.images = data.images
    self.labels = data.labels if data.labels is not None else np.full(len(data), -1, np.int32)

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return {"index": np.int64(i), "image": self.images[i], "label": self.labels[i]}

  def gather(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    idx = np.asarray(idx)
    return {"index": idx.astype(np.int64), "image": self.images[idx], "label": self.labels[idx]}


def laclip_pipeline(data: PairedData, *, batch_size: int, seed: int, max_len: int | None = None,
                    rewrites: bool = True, process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """LaCLIP's (or, with ``rewrites=False``, CLIP's) training stream: `jaxdyn.data.train_pipeline`'s seeded,
  reshuffled-every-epoch batches of images, each paired with a caption variant drawn by `LaclipTextSampler`.

  Element ``s`` (the batch of step ``s``) is ``{"index", "image", "label", "text", "variant"}``. The image
  order depends on ``seed`` alone, so a CLIP and a LaCLIP stream with one seed see the same images at every
  step and differ only in the texts; the text draws are seeded by ``(seed, process_index)`` and the step.
  With no rewrites in ``data`` the stream equals CLIP's.

  Args:
    data: `jaxdyn.data.PairedData`.
    batch_size: global batch size, divisible by ``process_count``.
    seed: seeds the shuffle and the text draws.
    max_len: tokens per text (`laclip_variants`).
    rewrites: False: every image keeps its original caption (CLIP).
    process_index, process_count: this process's share, as in `jaxdyn.data.train_pipeline`.

  Returns:
    An endless ``grain.MapDataset``; ``iter(...)``'s ``get_state`` / ``set_state`` resume it exactly.
    ``iter(ds)`` uses grain's default read options (a 500-batch prefetch on 16 threads);
    ``iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=8)))`` gives the same
    batches with far less work ahead of the consumer.

  Example:
    >>> from jaxdyn.data import paired_digits
    >>> ds = laclip_pipeline(paired_digits("eval"), batch_size=4, seed=0)
    >>> ds[0]["text"].shape, ds[0]["image"].shape
    ((4, 18), (4, 24, 24, 1))
  """
  variants = laclip_variants(data, max_len)
  sampler = LaclipTextSampler(variants, rewrites=rewrites)
  seed = v.check_int("seed", seed)
  ds = train_pipeline(_PairedSource(data), batch_size=batch_size, seed=seed, process_index=process_index,
                      process_count=process_count)
  text_seed = int(np.random.SeedSequence([seed, int(process_index), 1]).generate_state(1)[0])  # checked above
  return ds.random_map(sampler, seed=text_seed)
