r"""MaskSearch's Retrieval-Augmented Mask Prediction (RAMP), its reusable core, on Python source bytes.

RAMP (Wu et al., 2025) masks salient spans of a passage and trains a model to fill them in with the help
of retrieved text. This module builds that task for the shared byte-level decoder-only model
(`jaxdyn.models.Transformer`) on source code: salient-span selection, masking, a lexical retriever over
a corpus of passages, the curriculum over the number of masked spans, the training sequence and the
span-level accuracy. What the paper's agent does with a search tool over several turns (planner,
rewriter, observer, self-distilled chains of thought, DAPO) is out of scope: here retrieval is one
lexical search with the masked text as the query, done when the data is built (classic retrieval
augmentation), so the model learns to *use* retrieved passages to fill the masks.

**Salient spans** (`salient_spans`). The paper masks "salient spans (named entities, dates, ontologies,
terms and numbers)" that an LLM extracts from a Wikipedia paragraph; the authors' prompt asks for spans
that cannot be inferred from the paragraph's own context and drops a span that appears more than once.
In source code the analogues are read with Python's own `tokenize` and `keyword` modules (no home-made
lexer):

- ``"name"``: a ``NAME`` token that is not a keyword, a soft keyword (``match``, ``case``, ``_``, ``type``)
  or a builtin (``len``, ``None``, ``self`` is *not* a builtin and stays): identifiers are the code's
  named entities (functions, classes, modules, attributes defined elsewhere);
- ``"number"``: a ``NUMBER`` token (constants, sizes, magic numbers): the paper's numbers;
- ``"string"``: a ``STRING`` token (keys, messages, format strings): the paper's terms.

Keywords and builtins are excluded because they are grammar, predictable from the context alone; a
span longer than ``max_len`` bytes (docstrings) is excluded as the paper keeps spans short ("each entity
should not exceed 10 words/characters" in the authors' prompt). With ``unique=True`` (default, the paper's
"if an entity repeatedly appears, you should not extract it") a candidate whose text is the text of another
candidate token in the document is dropped: a masked identifier used elsewhere in the file could be
copied from the context without retrieval. The authors' code drops an entity when its text occurs more
than once *as a substring* of the paragraph (``para.count(e) > 1``); ``official_compat=True`` reproduces
that (so ``x`` is dropped when ``x`` occurs inside ``max``). Spans are byte offsets ``[start, end)`` into
the document, sorted and disjoint (tokens never overlap).

**Masking** (`choose_spans`, `mask_spans`, `unmask`). ``k`` of the ``n`` candidates are chosen uniformly
without replacement (the paper: "randomly mask k spans", ``0 < k < 5``) and each chosen span is replaced by
*one* mask token (``MASK_ID``, the paper's ``[mask]``; one id above the corpus's bytes and BOS / EOS / PAD,
so the model's vocabulary is ``RAMP_VOCAB_SIZE = VOCAB_SIZE + 1``). The answers are the spans' bytes in
text order. The authors' code instead draws ``k`` indices *with replacement* (``random.choices``, weights
the span's word count, which is 1 for every single-token span here) and masks the distinct ones, so
fewer than ``k`` spans can be masked: ``official_compat=True`` in `choose_spans`. Not reproduced from the
code: its rule for ``k`` from the number of entities (``k = 4`` when there are 4 or more; the curriculum
below sets ``k`` instead), and its skipping of a paragraph that starts with a mask.

**Retrieval** (`LexicalRetriever`). TF-IDF (scikit-learn's ``TfidfVectorizer``, words ``\w+``, case kept,
sublinear tf) over the corpus's passages; a query's score for passage ``j`` is the cosine
``s_j = \hat q \cdot \hat p_j`` of the L2-normalised rows (``sklearn.metrics.pairwise.linear_kernel``'s
product, with the passage matrix transposed once). The top ``n`` passages by score (ties by index) are
returned, **never a passage of the query's own document** (``exclude``): that passage holds the masked
answers, so returning it would leak them. Mask ids and other non-byte ids in a query are read as spaces.

**Curriculum** (`span_curriculum`). The paper trains "progressively from easier to more challenging
instances based on the number of masked spans": stages, one per ``k = k_min .. K`` (the paper's
``K = 4``), here of equal length over the ``T`` training steps,

.. math:: k(t) = \min\!\Big(K,\; k_{\min} + \Big\lfloor \frac{t\,(K - k_{\min} + 1)}{T} \Big\rfloor\Big),

(stages, not a smooth schedule). The equal stage lengths are this module's choice (the paper's stage
sizes were not read here).

**Encoding** (`ramp_example`). For the decoder-only model the retrieved passages, the masked text and
the answers are concatenated (retrieval-augmented in-context, as RAG prompts are):

.. math:: s = [\mathrm{BOS}]\, P_1\, [\mathrm{EOS}] \cdots P_m\, [\mathrm{EOS}]\; X\;
   [\mathrm{M}]\, A_1\, [\mathrm{M}]\, A_2 \cdots [\mathrm{M}]\, A_k\, [\mathrm{EOS}],

with ``X`` the masked text (``k`` mask ids ``M``), ``A_i`` the ``i``-th answer, each introduced by ``M``
(answer ``i`` fills the ``i``-th mask), and inputs ``s[:-1]``, targets ``s[1:]``. The loss weight is 1
exactly on the targets that are answer bytes or the token that ends an answer (the next ``M`` or the final
EOS: the model must say where a span stops) and 0 elsewhere (passages, masked text, the first ``M``,
padding): the paper's answer is the filled-in text and its reward is on the answer alone. The length
budget: ``len(s) <= seq_len + 1``; ``X`` and the answers always fit (else an error), and passages fill the
rest in retrieval order, each cut to ``passage_len`` tokens and to what is left, a passage with room for
less than one token dropped. The paper's RL answer reward is a token-level recall (or a judge model);
`span_exact_match` scores a span as right when every one of its weighted targets is predicted (with the
argmax of a teacher-forced pass this equals greedy decoding of that span after correct earlier spans).

Reference: Wu et al., "MaskSearch: A Universal Pre-Training Framework to Enhance Agentic Search
Capability", 2025. https://arxiv.org/abs/2505.20285 (code: https://github.com/Alibaba-NLP/MaskSearch)
"""

from __future__ import annotations

import builtins
import io
import keyword
import tokenize
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdyn import _validation
from jaxdyn.data._text import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE

MASK_ID = VOCAB_SIZE
RAMP_VOCAB_SIZE = VOCAB_SIZE + 1
SPAN_KINDS = ("name", "number", "string")
_BUILTINS = frozenset(dir(builtins))
_KIND_OF = {tokenize.NAME: "name", tokenize.NUMBER: "number", tokenize.STRING: "string"}


class MaskedText(NamedTuple):
  """A text with spans replaced by the mask id, and the spans (its answers).

  Attributes:
    tokens: 1-D int32, the text with each masked span replaced by one ``mask_id``.
    answers: one 1-D int32 array per masked span, in text order.
  """

  tokens: np.ndarray
  answers: tuple[np.ndarray, ...]


class RampExample(NamedTuple):
  """One RAMP training sequence (module docstring, "Encoding"), each field of shape ``(seq_len,)``.

  Attributes:
    inputs: int32 ``s[:-1]`` padded with ``PAD_ID``.
    targets: int32 ``s[1:]`` padded with ``PAD_ID``.
    weights: float32 1 on answer targets (and each answer's end token), else 0.
    answer_ids: int32 ``i + 1`` on the weighted targets of answer ``i``, else 0.
  """

  inputs: np.ndarray
  targets: np.ndarray
  weights: np.ndarray
  answer_ids: np.ndarray


def _check_bool(name, value):
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name}: must be a bool, got {type(value).__name__}")
  return bool(value)


def _check_ids(name, tokens, *, upper=None):
  if isinstance(tokens, (str, bytes)) or not hasattr(tokens, "__len__"):
    raise TypeError(f"{name}: must be a 1-D integer token array, got {type(tokens).__name__}")
  a = np.asarray(tokens)
  if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or (a.size == 0 and a.dtype == np.float64)):
    raise ValueError(f"{name}: must be a 1-D integer token array, got {a.dtype} of shape {a.shape}")
  a = a.astype(np.int64)
  if a.size and (a.min() < 0 or (upper is not None and a.max() > upper)):
    raise ValueError(f"{name}: must hold ids in [0, {upper}], got values in [{a.min()}, {a.max()}]")
  return a


def _byte_offsets(text):
  """Byte offset of each character position 0..len(text) of ``text`` in its UTF-8 encoding."""
  cp = np.frombuffer(text.encode("utf-32-le"), np.uint32)
  size = 1 + (cp >= 0x80).astype(np.int64) + (cp >= 0x800) + (cp >= 0x10000)
  return np.concatenate([[0], np.cumsum(size)])


def salient_spans(tokens: Any, *, kinds: Sequence[str] = SPAN_KINDS, max_len: int = 32, unique: bool = True,
                  official_compat: bool = False) -> np.ndarray:
  """Salient spans of Python source bytes: identifiers (not keywords / builtins), numbers, string literals.

  Args:
    tokens: the document's bytes, a 1-D integer array of values 0..255 (UTF-8 Python source that the
      standard library's `tokenize` reads).
    kinds: which of ``"name"``, ``"number"``, ``"string"`` to keep (non-empty, no repeats).
    max_len: the longest span kept, in bytes, >= 1.
    unique: drop a candidate whose text is shared with another candidate (module docstring).
    official_compat: with ``unique``, drop a candidate whose text occurs more than once as a substring of
      the document (the authors' ``para.count(e) > 1``) instead.

  Returns:
    An int64 array ``(n, 2)`` of byte offsets ``[start, end)``, sorted by start, disjoint.

  Raises:
    ValueError: if the bytes are not UTF-8 or `tokenize` cannot read them.

  Example:
    >>> src = np.frombuffer(b"x = foo(12, len(y))\\n", np.uint8)
    >>> [bytes(src[a:b]) for a, b in salient_spans(src)]
    [b'x', b'foo', b'12', b'y']
  """
  a = _check_ids("tokens", tokens, upper=255)
  if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
    raise TypeError(f"kinds: must be a non-empty sequence of {list(SPAN_KINDS)}, got {kinds!r}")
  for kind in kinds:
    _validation.check_choice("kinds", kind, SPAN_KINDS)
  if len(set(kinds)) != len(kinds):
    raise ValueError(f"kinds: must not repeat a kind, got {list(kinds)}")
  max_len = _validation.check_int("max_len", max_len, lower=1)
  unique = _check_bool("unique", unique)
  official_compat = _check_bool("official_compat", official_compat)
  raw = a.astype(np.uint8).tobytes()
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ValueError(f"tokens: must be UTF-8 text, got undecodable bytes ({e.reason} at byte {e.start})") from e
  starts = np.concatenate([[0], np.flatnonzero(np.frombuffer(text.encode("utf-32-le"), np.uint32) == 10) + 1])
  offsets = None if text.isascii() else _byte_offsets(text)
  found = []
  try:
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
      kind = _KIND_OF.get(tok.type)
      if kind is None or kind not in kinds:
        continue
      if kind == "name" and (keyword.iskeyword(tok.string) or keyword.issoftkeyword(tok.string)
                             or tok.string in _BUILTINS):
        continue
      (r0, c0), (r1, c1) = tok.start, tok.end
      s, e = int(starts[r0 - 1] + c0), int(starts[r1 - 1] + c1)
      if offsets is not None:
        s, e = int(offsets[s]), int(offsets[e])
      if e - s <= max_len:
        found.append((s, e, raw[s:e]))
  except (tokenize.TokenError, SyntaxError) as e:
    raise ValueError(f"tokens: must be Python source that tokenize reads, got an error: {e}") from e
  if unique:
    if official_compat:
      found = [f for f in found if raw.count(f[2]) <= 1]
    else:
      counts = Counter(f[2] for f in found)
      found = [f for f in found if counts[f[2]] == 1]
  return np.array([(s, e) for s, e, _ in found], np.int64).reshape(-1, 2)


def _check_spans(name, spans, length=None):
  if isinstance(spans, (str, bytes)):
    raise TypeError(f"{name}: must be an integer array of shape (n, 2), got {type(spans).__name__}")
  s = np.asarray(spans)
  if s.size == 0:
    s = s.reshape(0, 2).astype(np.int64)
  if s.ndim != 2 or s.shape[1] != 2 or not np.issubdtype(s.dtype, np.integer):
    raise ValueError(f"{name}: must be an integer array of shape (n, 2), got {s.dtype} of shape {s.shape}")
  s = s.astype(np.int64)
  if len(s) and (np.any(s[:, 0] < 0) or np.any(s[:, 1] <= s[:, 0]) or np.any(s[1:, 0] < s[:-1, 1])):
    raise ValueError(f"{name}: must be sorted, disjoint, non-empty [start, end) pairs with start >= 0, got "
                     f"{s.tolist()}")
  if length is not None and len(s) and s[-1, 1] > length:
    raise ValueError(f"{name}: must lie within the {length} tokens, got an end at {int(s[-1, 1])}")
  return s


def choose_spans(spans: Any, k: int, *, seed: int, official_compat: bool = False) -> np.ndarray:
  """The ``k`` spans to mask, drawn uniformly without replacement (module docstring, "Masking").

  Args:
    spans: ``(n, 2)`` sorted disjoint spans (`salient_spans`).
    k: how many to mask, in ``[1, n]``.
    seed: the NumPy generator's seed, >= 0.
    official_compat: draw ``k`` indices with replacement and keep the distinct ones, as the authors'
      ``random.choices`` (so between 1 and ``k`` spans).

  Returns:
    An int64 ``(m, 2)`` array, sorted by start: ``m = k`` (``m <= k`` with ``official_compat``).

  Example:
    >>> choose_spans(np.array([[0, 1], [4, 6], [9, 12]]), 2, seed=0).shape
    (2, 2)
  """
  s = _check_spans("spans", spans)
  if len(s) == 0:
    raise ValueError("spans: must hold at least one span to choose from, got 0")
  k = _validation.check_int("k", k, lower=1)
  if k > len(s):
    raise ValueError(f"k: must be at most the number of spans ({len(s)}), got {k}")
  seed = _validation.check_int("seed", seed, lower=0)
  rng = np.random.default_rng(seed)
  if _check_bool("official_compat", official_compat):
    idx = np.unique(rng.integers(0, len(s), size=k))
  else:
    idx = np.sort(rng.choice(len(s), size=k, replace=False))
  return s[idx]


def mask_spans(tokens: Any, spans: Any, *, mask_id: int = MASK_ID) -> MaskedText:
  """Replaces each span with one ``mask_id``; the answers are the spans' tokens in order.

  Args:
    tokens: a 1-D integer token array without ``mask_id`` in it.
    spans: ``(k, 2)`` sorted disjoint spans within the tokens (may be empty).
    mask_id: the mask token id, >= 0.

  Returns:
    A `MaskedText`: ``len(tokens) - sum(end - start) + k`` tokens, and ``k`` answers.

  Example:
    >>> m = mask_spans(np.array([1, 2, 3, 4, 5]), [[1, 3]], mask_id=9)
    >>> m.tokens.tolist(), [a.tolist() for a in m.answers]
    ([1, 9, 4, 5], [[2, 3]])
  """
  a = _check_ids("tokens", tokens)
  mask_id = _validation.check_int("mask_id", mask_id, lower=0)
  if np.any(a == mask_id):
    raise ValueError(f"tokens: must not contain mask_id ({mask_id}), got it at {np.flatnonzero(a == mask_id)[:5]}")
  s = _check_spans("spans", spans, len(a))
  pieces, answers, prev = [], [], 0
  for start, end in s:
    pieces += [a[prev:start], np.array([mask_id])]
    answers.append(a[start:end].astype(np.int32))
    prev = end
  pieces.append(a[prev:])
  return MaskedText(np.concatenate(pieces).astype(np.int32), tuple(answers))


def unmask(tokens: Any, answers: Sequence[Any], *, mask_id: int = MASK_ID) -> np.ndarray:
  """Fills the ``i``-th ``mask_id`` in ``tokens`` with ``answers[i]`` (the inverse of `mask_spans`).

  Args:
    tokens: a 1-D integer token array with exactly ``len(answers)`` mask ids.
    answers: a sequence of 1-D integer arrays.
    mask_id: the mask token id, >= 0.

  Returns:
    The filled-in 1-D int32 array.

  Example:
    >>> unmask(np.array([1, 9, 4]), [np.array([2, 3])], mask_id=9).tolist()
    [1, 2, 3, 4]
  """
  a = _check_ids("tokens", tokens)
  mask_id = _validation.check_int("mask_id", mask_id, lower=0)
  if isinstance(answers, (str, bytes)) or not isinstance(answers, (Sequence, np.ndarray)):
    raise TypeError(f"answers: must be a sequence of 1-D integer arrays, got {type(answers).__name__}")
  ans = [_check_ids("answers", x) for x in answers]
  where = np.flatnonzero(a == mask_id)
  if len(where) != len(ans):
    raise ValueError(f"answers: must have one entry per mask id in tokens ({len(where)}), got {len(ans)}")
  pieces, prev = [], 0
  for pos, x in zip(where, ans):
    pieces += [a[prev:pos], x]
    prev = pos + 1
  pieces.append(a[prev:])
  return np.concatenate(pieces).astype(np.int32)


def _as_text(name, value):
  if isinstance(value, str):
    return value
  a = _check_ids(name, value)
  return np.where(a < 256, a, 32).astype(np.uint8).tobytes().decode("utf-8", errors="replace")


class LexicalRetriever:
  r"""TF-IDF retrieval over passages with the query's own document excluded (module docstring, "Retrieval").

  Args:
    passages: a non-empty sequence of passages, each a str or a 1-D integer token array (bytes; ids >= 256
      read as spaces).
    groups: one int per passage, its document (``exclude`` refers to these), default ``0 .. N - 1``.

  Example:
    >>> r = LexicalRetriever(["alpha one", "beta two", "alpha beta"], groups=[0, 1, 2])
    >>> r.search("alpha beta", 2)[0].tolist(), r.search("alpha beta", 2, exclude=2)[0].tolist()
    ([2, 0], [0, 1])
  """

  def __init__(self, passages: Sequence[Any], *, groups: Any = None):
    from sklearn.feature_extraction.text import TfidfVectorizer

    if isinstance(passages, (str, bytes)) or not isinstance(passages, Sequence):
      raise TypeError(f"passages: must be a sequence of str or token arrays, got {type(passages).__name__}")
    if len(passages) == 0:
      raise ValueError("passages: must not be empty, got 0 passages")
    texts = [_as_text("passages", p) for p in passages]
    if groups is None:
      g = np.arange(len(texts), dtype=np.int64)
    else:
      g = np.asarray(groups)
      if g.ndim != 1 or not np.issubdtype(g.dtype, np.integer):
        raise ValueError(f"groups: must be a 1-D integer array, got {g.dtype} of shape {g.shape}")
      if len(g) != len(texts):
        raise ValueError(f"groups: must have one entry per passage ({len(texts)}), got {len(g)}")
    self.groups = g.astype(np.int64)
    self.vectorizer = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", lowercase=False, sublinear_tf=True)
    try:
      self.matrix = self.vectorizer.fit_transform(texts)
    except ValueError as e:  # sklearn: "empty vocabulary"
      raise ValueError(f"passages: must hold at least one word, got none ({e})") from e
    self._matrix_t = self.matrix.T.tocsr()

  def __len__(self) -> int:
    return self.matrix.shape[0]

  def scores(self, query: Any) -> np.ndarray:
    r"""The cosine score ``\hat q \cdot \hat p_j`` of ``query`` (str or token array) for every passage, ``(N,)``."""
    from sklearn.utils.extmath import safe_sparse_dot

    q = self.vectorizer.transform([_as_text("query", query)])
    # sklearn.metrics.pairwise.linear_kernel(q, matrix), with the transpose made once in __init__ (25x faster
    # on 190k passages: linear_kernel transposes the passage matrix on every call).
    return np.asarray(safe_sparse_dot(q, self._matrix_t, dense_output=True)).reshape(-1)

  def search(self, query: Any, n: int, *, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The top ``n`` passages by score, ties by index, none from group ``exclude``.

    Args:
      query: a str or a 1-D integer token array (mask ids read as spaces).
      n: how many, >= 1; fewer come back when fewer passages are outside ``exclude``.
      exclude: a group (document) whose passages are never returned, or None.

    Returns:
      ``(indices, scores)``: int64 passage indices, best first, and their float64 scores.
    """
    n = _validation.check_int("n", n, lower=1)
    if exclude is not None:
      exclude = _validation.check_int("exclude", exclude)
    s = self.scores(query)
    keep = np.flatnonzero(self.groups != exclude) if exclude is not None else np.arange(len(s))
    order = keep[np.lexsort((keep, -s[keep]))][:n]
    return order.astype(np.int64), s[order].astype(np.float64)


def span_curriculum(step: int, total_steps: int, *, max_spans: int = 4, min_spans: int = 1) -> int:
  r"""The number of spans to mask at ``step``: equal stages ``k_min .. K`` (module docstring, "Curriculum").

  Args:
    step: the training step, >= 0 (steps past ``total_steps`` stay at ``max_spans``).
    total_steps: ``T``, >= 1.
    max_spans: ``K``, >= ``min_spans`` (the paper's 4).
    min_spans: ``k_min``, >= 1.

  Returns:
    ``min(K, k_min + floor(step (K - k_min + 1) / T))``.

  Example:
    >>> [span_curriculum(t, 100) for t in (0, 24, 25, 50, 99, 150)]
    [1, 1, 2, 3, 4, 4]
  """
  step = _validation.check_int("step", step, lower=0)
  total = _validation.check_int("total_steps", total_steps, lower=1)
  lo = _validation.check_int("min_spans", min_spans, lower=1)
  hi = _validation.check_int("max_spans", max_spans, lower=lo)
  return min(hi, lo + (step * (hi - lo + 1)) // total)


def ramp_example(masked: Any, answers: Sequence[Any], passages: Sequence[Any] = (), *, seq_len: int,
                 passage_len: int | None = None, mask_id: int = MASK_ID) -> RampExample:
  """The training sequence: passages, masked text, answers; weights on the answers only (module docstring).

  Args:
    masked: the masked text, a 1-D integer array with exactly ``len(answers)`` mask ids (`mask_spans`).
    answers: the spans, a non-empty sequence of non-empty 1-D integer arrays, in order.
    passages: retrieved passages, best first, each a 1-D integer array (may be empty: no retrieval).
    seq_len: the model's sequence length, >= 1; the masked text and answers must fit.
    passage_len: the most tokens kept of one passage (None: no per-passage cap), >= 1.
    mask_id: the mask token id (also the answer delimiter), >= 0.

  Returns:
    A `RampExample` of ``(seq_len,)`` arrays.

  Example:
    >>> ex = ramp_example(np.array([7, 9]), [np.array([5])], [np.array([1, 2])], seq_len=9, mask_id=9)
    >>> ex.targets.tolist()
    [1, 2, 257, 7, 9, 9, 5, 257, 258]
    >>> ex.weights.tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]
  """
  mask_id = _validation.check_int("mask_id", mask_id, lower=0)
  x = _check_ids("masked", masked)
  if isinstance(answers, (str, bytes)) or not isinstance(answers, (Sequence, np.ndarray)):
    raise TypeError(f"answers: must be a sequence of 1-D integer arrays, got {type(answers).__name__}")
  ans = [_check_ids("answers", a) for a in answers]
  if not ans or any(len(a) == 0 for a in ans):
    raise ValueError(f"answers: must be a non-empty sequence of non-empty spans, got lengths {[len(a) for a in ans]}")
  if int(np.sum(x == mask_id)) != len(ans):
    raise ValueError(f"answers: must have one entry per mask id in masked ({int(np.sum(x == mask_id))}), "
                     f"got {len(ans)}")
  if isinstance(passages, (str, bytes)) or not isinstance(passages, Sequence):
    raise TypeError(f"passages: must be a sequence of 1-D integer arrays, got {type(passages).__name__}")
  ps = [_check_ids("passages", p) for p in passages]
  seq_len = _validation.check_int("seq_len", seq_len, lower=1)
  if passage_len is not None:
    passage_len = _validation.check_int("passage_len", passage_len, lower=1)
  tail = [x]
  ids = [np.zeros(len(x), np.int32)]
  for i, a in enumerate(ans):
    tail += [np.array([mask_id]), a]
    ids += [np.zeros(1, np.int32), np.full(len(a), i + 1, np.int32)]
  tail.append(np.array([EOS_ID]))
  ids.append(np.array([len(ans)], np.int32))
  fixed = 1 + sum(len(t) for t in tail)
  if fixed > seq_len + 1:
    raise ValueError(f"seq_len: must hold the masked text and its answers ({fixed - 1} tokens), got {seq_len}")
  room = seq_len + 1 - fixed
  head, head_ids = [np.array([BOS_ID])], [np.zeros(1, np.int32)]
  for p in ps:
    take = min(len(p), room - 1, passage_len if passage_len is not None else len(p))
    if take < 1:
      break
    head += [p[:take], np.array([EOS_ID])]
    head_ids.append(np.zeros(take + 1, np.int32))
    room -= take + 1
  s = np.concatenate(head + tail).astype(np.int32)
  # Position t of ``ids`` labels token s[t]; the answer end token (next mask or EOS) gets the answer's id.
  tok_ids = np.concatenate(head_ids + ids)
  ends = np.flatnonzero((tok_ids[:-1] > 0) & (tok_ids[1:] == 0))
  tok_ids[ends + 1] = tok_ids[ends]
  pad = seq_len + 1 - len(s)
  s = np.concatenate([s, np.full(pad, PAD_ID, np.int32)])
  tok_ids = np.concatenate([tok_ids, np.zeros(pad, np.int32)])
  answer_ids = tok_ids[1:].astype(np.int32)
  return RampExample(s[:-1], s[1:], (answer_ids > 0).astype(np.float32), answer_ids)


def span_exact_match(predictions: Any, targets: Any, answer_ids: Any) -> tuple[int, int]:
  """Spans whose every weighted target is predicted: ``(correct, total)`` over all rows.

  A span is ``(row, i)`` for each answer id ``i > 0`` present in the row; it is correct when
  ``predictions == targets`` at all its positions (its bytes and its end token).

  Args:
    predictions: ``(L,)`` or ``(B, L)`` integer predicted ids (e.g. the argmax of the logits).
    targets: the same shape, the targets (`RampExample.targets`).
    answer_ids: the same shape, `RampExample.answer_ids`.

  Returns:
    ``(correct, total)`` ints; ``total`` is 0 when no row holds an answer.

  Example:
    >>> span_exact_match(np.array([1, 5, 5, 2]), np.array([1, 5, 6, 2]), np.array([0, 1, 2, 2]))
    (1, 2)
  """
  p, t, a = (np.asarray(v) for v in (predictions, targets, answer_ids))
  for name, v in (("predictions", p), ("targets", t), ("answer_ids", a)):
    if v.ndim not in (1, 2) or not np.issubdtype(v.dtype, np.integer):
      raise ValueError(f"{name}: must be a 1-D or 2-D integer array, got {v.dtype} of shape {v.shape}")
  if t.shape != p.shape:
    raise ValueError(f"targets: must have the shape of predictions {p.shape}, got {t.shape}")
  if a.shape != p.shape:
    raise ValueError(f"answer_ids: must have the shape of predictions {p.shape}, got {a.shape}")
  if a.size and a.min() < 0:
    raise ValueError(f"answer_ids: must be >= 0, got {a.min()}")
  p, t, a = (v.reshape(-1, v.shape[-1]) if v.size else v.reshape(0, 1) for v in (p, t, a))
  correct = total = 0
  for row_p, row_t, row_a in zip(p, t, a):
    wrong = row_a[(row_p != row_t) & (row_a > 0)]
    present = np.unique(row_a[row_a > 0])
    total += len(present)
    correct += len(np.setdiff1d(present, wrong))
  return int(correct), int(total)


__all__ = ["MASK_ID", "RAMP_VOCAB_SIZE", "SPAN_KINDS", "LexicalRetriever", "MaskedText", "RampExample",
           "choose_spans", "mask_spans", "ramp_example", "salient_spans", "span_curriculum", "span_exact_match",
           "unmask"]
