"""HarmoniCa: a learned feature-cache router for the DiT sampler, trained along whole sampling trajectories.

Huang et al., "HarmoniCa: Harmonizing Training and Inference for Better Feature Cache in Diffusion Transformer
Acceleration", 2024, https://arxiv.org/abs/2410.01723 (authors' code: https://github.com/ModelTC/HarmoniCa).
Only the abstract was read here; the details below are taken from the authors' code (``models/router_models.py``,
``train_router.py``) unless marked "here".

**Router** (`Router`). A free logit per (cache step ``i``, block ``l``), ``p_{i,l} = sigmoid(a_{i,l})``, no
input dependence. At inference block ``l`` is computed at step ``i`` where ``p_{i,l} >= tau`` and its cached
residual reused otherwise (`Router.schedule`; the code thresholds with ``>``, which differs only on ties).
The first step always computes (the code fixes its logits at 5 and does not train them; here its row is
forced to 1). Logits start ``N(0, 1)`` and are clamped to ``[-5, 5]`` after each update (the code's clamp;
the caller's optimizer step does it, as in the runner). A cache step is one denoiser call
(`jaxdyn.diffusion.cached_sampler`: ``2N - 1`` of them for ``N`` Heun steps).

**Training-time cache** (`router_weights`, `harmonica_loss`). The code trains with the *soft* score as a
mixing weight: block ``l``'s update is ``w r_fresh + (1 - w) r_cache`` with ``w = p_{i,l}``, and refreshes
the cache with that update wherever ``p_{i,l} > tau`` (a hard decision, no gradient through the cache).
That is ``estimator="soft"`` (the default). ``estimator="ste"`` is the straight-through estimator the
code defines (``STE``: forward ``1[p >= tau]``, backward the identity to ``p``) and applies at inference:
the forward pass is exactly the inference cache and the gradient is that of the soft mix,
``w = 1[p >= tau] + p - stop_gradient(p)``.

**Step-Wise Denoising Training** (SDT, `harmonica_loss`). From noise, the sampler runs with the router
(the student, with its cache); at each cache step the teacher is the same DiT computing every block *on
the student's current input* ``x_i``; the student's output continues the trajectory (detached between
steps, as the code's ``x_t.detach()``). The DiT's weights are frozen: only the logits get gradients.

**Image-Error-Proxy-Guided Objective** (IEPO). The loss is

.. math::  L = \\sum_{i \\ge 1} \\lambda_i \\, \\mathrm{mean}(F_{student,i} - F_{teacher,i})^2
              + \\beta \\sum_{i \\ge 1} \\mathrm{mean}_l \\, p_{i,l},

with ``F`` the network output (the code compares the model outputs, its noise predictions) and the
proxy ``lambda_i`` of the final-image error from the cache at step ``i`` (`iepo_weights`, the code's
``get_lambda``): with the router enabled cumulatively at steps ``1..i`` (every later step computing
everything), ``lambda_i = mean(x_final^{(i)} - x_final^{(i-1)})^2``, ``x^{(0)}`` the uncached sample,
recomputed from the current router every few iterations (the code: every ``lambda_c`` steps) without
gradient. The code sums the penalty over the ``2 x depth`` entries of each step (attention and MLP
separately); here it is the mean over the blocks (``beta`` rescaled by the number of blocks). The code
updates after every sampling step; each step's loss reaches only that step's logits (cache and
trajectory detached), so one update on the sum over the trajectory gives each logit the same gradient.

Simplified here: EDM Heun/Euler steps instead of the code's DDIM, class-conditional sampling without
classifier-free guidance, one decision per block (residual of the whole block) instead of two.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdyn import _validation
from jaxdyn.diffusion import _cache, _edm

__all__ = ["Router", "harmonica_loss", "iepo_weights", "matched_threshold", "router_weights"]


def _check_threshold(threshold):
  return _validation.check_real("threshold", threshold, lower=0.0, upper=1.0, lower_open=True, upper_open=True)


def _check_logits(logits, rows=None, cols=None) -> jax.Array:
  a = _validation.check_floating("logits", logits)
  if a.ndim != 2 or 0 in a.shape or (rows is not None and a.shape[0] != rows) or \
      (cols is not None and a.shape[1] != cols):
    want = f"({rows if rows is not None else 'steps'}, {cols if cols is not None else 'blocks'})"
    raise ValueError(f"logits: must have shape {want}, got {tuple(a.shape)}")
  return a


def _scores(logits: jax.Array) -> jax.Array:
  p = jax.nn.sigmoid(logits).at[0].set(1.0)  # the first step always computes (no gradient)
  return jnp.where(jnp.isfinite(logits), p, jnp.nan)  # a NaN or infinite logit gives NaN, never 0 or 1


class Router(nnx.Module):
  """HarmoniCa's router: a learnable logit per (cache step, block) (module docstring).

  Args:
    num_steps: cache steps (denoiser calls, `jaxdyn.diffusion.num_cache_steps`), ``>= 1``.
    num_blocks: the DiT's backbone blocks, ``>= 1``.
    rngs: ``nnx.Rngs``; the logits start ``N(0, 1)`` (the code's ``torch.randn``).

  ``router.logits`` is an ``nnx.Param`` ``(num_steps, num_blocks)``; `scores` the compute probabilities
  (first row 1); `schedule` the hard inference decisions for `jaxdyn.diffusion.cached_sampler`.

  Example:
    >>> from flax import nnx
    >>> r = Router(3, 2, rngs=nnx.Rngs(0))
    >>> r.logits.value = r.logits.value.at[:].set(-1.0)
    >>> r.schedule(0.5).tolist()  # sigmoid(-1) = 0.27 < 0.5: reuse, except the first step
    [[True, True], [False, False], [False, False]]
  """

  def __init__(self, num_steps: int, num_blocks: int, *, rngs: nnx.Rngs):
    rows = _validation.check_int("num_steps", num_steps, lower=1)
    cols = _validation.check_int("num_blocks", num_blocks, lower=1)
    self.logits = nnx.Param(jax.random.normal(rngs.params(), (rows, cols), jnp.float32))

  def scores(self) -> jax.Array:
    """``sigmoid(logits)`` with the first row set to 1 (always computed)."""
    return _scores(self.logits.value)

  def schedule(self, threshold: float = 0.5) -> np.ndarray:
    """The boolean compute schedule ``scores() >= threshold`` (NumPy), first row all True."""
    t = _check_threshold(threshold)
    return np.asarray(self.scores()) >= t


def router_weights(logits: jax.Array, *, threshold: float = 0.5, estimator: str = "soft") -> jax.Array:
  """The training-time compute weights ``w`` of each (step, block) entry (module docstring).

  ``"soft"``: ``w = sigmoid(a)`` (the code's training); ``"ste"``: ``w = 1[sigmoid(a) >= threshold] +
  (sigmoid(a) - stop_gradient(sigmoid(a)))``, exactly 0 or 1 forward with the sigmoid's gradient. The first
  row is 1 (no gradient).

  Args:
    logits: ``(num_steps, num_blocks)`` router logits.
    threshold: ``tau`` in (0, 1).
    estimator: ``"soft"`` or ``"ste"``.

  Returns:
    ``(num_steps, num_blocks)`` weights.

  Example:
    >>> import jax.numpy as jnp
    >>> a = jnp.array([[0.0, 0.0], [2.0, -2.0]])
    >>> router_weights(a, estimator="ste").tolist()
    [[1.0, 1.0], [1.0, 0.0]]
  """
  a = _check_logits(logits)
  t = _check_threshold(threshold)
  _validation.check_choice("estimator", estimator, ("soft", "ste"))
  p = _scores(a)
  if estimator == "soft":
    return p
  hard = (p >= t).astype(p.dtype)
  return hard + (p - jax.lax.stop_gradient(p))  # exactly 0 or 1 forward


def matched_threshold(scores: Any, cache_ratio: float) -> float:
  """A threshold whose schedule ``scores >= threshold`` (first row always computing) reuses ``cache_ratio``.

  The ``k = round(cache_ratio * scores.size)`` lowest-scoring entries outside the first row are reused:
  the threshold is the midpoint between the ``k``-th and ``(k+1)``-th lowest scores (tied scores can make
  the ratio unattainable: check `cache_ratio` of the schedule).

  Args:
    scores: ``(num_steps, num_blocks)`` compute probabilities (`Router.scores`), finite.
    cache_ratio: the target fraction of reused block evaluations, in [0, 1 - 1 / num_steps].

  Returns:
    The threshold, a float.

  Example:
    >>> import numpy as np
    >>> s = np.array([[1.0, 1.0], [0.2, 0.9], [0.6, 0.4]])
    >>> t = matched_threshold(s, 0.5)  # reuse 3 of 6: 0.2, 0.4, 0.6
    >>> t, (s >= t).tolist()
    (0.75, [[True, True], [False, True], [False, False]])
  """
  _validation.check_floating("scores", scores)
  s = np.asarray(scores, np.float64)
  if s.ndim != 2 or 0 in s.shape:
    raise ValueError(f"scores: must have shape (steps, blocks), got {s.shape}")
  _validation.check_finite("scores", s)
  rows, cols = s.shape
  r = _validation.check_real("cache_ratio", cache_ratio, lower=0.0, upper=1.0 - 1.0 / rows)
  e = np.sort(s[1:].ravel())
  k = min(int(round(r * s.size)), e.size)
  if k == 0:
    return float(e.min()) if e.size else 0.5
  if k == e.size:
    return float(np.nextafter(e[-1], np.inf))
  return float((e[k - 1] + e[k]) / 2)


def _mixed_network(model, x_in, c_noise, labels, cache, w, refresh):
  """``(F, cache)``: block ``l`` adds ``w_l r_fresh + (1 - w_l) cache_l``; the cache takes it where ``refresh``."""
  tokens, c = model.embed(x_in, c_noise, labels)
  new = []
  for l, blk in enumerate(model.blocks):
    fresh = blk(tokens, c) - tokens
    r = w[l] * fresh + (1 - w[l]) * cache[l]
    tokens = tokens + r
    new.append(jnp.where(refresh[l], jax.lax.stop_gradient(r), cache[l]))
  return model.unembed(tokens, c), jnp.stack(new)


def _setup(logits, model, noise, class_labels, threshold, estimator, num_steps, sigma_min, sigma_max, rho,
           second_order, sigma_data):
  sigmas, x, labels, sd = _cache._sampler_setup(model, noise, class_labels, num_steps, sigma_min, sigma_max, rho,
                                                second_order, sigma_data)
  rows = _cache.num_cache_steps(num_steps, second_order=second_order)
  a = _check_logits(logits, rows, len(model.blocks))
  w = router_weights(a, threshold=threshold, estimator=estimator)
  refresh = _scores(a) >= _check_threshold(threshold)
  _validation.check_nonempty("noise", x)
  return sigmas, x, labels, sd, rows, a, w, refresh


def harmonica_loss(logits: jax.Array, model: Any, noise: jax.Array, class_labels: jax.Array, proxy: jax.Array, *,
                   beta: float, threshold: float = 0.5, estimator: str = "soft", num_steps: int = 18,
                   sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                   second_order: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
  """SDT + IEPO: the router's loss along one sampling trajectory from ``noise`` (module docstring).

  Args:
    logits: ``(num_cache_steps, num_blocks)`` router logits (differentiate with respect to these).
    model: the frozen `jaxdyn.models.DiT`.
    noise: ``(B, H, W, C)`` standard normal draws starting the trajectory (``B >= 1``).
    class_labels: ``(B,)`` integer labels.
    proxy: ``(num_cache_steps,)`` nonnegative weights ``lambda_i`` (`iepo_weights`; entry 0 unused).
    beta: the cache-usage penalty ``>= 0``.
    threshold: ``tau`` in (0, 1): the cache refresh (and, for ``"ste"``, the forward) decision.
    estimator: ``"soft"`` or ``"ste"`` (`router_weights`).
    num_steps, sigma_data, sigma_min, sigma_max, rho, second_order: as in `jaxdyn.diffusion.cached_sampler`.

  Returns:
    ``(loss, aux)``: ``aux["mse"]`` the per-step ``(num_cache_steps,)`` student-teacher errors,
    ``aux["penalty"]`` ``sum_{i>=1} mean_l p_{i,l}``, ``aux["samples"]`` the student's final samples.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxdyn.models import DiT
    >>> m = DiT(1, 10, image_size=4, patch_size=2, dim=8, depth=2, num_heads=2, rngs=nnx.Rngs(0))
    >>> z, y, a = jnp.ones((2, 4, 4, 1)), jnp.arange(2), jnp.zeros((3, 2))
    >>> loss, aux = harmonica_loss(a, m, z, y, jnp.ones(3), beta=0.1, num_steps=2)
    >>> round(float(aux["penalty"]), 3)  # 2 trained steps x sigmoid(0)
    1.0
  """
  sigmas, x, labels, sd, rows, a, w, refresh = _setup(logits, model, noise, class_labels, threshold, estimator,
                                                      num_steps, sigma_min, sigma_max, rho, second_order,
                                                      sigma_data)
  b = _validation.check_real("beta", beta, lower=0.0, upper=1e6)
  lam = _validation.check_floating("proxy", proxy)
  if lam.shape != (rows,):
    raise ValueError(f"proxy: must have shape ({rows},) (one weight per cache step), got {tuple(lam.shape)}")
  _validation.check_nonnegative("proxy", lam)
  lam = jax.lax.stop_gradient(lam)

  def call(row, y, sigma, state):
    cache, loss, mse = state
    y = jax.lax.stop_gradient(y)
    s = _edm.edm_preconditioning(sigma, sigma_data=sd)
    x_in, c_noise = s.c_in * y, jnp.full((y.shape[0],), s.c_noise)
    teacher = jax.lax.stop_gradient(model(x_in, c_noise, labels))
    f, cache = _mixed_network(model, x_in, c_noise, labels, cache, w[row], refresh[row])
    err = jnp.mean(jnp.square(f - teacher))
    loss = loss + jnp.where(row > 0, lam[row] * err, 0.0)
    return s.c_skip * y + s.c_out * f, (cache, loss, mse.at[row].set(err))

  state = (_cache._empty_cache(model, x.shape[0], x.dtype), jnp.zeros((), x.dtype), jnp.zeros((rows,), x.dtype))
  out, (_, loss, mse) = _cache._heun_rollout(call, x, state, sigmas, second_order)
  penalty = jnp.sum(jnp.mean(_scores(a)[1:], axis=1))
  loss = loss + 0.0 * lam[0]  # entry 0 is unused, but a NaN in it still reaches the loss
  return loss + b * penalty, {"mse": mse, "penalty": penalty, "samples": jax.lax.stop_gradient(out)}


def iepo_weights(logits: jax.Array, model: Any, noise: jax.Array, class_labels: jax.Array, *,
                 threshold: float = 0.5, estimator: str = "soft", num_steps: int = 18, sigma_data: float = 0.5,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                 second_order: bool = True) -> jax.Array:
  """IEPO's proxy ``lambda_i`` of the final-image error of the cache at step ``i`` (the code's ``get_lambda``).

  With the router's training-time weights (`router_weights`) active at steps ``1..i`` only,
  ``lambda_i = mean(x^{(i)} - x^{(i-1)})^2`` over the final samples, ``x^{(0)}`` computing every block:
  ``num_cache_steps`` sampler runs, batched, without gradient. Arguments as in `harmonica_loss`.

  Returns:
    ``(num_cache_steps,)`` nonnegative weights; entry 0 is 0 (the first step always computes).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxdyn.models import DiT
    >>> m = DiT(1, 10, image_size=4, patch_size=2, dim=8, depth=2, num_heads=2, rngs=nnx.Rngs(0))
    >>> lam = iepo_weights(jnp.full((3, 2), 9.0), m, jnp.ones((2, 4, 4, 1)), jnp.arange(2), num_steps=2)
    >>> lam.shape, float(lam[0])
    ((3,), 0.0)
  """
  sigmas, x, labels, sd, rows, a, w, refresh = _setup(logits, model, noise, class_labels, threshold, estimator,
                                                      num_steps, sigma_min, sigma_max, rho, second_order,
                                                      sigma_data)
  w, refresh = jax.lax.stop_gradient(w), jax.lax.stop_gradient(refresh)
  steps = jnp.arange(rows)[:, None]

  def run(k):
    wk = jnp.where(steps <= k, w, 1.0)
    rk = jnp.where(steps <= k, refresh, True)

    def call(row, y, sigma, cache):
      s = _edm.edm_preconditioning(sigma, sigma_data=sd)
      f, cache = _mixed_network(model, s.c_in * y, jnp.full((y.shape[0],), s.c_noise), labels, cache, wk[row],
                                rk[row])
      return s.c_skip * y + s.c_out * f, cache

    out, _ = _cache._heun_rollout(call, x, _cache._empty_cache(model, x.shape[0], x.dtype), sigmas, second_order)
    return out

  finals = jax.vmap(run)(jnp.arange(rows))
  err = jnp.mean(jnp.square(finals[1:] - finals[:-1]).reshape(rows - 1, -1), axis=1)
  return jnp.concatenate([jnp.zeros((1,), err.dtype), err])
