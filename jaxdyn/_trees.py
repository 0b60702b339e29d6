"""PyTree helpers shared by the families that wrap optimizers (jaxdyn.bayes, jaxdyn.sparsity)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def key_name(k: Any) -> Any:
  """The name in one path entry: a dict key, an attribute name or a sequence index."""
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return getattr(k, attr)
  return str(k)


def path_names(path: tuple[Any, ...]) -> tuple[str, ...]:
  """A leaf's path as strings, without the trailing ``value`` of an ``nnx.Variable``'s array."""
  names = [key_name(k) for k in path]
  if names and names[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
    names = names[:-1]
  return tuple(map(str, names))


def params_like_mapper(params: Any) -> Callable[[Any, Callable[[jax.Array, int], jax.Array]], Any]:
  """``apply(state, f)`` applies ``f(leaf, i)`` to every subtree of ``state`` shaped like ``params``.

  A subtree is params-like when it has the tree structure of ``params`` and the same leaf shapes (an
  optimizer's momentum or Adam moments), found by structure, never by the optimizer state's type, so
  it works through ``optax.chain``, ``MultiSteps`` and ``inject_hyperparams``. ``i`` is the leaf's
  index in ``jax.tree.leaves(params)``.
  """
  treedef = jax.tree.structure(params)
  shapes = [jnp.shape(x) for x in jax.tree.leaves(params)]

  def is_params_like(node) -> bool:
    leaves, td = jax.tree.flatten(node)
    return td == treedef and [jnp.shape(x) for x in leaves] == shapes

  def apply(state, f):
    def visit(node):
      if is_params_like(node):
        leaves = jax.tree.leaves(node)
        return jax.tree.unflatten(treedef, [f(x, i) for i, x in enumerate(leaves)])
      return node
    return jax.tree.map(visit, state, is_leaf=is_params_like)

  return apply
