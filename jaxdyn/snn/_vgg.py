"""Spiking VGG-11 with per-step BatchNorm and average pooling."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxdyn.snn._base import SpikingImageClassifier
from jaxdyn.models import Conv2d

__all__ = ["SpikingVGG11"]

# VGG-11 stages: conv widths (in units of width / 64), each stage ends with a 2x2 average pool.
_VGG11 = ((1,), (2,), (4, 4), (8, 8), (8, 8))


def conv_init():
  """He normal on fan-out (PyTorch's kaiming_normal_(mode="fan_out")), as in the SLTT models."""
  return nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


class SpikingVGG11(SpikingImageClassifier):
  """VGG-11 of conv -> per-step BN -> LIF (-> dropout) blocks with 2x2 average pooling.

  Stages of 64, 128, 256x2, 512x2, 512x2 channels (times ``width / 64``), each ending in a 2x2 average
  pool of the spikes (skipped once the map is 1x1, so small inputs work); then global average pooling
  and a linear readout o_t. The SLTT code's adaptive 7x7 pool + Linear(512 * 49) acts on a 1x1 map for
  its 32x32 / 48x48 inputs, i.e. a linear map of the 512 pooled spikes, which is what this has.

  Args:
    in_channels, num_classes, width, num_steps, dropout_rate, encoder, tau, v_th, reset, surrogate,
      alpha, rngs: the shared constructor's (``jaxdyn.snn._base.SpikingImageClassifier``); here
      ``dropout_rate`` drops after every LIF layer, the mask fixed over T.

  Returns:
    (on call) mean over steps of o_t (and the mean pooled spikes with ``return_features``).

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> m = SpikingVGG11(3, 10, width=4, num_steps=2, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((2, 8, 8, 3))).shape
    (2, 10)

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """

  def build(self, num_classes: int, width: int, *, rngs: nnx.Rngs) -> None:
    convs, norms, stage_ends = [], [], []
    cin = self.in_channels
    for stage in _VGG11:
      for mult in stage:
        cout = mult * width
        convs.append(Conv2d(cin, cout, (3, 3), kernel_init=conv_init(), rngs=rngs))
        norms.append(nnx.BatchNorm(cout, momentum=0.9, epsilon=1e-5, rngs=rngs))
        cin = cout
      stage_ends.append(len(convs) - 1)
    self.stage_ends = tuple(stage_ends)
    self.convs, self.norms = nnx.List(convs), nnx.List(norms)
    self.head = nnx.Linear(cin, num_classes, kernel_init=nnx.initializers.normal(0.01),
                           bias_init=nnx.initializers.zeros, rngs=rngs)

  def step(self, carry, x_t, *, train: bool, masks=None):
    h = x_t
    new = []
    for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
      s, v = self.lif(None if carry is None else carry[i], norm(conv(h), use_running_average=not train))
      new.append(v)
      h = s if masks is None else s * masks[i]
      if i in self.stage_ends and h.shape[1] > 1 and h.shape[2] > 1:
        h = nnx.avg_pool(h, (2, 2), strides=(2, 2))
    feats = jnp.mean(h, axis=(1, 2))
    return self.head(feats), feats, tuple(new)
