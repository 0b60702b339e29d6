"""Spiking MLP: (Linear -> per-step BatchNorm -> LIF -> dropout) x L, then a linear readout."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdyn import _validation
from jaxdyn.snn._base import SpikingClassifier

__all__ = ["SpikingMLP"]


class SpikingMLP(SpikingClassifier):
  """Fully connected spiking network with LIF hidden layers and a non-spiking linear output.

  At each step t: h_0 = x_t (flattened); for each hidden layer l, I = BN(W_l h_{l-1} + b_l),
  (s, v_l) = LIF(v_l, I), h_l = m_l * s (m_l a dropout mask fixed over T); o_t = W_out h_L + b_out.
  BatchNorm normalises with the statistics of step t's batch and updates its running averages at
  every step (PyTorch momentum 0.1, i.e. flax momentum 0.9, eps 1e-5, as in the SLTT code).

  Args:
    in_features: size of a flattened input.
    num_classes: number of outputs.
    hidden: widths of the hidden LIF layers (a non-empty sequence of ints >= 1).
    num_steps: T, the number of time steps.
    norm: per-step BatchNorm before each LIF layer.
    dropout_rate: dropout on the hidden spikes, mask fixed over the T steps.
    encoder: ``"direct"`` or ``"poisson"``.
    tau, v_th, reset, surrogate, alpha: the LIF neuron (`jaxdyn.snn.lif_step`).
    rngs: ``nnx.Rngs`` for initialisation.

  Returns:
    (on call) the mean over steps of o_t, and the mean last-layer spikes with ``return_features``.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> SpikingMLP(40, 10, hidden=(32,), rngs=nnx.Rngs(0))(jnp.ones((2, 40))).shape
    (2, 10)

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """

  def __init__(self, in_features: int, num_classes: int, *, hidden: Sequence[int] = (256, 256),
               num_steps: int = 6, norm: bool = True, dropout_rate: float = 0.0,
               encoder: str = "direct", tau: float = 1.1, v_th: float = 1.0, reset: str = "soft",
               surrogate: str = "triangle", alpha: float | None = None, rngs: nnx.Rngs):
    in_features, num_classes = self._init_spiking(
        num_steps=num_steps, encoder=encoder, dropout_rate=dropout_rate, tau=tau, v_th=v_th, reset=reset,
        surrogate=surrogate, alpha=alpha, in_features=in_features, num_classes=num_classes)
    self.in_features = in_features
    widths = tuple(hidden) if isinstance(hidden, (Sequence, np.ndarray)) else ()
    if not widths:
      raise ValueError(f"hidden: must be a non-empty sequence of ints >= 1, got {hidden!r}")
    hidden = tuple(_validation.check_int("hidden", w, lower=1) for w in widths)
    widths = (in_features, *hidden)
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
    self.norms = nnx.List([nnx.BatchNorm(w, momentum=0.9, epsilon=1e-5, rngs=rngs) for w in hidden]) if norm else None
    self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

  def check_input(self, x):
    shape = jnp.shape(x)
    if len(shape) < 2 or math.prod(shape[1:]) != self.in_features:
      raise ValueError(f"x: must be (B, ...) with in_features = {self.in_features} values per example, "
                       f"got shape {shape}")

  def step(self, carry, x_t, *, train: bool, masks=None):
    h = x_t.reshape(x_t.shape[0], -1)
    new = []
    for i, layer in enumerate(self.layers):
      current = layer(h)
      if self.norms is not None:
        current = self.norms[i](current, use_running_average=not train)
      s, v = self.lif(None if carry is None else carry[i], current)
      new.append(v)
      h = s if masks is None else s * masks[i]
    return self.head(h), s, tuple(new)

