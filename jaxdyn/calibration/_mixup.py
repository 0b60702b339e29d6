"""Mixup sampling (Zhang et al., 2018) as a pure function of a `jax.random` key."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxdyn import _validation

__all__ = ["MixupSample", "sample_mixup"]


class MixupSample(NamedTuple):
  """M mixed copies of a batch of size B.

  Attributes:
    inputs: the batch PyTree with every leaf mixed along axis 0; each leaf `(B, ...)` becomes
      `(M, B, ...)`.
    labels: `(M, B, num_classes)` mixed soft labels.
    lam: `(M,)` mixing coefficients, one per copy, drawn from Beta(alpha, alpha).
    perms: `(M, B)` int32 permutations of `range(B)`: copy m pairs sample i with `perms[m, i]`.
  """

  inputs: Any
  labels: jax.Array
  lam: jax.Array
  perms: jax.Array


def _mix(x: jax.Array, lam: jax.Array, perm: jax.Array) -> jax.Array:
  # x[perm] + lam (x - x[perm]) equals lam x + (1 - lam) x[perm], and gives x bit for bit where
  # x[perm[i]] == x[i]: a same-class pair keeps an exact one-hot label (an entry exactly 1.0),
  # which is what the RankMixup losses use to recognise it.
  dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
  x = x.astype(dtype)
  lam = lam.astype(dtype).reshape((1,) * x.ndim)
  other = jnp.take(x, perm, axis=0)
  return other + lam * (x - other)


@jax.jit
def _mix_all(tree: Any, lam: jax.Array, perms: jax.Array) -> Any:
  mix = jax.vmap(_mix, in_axes=(None, 0, 0))
  return jax.tree.map(lambda x: mix(jnp.asarray(x), lam, perms), tree)


@functools.partial(jax.jit, static_argnames=("num_mixes", "batch_size"))
def _draw(key, alpha, num_mixes, batch_size):
  # Jitted on its own: the Beta sampler is costly to compile, and this way it compiles once per
  # (M, B), whatever alpha and the PyTree of inputs.
  key_lam, key_perm = jax.random.split(key)
  lam = jax.random.beta(key_lam, alpha, alpha, (num_mixes,), dtype=jnp.float32)
  perm_keys = jax.random.split(key_perm, num_mixes)
  perms = jax.vmap(lambda k: jax.random.permutation(k, batch_size))(perm_keys)
  return lam, perms.astype(jnp.int32)


def sample_mixup(
    key: ArrayLike,
    inputs: Any,
    labels: ArrayLike,
    *,
    num_mixes: int = 1,
    alpha: float = 1.0,
) -> MixupSample:
  """Draws M mixup copies of a batch: M Beta(alpha, alpha) coefficients and M permutations.

  For m = 1..M, with lam_m ~ Beta(alpha, alpha) and a uniformly random permutation pi_m of the
  batch, every input leaf x and the labels y are mixed along axis 0:

    x~_m = lam_m x + (1 - lam_m) x[pi_m],    y~_m = lam_m y + (1 - lam_m) y[pi_m].

  Each copy has a single lam for the whole batch, as in the mixup and RankMixup code. The mix is
  computed as `x[pi] + lam (x - x[pi])`, so a sample paired with an identical one (itself, or a
  same-class sample for the labels) is reproduced exactly. Floating leaves keep their dtype; other
  leaves (e.g. uint8 images) come back as float32.

  Inputs: a NaN or an infinity in `inputs` or `labels` reaches the mixed copies (every mixed row
  contains its own sample). An empty batch (B = 0) is rejected.

  Args:
    key: a `jax.random` key; the result is a deterministic function of it.
    inputs: a PyTree of arrays whose leaves all have the batch size B on axis 0.
    labels: `(B, num_classes)` floating one-hot or soft labels (use `jax.nn.one_hot` on integer
      class ids).
    num_mixes: M, the number of mixed copies (an int >= 1). RankMixup uses M = 1 for MRL and M = 3
      for M-NDCG.
    alpha: the Beta(alpha, alpha) concentration, > 0 (2 on CIFAR, 1 on Tiny-ImageNet in RankMixup).

  Returns:
    A `MixupSample(inputs, labels, lam, perms)` with leading axis M on every field.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jnp.arange(8.0).reshape(4, 2)
    >>> y = jax.nn.one_hot(jnp.array([0, 1, 2, 0]), 3)
    >>> s = sample_mixup(jax.random.key(0), {"image": x}, y, num_mixes=3, alpha=2.0)
    >>> s.inputs["image"].shape, s.labels.shape, s.lam.shape, s.perms.shape
    ((3, 4, 2), (3, 4, 3), (3,), (3, 4))

  References:
    Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018,
    https://arxiv.org/abs/1710.09412.
    Noh et al., "RankMixup: Ranking-Based Mixup Training for Network Calibration", ICCV 2023,
    https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.
  """
  _validation.check_key("key", key)
  num_mixes = _validation.check_int("num_mixes", num_mixes, lower=1)
  _validation.check_real("alpha", alpha, lower=0.0, lower_open=True)
  labels = jnp.asarray(labels)
  _validation.check_ndim("labels", labels, 2)
  if not jnp.issubdtype(labels.dtype, jnp.floating):
    raise ValueError(
        f"labels: must be floating (B, num_classes) one-hot or soft labels, got dtype "
        f"{labels.dtype}; convert class ids with jax.nn.one_hot")
  _validation.check_nonempty("labels", labels)
  batch_size = labels.shape[0]
  leaves = jax.tree.leaves(inputs)
  if not leaves:
    raise ValueError("inputs: must contain at least one array leaf")
  for leaf in leaves:
    shape = np.shape(leaf)
    if len(shape) < 1 or shape[0] != batch_size:
      raise ValueError(
          f"inputs: every leaf must have the batch size of `labels` ({batch_size}) on axis 0, "
          f"got a leaf of shape {shape}")

  lam, perms = _draw(key, jnp.asarray(alpha, jnp.float32), num_mixes, batch_size)
  mixed_inputs, mixed_labels = _mix_all((inputs, labels), lam, perms)
  return MixupSample(inputs=mixed_inputs, labels=mixed_labels, lam=lam, perms=perms)
