"""Experts Weights Averaging (EWA): a mixture of experts for training, one FFN for inference.

Huang, Ye, Huang, Li, Chen, Chen, Ouyang, "Experts Weights Averaging: A New General Training Scheme
for Vision Transformers", 2023, https://arxiv.org/abs/2308.06093.

During training some feed-forward networks of a ViT become ``N``-expert MoEs (`MoEFeedForward`) whose
tokens go to experts by a random uniform partition (no router: balanced by construction). After each
optimizer step every expert moves toward the others (`average_experts`, or the Optax transform
`experts_weights_averaging` chained after the optimizer):

.. math::  W_i \\leftarrow (1 - \\beta) W_i + \\frac{\\beta}{N - 1} \\sum_{j \\ne i} W_j
           = W_i + \\frac{\\beta N}{N - 1} (\\bar W - W_i),\\qquad \\bar W = \\frac1N \\sum_j W_j

for every weight and bias of the experts, from the post-update weights. The mean :math:`\\bar W` is
invariant, and ``beta = (N - 1) / N`` sets every expert to it. After training each MoE becomes the FFN
with the mean weights (`collapse_experts`): the exported model is a plain ViT, at the plain ViT's cost.

Provenance of the details, which matters because neither the paper's method section nor its authors'
code could be read here (only the abstract): the form of the rule with ``beta / (N - 1)`` over the
*other* experts, and a share rate ``beta`` rising linearly from 0 to 0.3, come from a public
re-implementation whose authors say they follow EWA's design (tencent-ailab/Frequency_Aug_VAE_MoESR,
``apply_ewa``). `jaxdyn`'s own spec wrote the rule as ``(1 - beta) W_i + beta * mean_j W_j``, the same
family with ``beta_spec = beta N / (N - 1)``; pass ``share_rate`` accordingly if the paper turns out to
use that form. Which FFNs the paper replaces and its number of experts are left to the caller
(`jaxdyn.models.ViT`'s ``moe_layers`` and ``num_experts``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdyn import _validation

__all__ = [
    "EWAState",
    "MoEFeedForward",
    "average_experts",
    "collapse_experts",
    "expert_mask",
    "experts_weights_averaging",
    "random_partition",
    "share_rate_warmup",
]

EXPERTS = "experts"  # the attribute (parameter-tree key) under which a model holds a MoEFeedForward


def random_partition(key: jax.Array, num_tokens: int, num_experts: int) -> jax.Array:
  """A random uniform partition of ``num_tokens`` tokens among ``num_experts`` experts.

  A random permutation ``pi`` of the tokens, dealt like cards: token ``pi[k]`` goes to expert
  ``k mod N``. Each expert gets ``floor(M / N)`` or ``ceil(M / N)`` tokens, so the loads differ by at
  most one, and every token goes to exactly one expert.

  Args:
    key: a `jax.random` key.
    num_tokens: ``M >= 0``, the number of tokens.
    num_experts: ``N >= 1``.

  Returns:
    An int32 array ``(N, ceil(M / N))`` of token indices, row ``i`` the tokens of expert ``i``;
    entries equal to ``M`` are empty slots (the last ``N * ceil(M / N) - M`` of the deal).

  Example:
    >>> import jax
    >>> p = random_partition(jax.random.key(0), 5, 2)
    >>> p.shape, sorted(int(i) for i in p.ravel())
    ((2, 3), [0, 1, 2, 3, 4, 5])
  """
  _validation.check_key("key", key)
  num_tokens = _validation.check_int("num_tokens", num_tokens, lower=0)
  num_experts = _validation.check_int("num_experts", num_experts, lower=1)
  capacity = -(-num_tokens // num_experts)
  order = jax.random.permutation(key, num_tokens).astype(jnp.int32)
  slots = jnp.concatenate([order, jnp.full((capacity * num_experts - num_tokens,), num_tokens, jnp.int32)])
  return slots.reshape(capacity, num_experts).T


class MoEFeedForward(nnx.Module):
  """``N`` two-layer feed-forward experts with tokens assigned by a random uniform partition.

  Expert ``i`` computes ``act(x W1_i + b1_i) W2_i + b2_i``. Its weights carry a leading expert axis
and the names of a plain FFN (``fc1`` and ``fc2``, each ``kernel`` and ``bias``). A model holds the
MoE as an attribute named ``experts`` (``self.experts = MoEFeedForward(...)``): `expert_mask` finds the
expert weights by that key, and `collapse_experts` turns the enclosing block's
``{"experts": {"fc1", "fc2"}}`` into a plain FFN's ``{"fc1", "fc2"}``. Each expert is initialised like
``nnx.Linear`` (LeCun-normal kernels, zero biases), independently.

  Called with a ``key``, the tokens (every position of every example: all leading axes of ``x``)
  are partitioned with `random_partition`, each expert runs on its share, and the outputs go back to
  the tokens' places. Called without one (inference), it computes the FFN with the mean weights, which
  is exactly what the collapsed model computes.

  Args:
    dim: token width.
    hidden: hidden width of each expert.
    num_experts: ``N >= 2``.
    activation: the nonlinearity (default ``nnx.gelu``, as the ViT's FFN).
    rngs: ``nnx.Rngs`` for initialisation.
  """

  def __init__(self, dim: int, hidden: int, num_experts: int, *,
               activation: Callable[[jax.Array], jax.Array] = nnx.gelu, rngs: nnx.Rngs):
    dim = _validation.check_int("dim", dim, lower=1)
    hidden = _validation.check_int("hidden", hidden, lower=1)
    self.num_experts = _validation.check_int("num_experts", num_experts, lower=2)
    if not callable(activation):
      raise TypeError(f"activation: must be callable, got {type(activation).__name__}")
    self.activation = activation
    self.dim = dim
    init = nnx.initializers.lecun_normal()
    k1, k2 = jax.random.split(rngs.params())
    self.fc1 = nnx.Dict(kernel=nnx.Param(jax.vmap(lambda k: init(k, (dim, hidden)))(jax.random.split(k1, num_experts))),
                        bias=nnx.Param(jnp.zeros((num_experts, hidden))))
    self.fc2 = nnx.Dict(kernel=nnx.Param(jax.vmap(lambda k: init(k, (hidden, dim)))(jax.random.split(k2, num_experts))),
                        bias=nnx.Param(jnp.zeros((num_experts, dim))))

  def _weights(self):
    return self.fc1["kernel"][...], self.fc1["bias"][...], self.fc2["kernel"][...], self.fc2["bias"][...]

  def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.dim:
      raise ValueError(f"x: must have last axis {self.dim}, got shape {jnp.shape(x)}")
    w1, b1, w2, b2 = self._weights()
    if key is None:
      h = self.activation(x @ w1.mean(0) + b1.mean(0))
      return h @ w2.mean(0) + b2.mean(0)
    _validation.check_key("key", key)
    tokens = x.reshape(-1, x.shape[-1])
    m = tokens.shape[0]
    slots = random_partition(key, m, self.num_experts)
    padded = jnp.concatenate([tokens, jnp.zeros((1, tokens.shape[-1]), tokens.dtype)])
    xs = padded[slots]  # (N, capacity, dim); empty slots read the zero row
    h = self.activation(jnp.einsum("ncd,ndh->nch", xs, w1) + b1[:, None])
    y = jnp.einsum("nch,nhd->ncd", h, w2) + b2[:, None]
    out = jnp.zeros_like(padded, dtype=y.dtype).at[slots.reshape(-1)].set(y.reshape(-1, y.shape[-1]))
    return out[:m].reshape(x.shape[:-1] + (y.shape[-1],))


def _path_has_experts(path) -> bool:
  return any(getattr(k, "key", getattr(k, "name", None)) == EXPERTS for k in path)


def expert_mask(params: Any) -> Any:
  """A tree of bools like ``params``: True for the leaves under a key ``"experts"`` (`MoEFeedForward`).

  Works on pure dicts (``nnx.to_pure_dict``), ``nnx.State`` and any pytree whose path keys are dict
  keys or attribute names.
  """
  return jax.tree_util.tree_map_with_path(lambda p, _: _path_has_experts(p), params)


def _resolve_mask(mask, params):
  mask = expert_mask(params) if mask is None else (mask(params) if callable(mask) else mask)
  try:  # a prefix of params' structure is broadcast over the sub-trees it covers (as optax.masked)
    full = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), mask, params)
    return jax.tree.map(lambda m, _: m, full, params)
  except (ValueError, TypeError) as e:
    raise ValueError(f"mask: must be a tree of bools with the structure of params, or a callable "
                     f"returning one ({e})") from None


def _check_expert_leaf(x) -> int:
  if jnp.ndim(x) < 1 or jnp.shape(x)[0] < 2:
    raise ValueError(f"mask: selects a leaf of shape {jnp.shape(x)}; expert leaves need a leading expert "
                     "axis of at least 2")
  return jnp.shape(x)[0]


def _average(x, beta):
  n = _check_expert_leaf(x)
  mean = jnp.mean(x, axis=0, keepdims=True, dtype=jnp.float32)
  moved = x.astype(jnp.float32) + (beta * n / (n - 1)) * (mean - x.astype(jnp.float32))
  return moved.astype(x.dtype)


def _mean_expert(x):
  _check_expert_leaf(x)
  return jnp.mean(x, axis=0, dtype=jnp.float32).astype(x.dtype)


def _check_share_rate(share_rate):
  return _validation.check_real("share_rate", share_rate, lower=0.0, upper=1.0)


def average_experts(params: Any, share_rate: float, *, mask: Any = None) -> Any:
  """One Experts Weights Averaging step on the expert leaves of ``params`` (module docstring rule).

  Args:
    params: a parameter tree.
    share_rate: ``beta`` in [0, 1] (a traced scalar too, e.g. a schedule's value under ``jit``): 0 leaves the experts unchanged, ``(N - 1) / N`` makes them all
      equal to their mean, 1 replaces each by the mean of the others.
    mask: which leaves are stacked experts (leading expert axis ``N >= 2``): a tree of bools like
      ``params`` (or a prefix of it, broadcast over each sub-tree) or a callable of ``params``
      returning one; default `expert_mask`.

  Returns:
    ``params`` with every expert leaf averaged (computed in float32, returned in its dtype) and every
    other leaf unchanged. A NaN in an expert reaches every expert of that leaf.

  Example:
    >>> import jax.numpy as jnp
    >>> p = {"experts": {"w": jnp.array([[0.0], [2.0]])}, "head": jnp.ones(1)}
    >>> average_experts(p, 0.25)["experts"]["w"].ravel().tolist()
    [0.5, 1.5]
  """
  beta = _check_share_rate(share_rate)
  m = _resolve_mask(mask, params)
  return jax.tree.map(lambda sel, x: _average(x, beta) if sel else x, m, params)


def collapse_experts(params: Mapping[str, Any]) -> dict[str, Any]:
  """The inference parameters: every ``{"experts": {...}}`` entry replaced by its mean expert, in place.

  Each mapping holding a key ``"experts"`` has that key removed and the mean over the expert axis of
  each leaf beneath it merged in its place, so a `jaxdyn.models.ViT` block with a `MoEFeedForward`
  (``{"norm1", "attn", "norm2", "experts": {"fc1", "fc2"}}``) becomes a plain block
  (``{"norm1", "attn", "norm2", "fc1", "fc2"}``), loadable into the ViT built without
  ``moe_layers``. The FFN with the mean weights computes what `MoEFeedForward` computes without a key.

  Args:
    params: a nested mapping of parameters (``nnx.to_pure_dict(nnx.state(model, nnx.Param))``).

  Returns:
    A new nested dict.
  """
  if not isinstance(params, Mapping):
    raise TypeError(f"params: must be a mapping (a pure dict of parameters), got {type(params).__name__}")

  def walk(node):
    if not isinstance(node, Mapping):
      return node
    out = {k: walk(v) for k, v in node.items() if k != EXPERTS}
    if EXPERTS in node:
      experts = node[EXPERTS]
      if not isinstance(experts, Mapping):
        raise ValueError(f"params: the entry {EXPERTS!r} must be a mapping of stacked expert weights")
      for k, v in experts.items():
        if k in out:
          raise ValueError(f"params: {k!r} is both an expert weight and a sibling of {EXPERTS!r}")
        out[k] = jax.tree.map(_mean_expert, v)
    return out

  return walk(params)


def share_rate_warmup(peak: float, warmup_steps: int) -> optax.Schedule:
  """``beta_t = peak * min(t / warmup_steps, 1)``: the linear rise of the share rate.

  The shape (0 to 0.3 over the first 10,000 steps) is the public re-implementation's (module
  docstring); the paper's own schedule is unverified here.
  """
  peak = _validation.check_real("peak", peak, lower=0.0, upper=1.0)
  warmup_steps = _validation.check_int("warmup_steps", warmup_steps, lower=1)
  return optax.linear_schedule(0.0, peak, warmup_steps)


class EWAState(NamedTuple):
  """State of `experts_weights_averaging`: ``count``, the number of updates so far (int32)."""

  count: jax.Array


def experts_weights_averaging(share_rate: float | optax.Schedule, *, mask: Any = None
                              ) -> optax.GradientTransformation:
  """Experts Weights Averaging as the last link of an Optax chain.

  .. math::  u' = \\mathrm{EWA}_{\\beta_t}(\\theta + u) - \\theta

  so that ``optax.apply_updates(params, u')`` gives the averaged post-update weights (to one
  rounding of the subtraction and addition; `average_experts` applied to the new parameters is
  exact). It is an Optax transform rather than a hook in the training loop because EWA is a pure
  function of the parameters after each step, so any Optax-driven loop (the harness's, a user's
  ``nnx.Optimizer``) gets it with ``optax.chain(optimizer, experts_weights_averaging(beta))``, and
  ``optax.MultiSteps`` applies it once per real step. It needs ``params`` in ``update``.

  Args:
    share_rate: ``beta`` in [0, 1], or an ``optax.Schedule`` of the update count (e.g.
      `share_rate_warmup`).
    mask: the expert leaves (see `average_experts`).

  Returns:
    An ``optax.GradientTransformation`` with state `EWAState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> params = {"experts": {"w": jnp.array([[0.0], [2.0]])}}
    >>> tx = optax.chain(optax.sgd(1.0), experts_weights_averaging(0.5))
    >>> updates, _ = tx.update({"experts": {"w": jnp.zeros((2, 1))}}, tx.init(params), params)
    >>> optax.apply_updates(params, updates)["experts"]["w"].ravel().tolist()
    [1.0, 1.0]
  """
  schedule = share_rate if callable(share_rate) else None
  if schedule is None:
    share_rate = _check_share_rate(share_rate)
  if mask is not None and not callable(mask):
    jax.tree.map(bool, mask)  # a tree of bools (its structure is checked against params in update)

  def init_fn(params):
    del params
    return EWAState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("params: experts_weights_averaging needs params in update (it averages the new weights)")
    beta = schedule(state.count) if schedule is not None else share_rate
    new = optax.apply_updates(params, updates)
    averaged = average_experts(new, beta, mask=mask)
    out = jax.tree.map(lambda a, p, u: (a.astype(jnp.float32) - p.astype(jnp.float32)).astype(u.dtype),
                       averaged, params, updates)
    return out, EWAState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)
