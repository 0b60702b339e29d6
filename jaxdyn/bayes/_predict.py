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
    key: a `jax.random` key (checked by name).
    num_samples: S >= 1, an int.

  Returns:
    ``(batch, num_classes)`` averaged probabilities. An example whose logits hold a NaN or an
    infinity in any sample (a non-finite input, or a -inf logit) gets a NaN row, never a finite
    one; the check is one elementwise pass over the logits. An empty batch gives an empty
    ``(0, num_classes)`` result (when ``apply_fn`` accepts it).

  Example:
    >>> f = lambda x, k: x + jax.random.normal(k, x.shape)
    >>> mc_predictive(f, jnp.zeros((2, 3)), key=jax.random.key(0), num_samples=4).shape
    (2, 3)

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI
    (its evaluation averages the softmax of S weight samples).
  """
  if not callable(apply_fn):
    raise TypeError(f"apply_fn: must be a callable (x, key) -> logits, got {type(apply_fn).__name__}")
  _validation.check_key("key", key)
  num_samples = _validation.check_int("num_samples", num_samples, lower=1)
  keys = jax.random.split(key, num_samples)

  def probs(k):
    logits = apply_fn(x, k)
    finite = jnp.all(jnp.isfinite(logits), axis=-1, keepdims=True)
    return _validation.nan_unless(finite, jax.nn.softmax(logits, axis=-1))

  return jnp.mean(jax.lax.map(probs, keys), axis=0)
