"""Dataset decomposition, the VSL curriculum sampler, concat-and-chunk and attention FLOPs, by hand."""

import numpy as np
import pytest

from jaxdyn import data, text


def _ks(d):
  return [int(k) for k in d.log2_len]


@pytest.mark.parametrize("n,kmin,kmax,ks,starts,dropped", [
    (13, 1, 5, [3, 2], [0, 8], 1),          # 13 = 8 + 4 + 1: the 1 is below 2^kmin
    (13, 0, 5, [3, 2, 0], [0, 8, 12], 0),   # every bit kept
    (13, 3, 5, [3], [0], 5),                # 4 + 1 dropped
    (7, 3, 5, [], [], 7),                   # shorter than 2^kmin: all dropped
    (40, 1, 3, [3, 3, 3, 3, 3], [0, 8, 16, 24, 32], 0),  # 40 = 5 x 2^kmax
    (45, 1, 3, [3] * 5 + [2], [0, 8, 16, 24, 32, 40], 1),  # 5 x 8, then 5 = 4 + 1
    (0, 0, 3, [], [], 0),
])
def test_binary_decomposition_of_hand_picked_lengths(n, kmin, kmax, ks, starts, dropped):
  d = text.decompose([n], kmin=kmin, kmax=kmax)
  assert _ks(d) == ks and d.start.tolist() == starts and d.dropped.tolist() == [dropped]
  assert d.chunk_lengths.tolist() == [2**k for k in ks]


def test_official_compat_appends_eos_uses_2k_plus_1_chunks_and_random_long_cuts():
  # n = 13 + EOS = 14 tokens: k = floor(log2(13)) = 3 -> 9 tokens; 5 left: k = 2 -> 5 tokens; 0 left.
  d = text.decompose([13], kmin=1, kmax=5, official_compat=True)
  assert _ks(d) == [3, 2] and d.start.tolist() == [0, 9] and d.dropped.tolist() == [0]
  assert d.chunk_lengths.tolist() == [9, 5] and d.appended_eos
  # n = 2 + EOS = 3: k = 1 -> 3 tokens; n = 1 + EOS: one token left, nothing.
  d = text.decompose([2, 1], kmin=1, kmax=5, official_compat=True)
  assert _ks(d) == [1] and d.dropped.tolist() == [0, 2]
  # Over-long: 1000 + 1 tokens with kmax = 4 draws k from {4, 3, 2} with P = (1, 2, 4) / 7.
  d = text.decompose([1000], kmin=2, kmax=4, official_compat=True, seed=3)
  rng = np.random.default_rng(3)
  left, want = 1001, []
  while left > 1:
    k = (left - 1).bit_length() - 1
    if k < 2:
      break
    if k > 4:
      k = int(rng.choice([4, 3, 2], p=np.array([1, 2, 4]) / 7))
    want.append(k)
    left -= 2**k + 1
  assert _ks(d) == want and d.dropped.tolist() == [left]
  counts = np.bincount(d.log2_len, minlength=5)[2:]
  assert counts[0] > counts[2]  # short cuts are 4x as likely as long ones


def test_chunks_come_from_one_document_and_tokens_are_conserved():
  corpus = data.synthetic_documents(0, 60, min_len=1, max_len=300, vocab=256)
  lengths = corpus.lengths
  for official in (False, True):
    d = text.decompose(lengths, kmin=2, kmax=6, official_compat=official, seed=1)
    ends = d.start + d.chunk_lengths
    assert np.all(ends <= lengths[d.doc] + official)  # inside its document (+ the appended EOS)
    # chunk tokens plus the dropped tail give back every token
    covered = np.zeros(len(lengths), np.int64)
    np.add.at(covered, d.doc, d.chunk_lengths)
    assert np.array_equal(covered + d.dropped, lengths + official)
    for i in range(len(lengths)):  # each document's chunks tile its front, in order, without overlap
      mine = np.flatnonzero(d.doc == i)
      assert d.start[mine].tolist() == np.cumsum(np.r_[0, d.chunk_lengths[mine]])[:-1].tolist()
    assert d.bucket_sizes().sum() == len(d)
  d = text.decompose(lengths, kmin=2, kmax=6)
  # the paper's default drops exactly n mod 2^kmin per document
  assert np.array_equal(d.dropped, lengths % 4)
  for k in range(2, 7):
    src = text.BucketSource(corpus.documents, d, k)
    assert len(src) == d.bucket_sizes()[k - 2]
    for j in range(len(src)):
      rec, c = src[j], d.bucket(k)[j]
      doc = corpus.documents[rec["document"]]
      assert np.array_equal(rec["tokens"], doc[d.start[c]:d.start[c] + 2**k])
      # the synthetic documents count up by one: a chunk from one document does too
      assert np.all(np.diff(rec["tokens"]) % 256 == 1)


def test_bucket_source_reads_the_appended_eos():
  docs = [np.arange(1, 8, dtype=np.uint8)]  # 7 tokens + EOS = 8: k = floor(log2 7) = 2 -> 5 tokens, then 3 -> k=1
  d = text.decompose([7], kmin=1, kmax=4, official_compat=True)
  assert _ks(d) == [2, 1]
  assert text.BucketSource(docs, d, 1)[0]["tokens"].tolist() == [6, 7, data.EOS_ID]
  assert text.BucketSource(docs, d, 2).gather([0])["tokens"].tolist() == [[1, 2, 3, 4, 5]]


def test_curriculum_odds():
  assert text.curriculum_odds("grow_p2", kmin=8, kmax=13).tolist() == [32, 16, 8, 4, 2, 1]
  assert text.curriculum_odds("grow_linear", kmin=8, kmax=13).tolist() == [6, 5, 4, 3, 2, 1]
  assert text.curriculum_odds("uniform", kmin=1, kmax=3).tolist() == [1, 1, 1]
  assert text.curriculum_odds("shrink_p2", kmin=1, kmax=3).tolist() == [1, 2, 4]
  assert text.curriculum_odds([3, 1], kmin=1, kmax=2).tolist() == [3, 1]


def _sampler(**kw):
  args = dict(bucket_sizes=[64, 40, 12], tokens_per_step=8, kmin=1, curriculum="grow_p2", cycles=2, seed=0)
  return text.VSLSampler(**{**args, **kw})


def test_constant_tokens_per_step_and_every_batch_of_a_cycle_once():
  s = _sampler()
  # batch sizes 8/2, 8/4, 8/8; batches per cycle floor(64/(4*2)), floor(40/(2*2)), floor(12/(1*2))
  assert s.batch_sizes.tolist() == [4, 2, 1] and s.batches_per_cycle.tolist() == [8, 10, 6]
  seen = {k: [] for k in (1, 2, 3)}
  for cycle in range(2):
    picks = []
    for _ in range(s.steps_per_cycle):
      k, idx = next(s)
      assert len(idx) * 2**k == 8  # constant tokens per step
      picks.append(k)
      seen[k].append(idx)
    # bucket frequencies over a cycle: exactly its batches
    assert [picks.count(k) for k in (1, 2, 3)] == [8, 10, 6]
  # one pass (2 cycles) uses disjoint chunks of each bucket
  for k, size in zip((1, 2, 3), (64, 40, 12)):
    allidx = np.concatenate(seen[k])
    assert len(np.unique(allidx)) == len(allidx) and allidx.max() < size
  assert s.get_state() == {"epoch": 0, "cycle": 1, "remaining": [0, 0, 0]}
  next(s)
  assert s.get_state()["epoch"] == 1  # a new pass


def test_pick_probabilities_are_remaining_batches_times_odds():
  s = _sampler(bucket_sizes=[16, 8, 4], cycles=1)  # b = (4, 4, 4), odds (4, 2, 1)
  np.testing.assert_allclose(s.probabilities(), np.array([16, 8, 4]) / 28)
  # the first pick over many seeds follows them (4-sigma binomial bounds)
  n = 3000
  first = np.array([next(_sampler(bucket_sizes=[16, 8, 4], cycles=1, seed=i))[0] for i in range(n)])
  for k, p in zip((1, 2, 3), np.array([16, 8, 4]) / 28):
    assert abs(np.mean(first == k) - p) < 4 * np.sqrt(p * (1 - p) / n)
  # after taking the 4 batches of bucket 1 only buckets 2 and 3 remain, at odds 2:1
  s.set_state({"epoch": 0, "cycle": 0, "remaining": [0, 4, 4]})
  np.testing.assert_allclose(s.probabilities(), [0, 2 / 3, 1 / 3])
  # grow_p2 puts short buckets first: their mean step index within the cycle is earlier
  steps = {1: [], 3: []}
  for seed in range(50):
    s = _sampler(bucket_sizes=[16, 8, 4], cycles=1, seed=seed)
    for t in range(12):
      k = next(s)[0]
      if k in steps:
        steps[k].append(t)
  assert np.mean(steps[1]) < np.mean(steps[3])


def test_sampler_resumes_exactly_mid_cycle():
  s = _sampler(seed=7)
  for _ in range(13):  # mid-way through the first cycle (24 steps)
    next(s)
  state = s.get_state()
  assert state["cycle"] == 0 and 0 < sum(state["remaining"]) < 24
  ahead = [next(s) for _ in range(40)]  # into the next cycle and the next pass
  fresh = _sampler(seed=7)
  fresh.set_state(state)
  again = [next(fresh) for _ in range(40)]
  assert [k for k, _ in ahead] == [k for k, _ in again]
  assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ahead, again))
  other = _sampler(seed=8)
  assert [next(other)[0] for _ in range(24)] != [next(_sampler(seed=7))[0] for _ in range(24)]


def test_dd_dataset_is_a_grain_iter_dataset_that_resumes():
  import grain
  corpus = data.synthetic_documents(1, 40, min_len=3, max_len=70, vocab=256)
  d = text.decompose(corpus.lengths, kmin=2, kmax=4)
  ds = text.dd_dataset(corpus.documents, d, tokens_per_step=32, cycles=2, seed=3)
  assert isinstance(ds, grain.IterDataset)
  it = iter(ds)
  for _ in range(5):
    b = next(it)
    assert b["tokens"].shape == (32 // 2**int(b["k"]), 2**int(b["k"])) and b["tokens"].dtype == np.int32
    assert np.all(np.diff(b["tokens"], axis=1) % 256 == 1)
  state = it.get_state()
  rest = [next(it) for _ in range(6)]
  it2 = iter(ds)
  it2.set_state(state)
  assert all(np.array_equal(a["tokens"], b["tokens"]) for a, b in zip(rest, [next(it2) for _ in range(6)]))
  # a bucket's chunks are a grain random-access source
  src = text.BucketSource(corpus.documents, d, 3)
  assert np.array_equal(grain.MapDataset.source(src)[2]["tokens"], src[2]["tokens"])
  mapped = ds.map(lambda b: b["tokens"].sum())  # further grain transforms chain
  assert int(next(iter(mapped))) == int(next(iter(ds))["tokens"].sum())


def test_concat_and_chunk_by_hand():
  docs = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6, 7, 8, 9])]
  # stream: 1 2 3 E | 4 E | 5 6 7 8 9 E  (12 tokens) -> 2 rows of 5, 2 tokens dropped
  b = text.concat_and_chunk(docs, 5, eos_id=0)
  assert b.tokens.tolist() == [[1, 2, 3, 0, 4], [0, 5, 6, 7, 8]]
  assert b.segment_ids.tolist() == [[0, 0, 0, 0, 1], [0, 1, 1, 1, 1]]
  assert b.positions.tolist() == [[0, 1, 2, 3, 0], [0, 0, 1, 2, 3]]
  nb = text.concat_and_chunk(docs, 5, eos_id=0, document_mask=False)
  assert nb.tokens.tolist() == b.tokens.tolist()
  assert nb.segment_ids.tolist() == [[0] * 5] * 2 and nb.positions.tolist() == [list(range(5))] * 2
  assert text.concat_and_chunk(docs, 4).tokens[0].tolist() == [1, 2, 3, data.EOS_ID]


def test_attention_flops_on_a_hand_example():
  # causal pairs L(L+1)/2: 4 -> 10, 1 -> 1; 4 d depth per pair
  assert text.attention_flops([4, 1], dim=8, depth=2) == 4 * 8 * 2 * 11
  assert text.attention_flops([4, 1], dim=8, depth=2, causal=False) == 4 * 8 * 2 * 17
  docs = [np.array([1, 2, 3]), np.array([4]), np.array([5, 6, 7, 8, 9])]
  b = text.concat_and_chunk(docs, 5, eos_id=0)
  assert text.segment_lengths(b.segment_ids).tolist() == [4, 1, 1, 4]
  masked = text.attention_flops(text.segment_lengths(b.segment_ids), dim=1)
  unmasked = text.attention_flops(text.segment_lengths(
      text.concat_and_chunk(docs, 5, eos_id=0, document_mask=False).segment_ids), dim=1)
  assert (masked, unmasked) == (4 * (10 + 1 + 1 + 10), 4 * 2 * 15)
  # DD at 8 tokens per step: bucket k has 8 / 2^k sequences of 2^k, so F grows with 2^k
  dd = [text.attention_flops([2**k] * (8 >> k), dim=1) for k in (1, 2, 3)]
  assert dd == [4 * 4 * 3, 4 * 2 * 10, 4 * 36]


def test_bad_inputs_raise_with_the_projects_messages():
  with pytest.raises(ValueError, match="kmax: must be an int"):
    text.decompose([5], kmin=3, kmax=2)
  with pytest.raises(ValueError, match="lengths: must be non-negative"):
    text.decompose([5, -1], kmin=0, kmax=2)
  with pytest.raises(ValueError, match="lengths: must hold at least one"):
    text.decompose(np.zeros(0, int), kmin=0, kmax=2)
  with pytest.raises(ValueError, match="lengths: must be a 1-D array of integer"):
    text.decompose([1.5], kmin=0, kmax=2)
  with pytest.raises(TypeError, match="official_compat: must be a bool"):
    text.decompose([5], kmin=0, kmax=2, official_compat=1)
  with pytest.raises(ValueError, match="tokens_per_step: must be a multiple of 2\\^kmax = 8"):
    _sampler(tokens_per_step=12)
  with pytest.raises(ValueError, match="curriculum: must be one of"):
    _sampler(curriculum="grow")
  with pytest.raises(ValueError, match="curriculum: odds must be finite and > 0"):
    _sampler(curriculum=[1, 0, 1])
  with pytest.raises(ValueError, match="bucket_sizes: too few chunks"):
    _sampler(bucket_sizes=[1, 1, 1])
  with pytest.raises(ValueError, match="cycles: must be an int >= 1"):
    _sampler(cycles=0)
  with pytest.raises(ValueError, match="state: remaining must be"):
    _sampler().set_state({"epoch": 0, "cycle": 0, "remaining": [9, 0, 0]})
  d = text.decompose([13], kmin=1, kmax=3)
  with pytest.raises(ValueError, match="k: must be an int in \\[1, 3\\]"):
    text.BucketSource([np.zeros(13, np.uint8)], d, 4)
  with pytest.raises(ValueError, match="documents: must be the 1 documents"):
    text.BucketSource([np.zeros(13, np.uint8)] * 2, d, 2)
  with pytest.raises(TypeError, match="decomposition: must be a Decomposition"):
    text.dd_dataset([np.zeros(13, np.uint8)], "d", tokens_per_step=8)
  with pytest.raises(ValueError, match="seq_len: must be an int >= 1"):
    text.concat_and_chunk([np.array([1])], 0)
  with pytest.raises(ValueError, match="documents: must be 1-D integer token arrays"):
    text.concat_and_chunk([np.ones((2, 2), np.int32)], 2)
  with pytest.raises(ValueError, match="documents: must hold at least one"):
    text.concat_and_chunk([], 2)
  with pytest.raises(ValueError, match="segment_ids: must be a \\(rows, seq\\) integer array"):
    text.segment_lengths(np.zeros(3, np.int32))
  with pytest.raises(ValueError, match="dim: must be an int >= 1"):
    text.attention_flops([4], dim=0)
