"""Passkey retrieval in byte-level text: a generator, a training sampler and a greedy-decoding accuracy.

The passkey test (Mohtashami & Jaggi, "Landmark Attention", 2023, https://arxiv.org/abs/2305.16300;
used by LongGen, Ge et al. 2024, https://arxiv.org/abs/2410.01485, to measure long-context retrieval)
hides a random number in long filler text and asks for it at the end. One example of ``length`` bytes is

    <filler a> "The pass key is 48213. " <filler b> "What is the pass key? The pass key is " 48213

with ``len(a) + len(b) = length - 23 - 38 - n_digits`` (for 5 digits) split at the chosen depth, so the
answer always occupies the last ``n_digits`` bytes and the whole prompt has a fixed length (a batch
decodes together). The *distance* of an example is ``len(b)``: the filler bytes between the end of the
passkey sentence and the start of the question; the answer's first byte is ``len(b) + 38`` tokens after
the passkey sentence ends.

Filler: random words drawn uniformly from a fixed list of 64 lower-case English words (`WORDS`, written
here, no download), in sentences of 4-12 words (capitalised, ending in ". "), cut to the exact byte count.
Random words rather than a repeated fixed sentence (the original test's "The grass is green. ...")
so that a model cannot locate the passkey by counting periods of a repeated pattern, and no word
contains a digit, "pass" or "key", so the digits of the passkey are the only digits in the prompt.

Training loss (`passkey_batch`): next-token cross-entropy with weight 1 on the answer bytes and
``other_weight`` (default 0.1) on every other byte. The answer is the only part of the text that
requires retrieval; with uniform weights its 5 bytes are ~4% of a 128-byte example's loss and the
gradient is dominated by predicting random filler words (irreducible), which slows the formation of
the induction/copy circuit; a small weight on the rest keeps the model a language model of the format
(the question template is predictable and trains the previous-token heads the copy uses).

`passkey_accuracy` decodes the answer greedily with `jaxdyn.models.generate` (optionally with the
ring-buffer cache sizes of a LongGen hybrid plan, `hybrid_cache_sizes`) and scores exact match of all
digits, overall and per distance bucket.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from jaxdyn import _validation

__all__ = ["KEY_PREFIX", "KEY_SUFFIX", "QUESTION", "WORDS", "passkey_accuracy", "passkey_batch", "passkey_example",
           "passkey_distance", "passkey_overhead"]

KEY_PREFIX = "The pass key is "
KEY_SUFFIX = ". "
QUESTION = "What is the pass key? The pass key is "
WORDS = tuple("""the a of and to in on at for with from by over under after before about into
water grass sky sun tree river stone house road field light wind cloud bird horse garden
green blue red warm cold bright quiet small large old new soft
runs walks grows falls moves stands sings flows shines rests waits turns
here there today slowly always often""".split())
assert len(WORDS) == 64 and not any(c.isdigit() for w in WORDS for c in w)


def passkey_overhead(n_digits: int = 5) -> int:
  """Bytes of an example that are not filler: key sentence (with its digits), question and answer."""
  return len(KEY_PREFIX) + n_digits + len(KEY_SUFFIX) + len(QUESTION) + n_digits


def _filler(rng: np.random.Generator, n: int) -> str:
  """``n`` bytes of random-word sentences (4-12 words, capitalised, ". " ended), cut to length."""
  if n <= 0:
    return ""
  parts, size = [], 0
  while size < n:
    k = int(rng.integers(4, 13))
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), k)]
    s = " ".join(words).capitalize() + ". "
    parts.append(s)
    size += len(s)
  text = "".join(parts)[:n]
  return text[:-1] + " "  # never end on half a word glued to the next sentence


def passkey_example(rng: np.random.Generator, length: int, *, depth_fraction: float | None = None,
                    position: int | None = None, n_digits: int = 5) -> tuple[np.ndarray, int, int]:
  """One passkey example of exactly ``length`` bytes.

  The key sentence starts at byte ``position`` (in ``[0, length - passkey_overhead(n_digits)]``), or
  at ``round(depth_fraction * F)`` with ``F = length - passkey_overhead(n_digits)`` filler bytes
  (``depth_fraction`` in [0, 1]: 0 right at the start, 1 right before the question); with neither,
  uniformly at random. The key is ``n_digits`` uniform random digits.

  Args:
    rng: a NumPy ``Generator`` (all randomness comes from it: same state, same example).
    length: total bytes, >= ``passkey_overhead(n_digits)``.
    depth_fraction, position: where the key goes (at most one of them).
    n_digits: digits of the key, >= 1.

  Returns:
    ``(tokens, answer_start, answer_len)``: int32 bytes ``(length,)``, the answer's first index
    (``length - n_digits``) and ``n_digits``. ``tokens[answer_start:]`` are the key's digits.

  Example:
    >>> t, s, n = passkey_example(np.random.default_rng(0), 80, depth_fraction=0.0)
    >>> bytes(t[:16].astype(np.uint8)).decode(), s, n
    ('The pass key is ', 75, 5)
  """
  if not isinstance(rng, np.random.Generator):
    raise TypeError(f"rng: must be a numpy.random.Generator, got {type(rng).__name__}")
  n_digits = _validation.check_int("n_digits", n_digits, lower=1)
  over = passkey_overhead(n_digits)
  length = _validation.check_int("length", length, lower=over)
  filler = length - over
  if depth_fraction is not None and position is not None:
    raise ValueError("position: give depth_fraction or position, not both")
  if position is not None:
    before = _validation.check_int("position", position, lower=0, upper=filler)
  elif depth_fraction is not None:
    before = int(round(_validation.check_real("depth_fraction", depth_fraction, lower=0.0, upper=1.0) * filler))
  else:
    before = int(rng.integers(0, filler + 1))
  key = "".join(str(d) for d in rng.integers(0, 10, n_digits))
  text = (_filler(rng, before) + KEY_PREFIX + key + KEY_SUFFIX + _filler(rng, filler - before) + QUESTION + key)
  tokens = np.frombuffer(text.encode("ascii"), np.uint8).astype(np.int32)
  assert tokens.shape == (length,)
  return tokens, length - n_digits, n_digits


def passkey_distance(length: int, position: int, n_digits: int = 5) -> int:
  """Filler bytes between the end of the key sentence (at ``position``) and the question."""
  return length - passkey_overhead(n_digits) - position


def passkey_batch(rng: np.random.Generator, batch: int, length: int, *, n_digits: int = 5, other_weight: float = 0.1,
                  max_distance: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """A training batch: ``(tokens (batch, length) int32, weights (batch, length - 1) float32)``.

  Keys at uniformly random positions (distance uniform in ``[0, min(F, max_distance)]``, ``F`` the
  filler bytes; ``max_distance`` serves a curriculum of short distances first). ``weights[:, t]`` is
  the loss weight of predicting ``tokens[:, t + 1]``: 1 on the answer's digits, ``other_weight``
  elsewhere (see the module docstring for why).
  """
  batch = _validation.check_int("batch", batch, lower=1)
  other_weight = _validation.check_real("other_weight", other_weight, lower=0.0)
  filler = _validation.check_int("length", length, lower=passkey_overhead(n_digits)) - passkey_overhead(n_digits)
  hi = filler if max_distance is None else min(filler, _validation.check_int("max_distance", max_distance, lower=0))
  tokens = np.empty((batch, length), np.int32)
  for i in range(batch):
    dist = int(rng.integers(0, hi + 1))
    tokens[i], start, _ = passkey_example(rng, length, position=filler - dist, n_digits=n_digits)
  weights = np.full((batch, length - 1), other_weight, np.float32)
  weights[:, start - 1:] = 1.0
  return tokens, weights


def passkey_accuracy(model, *, length: int, num_examples: int, seed: int = 0, n_digits: int = 5,
                     buckets: Sequence[int] | None = None, batch_size: int = 32,
                     cache_len: int | Sequence[int] | None = None, sink_tokens: int | Sequence[int] = 0
                     ) -> dict[str, object]:
  """Exact-match passkey accuracy of ``model`` decoding greedily, overall and per distance bucket.

  ``num_examples`` examples of ``length`` bytes with distances evenly spread over ``[0, F]`` (``F``
  the filler bytes; ``np.linspace``, rounded), keys and filler from ``seed``. Each prompt (everything
  before the answer) is decoded for ``n_digits`` tokens by `jaxdyn.models.generate` (greedy, with
  ``cache_len`` / ``sink_tokens`` per layer, e.g. from `hybrid_cache_sizes`); an example counts when
  all digits match.

  Args:
    model: a `jaxdyn.models.Transformer`.
    length, n_digits: the examples' format (`passkey_example`).
    num_examples: examples, >= 1.
    seed: seeds the examples.
    buckets: increasing distance edges ``e_0 < e_1 < ...``; bucket k holds distances in
      ``[e_k, e_{k+1})`` (the last bucket is closed at ``F``). Default ``(0, F + 1)``, one bucket.
    batch_size: prompts decoded together.
    cache_len, sink_tokens: passed to `jaxdyn.models.generate`.

  Returns:
    ``{"accuracy": float, "distances": [...], "correct": [bool...], "buckets": [[lo, hi], ...],
    "bucket_accuracy": [float or None (empty bucket)...], "bucket_count": [int...]}``.
  """
  from jaxdyn.models import generate  # pylint: disable=import-outside-toplevel
  num_examples = _validation.check_int("num_examples", num_examples, lower=1)
  batch_size = _validation.check_int("batch_size", batch_size, lower=1)
  n_digits = _validation.check_int("n_digits", n_digits, lower=1)
  filler = _validation.check_int("length", length, lower=passkey_overhead(n_digits)) - passkey_overhead(n_digits)
  edges = [0, filler + 1] if buckets is None else [int(e) for e in buckets]
  if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
    raise ValueError(f"buckets: must be at least two increasing distance edges, got {buckets!r}")
  rng = np.random.default_rng([seed, length, n_digits])
  dists = np.round(np.linspace(0, filler, num_examples)).astype(int)
  tokens = np.stack([passkey_example(rng, length, position=filler - int(d), n_digits=n_digits)[0] for d in dists])
  answer_start = length - n_digits
  correct = []
  for i in range(0, num_examples, batch_size):
    chunk = tokens[i:i + batch_size]
    pad = batch_size - len(chunk) if num_examples > batch_size else 0  # one compiled shape for all chunks
    prompt = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
    out = np.asarray(generate(model, prompt[:, :answer_start], max_new_tokens=n_digits, key=jax.random.key(0),
                              greedy=True, cache_len=cache_len, sink_tokens=sink_tokens))[:len(chunk)]
    correct.extend(np.all(out[:, answer_start:] == chunk[:, answer_start:], axis=1).tolist())
  correct_a = np.asarray(correct, bool)
  bucket_acc, bucket_n, spans = [], [], []
  for k, (lo, hi) in enumerate(zip(edges, edges[1:])):
    last = k == len(edges) - 2
    sel = (dists >= lo) & ((dists <= hi) if last else (dists < hi))
    spans.append([lo, hi])
    bucket_n.append(int(sel.sum()))
    bucket_acc.append(float(correct_a[sel].mean()) if sel.any() else None)
  return {"accuracy": float(correct_a.mean()), "distances": dists.tolist(), "correct": correct_a.tolist(),
          "buckets": spans, "bucket_accuracy": bucket_acc, "bucket_count": bucket_n}
