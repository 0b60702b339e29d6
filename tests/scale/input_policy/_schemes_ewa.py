"""Input-policy declarations for Experts Weights Averaging in `jaxdyn.schemes` (merged by ``schemes.py``).

Experts Weights Averaging acts on parameter trees (the averaging, the collapse, the mask) and on token
batches (`MoEFeedForward`); the numbers are checked in ``tests/schemes/test_ewa.py``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from hypothesis import strategies as st

from tests.scale.input_policy.spec import KEY, Case, Spec, bad_count, collector, fn, non_integral

SCH = "jaxdyn.schemes"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

PARAMS = {"blk": {"experts": {"w": jnp.arange(6.0).reshape(3, 2)}}, "head": jnp.ones(2)}
TOKENS = np.asarray(jax.random.normal(jax.random.key(3), (4, 5, 3)))
bad_share = st.one_of(st.floats(max_value=-1e-6), st.floats(min_value=1.0 + 1e-6), st.just(math.nan), st.booleans())
bad_experts = st.one_of(st.integers(max_value=1), non_integral, st.booleans())
not_a_mapping = st.sampled_from([None, 3, "params", [1, 2], jnp.ones(2)])


def _moe(x, key, **kw):
  return fn(f"{SCH}.MoEFeedForward")(**kw, rngs=nnx.Rngs(0))(x, key=key)


def _ewa_update(share_rate, **kw):
  tx = fn(f"{SCH}.experts_weights_averaging")(share_rate, **kw)
  grads = jax.tree.map(jnp.ones_like, PARAMS)
  return tx.update(grads, tx.init(PARAMS), PARAMS)[0]


case(f"{SCH}.random_partition", "num_experts", bad_count)(
    lambda v: fn(f"{SCH}.random_partition")(KEY, 6, v))
case(f"{SCH}.random_partition", "num_tokens", st.one_of(st.integers(max_value=-1), non_integral, st.booleans()))(
    lambda v: fn(f"{SCH}.random_partition")(KEY, v, 2))
case(f"{SCH}.MoEFeedForward", "num_experts", bad_experts)(lambda v: _moe(TOKENS, KEY, dim=3, hidden=4, num_experts=v))
case(f"{SCH}.MoEFeedForward", "dim", bad_count)(lambda v: _moe(TOKENS, KEY, dim=v, hidden=4, num_experts=2))
case(f"{SCH}.MoEFeedForward", "hidden", bad_count)(lambda v: _moe(TOKENS, KEY, dim=3, hidden=v, num_experts=2))
case(f"{SCH}.MoEFeedForward", "activation", st.sampled_from([None, "gelu", 3]))(
    lambda v: _moe(TOKENS, KEY, dim=3, hidden=4, num_experts=2, activation=v))
case(f"{SCH}.MoEFeedForward", "x", st.integers(1, 9).filter(lambda n: n != 3))(
    lambda n: _moe(np.ones((4, 5, n), np.float32), KEY, dim=3, hidden=4, num_experts=2))
case(f"{SCH}.MoEFeedForward", "key", st.sampled_from(["key", 0, 1.5, (0, 1), np.zeros(2, np.float32)]))(
    lambda v: _moe(TOKENS, v, dim=3, hidden=4, num_experts=2))
case(f"{SCH}.average_experts", "share_rate", bad_share)(lambda v: fn(f"{SCH}.average_experts")(PARAMS, v))
case(f"{SCH}.average_experts", "mask", st.sampled_from([{"blk": True}, [True], {"head": False}]))(
    lambda v: fn(f"{SCH}.average_experts")(PARAMS, 0.5, mask=v))
case(f"{SCH}.average_experts", "mask", st.integers(0, 3))(  # selects a leaf without >= 2 experts
    lambda n: fn(f"{SCH}.average_experts")({"experts": jnp.ones((1,) * n)} if n else {"experts": jnp.float32(1)}, 0.5))
case(f"{SCH}.collapse_experts", "params", not_a_mapping)(lambda v: fn(f"{SCH}.collapse_experts")(v))
case(f"{SCH}.collapse_experts", "params", st.sampled_from([3, "w", None]))(
    lambda v: fn(f"{SCH}.collapse_experts")({"blk": {"experts": v}}))
case(f"{SCH}.share_rate_warmup", "peak", bad_share)(lambda v: fn(f"{SCH}.share_rate_warmup")(v, 10))
case(f"{SCH}.share_rate_warmup", "warmup_steps", bad_count)(lambda v: fn(f"{SCH}.share_rate_warmup")(0.3, v))
case(f"{SCH}.experts_weights_averaging", "share_rate", bad_share)(lambda v: _ewa_update(v))
case(f"{SCH}.experts_weights_averaging", "mask", st.sampled_from([{"blk": True}, [True], {"head": False}]))(
    lambda v: _ewa_update(0.5, mask=v))

_TREE = "a parameter PyTree; the expert leaves are found by mask (Cases), every other leaf is passed through"
SPECS += [
    Spec(f"{SCH}.random_partition", dict(key=KEY, num_tokens=7, num_experts=3),
         numbers=("num_tokens", "num_experts"), keys=("key",)),
    Spec(f"{SCH}.MoEFeedForward", dict(x=TOKENS, key=KEY, dim=3, hidden=4, num_experts=2), call=_moe,
         floats=("x",), batch=("x",), empty=lambda out: np.shape(out) == (0, 5, 3),
         numbers=("dim", "hidden", "num_experts"),
         not_applicable={"activation": "a callable, checked by a Case",
                         "key": "a call argument: None selects the mean expert (inference), a wrong key is a Case"}),
    Spec(f"{SCH}.average_experts", dict(params=PARAMS, share_rate=0.5), numbers=("share_rate",),
         not_applicable={"params": _TREE, "mask": "a tree of bools or a callable, checked by Cases"}),
    Spec(f"{SCH}.collapse_experts", dict(params=PARAMS),
         not_applicable={"params": "a pure dict of parameters; its kind and its experts entries checked by Cases"}),
    Spec(f"{SCH}.expert_mask", dict(params=PARAMS),
         not_applicable={"params": "any PyTree: leaves under a key 'experts' are marked, the rest are not"}),
    Spec(f"{SCH}.share_rate_warmup", dict(peak=0.3, warmup_steps=10), call=lambda **kw: fn(f"{SCH}.share_rate_warmup")(
        **kw)(5), numbers=("peak", "warmup_steps")),
    Spec(f"{SCH}.experts_weights_averaging", dict(share_rate=0.5), call=_ewa_update, numbers=("share_rate",),
         not_applicable={"mask": "a tree of bools or a callable, checked by Cases"}),
]
EXEMPT = {f"{SCH}.EWAState": "a NamedTuple of optimizer state"}
del optax
