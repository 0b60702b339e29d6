"""Input encoders: how a static input becomes the network's input at time step t.

- ``direct``: the same (analog) input at every step, x_t = x (Meng et al.'s setting for static images;
  the first layer does the encoding).
- ``poisson``: rate coding, x_t ~ Bernoulli(clip(x, 0, 1)) independently per step and element.

A NaN or an infinite input stays non-finite: the direct encoder passes it on, the Poisson encoder
emits NaN for that element (a NaN probability would otherwise silently never fire).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxdyn import _validation

__all__ = [
    "ENCODERS",
    "direct_encode",
    "encode",
    "poisson_encode",
]

ENCODERS = ("direct", "poisson")


def direct_encode(x: ArrayLike, t: ArrayLike | None = None) -> jax.Array:
  """Direct encoding: the static input at every step, x_t = x.

  Args:
    x: the input.
    t: the time step (unused; kept for a common encoder signature).

  Returns:
    ``x`` as an array.

  Example:
    >>> import jax.numpy as jnp
    >>> direct_encode(jnp.array([0.5, 2.0]), 3).tolist()
    [0.5, 2.0]

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  del t
  return jnp.asarray(x)


def poisson_encode(key: jax.Array, x: ArrayLike, t: ArrayLike) -> jax.Array:
  """Poisson (Bernoulli) rate coding: x_t ~ Bernoulli(clip(x, 0, 1)), fresh at every step.

  The step's randomness is ``fold_in(key, t)``, so the spike train is a pure function of (key, t) and
  need not be stored: memory stays flat in T.

  Args:
    key: a `jax.random` key, one per iteration.
    x: intensities; values are clipped to [0, 1] and used as firing probabilities.
    t: the time step, an int >= 0 (or a traced int scalar).

  Returns:
    Spikes in {0, 1} with the shape and floating dtype of ``x``; NaN where ``x`` is NaN or infinite.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> poisson_encode(jax.random.key(0), jnp.array([0.0, 1.0]), 0).tolist()
    [0.0, 1.0]

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311.
  """
  _validation.check_key("key", key)
  t = _validation.check_int("t", t, lower=0)
  x = jnp.asarray(x)
  dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
  x = x.astype(dtype)
  spikes = jax.random.bernoulli(jax.random.fold_in(key, t), jnp.clip(x, 0.0, 1.0)).astype(dtype)
  return jnp.where(jnp.isfinite(x), spikes, jnp.asarray(jnp.nan, dtype))


def encode(x: ArrayLike, t: ArrayLike, *, encoder: str = "direct", key: jax.Array | None = None) -> jax.Array:
  """The network input at step t under the named encoder (``"direct"`` or ``"poisson"``).

  Args:
    x: the static input.
    t: the time step (an int >= 0 or a traced int scalar; the direct encoder ignores it).
    encoder: ``"direct"`` or ``"poisson"``.
    key: a `jax.random` key (required for ``"poisson"``; checked whenever given).

  Returns:
    x_t (non-finite where ``x`` is, see `poisson_encode`).

  Example:
    >>> import jax.numpy as jnp
    >>> encode(jnp.ones(2), 0).tolist()
    [1.0, 1.0]

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311.
  """
  _validation.check_choice("encoder", encoder, ENCODERS)
  if key is not None or encoder == "poisson":
    _validation.check_key("key", key, why=" for encoder='poisson'")
  if encoder == "direct":
    return direct_encode(x, t)
  return poisson_encode(key, x, t)
