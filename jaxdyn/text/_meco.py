r"""MeCo: metadata conditioning then cooldown (Gao et al., ICML 2025), on byte-level documents.

MeCo trains a language model on documents prefixed with their metadata (in the paper a source URL,
``"URL: en.wikipedia.org\n\n"``), with the prefix tokens excluded from the loss, for the first 90% of
training; the last 10% (the *cooldown*) trains on the plain documents with the optimizer state kept, so
the model works without metadata. At inference, prepending chosen metadata to a prompt steers the
model (*conditional inference*). Here the metadata is a document's package in the Python standard
library corpus (`jaxdyn.data.TextCorpus.packages`) and the default template is ``"package: {name}\n\n"``.

**Layout and loss mask.** A document ``x_1 .. x_n`` with metadata prefix ``m_1 .. m_M`` (the template's
UTF-8 bytes, one token per byte, so ``M`` is the prefix's byte length) becomes the token sequence
``m_1 .. m_M x_1 .. x_n`` with the per-token loss mask ``0 .. 0 1 .. 1`` (``M`` zeros). The mask is over
*tokens* (the authors' ``labels[~mask] = -100`` before the shift): with inputs ``s[:-1]`` and targets
``s[1:]`` the weight of target ``s[t+1]`` is ``mask[t+1]``, so

.. math:: \mathcal{L} = -\frac{\sum_{t} w_{t+1} \log p(s_{t+1} \mid s_{\le t})}{\sum_t w_{t+1}}, \quad
   w = \mathrm{mask},

the ``M`` prefix tokens carry weight 0 wherever they are targets (inside a packed row ``m_1`` is the
target after the previous document's ``EOS_ID``; at the start of a sequence it is no target at all), and
**the first document token ``x_1`` is predicted**, from the context ``m_1 .. m_M`` ending in ``"\n\n"``.
This follows the authors' code (``datatools/mds_pack_data.py``: ``mask[:len(metadata)] = 0``, or
``mask[:1 + len]`` when a BOS token leads, which masks BOS + metadata and nothing of the document) and the
paper's "no loss on the metadata tokens"; paper and code agree here, so there is no ``official_compat``.
Not reproduced: the authors' data loader un-masks the last 10 labels of a row whose mask is all 0 (to
avoid a NaN mean); here such a row simply has zero weight (divide by ``max(sum(w), 1)``).

**Packed rows.** `meco_pack` prepends each document's own prefix, then packs with
`jaxdyn.text.concat_and_chunk` (``EOS_ID`` after each document, ``seq_len`` rows, the tail dropped). The
prefix belongs to its document: same segment id, and positions that start at the prefix's first token
(the document attends to its metadata under the document-boundary mask); the ``EOS_ID`` after a
document has mask 1 (predicted, as in the authors' code, whose mask covers the ``eos``). A row boundary
may cut a document or its prefix like any other token: the continuation in the next row starts a new
segment piece (positions from 0) that no longer sees the metadata (how the authors' packer treats a
document cut by a row boundary was not checked here). The loss mask travels with the tokens, so masked
tokens per document equal the prefix length wherever the rows are cut (only the dropped tail loses tokens).

**Schedule.** `meco_switch_step` is the first cooldown step: ``S = T - \mathrm{round}(f\, T)`` for
``T`` total steps and cooldown fraction ``f`` (0.1: the authors' README resumes the cooldown from checkpoint 36000,
"90%", keeping the optimizer state), round half up; `meco_conditioned` says whether a step ``t < S`` is in
the metadata phase.
During cooldown build the data with ``condition=False`` (`meco_document` / `meco_pack`): plain
documents, all-ones masks, bit for bit the plain pipeline. The optimizer state is the caller's to keep
(this module only builds data).

**Conditional inference.** `meco_prompt` prepends the chosen metadata's prefix to a prompt, as the
authors' evaluation code does (``context = prefix_text + context``).

Reference: Gao et al., "Metadata Conditioning Accelerates Language Model Pre-training", ICML 2025.
https://arxiv.org/abs/2501.01956 (code: https://github.com/princeton-pli/MeCo)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdyn import _validation
from jaxdyn.data._text import EOS_ID
from jaxdyn.text._decomposition import _check_documents, concat_and_chunk

DEFAULT_TEMPLATE = "package: {name}\n\n"


class MecoBatch(NamedTuple):
  """Packed MeCo rows: `jaxdyn.text.PackedBatch`'s fields plus the per-token loss mask.

  Attributes:
    tokens: ``(rows, seq_len)`` int32 token ids.
    segment_ids: ``(rows, seq_len)`` int32, the document pieces of a row numbered from 0 (a prefix is in
      its document's piece).
    positions: ``(rows, seq_len)`` int32, restarting at 0 in each piece.
    loss_mask: ``(rows, seq_len)`` float32, 0 on metadata-prefix tokens, 1 elsewhere.
  """

  tokens: np.ndarray
  segment_ids: np.ndarray
  positions: np.ndarray
  loss_mask: np.ndarray


def _check_template(template):
  if not isinstance(template, str):
    raise TypeError(f"template: must be a str with a '{{name}}' field, got {type(template).__name__}")
  if "{name}" not in template:
    raise ValueError(f"template: must contain the field '{{name}}', got {template!r}")
  try:
    template.format(name="x")
  except (KeyError, IndexError, ValueError) as e:
    raise ValueError(f"template: must be a format string with only the field '{{name}}', got {template!r}") from e
  return template


def _check_name(name, value):
  if not isinstance(value, str):
    raise TypeError(f"{name}: must be a str, got {type(value).__name__}")
  return value


def metadata_prefix(metadata: str, *, template: str = DEFAULT_TEMPLATE) -> np.ndarray:
  r"""The metadata prefix ``template.format(name=metadata)`` as byte tokens (``uint8``, its UTF-8 bytes).

  Args:
    metadata: the document's metadata (here its package name), a str.
    template: a format string with the one field ``{name}`` (default ``"package: {name}\n\n"``).

  Returns:
    A 1-D ``uint8`` array of length ``M`` = the prefix's UTF-8 byte count.

  Example:
    >>> bytes(metadata_prefix("json"))
    b'package: json\n\n'
  """
  metadata = _check_name("metadata", metadata)
  template = _check_template(template)
  return np.frombuffer(template.format(name=metadata).encode("utf-8"), np.uint8).copy()


def _check_tokens(name, tokens):
  a = np.asarray(tokens)
  if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
    raise ValueError(f"{name}: must be a 1-D integer token array, got {a.dtype} of shape {a.shape}")
  return a


def _check_bool(name, value):
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name}: must be a bool, got {type(value).__name__}")
  return bool(value)


def meco_document(tokens: Any, metadata: str, *, template: str = DEFAULT_TEMPLATE,
                  condition: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """One document with its metadata prefix and the per-token loss mask (module docstring).

  Args:
    tokens: a 1-D integer token array (a document's bytes).
    metadata: its metadata (package name), a str.
    template: the prefix format string with the field ``{name}``.
    condition: prepend the prefix (metadata phase); ``False`` gives the plain document (cooldown).

  Returns:
    ``(sequence, loss_mask)``: int32 ``prefix ++ tokens`` (or ``tokens``) and float32 0 on the ``M``
    prefix tokens, 1 on the document's.

  Example:
    >>> s, m = meco_document(np.frombuffer(b"x=1", np.uint8), "os", template="{name}:")
    >>> bytes(s.astype(np.uint8)), m.tolist()
    (b'os:x=1', [0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
  """
  doc = _check_tokens("tokens", tokens)
  prefix = metadata_prefix(metadata, template=template)
  if not _check_bool("condition", condition):
    prefix = prefix[:0]
  seq = np.concatenate([prefix.astype(np.int64), doc.astype(np.int64)]).astype(np.int32)
  mask = np.concatenate([np.zeros(len(prefix), np.float32), np.ones(len(doc), np.float32)])
  return seq, mask


def meco_pack(documents: Sequence[Any], metadata: Sequence[str], seq_len: int, *, template: str = DEFAULT_TEMPLATE,
              condition: bool = True, eos_id: int = EOS_ID, document_mask: bool = True) -> MecoBatch:
  """Concat-and-chunk rows of prefixed documents with per-token loss masks (module docstring, "Packed rows").

  Each document becomes ``prefix ++ document ++ [eos_id]`` (``condition=False``: no prefix, the plain
  `jaxdyn.text.concat_and_chunk` rows), the stream is cut into ``seq_len`` rows (the tail shorter than a
  row dropped), and ``loss_mask`` is 0 exactly on prefix tokens. Segment ids and positions are
  `concat_and_chunk`'s over the prefixed documents, so a prefix shares its document's segment.

  Args:
    documents: a non-empty sequence of 1-D integer token arrays.
    metadata: one str per document (e.g. `jaxdyn.data.TextCorpus.packages`).
    seq_len: tokens per row, >= 1.
    template: the prefix format string with the field ``{name}``.
    condition: prepend the prefixes (metadata phase) or not (cooldown).
    eos_id: the separator appended to every document, >= 0.
    document_mask: per-document segment ids and positions (else one segment per row).

  Returns:
    A `MecoBatch` of ``sum(M_i + n_i + 1) // seq_len`` rows.

  Example:
    >>> b = meco_pack([np.array([7, 8])], ["a"], 5, template="{name}:", eos_id=9)
    >>> b.tokens.tolist(), b.loss_mask.tolist()
    ([[97, 58, 7, 8, 9]], [[0.0, 0.0, 1.0, 1.0, 1.0]])
  """
  docs = _check_documents("documents", documents)
  if isinstance(metadata, (str, bytes)) or not isinstance(metadata, Sequence):
    raise TypeError(f"metadata: must be a sequence of str, one per document, got {type(metadata).__name__}")
  if len(metadata) != len(docs):
    raise ValueError(f"metadata: must have one entry per document ({len(docs)}), got {len(metadata)}")
  seq_len = _validation.check_int("seq_len", seq_len, lower=1)
  eos_id = _validation.check_int("eos_id", eos_id, lower=0)
  condition = _check_bool("condition", condition)
  _check_bool("document_mask", document_mask)
  pieces = [meco_document(d, _check_name("metadata", m), template=template, condition=condition)
            for d, m in zip(docs, metadata)]
  packed = concat_and_chunk([s for s, _ in pieces], seq_len, eos_id=eos_id, document_mask=document_mask)
  mask_stream = np.concatenate([np.append(m, np.float32(1.0)) for _, m in pieces])
  rows = packed.tokens.shape[0]
  loss_mask = mask_stream[:rows * seq_len].reshape(rows, seq_len).astype(np.float32)
  return MecoBatch(packed.tokens, packed.segment_ids, packed.positions, loss_mask)


def meco_switch_step(total_steps: int, *, cooldown_fraction: float = 0.1) -> int:
  r"""The first plain-text (cooldown) step: ``S = T - \lfloor f\, T + 1/2 \rfloor``.

  Args:
    total_steps: ``T``, the training steps, >= 1.
    cooldown_fraction: ``f`` in [0, 1], the share of steps at the end trained on plain text (0.1).

  Returns:
    An int in ``[0, T]``: steps ``0 .. S - 1`` see metadata, ``S .. T - 1`` plain text.

  Example:
    >>> meco_switch_step(40000), meco_switch_step(15, cooldown_fraction=0.1)
    (36000, 13)
  """
  total = _validation.check_int("total_steps", total_steps, lower=1)
  f = _validation.check_real("cooldown_fraction", cooldown_fraction, lower=0.0, upper=1.0)
  return total - int(math.floor(f * total + 0.5))


def meco_conditioned(step: int, total_steps: int, *, cooldown_fraction: float = 0.1) -> bool:
  """Whether ``step`` (0-based) is in the metadata phase, i.e. ``step < meco_switch_step(...)``.

  Args:
    step: the training step, >= 0 (steps past ``total_steps`` are in the cooldown).
    total_steps: the training steps, >= 1.
    cooldown_fraction: the final share trained on plain text, in [0, 1].

  Returns:
    A bool: True builds data with ``condition=True``.

  Example:
    >>> [meco_conditioned(t, 10) for t in (0, 8, 9)]
    [True, True, False]
  """
  step = _validation.check_int("step", step, lower=0)
  return step < meco_switch_step(total_steps, cooldown_fraction=cooldown_fraction)


def meco_prompt(prompt: Any, metadata: str, *, template: str = DEFAULT_TEMPLATE) -> np.ndarray:
  """Conditional inference: ``prefix(metadata) ++ prompt`` as int32 tokens, the prompt for generation.

  Args:
    prompt: a 1-D integer token array (may be empty: generate a document from the metadata alone).
    metadata: the chosen metadata (real or fabricated), a str.
    template: the prefix format string used in training.

  Returns:
    A 1-D int32 array.

  Example:
    >>> bytes(meco_prompt(np.frombuffer(b"def", np.uint8), "re", template="{name}\\n").astype(np.uint8))
    b're\\ndef'
  """
  p = _check_tokens("prompt", prompt)
  prefix = metadata_prefix(metadata, template=template)
  return np.concatenate([prefix.astype(np.int64), p.astype(np.int64)]).astype(np.int32)

__all__ = ["MecoBatch", "meco_conditioned", "meco_document", "meco_pack", "meco_prompt", "meco_switch_step",
           "metadata_prefix"]
