r"""Dataset decomposition (Pouransari et al., NeurIPS 2024), its curriculum sampler, and concat-and-chunk.

Dataset decomposition (DD) trains a language model on sequences cut from one document each, of
lengths that are powers of two, so no sequence mixes documents and the attention cost of a step
follows the documents' lengths instead of a fixed context.

**The binary decomposition.** A document of ``n`` tokens is cut, front to back, into chunks whose
lengths are the powers of two of ``n``'s binary expansion, largest first:
``n = \sum_{k \in K(n)} 2^k`` gives one chunk of ``2^k`` tokens per ``k`` in ``K(n)``. Chunk lengths are
capped at ``2^{k_max}`` (a longer document is first cut into ``\lfloor n / 2^{k_max} \rfloor`` pieces of
``2^{k_max}``, then its remainder is expanded), and the parts below ``2^{k_min}`` are dropped (the last
``n \bmod 2^{k_min}`` tokens of the document). So ``n = 13``, ``k_min = 1`` gives chunks 8 + 4 and drops
1 token; ``n = 13``, ``k_min = 3`` gives 8 and drops 5. The chunks of length ``2^k`` form the bucket
``D_k``; every token of a document lands in exactly one chunk or in its dropped tail.

**Variable sequence length (VSL) batches.** A step draws one bucket and takes ``tokens_per_step / 2^k``
chunks from it, so every step holds the same number of tokens ``B = tokens_per_step`` (256 x 32 =
8192 x 1 in the paper's setting, batch sizes 32, 16, 8, 4, 2, 1 for ``k = 8 .. 13``).

**The length curriculum.** Training runs ``cycles`` cycles per pass over the data; each cycle owns
``b_k = \lfloor |D_k| / (\mathrm{batch}_k \cdot \mathrm{cycles}) \rfloor`` batches of bucket ``k`` (the
chunks left over are not used in that pass). Within a cycle, a step picks bucket ``k`` with probability

.. math::  P(k) = \frac{r_k\, o_k}{\sum_j r_j\, o_j},

``r_k`` the batches of ``D_k`` left in the cycle and ``o_k`` the curriculum's odds, so exhausted buckets
drop out and every batch of the cycle is used exactly once (bucket ``k`` appears exactly ``b_k`` times
per cycle); the odds only decide the order. The curricula (odds for ``k = k_min .. k_max``):

- ``"grow_p2"``: ``o_k = 2^{k_max - k}`` (32:16:8:4:2:1), short sequences first: the paper's Grow-P2;
- ``"grow_linear"``: ``o_k = k_max - k + 1`` (6:5:4:3:2:1), the paper's Grow-Linear;
- ``"uniform"``: ``o_k = 1``: every remaining batch equally likely (a shuffle), the paper's Uniform;
- ``"shrink_p2"``: ``o_k = 2^{k - k_min}``, long sequences first (the paper's counter-example);
- or any sequence of ``k_max - k_min + 1`` positive odds.

The sampler is deterministic: the pick of step ``t`` of cycle ``c`` in pass ``e`` reads
``np.random.default_rng([seed, 0, e, c, t])`` and the order of the chunks of ``D_k`` in pass ``e``
the permutation of ``np.random.default_rng([seed, 1, e, k])``, so its state is three small things
(``epoch``, ``cycle``, the ``remaining`` batches per bucket) and a sampler restored from a saved state
continues exactly, mid-cycle included (`VSLSampler.get_state` / `VSLSampler.set_state`, grain's
iterator-state protocol; `dd_dataset` wraps it as a ``grain.IterDataset``).

**Concat-and-chunk**, the baseline: documents concatenated in the given order, each followed by
``EOS_ID``, and the stream cut into rows of ``seq_len`` tokens (the tail shorter than a row dropped).
With ``document_mask=True`` each row carries per-token ``segment_ids`` (the pieces of documents in the
row, numbered 0, 1, ... from its start; a document's ``EOS_ID`` belongs to it) and ``positions``
restarting at 0 in each piece, for `jaxdyn.models.Transformer`'s document-boundary mask; without it a
row is one segment at positions ``0 .. seq_len - 1`` (cross-document attention).

**Attention FLOPs per step.** A causal attention layer over a segment of ``L`` tokens scores
``L (L + 1) / 2`` query-key pairs, each costing ``2 d`` FLOPs for ``q . k`` and ``2 d`` for the weighted
value sum (``d`` = model width over all heads), so a step costs

.. math::
  F = 4\, d\, \mathrm{depth} \sum_{\mathrm{segments}\ s} \frac{L_s (L_s + 1)}{2}
  \quad (\text{non-causal: } L_s^2 \text{ pairs}),

with the segments ``DD: B / 2^k`` sequences of ``L = 2^k`` (``F \propto B\, 2^k``); concat-and-chunk with
the document mask: every piece of a document in a row, ``\sum_{\mathrm{rows}} \sum_{\mathrm{pieces}}
L^2``; without it: ``B / \mathrm{seq\_len}`` rows of ``L = \mathrm{seq\_len}`` (``F \propto B\,
\mathrm{seq\_len}``). `attention_flops` computes ``F`` from segment lengths (`segment_lengths` reads
them off ``segment_ids``); it counts the pairs a kernel that skips masked blocks must compute, not
the ``L^2`` a dense masked kernel computes anyway.

**The authors' code** (apple/ml-dataset-decomposition, ``scripts/make_dd_buckets.py``) differs from
the paper's description in three ways; ``official_compat=True`` in `decompose` reproduces it:

1. it appends an end-of-text token to every document before decomposing (here ``EOS_ID``);
2. a chunk of bucket ``k`` holds ``2^k + 1`` tokens (inputs ``chunk[:-1]``, targets ``chunk[1:]``:
   ``2^k`` predictions), found greedily by ``k = \lfloor \log_2(n - 1) \rfloor`` on the ``n`` tokens
   left, and the decomposition stops when at most one token is left or ``k < k_min``;
3. when ``k > k_max`` it draws ``k`` from ``{k_max, ..., k_min}`` with ``P(k) \propto 2^{k_max - k}``
   (more short chunks from long documents) instead of capping at ``k_max``; the draws come from
   ``np.random.default_rng(seed)``, one per over-long cut in document order.

Reference: Pouransari et al., "Dataset Decomposition: Faster LLM Training with Variable Sequence
Length Curriculum", NeurIPS 2024. https://arxiv.org/abs/2405.13226
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import grain
import numpy as np

from jaxdyn import _validation
from jaxdyn.data._text import EOS_ID

CURRICULA = ("grow_p2", "grow_linear", "uniform", "shrink_p2")
MAX_LOG2 = 40


def _check_lengths(name, lengths):
  a = np.asarray(lengths)
  if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_):
    raise ValueError(f"{name}: must be a 1-D array of integer lengths, got {a.dtype} of shape {a.shape}")
  _validation.check_nonempty(name, a, what="documents")
  if np.any(a < 0):
    raise ValueError(f"{name}: must be non-negative, got minimum {int(a.min())}")
  return a.astype(np.int64)


def _check_documents(name, documents):
  if isinstance(documents, (str, bytes, np.ndarray)) or not isinstance(documents, Sequence):
    raise TypeError(f"{name}: must be a sequence of 1-D integer token arrays, got {type(documents).__name__}")
  _validation.check_nonempty(name, np.empty(len(documents)), what="documents")  # ragged: count only
  docs = []
  for d in documents:
    a = np.asarray(d)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
      raise ValueError(f"{name}: must be 1-D integer token arrays, got {a.dtype} of shape {a.shape}")
    docs.append(a)
  return docs


def _check_k_range(kmin, kmax):
  kmin = _validation.check_int("kmin", kmin, lower=0, upper=MAX_LOG2)
  kmax = _validation.check_int("kmax", kmax, lower=kmin, upper=MAX_LOG2)
  return kmin, kmax


@dataclasses.dataclass(frozen=True, eq=False)
class Decomposition:
  """Chunks of documents in buckets ``D_k`` (`decompose`): one entry per chunk, in document order.

  Attributes:
    doc: ``(num_chunks,)`` int64, the document each chunk comes from.
    start: ``(num_chunks,)`` int64, the chunk's first token in its document.
    log2_len: ``(num_chunks,)`` int64, its bucket ``k``.
    dropped: ``(num_documents,)`` int64, tokens of each document in no chunk (its tail).
    kmin, kmax: the bucket range.
    extra: tokens a chunk holds beyond ``2^k``: 0 (the paper) or 1 (``official_compat``).
    appended_eos: whether each document was extended by ``EOS_ID`` before decomposing.
  """

  doc: np.ndarray
  start: np.ndarray
  log2_len: np.ndarray
  dropped: np.ndarray
  kmin: int
  kmax: int
  extra: int = 0
  appended_eos: bool = False

  def __len__(self) -> int:
    return len(self.doc)

  @property
  def chunk_lengths(self) -> np.ndarray:
    """Tokens per chunk: ``2^k + extra``."""
    return (np.int64(1) << self.log2_len) + self.extra

  def bucket(self, k: int) -> np.ndarray:
    """The indices (into this decomposition) of the chunks of bucket ``D_k``, in document order."""
    k = _validation.check_int("k", k, lower=self.kmin, upper=self.kmax)
    return np.flatnonzero(self.log2_len == k)

  def bucket_sizes(self) -> np.ndarray:
    """``(kmax - kmin + 1,)`` int64: the number of chunks in ``D_kmin .. D_kmax``."""
    return np.bincount(self.log2_len - self.kmin, minlength=self.kmax - self.kmin + 1).astype(np.int64)


def decompose(lengths: Any, *, kmin: int, kmax: int, official_compat: bool = False, seed: int = 0) -> Decomposition:
  r"""The binary decomposition of documents of the given lengths into buckets ``D_kmin .. D_kmax``.

  Default (the paper): ``\lfloor n / 2^{k_max} \rfloor`` chunks of ``2^{k_max}``, then one chunk of
  ``2^k`` per set bit ``k >= k_min`` of ``n \bmod 2^{k_max}``, largest first, from the front of the
  document; the last ``n \bmod 2^{k_min}`` tokens are dropped. ``official_compat=True``: the authors'
  code (see the module docstring): ``EOS_ID`` appended, chunks of ``2^k + 1`` tokens, over-long cuts
  drawn at random from ``np.random.default_rng(seed)``.

  Args:
    lengths: ``(num_documents,)`` non-negative integer document lengths (``TextCorpus.lengths``).
    kmin: log2 of the shortest chunk kept, >= 0.
    kmax: log2 of the longest chunk, >= ``kmin``.
    official_compat: reproduce the authors' ``make_dd_buckets.py`` instead of the paper.
    seed: the draws of ``official_compat`` (unused otherwise), a non-negative int.

  Returns:
    A `Decomposition`.

  Example:
    >>> d = decompose([13], kmin=1, kmax=5)
    >>> [int(k) for k in d.log2_len], [int(s) for s in d.start], int(d.dropped[0])
    ([3, 2], [0, 8], 1)
  """
  lengths = _check_lengths("lengths", lengths)
  kmin, kmax = _check_k_range(kmin, kmax)
  if not isinstance(official_compat, (bool, np.bool_)):
    raise TypeError(f"official_compat: must be a bool, got {type(official_compat).__name__}")
  seed = _validation.check_int("seed", seed, lower=0)
  doc, start, logk, dropped = [], [], [], np.zeros(len(lengths), np.int64)
  if not official_compat:
    for i, n in enumerate(lengths.tolist()):
      full, rest = divmod(n, 1 << kmax)
      ks = [kmax] * full + [k for k in range(kmax - 1, kmin - 1, -1) if rest >> k & 1]
      offs = np.concatenate([[0], np.cumsum([1 << k for k in ks])]).astype(np.int64)
      doc += [i] * len(ks)
      start += offs[:-1].tolist()
      logk += ks
      dropped[i] = n - offs[-1]
  else:
    rng = np.random.default_rng(seed)
    choices = np.arange(kmax, kmin - 1, -1)
    p = 2.0 ** np.arange(kmax - kmin + 1)
    p /= p.sum()
    for i, n in enumerate(lengths.tolist()):
      left, pos = n + 1, 0  # EOS appended
      while left > 1:
        k = (left - 1).bit_length() - 1
        if k < kmin:
          break
        if k > kmax:
          k = int(rng.choice(choices, p=p))
        doc.append(i)
        start.append(pos)
        logk.append(k)
        pos += (1 << k) + 1
        left -= (1 << k) + 1
      dropped[i] = left
  as64 = lambda x: np.asarray(x, np.int64)  # noqa: E731
  return Decomposition(doc=as64(doc), start=as64(start), log2_len=as64(logk), dropped=dropped, kmin=kmin, kmax=kmax,
                       extra=int(official_compat), appended_eos=bool(official_compat))


@dataclasses.dataclass(frozen=True, eq=False)
class BucketSource:
  """The chunks of one bucket ``D_k`` as a random-access source (grain's ``RandomAccessDataSource``).

  ``source[j]`` is ``{"tokens": (2^k + extra,) int32, "document": int}``; ``gather(idx)`` the stacked
  ``{"tokens": (len(idx), 2^k + extra) int32, "document": (len(idx),) int64}``. An appended ``EOS_ID``
  (``official_compat``) is read past a document's last token.

  Args:
    documents: the token documents the decomposition was made from (``TextCorpus.documents``).
    decomposition: their `Decomposition`.
    k: the bucket, in ``[kmin, kmax]``.
  """

  documents: Sequence[np.ndarray]
  decomposition: Decomposition
  k: int

  def __post_init__(self):
    if not isinstance(self.decomposition, Decomposition):
      raise TypeError(f"decomposition: must be a Decomposition (decompose), got {type(self.decomposition).__name__}")
    docs = _check_documents("documents", self.documents)
    d = self.decomposition
    if len(docs) != len(d.dropped):
      raise ValueError(f"documents: must be the {len(d.dropped)} documents of the decomposition, got {len(docs)}")
    _validation.check_int("k", self.k, lower=d.kmin, upper=d.kmax)
    object.__setattr__(self, "documents", docs)
    object.__setattr__(self, "_chunks", d.bucket(self.k))

  def __len__(self) -> int:
    return len(self._chunks)

  def _tokens(self, c: int) -> np.ndarray:
    d = self.decomposition
    doc, s = self.documents[int(d.doc[c])], int(d.start[c])
    length = (1 << int(d.log2_len[c])) + d.extra
    out = doc[s:s + length].astype(np.int32)
    if len(out) < length:  # only the appended EOS lies past the document
      out = np.concatenate([out, np.full(length - len(out), EOS_ID, np.int32)])
    return out

  def __getitem__(self, j: int) -> dict[str, Any]:
    c = int(self._chunks[j])
    return {"tokens": self._tokens(c), "document": int(self.decomposition.doc[c])}

  def gather(self, idx: Any) -> dict[str, np.ndarray]:
    cs = self._chunks[np.asarray(idx, np.int64)]
    return {"tokens": np.stack([self._tokens(int(c)) for c in cs]).reshape(len(cs), -1).astype(np.int32),
            "document": self.decomposition.doc[cs]}


def curriculum_odds(curriculum: str | Sequence[float], *, kmin: int, kmax: int) -> np.ndarray:
  """The odds ``o_k`` of buckets ``kmin .. kmax`` for a named curriculum or a sequence of positive odds.

  Example:
    >>> [int(o) for o in curriculum_odds("grow_p2", kmin=8, kmax=13)]
    [32, 16, 8, 4, 2, 1]
  """
  kmin, kmax = _check_k_range(kmin, kmax)
  ks = np.arange(kmin, kmax + 1)
  if isinstance(curriculum, str):
    _validation.check_choice("curriculum", curriculum, CURRICULA)
    return {"grow_p2": 2.0 ** (kmax - ks), "grow_linear": (kmax - ks + 1).astype(np.float64),
            "uniform": np.ones(len(ks)), "shrink_p2": 2.0 ** (ks - kmin)}[curriculum]
  odds = np.asarray(curriculum)
  if odds.shape != ks.shape or not np.issubdtype(odds.dtype, np.number) or odds.dtype == np.bool_:
    raise ValueError(f"curriculum: must be one of {list(CURRICULA)} or {len(ks)} positive odds for k = {kmin}..{kmax}, "
                     f"got {curriculum!r}")
  odds = odds.astype(np.float64)
  if not np.all(np.isfinite(odds) & (odds > 0)):
    raise ValueError(f"curriculum: odds must be finite and > 0, got {curriculum!r}")
  return odds


class VSLSampler:
  """The variable-sequence-length sampler with a length curriculum: yields ``(k, chunk indices)`` per step.

  Each ``next(sampler)`` gives the bucket ``k`` of the step and ``tokens_per_step / 2^k`` indices into
  ``D_k`` (positions in ``BucketSource(..., k)``, i.e. into ``decomposition.bucket(k)``). See the
  module docstring for the curriculum, the cycles and the determinism. The sampler never ends: after
  the last cycle of a pass a new pass starts with new permutations.

  Args:
    bucket_sizes: ``(kmax - kmin + 1,)`` chunk counts of ``D_kmin .. D_kmax``
      (``Decomposition.bucket_sizes()``).
    tokens_per_step: tokens per step, >= 1, a multiple of ``2^kmax`` (so every bucket's batch is whole).
    kmin: the first bucket's ``k``; ``kmax = kmin + len(bucket_sizes) - 1``.
    curriculum: a name in `CURRICULA` or ``len(bucket_sizes)`` positive odds.
    cycles: curriculum cycles per pass over the data, >= 1.
    seed: a non-negative int.

  Attributes:
    batch_sizes: sequences per step of each bucket, ``tokens_per_step / 2^k``.
    batches_per_cycle: ``b_k``, the batches of each bucket in one cycle.

  Example:
    >>> s = VSLSampler([8, 4], tokens_per_step=4, kmin=1, curriculum="grow_p2", cycles=2, seed=0)
    >>> [int(b) for b in s.batch_sizes], [int(b) for b in s.batches_per_cycle]
    ([2, 1], [2, 2])
    >>> [next(s)[0] for _ in range(4)].count(1)
    2
  """

  def __init__(self, bucket_sizes: Any, *, tokens_per_step: int, kmin: int,
               curriculum: str | Sequence[float] = "grow_p2", cycles: int = 1, seed: int = 0):
    sizes = _check_lengths("bucket_sizes", bucket_sizes)
    kmin = _validation.check_int("kmin", kmin, lower=0, upper=MAX_LOG2)
    kmax = kmin + len(sizes) - 1
    if kmax > MAX_LOG2:
      raise ValueError(f"bucket_sizes: must hold at most {MAX_LOG2 - kmin + 1} buckets for kmin={kmin}, "
                       f"got {len(sizes)}")
    tps = _validation.check_int("tokens_per_step", tokens_per_step, lower=1)
    if tps % (1 << kmax):
      raise ValueError(f"tokens_per_step: must be a multiple of 2^kmax = {1 << kmax}, got {tps}")
    self.odds = curriculum_odds(curriculum, kmin=kmin, kmax=kmax)
    self.cycles = _validation.check_int("cycles", cycles, lower=1)
    self.seed = _validation.check_int("seed", seed, lower=0)
    self.kmin, self.kmax, self.tokens_per_step, self.bucket_sizes = kmin, kmax, tps, sizes
    self.batch_sizes = tps >> np.arange(kmin, kmax + 1)
    self.batches_per_cycle = sizes // (self.batch_sizes * self.cycles)
    if not self.batches_per_cycle.any():
      raise ValueError(f"bucket_sizes: too few chunks for one batch of {tps} tokens per cycle in any bucket "
                       f"(cycles={self.cycles}), got {sizes.tolist()}")
    self._perms: dict[tuple[int, int], np.ndarray] = {}
    self.set_state({"epoch": 0, "cycle": 0, "remaining": self.batches_per_cycle.tolist()})

  @property
  def steps_per_cycle(self) -> int:
    return int(self.batches_per_cycle.sum())

  def get_state(self) -> dict[str, Any]:
    """``{"epoch": int, "cycle": int, "remaining": [int per bucket]}``: all a restored sampler needs."""
    return {"epoch": self._epoch, "cycle": self._cycle, "remaining": self._remaining.tolist()}

  def set_state(self, state: dict[str, Any]) -> None:
    """Continues from a `get_state` result (of a sampler with the same arguments)."""
    if not isinstance(state, dict) or set(state) != {"epoch", "cycle", "remaining"}:
      raise ValueError(f"state: must be a dict with keys epoch, cycle, remaining (get_state), got {state!r}")
    epoch = _validation.check_int("state", state["epoch"], lower=0)
    cycle = _validation.check_int("state", state["cycle"], lower=0, upper=self.cycles - 1)
    rem = np.asarray(state["remaining"])
    if (rem.shape != self.batches_per_cycle.shape or not np.issubdtype(rem.dtype, np.integer)
        or np.any(rem < 0) or np.any(rem > self.batches_per_cycle)):
      raise ValueError(f"state: remaining must be {len(self.batches_per_cycle)} ints in [0, batches_per_cycle], "
                       f"got {state['remaining']!r}")
    self._epoch, self._cycle, self._remaining = epoch, cycle, rem.astype(np.int64)

  def probabilities(self) -> np.ndarray:
    """The probability of each bucket at the next step, ``r_k o_k / sum_j r_j o_j``."""
    if not self._remaining.any():
      return self.batches_per_cycle * self.odds / np.sum(self.batches_per_cycle * self.odds)
    w = self._remaining * self.odds
    return w / w.sum()

  def _perm(self, epoch, i):
    key = (epoch, i)
    if key not in self._perms:
      if len(self._perms) > 4 * len(self.bucket_sizes):
        self._perms.clear()
      self._perms[key] = np.random.default_rng([self.seed, 1, epoch, self.kmin + i]).permutation(self.bucket_sizes[i])
    return self._perms[key]

  def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
    return self

  def __next__(self) -> tuple[int, np.ndarray]:
    if not self._remaining.any():  # the cycle is over: the next one (or the next pass)
      self._cycle += 1
      if self._cycle == self.cycles:
        self._epoch, self._cycle = self._epoch + 1, 0
      self._remaining = self.batches_per_cycle.copy()
    step = self.steps_per_cycle - int(self._remaining.sum())
    u = np.random.default_rng([self.seed, 0, self._epoch, self._cycle, step]).random()
    cdf = np.cumsum(self._remaining * self.odds)
    i = int(np.searchsorted(cdf / cdf[-1], u, side="right"))  # the first k with cdf > u: r_k o_k > 0
    j = int(self.batches_per_cycle[i] - self._remaining[i]) + self._cycle * int(self.batches_per_cycle[i])
    bs = int(self.batch_sizes[i])
    self._remaining[i] -= 1
    return self.kmin + i, self._perm(self._epoch, i)[j * bs:(j + 1) * bs]


class _DDIterator(grain.DatasetIterator):

  def __init__(self, sources, sampler):
    super().__init__()
    self._sources, self._sampler = sources, sampler

  def __next__(self):
    k, idx = next(self._sampler)
    out = self._sources[k].gather(idx)
    return {"tokens": out["tokens"], "document": out["document"], "k": np.int64(k)}

  def get_state(self):
    return self._sampler.get_state()

  def set_state(self, state):
    self._sampler.set_state(state)


class _DDDataset(grain.IterDataset):

  def __init__(self, sources, sampler_args):
    super().__init__()
    self._sources, self._sampler_args = sources, sampler_args

  def __iter__(self):
    return _DDIterator(self._sources, VSLSampler(**self._sampler_args))


def dd_dataset(documents: Sequence[np.ndarray], decomposition: Decomposition, *, tokens_per_step: int,
               curriculum: str | Sequence[float] = "grow_p2", cycles: int = 1, seed: int = 0) -> grain.IterDataset:
  """Dataset-decomposition batches as a ``grain.IterDataset``: one `BucketSource` per bucket, a `VSLSampler`.

  Each element is ``{"tokens": (tokens_per_step / 2^k, 2^k + extra) int32, "document": (rows,) int64,
  "k": int64}``; shapes vary with ``k``, so ``jit`` compiles one step per bucket. Its iterators have
  grain's ``get_state`` / ``set_state`` (the sampler's state), so a grain or orbax checkpoint resumes
  the stream exactly. Further grain transforms (``.map``, prefetching) chain as usual.

  Args:
    documents: the token documents (``TextCorpus.documents``).
    decomposition: their `Decomposition`.
    tokens_per_step, curriculum, cycles, seed: as in `VSLSampler`.

  Returns:
    A ``grain.IterDataset``.

  Example:
    >>> docs = [np.arange(13, dtype=np.uint8), np.arange(6, dtype=np.uint8)]
    >>> ds = dd_dataset(docs, decompose([13, 6], kmin=1, kmax=3), tokens_per_step=8)
    >>> next(iter(ds))["tokens"].shape in {(1, 8), (2, 4), (4, 2)}
    True
  """
  if not isinstance(decomposition, Decomposition):
    raise TypeError(f"decomposition: must be a Decomposition (decompose), got {type(decomposition).__name__}")
  sources = {k: BucketSource(documents, decomposition, k) for k in range(decomposition.kmin, decomposition.kmax + 1)}
  args = dict(bucket_sizes=decomposition.bucket_sizes(), tokens_per_step=tokens_per_step, kmin=decomposition.kmin,
              curriculum=curriculum, cycles=cycles, seed=seed)
  VSLSampler(**args)  # checks the arguments now, not at the first iteration
  return _DDDataset(sources, args)


class PackedBatch(NamedTuple):
  """Rows of packed tokens: ``tokens``, ``segment_ids`` and ``positions``, each ``(rows, seq_len)`` int32."""

  tokens: np.ndarray
  segment_ids: np.ndarray
  positions: np.ndarray


def concat_and_chunk(documents: Sequence[np.ndarray], seq_len: int, *, eos_id: int = EOS_ID,
                     document_mask: bool = True) -> PackedBatch:
  """The concat-and-chunk baseline: documents joined with ``eos_id`` after each, cut into ``seq_len`` rows.

  Documents are joined in the given order (shuffle them first); the stream's tail shorter than a row is
  dropped. With ``document_mask`` a row's ``segment_ids`` number the document pieces in it from 0 and
  ``positions`` restart at 0 in each piece (a document cut by a row boundary continues at position 0 of
  the next row's first piece); without it every row is segment 0 at positions ``0 .. seq_len - 1``.

  Args:
    documents: a non-empty sequence of 1-D integer token arrays.
    seq_len: tokens per row, >= 1.
    eos_id: the separator token appended to every document (default ``EOS_ID`` = 257), >= 0.
    document_mask: give per-document segment ids and positions.

  Returns:
    A `PackedBatch` of ``total_tokens // seq_len`` rows (``total_tokens = sum(len(d) + 1)``).

  Example:
    >>> b = concat_and_chunk([np.array([1, 2]), np.array([3, 4, 5])], 4, eos_id=9)
    >>> b.tokens.tolist(), b.segment_ids.tolist(), b.positions.tolist()
    ([[1, 2, 9, 3]], [[0, 0, 0, 1]], [[0, 1, 2, 0]])
  """
  docs = _check_documents("documents", documents)
  seq_len = _validation.check_int("seq_len", seq_len, lower=1)
  eos_id = _validation.check_int("eos_id", eos_id, lower=0)
  if not isinstance(document_mask, (bool, np.bool_)):
    raise TypeError(f"document_mask: must be a bool, got {type(document_mask).__name__}")
  stream = np.concatenate([np.append(d.astype(np.int64), eos_id) for d in docs])
  doc_of = np.concatenate([np.full(len(d) + 1, i, np.int64) for i, d in enumerate(docs)])
  rows = len(stream) // seq_len
  tokens = stream[:rows * seq_len].reshape(rows, seq_len).astype(np.int32)
  if not document_mask:
    return PackedBatch(tokens, np.zeros((rows, seq_len), np.int32),
                       np.broadcast_to(np.arange(seq_len, dtype=np.int32), (rows, seq_len)).copy())
  owner = doc_of[:rows * seq_len].reshape(rows, seq_len)
  new = np.ones((rows, seq_len), bool)
  new[:, 1:] = owner[:, 1:] != owner[:, :-1]
  segment_ids = (np.cumsum(new, axis=1) - 1).astype(np.int32)
  idx = np.broadcast_to(np.arange(seq_len), (rows, seq_len))
  starts = np.maximum.accumulate(np.where(new, idx, 0), axis=1)
  return PackedBatch(tokens, segment_ids, (idx - starts).astype(np.int32))


def segment_lengths(segment_ids: Any) -> np.ndarray:
  """The lengths of the runs of equal consecutive ids in each row of ``(rows, seq)`` ``segment_ids``, flattened.

  Example:
    >>> segment_lengths(np.array([[0, 0, 0, 1], [0, 1, 1, 2]])).tolist()
    [3, 1, 1, 2, 1]
  """
  s = np.asarray(segment_ids)
  if s.ndim != 2 or not np.issubdtype(s.dtype, np.integer):
    raise ValueError(f"segment_ids: must be a (rows, seq) integer array, got {s.dtype} of shape {s.shape}")
  out = []
  for row in s:
    if len(row) == 0:
      continue
    cuts = np.flatnonzero(row[1:] != row[:-1]) + 1
    out.append(np.diff(np.concatenate([[0], cuts, [len(row)]])))
  return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def attention_flops(lengths: Any, *, dim: int, depth: int = 1, causal: bool = True) -> int:
  r"""Attention FLOPs of one forward pass over segments of the given lengths (module docstring).

  .. math:: F = 4\, d\, \mathrm{depth} \sum_s \mathrm{pairs}(L_s), \quad
     \mathrm{pairs}(L) = L (L + 1) / 2 \text{ (causal) or } L^2.

  The query-key pairs of the score and value products only (no projections or MLP), the pairs a
  kernel that skips masked positions computes. Exact integers.

  Args:
    lengths: 1-D non-negative integer segment lengths (`segment_lengths`, or ``[2^k] * rows`` for DD).
    dim: the attention width ``d`` (heads x head_dim), >= 1.
    depth: attention layers, >= 1.
    causal: causal (``L (L + 1) / 2`` pairs) or full (``L^2``) attention.

  Returns:
    An int.

  Example:
    >>> attention_flops([4, 2], dim=1), attention_flops([4, 2], dim=1, causal=False)
    (52, 80)
  """
  a = np.asarray(lengths)
  if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
    raise ValueError(f"lengths: must be a 1-D array of integer lengths, got {a.dtype} of shape {a.shape}")
  if np.any(a < 0):
    raise ValueError(f"lengths: must be non-negative, got minimum {int(a.min())}")
  dim = _validation.check_int("dim", dim, lower=1)
  depth = _validation.check_int("depth", depth, lower=1)
  if not isinstance(causal, (bool, np.bool_)):
    raise TypeError(f"causal: must be a bool, got {type(causal).__name__}")
  ls = [int(x) for x in a.tolist()]
  pairs = sum(x * (x + 1) // 2 for x in ls) if causal else sum(x * x for x in ls)
  return 4 * dim * depth * pairs
