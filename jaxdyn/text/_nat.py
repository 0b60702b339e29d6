r"""Noise-Aware Training (NAT): confidence-weighted training on weak labels, and a weakly labelled code task.

NAT (Sarkhel et al., "Noise-Aware Training of Layout-Aware Language Models", 2024) trains a token
classifier (an entity extractor) on *weakly labelled* documents, whose labels come from a weak annotator,
together with a few human-labelled ones. It "estimates the confidence of each training sample and
incorporates it as uncertainty measure during training": a sample the annotator is unsure of counts less.

**What could be read.** Only the abstract and third-party summaries of the paper (the full text and any
code were not reachable from here). From those: the weak annotator is a *model* (trained on the few human
labels) that labels unlabelled documents; the confidence of each weakly labelled sample comes from that
annotator; it re-weights the sample's loss; training uses human-labelled plus weakly labelled samples. **The
exact formulas below are derived here**, in the form that description implies:

*Confidence estimator* (`label_confidence`). The confidence of weak label ``\tilde y`` at a token with
annotator logits ``z`` is the annotator's predicted probability of that label, optionally temperature-scaled
(calibrated: `calibrate_temperature` fits ``T`` by maximum likelihood on human-labelled tokens, Guo et al.
2017):

.. math:: c = \mathrm{softmax}(z / T)_{\tilde y} \in [0, 1].

*Loss* (`confidence_weighted_cross_entropy`). With the trained model's log-probabilities
``\log p_\theta(\cdot)`` at token ``i``, the per-token cross-entropy of the weak label
``\ell_i = -\log p_\theta(\tilde y_i)``, a 0/1 (or real, >= 0) mask ``m_i`` (padding, non-entity tokens)
and confidences ``c_i``, ``form="weighted"`` (default) is the confidence-weighted mean

.. math:: \mathcal{L}_w = \frac{\sum_i m_i c_i \ell_i}{\sum_i m_i c_i}

(``0`` when ``\sum_i m_i c_i = 0``): all ``c_i = 1`` gives the plain masked cross-entropy
``\sum m_i \ell_i / \sum m_i`` bit for bit, and ``c_i = 0`` removes token ``i`` (the loss equals the
weighted loss of the other tokens). ``form="noise_aware"`` is the noise-aware loss of Jiang et al. (2021,
NEEDLE, "Named Entity Recognition with Small Strongly Labeled and Large Weakly Labeled Data"), which the NAT
description resembles (an *assumption*, not read in NAT's text): the label is right with probability ``c``
(cross-entropy toward it) and wrong with probability ``1 - c`` (push its probability down),

.. math:: \mathcal{L}_{na} = \frac{\sum_i m_i \left[c_i \ell_i + (1 - c_i)\,\ell^-_i\right]}{\sum_i m_i},
   \qquad \ell^-_i = -\log\big(1 - p_\theta(\tilde y_i)\big),

again plain cross-entropy bit for bit at ``c = 1`` (``1 - p`` is floored at ``1e-12`` inside the log, so
``\ell^-`` stays finite where ``p_\theta(\tilde y) = 1``). Here a *sample* is a token (per-token confidences);
per-sample (per-entity, per-document) confidences are the same call with ``c`` broadcast over the sample's
tokens.

**The weakly labelled task.** Identifier kinds in Python source, one label per byte of every identifier
(`IDENTIFIER_KINDS`: variable, function, class, parameter, import, attribute). The identifier spans are
exact for both label sets (Python's `tokenize`: every ``NAME`` token that is not a keyword); only the kinds
differ. Ground truth (`identifier_kinds`) comes from `ast`:

- ``function`` / ``class``: the name after ``def`` / ``class`` (a ``FunctionDef``/``AsyncFunctionDef`` /
  ``ClassDef`` name);
- ``parameter``: every ``ast.arg`` (function and lambda parameters, ``*args``, ``**kwargs``) and every
  keyword-argument name in a call (``ast.keyword``);
- ``import``: every identifier inside an ``import`` / ``from ... import`` statement (modules, names, aliases);
- ``attribute``: the name after a dot (``ast.Attribute.attr``);
- ``variable``: every other identifier (names loaded or stored, ``global`` / ``nonlocal`` names, exception
  aliases, pattern captures); soft keywords (``match``, ``case``, ``_``, ``type``) used as keywords, which
  no ``ast.Name`` claims, are not identifiers (label ``-1``, like every non-identifier byte).

The weak labeller (`weak_identifier_kinds`) sees only the identifier and the text before it on its line,
and applies, in order: ``def\s+$`` before it: function; ``class\s+$``: class; the line starts with
``import`` or ``from``: import; a dot (then spaces) just before it: attribute; the line is a ``def`` line,
the identifier after its ``(`` and just after ``(``, ``,`` or ``*``: parameter (also after ``lambda`` or a
comma before the ``:`` of a ``lambda``); a CamelCase identifier (``_*[A-Z][a-z]``): class; else variable.
Its errors are the expected ones: a class *used* by name is called a class (truth: variable); keyword
arguments of calls, parameters on the continuation lines of a long signature and annotation names after
``(``/``,`` are mislabelled; the continuation lines of a parenthesised import and attributes after a line
break (``x.`` ending the line above) are missed.

`identifier_task` cuts documents (e.g. `jaxdyn.data.load_stdlib_corpus` files) into byte windows with both
label sets and the identifier id of every byte, for a per-identifier evaluation.

Reference: Sarkhel, Ren, Costa, Su, Perot, Xie, Koukoumidis, Nandi, "Noise-Aware Training of Layout-Aware
Language Models", 2024. https://arxiv.org/abs/2404.00488
"""

from __future__ import annotations

import ast
import bisect
import io
import keyword
import re
import tokenize
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation

__all__ = [
    "IDENTIFIER_KINDS",
    "IdentifierTask",
    "calibrate_temperature",
    "confidence_weighted_cross_entropy",
    "identifier_kinds",
    "identifier_task",
    "label_confidence",
    "weak_identifier_kinds",
]

IDENTIFIER_KINDS = ("variable", "function", "class", "parameter", "import", "attribute")
VARIABLE, FUNCTION, CLASS, PARAMETER, IMPORT, ATTRIBUTE = range(6)
FORMS = ("weighted", "noise_aware")
_FLOOR = 1e-12


# --- the loss and the confidence estimator -----------------------------------------------------------------------
def _check_logits_labels(logits, labels):
  _validation.check_ndim("logits", logits, tuple(range(1, 8)))
  if np.ndim(logits) < 1 or np.shape(logits)[-1] < 1:
    raise ValueError(f"logits: must have a class axis of size >= 1, got shape {np.shape(logits)}")
  _validation.check_labels_for_logits("labels", labels, logits)
  _validation.check_nonempty("logits", np.empty(np.shape(logits)[:-1]).reshape(-1), what="tokens")


def _check_weights(name, x, shape, *, upper=None):
  if x is None:
    return None
  dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
  if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)) or dtype == bool:
    raise TypeError(f"{name}: must be a real array, got dtype {dtype}")
  if tuple(np.shape(x)) != tuple(shape):
    raise ValueError(f"{name}: must have the shape of labels {tuple(shape)}, got {tuple(np.shape(x))}")
  if _validation.is_concrete(x) and np.size(x):
    v = np.asarray(x, np.float64)
    if not np.isnan(v).any():  # NaN propagates (the non-finite policy); only a real value out of range raises
      lo, hi = float(v.min()), float(v.max())
      if lo < 0 or (upper is not None and hi > upper):
        rng = f"[0, {upper}]" if upper is not None else ">= 0"
        raise ValueError(f"{name}: must lie in {rng}, got values in [{lo:g}, {hi:g}]")
  return jnp.asarray(x, jnp.float32)


def confidence_weighted_cross_entropy(logits: Any, labels: Any, confidence: Any, *, mask: Any = None,
                                      form: str = "weighted") -> jax.Array:
  r"""NAT's loss on weak labels: cross-entropy weighted by each token's confidence (module docstring).

  ``form="weighted"``: ``sum(m c l) / sum(m c)`` (0 when ``sum(m c) = 0``), with ``l = -log softmax(logits)[label]``;
  ``form="noise_aware"``: ``sum(m [c l + (1 - c) l^-]) / sum(m)``, ``l^- = -log(1 - p(label))`` (Jiang et al.
  2021's noise-aware loss; assumed, not read in NAT's text). Both equal the plain (masked) mean cross-entropy
  bit for bit when every ``c = 1``.

  Args:
    logits: ``(..., K)`` real logits of the model being trained.
    labels: ``(...)`` integer weak labels in ``[0, K)``.
    confidence: ``(...)`` confidences in ``[0, 1]`` (e.g. `label_confidence` of a weak annotator).
    mask: optional ``(...)`` non-negative token weights (0 on padding / non-entity tokens); default all 1.
    form: ``"weighted"`` or ``"noise_aware"``.

  Returns:
    A float32 scalar. NaN or infinite logits or confidences give NaN; under ``jit`` so does a label outside
    ``[0, K)``.

  Example:
    >>> logits = jnp.log(jnp.array([[0.5, 0.5], [0.25, 0.75]]))
    >>> float(confidence_weighted_cross_entropy(logits, jnp.array([0, 1]), jnp.array([1.0, 0.0])))  # ln 2
    0.6931...
  """
  _check_logits_labels(logits, labels)
  shape = np.shape(labels)
  c = _check_weights("confidence", confidence, shape, upper=1.0)
  m = _check_weights("mask", mask, shape)
  _validation.check_choice("form", form, FORMS)
  logits = _validation.check_floating("logits", logits)
  labels = jnp.asarray(labels)
  num_classes = logits.shape[-1]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  lp = jnp.take_along_axis(logp, jnp.clip(labels, 0, num_classes - 1)[..., None], axis=-1)[..., 0]
  ok = _validation.labels_valid(labels, num_classes) & jnp.all(jnp.isfinite(logits), axis=-1)
  nll = _validation.nan_unless(ok, -lp)  # a non-finite logit anywhere in a row (even -inf) poisons its token
  m = jnp.ones(shape, jnp.float32) if m is None else m
  if form == "weighted":
    w = m * c
    den = jnp.sum(w)
    return jnp.where(den > 0, jnp.sum(w * nll) / jnp.where(den > 0, den, 1.0), jnp.sum(w * nll))
  neg = -jnp.log(jnp.maximum(-jnp.expm1(lp), _FLOOR))
  per = c * nll + (1.0 - c) * neg
  den = jnp.sum(m)
  return jnp.where(den > 0, jnp.sum(m * per) / jnp.where(den > 0, den, 1.0), jnp.sum(m * per))


def label_confidence(logits: Any, labels: Any, *, temperature: Any = 1.0) -> jax.Array:
  r"""The annotator's confidence in each weak label: ``softmax(logits / T)[label]`` (module docstring).

  Args:
    logits: ``(..., K)`` real logits of the weak annotator (a model trained on the human labels).
    labels: ``(...)`` integer weak labels in ``[0, K)``.
    temperature: ``T > 0`` (1: the raw probability; `calibrate_temperature` fits it).

  Returns:
    ``(...)`` float32 confidences in ``[0, 1]``; NaN where a logit row is non-finite, and (under ``jit``)
    where a label is out of range.

  Example:
    >>> z = jnp.log(jnp.array([[0.2, 0.8]]))
    >>> round(float(label_confidence(z, jnp.array([1]))[0]), 3)
    0.8
  """
  _check_logits_labels(logits, labels)
  t = _validation.check_real("temperature", temperature, lower=0.0, lower_open=True)
  logits = _validation.check_floating("logits", logits).astype(jnp.float32)
  labels = jnp.asarray(labels)
  num_classes = logits.shape[-1]
  # shifted by the row maximum before dividing, so a tiny T cannot overflow (the shift leaves the softmax unchanged)
  p = jax.nn.softmax((logits - jnp.max(logits, axis=-1, keepdims=True)) / t, axis=-1)
  # softmax drops -inf logits silently; the non-finite policy wants NaN for any non-finite logit in the row
  finite = jnp.all(jnp.isfinite(logits), axis=-1)
  out = jnp.take_along_axis(p, jnp.clip(labels, 0, num_classes - 1)[..., None], axis=-1)[..., 0]
  return _validation.nan_unless(finite & _validation.labels_valid(labels, num_classes), out)


def calibrate_temperature(logits: Any, labels: Any, *, mask: Any = None, bounds: tuple[float, float] = (0.05, 20.0),
                          iterations: int = 60) -> float:
  r"""Temperature scaling (Guo et al., 2017): ``T`` minimising the mean NLL of true ``labels`` under
  ``softmax(logits / T)`` on human-labelled tokens (host-side, NumPy).

  The NLL ``f(\beta) = \mathrm{mean}_i [\log \sum_k e^{\beta z_{ik}} - \beta z_{i y_i}]`` is convex in
  ``\beta = 1/T``, hence unimodal in ``\log T`` (a monotone reparametrisation), so a golden-section search over
  ``\log T \in [\log T_{lo}, \log T_{hi}]`` (``iterations`` steps, each shrinking the interval by 0.618) finds
  its minimiser in that range (a bound when the minimiser lies outside).

  Args:
    logits: ``(..., K)`` finite annotator logits on human-labelled tokens.
    labels: ``(...)`` their true labels in ``[0, K)``.
    mask: optional ``(...)`` non-negative token weights (a weighted mean NLL); needs a positive sum.
    bounds: ``(T_lo, T_hi)``, ``0 < T_lo < T_hi``, finite.
    iterations: golden-section steps, >= 1.

  Returns:
    The fitted temperature, a Python float in ``bounds``.

  Example:
    >>> z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    >>> round(calibrate_temperature(z, np.array([0, 1, 1, 0])), 2)  # 3 right of 4: p = 3/4 = sigmoid(2 / T)
    1.82
  """
  _check_logits_labels(logits, labels)
  _validation.check_finite("logits", logits)
  shape = np.shape(labels)
  m = _check_weights("mask", mask, shape)
  _validation.check_finite("mask", m)
  m = np.ones(shape) if m is None else np.asarray(m, np.float64)
  if not m.sum() > 0:
    raise ValueError("mask: must have a positive sum (at least one human-labelled token), got 0")
  if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
    raise ValueError(f"bounds: must be a pair (T_lo, T_hi), got {bounds!r}")
  lo = _validation.check_real("bounds", bounds[0], lower=0.0, lower_open=True)
  hi = _validation.check_real("bounds", bounds[1], lower=lo, lower_open=True)
  iterations = _validation.check_int("iterations", iterations, lower=1)
  z = np.asarray(logits, np.float64).reshape(-1, np.shape(logits)[-1])
  y = np.asarray(labels).reshape(-1)
  w = m.reshape(-1) / m.sum()
  zy = z[np.arange(len(y)), y]

  def nll(log_t):
    b = np.exp(-log_t)
    s = b * z
    mx = s.max(axis=1)
    return float(np.sum(w * (mx + np.log(np.exp(s - mx[:, None]).sum(axis=1)) - b * zy)))

  a, bnd = np.log(lo), np.log(hi)
  g = (np.sqrt(5.0) - 1.0) / 2.0
  x1, x2 = bnd - g * (bnd - a), a + g * (bnd - a)
  f1, f2 = nll(x1), nll(x2)
  for _ in range(iterations):
    if f1 <= f2:
      bnd, x2, f2 = x2, x1, f1
      x1 = bnd - g * (bnd - a)
      f1 = nll(x1)
    else:
      a, x1, f1 = x1, x2, f2
      x2 = a + g * (bnd - a)
      f2 = nll(x2)
  return float(np.exp((a + bnd) / 2.0))


# --- the weakly labelled identifier-kind task ---------------------------------------------------------------------
def _source_bytes(source):
  if isinstance(source, str):
    return source.encode("utf-8")
  if isinstance(source, (bytes, bytearray)):
    return bytes(source)
  if isinstance(source, np.ndarray) and source.ndim == 1 and source.dtype == np.uint8:
    return source.tobytes()
  raise TypeError(f"source: must be Python source as str, bytes or a 1-D uint8 array, got "
                  f"{type(source).__name__}{'' if not isinstance(source, np.ndarray) else f' {source.dtype}'}")


def _names(src: bytes):
  """``(src, [(start, end, string, line_start, keyword before)], line_starts)``: non-keyword NAME tokens as byte
  spans, with the keyword token right before each (or None)."""
  try:
    text = src.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ValueError(f"source: must be UTF-8 Python source, got undecodable bytes ({e.reason})") from e
  line_starts = [0] + (np.flatnonzero(np.frombuffer(src, np.uint8) == 10) + 1).tolist()
  lines = text.split("\n")
  out = []
  try:
    toks = list(tokenize.generate_tokens(io.StringIO(text).readline))
  except (tokenize.TokenError, SyntaxError, IndentationError) as e:
    raise ValueError(f"source: must be tokenizable Python source, got an error: {e}") from e
  prev = None
  for tok in toks:
    if tok.type != tokenize.NAME:
      continue
    if keyword.iskeyword(tok.string):
      prev = tok.string
      continue
    after, prev = prev, None
    row, col = tok.start
    line = lines[row - 1]
    start = line_starts[row - 1] + len(line[:col].encode("utf-8"))
    end = start + len(tok.string.encode("utf-8"))
    if src[start:end] != tok.string.encode("utf-8"):
      raise ValueError(f"source: token {tok.string!r} at line {row} does not map to its bytes (line endings other "
                       "than \\n are not supported)")
    out.append((start, end, tok.string, line_starts[row - 1], after))
  return src, out, line_starts


def _offset(line_starts, lineno, col):
  return line_starts[lineno - 1] + col


def identifier_kinds(source: Any) -> np.ndarray:
  """Exact identifier kinds of Python source, per byte, from `tokenize` and `ast` (module docstring).

  Args:
    source: Python source as ``str``, UTF-8 ``bytes`` or a 1-D ``uint8`` array (a corpus document); ``\\n``
      line endings.

  Returns:
    ``(n_bytes,)`` int32: the index in `IDENTIFIER_KINDS` on every byte of an identifier, ``-1`` elsewhere.

  Example:
    >>> src = "class A(B):\\n  def fn(self, x=y.z): pass\\n"
    >>> k = identifier_kinds(src)
    >>> [IDENTIFIER_KINDS[k[src.index(n)]] for n in ("A", "B", "fn", "self", "x", "y", "z")]
    ['class', 'variable', 'function', 'parameter', 'parameter', 'variable', 'attribute']
  """
  return _truth(*_names(_source_bytes(source)))


def _truth(src, names, line_starts):
  try:
    tree = ast.parse(src)
  except (SyntaxError, ValueError) as e:
    raise ValueError(f"source: must parse as Python, got {type(e).__name__}: {e}") from e
  by_start = {n[0]: i for i, n in enumerate(names)}
  by_end = {n[1]: i for i, n in enumerate(names)}
  # def / class names: the identifier right after the keyword (tokenize order)
  kinds = [FUNCTION if n[4] == "def" else CLASS if n[4] == "class" else None for n in names]
  imports = []
  starts = [n[0] for n in names]
  for node in ast.walk(tree):
    if isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg is not None):
      i = by_start.get(_offset(line_starts, node.lineno, node.col_offset))
      if i is not None:
        kinds[i] = PARAMETER
    elif isinstance(node, ast.Attribute):
      i = by_end.get(_offset(line_starts, node.end_lineno, node.end_col_offset))
      if i is not None:
        kinds[i] = ATTRIBUTE
    elif isinstance(node, ast.Name):
      i = by_start.get(_offset(line_starts, node.lineno, node.col_offset))
      if i is not None and kinds[i] is None:
        kinds[i] = VARIABLE
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      imports.append((_offset(line_starts, node.lineno, node.col_offset),
                      _offset(line_starts, node.end_lineno, node.end_col_offset)))
  for a, b in imports:  # identifiers inside an import statement
    for i in range(bisect.bisect_left(starts, a), bisect.bisect_left(starts, b)):
      kinds[i] = IMPORT
  for i, (s, e, string, _, _) in enumerate(names):
    if kinds[i] is None:
      kinds[i] = -1 if string in keyword.softkwlist else VARIABLE
  out = np.full(len(src), -1, np.int32)
  for (s, e, _, _, _), k in zip(names, kinds):
    out[s:e] = k
  return out


_DEF_LINE = re.compile(r"\s*(async\s+)?def\s+\w+\s*\(")
_LAMBDA = re.compile(r"\blambda\b[^:]*$")


def _weak_kind(pre: str, line: str, name: str) -> int:
  if re.search(r"\bdef\s+$", pre):
    return FUNCTION
  if re.search(r"\bclass\s+$", pre):
    return CLASS
  if re.match(r"\s*(import|from)\s", line):
    return IMPORT
  if re.search(r"\.\s*$", pre):
    return ATTRIBUTE
  if _DEF_LINE.match(line) and _DEF_LINE.match(pre) and re.search(r"[(,*]\s*$", pre):
    return PARAMETER
  if _LAMBDA.search(pre) and re.search(r"(\blambda|,|\*)\s*$", pre):
    return PARAMETER
  if re.match(r"_*[A-Z][a-z]", name):
    return CLASS
  return VARIABLE


def weak_identifier_kinds(source: Any) -> np.ndarray:
  """Weak identifier kinds from a line-local regex heuristic, per byte (module docstring's rules).

  The spans are exact (`tokenize`, as in `identifier_kinds`): only the kinds are noisy.

  Args:
    source: Python source as ``str``, UTF-8 ``bytes`` or a 1-D ``uint8`` array; ``\\n`` line endings.

  Returns:
    ``(n_bytes,)`` int32: the weak kind on every byte of an identifier, ``-1`` elsewhere (the same support as
    `identifier_kinds` except for soft keywords, which the heuristic labels like any name).

  Example:
    >>> src = "x = Foo(bar=1)\\n"
    >>> k = weak_identifier_kinds(src)
    >>> [IDENTIFIER_KINDS[k[src.index(n)]] for n in ("x", "Foo", "bar")]  # Foo, bar: the expected errors
    ['variable', 'class', 'variable']
  """
  return _weak(*_names(_source_bytes(source))[:2])


def _weak(src, names):
  out = np.full(len(src), -1, np.int32)
  for s, e, name, ls, _ in names:
    nl = src.find(b"\n", ls)
    line = src[ls:nl if nl >= 0 else len(src)].decode("utf-8")
    pre = src[ls:s].decode("utf-8")
    out[s:e] = _weak_kind(pre, line, name)
  return out


class IdentifierTask(NamedTuple):
  """Byte windows of source files with exact and weak identifier kinds (`identifier_task`).

  Attributes:
    tokens: ``(N, window)`` int32 byte tokens.
    labels: ``(N, window)`` int32 exact kinds (`identifier_kinds`), ``-1`` off identifiers.
    weak_labels: ``(N, window)`` int32 weak kinds (`weak_identifier_kinds`), ``-1`` where ``labels`` is ``-1``.
    identifier_ids: ``(N, window)`` int32, a corpus-wide id per identifier occurrence (a span cut by a window
      boundary gets one id per piece), ``-1`` off identifiers.
    documents: ``(N,)`` int32, the index of each window's document.
    skipped: indices of the documents that were skipped (not UTF-8, not tokenizable or not parseable).
  """

  tokens: np.ndarray
  labels: np.ndarray
  weak_labels: np.ndarray
  identifier_ids: np.ndarray
  documents: np.ndarray
  skipped: tuple[int, ...]


def identifier_task(documents: Sequence[Any], *, window: int, max_windows_per_document: int | None = None
                    ) -> IdentifierTask:
  """Cut documents into non-overlapping ``window``-byte windows with exact and weak identifier kinds.

  Each document (a `jaxdyn.data.TextCorpus` document or any source accepted by `identifier_kinds`) is labelled
  whole, then cut from its start into ``len // window`` windows (the tail shorter than a window is dropped);
  with ``max_windows_per_document`` only the first that many windows are kept. Documents that fail to decode,
  tokenize or parse are skipped and listed in ``skipped``.

  Args:
    documents: a non-empty sequence of sources.
    window: bytes per window, >= 1.
    max_windows_per_document: None (all) or >= 1.

  Returns:
    An `IdentifierTask`; the weak labels' accuracy is ``mean(weak_labels == labels)`` over ``labels >= 0``.

  Example:
    >>> t = identifier_task(["import os\\nx = os.path\\n"], window=8)
    >>> t.tokens.shape, t.labels[0, 7].item(), t.labels[1, 6].item()  # 'o' of os (import), 'o' of os (variable)
    ((2, 8), 4, 0)
  """
  if isinstance(documents, (str, bytes, np.ndarray)) or not isinstance(documents, Sequence):
    raise TypeError(f"documents: must be a sequence of sources, got {type(documents).__name__}")
  if not len(documents):
    raise ValueError("documents: must hold at least one document, got 0")
  window = _validation.check_int("window", window, lower=1)
  if max_windows_per_document is not None:
    max_windows_per_document = _validation.check_int("max_windows_per_document", max_windows_per_document, lower=1)
  toks, labs, weaks, ids, docs, skipped = [], [], [], [], [], []
  next_id = 0
  for d, doc in enumerate(documents):
    try:
      src = _source_bytes(doc)
    except TypeError as e:
      raise TypeError(f"documents: entry {d}: {e}") from e
    try:
      analysed = _names(src)
      truth = _truth(*analysed)
      weak = _weak(*analysed[:2])
    except ValueError:
      skipped.append(d)
      continue
    weak = np.where(truth >= 0, weak, -1).astype(np.int32)
    n = len(src) // window
    if max_windows_per_document is not None:
      n = min(n, max_windows_per_document)
    if n == 0:
      continue
    arr = np.frombuffer(src, np.uint8)[:n * window].astype(np.int32).reshape(n, window)
    t = truth[:n * window].reshape(n, window)
    on = t >= 0
    starts = on & ~np.concatenate([np.zeros((n, 1), bool), on[:, :-1]], axis=1)
    # a new id where an identifier starts, also where one kind run follows another without a gap (never in code)
    cum = np.cumsum(starts.reshape(-1)).reshape(n, window) - 1 + next_id
    next_id += int(starts.sum())
    toks.append(arr)
    labs.append(t)
    weaks.append(weak[:n * window].reshape(n, window))
    ids.append(np.where(on, cum, -1).astype(np.int32))
    docs.append(np.full(n, d, np.int32))
  if not toks:
    empty = np.zeros((0, window), np.int32)
    return IdentifierTask(empty, empty, empty, empty, np.zeros(0, np.int32), tuple(skipped))
  return IdentifierTask(np.concatenate(toks), np.concatenate(labs), np.concatenate(weaks), np.concatenate(ids),
                        np.concatenate(docs), tuple(skipped))
