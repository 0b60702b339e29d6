"""Input-policy declarations for visual stitching in `jaxdyn.multimodal` (merged by ``multimodal.py``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import (
    H,
    KEY,
    LABELS,
    LOGITS,
    W,
    Case,
    Spec,
    bad_count,
    bad_name,
    collector,
    fn,
    head,
    non_integral,
)

MM = "jaxdyn.multimodal"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

IDS = np.array([[0, 1], [2, 3], [19, 4], [5, 6]], np.int32)
IMAGES = np.linspace(0.0, 1.0, 2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 1)


def _scores(q):
  return head(W, q)


# --- IDs -------------------------------------------------------------------------------------------
case(f"{MM}.stitching_ids", "num_ids", st.one_of(bad_count, st.integers(401, 10**4)))(
    lambda v: fn(f"{MM}.stitching_ids")(KEY, v))
case(f"{MM}.stitching_ids", "id_length", bad_count)(lambda v: fn(f"{MM}.stitching_ids")(KEY, 3, id_length=v))
case(f"{MM}.stitching_ids", "vocab_size", st.one_of(st.integers(max_value=1), non_integral, st.booleans()))(
    lambda v: fn(f"{MM}.stitching_ids")(KEY, 1, vocab_size=v))
case(f"{MM}.stitching_id_texts", "words", st.sampled_from([None, "ab", 3, (), ("a", "a"), ("a b",), ("", "x"),
                                                           (1, 2)]))(
    lambda v: fn(f"{MM}.stitching_id_texts")([[0]], words=v))
case(f"{MM}.stitching_id_texts", "ids", st.sampled_from([np.zeros(3, np.int32), np.zeros((2, 0), np.int32),
                                                         np.zeros((1, 2), np.float32), [[0, 20]]]))(
    lambda v: fn(f"{MM}.stitching_id_texts")(v))

# --- patches ---------------------------------------------------------------------------------------
case(f"{MM}.stitching_patches", "split_factor", st.one_of(bad_count, st.sampled_from([3, 5, 7, 9, 16])))(
    lambda v: fn(f"{MM}.stitching_patches")(IMAGES, v))
case(f"{MM}.stitching_patches", "mode", bad_name.filter(lambda s: s not in ("resize", "place")))(
    lambda v: fn(f"{MM}.stitching_patches")(IMAGES, 2, mode=v))
case(f"{MM}.stitching_patches", "images", st.sampled_from([IMAGES[0], IMAGES[..., 0], IMAGES[None]]))(
    lambda v: fn(f"{MM}.stitching_patches")(v, 2))

# --- ranks and the measurement ---------------------------------------------------------------------
case(f"{MM}.stitching_ranks", "scores", st.sampled_from([LOGITS[0], LOGITS[:, :1], LOGITS[None]]))(
    lambda v: fn(f"{MM}.stitching_ranks")(v, LABELS[:np.shape(v)[0]] % 1))
case(f"{MM}.stitching_ranks", "targets", st.sampled_from([LABELS[:3], LABELS[None], LABELS.astype(np.float32)]))(
    lambda v: fn(f"{MM}.stitching_ranks")(LOGITS, v))
case(f"{MM}.stitching_measure", "score_fn", st.sampled_from([None, 3, "f", lambda q: _scores(q)[:1],
                                                             lambda q: _scores(q)[:, :1],
                                                             lambda q: _scores(q)[..., None]]))(
    lambda v: fn(f"{MM}.stitching_measure")(v, H, LABELS))
case(f"{MM}.stitching_measure", "queries", st.sampled_from([None, {}, np.float32(1.0), {"a": H, "b": H[:3]}]))(
    lambda v: fn(f"{MM}.stitching_measure")(_scores, v, LABELS))
case(f"{MM}.stitching_measure", "batch_size", bad_count)(
    lambda v: fn(f"{MM}.stitching_measure")(_scores, H, LABELS, batch_size=v))


def _texts(**kw):
  return [np.array([len(t)], np.float64) for t in fn(f"{MM}.stitching_id_texts")(**kw)]


SPECS += [
    Spec(f"{MM}.stitching_ids", dict(key=KEY, num_ids=5, id_length=2, vocab_size=20), keys=("key",),
         numbers=("num_ids", "id_length", "vocab_size")),
    Spec(f"{MM}.stitching_id_texts", dict(ids=IDS), call=_texts, labels=("ids",), num_classes=20, batch=("ids",),
         not_applicable={"words": "a sequence of strings, checked by a Case"}),
    Spec(f"{MM}.stitching_patches", dict(images=IMAGES, split_factor=2), floats=("images",), jit=True,
         batch=("images",), numbers=("split_factor",),
         ranges={"images": st.sampled_from([IMAGES * 1e30, IMAGES * 1e-30, IMAGES.astype(np.float16)])},
         not_applicable={"mode": "a name, checked by a Case"}),
    Spec(f"{MM}.stitching_ranks", dict(scores=LOGITS, targets=LABELS), floats=("scores",), labels=("targets",),
         jit=True, batch=("scores", "targets"), empty=lambda out: all(np.shape(x) == (0,) for x in out),
         ranges={"scores": st.sampled_from([LOGITS * 1e30, LOGITS * 1e-30, LOGITS.astype(np.float16)])}),
    Spec(f"{MM}.stitching_measure", dict(score_fn=_scores, queries=H * np.arange(1, 9)[:, None], targets=LABELS,
                                         batch_size=3),
         floats=("queries",), labels=("targets",), batch=("queries", "targets"), numbers=("batch_size",),
         not_applicable={"score_fn": "a callable, checked by a Case"}),
]

EXEMPT = {
    f"{MM}.StitchingResult": "a NamedTuple of the measurement's numbers, built by stitching_measure",
}
