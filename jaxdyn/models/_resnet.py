"""CIFAR-style ResNets (3x3 stem, no initial max-pool): ResNet-18 and ResNet-50."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn import _validation
from jaxdyn.models._base import Classifier, check_input_shape, is_training
from jaxdyn.models._conv import Conv2d


class _BasicBlock(nnx.Module):
  expansion = 1

  def __init__(self, cin: int, width: int, stride: int, *, inner: int | None = None, rngs: nnx.Rngs):
    cout = width * self.expansion
    inner = width if inner is None else inner  # conv1's output channels (fewer after channel pruning)
    self.conv1 = Conv2d(cin, inner, (3, 3), strides=stride, use_bias=False, rngs=rngs)
    self.bn1 = nnx.BatchNorm(inner, rngs=rngs)
    self.conv2 = Conv2d(inner, cout, (3, 3), use_bias=False, rngs=rngs)
    self.bn2 = nnx.BatchNorm(cout, scale_init=nnx.initializers.zeros, rngs=rngs)
    self.shortcut = _projection(cin, cout, stride, rngs) if (stride != 1 or cin != cout) else None

  def __call__(self, x, *, train: bool, gate: jax.Array | None = None):
    ra = not train
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=ra))
    if gate is not None:  # (batch, inner) or (inner,): multiplies conv1's channels (channel gating)
      y = y * (gate[:, None, None, :] if gate.ndim == 2 else gate)
    y = self.bn2(self.conv2(y), use_running_average=ra)
    s = x if self.shortcut is None else self.shortcut[1](self.shortcut[0](x), use_running_average=ra)
    return nnx.relu(y + s)


class _Bottleneck(nnx.Module):
  expansion = 4

  def __init__(self, cin: int, width: int, stride: int, *, inner: int | None = None, rngs: nnx.Rngs):
    del inner  # ResNet refuses inner_widths for bottleneck blocks
    cout = width * self.expansion
    self.conv1 = Conv2d(cin, width, (1, 1), use_bias=False, rngs=rngs)
    self.bn1 = nnx.BatchNorm(width, rngs=rngs)
    self.conv2 = Conv2d(width, width, (3, 3), strides=stride, use_bias=False, rngs=rngs)
    self.bn2 = nnx.BatchNorm(width, rngs=rngs)
    self.conv3 = Conv2d(width, cout, (1, 1), use_bias=False, rngs=rngs)
    self.bn3 = nnx.BatchNorm(cout, scale_init=nnx.initializers.zeros, rngs=rngs)
    self.shortcut = _projection(cin, cout, stride, rngs) if (stride != 1 or cin != cout) else None

  def __call__(self, x, *, train: bool):
    ra = not train
    y = nnx.relu(self.bn1(self.conv1(x), use_running_average=ra))
    y = nnx.relu(self.bn2(self.conv2(y), use_running_average=ra))
    y = self.bn3(self.conv3(y), use_running_average=ra)
    s = x if self.shortcut is None else self.shortcut[1](self.shortcut[0](x), use_running_average=ra)
    return nnx.relu(y + s)


def _projection(cin, cout, stride, rngs):
  return nnx.List([
      Conv2d(cin, cout, (1, 1), strides=stride, use_bias=False, rngs=rngs),
      nnx.BatchNorm(cout, rngs=rngs),
  ])


class ResNet(Classifier):
  """ResNet for small images (He et al. 2016, CIFAR variant with a 3x3 stride-1 stem).

  Args:
    in_channels: input channels.
    num_classes: number of logits.
    stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
    block: ``"basic"`` or ``"bottleneck"``.
    width: channels of the first stage (doubled at each later stage).
    dropout_rate: dropout before the head, in [0, 1).
    inner_widths: basic blocks only: per block (in order), the output channels of its first
      convolution, the block's inner width; default the stage's width. A channel-pruned ResNet
      (`jaxdyn.sparsity.prune_channels`) has fewer; the residual stream keeps its widths.
    rngs: ``nnx.Rngs`` for initialisation.

  The penultimate features are the globally average-pooled output of the last stage. BatchNorm uses
  batch statistics when ``train=True`` (and updates its running averages) and the running averages
  otherwise.
  """

  def __init__(
      self,
      in_channels: int,
      num_classes: int,
      *,
      stage_sizes: Sequence[int] = (2, 2, 2, 2),
      block: str = "basic",
      width: int = 64,
      dropout_rate: float = 0.0,
      inner_widths: Sequence[int] | None = None,
      rngs: nnx.Rngs,
  ):
    in_channels = _validation.check_int("in_channels", in_channels, lower=1)
    num_classes = _validation.check_int("num_classes", num_classes, lower=1)
    width = _validation.check_int("width", width, lower=1)
    blocks = {"basic": _BasicBlock, "bottleneck": _Bottleneck}
    cls = blocks[_validation.check_choice("block", block, sorted(blocks))]
    self.in_channels = in_channels
    self.stem = Conv2d(in_channels, width, (3, 3), use_bias=False, rngs=rngs)
    self.stem_bn = nnx.BatchNorm(width, rngs=rngs)
    stage_sizes = tuple(_validation.check_int("stage_sizes", n, lower=1) for n in stage_sizes)
    if inner_widths is not None:
      if block != "basic":
        raise ValueError(f"inner_widths: only basic blocks have an inner width to set, got block={block!r}")
      if isinstance(inner_widths, (str, bytes)) or len(inner_widths) != sum(stage_sizes):
        raise ValueError(f"inner_widths: must give one width per block ({sum(stage_sizes)}), got {inner_widths!r}")
      inner_widths = tuple(_validation.check_int("inner_widths", w, lower=1) for w in inner_widths)
    layers = []
    cin = width
    for i, n in enumerate(stage_sizes):
      w = width * 2**i
      for j in range(n):
        inner = None if inner_widths is None else inner_widths[len(layers)]
        layers.append(cls(cin, w, 2 if (i > 0 and j == 0) else 1, inner=inner, rngs=rngs))
        cin = w * cls.expansion
    self.blocks = nnx.List(layers)
    self.block_kind = block
    self.width = width
    self.stage_sizes = stage_sizes
    self.head = nnx.Linear(cin, num_classes, rngs=rngs)
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)

  @property
  def inner_widths(self) -> tuple[int, ...]:
    """Per block, the output channels of its first convolution."""
    return tuple(b.conv1.kernel.shape[-1] for b in self.blocks)

  def check_input(self, x: jax.Array) -> None:
    check_input_shape(x, (None, None, self.in_channels), "images")

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    del key  # no dropout in the trunk
    train = is_training(self, train)
    x = nnx.relu(self.stem_bn(self.stem(x), use_running_average=not train))
    for b in self.blocks:
      x = b(x, train=train)
    return jnp.mean(x, axis=(1, 2))


def ResNet18(in_channels: int, num_classes: int, **kwargs) -> ResNet:  # noqa: N802
  """CIFAR-style ResNet-18: basic blocks (2, 2, 2, 2) unless ``stage_sizes`` says otherwise."""
  kwargs.setdefault("stage_sizes", (2, 2, 2, 2))
  return ResNet(in_channels, num_classes, block="basic", **kwargs)


def ResNet50(in_channels: int, num_classes: int, **kwargs) -> ResNet:  # noqa: N802
  """CIFAR-style ResNet-50: bottleneck blocks (3, 4, 6, 3) unless ``stage_sizes`` says otherwise."""
  kwargs.setdefault("stage_sizes", (3, 4, 6, 3))
  return ResNet(in_channels, num_classes, block="bottleneck", **kwargs)
