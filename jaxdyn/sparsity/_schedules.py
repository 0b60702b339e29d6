"""Schedules of sparse training: when masks change, the density to prune to, the fraction to move.

Iterations are counted from 1 (the t-th call of a transform's ``update``). Every schedule is a frozen
dataclass whose concrete fields are checked and stored as Python numbers; its methods take a step
(an int or a traced int32) and are jittable.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from jaxdyn import _validation

__all__ = ["DropSchedule", "PruningSchedule"]


@dataclasses.dataclass(frozen=True)
class PruningSchedule:
  """Gradual pruning: the cubic density schedule of Zhu and Gupta, as GraNet uses it.

  With t0 = ``start_step``, tf = ``end_step``, dT = ``update_every``, d_i = ``init_density`` and
  d_f = ``final_density``, the target density at step t is

      d(t) = d_f + (d_i - d_f) (1 - (t - t0) / (tf - t0))^3   for t0 <= t <= tf,

  d_i before t0 and d_f after tf; in sparsity terms s_t = 1 - d(t), the cubic schedule of Zhu and
  Gupta (their eq. 1 with n dT = tf - t0) and of GraNet (paper eq. 1). Masks are pruned at the update
  steps t with t % dT == 0 and t0 <= t <= tf, and at tf itself (`is_update_step`), so the last one
  reaches d_f exactly. GraNet's code prunes one update early (``official_compat=True``: the
  steps t0 <= t < tf, so d_f is never quite reached); see `jaxdyn.sparsity.granet`.

  Attributes:
    final_density: d_f in (0, 1].
    end_step: tf, an int >= 1.
    init_density: d_i in [d_f, 1] (1.0: dense to sparse).
    start_step: t0, an int in [0, tf).
    update_every: dT, an int >= 1 (100).
  """

  final_density: float
  end_step: int
  init_density: float = 1.0
  start_step: int = 0
  update_every: int = 100

  def __post_init__(self):
    set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
    set_("final_density", _validation.check_real("final_density", self.final_density, lower=0.0,
                                                 lower_open=True, upper=1.0))
    set_("end_step", _validation.check_int("end_step", self.end_step, lower=1))
    set_("init_density", _validation.check_real("init_density", self.init_density, lower=self.final_density,
                                                upper=1.0))
    set_("start_step", _validation.check_int("start_step", self.start_step, lower=0, upper=self.end_step - 1))
    set_("update_every", _validation.check_int("update_every", self.update_every, lower=1))

  def density(self, step: jax.Array | int) -> jax.Array:
    """d(t), float32."""
    t = jnp.asarray(step, jnp.float32)
    frac = jnp.clip((t - self.start_step) / (self.end_step - self.start_step), 0.0, 1.0)
    return jnp.float32(self.final_density) + jnp.float32(self.init_density - self.final_density) * (1.0 - frac) ** 3

  def is_update_step(self, step: jax.Array | int, *, official_compat: bool = False) -> jax.Array:
    """Whether masks are pruned at step t (t % dT == 0, t0 <= t <= tf; < tf with ``official_compat``)."""
    t = jnp.asarray(step, jnp.int32)
    if official_compat:
      return (t % self.update_every == 0) & (t >= self.start_step) & (t < self.end_step) & (t > 0)
    return (((t % self.update_every == 0) & (t >= self.start_step) & (t <= self.end_step) & (t > 0))
            | (t == self.end_step))

  def num_updates(self, num_steps: int, *, official_compat: bool = False) -> int:
    """How many of the steps 1..num_steps are update steps (a Python int)."""
    num_steps = _validation.check_int("num_steps", num_steps, lower=0)
    last = min(num_steps, self.end_step - 1 if official_compat else self.end_step)
    first = max(self.start_step, 1)
    n = 0 if last < first else last // self.update_every - (first - 1) // self.update_every
    if not official_compat and num_steps >= self.end_step and self.end_step % self.update_every:
      n += 1  # the step at tf itself
    return n


@dataclasses.dataclass(frozen=True)
class DropSchedule:
  """When a drop-and-regrow step happens, and the fraction of each layer's active entries it moves.

  The fraction is cosine-decayed from ``drop_fraction`` at ``start_step`` to ``min_fraction`` at
  ``end_step``:

      r(t) = r_min + (r_0 - r_min) (1 + cos(pi (t - t0) / (tf - t0))) / 2,   clipped to [t0, tf],

  RigL's f(t) = (alpha / 2)(1 + cos(pi t / T_end)) with r_0 = alpha, r_min = 0, t0 = 0 (Evci et al.,
  eq. 1) and GraNet's death rate with r_0 = 0.5, r_min = 0.005 (its code's ``CosineDecay``). Steps
  are every dT from t0 to tf inclusive; ``continue_after_end=True`` keeps them going every dT after
  tf at r_min (GraNet's code).

  Attributes:
    end_step: tf, an int >= 1 (RigL: 0.75 of the run).
    drop_fraction: r_0 in (0, 1) (RigL 0.3, GraNet 0.5).
    min_fraction: r_min in [0, r_0] (RigL 0, GraNet 0.005).
    start_step: t0, an int in [0, tf).
    update_every: dT, an int >= 1 (100).
    continue_after_end: drop-and-regrow steps continue after tf at r_min.
  """

  end_step: int
  drop_fraction: float = 0.3
  min_fraction: float = 0.0
  start_step: int = 0
  update_every: int = 100
  continue_after_end: bool = False

  def __post_init__(self):
    set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
    set_("end_step", _validation.check_int("end_step", self.end_step, lower=1))
    set_("drop_fraction", _validation.check_real("drop_fraction", self.drop_fraction, lower=0.0, lower_open=True,
                                                 upper=1.0, upper_open=True))
    set_("min_fraction", _validation.check_real("min_fraction", self.min_fraction, lower=0.0,
                                                upper=self.drop_fraction))
    set_("start_step", _validation.check_int("start_step", self.start_step, lower=0, upper=self.end_step - 1))
    set_("update_every", _validation.check_int("update_every", self.update_every, lower=1))
    if not isinstance(self.continue_after_end, bool):
      raise TypeError(f"continue_after_end: must be a bool, got {type(self.continue_after_end).__name__}")

  def fraction(self, step: jax.Array | int) -> jax.Array:
    """r(t), float32."""
    t = jnp.asarray(step, jnp.float32)
    frac = jnp.clip((t - self.start_step) / (self.end_step - self.start_step), 0.0, 1.0)
    r0, rmin = jnp.float32(self.drop_fraction), jnp.float32(self.min_fraction)
    return rmin + (r0 - rmin) * 0.5 * (1.0 + jnp.cos(jnp.float32(math.pi) * frac))

  def is_update_step(self, step: jax.Array | int) -> jax.Array:
    t = jnp.asarray(step, jnp.int32)
    in_window = (t <= self.end_step) | self.continue_after_end
    return (t % self.update_every == 0) & (t >= self.start_step) & in_window & (t > 0)
