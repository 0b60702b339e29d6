"""Frozen-spatial ViViT: the model, the freezing transform, the initialisation, the synthetic clips."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxdyn.data import DATASETS, load_dataset
from jaxdyn.data import _clips
from jaxdyn.memory import (freeze_spatial, init_from_image_model, init_from_short_clip_model,
                           resize_temporal_positions, spatial_labels)
from jaxdyn.models import ViT, ViViT
from jaxdyn.models._vivit import Adapter

ARCH = dict(image_size=8, patch_size=4, dim=16, num_heads=2, mlp_ratio=2)
T, B, K = 4, 6, 5


def _vivit(*, freeze=False, adapter=0, spatial_depth=2, temporal_depth=1, seed=0, frames=T):
  return ViViT(1, K, num_frames=frames, spatial_depth=spatial_depth, temporal_depth=temporal_depth, adapter_dim=adapter,
               frame_classes=3, freeze_spatial=freeze, **ARCH, rngs=nnx.Rngs(seed))


def _clips_batch(seed=0):
  x = jax.random.uniform(jax.random.key(seed), (B, T, 8, 8, 1))
  return x, jnp.arange(B, dtype=jnp.int32) % K


def _apply(model, x):
  """``model(x)`` under jit (eager NNX runs op by op: slow on 2 cores)."""
  return nnx.jit(lambda m, x: m(x))(model, x)


def _pure(model):
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _train_step(model, tx, *, report_grad_norm=True):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = nnx.merge(graphdef, p, rest)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    out = (loss, optax.global_norm(grads)) if report_grad_norm else (loss,)
    return optax.apply_updates(params, updates), opt_state, out

  return jax.jit(step, donate_argnums=(0, 1)), params


# --- the synthetic clips ----------------------------------------------------------------------------
def test_clips_are_registered_deterministic_and_balanced():
  assert "clips" in DATASETS and "clip_frames" in DATASETS
  d = load_dataset("clips")
  assert d.input_shape == (8, 16, 16, 1) and d.num_classes == 8
  assert d.train.x.shape == (4000, 8, 16, 16, 1) and d.train.x.dtype == np.float32 and len(d.eval) == 1000
  counts = np.bincount(d.train.y, minlength=8)
  assert counts.min() >= 400 and counts.max() <= 600  # 500 expected per class
  again = _clips.make_clips(4000, seed=0)  # a pure function of the seed
  np.testing.assert_array_equal(again["x"], d.train.x)
  np.testing.assert_array_equal(again["y"], d.train.y)
  assert not np.array_equal(_clips.make_clips(50, seed=7)["y"], again["y"][:50])


def test_clip_class_is_the_motion_direction():
  c = _clips.make_clips(300, seed=3, noise=0.0)
  dr = (np.diff(c["rows"], axis=1) + 8) % 16 - 8  # per-frame steps on the torus, in [-8, 8)
  dc = (np.diff(c["cols"], axis=1) + 8) % 16 - 8
  assert (dr == dr[:, :1]).all() and (dc == dc[:, :1]).all()  # straight lines at constant speed
  speed = np.maximum(np.abs(dr[:, 0]), np.abs(dc[:, 0]))
  assert set(speed.tolist()) == {1, 2}
  np.testing.assert_array_equal(dr[:, 0], speed * _clips.DIRECTIONS[c["y"], 0])
  np.testing.assert_array_equal(dc[:, 0], speed * _clips.DIRECTIONS[c["y"], 1])
  # The digit wraps around the torus: every frame holds the whole digit's ink.
  ink = c["x"][..., 0].sum(axis=(2, 3))
  np.testing.assert_allclose(ink, ink[:, :1].repeat(8, 1), rtol=1e-5)
  # No single frame tells the class: the first frame's position is independent of it (uniform start).
  assert abs(np.corrcoef(c["rows"][:, 0], c["y"])[0, 1]) < 0.2


def test_clip_frames_are_labelled_by_cell():
  d = load_dataset("clip_frames")
  assert d.input_shape == (16, 16, 1) and d.num_classes == 16 and len(d.train) == 4000
  f = _clips.make_frames(300, seed=5, noise=0.0)
  np.testing.assert_array_equal(f["y"], (f["rows"] // 4) * 4 + f["cols"] // 4)
  assert set(np.unique(f["y"]).tolist()) == set(range(16))
  # The frame is the digit at (rows, cols) on the torus: rolling it back puts it in the top-left 8 x 8.
  digits = _clips._digits()
  for n in range(5):
    back = np.roll(f["x"][n, ..., 0], (-f["rows"][n], -f["cols"][n]), axis=(0, 1))
    assert back[8:].sum() == 0 and back[:, 8:].sum() == 0
    assert np.any(np.all(np.isclose(digits, back[:8, :8]), axis=(1, 2)))


# --- the model --------------------------------------------------------------------------------------
def test_vivit_forward_shapes_empty_nan_and_bad_inputs():
  m = _vivit(adapter=4)
  x, _ = _clips_batch()
  assert _apply(m, x).shape == (B, K)
  assert _apply(m, x[:0]).shape == (0, K)
  assert np.isnan(np.asarray(_apply(m, x.at[0, 1, 2, 3, 0].set(jnp.nan)))).any()
  with pytest.raises(ValueError, match=r"^x: must be a batch of clips"):
    m(x[:, :3])
  with pytest.raises(ValueError, match=r"^x: must be a batch of clips"):
    m(x[:, 0])
  for kw, name in ((dict(num_frames=0), "num_frames"), (dict(spatial_depth=0), "spatial_depth"),
                   (dict(temporal_depth=1.0), "temporal_depth"), (dict(frame_classes=0), "frame_classes"),
                   (dict(adapter_dim=-1), "adapter_dim"), (dict(num_heads=3), "num_heads")):
    with pytest.raises(ValueError, match=rf"^{name}: "):
      ViViT(1, K, **{**dict(num_frames=T, **ARCH), **kw}, rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match=r"^freeze_spatial: must be a bool"):
    ViViT(1, K, num_frames=T, freeze_spatial=1, **ARCH, rngs=nnx.Rngs(0))


def test_frame_tokens_are_the_spatial_vits_class_tokens():
  m = _vivit()
  x, _ = _clips_batch()
  s = m.frame_tokens(x)
  np.testing.assert_allclose(s, m.spatial.features(x.reshape(B * T, 8, 8, 1)).reshape(B, T, 16), atol=1e-6)


def test_adapter_is_the_identity_at_init_and_compact():
  a = Adapter(16, 4, rngs=nnx.Rngs(0))
  h = jax.random.normal(jax.random.key(1), (3, 5, 16))
  np.testing.assert_array_equal(a(h), h)
  n = sum(v.size for v in jax.tree.leaves(nnx.state(a, nnx.Param)))
  assert n == 2 * 16 * 4 + 3 * 16 + 4  # down kernel + up kernel + (norm scale, bias, up bias) + down bias
  with pytest.raises(ValueError, match=r"^hidden: "):
    Adapter(16, 0, rngs=nnx.Rngs(0))


def test_freezing_changes_no_logit_and_stops_every_spatial_gradient():
  x, y = _clips_batch()
  full, frozen = _vivit(adapter=4), _vivit(adapter=4, freeze=True)
  np.testing.assert_array_equal(_apply(full, x), _apply(frozen, x))  # stop_gradient is the identity forward

  def grads(model):
    g, p, r = nnx.split(model, nnx.Param, ...)
    return jax.jit(jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        nnx.merge(g, p, r)(x), y).mean()))(p)

  gf, gz = nnx.to_pure_dict(grads(full)), nnx.to_pure_dict(grads(frozen))
  assert all(float(jnp.abs(v).max()) == 0.0 for v in jax.tree.leaves(gz["spatial"]))
  assert float(optax.global_norm(gf["spatial"])) > 1e-4
  np.testing.assert_allclose(optax.global_norm(gz["temporal_blocks"]), optax.global_norm(gf["temporal_blocks"]),
                             rtol=1e-5)


# --- the freezing transform -------------------------------------------------------------------------
def test_frozen_parameters_bit_identical_and_no_optimizer_state():
  model = _vivit(adapter=4, freeze=True)
  before = jax.tree.map(np.array, _pure(model))
  tx = freeze_spatial(optax.adamw(1e-2, weight_decay=0.5))  # weight decay would move a merely zero-gradient leaf
  step, params = _train_step(model, tx)
  opt_state = tx.init(params)
  n_spatial = sum(v.size for v in jax.tree.leaves(before["spatial"]))
  n_all = sum(v.size for v in jax.tree.leaves(before))
  # Adam's mu and nu exist for the trainable leaves only (+ one step count each for adam and set_to_zero's none).
  assert sum(np.size(v) for v in jax.tree.leaves(opt_state)) == 2 * (n_all - n_spatial) + 1
  mu = opt_state.inner_states["trainable"].inner_state[0].mu
  assert jax.tree.leaves(nnx.to_pure_dict(mu)["spatial"]) == []
  x, y = _clips_batch()
  for _ in range(3):
    params, opt_state, _ = step(params, opt_state, x, y)
  after = nnx.to_pure_dict(params)
  for a, b in zip(jax.tree.leaves(after["spatial"]), jax.tree.leaves(before["spatial"])):
    np.testing.assert_array_equal(a, b)
  moved = [float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(after["temporal_blocks"]),
                                                        jax.tree.leaves(before["temporal_blocks"]))]
  assert min(moved) > 0.0


def test_labels_and_bad_arguments():
  labels = spatial_labels({"spatial": {"a": 1.0, "b": {"c": 2.0}}, "head": 3.0})
  assert labels == {"spatial": {"a": "frozen", "b": {"c": "frozen"}}, "head": "trainable"}
  assert spatial_labels({"enc": 1.0, "head": 2.0}, prefix="enc") == {"enc": "frozen", "head": "trainable"}
  with pytest.raises(ValueError, match=r"^params: has no parameters under 'spatial'"):
    spatial_labels({"head": 1.0})
  with pytest.raises(ValueError, match=r"^params: every parameter lies under 'spatial'"):
    spatial_labels({"spatial": 1.0})
  with pytest.raises(TypeError, match=r"^prefix: "):
    spatial_labels({"spatial": 1.0, "head": 1.0}, prefix="")
  with pytest.raises(TypeError, match=r"^tx: must be an optax.GradientTransformation"):
    freeze_spatial("adam")
  with pytest.raises(ValueError, match=r"^params: has no parameters under 'spatial'"):
    freeze_spatial(optax.sgd(0.1)).init({"head": jnp.ones(2)})


def test_frozen_step_uses_far_less_memory_than_full_finetuning():
  """XLA's temp bytes of the whole train step (forward, backward, Adam) at B = 6 clips of 4 frames."""
  x, y = _clips_batch()
  spatial = dict(spatial_depth=2, temporal_depth=1)

  def temp(model, tx):
    step, params = _train_step(model, tx)
    compiled = step.lower(params, tx.init(params), x, y).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  full = temp(_vivit(**spatial), optax.adam(1e-3))
  frozen = temp(_vivit(adapter=4, freeze=True, **spatial), freeze_spatial(optax.adam(1e-3)))
  # The optimizer partition alone keeps the spatial backward (its gradients are still computed and
  # reported here); the stop_gradient is what removes it.
  partition_only = temp(_vivit(adapter=4, **spatial), freeze_spatial(optax.adam(1e-3)))
  assert frozen < 0.35 * full, (frozen, full)
  assert partition_only > 0.8 * full, (partition_only, full)


# --- the initialisation -----------------------------------------------------------------------------
def _image_model(depth=2, seed=1):
  return ViT(1, 3, depth=depth, **ARCH, rngs=nnx.Rngs(seed))


@pytest.mark.parametrize("source,first", [("last", 1), ("first", 0)])
def test_init_from_image_model_copies_the_blocks(source, first):
  model, vit = _vivit(adapter=4), _image_model()
  params, image = _pure(model), _pure(vit)
  out = init_from_image_model(params, image, source=source)
  for a, b in zip(jax.tree.leaves(out["spatial"]), jax.tree.leaves(image)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(out["temporal_blocks"][0]), jax.tree.leaves(image["blocks"][first])):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(out["temporal_norm"]), jax.tree.leaves(image["norm"])):
    np.testing.assert_array_equal(a, b)
  for k in ("temporal_cls", "temporal_pos", "head", "adapter"):  # untouched
    for a, b in zip(jax.tree.leaves(out[k]), jax.tree.leaves(params[k])):
      np.testing.assert_array_equal(a, b)
  # Copies with their own buffers (a shared buffer would be donated twice by a jitted step).
  a, b = out["temporal_blocks"][0]["fc1"]["kernel"], out["spatial"]["blocks"][first]["fc1"]["kernel"]
  assert a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer()
  # Into the model: the frozen model's frame tokens are then exactly the image model's features.
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, out)
  nnx.update(model, state)
  x, _ = _clips_batch()
  np.testing.assert_array_equal(model.frame_tokens(x), vit.features(x.reshape(B * T, 8, 8, 1)).reshape(B, T, 16))


def test_init_without_temporal_keeps_the_random_temporal_blocks():
  model, vit = _vivit(), _image_model()
  params = _pure(model)
  out = init_from_image_model(params, _pure(vit), init_temporal=False)
  for a, b in zip(jax.tree.leaves(out["temporal_blocks"]), jax.tree.leaves(params["temporal_blocks"])):
    np.testing.assert_array_equal(a, b)


def test_init_rejects_mismatched_models():
  params = _pure(_vivit(temporal_depth=2, spatial_depth=2))
  with pytest.raises(ValueError, match=r"^params: has 3 temporal blocks, more than the image model's 2"):
    init_from_image_model(_pure(_vivit(temporal_depth=3)), _pure(_image_model()))
  with pytest.raises(ValueError, match=r"^image_params: "):  # a wider image model
    init_from_image_model(params, _pure(ViT(1, 3, depth=2, **{**ARCH, "dim": 8}, rngs=nnx.Rngs(0))))
  with pytest.raises(ValueError, match=r"^image_params: "):  # a deeper image model than the spatial transformer
    init_from_image_model(params, _pure(_image_model(depth=3)))
  with pytest.raises(ValueError, match=r"^params: has no 'spatial' sub-tree"):
    init_from_image_model(_pure(_image_model()), _pure(_image_model()))
  with pytest.raises(ValueError, match=r"^source: "):
    init_from_image_model(params, _pure(_image_model()), source="middle")
  with pytest.raises(TypeError, match=r"^init_temporal: "):
    init_from_image_model(params, _pure(_image_model()), init_temporal="yes")
  with pytest.raises(TypeError, match=r"^image_params: must be a pure dict"):
    init_from_image_model(params, nnx.state(_image_model(), nnx.Param).flat_state())


# --- the two-stage initialisation (from a short-clip ViViT) -----------------------------------------
def test_resize_temporal_positions_identity_ramp_and_class_position():
  pos = jax.random.normal(jax.random.key(0), (1, 1 + T, 16))
  same = resize_temporal_positions(pos, T)
  np.testing.assert_array_equal(same, pos)
  assert same.unsafe_buffer_pointer() != pos.unsafe_buffer_pointer()
  # A ramp linear in the frame index (any slope per feature) stays a ramp with the same end points.
  a, b = jax.random.normal(jax.random.key(1), (2, 16))
  ramp = jnp.concatenate([jnp.full((1, 1, 16), 7.0), (a + b * jnp.linspace(0, 1, 4)[:, None])[None]], axis=1)
  for n in (1, 2, 3, 4, 8, 13):
    out = resize_temporal_positions(ramp, n)
    assert out.shape == (1, 1 + n, 16) and out.dtype == ramp.dtype
    np.testing.assert_array_equal(out[:, 0], ramp[:, 0])  # the class position is kept
    want = a + b * (jnp.linspace(0, 1, n)[:, None] if n > 1 else jnp.zeros((1, 1)))
    np.testing.assert_allclose(out[0, 1:], want, atol=1e-5)
  # Doubling then every other frame: the original frames come back at the aligned points (0, 2, ...).
  up = resize_temporal_positions(pos, 2 * T - 1)
  np.testing.assert_allclose(up[:, 1::2], pos[:, 1:], atol=1e-6)
  # One source frame: every new frame gets its position.
  one = resize_temporal_positions(pos[:, :2], 5)
  np.testing.assert_array_equal(one[0, 1:], jnp.broadcast_to(pos[0, 1], (5, 16)))
  with pytest.raises(ValueError, match=r"^num_frames: "):
    resize_temporal_positions(pos, 0)
  with pytest.raises(ValueError, match=r"^pos: must have shape"):
    resize_temporal_positions(pos[0], 4)
  with pytest.raises(ValueError, match=r"^pos: must have shape"):
    resize_temporal_positions(pos[:, :1], 4)
  with pytest.raises(ValueError, match=r"^pos: must be finite"):
    resize_temporal_positions(pos.at[0, 2, 3].set(jnp.nan), 6)
  with pytest.raises(ValueError, match=r"^pos: must be floating"):
    resize_temporal_positions(jnp.ones((1, 3, 2), jnp.int32), 6)


def test_init_from_short_clip_model_copies_and_resizes():
  short = _vivit(frames=2, seed=3)
  long = _vivit(frames=2 * T, adapter=4, freeze=True)
  params, src = _pure(long), _pure(short)
  out = init_from_short_clip_model(params, src)
  for k in ("spatial", "temporal_cls", "temporal_blocks", "temporal_norm", "head"):
    for a, b in zip(jax.tree.leaves(out[k]), jax.tree.leaves(src[k]), strict=True):
      np.testing.assert_array_equal(a, b)
      assert a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer()
  for a, b in zip(jax.tree.leaves(out["adapter"]), jax.tree.leaves(params["adapter"]), strict=True):
    np.testing.assert_array_equal(a, b)  # the adapter is left as created
  np.testing.assert_array_equal(out["temporal_pos"], resize_temporal_positions(src["temporal_pos"], 2 * T))
  assert out["temporal_pos"].shape == params["temporal_pos"].shape
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(_pure(long))):  # the input is not modified
    np.testing.assert_array_equal(a, b)


def test_init_from_short_clip_model_same_length_gives_the_same_logits():
  """Equal frame counts, identity adapter: the stage-2 (frozen, adapter) model is the stage-1 model."""
  short = _vivit(seed=3)
  long = _vivit(adapter=4, freeze=True)
  state = nnx.state(long, nnx.Param)
  nnx.replace_by_pure_dict(state, init_from_short_clip_model(_pure(long), _pure(short)))
  nnx.update(long, state)
  x, _ = _clips_batch()
  np.testing.assert_array_equal(_apply(long, x), _apply(short, x))
  assert not np.array_equal(_apply(_vivit(adapter=4, freeze=True), x), _apply(short, x))


def test_init_from_short_clip_model_rejects_mismatched_models():
  params = _pure(_vivit(frames=2 * T, adapter=4))
  with pytest.raises(ValueError, match=r"^short_params: its 'temporal_blocks' sub-tree's structure differs"):
    init_from_short_clip_model(params, _pure(_vivit(temporal_depth=2)))
  with pytest.raises(ValueError, match=r"^short_params: its 'spatial' sub-tree's structure"):  # a deeper spatial transformer
    init_from_short_clip_model(params, _pure(_vivit(spatial_depth=3)))
  with pytest.raises(ValueError, match=r"^short_params: temporal_pos must have shape \(1, 1 \+ frames, 16\)"):
    init_from_short_clip_model(params, _pure(ViViT(1, K, num_frames=T, **{**ARCH, "dim": 8}, rngs=nnx.Rngs(0))))
  with pytest.raises(ValueError, match=r"^short_params: 'head'\['bias'\] has shape \(6,\), params \(5,\)"):  # another number of classes
    init_from_short_clip_model(params, _pure(ViViT(1, K + 1, num_frames=T, spatial_depth=2, temporal_depth=1,
                                                    frame_classes=3, **ARCH, rngs=nnx.Rngs(0))))
  with pytest.raises(ValueError, match=r"^short_params: has no 'spatial' sub-tree"):
    init_from_short_clip_model(params, _pure(_image_model()))
  with pytest.raises(ValueError, match=r"^params: has no 'spatial' sub-tree"):
    init_from_short_clip_model(_pure(_image_model()), params)
  with pytest.raises(TypeError, match=r"^short_params: must be a pure dict"):
    init_from_short_clip_model(params, nnx.state(_vivit(), nnx.Param).flat_state())


def test_two_stage_runner_combines_its_stages(tmp_path):
  """The claim runner's two-stage arm end to end on a tiny ViViT: stage 1 runs (and is cached), stage 2
  starts from it, and the reported step time and memory combine the two stages as documented."""
  from configs import vivit_clips  # noqa: PLC0415
  from experiments import claims as claims_lib  # noqa: PLC0415
  from experiments.techniques.memory.vivit import vivit_runner  # noqa: PLC0415

  config = claims_lib.apply_overrides(vivit_clips.get_config(), vivit_clips.TWO_STAGE.overrides)
  config.model_kwargs.update(dim=16, spatial_depth=1, temporal_depth=1, num_heads=2, adapter_dim=4, stage1_steps=8)
  config.num_train_steps = 8
  config.batch_size = 8
  config.eval_batch_size = 250
  config.log_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 8
  config.cache_dir = str(tmp_path / "cache")
  pretrain = {"steps": 2, "batch_size": 8, "learning_rate": 1e-3}
  r = vivit_runner(config, str(tmp_path / "run"), pretrain=pretrain)
  assert 0.0 <= r["stage1_accuracy"] <= 1.0 and r["stage1_steps"] == 8
  assert r["stage1_median_step_s"] > 0 and r["stage2_median_step_s"] > 0
  assert r["final_median_step_s"] == pytest.approx((r["stage1_median_step_s"] + r["stage2_median_step_s"]) / 2)
  assert r["final_temp_bytes"] == max(r["stage1_temp_bytes"], r["stage2_temp_bytes"])
  # Stage 1 trains the whole model on 4 frames: more temp memory than the frozen 8-frame stage 2.
  assert r["stage1_temp_bytes"] > r["stage2_temp_bytes"]
  cached = sorted(p.name for p in (tmp_path / "cache" / "vivit_short").iterdir())
  assert len(cached) == 2 and {p.rsplit(".", 1)[1] for p in cached} == {"npz", "json"}
