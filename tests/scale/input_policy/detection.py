"""Input-policy declarations for `jaxdyn.detection` (the vocabulary is in ``spec.py``).

Boxes, assigners and losses run under ``jit`` (non-finite inputs propagate as NaN); the COCO AP and the
scene generator are host-side NumPy (they raise naming the input). The numbers are checked in
``tests/detection/``.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from hypothesis import strategies as st

from tests.scale.input_policy.spec import Case, Spec, bad_count, collector, fn, non_integral

DET = "jaxdyn.detection"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

_rng = np.random.default_rng(0)
_XY = _rng.uniform(0, 20, (5, 2)).astype(np.float32)
BOXES = np.concatenate([_XY, _XY + _rng.uniform(2, 10, (5, 2)).astype(np.float32)], 1)
BOXES_B = (BOXES + _rng.uniform(-1, 1, (5, 4))).astype(np.float32)
BOXES_B[:, 2:] = np.maximum(BOXES_B[:, 2:], BOXES_B[:, :2] + 1)
ANCHORS = np.asarray(fn(f"{DET}.make_anchors")(16, (4, 8), (8.0, 16.0))[0])  # 16 + 4 anchors
COUNTS = (16, 4)
GTS = np.array([[2.0, 2.0, 10.0, 10.0], [8.0, 3.0, 15.0, 12.0], [1.0, 9.0, 6.0, 15.0]], np.float32)
VALID = np.ones(3, bool)
B, A, K, G = 2, 20, 3, 2
CLS = np.asarray(jax.random.normal(jax.random.key(1), (B, A, K)))
DELTAS = np.asarray(jax.random.normal(jax.random.key(2), (B, A, 4))) * 0.1
CTR = np.asarray(jax.random.normal(jax.random.key(3), (B, A)))
MATCHED = np.full((B, A), -1, np.int32)
MATCHED[0, 5], MATCHED[0, 6], MATCHED[1, 9], MATCHED[1, 0] = 0, 1, 0, -2
GT_B = np.stack([GTS[:2], GTS[1:]])
GT_L = np.array([[0, 2], [1, 1]], np.int32)
DET_BOXES = np.stack([BOXES[:3], BOXES_B[:3]])  # (images, detections, 4): one array, indexed by image
DET_SCORES = np.array([[0.9, 0.5, 0.1], [0.8, 0.5, 0.3]])
DET_LABELS = np.array([[0, 1, 0], [1, 1, 0]])
GT_BOXES = np.stack([BOXES_B[:2], BOXES[2:4]])
GT_LABELS = np.array([[0, 1], [1, 0]])

bad_boxes = st.sampled_from([np.ones((3, 3), np.float32), np.ones((4,), np.float32), np.ones((2, 5), np.float32)])
bad_last = st.sampled_from([np.ones((3, 3), np.float32), np.ones((5,), np.float32), np.ones((2, 5), np.float32),
                            np.ones((2, 2, 1), np.float32)])
bad_weights = st.sampled_from([(10.0, 10.0, 5.0), (10.0, 0.0, 5.0, 5.0), (10.0, -1.0, 5.0, 5.0), "w", None,
                               (10.0, math.nan, 5.0, 5.0)])
bad_unit = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0 + 1e-6), st.just(math.nan), st.booleans())
bad_nonneg = st.one_of(st.floats(max_value=-1e-6, allow_infinity=False), st.just(math.nan), st.booleans())
bad_int_ge0 = st.one_of(st.integers(max_value=-1), non_integral, st.booleans())
ranges_coords = st.sampled_from([1e-3, 1e3, 1e5])


def _scaled(name, base):
  return lambda s: {name: base * s}


for _f in ("box_area", "box_centers"):
  case(f"{DET}.{_f}", "boxes", bad_last)(lambda v, _f=_f: fn(f"{DET}.{_f}")(v))
for _f in ("box_iou", "center_distance", "generalized_box_iou"):
  case(f"{DET}.{_f}", "boxes_a", bad_boxes if _f != "generalized_box_iou" else bad_last)(
      lambda v, _f=_f: fn(f"{DET}.{_f}")(v, BOXES))
  case(f"{DET}.{_f}", "boxes_b", bad_boxes)(lambda v, _f=_f: fn(f"{DET}.{_f}")(BOXES, v))
for _f, _first in (("encode_boxes", "boxes"), ("decode_boxes", "deltas")):
  case(f"{DET}.{_f}", _first, bad_last)(lambda v, _f=_f: fn(f"{DET}.{_f}")(v, BOXES))
  case(f"{DET}.{_f}", "anchors", bad_boxes)(lambda v, _f=_f: fn(f"{DET}.{_f}")(BOXES, v))
  case(f"{DET}.{_f}", "weights", bad_weights)(lambda v, _f=_f: fn(f"{DET}.{_f}")(BOXES_B, BOXES, weights=v))
case(f"{DET}.make_anchors", "image_size", bad_count)(lambda v: fn(f"{DET}.make_anchors")(v, (4,), (8.0,)))
case(f"{DET}.make_anchors", "strides", st.sampled_from([(), (0,), (-4,), (2.5,), "4", None]))(
    lambda v: fn(f"{DET}.make_anchors")(16, v, (8.0,) * (len(v) if isinstance(v, tuple) and v else 1)))
case(f"{DET}.make_anchors", "sizes", st.sampled_from([(0.0,), (-1.0,), (math.nan,), (8.0, 8.0), "8", None]))(
    lambda v: fn(f"{DET}.make_anchors")(16, (4,), v))
case(f"{DET}.atss_assign", "topk", bad_count)(
    lambda v: fn(f"{DET}.atss_assign")(ANCHORS, GTS, num_anchors_per_level=COUNTS, topk=v))
case(f"{DET}.atss_assign", "num_anchors_per_level", st.sampled_from([(16, 3), (20,) * 2, (0, 20), (16.0, 4), (), 20]))(
    lambda v: fn(f"{DET}.atss_assign")(ANCHORS, GTS, num_anchors_per_level=v))
case(f"{DET}.atss_assign", "gt_valid",
     st.sampled_from([np.ones(3), np.ones(2, bool), np.ones((3, 1), bool), [1, 0, 1]]))(
    lambda v: fn(f"{DET}.atss_assign")(ANCHORS, GTS, v, num_anchors_per_level=COUNTS))
case(f"{DET}.atss_assign", "anchors", st.sampled_from([np.zeros((0, 4), np.float32), np.ones((20, 3), np.float32),
                                                      np.ones((20,), np.float32), np.ones((2, 10, 4), np.float32)]))(
    lambda v: fn(f"{DET}.atss_assign")(v, GTS, num_anchors_per_level=COUNTS))
case(f"{DET}.atss_assign", "gt_boxes", bad_boxes)(lambda v: fn(f"{DET}.atss_assign")(ANCHORS, v,
                                                                                      num_anchors_per_level=COUNTS))
case(f"{DET}.iou_assign", "positive_iou", st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0 + 1e-6),
                                                    st.just(math.nan), st.booleans()))(
    lambda v: fn(f"{DET}.iou_assign")(ANCHORS, GTS, positive_iou=v, negative_iou=0.0))
case(f"{DET}.iou_assign", "negative_iou", st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=0.5 + 1e-6),
                                                    st.just(math.nan), st.booleans()))(
    lambda v: fn(f"{DET}.iou_assign")(ANCHORS, GTS, negative_iou=v))
case(f"{DET}.iou_assign", "gt_valid", st.sampled_from([np.ones(3), np.ones(4, bool), [1, 0, 1]]))(
    lambda v: fn(f"{DET}.iou_assign")(ANCHORS, GTS, v))
case(f"{DET}.iou_assign", "anchors", st.sampled_from([np.zeros((0, 4), np.float32), np.ones((20, 3), np.float32),
                                                     np.ones((20,), np.float32), np.ones((2, 10, 4), np.float32)]))(
    lambda v: fn(f"{DET}.iou_assign")(v, GTS))
case(f"{DET}.iou_assign", "gt_boxes", bad_boxes)(lambda v: fn(f"{DET}.iou_assign")(ANCHORS, v))
case(f"{DET}.sigmoid_focal_loss", "alpha", bad_unit)(lambda v: fn(f"{DET}.sigmoid_focal_loss")(CTR, CTR * 0, alpha=v))
case(f"{DET}.sigmoid_focal_loss", "gamma", bad_nonneg)(lambda v: fn(f"{DET}.sigmoid_focal_loss")(CTR, CTR * 0, gamma=v))
case(f"{DET}.sigmoid_focal_loss", "targets", st.integers(1, 9).filter(lambda n: n != A))(
    lambda n: fn(f"{DET}.sigmoid_focal_loss")(CTR, np.zeros((B, n), np.float32)))
case(f"{DET}.centerness_target", "points", st.sampled_from([np.ones((5, 3)), np.ones((5,)), np.ones((4, 2))]))(
    lambda v: fn(f"{DET}.centerness_target")(v, BOXES) if v.shape != (4, 2) else fn(f"{DET}.centerness_target")(
        v, BOXES))
case(f"{DET}.centerness_target", "boxes", bad_last)(lambda v: fn(f"{DET}.centerness_target")(np.ones((5, 2)), v))


def _loss(**kw):
  args = dict(cls_logits=CLS, box_deltas=DELTAS, centerness_logits=CTR, anchors=ANCHORS, matched_gt=MATCHED,
              gt_boxes=GT_B, gt_labels=GT_L)
  args.update(kw)
  return fn(f"{DET}.atss_loss")(**args)


case(f"{DET}.atss_loss", "matched_gt", st.one_of(st.integers(G, 10**6), st.integers(-10**6, -3)))(
    lambda v: _loss(matched_gt=np.where(np.arange(B * A).reshape(B, A) == 3, v, MATCHED).astype(np.int32)))
case(f"{DET}.atss_loss", "matched_gt", st.sampled_from([MATCHED.astype(np.float32), MATCHED[:, :5], MATCHED[0]]))(
    lambda v: _loss(matched_gt=v))
case(f"{DET}.atss_loss", "box_deltas", st.integers(1, 9).filter(lambda n: n != A))(
    lambda n: _loss(box_deltas=np.zeros((B, n, 4), np.float32)))
case(f"{DET}.atss_loss", "centerness_logits", st.integers(1, 9).filter(lambda n: n != A))(
    lambda n: _loss(centerness_logits=np.zeros((B, n), np.float32)))
case(f"{DET}.atss_loss", "anchors", st.integers(1, 9).filter(lambda n: n != A))(
    lambda n: _loss(anchors=np.zeros((n, 4), np.float32)))
case(f"{DET}.atss_loss", "gt_boxes", st.integers(1, 9).filter(lambda n: n != B))(
    lambda n: _loss(gt_boxes=np.zeros((n, G, 4), np.float32)))
case(f"{DET}.atss_loss", "gt_labels", st.integers(1, 9).filter(lambda n: n != G))(
    lambda n: _loss(gt_labels=np.zeros((B, n), np.int32)))
case(f"{DET}.atss_loss", "alpha", bad_unit)(lambda v: _loss(alpha=v))
case(f"{DET}.atss_loss", "gamma", bad_nonneg)(lambda v: _loss(gamma=v))
case(f"{DET}.atss_loss", "reg_weight", bad_nonneg)(lambda v: _loss(reg_weight=v))
case(f"{DET}.atss_loss", "weights", bad_weights)(lambda v: _loss(weights=v))


def _ap(**kw):
  args = dict(pred_boxes=DET_BOXES, pred_scores=DET_SCORES, pred_labels=DET_LABELS, gt_boxes=GT_BOXES,
              gt_labels=GT_LABELS, num_classes=2)
  args.update(kw)
  return fn(f"{DET}.coco_average_precision")(**args)


case(f"{DET}.coco_average_precision", "num_classes", bad_count)(lambda v: _ap(num_classes=v))
case(f"{DET}.coco_average_precision", "max_detections", bad_count)(lambda v: _ap(max_detections=v))
case(f"{DET}.coco_average_precision", "pred_boxes",
     st.sampled_from([DET_BOXES[:1], DET_BOXES[..., :3], "boxes", [BOXES[:3], np.array([[0.0, np.inf, 1.0, 1.0]])]]))(
    lambda v: _ap(pred_boxes=v))
case(f"{DET}.coco_average_precision", "pred_scores", st.sampled_from([DET_SCORES[:, :2], DET_SCORES[:1],
                                                                      [np.ones(3), np.array([0.1, np.nan, 1.0])]]))(
    lambda v: _ap(pred_scores=v))
case(f"{DET}.coco_average_precision", "pred_labels", st.sampled_from([DET_LABELS * 1.0, DET_LABELS + 2, DET_LABELS - 1,
                                                                      DET_LABELS[:, :2]]))(lambda v: _ap(pred_labels=v))
case(f"{DET}.coco_average_precision", "gt_labels", st.sampled_from([GT_LABELS[:, :1], GT_LABELS * 1.0, GT_LABELS + 2]))(
    lambda v: _ap(gt_labels=v))
case(f"{DET}.coco_average_precision", "gt_boxes", st.sampled_from([np.zeros((2, 0, 4)), 3, None, GT_BOXES[..., :3]]))(
    lambda v: _ap(gt_boxes=v, gt_labels=np.zeros((2, 0), int)) if np.shape(v) == (2, 0, 4) else _ap(gt_boxes=v))


def _scenes(**kw):
  args = dict(seed=0, num_images=2, image_size=24, max_objects=3, min_size=4, max_size=10, noise=0.05)
  args.update(kw)
  return fn(f"{DET}.synthetic_scenes")(**args)


case(f"{DET}.synthetic_scenes", "seed", bad_int_ge0)(lambda v: _scenes(seed=v))
case(f"{DET}.synthetic_scenes", "num_images", bad_count)(lambda v: _scenes(num_images=v))
case(f"{DET}.synthetic_scenes", "image_size", st.one_of(st.integers(max_value=2), non_integral, st.booleans()))(
    lambda v: _scenes(image_size=v))
case(f"{DET}.synthetic_scenes", "max_objects", bad_count)(lambda v: _scenes(max_objects=v))
case(f"{DET}.synthetic_scenes", "min_size", st.one_of(st.integers(max_value=2), st.integers(25, 100), non_integral))(
    lambda v: _scenes(min_size=v))
case(f"{DET}.synthetic_scenes", "max_size", st.one_of(st.integers(max_value=3), st.integers(25, 100), non_integral))(
    lambda v: _scenes(max_size=v))
case(f"{DET}.synthetic_scenes", "noise", bad_nonneg)(lambda v: _scenes(noise=v))


def _shape_is(*shape):
  return lambda out: np.shape(out) == shape


_FLAG = {"official_compat": "a flag"}
SPECS += [
    Spec(f"{DET}.box_area", dict(boxes=BOXES), floats=("boxes",), jit=True, batch=("boxes",), empty=_shape_is(0),
         ranges={"boxes": st.sampled_from([BOXES * 1e-3, BOXES * 1e4, BOXES.astype(np.float16)])}),
    Spec(f"{DET}.box_centers", dict(boxes=BOXES), floats=("boxes",), jit=True, batch=("boxes",),
         empty=_shape_is(0, 2)),
    Spec(f"{DET}.box_iou", dict(boxes_a=BOXES, boxes_b=BOXES_B), floats=("boxes_a", "boxes_b"), jit=True,
         batch=("boxes_a", "boxes_b"), empty=_shape_is(0, 0),
         ranges={"boxes_a": st.sampled_from([BOXES * 1e-3, BOXES * 1e4, np.zeros((5, 4), np.float32)])}),
    Spec(f"{DET}.center_distance", dict(boxes_a=BOXES, boxes_b=BOXES_B), floats=("boxes_a", "boxes_b"), jit=True,
         batch=("boxes_a", "boxes_b"), empty=_shape_is(0, 0)),
    Spec(f"{DET}.generalized_box_iou", dict(boxes_a=BOXES, boxes_b=BOXES_B), floats=("boxes_a", "boxes_b"), jit=True,
         batch=("boxes_a", "boxes_b"), empty=_shape_is(0),
         ranges={"boxes_a": st.sampled_from([BOXES * 1e-3, np.zeros((5, 4), np.float32), BOXES[:, [2, 3, 0, 1]]])}),
    Spec(f"{DET}.encode_boxes", dict(boxes=BOXES_B, anchors=BOXES), floats=("boxes", "anchors"), jit=True,
         batch=("boxes", "anchors"), empty=_shape_is(0, 4), not_applicable={"weights": "a 4-tuple, checked by Cases"}),
    Spec(f"{DET}.decode_boxes", dict(deltas=BOXES_B - BOXES, anchors=BOXES), floats=("deltas", "anchors"), jit=True,
         batch=("deltas", "anchors"), empty=_shape_is(0, 4),
         ranges={"deltas": st.sampled_from([np.full((5, 4), 1e4, np.float32), np.full((5, 4), -1e4, np.float32)])},
         not_applicable={"weights": "a 4-tuple, checked by Cases"}),
    Spec(f"{DET}.make_anchors", dict(image_size=16, strides=(4, 8), sizes=(8.0, 16.0)), numbers=("image_size",),
         not_applicable={"strides": "a sequence of ints, checked by Cases",
                         "sizes": "a sequence of reals, checked by Cases"}),
    Spec(f"{DET}.atss_assign", dict(anchors=ANCHORS, gt_boxes=GTS, gt_valid=VALID, num_anchors_per_level=COUNTS,
                                    topk=9),
         floats=("anchors", "gt_boxes"), jit=True, batch=("gt_boxes", "gt_valid"),
         empty=lambda out: bool((np.asarray(out.matched_gt) == -1).all()) and int(out.num_unassigned) == 0,
         numbers=("topk",),
         not_applicable={"gt_valid": "a bool mask of gt_boxes' rows; kind and shape checked by Cases",
                         "num_anchors_per_level": "static Python ints, checked by Cases"}),
    Spec(f"{DET}.iou_assign", dict(anchors=ANCHORS, gt_boxes=GTS, gt_valid=VALID, positive_iou=0.5, negative_iou=0.4),
         floats=("anchors", "gt_boxes"), jit=True, batch=("gt_boxes", "gt_valid"),
         empty=lambda out: bool((np.asarray(out.matched_gt) == -1).all()) and int(out.num_unassigned) == 0,
         numbers=("positive_iou", "negative_iou"),
         not_applicable={"gt_valid": "a bool mask of gt_boxes' rows; kind and shape checked by Cases"}),
    Spec(f"{DET}.sigmoid_focal_loss", dict(logits=CTR, targets=(CTR > 0).astype(np.float32), alpha=0.25, gamma=2.0),
         floats=("logits", "targets"), jit=True, batch=("logits", "targets"), empty=_shape_is(0, A),
         numbers=("alpha", "gamma"),
         ranges={"logits": st.sampled_from([CTR * 1e4, CTR * 1e-6, CTR.astype(np.float16) * 100]),
                 "gamma": st.sampled_from([0.0, 0.5, 10.0])}),
    Spec(f"{DET}.centerness_target", dict(points=(BOXES[:, :2] + BOXES[:, 2:]) / 2 + 0.5, boxes=BOXES),
         floats=("points", "boxes"), jit=True, batch=("points", "boxes"), empty=_shape_is(0),
         ranges={"points": st.sampled_from([BOXES[:, :2], BOXES[:, :2] - 100.0])}),
    Spec(f"{DET}.atss_loss", dict(cls_logits=CLS, box_deltas=DELTAS, centerness_logits=CTR, anchors=ANCHORS,
                                  matched_gt=MATCHED, gt_boxes=GT_B, gt_labels=GT_L, alpha=0.25, gamma=2.0,
                                  reg_weight=2.0),
         floats=("cls_logits", "box_deltas", "centerness_logits", "anchors", "gt_boxes"), labels=("gt_labels",),
         num_classes=K, jit=True,
         batch=("cls_logits", "box_deltas", "centerness_logits", "matched_gt", "gt_boxes", "gt_labels"),
         numbers=("alpha", "gamma", "reg_weight"),
         ranges={"box_deltas": st.sampled_from([DELTAS * 1e3, DELTAS * -1e3]),
                 "cls_logits": st.sampled_from([CLS * 1e4, CLS * 1e-6])},
         not_applicable={"matched_gt": "assigner output (indices, -1, -2): range and kind checked by Cases",
                         "weights": "a 4-tuple, checked by Cases"}),
    Spec(f"{DET}.coco_average_precision", dict(pred_boxes=DET_BOXES, pred_scores=DET_SCORES, pred_labels=DET_LABELS,
                                               gt_boxes=GT_BOXES, gt_labels=GT_LABELS, num_classes=2,
                                               max_detections=100),
         floats=("pred_boxes", "pred_scores", "gt_boxes"), labels=("gt_labels", "pred_labels"), num_classes=2,
         batch=("gt_boxes", "gt_labels", "pred_boxes", "pred_scores", "pred_labels"),
         numbers=("num_classes", "max_detections")),
    Spec(f"{DET}.synthetic_scenes", dict(seed=0, num_images=2, image_size=24, max_objects=3, min_size=4, max_size=10,
                                         noise=0.05),
         numbers=("seed", "num_images", "image_size", "max_objects", "min_size", "max_size", "noise"),
         not_applicable={"batch": "no batch input (num_images is a count, checked by a Case)"}),
]
EXEMPT = {f"{DET}.Assignment": "a NamedTuple of assigner outputs", f"{DET}.Scenes": "a NamedTuple of arrays"}

# jaxdyn.models.TinyDetector (the detection family's model) is declared here.
MOD = "jaxdyn.models"
IMG = np.asarray(jax.random.uniform(jax.random.key(4), (2, 16, 16, 1)))


def _detector(x, **kw):
  from flax import nnx  # pylint: disable=import-outside-toplevel
  args = dict(in_channels=1, num_classes=3, width=4, image_size=16, anchor_scale=4.0)
  args.update(kw)
  return fn(f"{MOD}.TinyDetector")(**args, rngs=nnx.Rngs(0))(x)


case(f"{MOD}.TinyDetector", "in_channels", bad_count)(lambda v: _detector(IMG, in_channels=v))
case(f"{MOD}.TinyDetector", "num_classes", bad_count)(lambda v: _detector(IMG, num_classes=v))
case(f"{MOD}.TinyDetector", "width", bad_count)(lambda v: _detector(IMG, width=v))
case(f"{MOD}.TinyDetector", "image_size",
     st.one_of(st.integers(max_value=7), st.integers(9, 100).filter(lambda n: n % 8), non_integral))(
         lambda v: _detector(IMG, image_size=v))
case(f"{MOD}.TinyDetector", "anchor_scale", st.one_of(st.floats(max_value=0.0), st.just(math.nan)))(
    lambda v: _detector(IMG, anchor_scale=v))
case(f"{MOD}.TinyDetector", "x", st.sampled_from([np.ones((2, 16, 16, 3)), np.ones((2, 8, 8, 1)), np.ones((16, 16, 1)),
                                                  np.ones((2, 16, 16))]))(lambda v: _detector(v))
SPECS.append(Spec(f"{MOD}.TinyDetector", dict(x=IMG, in_channels=1, num_classes=3, width=4, image_size=16,
                                              anchor_scale=4.0), call=_detector,
                  floats=("x",), batch=("x",), empty=lambda out: all(np.shape(o)[0] == 0 for o in out),
                  numbers=("in_channels", "num_classes", "width", "image_size", "anchor_scale"),
                  not_applicable={"train": "unused (no dropout or normalisation statistics)",
                                  "key": "unused (as train)"}))

# FreeZe's pose core (jaxdyn.detection._pose): jittable, non-finite points propagate as NaN.
_R_TRUE = np.linalg.qr(_rng.normal(size=(3, 3)))[0]
_R_TRUE = _R_TRUE * np.sign(np.linalg.det(_R_TRUE))
PTS = _rng.uniform(-1, 1, (8, 3)).astype(np.float32)
PTS_D = (PTS @ _R_TRUE.T + np.array([0.5, 0.0, -1.0])).astype(np.float32)
PTS_W = _rng.uniform(0.5, 2.0, 8).astype(np.float32)
CAND_R = np.stack([_R_TRUE, _R_TRUE @ np.diag([-1.0, -1.0, 1.0])]).astype(np.float32)
CAND_T = np.array([[0.5, 0.0, -1.0]] * 2, np.float32)
bad_points = st.sampled_from([np.ones((8, 2), np.float32), np.ones((8,), np.float32), np.ones((2, 8, 3), np.float32),
                              np.ones((8, 3), np.complex64)])
bad_matches = st.sampled_from([np.ones((7, 3), np.float32), np.ones((8, 2), np.float32), np.ones((8,), np.float32)])
bad_threshold = st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf), st.booleans(), st.just("0.1"))
_RP = dict(num_iterations=8, inlier_threshold=0.1)
_KEY = jax.random.key(0)

case(f"{DET}.kabsch", "src", bad_points)(lambda v: fn(f"{DET}.kabsch")(v, PTS_D))
case(f"{DET}.kabsch", "dst", bad_matches)(lambda v: fn(f"{DET}.kabsch")(PTS, v))
case(f"{DET}.kabsch", "weights", st.sampled_from([np.ones(7, np.float32), np.ones((8, 1), np.float32),
                                                  -PTS_W, np.zeros(8, np.float32), PTS_W * np.nan]))(
    lambda v: fn(f"{DET}.kabsch")(PTS, PTS_D, v))
case(f"{DET}.kabsch", "weights", st.floats(min_value=-1e30, max_value=-1e-6))(
    lambda v: fn(f"{DET}.kabsch")(PTS, PTS_D, np.where(np.arange(8) == 2, v, PTS_W).astype(np.float32)))
case(f"{DET}.ransac_pose", "src", bad_points)(lambda v: fn(f"{DET}.ransac_pose")(_KEY, v, PTS_D, **_RP))
case(f"{DET}.ransac_pose", "dst", bad_matches)(lambda v: fn(f"{DET}.ransac_pose")(_KEY, PTS, v, **_RP))
case(f"{DET}.ransac_pose", "num_iterations", bad_count)(
    lambda v: fn(f"{DET}.ransac_pose")(_KEY, PTS, PTS_D, num_iterations=v, inlier_threshold=0.1))
case(f"{DET}.ransac_pose", "inlier_threshold", bad_threshold)(
    lambda v: fn(f"{DET}.ransac_pose")(_KEY, PTS, PTS_D, num_iterations=8, inlier_threshold=v))
case(f"{DET}.ransac_pose", "sample_size", st.one_of(st.integers(max_value=2), st.integers(9, 100), non_integral,
                                                    st.booleans()))(
    lambda v: fn(f"{DET}.ransac_pose")(_KEY, PTS, PTS_D, **_RP, sample_size=v))
case(f"{DET}.disambiguate_pose", "candidates_R",
     st.sampled_from([np.eye(3, dtype=np.float32), np.ones((2, 3, 2), np.float32), np.zeros((0, 3, 3), np.float32),
                      np.ones((2, 3, 3), np.complex64)]))(
    lambda v: fn(f"{DET}.disambiguate_pose")(v, CAND_T[:len(v)] if np.ndim(v) == 3 else CAND_T, PTS, PTS_D,
                                             inlier_threshold=0.1))
case(f"{DET}.disambiguate_pose", "candidates_t",
     st.sampled_from([np.zeros((3, 3), np.float32), np.zeros((2, 2), np.float32), np.zeros(3, np.float32)]))(
    lambda v: fn(f"{DET}.disambiguate_pose")(CAND_R, v, PTS, PTS_D, inlier_threshold=0.1))
case(f"{DET}.disambiguate_pose", "src2", bad_points)(
    lambda v: fn(f"{DET}.disambiguate_pose")(CAND_R, CAND_T, v, PTS_D, inlier_threshold=0.1))
case(f"{DET}.disambiguate_pose", "dst2", bad_matches)(
    lambda v: fn(f"{DET}.disambiguate_pose")(CAND_R, CAND_T, PTS, v, inlier_threshold=0.1))
case(f"{DET}.disambiguate_pose", "inlier_threshold", bad_threshold)(
    lambda v: fn(f"{DET}.disambiguate_pose")(CAND_R, CAND_T, PTS, PTS_D, inlier_threshold=v))

_PTS_RANGES = st.sampled_from([PTS * 1e-3, PTS * 1e4, PTS.astype(np.float16), np.zeros((8, 3), np.float32)])
SPECS += [
    Spec(f"{DET}.kabsch", dict(src=PTS, dst=PTS_D, weights=PTS_W), floats=("src", "dst", "weights"), jit=True,
         batch=("src", "dst", "weights"),
         ranges={"src": _PTS_RANGES, "dst": _PTS_RANGES,
                 "weights": st.sampled_from([PTS_W * 1e-20, PTS_W * 1e20, np.eye(8, dtype=np.float32)[3]])}),
    Spec(f"{DET}.ransac_pose", dict(key=_KEY, src=PTS, dst=PTS_D, num_iterations=8, inlier_threshold=0.1,
                                    sample_size=3),
         floats=("src", "dst"), keys=("key",), jit=True, batch=("src", "dst"),
         numbers=("num_iterations", "inlier_threshold", "sample_size"),
         ranges={"src": _PTS_RANGES, "inlier_threshold": st.sampled_from([1e-12, 1e12])}),
    Spec(f"{DET}.disambiguate_pose", dict(candidates_R=CAND_R, candidates_t=CAND_T, src2=PTS, dst2=PTS_D,
                                          inlier_threshold=0.1),
         floats=("candidates_R", "candidates_t", "src2", "dst2"), jit=True, batch=("src2", "dst2"),
         numbers=("inlier_threshold",),
         ranges={"src2": _PTS_RANGES, "inlier_threshold": st.sampled_from([1e-12, 1e12])}),
]
EXEMPT.update({f"{DET}.RansacPose": "a NamedTuple of ransac_pose's outputs",
               f"{DET}.PoseChoice": "a NamedTuple of disambiguate_pose's outputs"})

# --- techniques declared in their own ``_detection_<technique>.py`` beside this file, merged here ----------
import importlib as _importlib  # noqa: E402
import pathlib as _pathlib  # noqa: E402

for _path in sorted(_pathlib.Path(__file__).parent.glob("_detection_*.py")):
  _mod = _importlib.import_module(f"tests.scale.input_policy.{_path.stem}")
  CASES.extend(_mod.CASES)
  SPECS.extend(_mod.SPECS)
  EXEMPT.update(_mod.EXEMPT)
