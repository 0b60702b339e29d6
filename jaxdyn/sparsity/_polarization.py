"""A consensus sub-network learnt in one training pass: binary channel gates, a polarization regularizer.

Zhi et al. (arXiv 2302.10798) train a network once with a light binary gating module on each
prunable unit and a polarizing loss, then keep the static sub-network that the gates agree on (the
"consensus" sub-network); there is no fine-tuning pass and no gate at inference. Here:

1. `ChannelGate`: per conv block, a small input-dependent module (global average pooling, a ReLU
   dense layer, a dense layer, a sigmoid) gives per-sample keep probabilities ``p`` of the block's
   output channels, ``(batch, channels)``.
2. `binary_gate`: the forward pass uses the binary gate 1[p > 0.5]; the backward pass is the
   straight-through estimator, the identity on ``p`` (a `jax.custom_vjp`).
3. `polarization_regularizer`: added to the task loss, it drives each probability to 0 or 1, the
   samples of a batch to the same gates (consensus), and the fraction of each block's gates that are
   on to the keep ratio ``1 - target_sparsity``.
4. `GatedCNN`: jaxdyn's reference `jaxdyn.models.CNN` with one `ChannelGate` per conv block
   (`GatedResNet`: a basic-block `jaxdyn.models.ResNet` with one per residual block, on the block's
   inner channels, so that the residual stream keeps its widths);
   `consensus_masks` reads the gates on a calibration batch, `extract_subnetwork` returns the plain
   `CNN` with the pruned channels physically removed (`prune_channels`), and `compression_report` /
   `cnn_flops` count what was saved. `prune_channels_by_magnitude` is the L1-norm baseline.

Sources, and where this module had to choose. Only the abstract (arXiv 2302.10798 v5) and a summary
of the paper (sciencestack.ai, "TL;DR") could be read; the paper's equations could not. What they
state, this module follows: a binary gating module, a polarization regularizer that makes the
gates of different inputs agree ("stable, unified sub-networks"), a straight-through estimator for
the binary gates, a user-defined sparsity, one pass of training, and a static sub-network that needs
no gating module at inference. The name "polarization regularizer" comes from Zhuang et al.
(NeurIPS 2020), whose regularizer t ||g||_1 - ||g - mean(g)||_1 pushes scaling factors to 0 or to a
common value. Everything below is this module's reading, chosen where the paper could not be read:

- the gating module: global average pooling of the block's *input*, Dense(hidden) - ReLU -
  Dense(channels) - sigmoid (the shape of channel-gating modules such as squeeze-and-excitation;
  reading the input lets a gate decide before its convolution runs); its output bias starts at
  ``gate_bias = 2`` (p = 0.88) so that training starts from the dense network;
- the binary gate is the deterministic threshold p > 0.5 in training and inference; `binary_gate`
  also draws Bernoulli(p) gates from an explicit key, which `GatedCNN` does not use;
- the regularizer's formula (`polarization_regularizer`): per-sample polarization mean p(1 - p),
  consensus as the batch variance of each gate, and an L1 budget |k - keep| on the mean binary gate
  k, differentiated straight through (an exact penalty: above the polarization weight, it moves an
  all-on block whatever the target); the keep ratio holds per block (a global budget let a tiny
  network prune one block almost entirely and stop learning); the default weights (1, 2, 2) are
  chosen so that neither an all-on block nor polarised but disagreeing gates are stationary;
- extraction: a channel is kept when its binary gate is on for at least a ``quorum`` fraction of a
  calibration batch (0.5: a majority; 1: all samples), and each block keeps at least one channel.
  After training the gates agree, so the quorum rarely matters.

References:
  Zhi, Babbar, Liu, Sun, Silavong, Shi, Moran, "Learning a Consensus Sub-Network with Polarization
  Regularization and One Pass Training", arXiv 2023, https://arxiv.org/abs/2302.10798.
  Zhuang et al., "Neuron-level Structured Pruning using Polarization Regularizer", NeurIPS 2020.
  Bengio, Leonard, Courville, "Estimating or Propagating Gradients Through Stochastic Neurons for
  Conditional Computation", arXiv 2013, https://arxiv.org/abs/1308.3432 (straight-through).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn._trees import path_names
from jaxdyn.models import CNN, Classifier, ResNet, is_training

__all__ = [
    "ChannelGate",
    "CompressionReport",
    "GatedCNN",
    "GatedResNet",
    "binary_gate",
    "cnn_flops",
    "compression_report",
    "consensus_masks",
    "extract_subnetwork",
    "polarization_regularizer",
    "prune_channels",
    "prune_channels_by_magnitude",
]

_THRESHOLD = 0.5
_MAX_WEIGHT = 1e30  # the regularizer's terms are <= 1: weights up to 1e30 keep it finite in float32


# --- the binary gate and its straight-through estimator ----------------------------------------------

@jax.custom_vjp
def _ste(p: jax.Array, u: jax.Array) -> jax.Array:
  """1[p > u] forward (NaN where p is NaN or outside [0, 1]); d/dp = identity, d/du = 0."""
  hard = (p > u).astype(p.dtype)
  return jnp.where((p >= 0) & (p <= 1), hard, jnp.asarray(jnp.nan, p.dtype))


def _ste_fwd(p, u):
  return _ste(p, u), u


def _ste_bwd(u, g):
  return g, jnp.zeros_like(u)


_ste.defvjp(_ste_fwd, _ste_bwd)


def _probabilities(name: str, p: Any) -> jax.Array:
  """``p`` as a floating array; concrete values outside [0, 1] raise (NaN passes, to propagate)."""
  p = _validation.check_floating(name, p)
  if _validation.is_concrete(p) and p.size:
    v = np.asarray(p, np.float64)
    bad = (v < 0) | (v > 1)
    if bad.any():
      raise ValueError(f"{name}: must be probabilities in [0, 1], found {float(v[bad].flat[0])!r}")
  return p


def binary_gate(probs: ArrayLike, *, key: jax.Array | None = None) -> jax.Array:
  """Binary gates from keep probabilities, with the straight-through estimator.

  Forward: g = 1[p > 0.5] (``key=None``, the gate `GatedCNN` uses), or g = 1[p > u] with
  u ~ U[0, 1) drawn from ``key``, a Bernoulli(p) sample. Backward: the identity on p,
  d loss / d p := d loss / d g, so the probability that made the decision gets the gradient the
  binary gate received. Written as a `jax.custom_vjp`, so the forward value is exactly 0 or 1.

  Args:
    probs: keep probabilities in [0, 1], any shape. Concrete values outside [0, 1] raise; under
      ``jit`` they give NaN, as a NaN does.
    key: None for the threshold at 0.5, or a `jax.random` key for a Bernoulli sample.

  Returns:
    An array of ``probs``' shape holding 0 and 1 (NaN where ``probs`` is NaN or out of range), in
    ``probs``' dtype (float32 for integer, boolean or half-precision ``probs``). Elementwise: an empty
    array gives an empty array.

  Example:
    >>> p = jnp.array([0.2, 0.5, 0.7])
    >>> binary_gate(p)
    Array([0., 0., 1.], dtype=float32)
    >>> jax.grad(lambda p: jnp.sum(jnp.array([1.0, 2.0, 3.0]) * binary_gate(p)))(p)
    Array([1., 2., 3.], dtype=float32)

  References:
    Zhi et al., arXiv 2023, https://arxiv.org/abs/2302.10798 (binary gates, straight-through);
    Bengio et al., arXiv 2013, https://arxiv.org/abs/1308.3432.
  """
  p = _probabilities("probs", probs)
  if key is None:
    u = jnp.full(p.shape, _THRESHOLD, p.dtype)
  else:
    _validation.check_key("key", key)
    u = jax.random.uniform(key, p.shape, p.dtype)
  return _ste(p, u)


# --- the polarization regularizer ----------------------------------------------------------------------

def _gate_blocks(gates: Any) -> list[jax.Array]:
  """``gates`` as a list of (batch, units) floating arrays (one per block) of one batch size."""
  if isinstance(gates, (list, tuple)):
    if not gates:
      raise ValueError("gates: need at least one (batch, units) array, got an empty sequence")
    blocks = [_validation.check_floating("gates", g) for g in gates]
  else:
    blocks = [_validation.check_floating("gates", gates)]
  for i, g in enumerate(blocks):
    if g.ndim != 2:
      where = f"block {i} " if isinstance(gates, (list, tuple)) else ""
      raise ValueError(f"gates: {where}must be a (batch, units) array, got shape {g.shape}")
    if g.shape[0] != blocks[0].shape[0]:
      raise ValueError(f"gates: every block must have the same batch, got shapes {[b.shape for b in blocks]}")
    _validation.check_nonempty("gates", g, axis=0, what="samples")
    _validation.check_nonempty("gates", g, axis=1, what="units")
    _probabilities("gates", g)
  return blocks


def _weight(name: str, value: Any) -> float:
  return _validation.check_real(name, value, lower=0.0, upper=_MAX_WEIGHT)


def polarization_regularizer(gates: ArrayLike | Sequence[ArrayLike], *, target_sparsity: float,
                             polarization_weight: float = 1.0, consensus_weight: float = 2.0,
                             sparsity_weight: float = 2.0, return_terms: bool = False):
  r"""Drives gate probabilities to 0 or 1, to agreement across the batch, and the kept fraction to a target.

  For one block with p the (B, U) keep probabilities (B samples, U gated units), p̄_u = (1/B)
  sum_b p_bu the batch mean of unit u, g_bu = 1[p_bu > 1/2] the binary gates (`binary_gate`),
  k = (1/(BU)) sum_{b,u} g_bu the mean binary gate (the kept fraction) and rho = 1 -
  target_sparsity the target keep ratio:

      P = (1/(BU)) sum_{b,u} p_bu (1 - p_bu)          polarization: each probability to 0 or 1
      C = (1/(BU)) sum_{b,u} (p_bu - p̄_u)^2           consensus: the batch variance of each gate
      S = |k - rho|                                     sparsity: the kept fraction to the keep ratio
      R = polarization_weight * P + consensus_weight * C + sparsity_weight * S

  S is differentiated straight through the binary gates, as `binary_gate` is: dS/dp_bu =
  sign(k - rho) / (BU), with sign(0) = 0 (no push at the target). The budget is on the binary gates,
  not on mean(p): a budget on mean(p) is met with every gate on and each p slightly above 1/2.

  Each term is >= 0, so R = 0 exactly when every probability is 0 or 1, all samples of the batch
  have the same gates, and the kept fraction is rho (possible when rho * U is an integer). With
  weights a, c, s: an all-on block is not a stationary point when s > a (P alone would hold it);
  polarised gates on which the samples disagree are not one when c > a (C pulls the minority to the
  majority, against P); hence the defaults a = 1, c = 2, s = 2. With c = a, P + C = (1/U) sum_u
  p̄_u (1 - p̄_u), the polarization of the batch-mean gate. For a sequence of L blocks, R (and each
  term) is the mean over the blocks: every block at the keep ratio (concatenate the blocks along
  units for one budget over all of them). The module docstring says which parts are the paper's and
  which are this module's reading (the paper's equations could not be read).

  Args:
    gates: keep probabilities (batch, units) in [0, 1], or a sequence of such arrays (one per block,
      same batch), e.g. the gates of ``GatedCNN(...)(x, return_gates=True)``. At least one sample and
      one unit per block (an empty batch has no kept fraction).
    target_sparsity: the fraction of units to remove, in [0, 1).
    polarization_weight: a, the weight of P: a real number in [0, 1e30].
    consensus_weight: c, the weight of C, in [0, 1e30].
    sparsity_weight: s, the weight of S, in [0, 1e30].
    return_terms: also return ``{"polarization": P, "consensus": C, "sparsity": S, "keep": k}``.

  Returns:
    R, a scalar (and the terms with ``return_terms``). A NaN in ``gates`` gives NaN; concrete values
    outside [0, 1] raise, and under ``jit`` give NaN.

  Example:
    >>> p = jnp.array([[0.9, 0.2], [0.7, 0.0]])  # P = 0.115, C = 0.01, k = 0.5
    >>> round(float(polarization_regularizer(p, target_sparsity=0.75)), 6)  # 0.115 + 2 * 0.01 + 2 * 0.25
    0.635
    >>> float(polarization_regularizer(jnp.array([[1.0, 0.0], [1.0, 0.0]]), target_sparsity=0.5))
    0.0

  References:
    Zhi et al., arXiv 2023, https://arxiv.org/abs/2302.10798; Zhuang et al., "Neuron-level
    Structured Pruning using Polarization Regularizer", NeurIPS 2020.
  """
  rho = 1.0 - _validation.check_real("target_sparsity", target_sparsity, lower=0.0, upper=1.0, upper_open=True,
                                     finite=False)  # the bounds exclude infinities; the message reads better
  a = _weight("polarization_weight", polarization_weight)
  c = _weight("consensus_weight", consensus_weight)
  s = _weight("sparsity_weight", sparsity_weight)
  terms = []
  for p in _gate_blocks(gates):
    p_bar = jnp.mean(p, axis=0)
    keep = jnp.mean(_ste(p, jnp.full(p.shape, _THRESHOLD, p.dtype)))  # k, straight-through
    gap = keep - rho
    terms.append((jnp.mean(p * (1 - p)), jnp.mean(jnp.square(p - p_bar)), jnp.sign(gap) * gap, keep,
                  jnp.all((p >= 0) & (p <= 1))))
  polar, consensus, sparsity, keep = (sum(t[i] for t in terms) / len(terms) for i in range(4))
  value = a * polar + c * consensus + s * sparsity
  value = _validation.nan_unless(jnp.all(jnp.stack([t[4] for t in terms])), value)
  if return_terms:
    return value, {"polarization": polar, "consensus": consensus, "sparsity": sparsity, "keep": keep}
  return value


# --- the gating module and the gated CNN ---------------------------------------------------------------

class ChannelGate(nnx.Module):
  """Per-sample keep probabilities of ``units`` channels from a feature map (the gating module).

  p = sigmoid(W2 relu(W1 pool(x) + b1) + b2), with pool the mean over every axis between the batch
  and the channel axis (global average pooling; none for ``(batch, in_features)`` inputs). W1, W2 have
  NNX's default initialisation, b1 = 0 and b2 = ``bias_init``, so that sigmoid(bias_init) is the
  typical initial probability (2: 0.88, training starts from the dense network).

  Args:
    in_features: channels of the input feature map.
    units: gated channels (outputs).
    hidden: width of the hidden layer.
    bias_init: initial bias of the output logits, a finite real number.
    rngs: ``nnx.Rngs`` for initialisation.

  Returns:
    The module; ``gate(x)`` maps ``(batch, *spatial, in_features)`` to probabilities ``(batch,
    units)``. ``x``'s last axis is checked (naming ``x``). Rows are independent: an empty batch gives
    ``(0, units)``, a NaN or an infinity in a sample gives NaN probabilities for it.

  Example:
    >>> gate = ChannelGate(1, 4, rngs=nnx.Rngs(0))
    >>> gate(jnp.ones((2, 32, 1))).shape
    (2, 4)

  References:
    Zhi et al., arXiv 2023, https://arxiv.org/abs/2302.10798 (a light gating module per unit).
  """

  def __init__(self, in_features: int, units: int, *, hidden: int = 16, bias_init: float = 2.0,
               rngs: nnx.Rngs):
    self.in_features = _validation.check_int("in_features", in_features, lower=1)
    units = _validation.check_int("units", units, lower=1)
    hidden = _validation.check_int("hidden", hidden, lower=1)
    bias_init = _validation.check_real("bias_init", bias_init)
    self.hidden = nnx.Linear(self.in_features, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, units, bias_init=nnx.initializers.constant(bias_init), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if jnp.ndim(x) < 2 or jnp.shape(x)[-1] != self.in_features:
      raise ValueError(f"x: must be (batch, ..., {self.in_features}) features, got shape {jnp.shape(x)}")
    x = jnp.asarray(x)
    pooled = jnp.mean(x, axis=tuple(range(1, x.ndim - 1))) if x.ndim > 2 else x
    p = jax.nn.sigmoid(self.out(nnx.relu(self.hidden(pooled))))
    # A saturated sigmoid would turn an infinite input into a finite probability: NaN instead.
    return jnp.where(jnp.all(jnp.isfinite(pooled), axis=-1, keepdims=True), p, jnp.asarray(jnp.nan, p.dtype))


class GatedCNN(Classifier):
  """The reference `jaxdyn.models.CNN` with a binary `ChannelGate` on each conv block's output channels.

  Block i: p_i = ChannelGate_i(h_{i-1}) (per-sample probabilities from the pooled block input),
  g_i = `binary_gate`(p_i) (1[p > 0.5] forward, identity backward), h_i = maxpool(relu(conv_i(h_{i-1}))
  * g_i); then global average pooling, a dense ReLU layer (the penultimate features), dropout and the
  head, as in `CNN` (kernel 3, "SAME", pool 2). Inputs ``(batch, *spatial, in_channels)``; a 1-D
  signal ``(batch, length)`` gets a channel axis. The convolution, dense and head parameters have
  the names and shapes of a `CNN` of the same widths, so `prune_channels` slices them into one.

  Call: ``model(x, *, train=None, key=None, return_features=False, return_gates=False,
  masks=None)`` gives the logits, then the features ``(batch, hidden)`` with ``return_features``,
  then with ``return_gates`` the tuple of per-block gate probabilities ``(batch, channels[i])``
  (what `polarization_regularizer` takes), in that order. ``masks`` (one ``(channels[i],)``
  boolean or 0/1 array per block) fixes the gates instead of the gating modules (the gated
  network "at the consensus mask"); the returned probabilities are still the modules'. The gates
  are binary in both modes; the mode (``model.train()`` / ``model.eval()``, or ``train=``) only
  switches the dropout before the head, drawn from ``key`` (required in training when
  ``dropout_rate > 0``). ``features(x, *, train=None, key=None, masks=None)`` and ``apply_head`` split
  the model at its head (`jaxdyn.models.HeadSplit`).

  Args:
    in_channels: input channels.
    num_classes: number of logits.
    spatial_dims: 1 for signals, 2 for images.
    channels: output channels of each conv block (each gated).
    hidden: width of the dense layer.
    dropout_rate: dropout before the head, in [0, 1).
    gate_hidden: hidden width of each gating module.
    gate_bias: initial output bias of the gating modules (`ChannelGate`'s ``bias_init``).
    rngs: ``nnx.Rngs`` for initialisation.

  Returns:
    The module. An empty batch gives empty outputs; a NaN or an infinity in a sample gives
    non-finite logits for it.

  Example:
    >>> m = GatedCNN(1, 3, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
    >>> logits, gates = m(jnp.ones((2, 32)), return_gates=True)
    >>> logits.shape, [g.shape for g in gates]
    ((2, 3), [(2, 4), (2, 8)])

  References:
    Zhi et al., arXiv 2023, https://arxiv.org/abs/2302.10798.
  """

  def __init__(
      self,
      in_channels: int,
      num_classes: int,
      *,
      spatial_dims: int = 2,
      channels: Sequence[int] = (32, 64),
      hidden: int = 128,
      dropout_rate: float = 0.0,
      gate_hidden: int = 16,
      gate_bias: float = 2.0,
      rngs: nnx.Rngs,
  ):
    in_channels = _validation.check_int("in_channels", in_channels, lower=1)
    num_classes = _validation.check_int("num_classes", num_classes, lower=1)
    spatial_dims = _validation.check_int("spatial_dims", spatial_dims, lower=1, upper=2)
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
      raise ValueError(f"channels: must be a sequence of ints >= 1, got {channels!r}")
    channels = tuple(_validation.check_int("channels", c, lower=1) for c in channels)
    if not channels:
      raise ValueError("channels: need at least one conv block, got ()")
    hidden = _validation.check_int("hidden", hidden, lower=1)
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)
    gate_hidden = _validation.check_int("gate_hidden", gate_hidden, lower=1)
    gate_bias = _validation.check_real("gate_bias", gate_bias)
    self.spatial_dims = spatial_dims
    self.in_channels = in_channels
    k = (3,) * spatial_dims
    widths = (in_channels, *channels)
    self.convs = nnx.List(
        [nnx.Conv(a, b, kernel_size=k, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
    self.gates = nnx.List([ChannelGate(a, b, hidden=gate_hidden, bias_init=gate_bias, rngs=rngs)
                           for a, b in zip(widths[:-1], widths[1:])])
    self.dense = nnx.Linear(widths[-1], hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)

  @property
  def channels(self) -> tuple[int, ...]:
    """Output channels of each conv block."""
    return tuple(conv.out_features for conv in self.convs)

  def check_input(self, x: jax.Array) -> None:
    super().check_input(x)
    d, c = self.spatial_dims, self.in_channels
    spatial = jnp.ndim(x) - 1
    if not (spatial == d + 1 and jnp.shape(x)[-1] == c) and not (spatial == d and c == 1):
      want = "(batch, length" if d == 1 else "(batch, height, width"
      raise ValueError(f"x: must be {want}, {c}) inputs{' (or without the channel axis)' if c == 1 else ''}, "
                       f"got shape {tuple(jnp.shape(x))}")

  def _trunk(self, x, masks) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """The penultimate features and the per-block gate probabilities."""
    x = jnp.asarray(x)
    if x.ndim == self.spatial_dims + 1:
      x = x[..., None]
    window = (2,) * self.spatial_dims
    probs = []
    for i, (conv, gate) in enumerate(zip(self.convs, self.gates)):
      p = gate(x)
      probs.append(p)
      y = nnx.relu(conv(x))
      if masks is None:
        g = _ste(p, jnp.full(p.shape, _THRESHOLD, p.dtype))
        g = g.reshape(g.shape[:1] + (1,) * self.spatial_dims + g.shape[1:])
      else:
        g = masks[i].astype(y.dtype)
      x = nnx.max_pool(y * g, window_shape=window, strides=window, padding="SAME")
    x = jnp.mean(x, axis=tuple(range(1, 1 + self.spatial_dims)))
    return nnx.relu(self.dense(x)), tuple(probs)

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               masks: Sequence[ArrayLike] | None = None) -> jax.Array:
    """The penultimate features (those of ``model(x, masks=masks)``)."""
    del train, key  # no dropout or normalisation statistics in the trunk
    self.check_input(x)
    return self._trunk(x, _check_masks("masks", masks, self.channels))[0]

  def __call__(
      self,
      x: jax.Array,
      *,
      train: bool | None = None,
      key: jax.Array | None = None,
      return_features: bool = False,
      return_gates: bool = False,
      masks: Sequence[ArrayLike] | None = None,
  ):
    self.check_input(x)
    masks = _check_masks("masks", masks, self.channels)
    train = is_training(self, train)
    h, probs = self._trunk(x, masks)
    logits = self.apply_head(h, train=train, key=key)
    out = (logits, *((h,) if return_features else ()), *((probs,) if return_gates else ()))
    return out if len(out) > 1 else logits


class GatedResNet(Classifier):
  """A basic-block `jaxdyn.models.ResNet` with a binary `ChannelGate` on each block's inner channels.

  Block i with input h: p_i = ChannelGate_i(h) (per-sample probabilities of the block's inner
  channels from its pooled input), g_i = `binary_gate`(p_i), and the block computes
  relu(bn2(conv2(relu(bn1(conv1 h)) * g_i)) + shortcut(h)). The gates prune what can be removed from
  a residual network without touching the residual stream: the output channels of each block's
  first convolution (with its BatchNorm) and the matching input channels of its second. The
  backbone is a plain `ResNet` (``model.backbone``), so `prune_channels` slices it into a smaller
  `ResNet` (``inner_widths``) and no gate remains.

  Call and split as `GatedCNN`: ``model(x, *, train=None, key=None, return_features=False,
  return_gates=False, masks=None)``; ``masks`` (one ``(inner_width,)`` boolean array per block)
  fixes the gates. Unlike `GatedCNN`, the mode also switches BatchNorm (batch statistics in
  training, running averages otherwise).

  Args:
    in_channels: input channels (images ``(batch, height, width, in_channels)``).
    num_classes: number of logits.
    stage_sizes: basic blocks per stage, ``(2, 2, 2, 2)`` for ResNet-18.
    width: channels of the first stage.
    dropout_rate: dropout before the head.
    gate_hidden: hidden width of each gating module.
    gate_bias: initial output bias of the gating modules.
    rngs: ``nnx.Rngs`` for initialisation.

  Example:
    >>> m = GatedResNet(3, 10, stage_sizes=(1, 1), width=4, rngs=nnx.Rngs(0))
    >>> logits, gates = m(jnp.ones((2, 8, 8, 3)), return_gates=True, train=False)
    >>> logits.shape, [g.shape for g in gates]
    ((2, 10), [(2, 4), (2, 8)])

  References:
    Zhi et al., arXiv 2023, https://arxiv.org/abs/2302.10798.
  """

  def __init__(self, in_channels: int, num_classes: int, *, stage_sizes: Sequence[int] = (2, 2, 2, 2),
               width: int = 64, dropout_rate: float = 0.0, gate_hidden: int = 16, gate_bias: float = 2.0,
               rngs: nnx.Rngs):
    gate_hidden = _validation.check_int("gate_hidden", gate_hidden, lower=1)
    gate_bias = _validation.check_real("gate_bias", gate_bias)
    self.backbone = ResNet(in_channels, num_classes, stage_sizes=stage_sizes, block="basic", width=width,
                           dropout_rate=dropout_rate, rngs=rngs)
    self.dropout_rate = self.backbone.dropout_rate
    self.gates = nnx.List([ChannelGate(b.conv1.kernel.shape[-2], b.conv1.kernel.shape[-1], hidden=gate_hidden,
                                       bias_init=gate_bias, rngs=rngs) for b in self.backbone.blocks])

  @property
  def channels(self) -> tuple[int, ...]:
    """The gated (inner) channels of each block."""
    return self.backbone.inner_widths

  def check_input(self, x: jax.Array) -> None:
    self.backbone.check_input(x)

  def apply_head(self, h: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    """The backbone's dropout (in training) and head."""
    return self.backbone.apply_head(h, train=is_training(self, train), key=key)

  def _trunk(self, x, masks, train: bool = False) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    net, ra = self.backbone, not train
    x = nnx.relu(net.stem_bn(net.stem(jnp.asarray(x)), use_running_average=ra))
    probs = []
    for i, (block, gate) in enumerate(zip(net.blocks, self.gates)):
      p = gate(x)
      probs.append(p)
      g = _ste(p, jnp.full(p.shape, _THRESHOLD, p.dtype)) if masks is None else masks[i].astype(p.dtype)
      x = block(x, train=train, gate=g)
    return jnp.mean(x, axis=(1, 2)), tuple(probs)

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               masks: Sequence[ArrayLike] | None = None) -> jax.Array:
    """The penultimate features (those of ``model(x, masks=masks)``)."""
    del key
    self.check_input(x)
    return self._trunk(x, _check_masks("masks", masks, self.channels), is_training(self, train))[0]

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               return_features: bool = False, return_gates: bool = False,
               masks: Sequence[ArrayLike] | None = None):
    self.check_input(x)
    masks = _check_masks("masks", masks, self.channels)
    train = is_training(self, train)
    h, probs = self._trunk(x, masks, train)
    logits = self.apply_head(h, train=train, key=key)
    out = (logits, *((h,) if return_features else ()), *((probs,) if return_gates else ()))
    return out if len(out) > 1 else logits


_ALL = (CNN, GatedCNN, ResNet, GatedResNet)


def _check_masks(name: str, masks, widths: Sequence[int], *, allow_none: bool = True):
  """One boolean-like (width,) array per block, as JAX bool arrays; 0/1 values only (when concrete)."""
  if masks is None:
    if allow_none:
      return None
    raise ValueError(f"{name}: need one mask per conv block, got None")
  if isinstance(masks, (str, bytes)) or not isinstance(masks, Sequence) or len(masks) != len(widths):
    raise ValueError(f"{name}: need one (channels,) mask per conv block ({len(widths)}), got {masks!r}")
  out = []
  for i, (m, w) in enumerate(zip(masks, widths)):
    if np.shape(m) != (w,):
      raise ValueError(f"{name}: block {i} needs a mask of shape ({w},), got shape {np.shape(m)}")
    dtype = m.dtype if hasattr(m, "dtype") else np.asarray(m).dtype
    if not (dtype == np.bool_ or jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
      raise TypeError(f"{name}: block {i} must be a boolean or 0/1 mask, got dtype {dtype}")
    m = jnp.asarray(m)
    if m.dtype != jnp.bool_:
      if _validation.is_concrete(m):
        v = np.asarray(m, np.float64)
        if not np.all((v == 0) | (v == 1)):
          raise ValueError(f"{name}: block {i} must hold only 0 and 1, got {v.tolist()}")
      m = m != 0
    out.append(m)
  return tuple(out)


# --- consensus and extraction --------------------------------------------------------------------------

def _check_model(name: str, model, kinds=(CNN, GatedCNN)):
  if not isinstance(model, kinds):
    want = " or ".join(k.__name__ for k in kinds)
    raise TypeError(f"{name}: must be a {want}, got {type(model).__name__}")


def _check_batch(name: str, model, x) -> jax.Array:
  """``x`` as an array the model accepts, non-empty and finite; errors name ``name``."""
  x = _validation.check_floating(name, x)
  _validation.check_nonempty(name, x)
  try:
    model.check_input(x)
  except ValueError as e:
    raise ValueError(f"{name}: {str(e).split(': ', 1)[-1]}") from e
  _validation.check_finite(name, x)
  return x


def consensus_masks(model: GatedCNN | GatedResNet, x_calib: ArrayLike, *, quorum: float = 0.5
                    ) -> tuple[np.ndarray, ...]:
  """The consensus sub-network: per block, the channels whose gate is on for a ``quorum`` of x_calib.

  With f_u the fraction of calibration samples whose binary gate 1[p > 0.5] on channel u is on,
  channel u is kept when f_u >= quorum. A block in which no channel reaches the quorum keeps its one
  channel with the largest f_u (then the largest mean probability, then the lowest index), so that
  every block keeps a channel. After training with `polarization_regularizer` the gates agree
  across samples (f_u is 0 or 1), and the quorum rarely matters.

  Args:
    model: a trained `GatedCNN` or `GatedResNet`.
    x_calib: a calibration batch of the model's inputs (at least one sample, finite: checked).
    quorum: the fraction of samples that must agree, in (0, 1]; 0.5 is a majority, 1 all of them.

  Returns:
    A tuple of boolean NumPy arrays, one ``(channels[i],)`` per block (True: kept).

  Example:
    >>> m = GatedCNN(1, 3, spatial_dims=1, channels=(4, 8), hidden=16, gate_bias=8.0, rngs=nnx.Rngs(0))
    >>> [int(k.sum()) for k in consensus_masks(m, jnp.ones((4, 32)))]
    [4, 8]

  References:
    Zhi et al., arXiv 2023, https://arxiv.org/abs/2302.10798 (the consensus sub-network).
  """
  _check_model("model", model, (GatedCNN, GatedResNet))
  quorum = _validation.check_real("quorum", quorum, lower=0.0, lower_open=True, upper=1.0)
  x = _check_batch("x_calib", model, x_calib)
  _, probs = model._trunk(x, None)  # pylint: disable=protected-access
  out = []
  for p in probs:
    p = np.asarray(p, np.float64)
    on = p > _THRESHOLD
    frac = on.sum(axis=0) / on.shape[0]
    keep = frac >= quorum
    if not keep.any():
      best = np.lexsort((-p.mean(axis=0), -frac))[0]  # the last key sorts first; ties keep index order
      keep[best] = True
    out.append(keep)
  return tuple(out)


def prune_channels(model: CNN | GatedCNN | ResNet | GatedResNet, masks: Sequence[ArrayLike]) -> CNN | ResNet:
  """A `jaxdyn.models.CNN` with the masked-out output channels of each conv block physically removed.

  For a basic-block `jaxdyn.models.ResNet` or a `GatedResNet`, ``masks`` has one ``(inner_width,)``
  array per residual block and the result is a `ResNet` with smaller ``inner_widths``: block i's
  first convolution keeps the masked-in output channels, its BatchNorm the matching scale, bias and
  running statistics, its second convolution the matching input channels; everything else (the
  residual stream, the shortcuts, the head, all BatchNorm statistics) is copied.

  Block i keeps the channels where ``masks[i]`` is True: its kernel keeps those output columns (and
  its bias those entries), the next block's kernel (or the dense layer's, after the last block) keeps
  the matching input rows; the head is copied. For a `GatedCNN` the gating modules are dropped, and
  the result computes what ``model(x, masks=masks)`` computes (to float32 rounding: a removed
  channel's terms were exact zeros); for a `CNN` it computes the network whose removed channels'
  filters and biases are zero. The new model is in inference mode, with the original's
  ``dropout_rate`` and ``hidden``.

  Args:
    model: a `CNN` or a `GatedCNN`.
    masks: one boolean (or 0/1) array of shape ``(channels[i],)`` per conv block, each keeping at
      least one channel.

  Returns:
    A new `CNN` (the model itself is unchanged).

  Example:
    >>> m = GatedCNN(1, 3, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
    >>> small = prune_channels(m, [jnp.array([True, False, True, True]), jnp.ones(8, bool)])
    >>> [conv.kernel.shape for conv in small.convs]
    [(3, 1, 3), (3, 3, 8)]

  References:
    Zhi et al., arXiv 2023, https://arxiv.org/abs/2302.10798 (the static sub-network, no gates).
  """
  _check_model("model", model, _ALL)
  if isinstance(model, (ResNet, GatedResNet)):
    return _prune_resnet(model, masks)
  widths = tuple(conv.out_features for conv in model.convs)
  masks = _check_masks("masks", masks, widths, allow_none=False)
  kept = [np.flatnonzero(np.asarray(m)) for m in masks]
  for i, k in enumerate(kept):
    if not k.size:
      raise ValueError(f"masks: block {i} keeps no channel (a block needs at least one)")
  # Built abstractly (no initialisation is computed), then every parameter is set from the model.
  out = nnx.eval_shape(lambda: CNN(model.in_channels, model.head.out_features, spatial_dims=model.spatial_dims,
                                   channels=tuple(len(k) for k in kept), hidden=model.dense.out_features,
                                   dropout_rate=model.dropout_rate, rngs=nnx.Rngs(0)))
  prev = np.arange(model.in_channels)
  for new, old, k in zip(out.convs, model.convs, kept):
    new.kernel.set_value(jnp.take(jnp.take(old.kernel[...], prev, axis=-2), k, axis=-1))
    new.bias.set_value(jnp.take(old.bias[...], k))
    prev = k
  out.dense.kernel.set_value(jnp.take(model.dense.kernel[...], prev, axis=0))
  out.dense.bias.set_value(model.dense.bias[...])
  out.head.kernel.set_value(model.head.kernel[...])
  out.head.bias.set_value(model.head.bias[...])
  return out


def _prune_resnet(model, masks) -> ResNet:
  net = model.backbone if isinstance(model, GatedResNet) else model
  if net.block_kind != "basic":
    raise ValueError(f"model: channel pruning covers basic-block ResNets, got block={net.block_kind!r}")
  masks = _check_masks("masks", masks, net.inner_widths, allow_none=False)
  kept = [np.flatnonzero(np.asarray(m)) for m in masks]
  for i, k in enumerate(kept):
    if not k.size:
      raise ValueError(f"masks: block {i} keeps no channel (a block needs at least one)")
  out = nnx.eval_shape(lambda: ResNet(net.in_channels, net.head.out_features, stage_sizes=net.stage_sizes,
                                      block="basic", width=net.width, dropout_rate=net.dropout_rate,
                                      inner_widths=tuple(len(k) for k in kept), rngs=nnx.Rngs(0)))
  old = {path_names(p): v for p, v in jax.tree_util.tree_leaves_with_path(nnx.state(net))}

  def take(path, _):
    names = path_names(path)
    v = old[names]
    if names[0] == "blocks":
      k = kept[int(names[1])]
      if names[2] == "conv1":
        v = jnp.take(v, k, axis=-1)
      elif names[2] == "bn1":
        v = jnp.take(v, k, axis=0)
      elif names[2] == "conv2":
        v = jnp.take(v, k, axis=-2)
    return v

  nnx.update(out, jax.tree_util.tree_map_with_path(take, nnx.state(out)))
  return out


def extract_subnetwork(model: GatedCNN | GatedResNet, x_calib: ArrayLike, *, quorum: float = 0.5) -> CNN | ResNet:
  """The static consensus sub-network of a trained `GatedCNN` (`GatedResNet`), as a plain `CNN` (`ResNet`).

  ``prune_channels(model, consensus_masks(model, x_calib, quorum=quorum))``: the channels whose gates
  a ``quorum`` of the calibration batch keeps, the others physically removed, no gating module. It
  computes what ``model(x, masks=consensus_masks(...))`` computes (to float32 rounding), and what
  ``model(x)`` computes on every input whose gates agree with the consensus.

  Args:
    model: a trained `GatedCNN`.
    x_calib: a calibration batch (at least one sample, finite).
    quorum: as in `consensus_masks`, in (0, 1].

  Returns:
    A new `CNN`, in inference mode.

  Example:
    >>> m = GatedCNN(1, 3, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
    >>> x = jax.random.normal(jax.random.key(1), (4, 32))
    >>> cnn = extract_subnetwork(m, x)
    >>> bool(jnp.allclose(cnn(x), m(x, masks=consensus_masks(m, x)), atol=1e-5))
    True

  References:
    Zhi et al., arXiv 2023, https://arxiv.org/abs/2302.10798.
  """
  return prune_channels(model, consensus_masks(model, x_calib, quorum=quorum))


def prune_channels_by_magnitude(cnn: CNN, keep_fraction: float) -> CNN:
  """The L1-magnitude channel-pruning baseline: per block, keep the output channels of largest L1 norm.

  Block i with C_i channels keeps k_i = max(1, floor(keep_fraction * C_i + 1/2)) channels, those with
  the largest sum of |kernel| over their filter (all of the kernel's axes but the last); ties keep
  the lower index. The kept channels keep their order, and `prune_channels` removes the rest.

  Args:
    cnn: a trained `jaxdyn.models.CNN` (finite kernels: checked).
    keep_fraction: the fraction of channels kept in each block, in (0, 1].

  Returns:
    A new, smaller `CNN`.

  Example:
    >>> from jaxdyn.models import CNN
    >>> cnn = CNN(1, 3, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
    >>> small = prune_channels_by_magnitude(cnn, 0.5)
    >>> [conv.out_features for conv in small.convs]
    [2, 4]

  References:
    Li, Kadav, Durdanovic, Samet, Graf, "Pruning Filters for Efficient ConvNets", ICLR 2017,
    https://arxiv.org/abs/1608.08710 (the L1-norm criterion); compared against in Zhi et al.,
    https://arxiv.org/abs/2302.10798.
  """
  _check_model("cnn", cnn, (CNN,))
  keep_fraction = _validation.check_real("keep_fraction", keep_fraction, lower=0.0, lower_open=True, upper=1.0)
  masks = []
  for i, conv in enumerate(cnn.convs):
    kernel = np.asarray(conv.kernel[...], np.float64)
    if not np.isfinite(kernel).all():
      raise ValueError(f"cnn: conv block {i}'s kernel holds a NaN or an infinity")
    score = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    width = kernel.shape[-1]
    k = max(1, math.floor(keep_fraction * width + 0.5))
    order = np.argsort(-score, kind="stable")
    mask = np.zeros(width, bool)
    mask[order[:k]] = True
    masks.append(mask)
  return prune_channels(cnn, masks)


# --- FLOPs ---------------------------------------------------------------------------------------------

def cnn_flops(model: CNN | GatedCNN | ResNet | GatedResNet, example_input: ArrayLike) -> int:
  """Inference FLOPs per example of a `CNN` (or of a `GatedCNN`'s backbone, its gates excluded).

  For a `ResNet` (a `GatedResNet`'s backbone) the count is read from the traced forward pass, as
  `jaxdyn.sparsity.sparse_flops` does: 2 per multiply-add of every convolution and matmul (stem,
  blocks, shortcuts, head); BatchNorm, ReLU, the residual additions and pooling are left out.

  A multiply-add counts 2. Conv block i (kernel k^d, "SAME", stride 1) at P_i output positions:
  2 k^d C_{i-1} C_i P_i, with P_1 the input's positions and P_{i+1} = prod ceil(n / 2) over the
  spatial sizes n of block i (its 2-wide max pool); the dense layer 2 C_last hidden; the head
  2 hidden num_classes. Biases, ReLU, pooling and the gating modules (removed at inference) are left
  out.

  Args:
    model: a `CNN` or a `GatedCNN`.
    example_input: a batch of the model's inputs, or a `jax.ShapeDtypeStruct`; only its shape is read.

  Returns:
    The FLOPs of one example, a Python int.

  Example:
    >>> from jaxdyn.models import CNN
    >>> cnn_flops(CNN(1, 3, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0)), jnp.ones((1, 16)))
    2272
  """
  _check_model("model", model, _ALL)
  shape = tuple(np.shape(example_input)) if not hasattr(example_input, "shape") else tuple(example_input.shape)
  try:
    model.check_input(jax.ShapeDtypeStruct(shape, jnp.float32))
  except ValueError as e:
    raise ValueError(f"example_input: {str(e).split(': ', 1)[-1]}") from e
  if isinstance(model, (ResNet, GatedResNet)):
    return _traced_flops(model.backbone if isinstance(model, GatedResNet) else model, shape)
  spatial = list(shape[1:1 + model.spatial_dims])
  flops = 0
  for conv in model.convs:
    taps = math.prod(conv.kernel_size)
    flops += 2 * taps * conv.in_features * conv.out_features * math.prod(spatial)
    spatial = [-(-n // 2) for n in spatial]
  flops += 2 * model.dense.in_features * model.dense.out_features
  flops += 2 * model.head.in_features * model.head.out_features
  return int(flops)


def _traced_flops(model, shape) -> int:
  from jaxdyn.sparsity._flops import sparse_flops  # pylint: disable=import-outside-toplevel
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  masks = jax.tree.map(lambda p: np.ones(np.shape(p), bool) if np.ndim(p) >= 2 else np.bool_(True), params)
  layers = sparse_flops(lambda p, x: nnx.merge(graphdef, p, rest)(x, train=False), params, masks,
                        jax.ShapeDtypeStruct((1, *shape[1:]), jnp.float32))
  return int(round(sum(layer.dense for layer in layers)))


@dataclasses.dataclass(frozen=True)
class CompressionReport:
  """What a pruned `CNN` keeps of its dense network (from `compression_report`).

  Attributes:
    dense_channels: output channels of each conv block of the dense network.
    kept_channels: those of the pruned network.
    dense_flops: inference FLOPs per example of the dense network (`cnn_flops`).
    flops: those of the pruned network.
  """

  dense_channels: tuple[int, ...]
  kept_channels: tuple[int, ...]
  dense_flops: int
  flops: int

  @property
  def channel_fraction(self) -> float:
    """Kept conv channels over dense ones, all blocks together."""
    return sum(self.kept_channels) / sum(self.dense_channels)

  @property
  def flops_fraction(self) -> float:
    """Pruned FLOPs over dense FLOPs."""
    return self.flops / self.dense_flops


def compression_report(dense: CNN | GatedCNN | ResNet | GatedResNet, pruned: CNN | ResNet, example_input: ArrayLike
                       ) -> CompressionReport:
  """Kept channels and FLOPs of a pruned `CNN` against its dense network.

  Args:
    dense: the dense network: a `CNN`, or the `GatedCNN` it was extracted from (its backbone is
      counted, without the gates, which the extracted network does not run); or a basic-block
      `ResNet` / `GatedResNet`, whose channels are the blocks' inner widths.
    pruned: a `CNN` from `extract_subnetwork`, `prune_channels` or `prune_channels_by_magnitude`:
      the dense network's blocks, input, hidden width and classes, with at most its channels.
    example_input: a batch of inputs (or a `jax.ShapeDtypeStruct`); only its shape is read.

  Returns:
    A `CompressionReport` (``channel_fraction`` and ``flops_fraction`` are properties).

  Example:
    >>> from jaxdyn.models import CNN
    >>> dense = CNN(1, 3, spatial_dims=1, channels=(4, 8), hidden=16, rngs=nnx.Rngs(0))
    >>> r = compression_report(dense, prune_channels_by_magnitude(dense, 0.5), jnp.ones((1, 16)))
    >>> r.kept_channels, r.flops, round(r.flops_fraction, 4)
    ((2, 4), 800, 0.3521)
  """
  _check_model("dense", dense, _ALL)
  if isinstance(dense, (ResNet, GatedResNet)):
    _check_model("pruned", pruned, (ResNet,))
    net = dense.backbone if isinstance(dense, GatedResNet) else dense
    dense_channels, kept = net.inner_widths, pruned.inner_widths
    same = (pruned.in_channels == net.in_channels and pruned.stage_sizes == net.stage_sizes
            and pruned.width == net.width and pruned.head.out_features == net.head.out_features)
    if not same or any(k > d for k, d in zip(kept, dense_channels)):
      raise ValueError(f"pruned: must be a pruned copy of dense (same stages, width, input and classes, at most "
                       f"its inner widths {dense_channels}), got inner widths {kept}")
    return CompressionReport(dense_channels, kept, cnn_flops(net, example_input), cnn_flops(pruned, example_input))
  _check_model("pruned", pruned, (CNN,))
  dense_channels = tuple(conv.out_features for conv in dense.convs)
  kept = tuple(conv.out_features for conv in pruned.convs)
  same = (pruned.in_channels == dense.in_channels and pruned.spatial_dims == dense.spatial_dims
          and pruned.dense.out_features == dense.dense.out_features
          and pruned.head.out_features == dense.head.out_features and len(kept) == len(dense_channels))
  if not same or any(k > d for k, d in zip(kept, dense_channels)):
    raise ValueError(f"pruned: must be a pruned copy of dense (same blocks, input, hidden and classes, at most "
                     f"its channels {dense_channels}), got channels {kept}")
  return CompressionReport(dense_channels, kept, cnn_flops(dense, example_input), cnn_flops(pruned, example_input))
