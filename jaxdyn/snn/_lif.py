"""Leaky integrate-and-fire (LIF) neurons as pure step functions with an explicit membrane state.

u[t] = lam * v[t-1] + I[t],  lam = 1 - 1 / tau  (inputs are not decayed; v[0] = 0)
s[t] = H(u[t] - V_th)        (H(0) = 1; the derivative is a surrogate, see `jaxdyn.snn.spike`)
v[t] = u[t] - V_th * s[t]    (soft reset, not detached)   or   v[t] = u[t] * (1 - s[t])  (hard reset)

Defaults follow Meng et al.'s SLTT code: tau = 1.1 (lam ~= 0.0909), V_th = 1, soft reset, triangle
surrogate. ``detach_membrane=True`` treats v[t-1] as a constant when computing u[t]: that is SLTT's
only change to the network.

A NaN or an infinite membrane potential fires a NaN spike (`jaxdyn.snn.spike`), so a non-finite
current or state propagates to v and to every later layer. An empty neuron set (a batch of N = 0)
gives empty spikes and membranes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn.snn._surrogate import _resolve, spike

__all__ = [
    "LIF",
    "LIFConfig",
    "lif_multistep",
    "lif_step",
]

RESETS = ("soft", "hard")


@dataclasses.dataclass(frozen=True)
class LIFConfig:
  """The LIF neuron's hyperparameters, validated on construction.

  Numbers may be Python or NumPy scalars or 0-d arrays; they are stored as Python floats.

  Attributes:
    tau: membrane time constant, > 1; the decay is lam = 1 - 1 / tau (the authors' default 1.1);
      ``inf`` gives lam = 1 (integrate-and-fire, no leak).
    v_th: firing threshold V_th > 0, finite (and representable in the currents' dtype when used).
    reset: ``"soft"`` (subtract V_th) or ``"hard"`` (to zero).
    surrogate: a registered surrogate name (`jaxdyn.snn.SURROGATES` or one added later).
    alpha: the surrogate's sharpness in [1e-4, 1e4]; None gives its default.
  """

  tau: float = 1.1
  v_th: float = 1.0
  reset: str = "soft"
  surrogate: str = "triangle"
  alpha: float | None = None

  def __post_init__(self):
    checked = {
        "tau": _validation.check_real("tau", self.tau, lower=1.0, lower_open=True, finite=False),
        "v_th": _validation.check_real("v_th", self.v_th, lower=0.0, lower_open=True),
        "reset": _validation.check_choice("reset", self.reset, RESETS),
    }
    _, alpha = _resolve(self.surrogate, self.alpha)
    checked["alpha"] = None if self.alpha is None else alpha
    for name, value in checked.items():  # Python numbers: hashable, and equal for equal values
      object.__setattr__(self, name, value)

  def check_dtype(self, currents: jax.Array) -> None:
    """Raises naming ``v_th`` when the threshold overflows the dtype the neuron computes ``currents`` in."""
    dtype = jnp.result_type(currents, 1.0)
    _validation.check_real("v_th", self.v_th, lower=0.0, lower_open=True, upper=float(jnp.finfo(dtype).max))

  @property
  def lam(self) -> float:
    """The membrane decay 1 - 1 / tau."""
    return 1.0 - 1.0 / self.tau


def charge_fire_reset(cfg: LIFConfig, v, current, fire):
  """One LIF update, ``(u, s, v_new)``: u = lam v + I, s = fire(u - V_th), v_new = reset(u, s).

  ``v=None`` means v = 0. Shared by the jnp path (``fire`` = `spike`, with its surrogate gradient) and
  the Pallas forward kernel (``fire`` = the plain Heaviside), so that both compute the same neuron.
  """
  u = current if v is None else cfg.lam * v + current
  s = fire(u - cfg.v_th)
  return u, s, (u - cfg.v_th * s if cfg.reset == "soft" else u * (1.0 - s))


def time_major(currents: ArrayLike, v0: ArrayLike | None) -> tuple[jax.Array, jax.Array]:
  """``currents`` as a floating ``(T, ...)`` array (T >= 1) and ``v0`` (zeros if None) of its step shape."""
  currents = jnp.asarray(currents)
  if not jnp.issubdtype(currents.dtype, jnp.floating):
    currents = currents.astype(jnp.result_type(float))
  if currents.ndim < 1 or currents.shape[0] < 1:
    raise ValueError(f"currents: need a leading time axis of length >= 1, got shape {currents.shape}")
  v0 = jnp.zeros(currents.shape[1:], currents.dtype) if v0 is None else jnp.asarray(v0, currents.dtype)
  if v0.shape != currents.shape[1:]:
    raise ValueError(f"v0: shape {v0.shape} does not match currents.shape[1:] = {currents.shape[1:]}")
  return currents, v0


def _apply(cfg: LIFConfig, v: jax.Array | None, current: jax.Array, detach_membrane: bool):
  cfg.check_dtype(current)
  if v is not None and detach_membrane:
    v = jax.lax.stop_gradient(v)
  _, s, v_new = charge_fire_reset(cfg, v, current,
                                  lambda x: spike(x, surrogate=cfg.surrogate, alpha=cfg.alpha))
  return s, v_new


def lif_step(
    v: ArrayLike | None,
    current: ArrayLike,
    *,
    tau: float = 1.1,
    v_th: float = 1.0,
    reset: str = "soft",
    surrogate: str = "triangle",
    alpha: float | None = None,
    detach_membrane: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """One LIF step: charge, fire, reset.

  u = lam * v + I (lam = 1 - 1/tau), s = H(u - V_th), v' = u - V_th s (soft) or u (1 - s) (hard).

  Args:
    v: the membrane potential after the previous step's reset, or None for v = 0 (the first step).
    current: the input current I[t], same shape as ``v``.
    tau: time constant > 1 (default 1.1 as in the SLTT code; ``inf``: no leak).
    v_th: threshold > 0, finite.
    reset: ``"soft"`` or ``"hard"``.
    surrogate: surrogate derivative name for H.
    alpha: surrogate sharpness in [1e-4, 1e4] (None: the surrogate's default).
    detach_membrane: treat ``v`` as a constant (SLTT's stopped temporal path).

  Returns:
    ``(spikes, v_new)``; NaN spike and membrane where u is NaN or infinite; empty for empty inputs.

  Example:
    >>> import jax.numpy as jnp
    >>> s, v = lif_step(None, jnp.array([0.5, 1.2]))
    >>> s.tolist(), [round(x, 4) for x in v.tolist()]
    ([0.0, 1.0], [0.5, 0.2])

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  cfg = LIFConfig(tau=tau, v_th=v_th, reset=reset, surrogate=surrogate, alpha=alpha)
  current = jnp.asarray(current)
  if v is not None:
    v = jnp.asarray(v)
    if v.shape != current.shape:
      raise ValueError(f"v: shape {v.shape} does not match current.shape = {current.shape}")
  return _apply(cfg, v, current, detach_membrane)


def lif_multistep(
    currents: ArrayLike,
    v0: ArrayLike | None = None,
    *,
    tau: float = 1.1,
    v_th: float = 1.0,
    reset: str = "soft",
    surrogate: str = "triangle",
    alpha: float | None = None,
    detach_membrane: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """T LIF steps over time-major currents with `jax.lax.scan` (the jnp path; differentiable).

  For t = 1..T: (s[t], v[t]) = lif_step(v[t-1], I[t]); v[0] = ``v0`` (zeros if None).

  Args:
    currents: ``(T, ...)`` input currents, T >= 1 (integers become the default float).
    v0: initial membrane potential ``(...)``, or None for zeros.
    tau, v_th, reset, surrogate, alpha, detach_membrane: as in `lif_step`.

  Returns:
    ``(spikes (T, ...), v_T (...))``; a NaN or infinite current or v0 gives NaN spikes from that
    neuron's step on; zero neurons (``currents.shape[1:]`` with a 0) give empty arrays.

  Example:
    >>> import jax.numpy as jnp
    >>> s, v = lif_multistep(jnp.full((3, 1), 0.6))
    >>> s[:, 0].tolist()
    [0.0, 0.0, 0.0]

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  cfg = LIFConfig(tau=tau, v_th=v_th, reset=reset, surrogate=surrogate, alpha=alpha)
  currents, v = time_major(currents, v0)

  def body(v, i):
    s, v = _apply(cfg, v, i, detach_membrane)
    return v, s

  v, s = jax.lax.scan(body, v, currents)
  return s, v


class LIF(nnx.Module):
  """A LIF layer (no parameters): ``layer(v, current) -> (spikes, v_new)``, membrane as explicit carry.

  Thin NNX wrapper over `lif_step`; the membrane state is passed in and returned, never stored.

  Args:
    tau, v_th, reset, surrogate, alpha: as in `lif_step` (validated here, once).

  Returns:
    (on call) ``(spikes, v_new)``; ``v=None`` means v = 0.

  Example:
    >>> import jax.numpy as jnp
    >>> s, v = LIF()(None, jnp.ones(2))
    >>> s.tolist()
    [1.0, 1.0]

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """

  def __init__(self, *, tau: float = 1.1, v_th: float = 1.0, reset: str = "soft",
               surrogate: str = "triangle", alpha: float | None = None):
    self.config = LIFConfig(tau=tau, v_th=v_th, reset=reset, surrogate=surrogate, alpha=alpha)

  def __call__(self, v: jax.Array | None, current: jax.Array, *,
               detach_membrane: bool = False) -> tuple[jax.Array, jax.Array]:
    return _apply(self.config, v, current, detach_membrane)
