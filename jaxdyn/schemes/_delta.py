"""Delta activation layers: training for temporal sparsity of activations.

Yousefzadeh, Sifalakis, "Training for temporal sparsity in deep neural networks, application in video
processing", 2021, https://arxiv.org/abs/2107.07305 (authors' Keras code:
https://github.com/msifalakis/delta_activation_layer, ``custom_layers.py``).

A delta activation layer sits after a ReLU on activations ``x`` of shape ``(batch, time, ..., channels)``
and quantizes them on a grid whose step is a trainable per-channel threshold, parametrised by its
absolute value:

.. math::  q(x) = \\theta \\cdot \\mathrm{round}(x / \\theta),\\qquad \\theta = |\\mathrm{threshold}|

(`delta_quantize`, `DeltaActivation`; ``round`` rounds half to even, as ``tf.round``). So
``|q(x) - x| <= theta / 2``, and wherever an activation moves by less than a grid step between frames
its quantized value does not change: its *delta* ``q(x_t) - q(x_{t-1})`` is exactly zero. The gradients
are custom (the code's ``round_custom``, ``no_grad_custom``, ``neg_grad_custom``):

.. math::  \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial q}\\ \\text{(straight through)},
           \\qquad \\frac{\\partial L}{\\partial \\theta} = -\\sum \\mathrm{round}(x / \\theta)\\,
           \\frac{\\partial L}{\\partial q}

the second summed over every axis the threshold is broadcast along (batch, time, space), then times
``sign(threshold)`` through the absolute value. The minus sign is on purpose: the true derivative of
``theta * k`` (``k`` held fixed) is ``+k``; negated, the sparsity loss below, which would shrink the
step, instead grows it, and a coarser grid means more zero deltas.

The temporal-sparsity loss of a layer (`temporal_sparsity_loss`, `DeltaActivation.sparsity_loss`) is
the mean absolute delta over the ``T - 1`` transitions, weighted by a rate and by the layer's fan-out
(how many multiply-accumulates each nonzero delta costs downstream, e.g. ``out_channels * kernel_size``
of the next convolution: the code's ``n_outputs``):

.. math::  L_\\mathrm{sp} = \\mathrm{sp\\_rate} \\cdot \\mathrm{fan\\_out} \\cdot
           \\mathrm{mean}_{b, t \\ge 1, \\ldots} |q(x_t) - q(x_{t-1})|

Delta inference (`delta_encode`, `delta_decode`) sends ``d_0 = q(x_0)`` (against a blank frame
``q_{-1} = 0``) and ``d_t = q(x_t) - q(x_{t-1})``; a linear layer downstream accumulates them, and
``cumsum_t d_t = q(x_t)``. The sparsity metric (`count_nonzero_deltas`, `delta_sparsity`) counts the
nonzero deltas; like the code's ``spikes_L0`` it leaves out the first frame unless ``include_first``.

How the loss reaches the objective: `DeltaActivation` returns only ``q(x)``; the model hands the
quantized activations out with its logits (as an auxiliary output) and the objective adds
``layer.sparsity_loss(q)`` for each layer. Pure and traceable, no mutable state in the forward (the
Keras layer's ``add_loss``). ``experiments/techniques/schemes/delta.py`` does this for the harness.

Paper and code: the paper's method section could not be read here (only its abstract); everything
above follows the authors' code, which agrees with jaxdyn's spec (``TECHNIQUES.md``) on every point
(|threshold| parametrisation, straight-through rounding, negated threshold gradient, loss over the
``T - 1`` transitions weighted by ``sp_rate * n_outputs``, initial threshold 0.1), so there is no
``official_compat`` switch. What is left out of the code's layer: its optional activation, bias, max
pooling and integration (``sigma``) inside the layer (apply them around it), and neuron- or
layer-wise thresholds in the layer (`delta_quantize` takes any threshold that broadcasts).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdyn import _validation

__all__ = [
    "DeltaActivation",
    "count_nonzero_deltas",
    "delta_decode",
    "delta_encode",
    "delta_quantize",
    "delta_sparsity",
    "temporal_sparsity_loss",
]


@jax.custom_vjp
def _round_to_grid(x: jax.Array, theta: jax.Array) -> jax.Array:
  return jnp.round(x / theta) * theta


def _round_to_grid_fwd(x, theta):
  levels = jnp.round(x / theta)
  return levels * theta, levels


def _round_to_grid_bwd(levels, dy):
  return dy, -levels * dy  # straight through to x; the threshold's gradient negated on purpose


_round_to_grid.defvjp(_round_to_grid_fwd, _round_to_grid_bwd)


def _check_sequence(name: str, x) -> jax.Array:
  x = _validation.check_floating(name, x)
  if x.ndim < 2:
    raise ValueError(f"{name}: must be (batch, time, ...) activations with at least 2 dimensions, got shape {x.shape}")
  return x


def delta_quantize(x: jax.Array, threshold: jax.Array) -> jax.Array:
  """``q(x) = threshold * round(x / threshold)`` with the delta layer's custom gradients.

  The gradient to ``x`` is straight through (``dy``); the gradient to ``threshold`` is
  ``-round(x / threshold) * dy`` summed over the axes it is broadcast along (module docstring).

  Args:
    x: activations ``(batch, time, ..., channels)``, floating (integers become floats; float16 and
      bfloat16 are computed in float32).
    threshold: the grid step ``theta > 0``, broadcastable to ``x.shape[2:]``: a scalar (one per layer),
      ``(channels,)`` (one per channel, the paper's) or one per neuron. A layer with a signed trainable
      threshold passes its absolute value (`DeltaActivation`).

  Returns:
    ``q(x)``, the shape of ``x``, in the common floating dtype. NaN or infinity in ``x`` or
    ``threshold`` gives a non-finite result there.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[[0.26, 1.0], [0.74, 0.3]]])  # (batch 1, time 2, channels 2)
    >>> delta_quantize(x, jnp.array([0.5, 0.25])).tolist()
    [[[0.5, 1.0], [0.5, 0.25]]]
  """
  x = _check_sequence("x", x)
  threshold = _validation.check_floating("threshold", threshold)
  try:
    fits = threshold.ndim <= x.ndim - 2 and np.broadcast_shapes(threshold.shape, x.shape[2:]) == x.shape[2:]
  except ValueError:
    fits = False
  if not fits:
    raise ValueError(f"threshold: must broadcast to the axes after (batch, time) of x, {x.shape[2:]}, "
                     f"got shape {threshold.shape}")
  _validation.check_nonnegative("threshold", threshold, strict=True)
  dtype = jnp.result_type(x, threshold)
  return _round_to_grid(x.astype(dtype), jnp.broadcast_to(threshold.astype(dtype), x.shape))


def delta_encode(q: jax.Array) -> jax.Array:
  """The deltas of delta inference along the time axis (axis 1): ``d_0 = q_0``, ``d_t = q_t - q_{t-1}``.

  Args:
    q: activations ``(batch, time, ...)`` (usually quantized, `delta_quantize`).

  Returns:
    The deltas, the shape of ``q``; the first frame is sent against a blank one (``q_{-1} = 0``), so
    `delta_decode` (a cumulative sum over time) gives ``q`` back.

  Example:
    >>> import jax.numpy as jnp
    >>> delta_encode(jnp.array([[0.5, 0.5, 1.0, 0.0]])).tolist()
    [[0.5, 0.0, 0.5, -1.0]]
  """
  q = _check_sequence("q", q)
  return jnp.diff(q, axis=1, prepend=jnp.zeros_like(q[:, :1]))


def delta_decode(deltas: jax.Array) -> jax.Array:
  """Delta inference's accumulation: ``q_t = sum_{s <= t} d_s`` along the time axis (axis 1).

  Args:
    deltas: ``(batch, time, ...)`` deltas from `delta_encode`.

  Returns:
    The activations they encode (exactly ``q`` when the deltas and their partial sums are exact in the
    dtype, e.g. a power-of-two grid step; otherwise to rounding).

  Example:
    >>> import jax.numpy as jnp
    >>> delta_decode(jnp.array([[0.5, 0.0, 0.5, -1.0]])).tolist()
    [[0.5, 0.5, 1.0, 0.0]]
  """
  deltas = _check_sequence("deltas", deltas)
  return jnp.cumsum(deltas, axis=1)


def _transitions(name: str, q, include_first: bool) -> tuple[jax.Array, jax.Array]:
  q = _check_sequence(name, q)
  if not isinstance(include_first, (bool, np.bool_)):
    raise TypeError(f"include_first: must be a bool, got {type(include_first).__name__}")
  d = delta_encode(q) if include_first else jnp.diff(q, axis=1)
  if d.size == 0:
    raise ValueError(f"{name}: has no {'frames' if include_first else 'transitions between frames'} "
                     f"(needs batch >= 1 and time >= {1 if include_first else 2}), got shape {q.shape}")
  return q, d


def temporal_sparsity_loss(q: jax.Array, *, sp_rate: float = 1.0, fan_out: float = 1.0) -> jax.Array:
  """``sp_rate * fan_out * mean |q_t - q_{t-1}|`` over the ``T - 1`` transitions (module docstring).

  Args:
    q: quantized activations ``(batch, time, ...)``, ``time >= 2``.
    sp_rate: the rate ``>= 0`` (the paper's ResNet-50 on UCF101: 1e-4, then 1e-6).
    fan_out: ``>= 0``, the operations each nonzero delta costs downstream (the code's ``n_outputs``).

  Returns:
    A scalar (float32 or ``q``'s dtype); NaN if ``q`` holds a NaN or an infinity that changes.

  Example:
    >>> import jax.numpy as jnp
    >>> float(temporal_sparsity_loss(jnp.array([[0.0, 0.5, 0.5]]), sp_rate=0.5, fan_out=4.0))
    0.5
  """
  sp_rate = _validation.check_real("sp_rate", sp_rate, lower=0.0)
  fan_out = _validation.check_real("fan_out", fan_out, lower=0.0)
  _, d = _transitions("q", q, False)
  return sp_rate * fan_out * jnp.mean(jnp.abs(d))


def count_nonzero_deltas(q: jax.Array, *, include_first: bool = False) -> jax.Array:
  """How many deltas are nonzero: the activations delta inference must send (and multiply).

  Args:
    q: activations ``(batch, time, ...)``: a delta layer's output, or any layer's (a ReLU's exact
      deltas, counted the same way, are the baseline).
    include_first: also count the first frame's entries against a blank frame (``d_0 = q_0``); default
      False, the ``T - 1`` transitions only, as the code's metric.

  Returns:
    A float32 scalar (exact below 2**24), NaN when ``q`` holds a non-finite value.

  Example:
    >>> import jax.numpy as jnp
    >>> q = jnp.array([[0.0, 0.5, 0.5, 1.0]])
    >>> float(count_nonzero_deltas(q)), float(count_nonzero_deltas(q, include_first=True))
    (2.0, 2.0)
  """
  q, d = _transitions("q", q, include_first)
  count = jnp.sum(d != 0, dtype=jnp.float32)
  return _validation.nan_unless(jnp.all(jnp.isfinite(q)), count)


def delta_sparsity(q: jax.Array, *, include_first: bool = False) -> jax.Array:
  """The fraction of deltas that are exactly zero: ``1 - count_nonzero_deltas(q) / (number of deltas)``.

  Args:
    q: activations ``(batch, time, ...)``.
    include_first: as `count_nonzero_deltas`.

  Returns:
    A float32 scalar in [0, 1]; NaN when ``q`` holds a non-finite value.

  Example:
    >>> import jax.numpy as jnp
    >>> float(delta_sparsity(jnp.array([[0.0, 0.5, 0.5, 0.5, 1.0]])))
    0.5
  """
  total = _transitions("q", q, include_first)[1].size
  return 1.0 - count_nonzero_deltas(q, include_first=include_first) / total


class DeltaActivation(nnx.Module):
  """The delta activation layer: ``q(x)`` on a grid of trainable per-channel step ``|threshold|``.

  Place it after a ReLU (or any activation) on ``(batch, time, ..., channels)`` activations; it returns
  `delta_quantize` ``(x, |threshold|)``, whose gradients are the module docstring's. Its loss term is
  not added behind the caller's back: the model returns the layer's output (or keeps it) and the
  objective adds `sparsity_loss` of it.

  Args:
    num_features: channels (the last axis of ``x``).
    sp_rate: the loss rate ``>= 0`` (the code's default 1.0; the paper's ResNet-50: 1e-4, then 1e-6).
    fan_out: ``>= 0``, the downstream operations per delta (the code's ``n_outputs``).
    threshold_init: the initial threshold ``> 0`` of every channel (the code's ``thr_init``, 0.1).

  Attributes:
    threshold: ``nnx.Param`` of shape ``(num_features,)``; the grid step is its absolute value.

  Example:
    >>> import jax.numpy as jnp
    >>> layer = DeltaActivation(2, sp_rate=0.5, fan_out=2.0, threshold_init=0.5)
    >>> q = layer(jnp.array([[[0.1, 0.9], [0.3, 1.2]]]))
    >>> q.tolist(), float(layer.sparsity_loss(q))
    ([[[0.0, 1.0], [0.5, 1.0]]], 0.25)
  """

  def __init__(self, num_features: int, *, sp_rate: float = 1.0, fan_out: float = 1.0,
               threshold_init: float = 0.1):
    self.num_features = _validation.check_int("num_features", num_features, lower=1)
    self.sp_rate = _validation.check_real("sp_rate", sp_rate, lower=0.0)
    self.fan_out = _validation.check_real("fan_out", fan_out, lower=0.0)
    threshold_init = _validation.check_real("threshold_init", threshold_init, lower=0.0, lower_open=True)
    self.threshold = nnx.Param(jnp.full((self.num_features,), threshold_init, jnp.float32))

  @property
  def theta(self) -> jax.Array:
    """The grid step per channel, ``|threshold|``."""
    return jnp.abs(self.threshold[...])

  def __call__(self, x: jax.Array) -> jax.Array:
    x = _check_sequence("x", x)
    if x.shape[-1] != self.num_features:
      raise ValueError(f"x: must have {self.num_features} channels on its last axis, got shape {x.shape}")
    return delta_quantize(x, self.theta)

  def sparsity_loss(self, q: jax.Array) -> jax.Array:
    """`temporal_sparsity_loss` of this layer's output with its ``sp_rate`` and ``fan_out``."""
    return temporal_sparsity_loss(q, sp_rate=self.sp_rate, fan_out=self.fan_out)
