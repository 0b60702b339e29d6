"""A tiny temporal dense detector (BEVDet4D-style fusion) with a training-only HoP branch, in Flax NNX.

Built from `TinyDetector`'s parts (it subclasses it: the same backbone, shared head, anchors and output
layout). Inference (``__call__``) on a window of the ``num_frames`` latest frames ``x (B, T_in, S, S, C)``:

1. the backbone's first two stride-2 convolutions run on every frame (shared weights): per-frame
   features ``F_i (B, S/4, S/4, width)`` (`features`);
2. temporal fusion, as BEVDet4D fuses the current and previous BEV features: a 3x3 convolution with
   ReLU over the channel concatenation ``[F_{t-T_in+1}, ..., F_t]`` -> ``width`` channels;
3. TinyDetector's third stride-2 convolution and its shared head on the fused map: detections at ``t``
   (same outputs and anchor order as `TinyDetector`).

Historical object prediction (Zong et al., ICCV 2023, https://arxiv.org/abs/2304.00967; a 2-D
single-camera analogue of the paper's BEV detector, see `jaxdyn.detection.TemporalDecoder`): with
``hop=True`` the model also holds ``hop_decoder`` (a `jaxdyn.detection.TemporalDecoder` over a window of
``hop_frames`` per-frame features, ``k = hop_k``) and ``hop_head``, an object decoder of its own (a copy
of the level-1 convolution and the head, separately initialised). `historical` maps per-frame features
to detections of frame ``t - k``. Neither is called by ``__call__``: the inference computation, its
parameters and its FLOPs are those of the model with ``hop=False`` (tested), and the HoP parameters are
created after all the others, so the same ``rngs`` seed gives the same inference weights either way.

Not a `jaxdyn.models.Model` (it returns three arrays, as `TinyDetector`). An empty batch gives empty
outputs; a NaN or infinity in ``x`` comes out as NaN outputs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn import _validation
from jaxdyn.models._detector import TinyDetector

__all__ = ["TemporalDetector"]


class _ObjectDecoder(nnx.Module):
  """HoP's extra object decoder: level-1 convolution + a head shaped as TinyDetector's."""

  def __init__(self, width, num_classes, rngs):
    def conv(a, b, stride=1):
      return nnx.Conv(a, b, kernel_size=(3, 3), strides=(stride, stride), padding="SAME", rngs=rngs)

    self.num_classes = num_classes
    self.down = conv(width, width, 2)
    self.tower = conv(width, width)
    self.cls = conv(width, num_classes)
    self.cls.bias[...] = jnp.full((num_classes,), -math.log((1 - 0.01) / 0.01), jnp.float32)  # TinyDetector's prior
    self.box = conv(width, 4)
    self.ctr = conv(width, 1)


def _heads(p0, m):
  """Level 0 = ``p0``, level 1 = ``relu(m.down(p0))``; the shared head on both (TinyDetector's layout)."""
  p1 = nnx.relu(m.down(p0))
  outs = []
  for p in (p0, p1):
    h = nnx.relu(m.tower(p))
    b, n = p.shape[0], p.shape[1] * p.shape[2]
    outs.append((m.cls(h).reshape(b, n, m.num_classes), m.box(h).reshape(b, n, 4), m.ctr(h).reshape(b, n)))
  return tuple(jnp.concatenate(parts, axis=1) for parts in zip(*outs))


class TemporalDetector(TinyDetector):
  """TinyDetector over a window of frames with temporal fusion, and an optional HoP branch (module docstring).

  Args:
    in_channels: image channels.
    num_classes: ``K`` object classes.
    width: channels of every convolution.
    image_size: side of the square frames, a multiple of 8.
    anchor_scale: anchor side over stride.
    num_frames: ``T_in >= 1`` frames fused at inference (the window ending at ``t``).
    hop: create the HoP branch (`historical`).
    hop_frames: ``T_hop >= 2`` frames the HoP temporal decoder reads (the window ending at ``t``).
    hop_k: ``1 <= k <= T_hop - 1``: the branch predicts the objects of frame ``t - k``.
    hop_long_term: give the temporal decoder its long-term part.
    rngs: ``nnx.Rngs`` for initialisation.

  Example:
    >>> det = TemporalDetector(1, 3, width=8, image_size=16, num_frames=2, hop=True, hop_frames=3,
    ...                        rngs=nnx.Rngs(0))
    >>> x = jnp.zeros((2, 3, 16, 16, 1))
    >>> cls, box, ctr = det(x[:, 1:])
    >>> hcls, hbox, hctr = det.historical(det.features(x))
    >>> cls.shape, hcls.shape, det.anchors()[1]
    ((2, 20, 3), (2, 20, 3), (16, 4))
  """

  def __init__(self, in_channels: int, num_classes: int, *, width: int = 32, image_size: int = 64,
               anchor_scale: float = 4.0, num_frames: int = 2, hop: bool = False, hop_frames: int = 3,
               hop_k: int = 1, hop_long_term: bool = True, rngs: nnx.Rngs):
    super().__init__(in_channels, num_classes, width=width, image_size=image_size, anchor_scale=anchor_scale,
                     rngs=rngs)
    self.width = _validation.check_int("width", width, lower=1)
    self.num_frames = _validation.check_int("num_frames", num_frames, lower=1)
    self.fusion = nnx.Conv(self.num_frames * self.width, self.width, kernel_size=(3, 3), padding="SAME", rngs=rngs)
    self.hop = bool(hop)
    self.hop_frames = _validation.check_int("hop_frames", hop_frames, lower=2)
    self.hop_k = _validation.check_int("hop_k", hop_k, lower=1, upper=self.hop_frames - 1)
    if self.hop:
      from jaxdyn.detection import TemporalDecoder  # pylint: disable=import-outside-toplevel
      self.hop_decoder = TemporalDecoder(self.width, self.hop_frames, self.hop_k, long_term=hop_long_term,
                                         rngs=rngs)
      self.hop_head = _ObjectDecoder(self.width, self.num_classes, rngs)

  def _check_frames(self, name, x, frames):
    want = (frames, self.image_size, self.image_size, self.in_channels)
    if jnp.ndim(x) != 5 or tuple(jnp.shape(x)[1:]) != want:
      raise ValueError(f"{name}: must have shape (batch, {', '.join(map(str, want))}), got {jnp.shape(x)}")

  def features(self, x: jax.Array) -> jax.Array:
    """Per-frame backbone features: ``x (B, T, S, S, C)`` -> ``(B, T, S/4, S/4, width)`` (any ``T >= 1``)."""
    if jnp.ndim(x) != 5 or jnp.shape(x)[1] < 1 or tuple(jnp.shape(x)[2:]) != (
        self.image_size, self.image_size, self.in_channels):
      raise ValueError(f"x: must have shape (batch, frames, {self.image_size}, {self.image_size}, "
                       f"{self.in_channels}), got {jnp.shape(x)}")
    b, t = x.shape[:2]
    flat = x.reshape(b * t, *x.shape[2:])
    f = nnx.relu(self.stem2(nnx.relu(self.stem1(flat))))
    return f.reshape(b, t, *f.shape[1:])

  def detect(self, feats: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The inference path after the backbone: the last ``num_frames`` features -> detections at ``t``."""
    if jnp.ndim(feats) != 5 or jnp.shape(feats)[1] < self.num_frames or jnp.shape(feats)[-1] != self.width:
      raise ValueError(f"feats: must have shape (batch, >= {self.num_frames}, height, width, {self.width}), "
                       f"got {jnp.shape(feats)}")
    window = feats[:, feats.shape[1] - self.num_frames:]
    fused = nnx.relu(self.fusion(jnp.concatenate([window[:, i] for i in range(self.num_frames)], axis=-1)))
    return _heads(fused, self)

  def historical(self, feats: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """HoP (training only): the last ``hop_frames`` features -> detections of frame ``t - hop_k``.

    The pseudo feature of ``t - k`` comes from ``hop_decoder`` (it never reads frame ``t - k``), the
    detections from ``hop_head``; outputs as ``__call__``'s.
    """
    if not self.hop:
      raise ValueError("hop: the model was built with hop=False, so it has no historical branch")
    if jnp.ndim(feats) != 5 or jnp.shape(feats)[1] < self.hop_frames or jnp.shape(feats)[-1] != self.width:
      raise ValueError(f"feats: must have shape (batch, >= {self.hop_frames}, height, width, {self.width}), "
                       f"got {jnp.shape(feats)}")
    pseudo = nnx.relu(self.hop_decoder(feats[:, feats.shape[1] - self.hop_frames:]))
    return _heads(pseudo, self.hop_head)

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Inference: ``x (B, num_frames, S, S, C)`` -> detections at the last frame (TinyDetector's outputs)."""
    del train, key  # no dropout or normalisation statistics
    self._check_frames("x", x, self.num_frames)
    return self.detect(self.features(x))
