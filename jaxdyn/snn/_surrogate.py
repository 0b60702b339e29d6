"""Spike function H(x) = [x >= 0] with surrogate derivatives (a `jax.custom_jvp` per surrogate).

The forward pass is the Heaviside step with H(0) = 1; the derivative used by autodiff is a smooth
or boxed stand-in ("surrogate"). Three are built in, as in Meng et al.'s SLTT code:

- ``triangle`` (the authors' default; SpikingJelly's PiecewiseQuadratic): max(0, a - a^2 |x|), a = 1;
- ``rectangle``: 1 / a if |x| <= a / 2 else 0, a = 1 (a box of width 1 and height 1);
- ``sigmoid``: a sig(a x) (1 - sig(a x)), a = 4.

Adding one: ``register_surrogate("name", derivative, default_alpha=...)`` with ``derivative(x, alpha)``
the pseudo-derivative dH/dx as a jnp function; ``spike(x, surrogate="name")`` then uses it, and so do
every LIF function and spiking model in `jaxdyn.snn`.

Non-finite inputs: the spike and the surrogate derivative of a NaN or an infinite x are NaN (a membrane
potential of +-inf has no meaningful spike), so a NaN or an infinity anywhere upstream reaches every
later layer and the loss instead of being absorbed into a finite 0 or 1. The sharpness alpha is
limited to [1e-4, 1e4], where every built-in surrogate stays finite even in float16.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxdyn import _validation

__all__ = [
    "SURROGATES",
    "register_surrogate",
    "spike",
    "surrogate_derivative",
]

Derivative = Callable[[jax.Array, float], jax.Array]


@dataclasses.dataclass(frozen=True)
class _Surrogate:
  derivative: Derivative
  default_alpha: float


def _triangle(x, alpha):
  # a - a^2 |x| written as a (1 - a |x|): a^2 overflows half precision for large a.
  return alpha * jnp.maximum(0.0, 1.0 - alpha * jnp.abs(x))


def _rectangle(x, alpha):
  return jnp.where(jnp.abs(x) <= alpha / 2, 1.0 / alpha, 0.0)


def _sigmoid(x, alpha):
  s = jax.nn.sigmoid(alpha * x)
  return alpha * s * (1.0 - s)


_REGISTRY: dict[str, _Surrogate] = {
    "triangle": _Surrogate(_triangle, 1.0),
    "rectangle": _Surrogate(_rectangle, 1.0),
    "sigmoid": _Surrogate(_sigmoid, 4.0),
}
SURROGATES = ("triangle", "rectangle", "sigmoid")  # the built-in names; see `register_surrogate`


ALPHA_RANGE = (1e-4, 1e4)  # accepted sharpness values: every built-in surrogate is finite in float16


def _resolve(surrogate: str, alpha: float | None) -> tuple[str, float]:
  """Checks a surrogate name and its sharpness; returns ``(name, alpha)`` with None resolved."""
  _validation.check_choice("surrogate", surrogate, sorted(_REGISTRY))
  return surrogate, (_REGISTRY[surrogate].default_alpha if alpha is None else
                     _validation.check_real("alpha", alpha, lower=ALPHA_RANGE[0], upper=ALPHA_RANGE[1]))


def heaviside(x: jax.Array) -> jax.Array:
  """H(x) = [x >= 0] in the dtype of ``x``; NaN where ``x`` is NaN or infinite (no gradient rule).

  Shared by `spike` and the Pallas LIF kernel, so that both fire identically.
  """
  return jnp.where(jnp.isfinite(x), (x >= 0).astype(x.dtype), jnp.asarray(jnp.nan, x.dtype))


def slope(name: str, x: jax.Array, alpha: float) -> jax.Array:
  """The surrogate dH/dx of the registered ``name`` at ``x`` in its dtype; NaN where ``x`` is not finite."""
  g = _REGISTRY[name].derivative(x, alpha).astype(x.dtype)
  return jnp.where(jnp.isfinite(x), g, jnp.asarray(jnp.nan, x.dtype))


def register_surrogate(name: str, derivative: Derivative, *, default_alpha: float = 1.0) -> None:
  """Adds a surrogate derivative that `spike` and every LIF function can then use by name.

  The spike keeps its Heaviside forward pass H(x) = [x >= 0]; only dH/dx changes to
  ``derivative(x, alpha)``.

  Args:
    name: the surrogate's name (a new one; the built-ins cannot be replaced).
    derivative: ``(x, alpha) -> dH/dx`` elementwise, written in jnp.
    default_alpha: the alpha used when callers pass ``alpha=None``, in [1e-4, 1e4].

  Returns:
    None.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> register_surrogate("box2", lambda x, a: jnp.where(jnp.abs(x) <= 1 / a, a / 2, 0.0))
    >>> float(jax.grad(lambda x: spike(x, surrogate="box2"))(0.3))
    0.5

  References:
    Meng et al., "Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural
    Networks", ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  if not isinstance(name, str):
    raise TypeError(f"name: must be a non-empty string, got {name!r}")
  if not name:
    raise ValueError(f"name: must be a non-empty string, got {name!r}")
  if name in SURROGATES:
    raise ValueError(f"name: {name!r} is a built-in surrogate ({list(SURROGATES)}) and cannot be replaced")
  if not callable(derivative):
    raise TypeError(f"derivative: must be a callable (x, alpha) -> dH/dx, got {derivative!r}")
  _REGISTRY[name] = _Surrogate(derivative, _validation.check_real("default_alpha", default_alpha, lower=ALPHA_RANGE[0],
                                                                upper=ALPHA_RANGE[1]))
  _spike_fn.cache_clear()


@functools.lru_cache(maxsize=None)
def _spike_fn(name: str, alpha: float) -> Callable[[jax.Array], jax.Array]:
  @jax.custom_jvp
  def fire(x):
    return heaviside(x)

  @fire.defjvp
  def _jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return heaviside(x), (slope(name, x, alpha) * dx).astype(x.dtype)

  return fire


def spike(x: ArrayLike, *, surrogate: str = "triangle", alpha: float | None = None) -> jax.Array:
  """Heaviside spike H(x) = [x >= 0] whose derivative is the named surrogate.

  Forward: s = H(x), H(0) = 1. Backward: ds/dx := g_a(x), e.g. triangle g_a(x) = max(0, a - a^2 |x|).

  Args:
    x: the membrane potential minus the threshold, u - V_th (floating; integers become float32).
    surrogate: ``"triangle"`` (default, a = 1), ``"rectangle"`` (a = 1), ``"sigmoid"`` (a = 4) or a
      name added with `register_surrogate`.
    alpha: the surrogate's sharpness a in [1e-4, 1e4]; None gives its default.

  Returns:
    Spikes in {0, 1} with the dtype of ``x``; NaN where ``x`` is NaN or infinite, so that a non-finite
    membrane reaches the loss (elementwise, fused with the comparison: no extra pass).

  Example:
    >>> import jax
    >>> float(spike(0.0)), float(jax.grad(spike)(0.25))
    (1.0, 0.75)

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  name, a = _resolve(surrogate, alpha)
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  return _spike_fn(name, a)(x)


def surrogate_derivative(x: ArrayLike, *, surrogate: str = "triangle",
                         alpha: float | None = None) -> jax.Array:
  """The surrogate's dH/dx at ``x``, evaluated directly (what autodiff of `spike` uses).

  Args:
    x: points u - V_th.
    surrogate: a registered surrogate name.
    alpha: its sharpness in [1e-4, 1e4]; None gives the default.

  Returns:
    g_a(x), elementwise (NaN where ``x`` is NaN or infinite).

  Example:
    >>> float(surrogate_derivative(0.0, surrogate="sigmoid"))
    1.0

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311.
  """
  name, a = _resolve(surrogate, alpha)
  return slope(name, jnp.asarray(x, jnp.result_type(float)), a)
