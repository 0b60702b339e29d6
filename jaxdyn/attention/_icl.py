"""In-context linear regression with one layer of multi-head softmax attention, and its comparators.

The task (fresh every step): ``x_l, x_q ~ N(0, I_d)``, ``beta ~ N(0, I_d / d)``,
``y_l = beta . x_l + eps_l`` and ``y_q = beta . x_q + eps_q`` with ``eps ~ N(0, noise_var)``
(d = 5, L = 40, noise_var = 0.1 in the paper). Tokens ``z_l = (x_l, y_l)`` for the L context pairs
and ``z_q = (x_q, 0)`` for the query, last; no positional embedding.

The model (one layer, H heads, every matrix ``(d+1, d+1)``, no bias) reads out only at the query,
which attends to the L context tokens and not to itself. Weights act on rows as in the authors'
code (``q = z_q W_Q``), so with ``Z`` the ``(L, d+1)`` context::

  out = sum_h softmax(Z W_K^h (W_Q^h)^T z_q / sqrt(d+1))^T Z W_V^h W_O^h,   y_hat = out[-1].

In the paper's column notation this is ``sum_h O_h V_h Z softmax(Z^T K_h^T Q_h z_q / sqrt(d+1))``
with ``K_h^T Q_h = W_K^h (W_Q^h)^T``; only the last column of ``W_O^h`` reaches ``y_hat``.

The trained weights show two patterns: a homogeneous diagonal KQ, ``W_Q^h (W_K^h)^T ~ c_h I`` on
the x block (`kq_diagonal` reports ``omega_h = c_h / sqrt(d+1)``, the value inside the softmax),
and a last-entry-only OV, ``W_V^h W_O^h`` nonzero only at ``[-1, -1]`` (`ov_last_entry`:
``mu_h``), with ``sum_h mu_h ~ 0``. Then head h is the kernel smoother
``mu_h sum_l y_l softmax_l(omega_h x_l . x_q)``; expanding the softmax for small ``omega``,
``softmax_l(omega s) = (1 + omega (s_l - s_bar)) / L + O(omega^2)``, so two heads with
``(omega, mu)`` and ``(-omega, -mu)`` cancel the ``mu y_bar`` terms and give, up to ``O(omega^3)``
(the even orders cancel exactly), one step of debiased gradient descent::

  y_hat = (2 omega mu / L) [sum_l y_l x_l . x_q - (sum_l y_l) x_bar . x_q]
        = (2 omega mu / L) sum_l (y_l - y_bar) (x_l - x_bar) . x_q,

GD from zero on the centred context (`debiased_gd_predict`, step ``2 omega mu``, fitted by least
squares in `fit_debiased_gd_step`). For H heads in this pattern the expansion is
``(sum_h mu_h) y_bar + (sum_h omega_h mu_h / L) [...]``: debiased GD with step
``sum_h omega_h mu_h`` (`implied_gd_step`) once the ``mu_h`` sum to zero. A single head cannot
cancel ``mu y_bar``, which is why multi-head attention beats single-head; with more than two heads
the paper finds the extra ones act as dummies (small ``mu_h``). (Heads that share an ``omega`` and
split a ``mu`` are the same function as one head, so short runs may show that instead.)
The comparators: plain one-step GD / linear attention ``(eta / L) sum_l y_l x_l . x_q``
(`linear_attention_predict`), ridge (`ridge_predict`) and the Bayes-optimal posterior mean
(`bayes_predict`: ridge with ``lam = noise_var * d`` under the ``N(0, I / d)`` prior).

Paper vs code: the authors' notebook logs the KQ value as the mean of the first d diagonal entries
of ``W_Q W_K^T`` divided by ``sqrt(d + 2)``, while its attention scales scores by
``1 / sqrt(d + 1)`` (``n_embd = d + 1``; ``d + 2`` is the multi-task embedding width). The default
here divides by ``sqrt(d + 1)``, the factor the scores carry, so that ``2 omega mu`` is the
debiased-GD step; ``official_compat=True`` reproduces the code's ``sqrt(d + 2)``. The code's OV
entry ``(W_V W_O)[-1, 0]`` is over a one-column ``W_O`` (``n_out = 1``); with the square ``W_O``
kept here the same entry is ``[-1, -1]``. The code's data noise is ``noise_std * N(0, 1)`` with
``noise_std = sqrt(0.1)`` (variance 0.1), on the query target too; its initialisation is PyTorch's
``nn.Linear`` default, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (fan_in ``d + 1`` for Q, K, V and
``H (d + 1)`` for the shared output projection), which `init_icl_attention` follows.

References:
  He, Pan, Chen & Yang, "In-Context Linear Regression Demystified: Training Dynamics and Mechanistic
  Interpretability of Multi-Head Softmax Attention", ICML 2025, https://arxiv.org/abs/2503.12734;
  authors' code https://github.com/XintianPan/ICL_linear.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxdyn import _validation

__all__ = [
    "ICLBatch",
    "ICLTrainResult",
    "bayes_predict",
    "debiased_gd_predict",
    "fit_debiased_gd_step",
    "fit_linear_attention_step",
    "icl_attention",
    "icl_loss",
    "icl_tokens",
    "implied_gd_step",
    "init_icl_attention",
    "kq_diagonal",
    "linear_attention_predict",
    "ov_last_entry",
    "r_squared",
    "ridge_predict",
    "sample_tasks",
    "train_icl",
]

_PARAM_NAMES = ("q", "k", "v", "o")


class ICLBatch(NamedTuple):
  """A batch of in-context regression tasks.

  Attributes:
    x: context inputs ``(batch, L, d)``.
    y: context targets ``(batch, L)``.
    x_query: query inputs ``(batch, d)``.
    y_query: query targets ``(batch,)`` (noisy, like the context targets).
    beta: each task's regression vector ``(batch, d)``.
  """
  x: jax.Array
  y: jax.Array
  x_query: jax.Array
  y_query: jax.Array
  beta: jax.Array


class ICLTrainResult(NamedTuple):
  """What `train_icl` returns; unpacks as ``params, history``.

  Attributes:
    params: the final ``{"q", "k", "v", "o"}`` weights.
    history: NumPy arrays: ``step`` ``(n,)`` (0, then every ``log_every`` steps and the last
      step), ``loss`` ``(n,)`` (at step 0 the initial loss on the first batch, after that the mean
      training loss over the steps since the previous row), ``kq`` and ``ov`` ``(n, H)`` (per-head
      `kq_diagonal` and `ov_last_entry` after that step), and ``train_loss`` ``(steps,)`` (every
      step's batch loss, before its update).
  """
  params: dict[str, jax.Array]
  history: dict[str, np.ndarray]


# ------------------------------------------------------------------------------------------------
# Checks.


def _check_context(x: ArrayLike, y: ArrayLike, x_query: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``x`` ``(batch, L, d)``, ``y`` ``(batch, L)``, ``x_query`` ``(batch, d)``, floating and finite."""
  _validation.check_ndim("x", x, 3)
  _validation.check_ndim("y", y, 2)
  _validation.check_ndim("x_query", x_query, 2)
  _validation.check_nonempty("x", x, what="tasks")
  b, n, d = np.shape(x)
  if n < 1 or d < 1:
    raise ValueError(f"x: must be (batch, L, d) with L >= 1 and d >= 1, got shape {np.shape(x)}")
  if np.shape(y) != (b, n):
    raise ValueError(f"y: must have shape (batch, L) = {(b, n)} to match x, got {np.shape(y)}")
  if np.shape(x_query) != (b, d):
    raise ValueError(f"x_query: must have shape (batch, d) = {(b, d)} to match x, got {np.shape(x_query)}")
  out = []
  for name, a in (("x", x), ("y", y), ("x_query", x_query)):
    a = _validation.check_floating(name, a)
    _validation.check_finite(name, a)
    out.append(a)
  return out[0], out[1], out[2]


def _check_params(params: Any) -> dict[str, jax.Array]:
  """``params`` as ``{"q", "k", "v", "o"}``, each ``(H, d+1, d+1)`` of one shape, d >= 1."""
  if not isinstance(params, Mapping):
    raise TypeError(f"params: must be a mapping with keys {list(_PARAM_NAMES)}, got {type(params).__name__}")
  if set(params) != set(_PARAM_NAMES):
    raise ValueError(f"params: must have exactly the keys {list(_PARAM_NAMES)}, got {sorted(params)}")
  shape = np.shape(params["q"])
  if len(shape) != 3 or shape[0] < 1 or shape[1] != shape[2] or shape[1] < 2:
    raise ValueError(f"params: 'q' must have shape (H, d+1, d+1) with H >= 1 and d >= 1, got {shape}")
  out = {}
  for name in _PARAM_NAMES:
    if np.shape(params[name]) != shape:
      raise ValueError(f"params: '{name}' must have the shape of 'q' {shape}, got {np.shape(params[name])}")
    out[name] = _validation.check_floating(f"params['{name}']", params[name])
  return out


def _check_step(name: str, step: Any) -> Any:
  """A step size: a real number, or an array broadcastable to the batch (tracers pass)."""
  if np.ndim(step) == 0:
    return _validation.check_real(name, step)
  step = _validation.check_floating(name, step)
  _validation.check_finite(name, step)
  return step


# ------------------------------------------------------------------------------------------------
# Data.


def sample_tasks(key: jax.Array, batch: int, *, d: int = 5, context: int = 40,
                 noise_var: float = 0.1) -> ICLBatch:
  """Samples ``batch`` fresh regression tasks: ``x, x_q ~ N(0, I_d)``, ``beta ~ N(0, I_d / d)``.

  ``y = x . beta + eps`` with ``eps ~ N(0, noise_var)``, for the context and the query alike.

  Args:
    key: a `jax.random` key.
    batch: number of tasks, >= 1.
    d: input dimension, >= 1.
    context: number of context pairs L, >= 1.
    noise_var: the noise variance, >= 0.

  Returns:
    An `ICLBatch` of float32 arrays.

  Example:
    >>> b = sample_tasks(jax.random.key(0), 3, d=2, context=4)
    >>> b.x.shape, b.y.shape, b.x_query.shape, b.y_query.shape, b.beta.shape
    ((3, 4, 2), (3, 4), (3, 2), (3,), (3, 2))
  """
  _validation.check_key("key", key)
  batch = _validation.check_int("batch", batch, lower=1)
  d = _validation.check_int("d", d, lower=1)
  context = _validation.check_int("context", context, lower=1)
  noise_var = _validation.check_real("noise_var", noise_var, lower=0.0)
  return _sample(key, batch=batch, d=d, context=context, noise_var=noise_var)


@functools.partial(jax.jit, static_argnames=("batch", "d", "context", "noise_var"))
def _sample(key, *, batch, d, context, noise_var):
  # One flat draw sliced into the five parts: a single flat threefry draw compiles several times
  # faster than five n-d ones, which matters inside `train_icl`'s scan.
  width = (context + 2) * d + context + 1
  z = jax.random.normal(key, (batch * width,)).reshape(batch, width)
  cuts = np.cumsum([context * d, d, d, context])
  zx, zq, zb, ze, zeq = jnp.split(z, cuts, axis=1)
  x = zx.reshape(batch, context, d)
  x_query = zq
  beta = zb / math.sqrt(d)
  std = math.sqrt(noise_var)
  y = jnp.einsum("bld,bd->bl", x, beta) + std * ze
  y_query = jnp.einsum("bd,bd->b", x_query, beta) + std * zeq[:, 0]
  return ICLBatch(x, y, x_query, y_query, beta)


def icl_tokens(x: ArrayLike, y: ArrayLike, x_query: ArrayLike) -> jax.Array:
  """The token matrix ``Z`` ``(batch, L + 1, d + 1)``: rows ``(x_l, y_l)``, then ``(x_q, 0)`` last.

  Example:
    >>> Z = icl_tokens(jnp.ones((1, 2, 3)), jnp.full((1, 2), 5.0), jnp.full((1, 3), 2.0))
    >>> Z[0].tolist()
    [[1.0, 1.0, 1.0, 5.0], [1.0, 1.0, 1.0, 5.0], [2.0, 2.0, 2.0, 0.0]]
  """
  x, y, x_query = _check_context(x, y, x_query)
  return _tokens(x, y, x_query)


@jax.jit
def _tokens(x, y, x_query):
  ctx = jnp.concatenate([x, y[..., None]], axis=-1)
  query = jnp.concatenate([x_query, jnp.zeros_like(x_query[..., :1])], axis=-1)
  return jnp.concatenate([ctx, query[:, None, :]], axis=1)


# ------------------------------------------------------------------------------------------------
# The model.


def init_icl_attention(key: jax.Array, *, d: int, num_heads: int, init_scale: float = 1.0
                       ) -> dict[str, jax.Array]:
  """Initial weights ``{"q", "k", "v", "o"}``, each ``(num_heads, d + 1, d + 1)``, acting on rows.

  PyTorch's ``nn.Linear`` default as in the authors' code: ``U(-b, b)`` with ``b = init_scale /
  sqrt(fan_in)``, fan_in ``d + 1`` for Q, K, V and ``num_heads (d + 1)`` for O (one output
  projection over the concatenated heads there; head h's slice here).

  Args:
    key: a `jax.random` key.
    d: input dimension, >= 1 (tokens have d + 1 entries).
    num_heads: number of heads H, >= 1.
    init_scale: multiplies the bounds, > 0 (1 = the code's initialisation).

  Returns:
    The params dict of float32 arrays.
  """
  _validation.check_key("key", key)
  d = _validation.check_int("d", d, lower=1)
  num_heads = _validation.check_int("num_heads", num_heads, lower=1)
  init_scale = _validation.check_real("init_scale", init_scale, lower=0.0, lower_open=True)
  return _init(key, d=d, num_heads=num_heads, init_scale=init_scale)


@functools.partial(jax.jit, static_argnames=("d", "num_heads", "init_scale"))
def _init(key, *, d, num_heads, init_scale):
  n = d + 1
  bounds = {"q": 1 / math.sqrt(n), "k": 1 / math.sqrt(n), "v": 1 / math.sqrt(n),
            "o": 1 / math.sqrt(num_heads * n)}
  # One flat draw, sliced: a flat threefry draw compiles several times faster than an n-d one.
  u = jax.random.uniform(key, (4 * num_heads * n * n,), minval=-1.0, maxval=1.0).reshape(4, num_heads, n, n)
  return {name: u[i] * (init_scale * bounds[name]) for i, name in enumerate(_PARAM_NAMES)}


def _check_tokens(params: Any, Z: ArrayLike) -> tuple[dict[str, jax.Array], jax.Array]:
  params = _check_params(params)
  _validation.check_ndim("Z", Z, 3)
  _validation.check_nonempty("Z", Z, what="tasks")
  n = np.shape(params["q"])[-1]
  if np.shape(Z)[-1] != n or np.shape(Z)[1] < 2:
    raise ValueError(f"Z: must have shape (batch, L + 1, d + 1) with L >= 1 and d + 1 = {n} (the params' "
                     f"width), got {np.shape(Z)}")
  Z = _validation.check_floating("Z", Z)
  _validation.check_finite("Z", Z)
  return params, Z


def icl_attention(params: Any, Z: ArrayLike, *, per_head: bool = False) -> jax.Array:
  """The one-layer multi-head softmax attention's prediction at the query (the last token of ``Z``).

  The query ``z_q = Z[:, -1]`` attends to the L context tokens ``Z[:, :-1]`` only, scores scaled
  by ``1 / sqrt(d + 1)``; the prediction is the last entry of ``sum_h attn_h Z W_V^h W_O^h``.

  Args:
    params: ``{"q", "k", "v", "o"}``, each ``(H, d + 1, d + 1)`` (see `init_icl_attention`).
    Z: tokens ``(batch, L + 1, d + 1)`` from `icl_tokens`.
    per_head: return each head's contribution ``(batch, H)`` instead of their sum.

  Returns:
    Predictions ``(batch,)`` (or ``(batch, H)`` with ``per_head``).
  """
  params, Z = _check_tokens(params, Z)
  heads = _forward(params, Z)
  return heads if per_head else heads.sum(-1)


@jax.jit
def _forward(params, Z):
  """Each head's contribution ``(batch, H)``."""
  ctx, zq = Z[:, :-1], Z[:, -1]
  q = jnp.einsum("bi,hij->bhj", zq, params["q"])
  k = jnp.einsum("bli,hij->bhlj", ctx, params["k"])
  scores = jnp.einsum("bhj,bhlj->bhl", q, k) / math.sqrt(Z.shape[-1])
  attn = jax.nn.softmax(scores, axis=-1)
  pooled = jnp.einsum("bhl,bli->bhi", attn, ctx)
  return jnp.einsum("bhi,hij,hj->bh", pooled, params["v"], params["o"][:, :, -1])


def icl_loss(params: Any, batch: ICLBatch) -> jax.Array:
  """Mean squared error of `icl_attention` on ``batch`` against its noisy query targets."""
  if not isinstance(batch, ICLBatch):
    raise TypeError(f"batch: must be an ICLBatch (from sample_tasks), got {type(batch).__name__}")
  Z = icl_tokens(batch.x, batch.y, batch.x_query)
  params, Z = _check_tokens(params, Z)
  if np.shape(batch.y_query) != (Z.shape[0],):
    raise ValueError(f"batch.y_query: must have shape (batch,) = {(Z.shape[0],)}, got {np.shape(batch.y_query)}")
  return _mse(params, Z, batch.y_query)


@jax.jit
def _mse(params, Z, y_query):
  return jnp.mean((_forward(params, Z).sum(-1) - y_query) ** 2)


# ------------------------------------------------------------------------------------------------
# Metrics.


def kq_diagonal(params: Any, d: int | None = None, *, official_compat: bool = False) -> jax.Array:
  """Per head, the mean of the first d diagonal entries of ``W_Q W_K^T``, scaled: ``(H,)``.

  Divided by ``sqrt(d + 1)`` (default: the factor the attention scores carry, so that this is the
  ``omega`` of the debiased-GD step ``2 omega mu``), or by ``sqrt(d + 2)`` with
  ``official_compat=True`` as the authors' logging code does.

  Args:
    params: the model's weights.
    d: the input dimension; None reads it from the weights, else it must equal their width - 1.
    official_compat: use the code's ``sqrt(d + 2)``.
  """
  params = _check_params(params)
  n = params["q"].shape[-1]
  if d is not None:
    d = _validation.check_int("d", d, lower=1)
    if d != n - 1:
      raise ValueError(f"d: must equal the params' width - 1 = {n - 1}, got {d}")
  return _kq(params["q"], params["k"], official_compat=bool(official_compat))


@functools.partial(jax.jit, static_argnames=("official_compat",))
def _kq(q, k, *, official_compat):
  d = q.shape[-1] - 1
  diag = jnp.einsum("hij,hij->hi", q, k)[:, :d]  # diag(W_Q W_K^T)_i = sum_j q_ij k_ij
  return diag.mean(-1) / math.sqrt(d + 2 if official_compat else d + 1)


def ov_last_entry(params: Any) -> jax.Array:
  """Per head, ``(W_V^h W_O^h)[-1, -1]``: how the context's y slot reaches the prediction ``(H,)``.

  The code's ``(W_V W_O)[-1, 0]`` over its one-column output projection; sums to about 0 across
  heads after training.
  """
  params = _check_params(params)
  return _ov(params["v"], params["o"])


@jax.jit
def _ov(v, o):
  return jnp.einsum("hi,hi->h", v[:, -1, :], o[:, :, -1])


def implied_gd_step(params: Any) -> jax.Array:
  """``sum_h omega_h mu_h``, the debiased-GD step the weights imply to first order (a scalar).

  ``omega_h`` is the default (``sqrt(d + 1)``) `kq_diagonal` and ``mu_h`` the `ov_last_entry`;
  ``2 omega mu`` for two paired heads. Meaningful when the weights show the diagonal KQ and
  last-entry OV pattern and the ``mu_h`` sum to about 0 (else ``(sum_h mu_h) y_bar`` is added).
  """
  return jnp.sum(kq_diagonal(params) * ov_last_entry(params))


# ------------------------------------------------------------------------------------------------
# Predictors.


@jax.jit
def _debiased_gd_unit(x, y, x_query):
  """``(1 / L) [sum_l y_l x_l . x_q - (sum_l y_l) x_bar . x_q]`` (step 1)."""
  xbar = x.mean(1)
  s = jnp.einsum("bl,bld,bd->b", y, x, x_query)
  return (s - y.sum(1) * jnp.einsum("bd,bd->b", xbar, x_query)) / x.shape[1]


@jax.jit
def _linear_unit(x, y, x_query):
  """``(1 / L) sum_l y_l x_l . x_q`` (step 1)."""
  return jnp.einsum("bl,bld,bd->b", y, x, x_query) / x.shape[1]


def debiased_gd_predict(x: ArrayLike, y: ArrayLike, x_query: ArrayLike, step: Any) -> jax.Array:
  """One step of debiased GD: ``(step / L) [sum_l y_l x_l . x_q - (sum_l y_l) x_bar . x_q]``.

  Equal to ``(step / L) sum_l (y_l - y_bar)(x_l - x_bar) . x_q``: GD from zero on the centred
  context. A trained two-head model has ``step = 2 omega mu`` (see the module docstring).

  Args:
    x, y, x_query: the context ``(batch, L, d)``, ``(batch, L)`` and queries ``(batch, d)``.
    step: the step size, a real number (or an array broadcastable to ``(batch,)``).

  Returns:
    Predictions ``(batch,)``.
  """
  x, y, x_query = _check_context(x, y, x_query)
  return _check_step("step", step) * _debiased_gd_unit(x, y, x_query)


def linear_attention_predict(x: ArrayLike, y: ArrayLike, x_query: ArrayLike, step: Any) -> jax.Array:
  """One step of plain GD from zero (one-layer linear attention): ``(step / L) sum_l y_l x_l . x_q``."""
  x, y, x_query = _check_context(x, y, x_query)
  return _check_step("step", step) * _linear_unit(x, y, x_query)


def _fit_scalar(unit: jax.Array, target: ArrayLike) -> jax.Array:
  _validation.check_ndim("target", target, 1)
  if np.shape(target) != unit.shape:
    raise ValueError(f"target: must have shape (batch,) = {unit.shape}, got {np.shape(target)}")
  target = _validation.check_floating("target", target)
  _validation.check_finite("target", target)
  gg = jnp.vdot(unit, unit)
  # A zero feature (e.g. every y_l = 0) leaves the step undefined: the minimum-norm fit is 0.
  return jnp.where(gg > 0, jnp.vdot(unit, target) / jnp.where(gg > 0, gg, 1.0), 0.0)


def fit_debiased_gd_step(x: ArrayLike, y: ArrayLike, x_query: ArrayLike, target: ArrayLike) -> jax.Array:
  """The least-squares step for `debiased_gd_predict`: ``argmin_s sum_b (s g_b - target_b)^2``.

  Closed form ``<g, target> / <g, g>`` with ``g`` the step-1 prediction. Fit it to the query
  targets for the best debiased-GD predictor on a sample, or to a model's predictions to read the
  step the model implements.
  """
  x, y, x_query = _check_context(x, y, x_query)
  return _fit_scalar(_debiased_gd_unit(x, y, x_query), target)


def fit_linear_attention_step(x: ArrayLike, y: ArrayLike, x_query: ArrayLike, target: ArrayLike) -> jax.Array:
  """The least-squares step for `linear_attention_predict` (as `fit_debiased_gd_step`)."""
  x, y, x_query = _check_context(x, y, x_query)
  return _fit_scalar(_linear_unit(x, y, x_query), target)


def ridge_predict(x: ArrayLike, y: ArrayLike, x_query: ArrayLike, lam: float) -> jax.Array:
  """Ridge regression on each context: ``x_q . (X^T X + lam I)^{-1} X^T y`` ``(batch,)``.

  ``lam`` (> 0, unnormalised: the penalty on the sum of squares) keeps ``X^T X + lam I``
  invertible whatever the context; a tiny ``lam`` approximates least squares.
  """
  x, y, x_query = _check_context(x, y, x_query)
  lam = _validation.check_real("lam", lam, lower=0.0, lower_open=True)
  return _ridge(x, y, x_query, lam)


@jax.jit
def _ridge(x, y, x_query, lam):
  d = x.shape[-1]
  gram = jnp.einsum("bli,blj->bij", x, x) + lam * jnp.eye(d, dtype=x.dtype)
  beta = jnp.linalg.solve(gram, jnp.einsum("bli,bl->bi", x, y)[..., None])[..., 0]
  return jnp.einsum("bd,bd->b", beta, x_query)


def bayes_predict(x: ArrayLike, y: ArrayLike, x_query: ArrayLike, *, d: int | None = None,
                  noise_var: float = 0.1) -> jax.Array:
  """The Bayes-optimal prediction, the posterior mean of ``x_q . beta`` under ``beta ~ N(0, I / d)``.

  With Gaussian noise of variance ``noise_var`` the posterior mean of ``beta`` is ridge with
  ``lam = noise_var * d``. ``d`` (the prior's ``1 / d`` variance) defaults to the inputs' dimension.
  """
  d = np.shape(x)[-1] if d is None else _validation.check_int("d", d, lower=1)
  noise_var = _validation.check_real("noise_var", noise_var, lower=0.0, lower_open=True)
  return ridge_predict(x, y, x_query, noise_var * d)


def r_squared(pred: ArrayLike, target: ArrayLike) -> jax.Array:
  """The coefficient of determination ``1 - sum (pred - target)^2 / sum (target - mean)^2``."""
  _validation.check_ndim("pred", pred, 1)
  _validation.check_same_shape("pred", pred, "target", target)
  if np.shape(pred)[0] < 2:
    raise ValueError(f"pred: must hold at least 2 values, got shape {np.shape(pred)}")
  pred = _validation.check_floating("pred", pred)
  target = _validation.check_floating("target", target)
  _validation.check_finite("pred", pred)
  _validation.check_finite("target", target)
  return 1.0 - jnp.sum((pred - target) ** 2) / jnp.sum((target - target.mean()) ** 2)


# ------------------------------------------------------------------------------------------------
# Training.


@functools.partial(jax.jit, static_argnames=("n", "batch", "d", "context", "noise_var", "learning_rate"))
def _train_chunk(params, opt_state, data_key, start, *, n, batch, d, context, noise_var, learning_rate):
  opt = optax.adam(learning_rate)

  def one(carry, t):
    params, opt_state = carry
    tasks = sample_tasks(jax.random.fold_in(data_key, t), batch, d=d, context=context, noise_var=noise_var)
    loss, grads = jax.value_and_grad(icl_loss)(params, tasks)
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, opt_state), losses = jax.lax.scan(one, (params, opt_state), start + jnp.arange(n))
  return params, opt_state, losses


def train_icl(key: jax.Array, *, num_heads: int, d: int = 5, context: int = 40, steps: int,
              batch: int = 256, learning_rate: float = 1e-3, noise_var: float = 0.1,
              log_every: int = 100, init_scale: float = 1.0, official_compat: bool = False
              ) -> ICLTrainResult:
  """Trains the one-layer model with Adam on fresh tasks every step (the paper's set-up).

  Pure: the same key gives the same result, whatever ``log_every``. Step t's tasks come from
  ``fold_in(data_key, t)``; the steps run in jitted ``lax.scan`` chunks of ``log_every``.

  Args:
    key: a `jax.random` key (split into the initialisation and the data keys).
    num_heads: number of heads H.
    d, context, noise_var: the task (`sample_tasks`).
    steps: number of Adam steps, >= 1.
    batch: tasks per step.
    learning_rate: Adam's learning rate (> 0).
    log_every: steps between history rows, >= 1.
    init_scale: passed to `init_icl_attention`.
    official_compat: the code's ``sqrt(d + 2)`` in the logged `kq_diagonal`.

  Returns:
    An `ICLTrainResult` ``(params, history)``.
  """
  _validation.check_key("key", key)
  num_heads = _validation.check_int("num_heads", num_heads, lower=1)
  d = _validation.check_int("d", d, lower=1)
  context = _validation.check_int("context", context, lower=1)
  steps = _validation.check_int("steps", steps, lower=1)
  batch = _validation.check_int("batch", batch, lower=1)
  learning_rate = _validation.check_real("learning_rate", learning_rate, lower=0.0, lower_open=True)
  noise_var = _validation.check_real("noise_var", noise_var, lower=0.0)
  log_every = _validation.check_int("log_every", log_every, lower=1)
  init_key, data_key = jax.random.split(key)
  params = init_icl_attention(init_key, d=d, num_heads=num_heads, init_scale=init_scale)
  opt_state = optax.adam(learning_rate).init(params)
  static = dict(batch=batch, d=d, context=context, noise_var=noise_var, learning_rate=learning_rate)

  first = sample_tasks(jax.random.fold_in(data_key, 0), batch, d=d, context=context, noise_var=noise_var)
  rows_step, rows_loss = [0], [float(icl_loss(params, first))]
  rows_kq = [np.asarray(kq_diagonal(params, official_compat=official_compat))]
  rows_ov = [np.asarray(ov_last_entry(params))]
  all_losses = []
  done = 0
  while done < steps:
    n = min(log_every, steps - done)
    params, opt_state, losses = _train_chunk(params, opt_state, data_key, jnp.asarray(done), n=n, **static)
    done += n
    losses = np.asarray(losses)
    all_losses.append(losses)
    rows_step.append(done)
    rows_loss.append(float(losses.mean()))
    rows_kq.append(np.asarray(kq_diagonal(params, official_compat=official_compat)))
    rows_ov.append(np.asarray(ov_last_entry(params)))
  history = {"step": np.asarray(rows_step), "loss": np.asarray(rows_loss), "kq": np.stack(rows_kq),
             "ov": np.stack(rows_ov), "train_loss": np.concatenate(all_losses)}
  return ICLTrainResult(params, history)
