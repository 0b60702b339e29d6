"""Historical object prediction (HoP): a training-only branch that predicts the objects of frame ``t - k``.

Zong et al., "Temporal Enhanced Training of Multi-view 3D Object Detector via Historical Object
Prediction", ICCV 2023, https://arxiv.org/abs/2304.00967 (code: Sense-X/HoP). At time ``t`` a detector
holds per-frame features ``F_{t-T+1}, ..., F_t`` of a window of ``T`` frames. HoP builds a *pseudo
feature* of frame ``t - k`` from the other frames only,

    F'_{t-k} = D(F_j : j != t - k),

and an extra object decoder (a detection head of its own) predicts the objects of frame ``t - k`` from
``F'_{t-k}``, trained with the main head's loss: ``L = L_main(t) + lambda * L_hop(t - k)``. The branch is
dropped at inference, so the inference model and its cost are unchanged; only the shared features
learn from it (the spatial position and the motion of the objects).

Here, at this project's scale, it is a 2-D single-camera analogue: the features are a dense detector's
per-frame feature maps ``(B, T, H, W, C)`` instead of the paper's bird's-eye-view (BEV) features of a
multi-camera 3D detector, and the data are `jaxdyn.detection.synthetic_sequences` instead of nuScenes.
The window is chronological: index ``T - 1`` is frame ``t``, index ``T - 1 - k`` frame ``t - k``.

Temporal decoder (`TemporalDecoder`), with the paper's two parts:

- short-term: the two adjacent frames ``t - k - 1`` and ``t - k + 1`` (`hop_frame_indices` with
  ``mode="short"``; when ``t - k - 1`` lies before the window, ``t - k + 1`` is used twice), fused by a
  3x3 convolution over their channel concatenation, ReLU: ``S = relu(conv([F_{t-k-1}, F_{t-k+1}]))``
  with ``C`` channels;
- long-term (optional): every frame of the window except ``t - k`` (``mode="long"``), in time order,
  reduced by a 3x3 convolution over their channel concatenation to ``C / 4`` channels, ReLU
  (the paper's long-term decoder also works at reduced channels; the authors' config reduces by 4);
- the two are fused by a 3x3 convolution over ``[S, L]`` back to ``C`` channels (without the long-term
  part the short-term output is the pseudo feature).

Derived here, not from the paper: the paper's decoders are BEVFormer-style transformer layers
(temporal deformable cross-attention over the adjacent / remaining BEV features) on aligned BEV maps;
here convolutions over the channel concatenation of unaligned image features stand in for them (the
objects move by a few pixels per frame, within a 3x3 convolution's reach at stride 4 after a few
layers). The loss weight ``lambda`` of the paper's experiments is not in the abstract; the runner
declares its own. The pseudo feature never reads frame ``t - k`` (its gradient with respect to
``F_{t-k}`` is exactly zero; tested).

From the authors' code (Sense-X/HoP, BEVDet4D version), read for details: the decoder gets the window
without frame ``t - 1`` (``k = 1``, as the runner's default), and its long-term part works at channels
reduced by 4 (``reduction=4``), as here. One difference is not reproduced: that code computes the features
of the frames other than ``t`` without gradients (BEVDet4D's memory saving, not part of HoP as the paper
describes it); `jaxdyn.models.TemporalDetector` lets every frame's features receive gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdyn import _validation

__all__ = ["HOP_MODES", "TemporalDecoder", "hop_frame_indices", "hop_loss"]

HOP_MODES = ("short", "long")


def _check_window(num_frames, k):
  num_frames = _validation.check_int("num_frames", num_frames, lower=2)
  k = _validation.check_int("k", k, lower=1, upper=num_frames - 1)
  return num_frames, k


def hop_frame_indices(num_frames: int, k: int, mode: str = "short") -> np.ndarray:
  """Which frames of a ``T``-frame window feed the pseudo feature of frame ``t - k`` (static indices).

  The window is chronological (index ``T - 1`` is frame ``t``), so frame ``t - k`` is index
  ``h = T - 1 - k``. ``"short"``: ``[h - 1, h + 1]``, with ``h + 1`` twice when ``h = 0`` (the frame
  before the window does not exist; ``h + 1 <= T - 1`` always exists as ``k >= 1``). ``"long"``: every
  index but ``h``, in order (``T - 1`` of them).

  Args:
    num_frames: ``T >= 2``.
    k: ``1 <= k <= T - 1``, how many frames back the historical frame lies.
    mode: ``"short"`` or ``"long"``.

  Returns:
    int32 NumPy indices: ``(2,)`` for ``"short"``, ``(T - 1,)`` for ``"long"``; never ``T - 1 - k``.

  Example:
    >>> hop_frame_indices(4, 1).tolist(), hop_frame_indices(4, 3).tolist(), hop_frame_indices(4, 1, "long").tolist()
    ([1, 3], [1, 1], [0, 1, 3])
  """
  num_frames, k = _check_window(num_frames, k)
  mode = _validation.check_choice("mode", mode, HOP_MODES)
  h = num_frames - 1 - k
  if mode == "short":
    return np.array([h - 1 if h >= 1 else h + 1, h + 1], np.int32)
  return np.array([i for i in range(num_frames) if i != h], np.int32)


class TemporalDecoder(nnx.Module):
  """HoP's temporal decoder: the pseudo feature of frame ``t - k`` from the other frames (module docstring).

  Args:
    channels: ``C``, the per-frame feature channels (in and out).
    num_frames: ``T >= 2``, the window length the decoder reads.
    k: ``1 <= k <= T - 1``.
    long_term: add the long-term part (every frame but ``t - k``) to the short-term one.
    rngs: ``nnx.Rngs`` for initialisation.

  Example:
    >>> dec = TemporalDecoder(8, 3, 1, rngs=nnx.Rngs(0))
    >>> dec(jnp.ones((2, 3, 4, 4, 8))).shape
    (2, 4, 4, 8)
  """

  def __init__(self, channels: int, num_frames: int, k: int, *, long_term: bool = True, rngs: nnx.Rngs):
    self.channels = _validation.check_int("channels", channels, lower=1)
    self.num_frames, self.k = _check_window(num_frames, k)
    self.long_term = bool(long_term)
    self.short_idx = tuple(int(i) for i in hop_frame_indices(self.num_frames, self.k, "short"))
    self.long_idx = tuple(int(i) for i in hop_frame_indices(self.num_frames, self.k, "long"))

    def conv(a, b):
      return nnx.Conv(a, b, kernel_size=(3, 3), padding="SAME", rngs=rngs)

    self.short = conv(2 * self.channels, self.channels)
    if self.long_term:
      reduced = max(1, self.channels // 4)
      self.long = conv(len(self.long_idx) * self.channels, reduced)
      self.fuse = conv(self.channels + reduced, self.channels)

  def __call__(self, features: jax.Array) -> jax.Array:
    """``features (B, T, H, W, C)`` -> the pseudo feature ``(B, H, W, C)`` of frame ``t - k``.

    The values of frame ``t - k`` are never used; a NaN or infinity in it makes that example's output NaN
    (the input policy), with a zero gradient all the same.
    """
    want = (self.num_frames, self.channels)
    shape = tuple(jnp.shape(features))
    if len(shape) != 5 or (shape[1], shape[4]) != want:
      raise ValueError(f"features: must have shape (batch, {self.num_frames}, height, width, {self.channels}), "
                       f"got {shape}")

    def cat(idx):
      return jnp.concatenate([features[:, i] for i in idx], axis=-1)

    out = nnx.relu(self.short(cat(self.short_idx)))
    if self.long_term:
      lt = nnx.relu(self.long(cat(self.long_idx)))
      out = self.fuse(jnp.concatenate([out, lt], axis=-1))
    # Input policy: a NaN or infinity in frame t-k, which is not read, still gives NaN (that example's
    # output); the test does not depend on its values, so its gradient stays exactly zero.
    h = self.num_frames - 1 - self.k
    ok = jnp.all(jnp.isfinite(features[:, h]), axis=(1, 2, 3))[:, None, None, None]
    return _validation.nan_unless(ok, out)


def hop_loss(main_loss: jax.Array, historical_loss: jax.Array, weight: float) -> jax.Array:
  """HoP's training loss ``main_loss + weight * historical_loss`` (module docstring).

  Args:
    main_loss: the main head's loss at frame ``t`` (a scalar).
    historical_loss: the extra object decoder's loss at frame ``t - k``, the same loss function.
    weight: ``lambda >= 0``; 0 gives the main loss alone (for a finite historical loss).

  Returns:
    The scalar total; a NaN or infinity in either loss comes out non-finite.

  Example:
    >>> float(hop_loss(jnp.float32(1.5), jnp.float32(2.0), 0.5))
    2.5
  """
  weight = _validation.check_real("weight", weight, lower=0.0)
  for name, v in (("main_loss", main_loss), ("historical_loss", historical_loss)):
    if jnp.ndim(v) != 0:
      raise ValueError(f"{name}: must be a scalar, got shape {jnp.shape(v)}")
  return jnp.asarray(main_loss) + weight * jnp.asarray(historical_loss)
