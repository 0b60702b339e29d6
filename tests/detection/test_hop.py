"""Historical object prediction: moving-shape sequences, frame indices, the temporal decoder, the HoP loss,
and the temporal detector whose inference path ignores the HoP branch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxdyn import detection
from jaxdyn.models import TemporalDetector, TinyDetector

SEQ = dict(image_size=32, max_objects=3, min_size=5, max_size=10, noise=0.0, max_speed=2)


# --- synthetic_sequences -----------------------------------------------------------------------------

def test_sequences_shapes_identity_and_determinism():
  s = detection.synthetic_sequences(3, 6, 5, **SEQ)
  assert s.images.shape == (6, 5, 32, 32, 1) and s.boxes.shape == (6, 5, 3, 4)
  assert s.labels.shape == s.valid.shape == (6, 5, 3) and s.velocities.shape == (6, 3, 2) and s.dimmed.shape == (6, 5)
  assert s.images.dtype == np.float32 and s.boxes.dtype == np.float32 and s.labels.dtype == np.int32
  # Identity: valid rows and labels are the same in every frame; the first row is always an object.
  assert (s.valid == s.valid[:, :1]).all() and (s.labels == s.labels[:, :1]).all() and s.valid[:, :, 0].all()
  assert (s.boxes[~s.valid] == 0).all() and (s.velocities[~s.valid[:, 0]] == 0).all()
  # Box sizes are constant over frames (bouncing never clips) and every box lies on the canvas.
  wh = s.boxes[..., 2:] - s.boxes[..., :2]
  assert (wh == wh[:, :1]).all() and (s.boxes >= 0).all() and (s.boxes <= 32).all()
  assert np.abs(s.velocities).max() <= 2
  t = detection.synthetic_sequences(3, 6, 5, **SEQ)
  for a, b in zip(s, t):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(detection.synthetic_sequences(4, 6, 5, **SEQ).images, s.images)


def test_velocity_is_constant_away_from_edges_and_bounces_at_them():
  s = detection.synthetic_sequences(0, 60, 6, **SEQ)
  centres = (s.boxes[..., :2] + s.boxes[..., 2:]) / 2  # (N, T, M, 2)
  steps = np.diff(centres, axis=1)  # (N, T-1, M, 2)
  margin = SEQ["max_speed"]
  away = ((s.boxes[..., :2] > margin) & (s.boxes[..., 2:] < 32 - margin)).all(-1)  # (N, T, M)
  whole = free = 0
  for n, j in zip(*np.nonzero(s.valid[:, 0])):
    v = s.velocities[n, j]
    if away[n, :, j].all():  # never near an edge: the centre moves by the same vector v every frame
      np.testing.assert_array_equal(steps[n, :, j], np.broadcast_to(v, steps[n, :, j].shape))
      whole += 1
    for t in range(5):
      if away[n, t, j] and away[n, t + 1, j]:  # no reflection inside the step: +v or -v (after a bounce)
        np.testing.assert_array_equal(np.abs(steps[n, t, j]), np.abs(v))
        free += 1
    if s.labels[n, 0, j] == 0:  # a rectangle's box is its placement: x(t) = r(x(0) + vx t), by hand
      w, h = s.boxes[n, 0, j, 2:] - s.boxes[n, 0, j, :2]
      for t in range(6):
        x = detection._scenes._bounce(int(s.boxes[n, 0, j, 0]) + int(v[0]) * t, 32 - int(w))
        y = detection._scenes._bounce(int(s.boxes[n, 0, j, 1]) + int(v[1]) * t, 32 - int(h))
        np.testing.assert_array_equal(s.boxes[n, t, j], [x, y, x + w, y + h])
  assert whole >= 3 and free >= 50
  assert (np.abs(steps) <= SEQ["max_speed"]).all()  # a bounce never moves a box further than |v|
  # Hand-worked bounce: the triangle wave folds x0 + v t into [0, L].
  assert [detection._scenes._bounce(p, 5) for p in (-2, 0, 3, 5, 7, 10, 12, -7)] == [2, 0, 3, 5, 3, 0, 2, 3]


def test_pixels_follow_the_boxes_and_dimmed_frames_are_low_contrast():
  s = detection.synthetic_sequences(1, 8, 4, **{**SEQ, "max_objects": 1}, dim_rate=0.5, dim_factor=0.25)
  assert s.dimmed.any() and (~s.dimmed).any()
  for n in range(8):
    peaks = []
    for t in range(4):
      x1, y1, x2, y2 = s.boxes[n, t, 0].astype(int)
      img = s.images[n, t, :, :, 0]
      outside = img.copy()
      outside[y1:y2, x1:x2] = 0
      assert img[y1:y2, x1:x2].max() > 0 and not outside.any()  # no noise: only the object, inside its box
      peaks.append(img.max())
    bright = [p for p, d in zip(peaks, s.dimmed[n]) if not d]
    for p, d in zip(peaks, s.dimmed[n]):
      if d and bright:
        np.testing.assert_allclose(p, 0.25 * bright[0], rtol=1e-6)


def test_sequences_bad_inputs():
  with pytest.raises(ValueError, match="num_frames: must be an int >= 1"):
    detection.synthetic_sequences(0, 2, 0)
  with pytest.raises(ValueError, match="max_speed: must be an int >= 0"):
    detection.synthetic_sequences(0, 2, 3, max_speed=-1)
  with pytest.raises(ValueError, match="dim_rate: must be a finite real number in"):
    detection.synthetic_sequences(0, 2, 3, dim_rate=1.5)
  with pytest.raises(ValueError, match="dim_factor"):
    detection.synthetic_sequences(0, 2, 3, dim_factor=-0.1)


# --- frame indices and the temporal decoder -----------------------------------------------------------

@pytest.mark.parametrize("t,k,short,long", [
    (2, 1, [1, 1], [1]),  # t-k is index 0: no frame before it, t-k+1 twice
    (3, 1, [0, 2], [0, 2]),
    (3, 2, [1, 1], [1, 2]),
    (5, 1, [2, 4], [0, 1, 2, 4]),
    (5, 3, [0, 2], [0, 2, 3, 4]),
])
def test_hop_frame_indices_by_hand(t, k, short, long):
  assert detection.hop_frame_indices(t, k).tolist() == short
  assert detection.hop_frame_indices(t, k, "long").tolist() == long
  assert t - 1 - k not in detection.hop_frame_indices(t, k, "long")


def test_hop_frame_indices_bad_inputs():
  with pytest.raises(ValueError, match="num_frames: must be an int >= 2"):
    detection.hop_frame_indices(1, 1)
  with pytest.raises(ValueError, match=r"k: must be an int in \[1, 2\]"):
    detection.hop_frame_indices(3, 3)
  with pytest.raises(ValueError, match="k: must be an int"):
    detection.hop_frame_indices(3, 0)
  with pytest.raises(ValueError, match="mode: must be one of"):
    detection.hop_frame_indices(3, 1, "mid")


@pytest.mark.parametrize("t,k,long_term", [(3, 1, True), (4, 2, False), (4, 3, True), (2, 1, True)])
def test_temporal_decoder_never_reads_frame_t_minus_k(t, k, long_term):
  dec = detection.TemporalDecoder(4, t, k, long_term=long_term, rngs=nnx.Rngs(0))
  f = jax.random.normal(jax.random.key(1), (2, t, 5, 5, 4))
  out = dec(f)
  assert out.shape == (2, 5, 5, 4)
  g = jax.grad(lambda f: jnp.sum(dec(f) ** 2))(f)
  h = t - 1 - k
  assert float(jnp.abs(g[:, h]).max()) == 0.0  # exactly zero
  used = set(detection.hop_frame_indices(t, k, "long" if long_term else "short").tolist())
  for i in used:
    assert float(jnp.abs(g[:, i]).max()) > 0  # every other frame the decoder reads moves it
  # changing frame t-k changes nothing; a NaN there poisons that example only (input policy)
  np.testing.assert_array_equal(dec(f.at[:, h].set(1e3)), out)
  poisoned = dec(f.at[0, h, 2, 3, 1].set(np.inf))
  assert np.isnan(poisoned[0]).all()
  np.testing.assert_array_equal(poisoned[1], out[1])


def test_temporal_decoder_short_term_is_a_conv_of_the_concat():
  dec = detection.TemporalDecoder(2, 3, 1, long_term=False, rngs=nnx.Rngs(0))
  f = jax.random.normal(jax.random.key(2), (1, 3, 4, 4, 2))
  # By hand: relu(conv3x3 over [F_0, F_2]) with the decoder's kernel.
  x = jnp.concatenate([f[:, 0], f[:, 2]], axis=-1)
  want = jax.lax.conv_general_dilated(x, dec.short.kernel[...], (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC")) + dec.short.bias[...]
  np.testing.assert_allclose(dec(f), jax.nn.relu(want), rtol=1e-5, atol=1e-6)


def test_temporal_decoder_bad_inputs():
  with pytest.raises(ValueError, match="channels: must be an int >= 1"):
    detection.TemporalDecoder(0, 3, 1, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="k: must be an int"):
    detection.TemporalDecoder(4, 3, 3, rngs=nnx.Rngs(0))
  dec = detection.TemporalDecoder(4, 3, 1, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"features: must have shape \(batch, 3, height, width, 4\)"):
    dec(jnp.zeros((2, 2, 5, 5, 4)))
  with pytest.raises(ValueError, match="features"):
    dec(jnp.zeros((2, 3, 5, 5, 3)))


def test_hop_loss():
  assert float(detection.hop_loss(jnp.float32(1.25), jnp.float32(7.0), 0.0)) == 1.25  # weight 0: the main loss
  np.testing.assert_allclose(float(detection.hop_loss(jnp.float32(1.5), jnp.float32(2.0), 0.5)), 2.5)
  np.testing.assert_allclose(float(detection.hop_loss(1.0, 3.0, np.float32(2.0))), 7.0)
  assert np.isnan(float(detection.hop_loss(jnp.float32(1.0), jnp.float32(np.nan), 0.5)))
  # traced weight (inject_hyperparams-style): not checked eagerly, same value
  np.testing.assert_allclose(float(jax.jit(detection.hop_loss)(1.0, 3.0, 0.25)), 1.75)
  with pytest.raises(ValueError, match="weight: must be a finite real number >= 0"):
    detection.hop_loss(1.0, 2.0, -0.1)
  with pytest.raises(ValueError, match="weight"):
    detection.hop_loss(1.0, 2.0, True)
  with pytest.raises(ValueError, match="historical_loss: must be a scalar"):
    detection.hop_loss(1.0, jnp.ones(3), 0.5)


# --- the temporal detector -----------------------------------------------------------------------------

KW = dict(width=4, image_size=16, num_frames=2, hop_frames=3, hop_k=1)


def _inference_param_count(model):
  flat = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
  return sum(np.size(v) for path, v in flat if not str(path[0].key).startswith("hop_"))


def _flops(model, x):
  graphdef, params = nnx.split(model)
  cost = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x)).lower(params, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def test_temporal_detector_matches_tinydetector_layout_and_single_frame_fusion():
  det = TemporalDetector(1, 3, **KW, rngs=nnx.Rngs(0))
  tiny = TinyDetector(1, 3, width=4, image_size=16, rngs=nnx.Rngs(0))
  # Same parts, same initial values (the temporal parts are created after TinyDetector's).
  for name in ("stem1", "stem2", "down", "tower", "cls", "box", "ctr"):
    np.testing.assert_array_equal(getattr(det, name).kernel[...], getattr(tiny, name).kernel[...])
  a, counts = det.anchors()
  assert counts == tiny.anchors()[1] == (16, 4)
  x = jax.random.uniform(jax.random.key(3), (2, 2, 16, 16, 1))
  cls, box, ctr = det(x)
  assert cls.shape == (2, 20, 3) and box.shape == (2, 20, 4) and ctr.shape == (2, 20)
  # The inference path by hand: per-frame stems, the fusion conv over [F_{t-1}, F_t], TinyDetector's rest.
  f = [nnx.relu(det.stem2(nnx.relu(det.stem1(x[:, i])))) for i in range(2)]
  fused = nnx.relu(det.fusion(jnp.concatenate(f, -1)))
  p1 = nnx.relu(det.down(fused))
  h0 = nnx.relu(det.tower(fused))
  h1 = nnx.relu(det.tower(p1))
  want_cls = jnp.concatenate([det.cls(h0).reshape(2, 16, 3), det.cls(h1).reshape(2, 4, 3)], 1)
  np.testing.assert_allclose(cls, want_cls, rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(det(x.at[:, 0].set(0.0))[0] - cls).max()) > 0  # frame t-1 matters
  assert det.features(jnp.zeros((0, 3, 16, 16, 1))).shape == (0, 3, 4, 4, 4)
  assert det(jnp.zeros((0, 2, 16, 16, 1)))[0].shape == (0, 20, 3)


def test_inference_ignores_the_hop_branch_and_costs_the_same():
  base = TemporalDetector(1, 3, **KW, rngs=nnx.Rngs(0))
  hop = TemporalDetector(1, 3, **KW, hop=True, rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(4), (2, 2, 16, 16, 1))
  # Same seed: identical inference weights, so identical inference outputs.
  for a, b in zip(base(x), hop(x)):
    np.testing.assert_array_equal(a, b)
  n_base = sum(np.size(v) for v in jax.tree.leaves(nnx.state(base, nnx.Param)))
  n_hop = sum(np.size(v) for v in jax.tree.leaves(nnx.state(hop, nnx.Param)))
  assert _inference_param_count(hop) == _inference_param_count(base) == n_base < n_hop
  flops = _flops(base, x)
  assert flops > 0 and _flops(hop, x) == flops
  # "Trained" HoP parameters: perturbing every branch parameter changes no inference output.
  out = hop(x)
  feats = hop.features(jax.random.uniform(jax.random.key(5), (2, 3, 16, 16, 1)))
  before = hop.historical(feats)[0]
  state = nnx.state(hop, nnx.Param)
  perturbed = jax.tree_util.tree_map_with_path(
      lambda p, v: v + 1.0 if str(p[0].key).startswith("hop_") else v, state)
  nnx.update(hop, perturbed)
  for a, b in zip(out, hop(x)):
    np.testing.assert_array_equal(a, b)
  assert _flops(hop, x) == flops
  # ...while the historical branch does change.
  assert float(jnp.abs(hop.historical(feats)[0] - before).max()) > 0


def test_historical_never_reads_frame_t_minus_k_but_trains_the_backbone():
  det = TemporalDetector(1, 3, **KW, hop=True, rngs=nnx.Rngs(1))
  x = jax.random.uniform(jax.random.key(6), (2, 3, 16, 16, 1))

  def hist_sum(x):
    return sum(jnp.sum(o) for o in det.historical(det.features(x)))

  g = jax.grad(hist_sum)(x)
  assert float(jnp.abs(g[:, 1]).max()) == 0.0  # frame t - 1 (k = 1): exactly zero
  assert float(jnp.abs(g[:, 0]).max()) > 0 and float(jnp.abs(g[:, 2]).max()) > 0
  graphdef, params = nnx.split(det)
  grads = jax.grad(lambda p: sum(jnp.sum(o) for o in nnx.merge(graphdef, p).historical(
      nnx.merge(graphdef, p).features(x))))(params)
  assert float(jnp.abs(grads["stem1"]["kernel"][...]).max()) > 0  # the shared backbone learns from HoP
  assert float(jnp.abs(grads["fusion"]["kernel"][...]).max()) == 0  # the inference-only fusion does not


def test_temporal_detector_bad_inputs():
  with pytest.raises(ValueError, match="num_frames: must be an int >= 1"):
    TemporalDetector(1, 3, **{**KW, "num_frames": 0}, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="hop_frames: must be an int >= 2"):
    TemporalDetector(1, 3, **{**KW, "hop_frames": 1}, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"hop_k: must be an int in \[1, 2\]"):
    TemporalDetector(1, 3, **{**KW, "hop_k": 3}, rngs=nnx.Rngs(0))
  det = TemporalDetector(1, 3, **KW, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"x: must have shape \(batch, 2, 16, 16, 1\)"):
    det(jnp.zeros((1, 3, 16, 16, 1)))
  with pytest.raises(ValueError, match="x: must have shape"):
    det.features(jnp.zeros((1, 16, 16, 1)))
  with pytest.raises(ValueError, match="hop: the model was built with hop=False"):
    det.historical(jnp.zeros((1, 3, 4, 4, 4)))
  hop = TemporalDetector(1, 3, **KW, hop=True, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"feats: must have shape \(batch, >= 3"):
    hop.historical(jnp.zeros((1, 2, 4, 4, 4)))
