"""Input-policy declarations for `jaxdyn.models` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import functools
import math

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

MOD = "jaxdyn.models"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)


case(f"{MOD}.MLP", "dropout_rate", bad_rate)(lambda v: fn(f"{MOD}.MLP")(4, C, dropout_rate=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.MLP", "in_features", bad_count)(lambda v: fn(f"{MOD}.MLP")(v, C, rngs=nnx.Rngs(0)))
case(f"{MOD}.CNN", "spatial_dims", st.integers().filter(lambda d: d not in (1, 2)))(
    lambda v: fn(f"{MOD}.CNN")(1, C, spatial_dims=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.CNN", "num_classes", bad_count)(lambda v: fn(f"{MOD}.CNN")(1, v, rngs=nnx.Rngs(0)))
case(f"{MOD}.ViT", "patch_size", st.integers(2, 7).filter(lambda p: 8 % p))(
    lambda v: fn(f"{MOD}.ViT")(3, C, image_size=8, patch_size=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.ViT", "num_experts", st.one_of(st.integers(-3, 1), non_integral))(
    lambda v: fn(f"{MOD}.ViT")(3, C, image_size=8, depth=2, num_experts=v, moe_layers=(1,), rngs=nnx.Rngs(0)))
case(f"{MOD}.ViT", "moe_layers", st.sampled_from([(2,), (-1,), (0, 0), (0.5,), 1, "0"]))(
    lambda v: fn(f"{MOD}.ViT")(3, C, image_size=8, depth=2, num_experts=2, moe_layers=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.ViT", "moe_inference", st.text(max_size=8).filter(lambda s: s not in ("mean", "partition")))(
    lambda v: fn(f"{MOD}.ViT")(3, C, image_size=8, depth=2, num_experts=2, moe_layers=(1,), moe_inference=v,
                               rngs=nnx.Rngs(0)))
case(f"{MOD}.ResNet", "block", st.text(max_size=8).filter(lambda s: s not in ("basic", "bottleneck")))(
    lambda v: fn(f"{MOD}.ResNet")(3, C, block=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.ResNet", "inner_widths", st.sampled_from(["ab", (2,), (2, 2, 2), (0, 2), (2, -1), (2.5, 2)]))(
    lambda v: fn(f"{MOD}.ResNet")(3, C, stage_sizes=(1, 1), width=2, inner_widths=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.ResNet", "inner_widths", st.sampled_from([(2, 2), (1, 3), (4, 4)]))(  # bottleneck blocks have no single inner width
    lambda v: fn(f"{MOD}.ResNet")(3, C, stage_sizes=(1, 1), width=2, block="bottleneck", inner_widths=v,
                                 rngs=nnx.Rngs(0)))
for name in ("ResNet18", "ResNet50"):
  case(f"{MOD}.{name}", "width", bad_count)(lambda v, n=name: fn(f"{MOD}.{n}")(3, C, width=v, rngs=nnx.Rngs(0)))

wrong_trailing = st.integers(1, 9).filter(lambda n: n != 3)
case(f"{MOD}.MLP", "x", wrong_feature)(lambda n: fn(f"{MOD}.MLP")(4, C, hidden=(8,), rngs=nnx.Rngs(0))(
    np.ones((B, n), np.float32)))
case(f"{MOD}.CNN", "x", wrong_trailing)(lambda n: fn(f"{MOD}.CNN")(3, C, channels=(4,), hidden=8, rngs=nnx.Rngs(0))(
    np.ones((B, 8, 8, n), np.float32)))
case(f"{MOD}.ResNet", "x", wrong_trailing)(lambda n: fn(f"{MOD}.ResNet")(
    3, C, stage_sizes=(1,), width=4, rngs=nnx.Rngs(0))(np.ones((B, 8, 8, n), np.float32)))
case(f"{MOD}.ViT", "x", st.integers(2, 12).filter(lambda n: n != 8))(lambda n: fn(f"{MOD}.ViT")(
    3, C, image_size=8, dim=8, depth=1, num_heads=2, rngs=nnx.Rngs(0))(np.ones((B, n, n, 3), np.float32)))


case(f"{MOD}.conv2d", "strides", bad_count)(
    lambda v: fn(f"{MOD}.conv2d")(np.ones((1, 4, 4, 2), np.float32), np.ones((3, 3, 2, 2), np.float32), strides=v))
case(f"{MOD}.conv2d", "kernel", wrong_feature)(
    lambda n: fn(f"{MOD}.conv2d")(np.ones((1, 4, 4, 4), np.float32), np.ones((3, 3, n, 2), np.float32)))
case(f"{MOD}.conv2d", "lowering", bad_name)(
    lambda v: fn(f"{MOD}.conv2d")(np.ones((1, 4, 4, 2), np.float32), np.ones((3, 3, 2, 2), np.float32), lowering=v))
case(f"{MOD}.Conv2d", "out_features", bad_count)(lambda v: fn(f"{MOD}.Conv2d")(2, v, (3, 3), rngs=nnx.Rngs(0)))
case(f"{MOD}.Conv2d", "strides", bad_count)(
    lambda v: fn(f"{MOD}.Conv2d")(2, 2, (3, 3), strides=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.Conv2d", "kernel_size", st.one_of(st.tuples(nonpositive_int, st.just(3)), st.just((3,)),
                                               st.just((3, 3, 3)), st.integers(1, 3), st.just((3, 2.5))))(
    lambda v: fn(f"{MOD}.Conv2d")(2, 2, v, rngs=nnx.Rngs(0)))
case(f"{MOD}.Conv2d", "in_features", bad_count)(lambda v: fn(f"{MOD}.Conv2d")(v, 2, (3, 3), rngs=nnx.Rngs(0)))
case(f"{MOD}.Conv2d", "dilation", bad_count)(
    lambda v: fn(f"{MOD}.Conv2d")(2, 2, (3, 3), dilation=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.conv_lowering", "backend", st.one_of(st.integers(), st.none().map(lambda _: 1.5)))(
    lambda v: fn(f"{MOD}.conv_lowering")((1, 4, 4, 2), (3, 3, 2, 2), backend=v))


# --- clause specs: construct at a small size, then one forward pass ---------------------------------
IMAGES = np.asarray(jax.random.uniform(jax.random.key(2), (B, 8, 8, 3)))


def _forward(name, *args, **fixed):
  def call(x, **kw):
    return fn(f"{MOD}.{name}")(*args, **fixed, **kw, rngs=nnx.Rngs(0))(x)
  return call


_EMPTY = lambda out: np.shape(out) == (0, C)  # noqa: E731  an empty batch gives empty logits
_SIZES = "a structural size, checked by a Case; the NumPy-scalar clause covers dropout_rate"
SPECS += [
    Spec(f"{MOD}.MLP", dict(x=H, in_features=4, num_classes=C, dropout_rate=0.1),
         call=lambda x, **kw: fn(f"{MOD}.MLP")(**kw, hidden=(8,), rngs=nnx.Rngs(0))(x),
         floats=("x",), batch=("x",), empty=_EMPTY, numbers=("in_features", "num_classes", "dropout_rate"),
         not_applicable={"hidden": _SIZES}),
    Spec(f"{MOD}.CNN", dict(x=IMAGES, dropout_rate=0.1, hidden=8, spatial_dims=2),
         call=_forward("CNN", 3, C, channels=(4,)), floats=("x",), batch=("x",), empty=_EMPTY,
         numbers=("dropout_rate", "hidden", "spatial_dims"),
         not_applicable={"in_channels": _SIZES, "channels": _SIZES}),
    Spec(f"{MOD}.ResNet", dict(x=IMAGES, width=4, dropout_rate=0.1),
         call=_forward("ResNet", 3, C, stage_sizes=(1,)), floats=("x",), batch=("x",), empty=_EMPTY,
         numbers=("width", "dropout_rate"),
         not_applicable={"in_channels": _SIZES, "num_classes": _SIZES, "stage_sizes": _SIZES,
                         "inner_widths": _SIZES}),
    Spec(f"{MOD}.ViT", dict(x=IMAGES, dim=8, dropout_rate=0.1),
         call=_forward("ViT", 3, C, image_size=8, depth=1, num_heads=2), floats=("x",), batch=("x",),
         empty=_EMPTY, numbers=("dim", "dropout_rate"),
         not_applicable={n: _SIZES for n in ("in_channels", "num_classes", "image_size", "patch_size", "depth",
                                             "num_heads", "mlp_ratio", "moe_layers")}),
    Spec(f"{MOD}.ViT", dict(x=IMAGES, num_experts=2),  # its MoE feed-forward form, in inference
         call=_forward("ViT", 3, C, image_size=8, dim=8, depth=2, num_heads=2, moe_layers=(1,)), floats=("x",),
         batch=("x",), empty=_EMPTY, numbers=("num_experts",),
         not_applicable={"moe_inference": "a name, checked by a Case"}),
]
SPECS += [
    Spec(f"{MOD}.conv2d", dict(x=np.ones((2, 5, 5, 2), np.float32), kernel=np.full((3, 3, 2, 4), 0.1, np.float32),
                               strides=2, dilation=1),
         floats=("x", "kernel"), jit=True, batch=("x",), empty=lambda out: np.shape(out) == (0, 3, 3, 4),
         numbers=("strides", "dilation"),
         not_applicable={"padding": "a string or explicit pairs, checked by the conv tests",
                         "lowering": "a name, checked by a Case"}),
    Spec(f"{MOD}.Conv2d", dict(in_features=2, out_features=4, kernel_size=(3, 3), strides=2, dilation=1),
         call=lambda **kw: fn(f"{MOD}.Conv2d")(**kw, rngs=nnx.Rngs(0)),
         numbers=("in_features", "out_features", "strides", "dilation"),
         not_applicable={"kernel_init": "an initialiser; its result is the user's choice",
                         "padding": "a string or explicit pairs, checked by the conv tests",
                         "use_bias": "a flag", "lowering": "a name, checked by a Case"}),
    Spec(f"{MOD}.conv_lowering", dict(x_shape=(2, 5, 5, 2), kernel_shape=(3, 3, 2, 4), strides=2, dilation=1),
         numbers=("strides", "dilation"),
         not_applicable={"x_shape": "a shape tuple, read as given", "kernel_shape": "a shape tuple, read as given",
                         "padding": "a string or explicit pairs, checked by the conv tests",
                         "backend": "a platform name, checked by a Case"}),
]
case(f"{MOD}.ViViT", "x", st.integers(1, 6).filter(lambda n: n != 2))(lambda n: fn(f"{MOD}.ViViT")(  # frames
    1, C, num_frames=2, image_size=8, dim=8, spatial_depth=1, temporal_depth=1, num_heads=2, rngs=nnx.Rngs(0))(
        np.ones((B, n, 8, 8, 1), np.float32)))
case(f"{MOD}.ViViT", "frame_classes", bad_count)(lambda v: fn(f"{MOD}.ViViT")(1, C, frame_classes=v, rngs=nnx.Rngs(0)))
case(f"{MOD}.ViViT", "temporal_pos_std", st.one_of(st.floats(max_value=-1e-6), st.just(math.nan)))(
    lambda v: fn(f"{MOD}.ViViT")(1, C, temporal_pos_std=v, rngs=nnx.Rngs(0)))
CLIPS = np.asarray(jax.random.uniform(jax.random.key(4), (B, 2, 8, 8, 1)))
SPECS.append(Spec(f"{MOD}.ViViT", dict(x=CLIPS, dim=8, adapter_dim=4, temporal_pos_std=1.0, dropout_rate=0.1),
                  call=_forward("ViViT", 1, C, num_frames=2, image_size=8, spatial_depth=1, temporal_depth=1,
                                num_heads=2),
                  floats=("x",), batch=("x",), empty=_EMPTY,
                  numbers=("dim", "adapter_dim", "temporal_pos_std", "dropout_rate"),
                  not_applicable={n: _SIZES for n in ("in_channels", "num_classes", "num_frames", "image_size",
                                                      "patch_size", "spatial_depth", "temporal_depth",
                                                      "num_heads", "mlp_ratio", "frame_classes")}))
for _name in ("ResNet18", "ResNet50"):
  SPECS.append(Spec(f"{MOD}.{_name}", dict(x=IMAGES, width=2),
                    call=_forward(_name, 3, C, stage_sizes=(1,)), floats=("x",), batch=("x",), empty=_EMPTY,
                    numbers=("width",), not_applicable={"in_channels": _SIZES, "num_classes": _SIZES}))

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{MOD}.Classifier": "an abstract base class",
    f"{MOD}.Model": "a typing Protocol",
    f"{MOD}.HeadSplit": "a typing Protocol",
    f"{MOD}.is_training": "a mode lookup: `train` when given, else the module's NNX mode attribute",
}


# --- the decoder-only transformer (jaxdyn.models._transformer) ---------------------------------------
TOKENS = np.arange(B * 6, dtype=np.int32).reshape(B, 6) % C  # vocab_size = C below


@functools.cache
def _lm():
  return fn(f"{MOD}.Transformer")(C, dim=8, depth=1, num_heads=2, rngs=nnx.Rngs(0))


def _lm_forward(tokens, **kw):
  return fn(f"{MOD}.Transformer")(**kw, depth=1, num_heads=2, rngs=nnx.Rngs(0))(tokens)


def _build_lm(**kw):
  return fn(f"{MOD}.Transformer")(**{"vocab_size": C, "dim": 8, "depth": 2, "num_heads": 2, **kw}, rngs=nnx.Rngs(0))


_causal = lambda: fn(f"{MOD}.causal_attention")  # noqa: E731
case(f"{MOD}.Transformer", "vocab_size", bad_count)(lambda v: _build_lm(vocab_size=v))
case(f"{MOD}.Transformer", "dim", bad_count)(lambda v: _build_lm(dim=v))
case(f"{MOD}.Transformer", "depth", bad_count)(lambda v: _build_lm(depth=v))
case(f"{MOD}.Transformer", "mlp_ratio", bad_count)(lambda v: _build_lm(mlp_ratio=v))
case(f"{MOD}.Transformer", "num_heads", st.integers(1, 9).filter(lambda h: 8 % h or (8 // h) % 2))(
    lambda v: _build_lm(num_heads=v))
case(f"{MOD}.Transformer", "dropout_rate", bad_rate)(lambda v: _build_lm(dropout_rate=v))
case(f"{MOD}.Transformer", "rope_base", st.one_of(st.floats(max_value=1.0), st.just(math.nan)))(
    lambda v: _build_lm(rope_base=v))
case(f"{MOD}.Transformer", "norm", st.text(max_size=10).filter(lambda s: s not in ("rmsnorm", "layernorm")))(
    lambda v: _build_lm(norm=v))
case(f"{MOD}.Transformer", "mlp", st.text(max_size=8).filter(lambda s: s not in ("swiglu", "gelu")))(
    lambda v: _build_lm(mlp=v))
case(f"{MOD}.Transformer", "attention_fns", st.one_of(
    st.integers(0, 5).filter(lambda n: n != 2).map(lambda n: [_causal()] * n),
    st.sampled_from([3, "dense", [_causal, "dense"], [1, 2]])))(lambda v: _build_lm(attention_fns=v))
case(f"{MOD}.Transformer", "tokens", st.integers(0, 4).filter(lambda n: n != 2))(
    lambda n: _lm()(np.zeros((1,) * n, np.int32)))
case(f"{MOD}.Transformer", "tokens", st.sampled_from([np.float32, np.float64, np.bool_, np.complex64]))(
    lambda dt: _lm()(TOKENS.astype(dt)))
case(f"{MOD}.Transformer", "segment_ids", st.sampled_from([(B,), (B, 5), (B, 6, 1), (1, 6)]))(
    lambda shape: _lm()(TOKENS, segment_ids=np.zeros(shape, np.int32)))

case(f"{MOD}.generate", "model", st.sampled_from([None, 1, "lm", object()]))(
    lambda v: fn(f"{MOD}.generate")(v, TOKENS[:, :3], max_new_tokens=2, key=KEY))
case(f"{MOD}.generate", "max_new_tokens", bad_count)(
    lambda v: fn(f"{MOD}.generate")(_lm(), TOKENS[:, :3], max_new_tokens=v, key=KEY))
case(f"{MOD}.generate", "temperature", nonpositive)(
    lambda v: fn(f"{MOD}.generate")(_lm(), TOKENS[:, :3], max_new_tokens=2, key=KEY, temperature=v))
case(f"{MOD}.generate", "cache_len", bad_count)(
    lambda v: fn(f"{MOD}.generate")(_lm(), TOKENS[:, :3], max_new_tokens=2, key=KEY, cache_len=v))
case(f"{MOD}.generate", "sink_tokens", st.integers(max_value=-1))(
    lambda v: fn(f"{MOD}.generate")(_lm(), TOKENS[:, :3], max_new_tokens=2, key=KEY, sink_tokens=v))
case(f"{MOD}.generate", "prompt_tokens", st.sampled_from([(B,), (B, 0), (B, 3, 1), ()]))(
    lambda shape: fn(f"{MOD}.generate")(_lm(), np.zeros(shape, np.int32), max_new_tokens=2, key=KEY))

case(f"{MOD}.token_log_probs", "tokens", wrong_batch)(
    lambda n: fn(f"{MOD}.token_log_probs")(LOGITS, np.arange(n, dtype=np.int32) % C))
case(f"{MOD}.token_log_probs", "tokens", st.sampled_from([np.float32, np.float64, np.bool_]))(
    lambda dt: fn(f"{MOD}.token_log_probs")(LOGITS, LABELS.astype(dt)))

# Queries and keys alternate in sign along the sequence, and every query may read every key
# (q_positions >= every key position), so an infinity anywhere in q or k makes some score +inf.
_SIGNS = np.array([1, -1, 1, -1], np.float32)[None, :, None, None]
_QKV = np.abs(np.asarray(jax.random.normal(jax.random.key(3), (3, B, 4, 2, 4)))) + 0.1
Q, K, VALUES = _QKV[0] * _SIGNS, _QKV[1] * _SIGNS, _QKV[2]
Q_POS, K_POS = np.full(4, 3, np.int32), np.arange(4, dtype=np.int32)
for _arg in ("q", "k", "v"):
  case(f"{MOD}.causal_attention", _arg, st.integers(1, 6).filter(lambda n: n != 4))(
      lambda n, a=_arg: _causal()(**{"q": Q, "k": K, "v": VALUES, a: np.ones((B, 4, 2, 4, 1, 1)[:n], np.float32)},
                                  q_positions=Q_POS, k_positions=K_POS))
for _arg, _len in (("q_positions", 4), ("k_positions", 4)):
  case(f"{MOD}.causal_attention", _arg, st.integers(0, 9).filter(lambda n, m=_len: n != m))(
      lambda n, a=_arg: _causal()(Q, K, VALUES, **{"q_positions": Q_POS, "k_positions": K_POS,
                                                   a: np.arange(n, dtype=np.int32)}))

_LM_SIZES = "a structural size or a name, checked by a Case"
SPECS += [
    Spec(f"{MOD}.Transformer", dict(tokens=TOKENS, vocab_size=C, dim=8, mlp_ratio=2, dropout_rate=0.1,
                                    rope_base=100.0),
         call=_lm_forward, labels=("tokens",), batch=("tokens",), empty=lambda out: np.shape(out) == (0, 6, C),
         numbers=("vocab_size", "dim", "mlp_ratio", "dropout_rate", "rope_base"),
         not_applicable={"depth": _LM_SIZES, "num_heads": _LM_SIZES, "norm": _LM_SIZES, "mlp": _LM_SIZES,
                         "attention_fns": "callables, checked by a Case"}),
    Spec(f"{MOD}.generate", dict(prompt_tokens=TOKENS[:, :3], max_new_tokens=2, key=KEY, temperature=0.7),
         call=lambda **kw: fn(f"{MOD}.generate")(_lm(), **kw), labels=("prompt_tokens",),
         batch=("prompt_tokens",), empty=lambda out: np.shape(out) == (0, 5),
         numbers=("max_new_tokens", "temperature"), keys=("key",),
         not_applicable={"model": "a Transformer, checked by a Case",
                         "cache_len": "per-layer slot counts, checked by a Case",
                         "sink_tokens": "per-layer counts, checked by a Case"}),
    Spec(f"{MOD}.token_log_probs", dict(logits=LOGITS, tokens=LABELS), floats=("logits",), labels=("tokens",),
         jit=True, batch=("logits", "tokens"), empty=lambda out: np.shape(out) == (0,)),
    Spec(f"{MOD}.causal_attention", dict(q=Q, k=K, v=VALUES, q_positions=Q_POS, k_positions=K_POS),
         floats=("q", "k", "v"), jit=True, batch=("q", "k", "v"), empty=lambda out: np.shape(out) == (0, 4, 2, 4),
         not_applicable={"q_positions": "integer positions, any value valid (negative: an empty slot); shape "
                                        "checked by a Case",
                         "k_positions": "integer positions, any value valid (negative: an empty slot); shape "
                                        "checked by a Case"}),
]
EXEMPT.update({
    f"{MOD}.KVCache": "a PyTree container built by Transformer.init_cache (checked there and in decode)",
    f"{MOD}.LayerKVCache": "a PyTree container built by Transformer.init_cache (checked there and in decode)",
})

# --- small image-text models (jaxdyn.models._clip) ------------------------------------------------------
IMGS = np.linspace(0.0, 1.0, B * 8 * 8, dtype=np.float32).reshape(B, 8, 8, 1)
CAPS = np.array([[1, 3, 4, 2, 0, 0]] * B, np.int32)  # <bos> w w <eos> <pad> <pad>, vocab_size C


def _clip(**kw):
  return fn(f"{MOD}.CLIP")(**{"image_shape": (8, 8, 1), "vocab_size": C, "embed_dim": 4, "image_width": 2,
                              "text_width": 8, "text_depth": 1, **kw}, rngs=nnx.Rngs(0))


def _captioner(**kw):
  return fn(f"{MOD}.Captioner")(**{"image_shape": (8, 8, 1), "vocab_size": C, "dim": 8, "depth": 1,
                                   "image_width": 2, **kw}, rngs=nnx.Rngs(0))


def _image_encoder(**kw):
  return fn(f"{MOD}.ImageEncoder")(**{"image_shape": (8, 8, 1), "dim": 4, "width": 2, **kw}, rngs=nnx.Rngs(0))


def _text_encoder(**kw):
  return fn(f"{MOD}.TextEncoder")(**{"vocab_size": C, "dim": 4, "width": 8, "depth": 1, **kw}, rngs=nnx.Rngs(0))


_bad_shape = st.sampled_from([(8, 8), (8, 8, 0), "8x8", (2, 2, 1), 3])
case(f"{MOD}.ImageEncoder", "image_shape", _bad_shape)(lambda v: _image_encoder(image_shape=v))
case(f"{MOD}.ImageEncoder", "dim", bad_count)(lambda v: _image_encoder(dim=v))
case(f"{MOD}.ImageEncoder", "width", bad_count)(lambda v: _image_encoder(width=v))
case(f"{MOD}.ImageEncoder", "kind", st.text(max_size=5).filter(lambda s: s not in ("cnn", "mlp")))(
    lambda v: _image_encoder(kind=v))
case(f"{MOD}.ImageEncoder", "images", st.sampled_from([(B, 8, 8), (B, 8, 9, 1), (B, 8, 8, 2)]))(
    lambda shape: _image_encoder()(np.zeros(shape, np.float32)))
case(f"{MOD}.TextEncoder", "dim", bad_count)(lambda v: _text_encoder(dim=v))
case(f"{MOD}.TextEncoder", "eos_id", st.one_of(st.integers(max_value=-1), st.integers(min_value=C), non_integral))(
    lambda v: _text_encoder(eos_id=v))
case(f"{MOD}.TextEncoder", "tokens", st.sampled_from([np.float32, np.float64, np.bool_, np.complex64]))(
    lambda dt: _text_encoder()(CAPS.astype(dt)))
case(f"{MOD}.CLIP", "temperature", nonpositive)(lambda v: _clip(temperature=v))
case(f"{MOD}.CLIP", "image_shape", _bad_shape)(lambda v: _clip(image_shape=v))
case(f"{MOD}.CLIP", "embed_dim", bad_count)(lambda v: _clip(embed_dim=v))
case(f"{MOD}.Captioner", "prefix_len", bad_count)(lambda v: _captioner(prefix_len=v))
case(f"{MOD}.Captioner", "image_shape", _bad_shape)(lambda v: _captioner(image_shape=v))
case(f"{MOD}.Transformer", "prefix", st.sampled_from([(B, 2), (B, 2, 7), (B + 1, 2, 8)]))(
    lambda shape: _lm()(TOKENS, prefix=np.zeros(shape, np.float32)))

_SIZE = "a structural size, checked by a Case or by the Transformer"
SPECS += [
    Spec(f"{MOD}.ImageEncoder", dict(images=IMGS, dim=4, width=2), call=lambda images, **kw: _image_encoder(**kw)(images),
         floats=("images",), batch=("images",), empty=lambda out: np.shape(out) == (0, 4), numbers=("dim", "width"),
         not_applicable={"image_shape": "a shape, checked by a Case", "kind": "a name, checked by a Case"}),
    Spec(f"{MOD}.TextEncoder", dict(tokens=CAPS, vocab_size=C, dim=4, width=8, eos_id=2),
         call=lambda tokens, **kw: _text_encoder(**kw)(tokens), labels=("tokens",), batch=("tokens",),
         empty=lambda out: np.shape(out) == (0, 4), numbers=("vocab_size", "dim", "width", "eos_id"),
         not_applicable={"depth": _SIZE, "num_heads": _SIZE}),
    Spec(f"{MOD}.CLIP", dict(images=IMGS, tokens=CAPS, embed_dim=4, image_width=2, text_width=8, eos_id=2,
                             temperature=0.07),
         call=lambda images, tokens, **kw: _clip(**kw)(images, tokens)[:2], floats=("images",), labels=("tokens",),
         batch=("images", "tokens"), empty=lambda out: np.shape(out[0]) == (0, 4),
         numbers=("embed_dim", "image_width", "text_width", "eos_id", "temperature"),
         not_applicable={"image_shape": "a shape, checked by a Case", "vocab_size": _SIZE, "image_kind": "a name",
                         "text_depth": _SIZE, "num_heads": _SIZE}),
    Spec(f"{MOD}.Captioner", dict(images=IMGS, tokens=CAPS, dim=8, prefix_len=2, image_width=2),
         call=lambda images, tokens, **kw: _captioner(**kw)(images, tokens), floats=("images",), labels=("tokens",),
         batch=("images", "tokens"), empty=lambda out: np.shape(out) == (0, 6, C),
         numbers=("dim", "prefix_len", "image_width"),
         not_applicable={"image_shape": "a shape, checked by a Case", "vocab_size": _SIZE, "image_kind": "a name",
                         "depth": _SIZE, "num_heads": _SIZE}),
]
