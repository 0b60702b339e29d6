"""Input-policy declarations for `jaxdyn.regularization` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import *  # noqa: F403  (the shared vocabulary)
from tests.scale.input_policy.spec import Case, Spec, collector, fn

REG = "jaxdyn.regularization"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

# --- regularization -------------------------------------------------------------------------------
for name in ("multi_sample_dropout_loss", "multi_sample_dropout_logits"):
  f = f"{REG}.{name}"
  extra = (LABELS,) if name.endswith("loss") else ()
  case(f, "rate", bad_rate)(lambda v, f=f, e=extra: fn(f)(head, W, H, *e, key=KEY, rate=v))
  case(f, "num_samples", bad_count)(lambda v, f=f, e=extra: fn(f)(head, W, H, *e, key=KEY, num_samples=v))
case(f"{REG}.multi_sample_dropout_masks", "rate", bad_rate)(
    lambda v: fn(f"{REG}.multi_sample_dropout_masks")(KEY, (B, 4), rate=v))
case(f"{REG}.multi_sample_dropout_masks", "num_samples", bad_count)(
    lambda v: fn(f"{REG}.multi_sample_dropout_masks")(KEY, (B, 4), num_samples=v))
case(f"{REG}.MultiSampleDropoutHead", "rate", bad_rate)(
    lambda v: fn(f"{REG}.MultiSampleDropoutHead")(4, C, rate=v, rngs=nnx.Rngs(0)))
case(f"{REG}.softmax_cross_entropy_loss", "labels", wrong_batch)(
    lambda n: fn(f"{REG}.softmax_cross_entropy_loss")(logits=LOGITS, labels=np.arange(n, dtype=np.int32) % C))
case(f"{REG}.multi_sample_dropout_masks", "shape", st.one_of(
    st.integers(max_value=-1).map(lambda d: (B, d)), st.just((B, 2.5)), st.just((True, 4)), st.just(None)))(
    lambda v: fn(f"{REG}.multi_sample_dropout_masks")(KEY, v))
for name in ("multi_sample_dropout_loss", "multi_sample_dropout_logits"):
  f = f"{REG}.{name}"
  extra = (LABELS,) if name.endswith("loss") else ()
  # Explicit masks: boolean, shape (num_samples, *features.shape), and never together with a key.
  case(f, "masks", st.one_of(wrong_batch.map(lambda n: np.ones((4, n, 4), bool)),
                             st.integers(1, 9).filter(lambda m: m != 4).map(lambda m: np.ones((m, B, 4), bool)),
                             st.sampled_from([np.float32, np.int32, np.uint8]).map(lambda t: np.ones((4, B, 4), t))))(
      lambda v, f=f, e=extra: fn(f)(head, W, H, *e, masks=v, num_samples=4))
  case(f, "key", st.sampled_from([0, 1, 2]).map(jax.random.key))(
      lambda v, f=f, e=extra: fn(f)(head, W, H, *e, key=v, masks=np.ones((4, B, 4), bool), num_samples=4))
for arg in ("in_features", "out_features"):
  case(f"{REG}.MultiSampleDropoutHead", arg, bad_count)(
      lambda v, arg=arg: fn(f"{REG}.MultiSampleDropoutHead")(**{"in_features": 4, "out_features": C, arg: v},
                                                             rngs=nnx.Rngs(0)))


# --- clause specs ---------------------------------------------------------------------------------
_MSD = dict(head_fn=head, head_params=W, features=H, key=KEY, num_samples=4, rate=0.5)
_MASKS = np.asarray(jax.random.bernoulli(jax.random.key(1), 0.5, (4, B, 4)))
_FLAGS = {"head_fn": "any callable; a wrong one fails when called, inside the user's code",
          "head_params": "any PyTree the head takes; passed through to head_fn",
          "masks": "boolean keep-masks: no NaN, no class ids; their dtype, shape and exclusion with key are Cases"}
_LOSS_FN = {"loss_fn": "a user loss; its labels are its own business"}
_MASKS_SPEC_BATCH = {"batch": "the key Spec of the same function covers the empty batch; masks must have "
                              "the features' shape, which the masks Cases check"}
SPECS += [
    Spec(f"{REG}.softmax_cross_entropy_loss", dict(logits=LOGITS, labels=LABELS), floats=("logits",),
         labels=("labels",), jit=True, batch=("logits", "labels")),
    Spec(f"{REG}.softmax_cross_entropy_loss", dict(logits=LOGITS, labels=ONEHOT), floats=("logits", "labels"),
         jit=True, batch=("logits", "labels")),  # soft labels
    Spec(f"{REG}.multi_sample_dropout_loss", dict(_MSD, labels=LABELS), floats=("features",), labels=("labels",),
         jit=True, batch=("features", "labels"), numbers=("num_samples", "rate"), keys=("key",),
         not_applicable={**_FLAGS, **_LOSS_FN}),
    Spec(f"{REG}.multi_sample_dropout_loss", dict(_MSD, labels=LABELS, key=None, masks=_MASKS),
         floats=("features",), labels=("labels",), jit=True, numbers=("num_samples", "rate"),
         not_applicable={**_FLAGS, **_LOSS_FN, **_MASKS_SPEC_BATCH}),
    Spec(f"{REG}.multi_sample_dropout_logits", _MSD, floats=("features",), jit=True, batch=("features",),
         empty=lambda out: np.shape(out) == (4, 0, C), numbers=("num_samples", "rate"), keys=("key",),
         not_applicable=_FLAGS),
    Spec(f"{REG}.multi_sample_dropout_logits", dict(_MSD, key=None, masks=_MASKS), floats=("features",),
         jit=True, numbers=("num_samples", "rate"), not_applicable={**_FLAGS, **_MASKS_SPEC_BATCH}),
    Spec(f"{REG}.multi_sample_dropout_masks", dict(key=KEY, shape=(B, 4), num_samples=4, rate=0.5),
         numbers=("num_samples", "rate"), keys=("key",)),
    Spec(f"{REG}.MultiSampleDropoutHead", dict(in_features=4, out_features=C, num_samples=4, rate=0.5),
         call=lambda **kw: fn(f"{REG}.MultiSampleDropoutHead")(**kw, rngs=nnx.Rngs(0)),
         numbers=("in_features", "out_features", "num_samples", "rate")),
]

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{REG}.LossFn": "a typing Protocol",
}
