"""Device mesh and state shardings: data parallelism, optionally FSDP-style parameter sharding.

The mesh has one axis, ``data``, over every device of every process. Batches are split along it.
With ``config.sharding = "data"`` the train state is replicated; with ``"fsdp"`` every parameter and
optimizer-state array is split along ``data`` on its largest axis that the device count divides
(arrays with no such axis, scalars and BatchNorm statistics stay replicated), so each device holds a
1/n share and XLA gathers parameters where a layer needs them.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MODES = ("data", "fsdp")


def data_mesh() -> Mesh:
  """A 1-D mesh named ``data`` over all devices (``Auto`` axis type, so optax steps need no specs)."""
  return Mesh(np.array(jax.devices()), ("data",))


def fsdp_spec(shape: tuple[int, ...], n: int) -> P:
  """Splits the largest axis divisible by ``n`` over ``data``; replicated if none is."""
  if n == 1 or not shape:
    return P()
  axes = sorted(range(len(shape)), key=lambda a: (-shape[a], a))
  for a in axes:
    if shape[a] % n == 0 and shape[a] >= n:
      spec = [None] * len(shape)
      spec[a] = "data"
      return P(*spec)
  return P()


def state_shardings(state, mesh: Mesh, mode: str):
  """Shardings for a ``TrainState``: params and optimizer state by ``mode``, the rest replicated."""
  if mode not in MODES:
    raise ValueError(f"config.sharding: must be one of {list(MODES)}, got {mode!r}")
  replicated = NamedSharding(mesh, P())
  if mode == "data":
    return jax.tree.map(lambda _: replicated, state)
  by_shape = lambda x: NamedSharding(mesh, fsdp_spec(tuple(getattr(x, "shape", np.shape(x))), mesh.size))
  everything = jax.tree.map(lambda _: replicated, state)  # step, rng, counters, BatchNorm statistics
  return everything.replace(params=jax.tree.map(by_shape, state.params),
                            opt_state=jax.tree.map(by_shape, state.opt_state))
