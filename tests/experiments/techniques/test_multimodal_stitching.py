"""The visual-stitching claim runner's pieces, with numbers, and one smoke run."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from configs import stitching_digits
from experiments.techniques.multimodal import stitching as st
from jaxdyn import models
from jaxdyn import multimodal as mm
from jaxdyn.data import _paired


def test_split_factor_and_vocab():
  assert [st.split_factor(a) for a in st.ARMS] == [1, 2, 3, 4]
  with pytest.raises(ValueError, match="arm"):
    st.split_factor("5x5")
  vocab = st.build_vocab()
  for w in (*mm.ID_WORDS, "associated", "shown", "id"):
    assert w in vocab.words
  toks = st.prefix_tokens(vocab, [st.PROMPT, st.PROMPT])
  assert toks.shape == (2, 8) and (toks[:, 0] == _paired.BOS).all() and (toks != _paired.EOS).all()
  assert vocab.decode(np.concatenate([toks, np.full((2, 1), _paired.EOS)], 1)) == [st.PROMPT] * 2
  with pytest.raises(ValueError, match="texts"):
    st.prefix_tokens(vocab, ["the digit", "the digit shown"])


def test_scorer_is_the_sum_of_id_token_log_probs():
  vocab_size = 12
  model = models.Captioner((8, 8, 1), vocab_size, dim=8, depth=1, num_heads=1, prefix_len=2, image_width=2,
                           rngs=nnx.Rngs(0))
  images = np.asarray(jax.random.uniform(jax.random.key(1), (2, 8, 8, 1)))
  prefix = np.array([[1, 4, 5], [1, 6, 7]], np.int32)
  cands = np.array([[8, 9], [10, 11], [9, 8]], np.int32)
  got = np.asarray(st.make_scorer(model)(images, prefix, cands))
  seqs = np.stack([np.concatenate([prefix[b], cands[k], [_paired.EOS]]) for b in range(2) for k in range(3)])
  logits = np.asarray(model(np.repeat(images, 3, axis=0), seqs), np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  rows = np.arange(6)
  # positions p - 1 and p (p = 3 prefix tokens) predict the ID's two tokens
  want = (logp[rows, 2, seqs[:, 3]] + logp[rows, 3, seqs[:, 4]]).reshape(2, 3)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  text = np.asarray(st.make_scorer(model)(None, prefix, cands))
  assert text.shape == (2, 3) and not np.allclose(text, got)


def test_study_set_two_sizes_per_class():
  c = stitching_digits.get_config().stitching
  study = st.study_set(c, seed=1)
  assert len(study["images"]) == 20 and len(set(study["index"].tolist())) == 20
  np.testing.assert_array_equal(np.bincount(study["labels"]), np.full(10, 2))
  assert len(set(study["references"])) == 20 and len(set(study["id_texts"])) == 20
  assert study["references"][0] == "the small zero is associated with id"
  assert study["references"][1] == "the large zero is associated with id"
  again = st.study_set(c, seed=1)
  np.testing.assert_array_equal(again["ids"], study["ids"])


def test_smoke_run(tmp_path):
  config = stitching_digits.smoke_config()
  out = stitching_digits.RUNNER(config, str(tmp_path / "run"))
  for key in ("image_accuracy", "image_rank", "reference_accuracy", "reference_rank", "pretrain_class_accuracy"):
    assert np.isfinite(out[key])
  assert out["chance_accuracy"] == pytest.approx(0.1) and out["chance_rank"] == pytest.approx(4.5)
  assert out["num_pairs"] == 40 and out["arm"] == "2x2"
  shared = json.loads(open(out["shared_results"]).read())
  assert set(shared["per_arm"]) == {"1x1", "2x2"} and shared["per_arm"]["1x1"]["num_pairs"] == 10
