"""Visual stitching: (patch, ID) training data and the ID-naming measurement (Zhou et al., 2025).

Zhou, Chen, Yang, Lu, "VLMs Can Aggregate Scattered Training Patches" (https://arxiv.org/abs/2506.03614,
code https://github.com/ZHZisZZ/visual-stitching). Each of a set of images gets a unique synthetic ID; each
image is split into ``s x s`` patches (the *split factor* ``s``: 1 = the whole image, 2 = 2x2 patches,
4 = 4x4 ...), and a vision-language model is fine-tuned only on the (patch, ID) pairs (``"<image> The animal
shown is associated with ID ar413"``). The study then asks whether the tuned model names an image's ID

- from the **full image** (image-based stitching: ``"<full image> The animal shown is associated with ID"``), and
- from a **text reference** instead of the image (reference-based stitching: ``"The cat is associated with ID"``),

by the rank of the true ID's likelihood among all IDs (0 = named first; chance: ``(K - 1) / 2`` for ``K`` IDs).

Here:

- `ID_WORDS`, `stitching_ids`, `stitching_id_texts`: IDs as short strings of tokens from a fixed ID vocabulary,
  unique and drawn under an explicit key. The authors' IDs are two letters and three digits (``"ar413"``), a
  few subword tokens whose first tokens differ, since they score only the ID's first token; here an ID is
  ``id_length`` word tokens (``"ke mu"``) and a model scores the whole ID (the sum of its tokens' log-probs),
  so first tokens need not differ.
- `stitching_patches`: the ``s x s`` patches of each image in row-major order (row ``i``, column ``j``), as
  the authors' ``split_into_patches`` crops them (``src/utils.py``). A patch becomes a model input the way it
  does in the paper: as a standalone image, which the VLM's processor resizes to its input resolution
  (Qwen2-VL upsamples small crops); here ``mode="resize"`` upsamples it by ``s`` with nearest-neighbour
  repetition back to the model's ``(H, W)``, exact for the integer factor. ``mode="place"`` (not the paper's)
  keeps the patch at its place on an otherwise zero canvas, a control in which the full image is the sum of
  its patches.
- `stitching_ranks` and `stitching_measure`: the evaluation as a measurement of any image-text model: it
  takes a scoring function ``score_fn(queries) -> (Q, K)`` log-likelihoods of every ID for every query (full
  images, or tokens of text references), so nothing in it depends on the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxdyn import _validation as v

# The fixed ID vocabulary: two-letter syllables outside every caption grammar word of `jaxdyn.data`.
ID_WORDS: tuple[str, ...] = ("ba", "de", "fi", "go", "hu", "ja", "ke", "lo", "mu", "ni", "po", "qa", "re", "su",
                             "ti", "vu", "wo", "xe", "yi", "zo")

_MODES = ("resize", "place")


def stitching_ids(key: ArrayLike, num_ids: int, *, id_length: int = 2, vocab_size: int = len(ID_WORDS)) -> jax.Array:
  r"""``num_ids`` unique synthetic IDs: rows of ``id_length`` tokens in ``[0, vocab_size)``.

  The IDs are ``num_ids`` distinct draws, uniformly without replacement, from the ``vocab_size ** id_length``
  token strings (each string's base-``vocab_size`` digits, most significant first), so the same key gives the
  same IDs and no two images share one.

  Args:
    key: a `jax.random` key.
    num_ids: number of IDs (images), in ``[1, vocab_size ** id_length]``.
    id_length: tokens per ID, >= 1.
    vocab_size: size of the ID vocabulary, >= 2 (`ID_WORDS` has 20).

  Returns:
    ``(num_ids, id_length)`` int32 token ids.

  Example:
    >>> ids = stitching_ids(jax.random.key(0), 5)
    >>> ids.shape, len({tuple(r) for r in ids.tolist()})
    ((5, 2), 5)
  """
  v.check_key("key", key)
  id_length = v.check_int("id_length", id_length, lower=1)
  vocab_size = v.check_int("vocab_size", vocab_size, lower=2)
  total = vocab_size ** id_length
  if total >= 2 ** 31:
    raise ValueError(f"id_length: vocab_size ** id_length must be < 2**31, got {vocab_size} ** {id_length}")
  num_ids = v.check_int("num_ids", num_ids, lower=1, upper=total)
  flat = jax.random.choice(key, total, (num_ids,), replace=False)
  powers = vocab_size ** jnp.arange(id_length - 1, -1, -1)
  return ((flat[:, None] // powers) % vocab_size).astype(jnp.int32)


def stitching_id_texts(ids: ArrayLike, words: Sequence[str] = ID_WORDS) -> tuple[str, ...]:
  """The IDs as words: row ``[6, 8]`` -> ``"ke mu"`` (``words[6] + " " + words[8]``).

  Args:
    ids: ``(num_ids, id_length)`` integer tokens in ``[0, len(words))``.
    words: the ID vocabulary, distinct non-empty strings without spaces (default `ID_WORDS`).

  Returns:
    ``num_ids`` strings.

  Example:
    >>> stitching_id_texts([[6, 8], [0, 1]])
    ('ke mu', 'ba de')
  """
  if isinstance(words, str) or not isinstance(words, Sequence):
    raise TypeError(f"words: must be a sequence of strings, got {type(words).__name__}")
  if not words or any(not isinstance(w, str) or not w or " " in w for w in words) or len(set(words)) != len(words):
    raise ValueError("words: must be distinct non-empty strings without spaces")
  v.check_ndim("ids", ids, 2)
  v.check_nonempty("ids", ids)
  v.check_nonempty("ids", ids, axis=1, what="tokens")
  v.check_integer_labels("ids", ids, len(words))
  return tuple(" ".join(words[t] for t in row) for row in np.asarray(ids).tolist())


def stitching_patches(images: ArrayLike, split_factor: int, *, mode: str = "resize") -> jax.Array:
  r"""Each image's ``split_factor x split_factor`` patches as model inputs of the image's shape.

  With ``s = split_factor`` and patch side ``(h, w) = (H / s, W / s)``, patch ``k = i s + j`` of an image
  ``x`` is the crop :math:`x[i h : (i + 1) h,\ j w : (j + 1) w]` (row-major, as the authors'
  ``split_into_patches``); the ``s^2`` crops tile the image exactly. ``mode="resize"`` (the paper: a patch is
  a standalone image, resized by the model's processor) repeats each pixel ``s x s`` times, giving an
  ``(H, W)`` image; ``mode="place"`` puts the crop at its place on a zero ``(H, W)`` canvas (then the ``s^2``
  inputs sum to the image). ``split_factor=1`` gives the image itself.

  Args:
    images: ``(N, H, W, C)`` floating images; ``H`` and ``W`` divisible by ``split_factor`` (the authors'
      crops drop the remainder; here the tiling is exact or refused).
    split_factor: patches per side, >= 1.
    mode: ``"resize"`` or ``"place"``.

  Returns:
    ``(N, split_factor ** 2, H, W, C)`` in the dtype of ``images``.

  Example:
    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> stitching_patches(x, 2)[0, 1, :, :, 0]  # the top-right 2x2 crop, each pixel repeated 2x2
    Array([[2., 2., 3., 3.],
           [2., 2., 3., 3.],
           [6., 6., 7., 7.],
           [6., 6., 7., 7.]], dtype=float32)
  """
  v.check_ndim("images", images, 4)
  v.check_nonempty("images", images)
  x = v.check_floating("images", images)
  s = v.check_int("split_factor", split_factor, lower=1)
  v.check_choice("mode", mode, _MODES)
  n, height, width, channels = x.shape
  if height % s or width % s:
    raise ValueError(f"split_factor: must divide the image's height and width, got {s} for shape {x.shape}")
  h, w = height // s, width // s
  crops = x.reshape(n, s, h, s, w, channels).transpose(0, 1, 3, 2, 4, 5).reshape(n, s * s, h, w, channels)
  if mode == "resize":
    return jnp.repeat(jnp.repeat(crops, s, axis=2), s, axis=3)
  out = jnp.zeros((n, s * s, height, width, channels), x.dtype)
  for i in range(s):
    for j in range(s):
      out = out.at[:, i * s + j, i * h:(i + 1) * h, j * w:(j + 1) * w].set(crops[:, i * s + j])
  return out


def stitching_ranks(scores: ArrayLike, targets: ArrayLike) -> tuple[jax.Array, jax.Array]:
  r"""Each query's rank of its true ID and its top-1 hit, ties shared evenly.

  With scores :math:`s_{qk}` (higher = more likely) and true ID :math:`y_q`:

  .. math:: r_q = \#\{k : s_{qk} > s_{q y_q}\} + \tfrac12 \#\{k \ne y_q : s_{qk} = s_{q y_q}\},
     \qquad a_q = \frac{[\#\{k : s_{qk} > s_{q y_q}\} = 0]}{1 + \#\{k \ne y_q : s_{qk} = s_{q y_q}\}},

  the expected 0-based rank and top-1 accuracy when ties are broken at random (the authors' ``argsort``
  breaks them arbitrarily), so a scorer that cannot tell IDs apart gets exactly chance: :math:`r = (K-1)/2`,
  :math:`a = 1/K`. Traceable; a NaN or infinity in a query's scores, or an out-of-range target, gives NaN for
  that query under ``jit`` (and raises eagerly for the target).

  Args:
    scores: ``(Q, K)`` scores of ``K >= 2`` IDs for ``Q`` queries (log-likelihoods or any monotone score).
    targets: ``(Q,)`` integer index of each query's true ID in ``[0, K)``.

  Returns:
    ``(ranks, hits)``, each ``(Q,)`` float32.

  Example:
    >>> stitching_ranks(jnp.array([[0.0, 2.0, 1.0], [1.0, 1.0, 0.0]]), jnp.array([2, 0]))
    (Array([1. , 0.5], dtype=float32), Array([0. , 0.5], dtype=float32))
  """
  v.check_ndim("scores", scores, 2)
  v.check_nonempty("scores", scores, axis=1, what="IDs")
  if np.shape(scores)[1] < 2:
    raise ValueError(f"scores: must score at least 2 IDs, got shape {np.shape(scores)}")
  s = v.check_floating("scores", scores).astype(jnp.float32)
  v.check_integer_labels("targets", targets, s.shape[1], shape=s.shape[:1])
  targets = jnp.asarray(targets)
  true = jnp.take_along_axis(s, jnp.clip(targets, 0, s.shape[1] - 1)[:, None], axis=1)
  higher = jnp.sum(s > true, axis=1).astype(jnp.float32)
  ties = jnp.sum(s == true, axis=1).astype(jnp.float32) - 1.0
  ranks = higher + 0.5 * ties
  hits = jnp.where(higher == 0, 1.0 / (1.0 + ties), 0.0)
  ok = v.labels_valid(targets, s.shape[1]) & jnp.all(jnp.isfinite(s), axis=1)
  return v.nan_unless(ok, ranks), v.nan_unless(ok, hits)


class StitchingResult(NamedTuple):
  """The measurement of `stitching_measure`.

  Attributes:
    mean_rank: mean 0-based rank of the true ID (0 = always named first).
    accuracy: mean top-1 hit (ties shared).
    chance_rank: ``(K - 1) / 2``, the mean rank of a scorer that cannot tell IDs apart.
    chance_accuracy: ``1 / K``.
    ranks: ``(Q,)`` per-query ranks.
    hits: ``(Q,)`` per-query hits.
  """

  mean_rank: float
  accuracy: float
  chance_rank: float
  chance_accuracy: float
  ranks: np.ndarray
  hits: np.ndarray


def stitching_measure(score_fn: Callable[[Any], ArrayLike], queries: Any, targets: ArrayLike, *,
                      batch_size: int | None = None) -> StitchingResult:
  """Does a model name each query's ID? The study's evaluation for any image-text model.

  ``score_fn(batch)`` returns ``(B, K)`` scores (e.g. log-likelihoods of the ``K`` IDs' tokens after the
  study's prompt) for a batch of queries: the full images (image-based stitching) or tokens of text
  references (reference-based stitching). Queries are any PyTree whose leaves share the leading axis ``Q``;
  they are scored in batches of ``batch_size`` (all at once by default), and the ranks and hits are those of
  `stitching_ranks`. Host-side: non-finite scores raise, naming ``score_fn``.

  Args:
    score_fn: ``batch -> (B, K)`` scores, ``K >= 2``, the same ``K`` for every batch.
    queries: PyTree of arrays with leading axis ``Q >= 1``.
    targets: ``(Q,)`` integer index of each query's true ID.
    batch_size: queries per call of ``score_fn``, >= 1, or None for all at once.

  Returns:
    `StitchingResult`.

  Example:
    >>> scores = jnp.array([[0.0, 2.0, 1.0], [1.0, 1.0, 0.0]])
    >>> r = stitching_measure(lambda q: scores[q], jnp.arange(2), jnp.array([2, 0]))
    >>> r.mean_rank, r.accuracy, r.chance_rank
    (0.75, 0.25, 1.0)
  """
  if not callable(score_fn):
    raise TypeError(f"score_fn: must be callable, got {type(score_fn).__name__}")
  leaves = jax.tree.leaves(queries)
  if not leaves or any(np.ndim(x) < 1 for x in leaves):
    raise ValueError("queries: must be a PyTree of arrays with a leading query axis")
  q = np.shape(leaves[0])[0]
  if any(np.shape(x)[0] != q for x in leaves):
    raise ValueError(f"queries: leaves must share the leading axis, got shapes {[np.shape(x) for x in leaves]}")
  if q == 0:
    raise ValueError("queries: must hold at least one query, got 0")
  v.check_ndim("targets", targets, 1)
  if np.shape(targets)[0] != q:
    raise ValueError(f"targets: must have one entry per query ({q}), got shape {np.shape(targets)}")
  batch_size = q if batch_size is None else v.check_int("batch_size", batch_size, lower=1)
  parts = []
  for start in range(0, q, batch_size):
    batch = jax.tree.map(lambda x, s=start: x[s:s + batch_size], queries)
    out = np.asarray(score_fn(batch))
    b = min(batch_size, q - start)
    if out.ndim != 2 or out.shape[0] != b or (parts and out.shape[1] != parts[0].shape[1]):
      raise ValueError(f"score_fn: must return (batch, num_ids) scores with the same num_ids for every batch, "
                       f"got shape {out.shape} for a batch of {b}")
    if not np.issubdtype(out.dtype, np.floating) and not np.issubdtype(out.dtype, np.integer):
      raise TypeError(f"score_fn: must return real scores, got dtype {out.dtype}")
    parts.append(out.astype(np.float64))
  scores = np.concatenate(parts)
  if scores.shape[1] < 2:
    raise ValueError(f"score_fn: must score at least 2 IDs, got {scores.shape[1]}")
  if not np.all(np.isfinite(scores)):
    raise ValueError("score_fn: returned non-finite scores: a NaN or an infinity in `queries` or in the model")
  ranks, hits = stitching_ranks(scores.astype(np.float32), targets)
  ranks, hits = np.asarray(ranks), np.asarray(hits)
  k = scores.shape[1]
  return StitchingResult(mean_rank=float(ranks.mean()), accuracy=float(hits.mean()), chance_rank=(k - 1) / 2,
                         chance_accuracy=1.0 / k, ranks=ranks, hits=hits)
