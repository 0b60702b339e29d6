"""Shared helpers for the spiking-network tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx


def _numpy_init(make, seed=0):
  """Builds a model abstractly and fills it from NumPy (He-scaled normal kernels, BN at identity).

  Skips jax.random initialisers, whose per-shape XLA compiles dominate small tests on CPU.
  """
  graphdef, state = nnx.split(nnx.eval_shape(make))
  rng = np.random.default_rng(seed)

  def fill(path, a):
    name = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)][-1]
    if name in ("scale", "var"):
      return jnp.ones(a.shape, a.dtype)
    if name in ("bias", "mean") or a.ndim < 2:
      return jnp.zeros(a.shape, a.dtype)
    fan_in = int(np.prod(a.shape[:-1]))
    return jnp.asarray(rng.normal(size=a.shape) * np.sqrt(2.0 / fan_in), a.dtype)

  return nnx.merge(graphdef, jax.tree.map_with_path(fill, state))


@pytest.fixture
def numpy_init():
  return _numpy_init
