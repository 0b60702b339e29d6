"""The PRIOR claim runner's pieces (`experiments.techniques.multimodal.prior`) with numbers, and one smoke run."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
from flax import nnx

from configs import prior_digits
from experiments.techniques.multimodal import prior as P
from jaxdyn import multimodal as mm
from jaxdyn.data import _paired


class _Fixed(nnx.Module):
  """Returns fixed logits whatever the input (an oracle or a uniform model for `evaluate`)."""

  def __init__(self, logits):
    self.logits = nnx.Variable(jnp.asarray(logits))

  def __call__(self, images, tokens):
    return self.logits[...]


def _data():
  c = prior_digits.smoke_config().prior
  return P.load_data(c, 0)


def test_fact_table_groups_synonyms_and_forms():
  vocab = _paired.CaptionVocab.build()
  facts = P.fact_table(vocab)
  idx = {w: i for i, w in enumerate(vocab.words)}
  assert (facts[idx["big"]] & facts[idx["large"]]).any() and not (facts[idx["big"]] & facts[idx["small"]]).any()
  assert (facts[idx["seven"]] & facts[idx["7"]]).any() and not (facts[idx["seven"]] & facts[idx["1"]]).any()
  assert facts[idx["middle"]].sum() == 2  # horizontal "center" and vertical "middle"
  assert facts[idx["photo"]].sum() == 0 and facts[idx["<eos>"]].sum() == 0
  assert np.array_equal(facts.any(1), vocab.image_related)  # every image-related word states a fact, no other
  names, numerals = P.class_ids(vocab)
  assert [vocab.words[i] for i in names[:2]] == ["zero", "one"] and vocab.words[numerals[9]] == "9"


def test_evaluate_oracle_and_uniform():
  d = _data()
  tokens = d["eval_tokens"]
  v = d["vocab"].size
  oracle = np.eye(v, dtype=np.float32)[tokens[:, 1:]] * 30.0  # predicts every next token
  r = P.evaluate(_Fixed(oracle), d)
  for k in ("image_token_accuracy", "other_token_accuracy", "token_accuracy", "image_fact_accuracy",
            "caption_class_accuracy"):
    assert r[k] == 1.0, k
  assert r["eval_loss"] < 1e-6
  uniform = P.evaluate(_Fixed(np.zeros(tokens[:, 1:].shape + (v,), np.float32)), d)
  assert uniform["image_token_accuracy"] == 0.0  # argmax of a tie is <pad>, never a target
  np.testing.assert_allclose(uniform["eval_loss"], np.log(v), rtol=1e-6)
  np.testing.assert_allclose(uniform["caption_class_accuracy"], np.mean(d["eval"].labels == 0))  # ties: class 0


def test_ntp_loss_is_prior_with_alpha_zero():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 11)).astype(np.float32)
  targets = rng.integers(0, 11, (3, 5)).astype(np.int32)
  mask = targets != 0
  ref = np.log(rng.uniform(0.1, 0.9, (3, 5))).astype(np.float32)
  np.testing.assert_allclose(float(P.ntp_loss(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))),
                             float(mm.prior_loss(logits, targets, ref, mask=mask, alpha=0.0)), rtol=1e-6)


def test_batches_are_seeded_passes_without_replacement():
  a, b = P.batches(10, 4, seed=3), P.batches(10, 4, seed=3)
  first = [next(a) for _ in range(4)]
  assert all(np.array_equal(x, next(b)) for x in first)
  assert sorted(np.concatenate(first[:2])) == sorted(set(np.concatenate(first[:2])))  # no repeat within a pass


def test_token_weights_table_and_summary():
  d = _data()
  c = prior_digits.smoke_config().prior
  ref = P.make_captioner(c, d["train"].images.shape[1:], d["vocab"].size, 0)
  tokens = d["eval_tokens"][:3]
  rows = P.token_weights(ref, d["vocab"], tokens, alpha=1.0)
  for row, caption in zip(rows, d["eval"].captions[:3]):
    assert " ".join(r["word"] for r in row) == caption + " <eos>"
    np.testing.assert_allclose(np.mean([r["weight"] for r in row]), 1.0, atol=1e-3)
    assert all(0 < r["p_ref"] < 1 for r in row)
  line = P.format_token_weights([[{"word": "a", "weight": 0.5, "image_related": False, "p_ref": 0.5},
                                  {"word": "seven", "weight": 1.5, "image_related": True, "p_ref": 0.1}]])
  assert line == "a:0.50 SEVEN:1.50"
  flat = np.full(d["train_tokens"][:, 1:].shape, np.log(0.5), np.float32)  # constant p_ref: every weight 1
  s = P.weight_summary(flat, d["train_tokens"], d["vocab"], 1.0)
  np.testing.assert_allclose([s["mean_weight_image"], s["mean_weight_other"]], 1.0, rtol=1e-6)
  np.testing.assert_allclose(s["weight_share_image"], s["token_share_image"], rtol=1e-6)


def test_smoke_run_all(tmp_path):
  cfg = prior_digits.smoke_config()
  out = P.prior_runner(cfg, str(tmp_path / "prior"))
  assert out["arm"] == "prior" and 0.0 <= out["image_token_accuracy"] <= 1.0
  shared = out["shared_results"]
  with open(shared) as f:
    assert set(json.load(f)["per_arm"]) == {"ntp", "prior"}
  assert len(out["sample_weights"]) == 2 and out["history"][-1]["step"] == 3
