"""Input-policy declarations for CLIP and LaCLIP in `jaxdyn.multimodal` (merged by ``multimodal.py``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import B, C, Case, Spec, bad_count, collector, fn, non_integral

MM = "jaxdyn.multimodal"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

_R = np.random.default_rng(0)
U = _R.normal(size=(B, 4)).astype(np.float32)
T = _R.normal(size=(B, 4)).astype(np.float32)
W = _R.normal(size=(C, 4)).astype(np.float32)
E = _R.normal(size=(C, 3, 4)).astype(np.float32)
IDS = (np.arange(B, dtype=np.int32) + 1) % B
LAB = np.arange(B, dtype=np.int32) % C
COUNTS = np.array([1, 2, 3, 4, 2, 1, 3, 2], np.int32)


def _scaled(x):
  return st.sampled_from([x * 1e30, x * 1e-30, x.astype(np.float16), x / np.abs(x).max() * np.float32(3e38)])


_DATA = {}


def _data():
  if "d" not in _DATA:
    from jaxdyn.data import CaptionVocab, PairedData  # pylint: disable=g-import-not-at-top
    caps = ("a digit zero", "the number 1", "two", "3")
    rew = ((), ("one", "a 1"), ("the figure two",), ("three", "3 digit", "a 3"))
    _DATA["d"] = PairedData(images=np.arange(4, dtype=np.float32)[:, None, None, None] * np.ones((1, 4, 4, 1),
                                                                                               np.float32),
                            labels=np.arange(4, dtype=np.int32), captions=caps, rewrites=rew, attributes={},
                            vocab=CaptionVocab.build(), num_classes=10)
  return _DATA["d"]


bad_emb = st.sampled_from([np.ones(4, np.float32), np.ones((2, 3, 4), np.float32), "u", None,
                           np.ones((B, 4), np.complex64)])
bad_data = st.sampled_from([None, "data", ("a", "b"), np.ones((4, 4))])

# --- CLIP --------------------------------------------------------------------------------------------
case(f"{MM}.clip_logit_scale", "log_scale", st.sampled_from([np.ones(2), "1", None, np.ones((1, 1)), True]))(
    lambda v: fn(f"{MM}.clip_logit_scale")(v))
case(f"{MM}.clip_loss", "image_emb", bad_emb)(lambda v: fn(f"{MM}.clip_loss")(v, T, 1.0))
case(f"{MM}.clip_loss", "text_emb", st.one_of(bad_emb, st.sampled_from([T[:3], T[:, :2]])))(
    lambda v: fn(f"{MM}.clip_loss")(U, v, 1.0))
case(f"{MM}.clip_loss", "log_scale", st.sampled_from([np.ones(2), "1", None, np.inf, np.nan]))(
    lambda v: fn(f"{MM}.clip_loss")(U, T, v))
case(f"{MM}.clip_loss", "axis_name", st.sampled_from([3, 1.5, b"data", ["data"]]))(
    lambda v: fn(f"{MM}.clip_loss")(U, T, 1.0, axis_name=v))
case(f"{MM}.clip_recall_at_k", "k", bad_count)(lambda v: fn(f"{MM}.clip_recall_at_k")(U, T, v))
case(f"{MM}.clip_recall_at_k", "text_emb", st.one_of(bad_emb, st.sampled_from([T[:3], T[:, :2]])))(
    lambda v: fn(f"{MM}.clip_recall_at_k")(U, v, 1))
case(f"{MM}.clip_recall_at_k", "image_emb", bad_emb)(lambda v: fn(f"{MM}.clip_recall_at_k")(v, T, 1))
case(f"{MM}.clip_recall_at_k", "text_image_ids", st.sampled_from([IDS[:3], IDS.astype(np.float32), IDS[None]]))(
    lambda v: fn(f"{MM}.clip_recall_at_k")(U, T, 1, text_image_ids=v))
case(f"{MM}.clip_zero_shot_scores", "image_emb", bad_emb)(lambda v: fn(f"{MM}.clip_zero_shot_scores")(v, W))
case(f"{MM}.clip_zero_shot_scores", "class_weights", st.one_of(bad_emb, st.just(W[:, :2])))(
    lambda v: fn(f"{MM}.clip_zero_shot_scores")(U, v))
case(f"{MM}.clip_zero_shot_accuracy", "labels", st.sampled_from([LAB[:3], LAB.astype(np.float32), LAB[None]]))(
    lambda v: fn(f"{MM}.clip_zero_shot_accuracy")(U, W, v))
case(f"{MM}.clip_zero_shot_accuracy", "class_weights", st.one_of(bad_emb, st.just(W[:, :2])))(
    lambda v: fn(f"{MM}.clip_zero_shot_accuracy")(U, v, LAB))
case(f"{MM}.clip_zero_shot_accuracy", "image_emb", bad_emb)(lambda v: fn(f"{MM}.clip_zero_shot_accuracy")(v, W, LAB))
case(f"{MM}.clip_zero_shot_weights", "class_text_emb",
     st.sampled_from([E[0], E[None], "e", None, E[:, :0], E.astype(np.complex64)]))(
    lambda v: fn(f"{MM}.clip_zero_shot_weights")(v))
case(f"{MM}.clip_zero_shot_prompts", "templates",
     st.sampled_from([[], "a {}", ["no slot"], ["{} and {}"], [3], None]))(
    lambda v: fn(f"{MM}.clip_zero_shot_prompts")(v, ["one", "two"]))
case(f"{MM}.clip_zero_shot_prompts", "class_names",
     st.sampled_from([[], "one", [("a", "b"), ("c",)], [""], [3], None, [()]]))(
    lambda v: fn(f"{MM}.clip_zero_shot_prompts")(["a {}"], v))

# --- LaCLIP ------------------------------------------------------------------------------------------
case(f"{MM}.laclip_variants", "data", bad_data)(lambda v: fn(f"{MM}.laclip_variants")(v))
case(f"{MM}.laclip_variants", "max_len", st.one_of(st.integers(-3, 4), non_integral, st.booleans()))(
    lambda v: fn(f"{MM}.laclip_variants")(_data(), max_len=v))
case(f"{MM}.laclip_choose", "counts", st.sampled_from([np.array([1, 0]), np.array([-1]), np.array([1.5, 2.0]),
                                                       np.ones((2, 2), np.int32), "12"]))(
    lambda v: fn(f"{MM}.laclip_choose")(v, np.random.default_rng(0)))
case(f"{MM}.LaclipTextSampler", "variants", st.sampled_from([None, (np.ones((2, 2, 3)), np.ones(2)), "v", 3]))(
    lambda v: fn(f"{MM}.LaclipTextSampler")(v))
for _key in ("index_key", "text_key"):
  case(f"{MM}.LaclipTextSampler", _key, st.sampled_from(["", None, 3, b"index"]))(
      lambda v, _k=_key: fn(f"{MM}.LaclipTextSampler")(fn(f"{MM}.laclip_variants")(_data()), **{_k: v}))
case(f"{MM}.laclip_pipeline", "data", bad_data)(lambda v: fn(f"{MM}.laclip_pipeline")(v, batch_size=2, seed=0))
case(f"{MM}.laclip_pipeline", "batch_size", st.one_of(bad_count, st.integers(5, 10**6)))(
    lambda v: fn(f"{MM}.laclip_pipeline")(_data(), batch_size=v, seed=0))
case(f"{MM}.laclip_pipeline", "seed", st.one_of(non_integral, st.booleans(), st.just("0")))(
    lambda v: fn(f"{MM}.laclip_pipeline")(_data(), batch_size=2, seed=v))
case(f"{MM}.laclip_pipeline", "max_len", st.one_of(st.integers(-3, 4), non_integral))(
    lambda v: fn(f"{MM}.laclip_pipeline")(_data(), batch_size=2, seed=0, max_len=v))
case(f"{MM}.laclip_pipeline", "process_index", st.one_of(st.integers(max_value=-1), st.integers(min_value=2)))(
    lambda v: fn(f"{MM}.laclip_pipeline")(_data(), batch_size=2, seed=0, process_index=v, process_count=2))
case(f"{MM}.laclip_pipeline", "process_count", st.one_of(st.integers(max_value=0), non_integral))(
    lambda v: fn(f"{MM}.laclip_pipeline")(_data(), batch_size=2, seed=0, process_count=v))


def _sampler_out(**kw):
  s = fn(f"{MM}.LaclipTextSampler")(fn(f"{MM}.laclip_variants")(_data()), **kw)
  out = s.random_map({"index": np.array([0, 3, 1])}, np.random.default_rng(0))
  return [out["text"].astype(np.float64), out["variant"].astype(np.float64)]


def _pipeline_out(**kw):
  b = fn(f"{MM}.laclip_pipeline")(_data(), **kw)[0]
  return [b["text"].astype(np.float64), b["image"].astype(np.float64)]


_STR = "strings, checked by a Case"
SPECS += [
    Spec(f"{MM}.clip_logit_scale", dict(log_scale=1.0), floats=("log_scale",), jit=True, numbers=("log_scale",),
         ranges={"log_scale": st.sampled_from([1e30, -1e30, np.float16(3.0)])},
         not_applicable={"batch": "a scalar"}),
    Spec(f"{MM}.clip_loss", dict(image_emb=U, text_emb=T, log_scale=2.0), floats=("image_emb", "text_emb", "log_scale"),
         jit=True, batch=("image_emb", "text_emb"), numbers=("log_scale",),
         ranges={"image_emb": _scaled(U), "text_emb": _scaled(T), "log_scale": st.sampled_from([1e30, -1e30])},
         not_applicable={"axis_name": "a mesh axis name, its kind checked by a Case (tests/multimodal/test_clip.py "
                                      "runs it sharded)"}),
    Spec(f"{MM}.clip_recall_at_k", dict(image_emb=U, text_emb=T, k=2, text_image_ids=IDS),
         floats=("image_emb", "text_emb"), labels=("text_image_ids",), num_classes=B, jit=True,
         batch=("image_emb", "text_emb", "text_image_ids"), numbers=("k",),
         ranges={"image_emb": _scaled(U), "text_emb": _scaled(T)}),
    Spec(f"{MM}.clip_zero_shot_scores", dict(image_emb=U, class_weights=W), floats=("image_emb", "class_weights"),
         jit=True, batch=("image_emb",), ranges={"image_emb": _scaled(U), "class_weights": _scaled(W)}),
    Spec(f"{MM}.clip_zero_shot_accuracy", dict(image_emb=U, class_weights=W, labels=LAB),
         floats=("image_emb", "class_weights"), labels=("labels",), jit=True, batch=("image_emb", "labels"),
         ranges={"image_emb": _scaled(U), "class_weights": _scaled(W)}),
    Spec(f"{MM}.clip_zero_shot_weights", dict(class_text_emb=E), floats=("class_text_emb",), jit=True,
         batch=("class_text_emb",), ranges={"class_text_emb": _scaled(E)}),
    Spec(f"{MM}.clip_zero_shot_prompts", dict(templates=["a {}"], class_names=["one"]),
         not_applicable={"templates": _STR, "class_names": _STR}),
    Spec(f"{MM}.laclip_variants", dict(data=None, max_len=12),
         call=lambda data, max_len: fn(f"{MM}.laclip_variants")(_data(), max_len=max_len).tokens.astype(np.float64),
         numbers=("max_len",), not_applicable={"data": "a PairedData, its kind checked by a Case"}),
    Spec(f"{MM}.laclip_choose", dict(counts=COUNTS, rng=np.random.default_rng(0)), keys=("rng",), batch=("counts",),
         empty=lambda out: np.shape(out) == (0,),
         not_applicable={"counts": "integer counts, checked by a Case"}),
    Spec(f"{MM}.LaclipTextSampler", dict(), call=_sampler_out,
         not_applicable={"variants": "a LaclipVariants, checked by a Case", "index_key": _STR, "text_key": _STR}),
    Spec(f"{MM}.laclip_pipeline", dict(batch_size=2, seed=1, max_len=12, process_index=0, process_count=1),
         call=_pipeline_out, numbers=("batch_size", "seed", "max_len", "process_index", "process_count"),
         not_applicable={"data": "a PairedData, its kind checked by a Case"}),
]

EXEMPT = {
    f"{MM}.LaclipVariants": "a NamedTuple of arrays built by laclip_variants",
}
