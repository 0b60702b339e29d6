"""Input-policy declarations for `jaxdyn.regularization` (the vocabulary is in ``spec.py``)."""

from __future__ import annotations

import math

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


# --- clause specs ---------------------------------------------------------------------------------
_MSD = dict(head_fn=head, head_params=W, features=H, key=KEY, num_samples=4, rate=0.5)
_FLAGS = {"head_fn": "any callable; a wrong one fails when called, inside the user's code",
          "head_params": "any PyTree the head takes; passed through to head_fn"}
SPECS += [
    Spec(f"{REG}.softmax_cross_entropy_loss", dict(logits=LOGITS, labels=LABELS), floats=("logits",),
         labels=("labels",), jit=True, batch=("logits", "labels")),
    Spec(f"{REG}.multi_sample_dropout_loss", dict(_MSD, labels=LABELS), floats=("features",), labels=("labels",),
         jit=True, batch=("features", "labels"), numbers=("num_samples", "rate"), keys=("key",),
         not_applicable={**_FLAGS, "loss_fn": "a user loss; its labels are its own business"}),
    Spec(f"{REG}.multi_sample_dropout_logits", _MSD, floats=("features",), batch=("features",),
         empty=lambda out: np.shape(out) == (4, 0, C), numbers=("num_samples", "rate"), keys=("key",),
         not_applicable=_FLAGS),
    Spec(f"{REG}.multi_sample_dropout_masks", dict(key=KEY, shape=(B, 4), num_samples=4, rate=0.5),
         numbers=("num_samples", "rate"), keys=("key",),
         not_applicable={"shape": "a shape; jax.random.bernoulli validates it"}),
    Spec(f"{REG}.MultiSampleDropoutHead", dict(in_features=4, out_features=C, num_samples=4, rate=0.5),
         call=lambda **kw: fn(f"{REG}.MultiSampleDropoutHead")(**kw, rngs=nnx.Rngs(0)),
         numbers=("num_samples", "rate"),
         not_applicable={"in_features": "nnx.Linear validates it", "out_features": "nnx.Linear validates it"}),
]

# Public names with nothing to validate, each with the reason.
EXEMPT = {
    f"{REG}.LossFn": "a typing Protocol",
}
