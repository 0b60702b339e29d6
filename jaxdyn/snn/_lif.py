"""Leaky integrate-and-fire (LIF) neurons as pure step functions with an explicit membrane state.

u[t] = lam * v[t-1] + I[t],  lam = 1 - 1 / tau  (inputs are not decayed; v[0] = 0)
s[t] = H(u[t] - V_th)        (H(0) = 1; the derivative is a surrogate, see `jaxdyn.snn.spike`)
v[t] = u[t] - V_th * s[t]    (soft reset, not detached)   or   v[t] = u[t] * (1 - s[t])  (hard reset)

Defaults follow Meng et al.'s SLTT code: tau = 1.1 (lam ~= 0.0909), V_th = 1, soft reset, triangle
surrogate. ``detach_membrane=True`` treats v[t-1] as a constant when computing u[t]: that is SLTT's
only change to the network.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jaxdyn.snn._surrogate import _check_alpha, check_surrogate, spike

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

  Attributes:
    tau: membrane time constant, > 1; the decay is lam = 1 - 1 / tau (the authors' default 1.1).
    v_th: firing threshold V_th > 0.
    reset: ``"soft"`` (subtract V_th) or ``"hard"`` (to zero).
    surrogate: a registered surrogate name (`jaxdyn.snn.SURROGATES` or one added later).
    alpha: the surrogate's sharpness; None gives its default.
  """

  tau: float = 1.1
  v_th: float = 1.0
  reset: str = "soft"
  surrogate: str = "triangle"
  alpha: float | None = None

  def __post_init__(self):
    if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not self.tau > 1.0:
      raise ValueError(f"tau: must be a number > 1 (the decay lam = 1 - 1/tau lies in (0, 1)), got {self.tau!r}")
    if isinstance(self.v_th, bool) or not isinstance(self.v_th, (int, float)) or not self.v_th > 0.0:
      raise ValueError(f"v_th: the threshold must be a number > 0, got {self.v_th!r}")
    if self.reset not in RESETS:
      raise ValueError(f"reset: must be one of {list(RESETS)}, got {self.reset!r}")
    check_surrogate(self.surrogate)
    if self.alpha is not None:
      _check_alpha(self.alpha)

  @property
  def lam(self) -> float:
    """The membrane decay 1 - 1 / tau."""
    return 1.0 - 1.0 / self.tau


def _config(tau, v_th, reset, surrogate, alpha) -> LIFConfig:
  return LIFConfig(tau=tau, v_th=v_th, reset=reset, surrogate=surrogate, alpha=alpha)


def _apply(cfg: LIFConfig, v: jax.Array | None, current: jax.Array, detach_membrane: bool):
  if v is not None and detach_membrane:
    v = jax.lax.stop_gradient(v)
  u = current if v is None else cfg.lam * v + current
  s = spike(u - cfg.v_th, surrogate=cfg.surrogate, alpha=cfg.alpha)
  v_new = u - cfg.v_th * s if cfg.reset == "soft" else u * (1.0 - s)
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
    tau: time constant > 1 (default 1.1 as in the SLTT code).
    v_th: threshold > 0.
    reset: ``"soft"`` or ``"hard"``.
    surrogate: surrogate derivative name for H.
    alpha: surrogate sharpness (None: the surrogate's default).
    detach_membrane: treat ``v`` as a constant (SLTT's stopped temporal path).

  Returns:
    ``(spikes, v_new)``.

  Example:
    >>> import jax.numpy as jnp
    >>> s, v = lif_step(None, jnp.array([0.5, 1.2]))
    >>> s.tolist(), [round(x, 4) for x in v.tolist()]
    ([0.0, 1.0], [0.5, 0.2])

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  cfg = _config(tau, v_th, reset, surrogate, alpha)
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
    currents: ``(T, ...)`` input currents.
    v0: initial membrane potential ``(...)``, or None for zeros.
    tau, v_th, reset, surrogate, alpha, detach_membrane: as in `lif_step`.

  Returns:
    ``(spikes (T, ...), v_T (...))``.

  Example:
    >>> import jax.numpy as jnp
    >>> s, v = lif_multistep(jnp.full((3, 1), 0.6))
    >>> s[:, 0].tolist()
    [0.0, 0.0, 0.0]

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  cfg = _config(tau, v_th, reset, surrogate, alpha)
  currents = jnp.asarray(currents)
  if currents.ndim < 1 or currents.shape[0] < 1:
    raise ValueError(f"currents: need a leading time axis of length >= 1, got shape {currents.shape}")
  v = jnp.zeros(currents.shape[1:], currents.dtype) if v0 is None else jnp.asarray(v0, currents.dtype)
  if v.shape != currents.shape[1:]:
    raise ValueError(f"v0: shape {v.shape} does not match currents.shape[1:] = {currents.shape[1:]}")

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
    self.config = _config(tau, v_th, reset, surrogate, alpha)

  def __call__(self, v: jax.Array | None, current: jax.Array, *,
               detach_membrane: bool = False) -> tuple[jax.Array, jax.Array]:
    return _apply(self.config, v, current, detach_membrane)
