"""Byte-level text corpora: the Python standard library's own sources, and synthetic documents.

Every machine that runs jaxdyn has a real, offline text corpus: the ``*.py`` files of the running
interpreter's standard library (``sysconfig.get_paths()["stdlib"]``), hundreds of documents from a few
bytes to a few hundred kilobytes, grouped into packages. `load_stdlib_corpus` reads them as byte-level
token documents (no tokenizer, nothing downloaded) with a deterministic train / validation split by
file and the package of each file as metadata; `synthetic_documents` makes variable-length documents
of a known structure for tests.

Which files. Every ``*.py`` file under the stdlib directory (symlinks to directories are not
followed), except those in a folder named ``site-packages`` or ``dist-packages`` (installed
third-party packages, which pyenv and some distributions keep inside the stdlib directory),
``test`` or ``tests`` (CPython's regression suite, ``lib2to3/tests`` with its deliberately broken
data files, the ``unittest``/``ctypes``/... test packages), ``idle_test`` (IDLE's tests) or
``__pycache__``, and except empty files (empty ``__init__.py``), which hold no tokens. ``idlelib`` and
``lib2to3`` themselves are kept: they are ordinary library code. Different Python versions ship
different files, so every result records ``platform.python_version()``; on CPython 3.11.7 (Linux,
pyenv) this is 731 files and about 12.1 MB.

The vocabulary. A document is its file's bytes, unchanged (no decoding), as ``uint8`` tokens
0..255. Three ids above the bytes are reserved for the sequence builders (`jaxdyn.text`):
``BOS_ID = 256``, ``EOS_ID = 257``, ``PAD_ID = 258``, so a model over packed text has
``VOCAB_SIZE = 259`` ids; a corpus never contains them.

The split. A file is in the validation split when the first 8 bytes of the SHA-256 of its relative
POSIX path (``"json/decoder.py"``), read as a big-endian integer ``h``, satisfy
``h / 2**64 < validation_fraction``: a function of the name alone, so independent of the order of a
directory listing, of the machine, and of which other files a version ships; a file keeps its split
across versions and fractions grow the validation set monotonically.

The package of a file is the first component of its relative path without ``.py``:
``json/decoder.py`` -> ``json``, ``os.py`` -> ``os``, ``xml/etree/ElementTree.py`` -> ``xml``.

Nothing is cached on disk; the files read are kept in memory per (directory, Python version) for the
life of the process (reading them takes about a second the first time).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import platform
import sysconfig

import numpy as np

from jaxdyn import _validation

BOS_ID, EOS_ID, PAD_ID = 256, 257, 258
VOCAB_SIZE = 259
SPLITS = ("train", "validation", "all")
EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})


@dataclasses.dataclass(frozen=True, eq=False)
class TextCorpus:
  """A list of token documents with their names, packages and provenance.

  Attributes:
    documents: one 1-D ``uint8`` array of tokens per document (bytes, 0..255).
    names: each document's name (for the stdlib, its relative POSIX path, e.g. ``"json/decoder.py"``).
    packages: each document's package (its metadata, e.g. ``"json"``).
    python_version: ``platform.python_version()`` of the interpreter that built the corpus.
    source: ``"stdlib"`` or ``"synthetic"``.
    split: ``"train"``, ``"validation"`` or ``"all"``.

  ``len(corpus)`` is the number of documents; ``corpus[i]`` the record ``{"tokens", "name",
  "package"}`` (grain's random-access protocol); ``lengths`` the document lengths (int64).
  """

  documents: tuple[np.ndarray, ...]
  names: tuple[str, ...]
  packages: tuple[str, ...]
  python_version: str
  source: str
  split: str

  def __post_init__(self):
    if not (len(self.documents) == len(self.names) == len(self.packages)):
      raise ValueError(f"documents: must have one name and one package each, got {len(self.documents)} documents, "
                       f"{len(self.names)} names and {len(self.packages)} packages")
    for d in self.documents:
      if not isinstance(d, np.ndarray) or d.ndim != 1 or d.dtype != np.uint8:
        raise ValueError(f"documents: must be 1-D uint8 arrays, got {type(d).__name__} "
                         f"{getattr(d, 'dtype', '')} of shape {np.shape(d)}")

  def __len__(self) -> int:
    return len(self.documents)

  def __getitem__(self, i: int) -> dict:
    i = int(i)
    return {"tokens": self.documents[i], "name": self.names[i], "package": self.packages[i]}

  @property
  def lengths(self) -> np.ndarray:
    return np.asarray([len(d) for d in self.documents], np.int64)

  @property
  def num_tokens(self) -> int:
    return int(sum(len(d) for d in self.documents))


def _in_validation(name: str, fraction: float) -> bool:
  h = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
  return h / 2.0**64 < fraction


def _package(name: str) -> str:
  first = name.split("/", 1)[0]
  return first[:-3] if first.endswith(".py") else first


@functools.lru_cache(maxsize=4)
def _read_stdlib(root: str, version: str) -> tuple[tuple[str, bytes], ...]:
  del version  # part of the cache key only
  files = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
    for f in sorted(filenames):
      if not f.endswith(".py"):
        continue
      path = os.path.join(dirpath, f)
      if not os.path.isfile(path):
        continue
      with open(path, "rb") as fh:
        data = fh.read()
      if data:
        files.append((os.path.relpath(path, root).replace(os.sep, "/"), data))
  return tuple(sorted(files))


def load_stdlib_corpus(split: str = "train", *, validation_fraction: float = 0.1,
                       root: str | os.PathLike | None = None) -> TextCorpus:
  """The Python standard library's ``*.py`` files as byte-token documents (see the module docstring).

  Args:
    split: ``"train"``, ``"validation"`` (the files whose path hash falls below
      ``validation_fraction``) or ``"all"``.
    validation_fraction: the share of files, by path hash, in the validation split, in (0, 1).
    root: the directory to read (default ``sysconfig.get_paths()["stdlib"]``); any source tree works.

  Returns:
    A `TextCorpus` sorted by name, with ``source="stdlib"`` and the running ``python_version``.

  Example:
    >>> val = load_stdlib_corpus("validation")
    >>> val.python_version == platform.python_version(), val.documents[0].dtype
    (True, dtype('uint8'))
  """
  _validation.check_choice("split", split, SPLITS)
  fraction = _validation.check_real("validation_fraction", validation_fraction, lower=0.0, upper=1.0,
                                    lower_open=True, upper_open=True)
  if root is not None and not isinstance(root, (str, os.PathLike)):
    raise TypeError(f"root: must be a path, got {type(root).__name__}")
  root = os.fspath(root) if root is not None else sysconfig.get_paths()["stdlib"]
  if not os.path.isdir(root):
    raise ValueError(f"root: must be a directory, got {root!r}")
  version = platform.python_version()
  files = _read_stdlib(os.path.realpath(root), version)
  if split != "all":
    files = tuple(f for f in files if _in_validation(f[0], fraction) == (split == "validation"))
  if not files:
    raise ValueError(f"root: holds no non-empty *.py file in the {split!r} split, got {root!r}")
  return TextCorpus(documents=tuple(np.frombuffer(data, np.uint8) for _, data in files),
                    names=tuple(name for name, _ in files), packages=tuple(_package(name) for name, _ in files),
                    python_version=version, source="stdlib", split=split)


def synthetic_documents(seed: int, n: int, *, min_len: int, max_len: int, vocab: int = 256) -> TextCorpus:
  r"""``n`` documents of random lengths whose tokens count up modulo ``vocab`` from a random start.

  .. math::
    L_i \sim \mathcal{U}\{\mathrm{min\_len}, \dots, \mathrm{max\_len}\}, \quad
    s_i \sim \mathcal{U}\{0, \dots, \mathrm{vocab} - 1\}, \quad x_{i,t} = (s_i + t) \bmod \mathrm{vocab},

  drawn from ``np.random.default_rng(seed)`` (lengths first, then starts). Every token after the first
  of a document is predictable from the one before (``x_{t+1} = x_t + 1 mod vocab``), so a model
  that learns it reaches zero loss inside documents; a document's first token is not predictable.
  Names are ``"doc{i}"``, packages ``"pkg{i % 4}"``.

  Args:
    seed: a non-negative int.
    n: number of documents, >= 1.
    min_len: shortest length, >= 1.
    max_len: longest length, >= ``min_len``.
    vocab: token ids ``0 .. vocab - 1``, in [2, 256] (tokens are uint8).

  Returns:
    A `TextCorpus` with ``source="synthetic"``, ``split="all"``.

  Example:
    >>> c = synthetic_documents(0, 3, min_len=4, max_len=4, vocab=10)
    >>> [int(t) for t in np.diff(c.documents[0].astype(int)) % 10]
    [1, 1, 1]
  """
  seed = _validation.check_int("seed", seed, lower=0)
  n = _validation.check_int("n", n, lower=1)
  min_len = _validation.check_int("min_len", min_len, lower=1)
  max_len = _validation.check_int("max_len", max_len, lower=min_len)
  vocab = _validation.check_int("vocab", vocab, lower=2, upper=256)
  rng = np.random.default_rng(seed)
  lengths = rng.integers(min_len, max_len + 1, size=n)
  starts = rng.integers(0, vocab, size=n)
  docs = tuple(((s + np.arange(length)) % vocab).astype(np.uint8) for s, length in zip(starts, lengths))
  return TextCorpus(documents=docs, names=tuple(f"doc{i}" for i in range(n)),
                    packages=tuple(f"pkg{i % 4}" for i in range(n)), python_version=platform.python_version(),
                    source="synthetic", split="all")


def _scalar(value):
  """A record's value as a Python str / bytes / number (TFDS gives 0-d numpy arrays for scalars)."""
  return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def load_tfds_text(name: str, split: str = "train", *, feature: str = "text", metadata: str | None = None,
                   max_documents: int | None = None, data_dir: str | os.PathLike | None = None) -> TextCorpus:
  """A prepared TFDS text dataset's ``feature`` as byte-token documents (UTF-8 bytes, one token per byte).

  Reads ``tfds.data_source(name, split=split)`` (the array_record format, never downloading; TensorFlow
  is not needed to read it). Each record's ``feature`` (``str`` or ``bytes``) becomes one uint8
  document, named ``"<name>/<split>/<index>"``; its package (the metadata MeCo conditions on) is the
  record's ``metadata`` feature as text when given (e.g. a label), else ``name``. Empty texts are
  skipped. An unprepared dataset raises `jaxdyn.data.DatasetNotPreparedError` saying how to build it.

  Args:
    name: the TFDS dataset name (e.g. ``"lm1b"``, ``"imdb_reviews"``, ``"wiki40b/en"``).
    split: a TFDS split string.
    feature: the text feature of a record.
    metadata: an optional feature whose value is each document's metadata.
    max_documents: read at most this many records, >= 1 (default: all).
    data_dir: where the prepared dataset lives (default: TFDS's, or ``TFDS_DATA_DIR``).

  Returns:
    A `TextCorpus` with ``source="tfds:<name>"``.

  Example:
    >>> import tensorflow_datasets as tfds
    >>> with tfds.testing.mock_data(num_examples=3):
    ...   c = load_tfds_text("imdb_reviews", "test", metadata="label")
    >>> len(c), c.names[0], c.documents[0].dtype
    (3, 'imdb_reviews/test/0', dtype('uint8'))
  """
  for arg, value in (("name", name), ("split", split), ("feature", feature)):
    if not isinstance(value, str) or not value:
      raise TypeError(f"{arg}: must be a non-empty str, got {value!r}")
  if metadata is not None and (not isinstance(metadata, str) or not metadata):
    raise TypeError(f"metadata: must be a non-empty str or None, got {metadata!r}")
  if max_documents is not None:
    max_documents = _validation.check_int("max_documents", max_documents, lower=1)
  if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
    raise TypeError(f"data_dir: must be a path, got {type(data_dir).__name__}")
  from jaxdyn.data._sources import tfds_data_source  # pylint: disable=g-import-not-at-top

  source = tfds_data_source(name, split, data_dir)
  n = len(source) if max_documents is None else min(len(source), max_documents)
  docs, names, packages = [], [], []
  for i in range(n):
    record = source[i]
    if feature not in record:
      raise ValueError(f"feature: tfds:{name} records have no {feature!r}; they have {sorted(record)}")
    text = _scalar(record[feature])
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if not data:
      continue
    docs.append(np.frombuffer(data, np.uint8))
    names.append(f"{name}/{split}/{i}")
    if metadata is None:
      packages.append(name)
    else:
      if metadata not in record:
        raise ValueError(f"metadata: tfds:{name} records have no {metadata!r}; they have {sorted(record)}")
      value = _scalar(record[metadata])
      packages.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
  if not docs:
    raise ValueError(f"name: tfds:{name} split {split!r} holds no non-empty {feature!r}")
  return TextCorpus(documents=tuple(docs), names=tuple(names), packages=tuple(packages),
                    python_version=platform.python_version(), source=f"tfds:{name}", split=split)
