"""Predictions of a mean-field Gaussian network: mean weights, or Monte Carlo predictive averaging."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxdyn import _validation

__all__ = ["mc_predictive"]


def mc_predictive(apply_fn: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, *,
                  key: jax.Array, num_samples: int) -> jax.Array:
  """Monte Carlo posterior predictive: p(y | x) ~ (1/S) sum_s softmax(f(x; theta_s)).

  Each sample is one call ``apply_fn(x, key_s)`` with its own key (S keys split from ``key``); the
  samples run one after another (`jax.lax.map`), so memory stays that of one forward pass. Give the
  log of the result to calibration metrics that take logits (softmax(log p) = p). For the mean-weight
  prediction call the model without a key.

  Args:
    apply_fn: ``(x, key) -> logits`` drawing one set of weights from ``key``, e.g.
      ``lambda x, k: model(x, key=k, sampling="weights")``.
    x: a batch of inputs.
    key: a `jax.random` key.
    num_samples: S >= 1.

  Returns:
    ``(batch, num_classes)`` averaged probabilities.

  Example:
    >>> f = lambda x, k: x + jax.random.normal(k, x.shape)
    >>> mc_predictive(f, jnp.zeros((2, 3)), key=jax.random.key(0), num_samples=4).shape
    (2, 3)

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI
    (its evaluation averages the softmax of S weight samples).
  """
  _validation.check_key("key", key)
  if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
    raise ValueError(f"num_samples: must be an int >= 1, got {num_samples!r}")
  keys = jax.random.split(key, num_samples)
  probs = jax.lax.map(lambda k: jax.nn.softmax(apply_fn(x, k), axis=-1), keys)
  return jnp.mean(probs, axis=0)
