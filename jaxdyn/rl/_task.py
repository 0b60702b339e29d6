r"""A verifiable arithmetic task generated on the fly: multi-digit addition written as bytes.

A problem is a pair ``(a, b)`` of ``digits``-digit numbers (zero-padded, so every prompt of a task has
the same byte length and prompts batch without padding) and a prompt id (its index in the task), so a
per-prompt history (`jaxdyn.rl.HAPOHistory`) can be kept. The prompt is ``b"0042+0917="``; a completion
is an optional trace of intermediate steps followed by ``b"#"`` and the answer's decimal digits:

- ``verbosity=0``: ``b"#959"``;
- ``verbosity=1``: the column sums, least significant first, ``b"9,5,9,0#959"``;
- ``verbosity=2``: every column written out with its carry, ``b"2+7+0=9;4+1+0=5;0+9+0=9;0+0+0=0;#959"``.

``error != 0`` writes a deliberately wrong trace: the final answer is ``a + b + error`` (the steps stay
those of the true sum), so supervised fine-tuning data can mix verbosities and correctness and leave
RL something to shorten and to correct. `verify` parses the answer from a completion (the digits after
its last ``#``; anything else there, or no ``#``, is wrong) and compares it exactly with ``a + b``.

Tokens are bytes 0..255 plus the ids of `jaxdyn.data` (``BOS_ID``, ``EOS_ID``, ``PAD_ID``; a model over
them has ``VOCAB_SIZE`` outputs): `encode` writes ``[BOS] prompt completion [EOS] [PAD]...``, and
`decode_completion` reads generated ids back to bytes up to the first EOS.

This task is derived here (the issue asks for "a verifiable reasoning task generated on the fly"); it is
not from a paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from jaxdyn import _validation
from jaxdyn.data import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE

__all__ = ["AdditionProblems", "addition_problems", "format_prompt", "format_completion", "parse_answer", "verify",
           "encode", "decode_completion"]

VERBOSITIES = (0, 1, 2)


class AdditionProblems(NamedTuple):
  """Problems of an addition task: ``ids`` ``(n,)`` int64 prompt ids ``0..n-1``, ``a`` and ``b`` ``(n,)``
  int64 operands with ``digits`` digits each (leading zeros allowed), and the static ``digits``."""

  ids: np.ndarray
  a: np.ndarray
  b: np.ndarray
  digits: int


def addition_problems(num_problems: int, *, digits: int, seed: int) -> AdditionProblems:
  """Draws ``num_problems`` addition problems with operands uniform in ``[0, 10**digits)``.

  Args:
    num_problems: how many problems (>= 1); their prompt ids are ``0 .. num_problems - 1``.
    digits: digits per operand, in [1, 9].
    seed: NumPy seed (>= 0); the same seed gives the same problems.

  Returns:
    An `AdditionProblems`.

  Example:
    >>> p = addition_problems(3, digits=2, seed=0)
    >>> p.ids.tolist(), bool(((p.a >= 0) & (p.a < 100)).all())
    ([0, 1, 2], True)
  """
  n = _validation.check_int("num_problems", num_problems, lower=1)
  digits = _validation.check_int("digits", digits, lower=1, upper=9)
  seed = _validation.check_int("seed", seed, lower=0)
  rng = np.random.default_rng(seed)
  a, b = rng.integers(0, 10**digits, size=(2, n), dtype=np.int64)
  return AdditionProblems(np.arange(n, dtype=np.int64), a, b, digits)


def _operand(name, value, digits):
  v = _validation.check_int(name, value, lower=0, upper=10**digits - 1)
  return v


def format_prompt(a: int, b: int, *, digits: int) -> bytes:
  """The prompt ``b"<a>+<b>="`` with both operands zero-padded to ``digits`` digits.

  Example:
    >>> format_prompt(42, 917, digits=4)
    b'0042+0917='
  """
  digits = _validation.check_int("digits", digits, lower=1, upper=9)
  a, b = _operand("a", a, digits), _operand("b", b, digits)
  return f"{a:0{digits}d}+{b:0{digits}d}=".encode()


def format_completion(a: int, b: int, *, digits: int, verbosity: int = 0, error: int = 0) -> bytes:
  """A completion for ``a + b``: the steps at ``verbosity`` (0, 1, 2; see the module), ``#``, the answer.

  Args:
    a, b: operands in ``[0, 10**digits)``.
    digits: digits per operand, in [1, 9]; the steps cover ``digits`` columns.
    verbosity: 0 (answer only), 1 (column sums) or 2 (columns with carries).
    error: added to the written answer (0: a correct completion); the answer must stay >= 0.

  Returns:
    ASCII bytes.

  Example:
    >>> format_completion(42, 917, digits=3, verbosity=1)
    b'9,5,9#959'
    >>> format_completion(42, 917, digits=3, error=-1)
    b'#958'
  """
  digits = _validation.check_int("digits", digits, lower=1, upper=9)
  a, b = _operand("a", a, digits), _operand("b", b, digits)
  verbosity = _validation.check_choice("verbosity", verbosity, VERBOSITIES)
  error = _validation.check_int("error", error, lower=-(a + b))
  steps, carry = [], 0
  for i in range(digits):
    x, y = (a // 10**i) % 10, (b // 10**i) % 10
    s = x + y + carry
    steps.append(str(s % 10) if verbosity == 1 else f"{x}+{y}+{carry}={s % 10};")
    carry = s // 10
  if carry and verbosity:
    steps.append("1" if verbosity == 1 else "carry=1;")
  trace = ",".join(steps) if verbosity == 1 else "".join(steps) if verbosity == 2 else ""
  return f"{trace}#{a + b + error}".encode()


def parse_answer(completion: bytes) -> int | None:
  """The integer after the last ``#`` of ``completion``, or None when there is none or it is not digits.

  Example:
    >>> parse_answer(b"9,5,9#959"), parse_answer(b"959"), parse_answer(b"#9x")
    (959, None, None)
  """
  if not isinstance(completion, (bytes, bytearray)):
    raise TypeError(f"completion: must be bytes, got {type(completion).__name__}")
  _, sep, tail = bytes(completion).rpartition(b"#")
  if not sep or not tail or not tail.isdigit() or len(tail) > 12:
    return None
  return int(tail)


def verify(prompt: bytes, answer_bytes: bytes) -> bool:
  """Exact verifier: True iff the answer parsed from ``answer_bytes`` (`parse_answer`) equals ``a + b``.

  Args:
    prompt: a prompt ``b"<a>+<b>="`` (`format_prompt`).
    answer_bytes: the completion (steps are ignored; only the answer after the last ``#`` counts).

  Returns:
    A Python bool.

  Example:
    >>> verify(b"0042+0917=", b"#959"), verify(b"0042+0917=", b"#958"), verify(b"0042+0917=", b"959")
    (True, False, False)
  """
  if not isinstance(prompt, (bytes, bytearray)):
    raise TypeError(f"prompt: must be bytes, got {type(prompt).__name__}")
  lhs, plus, rhs = bytes(prompt).partition(b"+")
  if not (plus and rhs.endswith(b"=") and lhs.isdigit() and rhs[:-1].isdigit()):
    raise ValueError(f"prompt: must be b'<digits>+<digits>=', got {prompt!r}")
  if not isinstance(answer_bytes, (bytes, bytearray)):
    raise TypeError(f"answer_bytes: must be bytes, got {type(answer_bytes).__name__}")
  answer = parse_answer(answer_bytes)
  return answer is not None and answer == int(lhs) + int(rhs[:-1])


def encode(prompts: Sequence[bytes], completions: Sequence[bytes] | None = None, *, length: int) -> np.ndarray:
  """Token ids ``[BOS] prompt completion [EOS]`` right-padded with ``PAD_ID`` to ``length``.

  Without ``completions`` only ``[BOS] prompt`` is written (padded; prompts of one task share a length, so
  ``length = 1 + len(prompt)`` gives the unpadded ``(n, prompt_len)`` array `jaxdyn.models.generate` takes).

  Args:
    prompts: ``n`` byte strings.
    completions: None or ``n`` byte strings.
    length: the row length; a row that does not fit raises.

  Returns:
    ``(n, length)`` int32 ids in ``[0, VOCAB_SIZE)``.

  Example:
    >>> encode([b"1+2="], [b"#3"], length=9).tolist()
    [[256, 49, 43, 50, 61, 35, 51, 257, 258]]
  """
  length = _validation.check_int("length", length, lower=1)
  if isinstance(prompts, (bytes, str)) or not all(isinstance(p, (bytes, bytearray)) for p in prompts):
    raise TypeError("prompts: must be a sequence of bytes")
  _validation.check_nonempty("prompts", list(prompts), what="prompts")
  if completions is not None:
    if isinstance(completions, (bytes, str)) or not all(isinstance(c, (bytes, bytearray)) for c in completions):
      raise TypeError("completions: must be a sequence of bytes")
    if len(completions) != len(prompts):
      raise ValueError(f"completions: must hold one per prompt ({len(prompts)}), got {len(completions)}")
  out = np.full((len(prompts), length), PAD_ID, np.int32)
  for i, p in enumerate(prompts):
    row = [BOS_ID, *bytes(p)] + ([] if completions is None else [*bytes(completions[i]), EOS_ID])
    if len(row) > length:
      raise ValueError(f"length: must fit row {i} of {len(row)} tokens, got {length}")
    out[i, :len(row)] = row
  return out


def decode_completion(tokens: np.ndarray) -> bytes:
  """The bytes of a generated completion: ids up to (not including) the first ``EOS_ID`` or ``PAD_ID``.

  A ``BOS_ID`` inside the completion (never valid text) stops it too.

  Args:
    tokens: ``(len,)`` integer ids in ``[0, VOCAB_SIZE)`` (the completion part, after the prompt).

  Returns:
    bytes.

  Example:
    >>> decode_completion(np.array([35, 51, 257, 258]))
    b'#3'
  """
  _validation.check_ndim("tokens", tokens, 1)
  _validation.check_integer_labels("tokens", tokens, VOCAB_SIZE)
  t = np.asarray(tokens)
  stop = np.flatnonzero(t > 255)
  return bytes(t[:stop[0] if stop.size else t.size].astype(np.uint8).tolist())
