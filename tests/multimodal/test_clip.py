"""CLIP's loss (NumPy reference, symmetry, batch order, 1 device == 8 sharded devices), zero-shot and recall@k."""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.multimodal import (
    clip_logit_scale,
    clip_loss,
    clip_recall_at_k,
    clip_zero_shot_accuracy,
    clip_zero_shot_prompts,
    clip_zero_shot_scores,
    clip_zero_shot_weights,
)

REPO = pathlib.Path(__file__).resolve().parents[2]


def _np_clip_loss(u, t, log_scale):
  """The paper's Figure 3 in NumPy (float64): normalise, scaled cosine logits, symmetric cross-entropy."""
  u = u / np.linalg.norm(u, axis=1, keepdims=True)
  t = t / np.linalg.norm(t, axis=1, keepdims=True)
  s = min(math.exp(log_scale), 100.0)
  logits = s * u @ t.T
  n = len(u)

  def ce(lg):
    lse = np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1)) + lg.max(1)
    return np.mean(lse - lg[np.arange(n), np.arange(n)])

  return 0.5 * (ce(logits) + ce(logits.T))


def _emb(seed, n=6, d=5):
  r = np.random.default_rng(seed)
  return r.normal(size=(n, d)).astype(np.float32), r.normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("log_scale", [0.0, math.log(1 / 0.07), 3.0, 7.0])
def test_loss_matches_numpy_reference(log_scale):
  u, t = _emb(0)
  np.testing.assert_allclose(float(clip_loss(u, t, log_scale)), _np_clip_loss(u.astype(np.float64),
                                                                              t.astype(np.float64), log_scale),
                             rtol=2e-5)


def test_loss_hand_worked():
  # Two orthogonal pairs at scale 1: each row has logits (1, 0): loss = log(e + 1) - 1.
  u = np.eye(2, dtype=np.float32)
  assert abs(float(clip_loss(u, u, 0.0)) - (math.log(math.e + 1) - 1)) < 1e-6
  # Scales of the inputs do not matter (cosine similarities).
  assert abs(float(clip_loss(3 * u, 0.5 * u, 0.0)) - (math.log(math.e + 1) - 1)) < 1e-6


def test_scale_is_clipped_at_100():
  u, t = _emb(1)
  assert float(clip_logit_scale(math.log(100.0) + 3)) == pytest.approx(100.0, rel=1e-6)
  assert float(clip_loss(u, t, 20.0)) == pytest.approx(float(clip_loss(u, t, math.log(100.0))), rel=1e-6)
  g = jax.grad(lambda s: clip_loss(u, t, s))(jnp.float32(6.0))
  assert float(g) == 0.0  # above the clip the temperature gets no gradient
  assert float(jax.grad(lambda s: clip_loss(u, t, s))(jnp.float32(1.0))) != 0.0


def test_symmetric_in_image_and_text():
  u, t = _emb(2)
  np.testing.assert_allclose(float(clip_loss(u, t, 2.5)), float(clip_loss(t, u, 2.5)), rtol=1e-6)


def test_invariant_to_batch_order():
  u, t = _emb(3, n=9)
  perm = np.random.default_rng(0).permutation(9)
  np.testing.assert_allclose(float(clip_loss(u[perm], t[perm], 2.0)), float(clip_loss(u, t, 2.0)), rtol=1e-6)
  # ... but not to breaking the pairs.
  assert abs(float(clip_loss(u, t[perm], 2.0)) - float(clip_loss(u, t, 2.0))) > 1e-3


def test_half_precision_and_extreme_scales_are_finite():
  u, t = _emb(4)
  ref = float(clip_loss(u, t, 2.0))
  assert float(clip_loss(u.astype(np.float16), t.astype(np.float16), 2.0)) == pytest.approx(ref, abs=5e-3)
  assert float(clip_loss(u * 1e30, t * 1e-30, 2.0)) == pytest.approx(ref, rel=1e-5)


def test_zero_embedding_has_a_finite_gradient():
  u, t = _emb(7)
  u[0] = 0.0  # e.g. an untrained tower with zero biases on a blank image
  grads = jax.grad(clip_loss, argnums=(0, 1, 2))(u, t, jnp.float32(2.0))
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_nonfinite_inputs_give_nan_or_raise():
  u, t = _emb(5)
  u[2, 1] = np.nan
  assert np.isnan(float(clip_loss(u, t, 1.0)))
  with pytest.raises(ValueError, match="log_scale: must be finite"):
    clip_loss(t, t, np.float32(np.inf))
  assert np.isnan(float(jax.jit(clip_loss)(t, t, jnp.float32(-np.inf))))


@pytest.mark.parametrize("bad,match", [
    (dict(image_emb=np.zeros((0, 4), np.float32), text_emb=np.zeros((0, 4), np.float32)), "image_emb: must hold"),
    (dict(text_emb=np.ones((6, 4), np.float32)), "text_emb: must have the shape of image_emb"),
    (dict(image_emb=np.ones(5, np.float32)), "image_emb: must have 2 dimensions"),
    (dict(log_scale=np.ones(2, np.float32)), "log_scale: must be a scalar"),
    (dict(log_scale="2"), "log_scale: must be a real scalar"),
    (dict(image_emb=np.ones((6, 5), np.complex64)), "image_emb: must be real"),
])
def test_loss_bad_inputs(bad, match):
  u, t = _emb(6)
  kw = dict(image_emb=u, text_emb=t, log_scale=1.0)
  kw.update(bad)
  with pytest.raises((ValueError, TypeError), match=match):
    clip_loss(**kw)
  with pytest.raises(TypeError, match="axis_name"):
    clip_loss(u, t, 1.0, axis_name=3)


# --- sharded over the batch: 8 forced CPU devices ---------------------------------------------------

_SHARDED = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
from jaxdyn.multimodal import clip_loss
r = np.random.default_rng(0)
u = jnp.asarray(r.normal(size=(32, 6)).astype(np.float32))
t = jnp.asarray(r.normal(size=(32, 6)).astype(np.float32))
mesh = Mesh(np.array(jax.devices()), ("data",))
def local(u, t, s):
  return clip_loss(u, t, s, axis_name="data")
sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("data"), P("data"), P()), out_specs=P()))
def loss_and_grads(f):
  val, grads = jax.value_and_grad(f, argnums=(0, 1, 2))(u, t, jnp.float32(2.0))
  return [float(val)] + [np.asarray(g).ravel().tolist() for g in grads]
out = {"devices": jax.device_count(), "sharded": loss_and_grads(sharded),
       "plain": loss_and_grads(jax.jit(clip_loss))}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_one_device_equals_eight_sharded_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _SHARDED], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.loads(out.stdout.strip().splitlines()[-1])
  assert res["devices"] == 8
  sharded, plain = res["sharded"], res["plain"]
  np.testing.assert_allclose(sharded[0], plain[0], rtol=1e-6)
  for a, b in zip(sharded[1:], plain[1:]):  # gradients of image_emb, text_emb and log_scale
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # And the unsharded value is the NumPy reference.
  r = np.random.default_rng(0)
  u, t = r.normal(size=(32, 6)), r.normal(size=(32, 6))
  np.testing.assert_allclose(plain[0], _np_clip_loss(u, t, 2.0), rtol=2e-5)


# --- zero-shot --------------------------------------------------------------------------------------

def test_zero_shot_prompts_class_major():
  got = clip_zero_shot_prompts(["a {}", "the {} digit"], [("one", "1"), ("two", "2")])
  assert got == ["a one", "the one digit", "a 1", "the 1 digit", "a two", "the two digit", "a 2", "the 2 digit"]
  assert clip_zero_shot_prompts(["{}"], ["x", "y"]) == ["x", "y"]
  with pytest.raises(ValueError, match="templates: each must"):
    clip_zero_shot_prompts(["no slot"], ["x"])
  with pytest.raises(ValueError, match="class_names: every class"):
    clip_zero_shot_prompts(["{}"], [("a", "b"), ("c",)])
  with pytest.raises(ValueError, match="templates: must be"):
    clip_zero_shot_prompts("{}", ["x"])


def test_zero_shot_weights_normalise_average_renormalise():
  # Class 0: prompts (2, 0) and (0, 1): normalised (1, 0), (0, 1); mean (.5, .5); renormalised (1, 1)/sqrt 2.
  # Class 1: (3, 4) and (3, 4): (0.6, 0.8). Without the first normalisation class 0 would be (2, 1)/sqrt 5.
  e = np.array([[[2.0, 0.0], [0.0, 1.0]], [[3.0, 4.0], [3.0, 4.0]]], np.float32)
  np.testing.assert_allclose(np.asarray(clip_zero_shot_weights(e)), [[2 ** -0.5, 2 ** -0.5], [0.6, 0.8]], atol=1e-6)
  with pytest.raises(ValueError, match="class_text_emb: must have 3"):
    clip_zero_shot_weights(e[0])
  with pytest.raises(ValueError, match="class_text_emb: must hold"):
    clip_zero_shot_weights(e[:, :0])


def test_zero_shot_accuracy_hand_worked():
  w = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
  images = np.array([[1.0, 0.0],    # cos 1 / 0.6: class 0
                     [0.0, 1.0],    # 0 / 0.8: class 1
                     [1.0, 1.0],    # 0.707 / 0.99: class 1
                     [10.0, 1.0]],  # 0.995 / 0.676: class 0
                    np.float32)
  scores = np.asarray(clip_zero_shot_scores(images, w))
  np.testing.assert_allclose(scores[2], [2 ** -0.5, 1.4 / 2 ** 0.5], rtol=1e-6)
  labels = np.array([0, 1, 0, 1], np.int32)
  assert float(clip_zero_shot_accuracy(images, w, labels)) == 0.5
  assert float(clip_zero_shot_accuracy(images, w, np.array([0, 1, 1, 0]))) == 1.0
  with pytest.raises(ValueError, match=r"labels: must lie in \[0, 2\)"):
    clip_zero_shot_accuracy(images, w, np.array([0, 1, 2, 0]))
  assert np.isnan(float(jax.jit(clip_zero_shot_accuracy)(images, w, jnp.array([0, 1, 2, 0]))))
  with pytest.raises(ValueError, match="class_weights: must have the feature dimension"):
    clip_zero_shot_accuracy(images, np.ones((2, 3), np.float32), labels)
  bad = images.copy()
  bad[1, 0] = np.nan
  assert np.isnan(float(clip_zero_shot_accuracy(bad, w, labels)))


# --- retrieval --------------------------------------------------------------------------------------

def test_recall_at_k_hand_worked():
  # Images e0, e1, e2 (unit axes in 3-D); texts: t0 = image 0 (hit), t1 = closer to image 2 than to image 1,
  # t2 = halfway between images 2 and 0 (a tie: counted against it).
  u = np.eye(3, dtype=np.float32)
  t = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0], [1.0, 0.0, 1.0]], np.float32)
  i2t1, t2i1 = (float(r) for r in clip_recall_at_k(u, t, 1))
  # image -> text: image 0: own t0 (1) vs t2 (0.707): hit. Image 1: own t1 (0.447) vs 0: hit.
  # Image 2: own t2 (0.707) vs t1 (0.894): miss. -> 2/3.
  # text -> image: t0 hit; t1: image 2 (0.894) above image 1 (0.447): miss; t2: image 0 ties image 2: miss. -> 1/3.
  assert (i2t1, t2i1) == pytest.approx((2 / 3, 1 / 3))
  i2t2, t2i2 = (float(r) for r in clip_recall_at_k(u, t, 2))
  assert (i2t2, t2i2) == (1.0, 1.0)


def test_recall_with_several_texts_per_image():
  # Two images, three texts: texts 0 and 1 are image 0's, text 2 image 1's.
  u = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  t = np.array([[0.0, 1.0], [1.0, 0.2], [1.0, 0.1]], np.float32)  # text 0 is wrong-looking, text 2 too
  ids = np.array([0, 0, 1], np.int32)
  i2t, t2i = (float(r) for r in clip_recall_at_k(u, t, 1, text_image_ids=ids))
  # image 0: best own text 1 (0.981) vs wrong text 2 (0.995): miss. image 1: own text 2 (0.0995) vs wrong
  # text 0 (1.0): miss. -> 0. Text -> image: t0 -> image 1 wins: miss; t1 -> image 0: hit; t2 -> image 0: miss.
  assert (i2t, t2i) == pytest.approx((0.0, 1 / 3))


def test_recall_counts_only_wrong_candidates():
  u = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  t = np.array([[0.0, 1.0], [1.0, 0.2]], np.float32)
  i2t, t2i = clip_recall_at_k(u, t, 1, text_image_ids=np.array([0, 0]))
  assert float(i2t) == 1.0  # image 0's texts are all its own: no wrong candidate; image 1 has none
  assert float(t2i) == 0.5  # t0 is closer to image 1, t1 to image 0


def test_recall_bad_inputs():
  u = np.eye(3, dtype=np.float32)
  with pytest.raises(ValueError, match="k: must be an int >= 1"):
    clip_recall_at_k(u, u, 0)
  with pytest.raises(ValueError, match="k: must be an int"):
    clip_recall_at_k(u, u, 1.0)
  with pytest.raises(ValueError, match="text_emb: must have one row per image"):
    clip_recall_at_k(u, u[:2], 1)
  with pytest.raises(ValueError, match=r"text_image_ids: must lie in \[0, 3\)"):
    clip_recall_at_k(u, u, 1, text_image_ids=np.array([0, 1, 3]))
  with pytest.raises(ValueError, match="text_image_ids: must be integer class ids of shape"):
    clip_recall_at_k(u, u, 1, text_image_ids=np.array([0, 1]))
  f = jax.jit(lambda ids: clip_recall_at_k(u, u, 1, text_image_ids=ids))
  assert all(np.isnan(float(r)) for r in f(jnp.array([0, 1, -1])))
  bad = u.copy()
  bad[0, 0] = np.inf
  assert all(np.isnan(float(r)) for r in clip_recall_at_k(bad, u, 1))
