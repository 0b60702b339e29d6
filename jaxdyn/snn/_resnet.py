"""Spiking pre-activation ResNet-18 for CIFAR-sized inputs (the SLTT paper's CIFAR model)."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxdyn.snn._base import SpikingImageClassifier
from jaxdyn.models import Conv2d
from jaxdyn.snn._vgg import conv_init

__all__ = ["SpikingPreActResNet18"]


class _PreActBlock(nnx.Module):
  """a = LIF(BN1(x)); y = conv2(drop(LIF(BN2(conv1(a))))) + shortcut(a)."""

  def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
    self.bn1 = nnx.BatchNorm(cin, momentum=0.9, epsilon=1e-5, rngs=rngs)
    self.conv1 = Conv2d(cin, cout, (3, 3), strides=stride, kernel_init=conv_init(), rngs=rngs)
    self.bn2 = nnx.BatchNorm(cout, momentum=0.9, epsilon=1e-5, rngs=rngs)
    self.conv2 = Conv2d(cout, cout, (3, 3), kernel_init=conv_init(), rngs=rngs)
    self.shortcut = (Conv2d(cin, cout, (1, 1), strides=stride, kernel_init=conv_init(), rngs=rngs)
                     if stride != 1 or cin != cout else None)

  def __call__(self, lif, v1, v2, x, *, train: bool, mask=None):
    ra = not train
    a, v1 = lif(v1, self.bn1(x, use_running_average=ra))
    s, v2 = lif(v2, self.bn2(self.conv1(a), use_running_average=ra))
    if mask is not None:
      s = s * mask
    y = self.conv2(s) + (a if self.shortcut is None else self.shortcut(a))
    return y, v1, v2


class SpikingPreActResNet18(SpikingImageClassifier):
  """Pre-activation spiking ResNet-18: stem conv, 8 pre-activation blocks, BN -> LIF -> pool -> linear.

  Blocks (2, 2, 2, 2) at widths w, 2w, 4w, 8w (w = 64), stride 2 at the first block of stages 2-4;
  block: a = LIF(BN(x)), y = conv(drop(LIF(BN(conv(a))))) + shortcut(a) with a 1x1 conv shortcut when
  the shape changes (convs with bias, as in the SLTT code; the stem conv without). After the last
  block: LIF(BN(.)), global average pooling, dropout, linear readout o_t. BatchNorm runs at every
  step. 17 LIF layers, so the carry is a tuple of 17 membrane arrays.

  Args:
    in_channels, num_classes, width, num_steps, dropout_rate, encoder, tau, v_th, reset, surrogate,
      alpha, rngs: the shared constructor's (``jaxdyn.snn._base.SpikingImageClassifier``); here
      ``dropout_rate`` drops inside each block and before the readout, masks fixed over T.

  Returns:
    (on call) the mean over steps of o_t; with ``return_features``, also the mean pooled spikes of the
    last LIF layer.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> x = jnp.ones((2, 8, 8, 3))
    >>> m = SpikingPreActResNet18(3, 10, width=4, num_steps=2, rngs=nnx.Rngs(0))
    >>> m(x).shape, len(m.carry_shape(x))  # 17 membranes in the carry
    ((2, 10), 17)

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """

  def build(self, num_classes: int, width: int, *, rngs: nnx.Rngs) -> None:
    self.stem = Conv2d(self.in_channels, width, (3, 3), use_bias=False, kernel_init=conv_init(), rngs=rngs)
    blocks, cin = [], width
    for i in range(4):
      for j in range(2):
        cout = width * 2**i
        blocks.append(_PreActBlock(cin, cout, 2 if (i > 0 and j == 0) else 1, rngs=rngs))
        cin = cout
    self.blocks = nnx.List(blocks)
    self.bn = nnx.BatchNorm(cin, momentum=0.9, epsilon=1e-5, rngs=rngs)
    self.head = nnx.Linear(cin, num_classes, bias_init=nnx.initializers.zeros, rngs=rngs)

  def step(self, carry, x_t, *, train: bool, masks=None):
    v = (None,) * (2 * len(self.blocks) + 1) if carry is None else carry
    m = masks
    h = self.stem(x_t)
    new = []
    for i, block in enumerate(self.blocks):
      h, v1, v2 = block(self.lif, v[2 * i], v[2 * i + 1], h, train=train,
                        mask=None if m is None else m[2 * i + 1])
      new += [v1, v2]
    s, v_last = self.lif(v[-1], self.bn(h, use_running_average=not train))
    new.append(v_last)
    feats = jnp.mean(s, axis=(1, 2))
    if m is not None:  # dropout on the pooled spikes: the last mask's per-channel entries at (0, 0)
      feats = feats * m[-1][:, 0, 0, :]
    return self.head(feats), jnp.mean(s, axis=(1, 2)), tuple(new)
