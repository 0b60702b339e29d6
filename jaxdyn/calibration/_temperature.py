"""Temperature scaling (Guo et al., 2017): one scalar T fitted on held-out logits by minimum NLL."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn.calibration import _metrics

__all__ = ["apply_temperature", "fit_temperature"]


def apply_temperature(logits: ArrayLike, temperature: ArrayLike) -> jax.Array:
  """Divides logits by a temperature: z / T (T > 1 softens, T < 1 sharpens; argmax unchanged).

  Elementwise: a NaN or an infinity in `logits` stays in place, and an empty batch gives an empty
  array. A temperature that is not a finite number > 0 raises eagerly; under `jit` it makes every
  output NaN.

  Args:
    logits: `(..., K)` logits.
    temperature: a scalar T > 0, e.g. from `fit_temperature`.

  Returns:
    The scaled logits, same shape as `logits`.

  Example:
    >>> import jax.numpy as jnp
    >>> apply_temperature(jnp.array([2.0, -4.0]), 2.0).tolist()
    [1.0, -2.0]

  References:
    Guo et al., "On Calibration of Modern Neural Networks", ICML 2017,
    https://arxiv.org/abs/1706.04599. The post-hoc baseline of Noh et al., "RankMixup", ICCV 2023,
    https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.
  """
  _validation.check_real("temperature", temperature, lower=0.0, lower_open=True)
  logits = jnp.asarray(logits)
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    logits = logits.astype(jnp.float32)
  t = jnp.asarray(temperature, logits.dtype)
  # Under jit T is not checked: one that is not finite and > 0 gives NaN (T = inf would give 0).
  return logits / _validation.nan_unless(jnp.isfinite(t) & (t > 0), t)


@functools.partial(jax.jit, static_argnames="num_iters")
def _fit(logits, labels, log_beta_lo, log_beta_hi, num_iters):
  ok = jnp.all(jnp.isfinite(logits)) & jnp.all(_validation.labels_valid(labels, logits.shape[-1]))
  logits = logits.astype(jnp.float32)
  true_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]

  def slope(log_beta):
    # d/dbeta NLL(beta z) = mean_i (E_{softmax(beta z_i)}[z_i] - z_{i, y_i}), increasing in beta.
    p = jax.nn.softmax(jnp.exp(log_beta) * logits, axis=-1)
    return jnp.mean(jnp.sum(p * logits, axis=-1) - true_logit)

  def step(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    above = slope(mid) > 0  # The minimiser has a smaller beta.
    return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

  lo, hi = jax.lax.fori_loop(0, num_iters, step, (log_beta_lo, log_beta_hi))
  return _validation.nan_unless(ok, jnp.exp(-0.5 * (lo + hi)))


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    bounds: tuple[float, float] = (0.05, 20.0),
    num_iters: int = 50,
) -> jax.Array:
  """Fits the temperature T that minimises the validation NLL of softmax(z / T).

    T* = argmin_{T in bounds} -(1/N) sum_i log softmax(z_i / T)_{y_i}.

  With beta = 1 / T the NLL is convex in beta (a log-sum-exp of a linear function minus a linear
  term), so its derivative mean_i (E_{softmax(beta z_i)}[z_i] - z_{i, y_i}) is increasing and the
  minimiser is found by bisection on the sign of the derivative over log beta: deterministic, no
  learning rate, `num_iters` passes over the logits. If the minimiser lies outside `bounds` the
  nearer bound is returned (for instance when every sample is classified correctly, where the NLL
  keeps falling as T -> 0). The fit runs in float32.

  Inputs: a host-side fitting loop, so a NaN or an infinity (-inf included) in `logits` raises
  naming `logits` rather than returning a bound; under `jit`, where values cannot be checked, it
  makes T NaN, and so does a label out of [0, K) (eagerly that raises). An empty batch (N = 0) or
  K = 0 is rejected.

  Args:
    logits: `(N, K)` validation logits.
    labels: `(N,)` integer class ids in [0, K).
    bounds: `(T_min, T_max)` with 0 < T_min < T_max, the search interval.
    num_iters: bisection steps >= 1; the bracket in log T shrinks by 2^-num_iters.

  Returns:
    The scalar temperature T (a float32 array).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> z = jnp.array([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    >>> y = jnp.array([0, 0, 0, 0])  # 75% accurate; softmax(z) says 88%: T > 1.
    >>> t = fit_temperature(z, y)
    >>> round(float(jax.nn.softmax(apply_temperature(z[0], t))[0]), 3)
    0.75

  References:
    Guo et al., "On Calibration of Modern Neural Networks", ICML 2017,
    https://arxiv.org/abs/1706.04599. The post-hoc baseline of Noh et al., "RankMixup", ICCV 2023,
    https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.
  """
  logits, labels, _ = _metrics.validate(logits, labels)
  _validation.check_finite("logits", logits)
  num_iters = _validation.check_int("num_iters", num_iters, lower=1)
  try:
    t_min, t_max = bounds
  except (TypeError, ValueError):
    raise ValueError(f"bounds: must be a pair (T_min, T_max), got {bounds!r}") from None
  t_min, t_max = (_validation.check_real("bounds", b, lower=0.0, lower_open=True)
                  for b in (t_min, t_max))
  if not t_min < t_max:
    raise ValueError(f"bounds: must satisfy 0 < T_min < T_max < inf, got {bounds!r}")
  log_beta_lo = jnp.float32(-jnp.log(t_max))
  log_beta_hi = jnp.float32(-jnp.log(t_min))
  return _fit(logits, labels, log_beta_lo, log_beta_hi, num_iters)
