"""A tiny one-stage dense detector (RetinaNet / FCOS / ATSS style) with two pyramid levels, in Flax NNX.

Backbone: two stride-2 3x3 convolutions (stride 4, level 0), a third (stride 8, level 1), ReLU after
each. Head, shared by the levels as in RetinaNet: one 3x3 convolution with ReLU, then three 3x3
convolutions giving, per location (one anchor per location, as ATSS), ``K`` class logits, 4 box deltas
(decoded with `jaxdyn.detection.decode_boxes`) and a centerness logit. The class bias starts at
``-log((1 - pi) / pi)`` with ``pi = 0.01`` (RetinaNet's prior), the other convolutions as ``nnx.Conv``.

Outputs are flattened level after level, row-major over each feature map, which is the order of
`TinyDetector.anchors` (`jaxdyn.detection.make_anchors` with the strides ``(4, 8)`` and sides
``anchor_scale * stride``). Not a `jaxdyn.models.Model`: it returns three arrays, not logits. An empty
batch gives empty outputs; a NaN or infinity in ``x`` comes out as NaN outputs.

Lin et al., "Focal Loss for Dense Object Detection", https://arxiv.org/abs/1708.02002; Zhang et al.,
ATSS, https://arxiv.org/abs/1912.02424.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn import _validation

__all__ = ["TinyDetector"]

STRIDES = (4, 8)


class TinyDetector(nnx.Module):
  """A two-level dense detector (module docstring).

  Args:
    in_channels: image channels.
    num_classes: ``K`` object classes (no background class: sigmoid outputs).
    width: channels of every convolution.
    image_size: side of the square input images, a multiple of 8.
    anchor_scale: anchor side over stride (ATSS uses 8 on COCO; smaller objects here).
    rngs: ``nnx.Rngs`` for initialisation.

  Example:
    >>> det = TinyDetector(1, 3, width=8, image_size=16, rngs=nnx.Rngs(0))
    >>> cls, box, ctr = det(jnp.zeros((2, 16, 16, 1)))
    >>> cls.shape, box.shape, ctr.shape, det.anchors()[1]
    ((2, 20, 3), (2, 20, 4), (2, 20), (16, 4))
  """

  def __init__(self, in_channels: int, num_classes: int, *, width: int = 32, image_size: int = 64,
               anchor_scale: float = 4.0, rngs: nnx.Rngs):
    self.in_channels = _validation.check_int("in_channels", in_channels, lower=1)
    self.num_classes = _validation.check_int("num_classes", num_classes, lower=1)
    width = _validation.check_int("width", width, lower=1)
    self.image_size = _validation.check_int("image_size", image_size, lower=8)
    if self.image_size % 8:
      raise ValueError(f"image_size: must be a multiple of 8, got {image_size}")
    self.anchor_scale = _validation.check_real("anchor_scale", anchor_scale, lower=0.0, lower_open=True)

    def conv(a, b, stride=1):
      return nnx.Conv(a, b, kernel_size=(3, 3), strides=(stride, stride), padding="SAME", rngs=rngs)

    self.stem1 = conv(self.in_channels, width, 2)
    self.stem2 = conv(width, width, 2)
    self.down = conv(width, width, 2)
    self.tower = conv(width, width)
    self.cls = conv(width, self.num_classes)
    # strongly typed float32: a weakly typed bias turns strong after one optimizer step, and a jitted step recompiles
    self.cls.bias[...] = jnp.full((self.num_classes,), -math.log((1 - 0.01) / 0.01), jnp.float32)
    self.box = conv(width, 4)
    self.ctr = conv(width, 1)

  def anchors(self) -> tuple[jax.Array, tuple[int, ...]]:
    """``(anchors, num_anchors_per_level)`` matching the outputs' order."""
    from jaxdyn.detection import make_anchors  # pylint: disable=import-outside-toplevel
    return make_anchors(self.image_size, STRIDES, tuple(self.anchor_scale * s for s in STRIDES))

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(cls_logits (B, A, K), box_deltas (B, A, 4), centerness_logits (B, A))``; ``train``/``key`` unused."""
    del train, key  # no dropout or normalisation statistics
    want = (self.image_size, self.image_size, self.in_channels)
    if jnp.ndim(x) != 4 or tuple(jnp.shape(x)[1:]) != want:
      raise ValueError(f"x: must have shape (batch, {', '.join(map(str, want))}), got {jnp.shape(x)}")
    p0 = nnx.relu(self.stem2(nnx.relu(self.stem1(x))))
    p1 = nnx.relu(self.down(p0))
    outs = []
    for p in (p0, p1):
      h = nnx.relu(self.tower(p))
      b, n = p.shape[0], p.shape[1] * p.shape[2]  # explicit sizes: an empty batch cannot infer -1
      outs.append((self.cls(h).reshape(b, n, self.num_classes), self.box(h).reshape(b, n, 4),
                   self.ctr(h).reshape(b, n)))
    return tuple(jnp.concatenate(parts, axis=1) for parts in zip(*outs))
