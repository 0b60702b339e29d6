"""Input-policy declarations for CTVIS in `jaxdyn.multimodal` (merged by ``multimodal.py``; vocabulary: ``spec.py``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import (
    KEY,
    Case,
    Spec,
    bad_count,
    collector,
    fn,
    negative,
    non_integral,
)

MM = "jaxdyn.multimodal"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

T, M, D = 4, 3, 5
E = np.asarray(np.random.default_rng(0).normal(size=(T, M, D)), np.float32)
PRESENT = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 0], [1, 1, 1]], bool)
BACK = np.asarray(np.random.default_rng(1).normal(size=(T, 2, D)), np.float32)
ROWS = E[0]
K, P = 4, 3
A = np.asarray(np.random.default_rng(2).normal(size=(K, D)), np.float32)
POS = np.asarray(np.random.default_rng(3).normal(size=(K, D)), np.float32)
NEG = np.asarray(np.random.default_rng(4).normal(size=(K, P, D)), np.float32)
NMASK = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 1, 0]], bool)
IMASK = np.array([1, 1, 0, 1], bool)
IMAGE = np.asarray(np.random.default_rng(5).uniform(size=(6, 7)), np.float32)

bad_mask = st.sampled_from([PRESENT.astype(np.float32), PRESENT.astype(np.int32), PRESENT[:, :2], PRESENT[:3]])
above_one = st.one_of(st.floats(min_value=1.0001, allow_infinity=False), negative)


def _memory():
  return fn(f"{MM}.ctvis_memory_update")(fn(f"{MM}.ctvis_memory_init")(M, D), ROWS, PRESENT[0])


def _items(anchors, positives, negatives):
  k = np.shape(anchors)[0]
  return fn(f"{MM}.CtvisItems")(anchors, positives, negatives, NMASK[:k], IMASK[:k])


def _loss(anchors, positives, negatives, aux_weight):
  return fn(f"{MM}.ctvis_contrastive_loss")(_items(anchors, positives, negatives), aux_weight=aux_weight)


# --- memory bank -----------------------------------------------------------------------------------
case(f"{MM}.ctvis_memory_init", "num_slots", bad_count)(lambda v: fn(f"{MM}.ctvis_memory_init")(v, D))
case(f"{MM}.ctvis_memory_init", "dim", bad_count)(lambda v: fn(f"{MM}.ctvis_memory_init")(M, v))
case(f"{MM}.ctvis_memory_init", "dtype", st.sampled_from([np.int32, np.bool_, "int8"]))(
    lambda v: fn(f"{MM}.ctvis_memory_init")(M, D, v))
case(f"{MM}.ctvis_memory_update", "memory", st.sampled_from([None, (ROWS, PRESENT[0]), ROWS]))(
    lambda v: fn(f"{MM}.ctvis_memory_update")(v, ROWS, PRESENT[0]))
case(f"{MM}.ctvis_memory_update", "embeddings", st.sampled_from([ROWS[:2], ROWS[:, :4], E, ROWS.astype(np.int32)]))(
    lambda v: fn(f"{MM}.ctvis_memory_update")(_memory(), v, PRESENT[0]))
case(f"{MM}.ctvis_memory_update", "present", st.sampled_from([PRESENT[0].astype(np.float32), PRESENT[0, :2],
                                                               PRESENT]))(
    lambda v: fn(f"{MM}.ctvis_memory_update")(_memory(), ROWS, v))
case(f"{MM}.ctvis_memory_update", "momentum", above_one)(
    lambda v: fn(f"{MM}.ctvis_memory_update")(_memory(), ROWS, PRESENT[0], momentum=v))
case(f"{MM}.ctvis_memory_update", "max_age", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: fn(f"{MM}.ctvis_memory_update")(_memory(), ROWS, PRESENT[0], max_age=v))

# --- noise and items -------------------------------------------------------------------------------
case(f"{MM}.ctvis_noise", "present", bad_mask)(lambda v: fn(f"{MM}.ctvis_noise")(KEY, E, v, rate=0.5))
case(f"{MM}.ctvis_noise", "rate", above_one)(lambda v: fn(f"{MM}.ctvis_noise")(KEY, E, PRESENT, rate=v))
case(f"{MM}.ctvis_noise", "background", st.sampled_from([BACK[:2], BACK[..., :4], BACK[0]]))(
    lambda v: fn(f"{MM}.ctvis_noise")(KEY, E, PRESENT, rate=0.5, background=v))
case(f"{MM}.ctvis_noise", "embeddings", st.sampled_from([E[0], E.astype(np.int32), E[..., :0]]))(
    lambda v: fn(f"{MM}.ctvis_noise")(KEY, v, PRESENT, rate=0.5))
for _f in ("ctvis_contrastive_items", "ctvis_reference_items"):
  case(f"{MM}.{_f}", "embeddings", st.sampled_from([E[:1], E[0], E.astype(np.int32), E[..., :0]]))(
      lambda v, _f=_f: fn(f"{MM}.{_f}")(v, PRESENT[:len(v)] if np.ndim(v) == 3 else PRESENT))
  case(f"{MM}.{_f}", "present", bad_mask)(lambda v, _f=_f: fn(f"{MM}.{_f}")(E, v))
  case(f"{MM}.{_f}", "background", st.sampled_from([BACK[:2], BACK[..., :4], BACK[0], BACK.astype(np.int32)]))(
      lambda v, _f=_f: fn(f"{MM}.{_f}")(E, PRESENT, background=v))
case(f"{MM}.ctvis_contrastive_items", "noise_rate", above_one)(
    lambda v: fn(f"{MM}.ctvis_contrastive_items")(E, PRESENT, key=KEY, noise_rate=v))
case(f"{MM}.ctvis_contrastive_items", "average_prob", above_one)(
    lambda v: fn(f"{MM}.ctvis_contrastive_items")(E, PRESENT, key=KEY, average_prob=v))
case(f"{MM}.ctvis_contrastive_items", "momentum", above_one)(
    lambda v: fn(f"{MM}.ctvis_contrastive_items")(E, PRESENT, key=KEY, momentum=v))
case(f"{MM}.ctvis_contrastive_loss", "items", st.sampled_from([None, (A, POS, NEG), A]))(
    lambda v: fn(f"{MM}.ctvis_contrastive_loss")(v))
case(f"{MM}.ctvis_contrastive_loss", "items", st.sampled_from([POS[:2], POS[:, :4], NEG]))(
    lambda v: fn(f"{MM}.ctvis_contrastive_loss")(fn(f"{MM}.CtvisItems")(A, v, NEG, NMASK, IMASK)))
case(f"{MM}.ctvis_contrastive_loss", "aux_weight", negative)(lambda v: _loss(A, POS, NEG, v))

# --- association -----------------------------------------------------------------------------------
case(f"{MM}.ctvis_associate", "memory", st.sampled_from([None, (ROWS, PRESENT[0]), ROWS]))(
    lambda v: fn(f"{MM}.ctvis_associate")(v, ROWS, PRESENT[0]))
case(f"{MM}.ctvis_associate", "embeddings", st.sampled_from([ROWS[:, :4], E, ROWS.astype(np.int32)]))(
    lambda v: fn(f"{MM}.ctvis_associate")(_memory(), v, PRESENT[0]))
case(f"{MM}.ctvis_associate", "detected",
     st.sampled_from([PRESENT[0].astype(np.float32), PRESENT[0, :2], PRESENT[:2]]))(
    lambda v: fn(f"{MM}.ctvis_associate")(_memory(), ROWS, v))
case(f"{MM}.ctvis_associate", "threshold", above_one)(
    lambda v: fn(f"{MM}.ctvis_associate")(_memory(), ROWS, PRESENT[0], threshold=v))
case(f"{MM}.ctvis_associate", "momentum", above_one)(
    lambda v: fn(f"{MM}.ctvis_associate")(_memory(), ROWS, PRESENT[0], momentum=v))
case(f"{MM}.ctvis_associate", "max_age", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: fn(f"{MM}.ctvis_associate")(_memory(), ROWS, PRESENT[0], max_age=v))
case(f"{MM}.ctvis_track", "detected", bad_mask)(lambda v: fn(f"{MM}.ctvis_track")(E, v, num_slots=6))
case(f"{MM}.ctvis_track", "num_slots", bad_count)(lambda v: fn(f"{MM}.ctvis_track")(E, PRESENT, num_slots=v))
case(f"{MM}.ctvis_track", "threshold", above_one)(
    lambda v: fn(f"{MM}.ctvis_track")(E, PRESENT, num_slots=6, threshold=v))
case(f"{MM}.ctvis_track", "momentum", above_one)(
    lambda v: fn(f"{MM}.ctvis_track")(E, PRESENT, num_slots=6, momentum=v))
case(f"{MM}.ctvis_track", "max_age", st.one_of(st.integers(max_value=-1), non_integral))(
    lambda v: fn(f"{MM}.ctvis_track")(E, PRESENT, num_slots=6, max_age=v))

# --- pseudo-videos ---------------------------------------------------------------------------------
_pv = fn(f"{MM}.ctvis_pseudo_video")
case(f"{MM}.ctvis_pseudo_video", "image", st.sampled_from([IMAGE[0], IMAGE[None, None], IMAGE.astype(np.int32),
                                                            IMAGE[:0], "image"]))(lambda v: _pv(KEY, v, num_frames=2))
case(f"{MM}.ctvis_pseudo_video", "num_frames", bad_count)(lambda v: _pv(KEY, IMAGE, num_frames=v))
case(f"{MM}.ctvis_pseudo_video", "max_rotation", negative)(lambda v: _pv(KEY, IMAGE, num_frames=2, max_rotation=v))
case(f"{MM}.ctvis_pseudo_video", "max_scale", above_one)(lambda v: _pv(KEY, IMAGE, num_frames=2, max_scale=v))
case(f"{MM}.ctvis_pseudo_video", "max_shift", negative)(lambda v: _pv(KEY, IMAGE, num_frames=2, max_shift=v))
case(f"{MM}.ctvis_pseudo_video", "order", st.one_of(st.integers(min_value=2), st.integers(max_value=-1),
                                                      non_integral, st.booleans()))(
    lambda v: _pv(KEY, IMAGE, num_frames=2, order=v))

_MASK = "a boolean mask; its dtype and shape are checked by a Case"
_MEM = "a CtvisMemory; its kind is checked by a Case"


def _empty_ids(out):
  return np.shape(out[0] if isinstance(out, tuple) else out)[0] == 0


SPECS += [
    Spec(f"{MM}.ctvis_memory_init", dict(num_slots=M, dim=D), numbers=("num_slots", "dim"),
         not_applicable={"dtype": "a dtype, checked by a Case"}),
    Spec(f"{MM}.ctvis_memory_update", dict(embeddings=ROWS, present=PRESENT[1], momentum=0.5, max_age=3),
         call=lambda **kw: fn(f"{MM}.ctvis_memory_update")(_memory(), **kw), floats=("embeddings",),
         batch=("embeddings", "present"), numbers=("momentum", "max_age"),
         not_applicable={"memory": _MEM, "present": _MASK}),
    Spec(f"{MM}.ctvis_noise", dict(key=KEY, embeddings=E, present=PRESENT, rate=0.5, background=BACK),
         floats=("embeddings", "background"), batch=("embeddings", "present", "background"), numbers=("rate",),
         keys=("key",), not_applicable={"present": _MASK}),
    Spec(f"{MM}.ctvis_contrastive_items", dict(embeddings=E, present=PRESENT, background=BACK, key=KEY,
                                               noise_rate=0.3, average_prob=0.5, momentum=0.5),
         floats=("embeddings", "background"), batch=("embeddings", "present", "background"),
         numbers=("noise_rate", "average_prob", "momentum"), keys=("key",), not_applicable={"present": _MASK}),
    Spec(f"{MM}.ctvis_reference_items", dict(embeddings=E, present=PRESENT, background=BACK),
         floats=("embeddings", "background"), jit=True, batch=("embeddings", "present", "background"),
         not_applicable={"present": _MASK}),
    Spec(f"{MM}.ctvis_contrastive_loss", dict(anchors=A, positives=POS, negatives=NEG, aux_weight=1.5), call=_loss,
         floats=("anchors", "positives", "negatives"), jit=True, batch=("anchors", "positives", "negatives"),
         empty=0.0, numbers=("aux_weight",),
         not_applicable={"items": "a CtvisItems: its fields are the floats anchors / positives / negatives here "
                                  "(masks fixed); its kind and field shapes are checked by Cases"}),
    Spec(f"{MM}.ctvis_associate", dict(embeddings=E[1], detected=PRESENT[1], threshold=0.2, momentum=0.5, max_age=3),
         call=lambda **kw: fn(f"{MM}.ctvis_associate")(_memory(), **kw), floats=("embeddings",),
         batch=("embeddings", "detected"), empty=_empty_ids, numbers=("threshold", "momentum", "max_age"),
         not_applicable={"memory": _MEM, "detected": _MASK}),
    Spec(f"{MM}.ctvis_track", dict(embeddings=E, detected=PRESENT, num_slots=6, threshold=0.2, momentum=0.5,
                                   max_age=3),
         call=lambda **kw: fn(f"{MM}.ctvis_track")(**kw).astype(np.float64), floats=("embeddings",),
         batch=("embeddings", "detected"), empty=_empty_ids, numbers=("num_slots", "threshold", "momentum", "max_age"),
         not_applicable={"detected": _MASK}),
    Spec(f"{MM}.ctvis_pseudo_video", dict(key=KEY, image=IMAGE, num_frames=3, max_rotation=15.0, max_scale=0.15,
                                          max_shift=0.15, order=1),
         floats=("image",), batch=("image",), numbers=("num_frames", "max_rotation", "max_scale", "max_shift", "order"),
         keys=("key",)),
]

EXEMPT = {
    f"{MM}.CtvisItems": "a NamedTuple of arrays built by ctvis_contrastive_items / ctvis_reference_items",
    f"{MM}.CtvisMemory": "a NamedTuple of arrays built by ctvis_memory_init",
}
