"""The text runners' shared pieces: the LM loop (`lm`), document pieces, and each arm's batches."""

import ml_collections
import numpy as np
import pytest

from experiments.techniques.text import decomposition, lm, meco, self_generated
from jaxdyn import text
from jaxdyn.data import synthetic_documents

SRC = b'''"""doc."""
import os

X = 1


@decorator
def f(a):
  return a


class C:
  pass
y = 2
'''


def _cfg(**kw):
  return ml_collections.ConfigDict({"dim": 16, "depth": 1, "num_heads": 2, "mlp_ratio": 2, **kw})


def test_split_top_level_cuts_before_defs_with_their_decorators_and_covers_the_file():
  doc = np.frombuffer(SRC, np.uint8)
  pieces = decomposition.split_top_level(doc)
  assert b"".join(bytes(p) for p in pieces) == SRC
  assert [bytes(p).split(b"\n", 1)[0] for p in pieces] == [b'"""doc."""', b"@decorator", b"class C:"]
  assert bytes(pieces[2]).endswith(b"y = 2\n")  # module-level statements stay with the piece before


def test_split_top_level_keeps_an_unparsable_file_whole():
  doc = np.frombuffer(b"def f(:\n  pass\n", np.uint8)
  assert [bytes(p) for p in decomposition.split_top_level(doc)] == [bytes(doc)]


def test_shifted_masks_padding_and_targets_that_start_a_segment():
  tok = np.array([[1, 2, 3, 4, 9]])
  seg = np.array([[0, 0, 1, 1, 1]])
  pos = np.array([[0, 1, 0, 1, 2]])
  b = lm.shifted(tok, segment_ids=seg, positions=pos, pad_id=9)
  assert b["inputs"].tolist() == [[1, 2, 3, 4]] and b["targets"].tolist() == [[2, 3, 4, 9]]
  assert b["weights"].tolist() == [[1.0, 0.0, 1.0, 0.0]]  # 3 starts segment 1; 9 is padding
  assert b["segment_ids"].tolist() == [[0, 0, 1, 1]] and b["positions"].tolist() == [[0, 1, 0, 1]]


def test_evaluate_is_the_weighted_mean_nll():
  model = lm.make_model(_cfg(vocab_size=8), 0)
  tok = np.array([[1, 2, 3, 4], [4, 3, 2, 1]])
  w = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]], np.float32)
  logits = np.asarray(model(tok[:, :-1]), np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(logp, tok[:, 1:, None], -1)[..., 0]
  expected = (nll * w).sum() / w.sum()
  got = lm.evaluate(model, [lm.shifted(tok[:1], weights=w[:1]), lm.shifted(tok[1:], weights=w[1:])])
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_trainer_learns_counting_documents_and_keeps_its_books():
  docs = synthetic_documents(0, 64, min_len=20, max_len=40, vocab=16).documents
  packed = text.concat_and_chunk(docs, 17, document_mask=True)
  val = [lm.shifted(packed.tokens[:8], segment_ids=packed.segment_ids[:8], positions=packed.positions[:8])]
  model = lm.make_model(_cfg(vocab_size=259), 0)
  before = lm.evaluate(model, val)

  def batches():
    for b in lm.row_batches(packed, 8, 0):
      yield {**b, "_things": 2.0}

  history = lm.train(model, batches(), steps=60, learning_rate=1e-2, warmup=5, log_every=20,
                     eval_fn=lambda m: {"val": lm.evaluate(m, val)}, eval_every=30)
  assert [r["step"] for r in history] == [20, 30, 40, 60]
  assert "val" in history[1] and "val" not in history[0]
  assert history[-1]["cum_things"] == 120.0
  assert history[-1]["tokens"] == pytest.approx(sum(float(np.sum(b["weights"])) for b, _ in
                                                    zip(lm.row_batches(packed, 8, 0), range(60))))
  assert history[-1]["compile_seconds"] > 0 and history[-1]["step_seconds"] > 0
  assert history[-1]["val"] < 0.5 * before  # within a document every next token is the previous + 1
  assert lm.evaluate(model, val) == pytest.approx(history[-1]["val"], rel=1e-6)  # the model holds the result


def test_lockstep_runs_every_trainer_to_its_own_steps():
  docs = synthetic_documents(1, 16, min_len=10, max_len=20).documents
  packed = text.concat_and_chunk(docs, 9, document_mask=False)
  trainers = {n: lm.Trainer(lm.make_model(_cfg(), 0), steps=s, learning_rate=1e-3, log_every=2)
              for n, s in (("a", 3), ("b", 5))}
  out = lm.train_lockstep(trainers, {n: lm.row_batches(packed, 2, 0) for n in trainers})
  assert [r["step"] for r in out["a"]] == [2, 3] and [r["step"] for r in out["b"]] == [2, 4, 5]


def _dd_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = _cfg()
  c.data = ml_collections.ConfigDict({"kmin": 2, "kmax": 4, "tokens_per_step": 32, "curriculum": "grow_p2",
                                      "cycles": 1, "pass_fraction": 1.0, "eval_rows": 2})
  return c


@pytest.mark.parametrize("method", decomposition.METHODS)
def test_every_arm_has_constant_tokens_per_step_and_counts_its_attention_flops(method):
  c = _dd_config()
  docs = [np.arange(n, dtype=np.uint8) for n in (5, 9, 16, 23, 40, 7, 12)]
  it = decomposition.arm_batches(c, method, docs)
  for _ in range(6):
    b = next(it)
    rows, width = b["inputs"].shape
    assert rows * (width + 1) == 32  # rows of 2^k tokens, one fewer prediction each
    if method == "concat_mask":
      lengths = text.segment_lengths(b["segment_ids"])
    else:
      lengths = [width] * rows
    assert b["_attention_flops"] == sum(4 * 16 * 1 * n * (n + 1) // 2 for n in lengths)
    if method == "dd":
      assert not np.any(b["inputs"] > 255)  # one document per row: no EOS


def test_meco_stream_is_prefixed_rows_with_their_loss_mask_then_plain_rows_after_the_switch():
  d = ml_collections.ConfigDict({"seq_len": 32, "rows": 2})
  pieces = [np.frombuffer(b"x = 1\n" * 5, np.uint8), np.frombuffer(b"def g():\n  pass\n" * 2, np.uint8)] * 4
  packages = ["json", "os"] * 4
  steps = list(meco.meco_batches(pieces, packages, d, steps=10, cooldown_fraction=0.2, seed=0))
  assert text.meco_switch_step(10, cooldown_fraction=0.2) == 8
  cond = text.meco_pack(pieces, packages, 32, condition=True)
  prefixed = lm.row_batches(cond, 2, [0, 21], weights=cond.loss_mask)
  plain = lm.row_batches(text.concat_and_chunk(pieces, 32, document_mask=True), 2, [0, 22])
  for i, b in enumerate(steps):
    want = next(prefixed) if i < 8 else next(plain)
    assert all(np.array_equal(b[k], want[k]) for k in want)
  raw = [bytes(np.minimum(b["inputs"], 255).astype(np.uint8).tobytes()) for b in steps]
  assert any(b"package: " in r for r in raw[:8]) and not any(b"package" in r for r in raw[8:])
  first = steps[0]
  prefix_targets = (first["weights"] == 0) & (first["segment_ids"] == np.roll(first["segment_ids"], -1, axis=1))
  assert prefix_targets.sum() > 0  # prefix tokens inside a document carry no loss


def test_scheduled_sampling_with_p_zero_is_teacher_forcing_and_replaces_with_argmax_otherwise():
  docs = synthetic_documents(2, 16, min_len=10, max_len=30).documents
  packed = text.concat_and_chunk(docs, 17, document_mask=True)
  model = lm.make_model(_cfg(), 0)
  trainer = lm.Trainer(model, steps=4, learning_rate=1e-3)
  s0 = ml_collections.ConfigDict({"schedule": "constant", "p_max": 0.0, "stages": 2})
  plain = [b for b, _ in zip(lm.row_batches(packed, 4, 0), range(3))]
  sched = list(self_generated.scheduled_batches(trainer, lm.row_batches(packed, 4, 0), s0, steps=3, seed=0))
  for a, b in zip(plain, sched):
    assert all(np.array_equal(a[k], b[k]) for k in a)
  s1 = ml_collections.ConfigDict({"schedule": "constant", "p_max": 1.0, "stages": 2})
  b = next(self_generated.scheduled_batches(trainer, lm.row_batches(packed, 4, 0), s1, steps=1, seed=0))
  a = plain[0]
  pred = np.argmax(np.asarray(model(a["inputs"], segment_ids=a["segment_ids"], positions=a["positions"])), -1)
  first = np.ones_like(a["segment_ids"], bool)
  first[:, 1:] = a["segment_ids"][:, 1:] != a["segment_ids"][:, :-1]
  want = np.where(first, a["inputs"], np.roll(pred, 1, axis=1))  # token t replaced by the prediction at t - 1
  assert np.array_equal(b["inputs"], want) and np.array_equal(b["targets"], a["targets"])
  assert b["_p"] == 1.0
