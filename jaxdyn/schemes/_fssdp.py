"""Hecate's fully sharded sparse data parallelism (FSSDP) for a routed MoE layer, beside FSDP and EP.

Qing, Zhu, Li, Lei, Sun, Guan, Zhao, Chen, Huang, Wang, Cui, "Hecate: Unlocking Efficient Sparse Model
Training via Fully Sharded Sparse Data Parallelism", 2025, https://arxiv.org/abs/2502.02581.

The layer. ``E`` experts, each a two-layer feed-forward network ``FFN_e(x) = gelu(x W1_e + b1_e) W2_e +
b2_e`` (``W1_e`` of shape ``(d, h)``, ``P = 2 d h + h + d`` parameters per expert), and a top-1
softmax router ``R`` of shape ``(d, E)``: token ``x`` goes to ``e(x) = argmax_e softmax(x R)_e`` and
the layer returns ``y = g(x) FFN_{e(x)}(x)`` with the gate ``g(x) = max_e softmax(x R)_e``, through
which the router gets its gradient (`moe_reference`, the unsharded definition). A token that a
sharded scheme cannot serve within its fixed capacity ("overflow") gets ``y = 0`` (the caller's
residual connection carries it, as dropped tokens in Switch-style MoEs) and no gradient; every
scheme returns the number of such tokens per device next to ``y``, so a drop is never silent.

The three schemes run the same math over one mesh axis of ``D`` devices with `jax.shard_map`, the
``T`` tokens split evenly (``T / D = n`` per device) and all shapes static. The bytes below are what
one device sends per forward + backward step, in float32 (4 bytes), as `collective_bytes` counts
them; ``(D - 1) / D`` is the share of a tensor that leaves its device.

1. `moe_fsdp`, plain FSDP (ZeRO-3): every expert's parameters are split over the axis (the hidden
   dimension of ``W1, b1, W2``, the output dimension of ``b2``), so each device stores ``E P / D``
   parameters and the same share of their gradients and optimizer state. Each step all-gathers
   every expert (forward) and reduce-scatters every expert's gradient (backward):
   ``bytes_FSDP = 2 (D - 1) / D * E P * 4``.
2. `moe_fssdp`, FSSDP: the same sharded storage, but each device materializes only the experts its
   local tokens use, at most ``C`` of them (``capacity``), chosen as its ``C`` most used experts
   (ties to the lower id). SparseAllGather: the devices all-gather their ``C`` wanted expert ids
   (``(D - 1) C`` int32), then each device, as owner of one shard of every expert, sends to every
   device its shards of exactly the experts that device asked for, in one all-to-all; the receiver
   concatenates the ``D`` shards. SparseReduceScatter is its transpose, which reverse-mode autodiff
   derives: the all-to-all back to the owners, which scatter-add the gradient shards of the experts
   that several devices used. Tokens whose expert is not among the device's ``C`` overflow.
   ``bytes_FSSDP = 2 (D - 1) / D * C P * 4 + (D - 1) C * 4``: a ratio ``~ C / E`` to FSDP, with
   ``C`` the number of distinct experts one device's tokens need (small when loads are skewed).
3. `moe_expert_parallel`, expert parallelism: device ``k`` stores experts ``k E / D ... (k + 1) E / D
   - 1`` whole (``E % D == 0``); tokens travel instead of weights. Each device packs its tokens into a
   ``(E, capacity, d)`` buffer (``capacity`` slots per expert, first come first served in token
   order; the rest overflow), an all-to-all brings every expert its tokens, the owners compute, and
   the reverse all-to-all returns the outputs; the backward repeats both in reverse:
   ``bytes_EP = 4 (D - 1) / D * E capacity d * 4``, independent of the parameter count (3 instead of
   4 all-to-alls when the tokens need no gradient: the dispatch's transpose then drops out).

Every scheme also sums the router's gradient over the devices (an all-reduce of ``d E`` floats,
``2 (D - 1) / D * d E * 4`` bytes), which autodiff of the replicated router produces.

Scope: the paper's heterogeneous sharding, re-materialization and topology-aware dispatch are not
implemented; the experts are materialized "from scratch" every step as the abstract describes, with
even (homogeneous) shards. The per-device compute applies each materialized expert to all local
tokens and keeps each token's own result (a one-hot selection: ``K n d h`` FLOPs for ``K``
materialized experts), which is exact but not FLOP-efficient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxdyn import _validation

__all__ = [
    "collective_bytes",
    "init_moe_params",
    "moe_expert_parallel",
    "moe_fsdp",
    "moe_fssdp",
    "moe_param_specs",
    "moe_reference",
]

_KEYS = ("router", "w1", "b1", "w2", "b2")
SCHEMES = ("fsdp", "fssdp", "ep")


def init_moe_params(key: jax.Array, dim: int, hidden: int, num_experts: int) -> dict[str, jax.Array]:
  """Parameters of the routed MoE layer: ``{"router", "w1", "b1", "w2", "b2"}``.

  ``router`` ``(dim, E)`` and the expert kernels ``w1`` ``(E, dim, hidden)``, ``w2`` ``(E, hidden, dim)``
  are LeCun-normal (as ``nnx.Linear``), the biases ``b1`` ``(E, hidden)`` and ``b2`` ``(E, dim)`` zero.

  Args:
    key: a `jax.random` key.
    dim: token width ``d``.
    hidden: hidden width ``h`` of each expert.
    num_experts: ``E >= 1``.

  Returns:
    A dict of float32 arrays, unsharded (place them with `moe_param_specs`).

  Example:
    >>> import jax
    >>> p = init_moe_params(jax.random.key(0), 4, 8, 2)
    >>> {k: v.shape for k, v in p.items()}["w1"]
    (2, 4, 8)
  """
  _validation.check_key("key", key)
  dim = _validation.check_int("dim", dim, lower=1)
  hidden = _validation.check_int("hidden", hidden, lower=1)
  num_experts = _validation.check_int("num_experts", num_experts, lower=1)
  kr, k1, k2 = jax.random.split(key, 3)
  init = jax.nn.initializers.lecun_normal()
  return {
      "router": init(kr, (dim, num_experts)),
      "w1": jax.vmap(lambda k: init(k, (dim, hidden)))(jax.random.split(k1, num_experts)),
      "b1": jnp.zeros((num_experts, hidden)),
      "w2": jax.vmap(lambda k: init(k, (hidden, dim)))(jax.random.split(k2, num_experts)),
      "b2": jnp.zeros((num_experts, dim)),
  }


def _check_params(params) -> tuple[int, int, int]:
  """(E, d, h) of a parameter dict, or raises naming ``params``."""
  if not isinstance(params, Mapping):
    raise TypeError(f"params: must be a dict with keys {list(_KEYS)}, got {type(params).__name__}")
  missing = [k for k in _KEYS if k not in params]
  if missing:
    raise ValueError(f"params: must be a dict with keys {list(_KEYS)}, missing {missing}")
  shapes = {k: tuple(np.shape(params[k])) for k in _KEYS}
  if len(shapes["w1"]) != 3:
    raise ValueError(f"params: 'w1' must have shape (E, dim, hidden), got {shapes['w1']}")
  e, d, h = shapes["w1"]
  want = {"router": (d, e), "w1": (e, d, h), "b1": (e, h), "w2": (e, h, d), "b2": (e, d)}
  for k in _KEYS:
    if shapes[k] != want[k]:
      raise ValueError(f"params: {k!r} must have shape {want[k]} (from w1 {shapes['w1']}), got {shapes[k]}")
  if e < 1:
    raise ValueError("params: must hold at least one expert, got E = 0")
  return e, d, h


def _check_tokens(x, dim: int) -> None:
  if np.ndim(x) != 2 or np.shape(x)[-1] != dim:
    raise ValueError(f"x: must be tokens of shape (T, {dim}), got shape {np.shape(x)}")
  _validation.check_nonempty("x", x, what="tokens")


def _route(router: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Top-1 softmax routing: expert ids (int32) and gates ``max softmax(x R)``."""
  probs = jax.nn.softmax(x @ router, axis=-1)
  expert = jnp.argmax(probs, axis=-1).astype(jnp.int32)  # a NaN token picks the NaN entry: its gate is NaN
  gate = jnp.take_along_axis(probs, expert[:, None], axis=-1)[:, 0]
  return expert, gate


def _apply(x, slot, w1, b1, w2, b2):
  """``y[t] = FFN_{slot[t]}(x[t])`` over ``K`` stacked experts; ``slot[t] < 0`` gives 0 (overflow).

  Every expert runs on every token and ``jnp.where`` keeps the token's own (so a non-finite value in
  one expert or token stays in the rows that use it).
  """
  k = w1.shape[0]
  hid = jax.nn.gelu(jnp.einsum("nd,kdh->knh", x, w1) + b1[:, None])
  out = jnp.einsum("knh,khd->knd", hid, w2) + b2[:, None]
  mine = slot[None, :] == jnp.arange(k, dtype=slot.dtype)[:, None]  # (K, n)
  return jnp.where(mine[..., None], out, 0.0).sum(0)


def moe_reference(params: Mapping[str, jax.Array], x: jax.Array) -> jax.Array:
  """The unsharded routed MoE layer: ``y = g(x) FFN_{e(x)}(x)`` with top-1 softmax routing (module doc).

  Args:
    params: `init_moe_params`'s dict (``router`` ``(d, E)``, ``w1`` ``(E, d, h)``, ``b1``, ``w2``, ``b2``).
    x: tokens ``(T, d)``, ``T >= 1``.

  Returns:
    ``y`` of shape ``(T, d)``. No token is dropped.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> p = init_moe_params(jax.random.key(0), 4, 8, 2)
    >>> moe_reference(p, jnp.ones((3, 4))).shape
    (3, 4)
  """
  _, d, _ = _check_params(params)
  _check_tokens(x, d)
  expert, gate = _route(params["router"], x)
  return gate[:, None] * _apply(x, expert, params["w1"], params["b1"], params["w2"], params["b2"])


def moe_param_specs(scheme: str, axis: str = "data") -> dict[str, P]:
  """How each scheme stores the parameters over mesh axis ``axis`` (``PartitionSpec`` per key).

  ``"fsdp"`` and ``"fssdp"`` split every expert: ``w1`` and ``b1`` on the hidden dimension, ``w2`` on
  its rows (hidden), ``b2`` on the output dimension; ``"ep"`` gives each device whole experts (the
  leading axis). The router is replicated in all three. Optimizer state built with ``optax`` from
  params placed this way (``jax.device_put(p, NamedSharding(mesh, spec))``) is sharded alike.

  Args:
    scheme: ``"fsdp"``, ``"fssdp"`` or ``"ep"``.
    axis: the mesh axis name.

  Returns:
    A dict of ``jax.sharding.PartitionSpec`` with the keys of `init_moe_params`.

  Example:
    >>> moe_param_specs("ep")["w1"]
    P('data', None, None)
  """
  _validation.check_choice("scheme", scheme, SCHEMES)
  if not isinstance(axis, str) or not axis:
    raise TypeError(f"axis: must be a mesh axis name (a non-empty str), got {axis!r}")
  if scheme == "ep":
    return {"router": P(), "w1": P(axis, None, None), "b1": P(axis, None), "w2": P(axis, None, None),
            "b2": P(axis, None)}
  return {"router": P(), "w1": P(None, None, axis), "b1": P(None, axis), "w2": P(None, axis, None),
          "b2": P(None, axis)}


def _setup(params, x, mesh, axis, scheme):
  """Checks the common arguments; returns (E, d, h, D) and the shard_map-ed specs."""
  e, d, h = _check_params(params)
  _check_tokens(x, d)
  if not isinstance(mesh, Mesh):
    raise TypeError(f"mesh: must be a jax.sharding.Mesh, got {type(mesh).__name__}")
  if not isinstance(axis, str) or axis not in mesh.axis_names:
    raise ValueError(f"axis: must be one of the mesh's axis names {list(mesh.axis_names)}, got {axis!r}")
  n_dev = mesh.shape[axis]
  if np.shape(x)[0] % n_dev:
    raise ValueError(f"x: the number of tokens must be divisible by the {n_dev} devices of axis {axis!r}, "
                     f"got shape {np.shape(x)}")
  if scheme == "ep":
    if e % n_dev:
      raise ValueError(f"params: expert parallelism needs the {e} experts divisible by the {n_dev} devices")
  elif h % n_dev or d % n_dev:
    raise ValueError(f"params: FSDP/FSSDP shard each expert, so hidden {h} and dim {d} must be divisible by "
                     f"the {n_dev} devices of axis {axis!r}")
  specs = moe_param_specs(scheme, axis)
  return (e, d, h, n_dev), tuple(specs[k] for k in _KEYS)


def _weights(params):
  return tuple(params[k] for k in _KEYS)


def moe_fsdp(params: Mapping[str, jax.Array], x: jax.Array, *, mesh: Mesh, axis: str = "data"
             ) -> tuple[jax.Array, jax.Array]:
  """The MoE layer under plain FSDP: all-gather every expert, compute locally (module doc, scheme 1).

  Args:
    params: `init_moe_params`'s dict; stored as `moe_param_specs` ``("fsdp")`` gives (``hidden`` and
      ``dim`` divisible by the axis size ``D``).
    x: tokens ``(T, d)``, ``T`` divisible by ``D``, split over ``axis``.
    mesh: a ``jax.sharding.Mesh``.
    axis: the name of the mesh axis to shard over.

  Returns:
    ``(y, overflow)``: ``y`` ``(T, d)`` equal to `moe_reference`, and the int32 tokens dropped per
    device ``(D,)``, always zero here (every expert is materialized).

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> p = init_moe_params(jax.random.key(0), 4, 8, 2)
    >>> y, overflow = moe_fsdp(p, jnp.ones((3, 4)), mesh=mesh)
    >>> bool(jnp.allclose(y, moe_reference(p, jnp.ones((3, 4))), atol=1e-6)), overflow.tolist()
    (True, [0])
  """
  _, specs = _setup(params, x, mesh, axis, "fsdp")

  def body(router, w1, b1, w2, b2, xl):
    full = [jax.lax.all_gather(w, axis, axis=a, tiled=True) for w, a in ((w1, 2), (b1, 1), (w2, 1), (b2, 1))]
    expert, gate = _route(router, xl)
    y = gate[:, None] * _apply(xl, expert, *full)
    return y, jnp.zeros((1,), jnp.int32)

  f = jax.shard_map(body, mesh=mesh, in_specs=(*specs, P(axis)), out_specs=(P(axis), P(axis)))
  return f(*_weights(params), x)


def _check_capacity(capacity, upper: int) -> int:
  return _validation.check_int("capacity", capacity, lower=1, upper=upper)


def moe_fssdp(params: Mapping[str, jax.Array], x: jax.Array, *, mesh: Mesh, capacity: int, axis: str = "data"
              ) -> tuple[jax.Array, jax.Array]:
  """The MoE layer under FSSDP: sparse all-gather of the experts local tokens use (module doc, scheme 2).

  Per device: route the local tokens; pick the (at most) ``capacity`` experts with the most local
  tokens (ties to the lower id; an expert with no local token serves no token: its slot is still
  filled and sent, as shapes are static); all-gather those id lists; all-to-all each owner's shards
  of exactly the requested experts; concatenate the shards; compute. The experts' gradient goes back
  by the transpose, the sparse reduce-scatter (all-to-all to the owners, scatter-add into their
  shards). A token whose expert is not materialized overflows: ``y = 0`` for it and no gradient from
  it, counted.

  Args:
    params: `init_moe_params`'s dict; stored as `moe_param_specs` ``("fssdp")`` gives (the same as
      FSDP; ``hidden`` and ``dim`` divisible by ``D``).
    x: tokens ``(T, d)``, ``T`` divisible by ``D``, split over ``axis``.
    mesh: a ``jax.sharding.Mesh``.
    capacity: ``C`` in ``[1, E]``, experts materialized per device (a static shape). ``C = E`` never
      overflows; ``C`` = the largest number of distinct experts one device's tokens use does not either.
    axis: the name of the mesh axis to shard over.

  Returns:
    ``(y, overflow)``: ``y`` ``(T, d)`` (`moe_reference` on the tokens that did not overflow, 0 on
    those that did) and the int32 count of overflowing tokens per device ``(D,)``.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> p = init_moe_params(jax.random.key(0), 4, 8, 2)
    >>> y, overflow = moe_fssdp(p, jnp.ones((3, 4)), mesh=mesh, capacity=1)  # all 3 tokens: one expert
    >>> bool(jnp.allclose(y, moe_reference(p, jnp.ones((3, 4))), atol=1e-6)), overflow.tolist()
    (True, [0])
  """
  (e, _, _, _), specs = _setup(params, x, mesh, axis, "fssdp")
  c = _check_capacity(capacity, e)

  def sparse_all_gather(shard, ids, shard_axis):
    # shard: (E, ...) my piece of every expert; ids: (D, C) the experts each device asked for.
    send = shard[ids]  # (D, C, ...): for device j, my shard of each expert it asked for
    recv = jax.lax.all_to_all(send, axis, 0, 0, tiled=True)  # (D, C, ...): shard s from owner s
    recv = jnp.moveaxis(recv, 0, shard_axis)  # (C, ..., D, piece, ...): the owners' shards side by side
    return recv.reshape(recv.shape[:shard_axis] + (-1,) + recv.shape[shard_axis + 2:])  # (C, ...) whole

  def body(router, w1, b1, w2, b2, xl):
    expert, gate = _route(router, xl)
    counts = jnp.zeros((e,), jnp.int32).at[expert].add(1)
    top, ids = jax.lax.top_k(counts, c)
    used = top > 0
    all_ids = jax.lax.all_gather(ids.astype(jnp.int32), axis)  # (D, C): the small id lists
    mat = [sparse_all_gather(w, all_ids, a) for w, a in ((w1, 2), (b1, 1), (w2, 1), (b2, 1))]
    match = (expert[:, None] == ids[None, :]) & used[None, :]  # (n, C)
    slot = jnp.where(match.any(1), jnp.argmax(match, axis=1), -1)
    y = gate[:, None] * _apply(xl, slot, *mat)
    return y, (slot < 0).sum(dtype=jnp.int32)[None]

  f = jax.shard_map(body, mesh=mesh, in_specs=(*specs, P(axis)), out_specs=(P(axis), P(axis)))
  return f(*_weights(params), x)


def moe_expert_parallel(params: Mapping[str, jax.Array], x: jax.Array, *, mesh: Mesh, capacity: int,
                        axis: str = "data") -> tuple[jax.Array, jax.Array]:
  """The MoE layer under expert parallelism: tokens all-to-all to their expert's owner (module doc, scheme 3).

  Per device: route the local tokens; the ``i``-th local token of expert ``e`` (in token order) takes
  slot ``i`` of ``e``'s ``capacity`` slots when ``i < capacity`` and overflows otherwise (``y = 0``,
  no gradient, counted); all-to-all the ``(E, capacity, d)`` buffer so that each device receives the
  tokens of its ``E / D`` experts from every device; compute; the reverse all-to-all returns them.

  Args:
    params: `init_moe_params`'s dict; stored as `moe_param_specs` ``("ep")`` gives (``E`` divisible
      by ``D``).
    x: tokens ``(T, d)``, ``T`` divisible by ``D``, split over ``axis``.
    mesh: a ``jax.sharding.Mesh``.
    capacity: token slots per expert per device, in ``[1, T / D]``; ``T / D`` never overflows.
    axis: the name of the mesh axis to shard over.

  Returns:
    ``(y, overflow)``: ``y`` ``(T, d)`` (`moe_reference` on the tokens that did not overflow, 0 on
    those that did) and the int32 count of overflowing tokens per device ``(D,)``.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> p = init_moe_params(jax.random.key(0), 4, 8, 2)
    >>> y, overflow = moe_expert_parallel(p, jnp.ones((3, 4)), mesh=mesh, capacity=2)
    >>> overflow.tolist(), y[2].tolist()  # the third token of the same expert overflows
    ([1], [0.0, 0.0, 0.0, 0.0])
  """
  (e, d, _, n_dev), specs = _setup(params, x, mesh, axis, "ep")
  n = np.shape(x)[0] // n_dev
  cap = _check_capacity(capacity, n)
  local = e // n_dev

  def body(router, w1, b1, w2, b2, xl):
    expert, gate = _route(router, xl)
    onehot = expert[:, None] == jnp.arange(e, dtype=jnp.int32)[None, :]  # (n, E)
    pos = jnp.take_along_axis(jnp.cumsum(onehot, axis=0, dtype=jnp.int32), expert[:, None], axis=1)[:, 0] - 1
    keep = pos < cap
    where = jnp.where(keep, pos, cap)  # an overflowing token writes out of range: dropped
    buf = jnp.zeros((e, cap, d), xl.dtype).at[expert, where].set(xl, mode="drop")
    recv = jax.lax.all_to_all(buf.reshape(n_dev, local, cap, d), axis, 0, 0, tiled=True)  # (D, E/D, cap, d)
    xin = jnp.swapaxes(recv, 0, 1).reshape(local, n_dev * cap, d)
    hid = jax.nn.gelu(jnp.einsum("kmd,kdh->kmh", xin, w1) + b1[:, None])
    out = jnp.einsum("kmh,khd->kmd", hid, w2) + b2[:, None]
    back = jax.lax.all_to_all(jnp.swapaxes(out.reshape(local, n_dev, cap, d), 0, 1), axis, 0, 0, tiled=True)
    back = back.reshape(e, cap, d)  # back[expert, slot]: my tokens' outputs
    got = back.at[expert, where].get(mode="fill", fill_value=0.0)
    y = gate[:, None] * jnp.where(keep[:, None], got, 0.0)
    return y, (~keep).sum(dtype=jnp.int32)[None]

  f = jax.shard_map(body, mesh=mesh, in_specs=(*specs, P(axis)), out_specs=(P(axis), P(axis)))
  return f(*_weights(params), x)


# --- communication volume ---------------------------------------------------------------------------

def _axis_size(eqn, sizes: Mapping[str, int]) -> int:
  names = eqn.params.get("axis_name", eqn.params.get("axes"))
  names = names if isinstance(names, (tuple, list)) else (names,)
  total = 1
  for name in names:
    if name not in sizes:
      raise ValueError(f"fn: a {eqn.primitive.name} over axis {name!r} outside a shard_map that names it")
    total *= sizes[name]
  return total


def _nbytes(var) -> int:
  aval = var.aval
  return int(math.prod(aval.shape)) * np.dtype(aval.dtype).itemsize


# Bytes one device sends for a collective over n devices, from its operand's bytes b.
_COST: dict[str, Callable[[int, int], float]] = {
    "all_gather": lambda b, n: b * (n - 1),  # its shard to each other device
    "all_gather_invariant": lambda b, n: b * (n - 1),
    "all_to_all": lambda b, n: b * (n - 1) / n,  # all blocks but its own
    "reduce_scatter": lambda b, n: b * (n - 1) / n,  # psum_scatter, ring
    "psum": lambda b, n: 2 * b * (n - 1) / n,  # ring all-reduce: reduce-scatter + all-gather
    "psum_invariant": lambda b, n: 2 * b * (n - 1) / n,
    "psum2": lambda b, n: 2 * b * (n - 1) / n,
    "pmax": lambda b, n: 2 * b * (n - 1) / n,
    "pmin": lambda b, n: 2 * b * (n - 1) / n,
    "ppermute": lambda b, n: b,
}


# Variants of one collective that JAX binds by context (e.g. psum of a device-invariant value), reported
# under the name of the collective.
_REPORTED = {"psum_invariant": "psum", "psum2": "psum", "all_gather_invariant": "all_gather"}


def _subjaxprs(value):
  if hasattr(value, "eqns"):
    yield value
  elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _subjaxprs(v)


def _walk(jaxpr, sizes, totals, mult):
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name in _COST:
      n = _axis_size(eqn, sizes)
      key = _REPORTED.get(name, name)
      totals[key] = totals.get(key, 0.0) + mult * sum(_COST[name](_nbytes(v), n) for v in eqn.invars
                                                          if hasattr(v, "aval"))
    inner_sizes = dict(sizes, **dict(eqn.params["mesh"].shape)) if name == "shard_map" else sizes
    inner_mult = mult * eqn.params["length"] if name == "scan" else mult
    for value in eqn.params.values():
      for sub in _subjaxprs(value):
        _walk(sub, inner_sizes, totals, inner_mult)


def collective_bytes(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, int]:
  """Bytes one device sends per call of ``fn(*args, **kwargs)``, read off its traced program.

  Traces ``fn`` to a jaxpr (`jax.make_jaxpr`; nothing runs) and walks it, into ``shard_map``, ``jit``,
  ``custom_vjp`` and ``scan`` bodies (a scan body counts ``length`` times, a ``while`` body once, every
  branch of a ``cond``: an upper bound there), adding
  for each collective over ``n`` devices, with ``b`` the bytes of its per-device operand:

  - ``all_gather``: ``(n - 1) b`` (its shard to every other device);
  - ``all_to_all``, ``reduce_scatter`` (``psum_scatter``): ``(n - 1) / n * b`` (every block but its own);
  - ``psum`` (and ``pmax``, ``pmin``): ``2 (n - 1) / n * b`` (a ring all-reduce);
  - ``ppermute``: ``b``.

  Pass the gradient step (``jax.value_and_grad(loss)``) to count the backward's collectives too. The
  variants JAX binds by context (``psum_invariant``, ``all_gather_invariant``) count under ``psum`` and
  ``all_gather``.

  Args:
    fn: a function of JAX arrays.
    *args: its positional arguments.
    **kwargs: its keyword arguments.

  Returns:
    ``{primitive name: bytes, ..., "total": bytes}`` (ints, rounded to the nearest byte).

  Example:
    >>> import jax, numpy as np
    >>> from jax.sharding import Mesh, PartitionSpec as P
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> g = jax.shard_map(lambda v: jax.lax.all_gather(v, "data"), mesh=mesh, in_specs=P("data"),
    ...                   out_specs=P("data"))
    >>> collective_bytes(g, np.ones(4, np.float32))  # one device: nothing leaves it
    {'all_gather': 0, 'total': 0}
  """
  if not callable(fn):
    raise TypeError(f"fn: must be callable, got {type(fn).__name__}")
  closed = jax.make_jaxpr(fn)(*args, **kwargs)
  totals: dict[str, float] = {}
  _walk(closed.jaxpr, {}, totals, 1)
  out = {k: int(round(v)) for k, v in sorted(totals.items())}
  out["total"] = int(round(sum(totals.values())))
  return out
