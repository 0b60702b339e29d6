r"""Repository context for single-line code completion (RepoFusion, Shrivastava et al., 2023), decoder-only.

RepoFusion trains a code model to complete a line ("the hole") of a file from *context proposals*
taken from the rest of the repository (the prompt proposals of Repo-Level Prompt Generation: imported
files, sibling files, files with similar names, the parent class, ..., and BM25 / random-nearest-neighbour
retrievals), besides the file's own text before the hole. Here a *repository* is one package of the
Python standard library corpus (`jaxdyn.data.TextCorpus.packages`), its files the package's documents.

**Completion point.** A point is ``(target, line, column)``: the file ``target`` (an index into the
documents), the 0-based line ``line`` and the byte ``column`` inside it (`split_at_point`). The
*prefix* is the file's bytes before the point (lines ``0 .. line - 1`` and the line's first ``column``
bytes); the *target* is the rest of the line, its ``"\n"`` included (the end-of-line byte is how a
single-line completion stops). ``column = 0`` completes a whole line; the authors' data code draws the
hole at a random character of the line (``create_hole_data.py``), which ``column`` reproduces.
`completion_lines` lists the lines that may be targets: the paper's rule (not blank, not a comment
line; here ``#`` starts a comment), and optionally a byte-length range.

**Context proposals** (`repo_proposals`), one `Proposal` per (kind, file), each a named kind:

- ``"imports"``: the files of the repository imported by the target file, parsed by `parse_imports`
  **from the prefix only** (an import written after the point is future text), in order of first
  appearance; relative imports resolved against the target file's package path;
- ``"siblings"``: the other files of the target's directory, ranked by the number of distinct
  identifiers (``[A-Za-z_]\w{2,}``) they share with the prefix (a lexical retriever in the spirit of
  the paper's BM25 contexts), ties by name;
- ``"similar_names"``: files whose names split into parts (``_`` and camelCase boundaries, lower case)
  share the first part with the target's name, ranked by the number of shared leading parts, ties by
  name (RLPG's "similar name file");
- ``"prior_lines"``: the target file's own text before the point (RepoFusion's "prior" context).

A file appears in at most one proposal (the first kind in ``kinds`` that proposes it wins), never the
target file itself except as ``"prior_lines"``, and at most ``max_per_kind`` per kind. The order is
deterministic: kinds in the order given, within a kind by the ranks above.

**Truncation.** Each proposal's content is cut to ``budget`` tokens. A file proposal keeps its
*start* (``content="head"``: the module docstring, imports and first definitions; ``"signatures"``:
only its ``def``/``class`` lines, RLPG's "method names" context type), as the authors' code keeps the
first tokens of repository contexts; ``"prior_lines"`` keeps its *end*, the text next to the hole, as
the authors' code keeps the last tokens of the prior context. **No leakage:** nothing at or after the
completion point of the target file enters any proposal (RLPG's "post lines" proposal, the lines
after the hole, is deliberately not offered: on complete files used for training it is the future).

**Encoding for a decoder-only model** (`encode_completion`). RepoFusion uses Fusion-in-Decoder: a
T5 encoder encodes each (proposal + surrounding context) separately and one decoder cross-attends to
all encodings. jaxdyn's shared model is decoder-only, so the proposals are *concatenated* into one
sequence instead:

.. math::
   s = \big[\mathrm{sep}\ h_1\ c_1\big] \cdots \big[\mathrm{sep}\ h_K\ c_K\big]\ \mathrm{sep}\ p\ y,

``h_k`` the header bytes ``"# {kind}: {source}\n"``, ``c_k`` the proposal's tokens, ``sep`` a token no
file contains (``BOS_ID``), ``p`` the prefix and ``y`` the target line. One forward pass sees every
proposal and the prefix, the same information FiD's decoder sees, and every proposal token can also
attend to earlier proposals (FiD's encoders cannot); the price is attention cost quadratic in the
concatenated length, ``O((\sum_k |c_k| + |p|)^2)``, where FiD's encoders cost ``\sum_k O(|c_k|^2)``.
The prefix comes last, next to the target, as in the paper's best ordering (prior context last). The
model is trained on ``inputs = s[:-1]``, ``targets = s[1:]`` with weight 1 exactly on targets that are
bytes of ``y`` (``|y|`` ones) and 0 elsewhere, so the loss is the target line's mean nats per byte.

**Length budget.** ``|s| \le`` ``seq_len + 1``. The target is never cut (a point whose target does not
fit raises). The prefix first reserves ``min(|p|, prefix_reserve)`` tokens; proposals are cut first:
whole blocks are kept in order while they fit in what remains, the first that does not fit is cut
keeping its start (dropped if not even its separator, header and one token fit), later ones dropped;
then the prefix takes all the room left, keeping its end. With no proposals the prefix fills the
budget.

Derived here (only the abstract and the authors' code, github.com/ServiceNow/RepoFusion, were read):
the hole is a whole line by default (``column = 0``); the repository is a stdlib package; the ranking
inside a kind, the ``"signatures"`` view, the header format, and the concatenation with its cut order
(the authors' FiD encodes one fixed-length passage per proposal, ``"rule_name: <kind> rule_context:
<text>"``, each with the hole's surrounding context appended, and truncates each to its own budget).
What was read in the code (the kept end of each context, a hole drawn inside a line) is the default
here; no detail of the paper could be compared with the code, so there is no ``official_compat`` switch.

Reference: Shrivastava et al., "RepoFusion: Training Code Models to Understand Your Repository", 2023.
https://arxiv.org/abs/2306.10998 (code and data: https://huggingface.co/RepoFusion)
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdyn import _validation
from jaxdyn.data._text import BOS_ID, PAD_ID
from jaxdyn.text._decomposition import _check_documents

__all__ = [
    "REPO_KINDS",
    "Proposal",
    "RepoExample",
    "completion_lines",
    "encode_completion",
    "parse_imports",
    "repo_proposals",
    "split_at_point",
]

REPO_KINDS = ("imports", "siblings", "similar_names", "prior_lines")
_CONTENTS = ("head", "signatures")
_NEWLINE = 10
_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{2,}")
_IMPORT = re.compile(r"^\s*import\s+(.+)$")
_FROM = re.compile(r"^\s*from\s+(\.*)([\w.]*)\s+import\s+(.+)$")
_SIGNATURE = re.compile(rb"^\s*(async\s+def|def|class)\s")


class Proposal(NamedTuple):
  """One context proposal.

  Attributes:
    kind: one of `REPO_KINDS`.
    source: the name of the file it comes from.
    tokens: its content, a 1-D int32 array already cut to the budget.
  """

  kind: str
  source: str
  tokens: np.ndarray


class RepoExample(NamedTuple):
  """One encoded completion point (`encode_completion`), padded to ``seq_len``.

  Attributes:
    inputs: ``(seq_len,)`` int32, ``s[:-1]`` then ``PAD_ID``.
    targets: ``(seq_len,)`` int32, ``s[1:]`` then ``PAD_ID``.
    weights: ``(seq_len,)`` float32, 1 where the target is a byte of the target line, else 0.
    length: ``|s| - 1``, the unpadded number of positions.
    num_context: tokens of the proposal blocks kept (separators and headers included).
    num_prefix: prefix tokens kept.
    num_target: target-line tokens (``weights.sum()``).
  """

  inputs: np.ndarray
  targets: np.ndarray
  weights: np.ndarray
  length: int
  num_context: int
  num_prefix: int
  num_target: int


# --- lines ----------------------------------------------------------------------------------------
def _check_tokens(name, tokens):
  a = np.asarray(tokens)
  if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
    raise ValueError(f"{name}: must be a 1-D integer token array, got {a.dtype} of shape {a.shape}")
  return a


def _line_starts(doc: np.ndarray) -> np.ndarray:
  """Start offsets of the lines of ``doc`` plus ``len(doc)`` at the end (a trailing newline ends, not starts)."""
  nl = np.flatnonzero(doc == _NEWLINE) + 1
  starts = np.concatenate([[0], nl[nl < len(doc)]]) if len(doc) else np.zeros(0, np.int64)
  return np.append(starts, len(doc)).astype(np.int64)


def completion_lines(tokens: Any, *, min_bytes: int = 1, max_bytes: int | None = None) -> np.ndarray:
  """The lines of a document that may be completion targets: not blank, not a ``#`` comment.

  A line's bytes include its ``"\\n"``; a line qualifies when its stripped text is non-empty, does
  not start with ``#``, and its byte count (newline included) lies in ``[min_bytes, max_bytes]``.

  Args:
    tokens: a 1-D integer token array (a file's bytes).
    min_bytes: the shortest line kept, >= 1.
    max_bytes: the longest line kept (``None``: no limit), >= ``min_bytes``.

  Returns:
    The 0-based indices of the qualifying lines, int64, ascending.

  Example:
    >>> completion_lines(np.frombuffer(b"x = 1\\n\\n# c\\n  y\\n", np.uint8)).tolist()
    [0, 3]
  """
  doc = _check_tokens("tokens", tokens)
  min_bytes = _validation.check_int("min_bytes", min_bytes, lower=1)
  if max_bytes is not None:
    max_bytes = _validation.check_int("max_bytes", max_bytes, lower=min_bytes)
  starts = _line_starts(doc)
  keep = []
  for i in range(len(starts) - 1):
    a, b = int(starts[i]), int(starts[i + 1])
    text = bytes(doc[a:b].astype(np.uint8)).strip()
    if text and not text.startswith(b"#") and b - a >= min_bytes and (max_bytes is None or b - a <= max_bytes):
      keep.append(i)
  return np.asarray(keep, np.int64)


def split_at_point(tokens: Any, line: int, *, column: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Splits a document at a completion point into ``(prefix, target)``.

  Args:
    tokens: a 1-D integer token array.
    line: the 0-based target line, in ``[0, number of lines)``.
    column: the bytes of the line already typed (part of the prefix), in ``[0, line bytes)``.

  Returns:
    ``(prefix, target)`` int32: ``tokens[:start + column]`` and the rest of the line, its newline
    included; ``concatenate([prefix, target])`` is a prefix of ``tokens``.

  Example:
    >>> p, y = split_at_point(np.frombuffer(b"a\\nbc\\nd", np.uint8), 1, column=1)
    >>> bytes(p.astype(np.uint8)), bytes(y.astype(np.uint8))
    (b'a\\nb', b'c\\n')
  """
  doc = _check_tokens("tokens", tokens)
  if not len(doc):
    raise ValueError("tokens: must have at least one line, got an empty document")
  starts = _line_starts(doc)
  line = _validation.check_int("line", line, lower=0, upper=len(starts) - 2)
  a, b = int(starts[line]), int(starts[line + 1])
  column = _validation.check_int("column", column, lower=0, upper=b - a - 1)
  return doc[:a + column].astype(np.int32), doc[a + column:b].astype(np.int32)


# --- imports --------------------------------------------------------------------------------------
def _module_name(name: str) -> str:
  parts = posixpath.splitext(name)[0].split("/")
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def _package_parts(name: str) -> list[str]:
  return posixpath.splitext(name)[0].split("/")[:-1]  # a file's package, "json/__init__.py" -> ["json"]


def _check_name(name, value):
  if not isinstance(value, str):
    raise TypeError(f"{name}: must be a str, got {type(value).__name__}")
  return value


def parse_imports(tokens: Any, name: str) -> tuple[str, ...]:
  """Dotted module names a Python file imports, relative imports resolved, in order of first appearance.

  ``import a.b as c, d`` gives ``a.b, d``; ``from X import p, q`` gives ``X.p, X.q, X`` (a name may be a
  submodule or an attribute of ``X``: the caller keeps the ones that are files); ``from .m import p``
  in ``pkg/sub/f.py`` resolves ``.`` to ``pkg.sub`` (``..`` to ``pkg``; a level above the top is
  skipped). Only lines that start (after indentation) with ``import`` / ``from`` are read, names in
  parentheses only from the statement's first line.

  Args:
    tokens: a 1-D integer token array (the file's bytes; pass only the prefix to avoid the future).
    name: the file's relative path (``"json/decoder.py"``), for relative imports.

  Returns:
    A tuple of dotted names, without duplicates.

  Example:
    >>> parse_imports(np.frombuffer(b"import re\\nfrom .scanner import make\\n", np.uint8), "json/decoder.py")
    ('re', 'json.scanner.make', 'json.scanner')
  """
  doc = _check_tokens("tokens", tokens)
  name = _check_name("name", name)
  pkg = _package_parts(name)
  out: dict[str, None] = {}
  for raw in bytes(np.asarray(doc, np.int64).clip(0, 255).astype(np.uint8)).decode("utf-8", "replace").split("\n"):
    raw = raw.split("#", 1)[0].rstrip().rstrip("\\")
    m = _FROM.match(raw)
    if m:
      dots, mod, names = m.groups()
      if dots:
        up = len(dots) - 1
        if up > len(pkg):
          continue
        base = ".".join(pkg[:len(pkg) - up] + ([mod] if mod else []))
      else:
        base = mod
      if not base:
        continue
      for n in names.replace("(", " ").replace(")", " ").split(","):
        n = n.split(" as ")[0].strip()
        if n.isidentifier():
          out[f"{base}.{n}"] = None
      out[base] = None
      continue
    m = _IMPORT.match(raw)
    if m:
      for n in m.group(1).split(","):
        n = n.split(" as ")[0].strip()
        if n and all(p.isidentifier() for p in n.split(".")):
          out[n] = None
  return tuple(out)


# --- proposals ------------------------------------------------------------------------------------
def _name_parts(name: str) -> list[str]:
  stem = posixpath.splitext(posixpath.basename(name))[0]
  parts = []
  for piece in stem.split("_"):
    parts += [p.lower() for p in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", piece)]
  return parts


def _shared_leading(a: list[str], b: list[str]) -> int:
  n = 0
  for x, y in zip(a, b):
    if x != y:
      break
    n += 1
  return n


@functools.lru_cache(maxsize=4096)
def _identifiers_of(text: bytes) -> frozenset[bytes]:  # keyed by content: exact, repeated calls are cheap
  return frozenset(_IDENT.findall(text))


def _identifiers(doc: np.ndarray) -> frozenset[bytes]:
  return _identifiers_of(bytes(np.asarray(doc, np.int64).clip(0, 255).astype(np.uint8)))


def _content(doc: np.ndarray, content: str) -> np.ndarray:
  if content == "head":
    return doc.astype(np.int32)
  starts = _line_starts(doc)
  keep = [doc[starts[i]:starts[i + 1]] for i in range(len(starts) - 1)
          if _SIGNATURE.match(bytes(doc[starts[i]:starts[i + 1]].astype(np.uint8)))]
  return np.concatenate(keep).astype(np.int32) if keep else np.zeros(0, np.int32)


def repo_proposals(documents: Sequence[Any], names: Sequence[str], target: int, line: int, *, column: int = 0,
                   packages: Sequence[str] | None = None, kinds: Sequence[str] = ("imports", "siblings",
                                                                                  "similar_names"),
                   budget: int = 128, max_per_kind: int = 1, content: str = "head") -> tuple[Proposal, ...]:
  """Context proposals for the completion point ``(target, line, column)`` from its repository.

  See the module docstring for each kind, the ranking and the truncation. The repository is every
  document given, or, with ``packages``, the documents of the target's package.

  Args:
    documents: a non-empty sequence of 1-D integer token arrays (the files' bytes).
    names: one relative path per document (``"json/decoder.py"``), distinct.
    target: the index of the target file.
    line: the target line (`split_at_point`).
    column: bytes of the line before the point.
    packages: one package name per document (``None``: one repository of all documents).
    kinds: which kinds to propose, in this order, each from `REPO_KINDS` at most once.
    budget: the most content tokens per proposal, >= 1.
    max_per_kind: the most proposals per kind, >= 1.
    content: ``"head"`` (a file's first tokens) or ``"signatures"`` (its ``def``/``class`` lines).

  Returns:
    A tuple of `Proposal`, possibly empty (a kind with no candidate, or an empty candidate, is skipped).

  Example:
    >>> docs = [np.frombuffer(t, np.uint8) for t in (b"from .b import f\\nf()\\n", b"def f(): pass\\n")]
    >>> [(p.kind, p.source, bytes(p.tokens.astype(np.uint8))) for p in repo_proposals(docs, ["p/a.py", "p/b.py"],
    ...  0, 1, kinds=("imports",), budget=8)]
    [('imports', 'p/b.py', b'def f():')]
  """
  docs = _check_documents("documents", documents)
  if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
    raise TypeError(f"names: must be a sequence of str, one per document, got {type(names).__name__}")
  if len(names) != len(docs):
    raise ValueError(f"names: must have one entry per document ({len(docs)}), got {len(names)}")
  names = [_check_name("names", n) for n in names]
  if len(set(names)) != len(names):
    raise ValueError("names: must be distinct, got a repeated name")
  target = _validation.check_int("target", target, lower=0, upper=len(docs) - 1)
  if packages is not None:
    if isinstance(packages, (str, bytes)) or not isinstance(packages, Sequence):
      raise TypeError(f"packages: must be a sequence of str or None, got {type(packages).__name__}")
    if len(packages) != len(docs):
      raise ValueError(f"packages: must have one entry per document ({len(docs)}), got {len(packages)}")
    packages = [_check_name("packages", p) for p in packages]
  if isinstance(kinds, (str, bytes)) or not isinstance(kinds, Sequence):
    raise TypeError(f"kinds: must be a sequence of kind names, got {type(kinds).__name__}")
  kinds = [_validation.check_choice("kinds", k, REPO_KINDS) for k in kinds]
  if len(set(kinds)) != len(kinds):
    raise ValueError(f"kinds: must not repeat a kind, got {kinds}")
  budget = _validation.check_int("budget", budget, lower=1)
  max_per_kind = _validation.check_int("max_per_kind", max_per_kind, lower=1)
  content = _validation.check_choice("content", content, _CONTENTS)
  prefix, _ = split_at_point(docs[target], line, column=column)

  repo = [i for i in range(len(docs)) if i != target and (packages is None or packages[i] == packages[target])]
  by_module = {_module_name(names[i]): i for i in repo}
  me = names[target]
  used: set[int] = set()
  out: list[Proposal] = []

  def candidates(kind):
    if kind == "imports":
      return [by_module[m] for m in parse_imports(prefix, me) if m in by_module]
    if kind == "siblings":
      here = _identifiers(prefix)
      sib = [i for i in repo if posixpath.dirname(names[i]) == posixpath.dirname(me)]
      return sorted(sib, key=lambda i: (-len(here & _identifiers(docs[i])), names[i]))
    if kind == "similar_names":
      mine = _name_parts(me)
      scored = [(_shared_leading(mine, _name_parts(names[i])), i) for i in repo]
      return [i for s, i in sorted(scored, key=lambda t: (-t[0], names[t[1]])) if s >= 1]
    return []

  for kind in kinds:
    if kind == "prior_lines":
      if len(prefix):
        out.append(Proposal(kind, me, prefix[-budget:].astype(np.int32)))
      continue
    count = 0
    for i in dict.fromkeys(candidates(kind)):
      if count == max_per_kind:
        break
      if i in used:
        continue
      body = _content(docs[i], content)[:budget]
      if not len(body):
        continue
      used.add(i)
      out.append(Proposal(kind, names[i], body))
      count += 1
  return tuple(out)


# --- encoding -------------------------------------------------------------------------------------
def _header(p: Proposal) -> np.ndarray:
  return np.frombuffer(f"# {p.kind}: {p.source}\n".encode("utf-8"), np.uint8).astype(np.int32)


def encode_completion(proposals: Sequence[Proposal], prefix: Any, target: Any, *, seq_len: int,
                      prefix_reserve: int = 0, sep_id: int = BOS_ID, pad_id: int = PAD_ID) -> RepoExample:
  """Concatenates proposals, the prefix and the target line into one decoder-only training example.

  ``s = [sep h_1 c_1] ... [sep h_K c_K] sep p y`` cut to ``|s| <= seq_len + 1`` (module docstring,
  "Length budget": proposals are cut first, from the last; the prefix keeps its end; the target is
  never cut), then ``inputs = s[:-1]``, ``targets = s[1:]``, padded with ``pad_id`` to ``seq_len``, and
  ``weights`` 1 exactly on the ``|y|`` targets that are target-line bytes.

  Args:
    proposals: a sequence of `Proposal` (e.g. from `repo_proposals`), in priority order.
    prefix: 1-D integer tokens before the point (`split_at_point`), may be empty.
    target: 1-D integer tokens of the target line, non-empty.
    seq_len: positions per example, >= ``|target| + 1``.
    prefix_reserve: prefix tokens protected from the proposals, >= 0.
    sep_id: the separator before each block and before the prefix, >= 0.
    pad_id: the padding id, >= 0.

  Returns:
    A `RepoExample`.

  Example:
    >>> pr = Proposal("imports", "p/b.py", np.frombuffer(b"def f", np.uint8).astype(np.int32))
    >>> e = encode_completion([pr], np.frombuffer(b"x=", np.uint8), np.frombuffer(b"f\\n", np.uint8), seq_len=32,
    ...                       sep_id=0)
    >>> bytes(np.append(e.inputs[:e.length], e.targets[e.length - 1]).astype(np.uint8))
    b'\\x00# imports: p/b.py\\ndef f\\x00x=f\\n'
    >>> e.weights[:e.length].tolist()[-3:], e.num_target
    ([0.0, 1.0, 1.0], 2)
  """
  if isinstance(proposals, (str, bytes, np.ndarray)) or not isinstance(proposals, Sequence):
    raise TypeError(f"proposals: must be a sequence of Proposal, got {type(proposals).__name__}")
  for p in proposals:
    if not isinstance(p, Proposal):
      raise TypeError(f"proposals: must hold Proposal records, got {type(p).__name__}")
    _check_tokens("proposals", p.tokens)
  prefix = _check_tokens("prefix", prefix).astype(np.int32)
  target = _check_tokens("target", target).astype(np.int32)
  _validation.check_nonempty("target", target, what="tokens")
  seq_len = _validation.check_int("seq_len", seq_len, lower=1)
  if len(target) + 1 > seq_len:
    raise ValueError(f"seq_len: must be at least the target's length + 1 ({len(target) + 1}), got {seq_len}")
  prefix_reserve = _validation.check_int("prefix_reserve", prefix_reserve, lower=0)
  sep_id = _validation.check_int("sep_id", sep_id, lower=0)
  pad_id = _validation.check_int("pad_id", pad_id, lower=0)
  sep = np.array([sep_id], np.int32)

  room = seq_len + 1 - len(target) - 1  # tokens for the proposal blocks and the prefix
  reserved = min(len(prefix), prefix_reserve, room)
  free = room - reserved
  blocks = []
  for p in proposals:
    block = np.concatenate([sep, _header(p), np.asarray(p.tokens).astype(np.int32)])
    if len(block) <= free:
      blocks.append(block)
      free -= len(block)
      continue
    if free >= 1 + len(_header(p)) + 1:
      blocks.append(block[:free])
      free = 0
    break
  context = np.concatenate(blocks) if blocks else np.zeros(0, np.int32)
  keep = min(len(prefix), room - len(context))
  kept_prefix = prefix[len(prefix) - keep:]
  s = np.concatenate([context, sep, kept_prefix, target]).astype(np.int32)
  n = len(s) - 1
  inputs = np.full(seq_len, pad_id, np.int32)
  targets = np.full(seq_len, pad_id, np.int32)
  weights = np.zeros(seq_len, np.float32)
  inputs[:n], targets[:n] = s[:-1], s[1:]
  weights[n - len(target):n] = 1.0
  return RepoExample(inputs, targets, weights, n, len(context), keep, len(target))
