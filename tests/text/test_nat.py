"""Noise-aware training (`jaxdyn.text` NAT): the confidence-weighted loss, the estimator, the weak-label task."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdyn.text import (
    IDENTIFIER_KINDS,
    calibrate_temperature,
    confidence_weighted_cross_entropy,
    identifier_kinds,
    identifier_task,
    label_confidence,
    weak_identifier_kinds,
)

cwce = confidence_weighted_cross_entropy
K = {name: i for i, name in enumerate(IDENTIFIER_KINDS)}


def _logits(seed, shape):
  return jax.random.normal(jax.random.key(seed), shape) * 2.0


# --- the loss --------------------------------------------------------------------------------------------------------
def _plain_ce(logits, labels):
  """Per-token cross-entropy as a plain LM loss computes it (``-log_softmax`` at the label)."""
  return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1)[..., 0]


@pytest.mark.parametrize("form", ["weighted", "noise_aware"])
def test_confidence_one_is_plain_cross_entropy_bit_for_bit(form):
  logits = _logits(0, (3, 7, 5))
  labels = jax.random.randint(jax.random.key(1), (3, 7), 0, 5)
  ce = _plain_ce(logits, labels)
  got = cwce(logits, labels, jnp.ones((3, 7)), form=form)
  assert np.asarray(got).tobytes() == np.asarray(jnp.mean(ce)).tobytes()
  np.testing.assert_allclose(got, jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)),
                             rtol=1e-6)
  mask = (jax.random.uniform(jax.random.key(2), (3, 7)) > 0.4).astype(jnp.float32)
  got = cwce(logits, labels, jnp.ones((3, 7)), mask=mask, form=form)
  assert np.asarray(got).tobytes() == np.asarray(jnp.sum(mask * ce) / jnp.sum(mask)).tobytes()
  # under jit too (what a training step runs)
  f = jax.jit(lambda z: cwce(z, labels, jnp.ones((3, 7)), mask=mask, form=form))
  g = jax.jit(lambda z: jnp.sum(mask * _plain_ce(z, labels)) / jnp.sum(mask))
  assert np.asarray(f(logits)).tobytes() == np.asarray(g(logits)).tobytes()


def test_confidence_zero_removes_a_sample():
  logits = _logits(3, (5, 4))
  labels = jnp.array([0, 3, 1, 2, 2])
  c = jnp.array([0.3, 0.0, 1.0, 0.7, 0.0])
  keep = np.array([0, 2, 3])
  np.testing.assert_allclose(cwce(logits, labels, c), cwce(logits[keep], labels[keep], c[keep]), rtol=1e-6)
  g = jax.grad(lambda z: cwce(z, labels, c))(logits)
  assert np.all(np.asarray(g)[[1, 4]] == 0) and np.all(np.abs(np.asarray(g)[keep]).sum(-1) > 0)
  assert float(cwce(logits, labels, jnp.zeros(5))) == 0.0  # no confidence at all: the defined value 0


def test_hand_worked_weighted_and_noise_aware():
  p = jnp.array([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]])
  labels, c = jnp.array([0, 1, 1]), jnp.array([0.5, 1.0, 0.2])
  weighted = (0.5 * math.log(2) + math.log(4 / 3) + 0.2 * math.log(10)) / 1.7
  np.testing.assert_allclose(cwce(jnp.log(p), labels, c), weighted, rtol=1e-6)
  # c l + (1 - c) (-log(1 - p)): 0.5 ln2 + 0.5 ln2, ln(4/3) + 0, 0.2 ln10 + 0.8 (-ln 0.9); mean over 3
  noise_aware = (math.log(2) + math.log(4 / 3) + 0.2 * math.log(10) - 0.8 * math.log(0.9)) / 3
  np.testing.assert_allclose(cwce(jnp.log(p), labels, c, form="noise_aware"), noise_aware, rtol=1e-6)
  # a mask weights tokens: token 2 masked out, token 0 counted twice
  m = jnp.array([2.0, 1.0, 0.0])
  np.testing.assert_allclose(cwce(jnp.log(p), labels, c, mask=m), (math.log(2) + math.log(4 / 3)) / 2.0, rtol=1e-6)


def test_noise_aware_is_finite_where_the_weak_label_is_certain():
  logits = jnp.array([[0.0, 200.0]])  # p(label 1) = 1 in float32
  got = cwce(logits, jnp.array([1]), jnp.array([0.5]), form="noise_aware")
  np.testing.assert_allclose(got, 0.5 * -math.log(1e-12), rtol=1e-5)


def test_loss_nonfinite_and_out_of_range_labels_give_nan():
  logits = _logits(4, (3, 4))
  labels, c = jnp.array([0, 1, 2]), jnp.ones(3)
  assert np.isnan(cwce(logits.at[1, 2].set(jnp.nan), labels, c))
  assert np.isnan(cwce(logits.at[1, 2].set(-jnp.inf), labels, c, form="noise_aware"))
  assert np.isnan(cwce(logits.at[1, 2].set(-jnp.inf), labels, c.at[1].set(0.0)))  # even at zero confidence
  assert np.isnan(cwce(logits, labels, c.at[0].set(jnp.nan)))
  f = jax.jit(lambda y: cwce(logits, y, c))
  assert np.isnan(f(jnp.array([0, 4, 2])))
  assert np.isnan(f(jnp.array([0, -1, 2])))


def test_loss_bad_inputs():
  logits, labels = jnp.zeros((3, 4)), jnp.array([0, 1, 2])
  with pytest.raises(ValueError, match="confidence: must lie in \\[0, 1.0\\]"):
    cwce(logits, labels, jnp.array([0.5, 1.5, 0.2]))
  with pytest.raises(ValueError, match="confidence: must lie"):
    cwce(logits, labels, jnp.array([0.5, -0.1, 0.2]))
  with pytest.raises(ValueError, match="confidence: must have the shape of labels"):
    cwce(logits, labels, jnp.ones(4))
  with pytest.raises(TypeError, match="confidence: must be a real array"):
    cwce(logits, labels, np.ones(3, bool))
  with pytest.raises(ValueError, match="mask: must lie in >= 0"):
    cwce(logits, labels, jnp.ones(3), mask=jnp.array([1.0, -1.0, 1.0]))
  with pytest.raises(ValueError, match="labels: must lie in \\[0, 4\\)"):
    cwce(logits, jnp.array([0, 4, 1]), jnp.ones(3))
  with pytest.raises(ValueError, match="labels: must be integer class ids of shape"):
    cwce(logits, jnp.array([0, 1]), jnp.ones(2))
  with pytest.raises(ValueError, match="form: must be one of"):
    cwce(logits, labels, jnp.ones(3), form="mean")
  with pytest.raises(ValueError, match="logits: must hold at least one"):
    cwce(jnp.zeros((0, 4)), jnp.zeros(0, jnp.int32), jnp.zeros(0))


# --- the confidence estimator ------------------------------------------------------------------------------------------
def test_label_confidence_on_hand_built_logits():
  z = jnp.log(jnp.array([[0.2, 0.8], [0.6, 0.4]]))
  np.testing.assert_allclose(label_confidence(z, jnp.array([1, 1])), [0.8, 0.4], rtol=1e-6)
  # T = 2: softmax(log p / 2) = sqrt(p) / sum sqrt(p): sqrt(.8) / (sqrt(.2) + sqrt(.8)) = 2 / 3
  np.testing.assert_allclose(label_confidence(z[:1], jnp.array([1]), temperature=2.0), [2 / 3], rtol=1e-6)
  assert np.isnan(label_confidence(z.at[0, 0].set(-jnp.inf), jnp.array([1, 1]))[0])
  assert np.isnan(jax.jit(label_confidence)(z, jnp.array([2, 0]))[0])
  with pytest.raises(ValueError, match="temperature: must be a finite real number > 0"):
    label_confidence(z, jnp.array([1, 1]), temperature=0.0)
  with pytest.raises(ValueError, match="labels: must lie in"):
    label_confidence(z, jnp.array([1, 2]))


def test_calibrate_temperature_closed_form():
  # two classes, margins +-2, 3 of 4 labels agree with the argmax: the NLL is minimal where sigmoid(2 / T) = 3/4
  z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
  np.testing.assert_allclose(calibrate_temperature(z, np.array([0, 1, 1, 0])), 2 / math.log(3), rtol=1e-5)
  # a mask that drops the wrong token: all right, the optimum runs to the lower bound
  got = calibrate_temperature(z, np.array([0, 1, 1, 0]), mask=np.array([1.0, 1.0, 0.0, 1.0]), bounds=(0.1, 10.0))
  np.testing.assert_allclose(got, 0.1, rtol=1e-4)
  with pytest.raises(ValueError, match="logits: must be finite"):
    calibrate_temperature(np.array([[np.nan, 0.0]]), np.array([0]))
  with pytest.raises(ValueError, match="mask: must have a positive sum"):
    calibrate_temperature(z, np.array([0, 1, 1, 0]), mask=np.zeros(4))
  with pytest.raises(ValueError, match="bounds"):
    calibrate_temperature(z, np.array([0, 1, 1, 0]), bounds=(2.0, 1.0))
  with pytest.raises(ValueError, match="iterations"):
    calibrate_temperature(z, np.array([0, 1, 1, 0]), iterations=0)


# --- the weakly labelled task ------------------------------------------------------------------------------------------
SNIPPET = """import os
from collections import (
    OrderedDict,
)


class Point(Base):
    def norm(self, scale: Scale, *args):
        return os.path.join(self.x, Point(dim=2))

    def span(a,
             b):
        f = lambda u, v: u
        return (f.
                real)
"""

# (identifier, occurrence, truth, weak)
EXPECTED = [
    ("os", 0, "import", "import"), ("collections", 0, "import", "import"),
    ("OrderedDict", 0, "import", "class"),  # continuation line of a parenthesised import
    ("Point", 0, "class", "class"), ("Base", 0, "variable", "class"),  # a class used by name
    ("norm", 0, "function", "function"), ("self", 0, "parameter", "parameter"),
    ("scale", 0, "parameter", "parameter"), ("Scale", 0, "variable", "class"),  # an annotation
    ("args", 0, "parameter", "parameter"), ("os", 1, "variable", "variable"), ("path", 0, "attribute", "attribute"),
    ("join", 0, "attribute", "attribute"), ("self", 1, "variable", "variable"), ("x", 0, "attribute", "attribute"),
    ("Point", 1, "variable", "class"), ("dim", 0, "parameter", "variable"),  # keyword argument of a call
    ("span", 0, "function", "function"), ("a", 0, "parameter", "parameter"),
    ("b", 0, "parameter", "variable"),  # continuation line of a signature
    ("f", 0, "variable", "variable"), ("u", 0, "parameter", "parameter"), ("v", 0, "parameter", "parameter"),
    ("u", 1, "variable", "variable"), ("f", 1, "variable", "variable"),
    ("real", 0, "attribute", "variable"),  # attribute after a line break (the dot ends the line above)
]


def _at(src, name, occurrence):
  return [m.start() for m in re.finditer(rf"(?<![\w.]){name}\b|(?<=\.){name}\b", src)][occurrence]


def test_ground_truth_and_weak_labels_on_a_snippet():
  truth, weak = identifier_kinds(SNIPPET), weak_identifier_kinds(SNIPPET)
  assert truth.shape == weak.shape == (len(SNIPPET),)
  for name, occ, want_truth, want_weak in EXPECTED:
    i = _at(SNIPPET, name, occ)
    span = slice(i, i + len(name))
    assert set(truth[span].tolist()) == {K[want_truth]}, (name, occ)
    assert set(weak[span].tolist()) == {K[want_weak]}, (name, occ)
  assert (truth >= 0).sum() == sum(len(n) for n, *_ in EXPECTED)  # every identifier byte listed, nothing else
  assert np.array_equal(truth >= 0, weak >= 0)
  assert truth[SNIPPET.index("import")] == -1 and truth[SNIPPET.index("lambda")] == -1


def test_truth_soft_keywords_and_unicode():
  src = "match = 1\nmatch match:\n    case _:\n        é = match\n"
  t = identifier_kinds(src)
  b = src.encode()
  assert t[0] == K["variable"] and t[b.index(b"match match") + 6] == K["variable"]
  assert t[b.index(b"match match")] == -1 and t[b.index(b"case")] == -1  # soft keywords used as keywords
  assert t[b.index("é".encode())] == t[b.index("é".encode()) + 1] == K["variable"]  # 2 UTF-8 bytes, both labelled
  assert identifier_kinds(np.frombuffer(b"def g(): pass\n", np.uint8))[4] == K["function"]


def test_identifier_task_windows_ids_and_accuracy():
  docs = [SNIPPET, "import os\nx = os.path\n", "def (:\n"]
  t = identifier_task(docs, window=16)
  n0 = len(SNIPPET) // 16
  assert t.tokens.shape == (n0 + 1, 16) and t.skipped == (2,)
  assert t.documents.tolist() == [0] * n0 + [1]
  assert bytes(t.tokens[-1].astype(np.uint8)) == b"import os\nx = os"
  assert t.labels[-1].tolist() == [-1] * 7 + [K["import"]] * 2 + [-1, K["variable"]] + [-1] * 3 + [K["variable"]] * 2
  np.testing.assert_array_equal(t.labels.reshape(-1), identifier_kinds(SNIPPET)[:n0 * 16].tolist()
                                + t.labels[-1].tolist())
  ids = t.identifier_ids[-1]
  assert ids[7] == ids[8] and len({ids[7], ids[10], ids[14]}) == 3 and ids[14] == ids[15] and ids[9] == -1
  assert len(np.unique(t.identifier_ids[t.identifier_ids >= 0])) == int(np.max(t.identifier_ids)) + 1
  m = t.labels >= 0
  assert np.array_equal(m, t.weak_labels >= 0)
  assert 0.5 < np.mean(t.weak_labels[m] == t.labels[m]) < 1.0
  capped = identifier_task(docs, window=16, max_windows_per_document=1)
  assert capped.tokens.shape == (2, 16)


def test_task_bad_inputs():
  with pytest.raises(TypeError, match="source: must be Python source"):
    identifier_kinds(3)
  with pytest.raises(TypeError, match="source: must be Python source"):
    weak_identifier_kinds(np.zeros(3, np.int32))
  with pytest.raises(ValueError, match="source: must parse as Python"):
    identifier_kinds("x = = 1\n")
  with pytest.raises(ValueError, match="source: must be UTF-8"):
    identifier_kinds(b"x = '\xff'\n")
  with pytest.raises(ValueError, match="window: must be an int >= 1"):
    identifier_task(["x = 1\n"], window=0)
  with pytest.raises(ValueError, match="documents: must hold at least one"):
    identifier_task([], window=4)
  with pytest.raises(TypeError, match="documents: must be a sequence"):
    identifier_task("x = 1\n", window=4)
