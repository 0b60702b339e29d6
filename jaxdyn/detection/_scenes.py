"""Synthetic detection scenes: filled shapes at several scales on a noisy canvas, boxes and classes known.

Each image is a ``S x S`` single-channel canvas with 1 to ``max_objects`` objects. An object is one of
three classes (`SHAPES`: 0 a filled rectangle, 1 a filled ellipse inscribed in its box, 2 a filled
isosceles triangle, apex up), with width and height drawn independently in ``[min_size, max_size]``
pixels (so at several scales and aspect ratios), a position drawn uniformly over the canvas, and a
brightness in ``[0.5, 1]``. Objects do not overlap (a placement overlapping an earlier box is redrawn,
up to 50 times, then the object is dropped). Gaussian noise of standard deviation ``noise`` is added
and the image clipped to [0, 1]. Each box is the tight extent of the object's painted pixels, in the
continuous convention: pixel ``(i, j)`` covers ``[j, j + 1] x [i, i + 1]``.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same scenes.
No download: the data set is generated on the fly.

Sequence mode (`synthetic_sequences`, for historical object prediction, `jaxdyn.detection.TemporalDecoder`):
``T`` frames per sequence, the same objects (kind, size, brightness drawn as above) in every frame, each
moving at a constant integer velocity ``(vx, vy)`` (pixels per frame, each component uniform in
``[-max_speed, max_speed]``) and bouncing off the canvas edges: with ``L = S - w`` the free range of the
box's left edge, ``x(t) = r(x0 + vx t)`` where ``r(p) = p mod 2L`` folded back as ``2L - (p mod 2L)`` when
above ``L`` (a triangle wave; the object never leaves the canvas, so a box is never clipped), the same in
``y``. Positions are integers, so away from the edges a box moves by exactly ``(vx, vy)`` per frame. The
initial positions do not overlap (the redraw rule above); after that, moving objects may overlap: the
later row is painted over the earlier one, and boxes stay the objects' full (amodal) extents, so an
object can be partly or wholly hidden in some frames. An object keeps its row index in every frame.
``dim_rate``: each frame independently, with this probability, has all its objects painted at
``dim_factor`` times their brightness (a low-contrast frame, ambiguous under the noise), so that the
adjacent frames carry information a single frame lacks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxdyn import _validation

__all__ = ["SHAPES", "Scenes", "Sequences", "synthetic_scenes", "synthetic_sequences"]

SHAPES = ("rectangle", "ellipse", "triangle")


class Scenes(NamedTuple):
  """A batch of synthetic scenes.

  Attributes:
    images: float32 ``(N, S, S, 1)`` in [0, 1].
    boxes: float32 ``(N, M, 4)`` boxes ``(x1, y1, x2, y2)``, zero rows where ``valid`` is False.
    labels: int32 ``(N, M)`` class ids (indices into `SHAPES`), 0 in padded rows.
    valid: bool ``(N, M)``.
  """

  images: np.ndarray
  boxes: np.ndarray
  labels: np.ndarray
  valid: np.ndarray


def _mask(kind, w, h):
  ys, xs = np.mgrid[0:h, 0:w]
  u, v = (xs + 0.5) / w, (ys + 0.5) / h  # pixel centres in the unit box
  if kind == 0:
    return np.ones((h, w), bool)
  if kind == 1:
    return (2 * u - 1) ** 2 + (2 * v - 1) ** 2 <= 1.0
  return np.abs(2 * u - 1) <= v + 0.5 / h  # apex row keeps at least its centre pixel


def _check_canvas(image_size, max_objects, min_size, max_size, noise):
  """The canvas arguments shared by `synthetic_scenes` and `synthetic_sequences`, checked in order."""
  image_size = _validation.check_int("image_size", image_size, lower=3)
  max_objects = _validation.check_int("max_objects", max_objects, lower=1)
  min_size = _validation.check_int("min_size", min_size, lower=3, upper=image_size)
  max_size = _validation.check_int("max_size", max_size, lower=min_size, upper=image_size)
  return image_size, max_objects, min_size, max_size, _validation.check_real("noise", noise, lower=0.0)


def _overlaps(box, boxes):
  return any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes)


def synthetic_scenes(seed: int, num_images: int, *, image_size: int = 64, max_objects: int = 4, min_size: int = 8,
                     max_size: int = 32, noise: float = 0.05) -> Scenes:
  """``num_images`` scenes of shapes (module docstring), deterministic from ``seed``.

  Args:
    seed: an int ``>= 0`` seeding ``numpy.random.default_rng``.
    num_images: ``N >= 1``.
    image_size: canvas side ``S >= max_size``.
    max_objects: ``M >= 1``, the most objects per image (the padded size of ``boxes``).
    min_size, max_size: object side range in pixels, ``3 <= min_size <= max_size <= image_size``.
    noise: standard deviation ``>= 0`` of the additive Gaussian pixel noise.

  Returns:
    `Scenes`.

  Example:
    >>> s = synthetic_scenes(0, 2, image_size=32, max_objects=3, min_size=6, max_size=12)
    >>> s.images.shape, s.boxes.shape, bool(s.valid[:, 0].all())
    ((2, 32, 32, 1), (2, 3, 4), True)
  """
  seed = _validation.check_int("seed", seed, lower=0)
  num_images = _validation.check_int("num_images", num_images, lower=1)
  image_size, max_objects, min_size, max_size, noise = _check_canvas(image_size, max_objects, min_size, max_size,
                                                                     noise)
  rng = np.random.default_rng(seed)
  images = np.zeros((num_images, image_size, image_size, 1), np.float32)
  boxes = np.zeros((num_images, max_objects, 4), np.float32)
  labels = np.zeros((num_images, max_objects), np.int32)
  valid = np.zeros((num_images, max_objects), bool)
  for n in range(num_images):
    placed = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
      kind = int(rng.integers(0, len(SHAPES)))
      w, h = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
      brightness = float(rng.uniform(0.5, 1.0))
      for _attempt in range(50):
        x0, y0 = int(rng.integers(0, image_size - w + 1)), int(rng.integers(0, image_size - h + 1))
        if not _overlaps((x0, y0, x0 + w, y0 + h), [p[0] for p in placed]):
          break
      else:
        continue
      m = _mask(kind, w, h)
      rows, cols = np.nonzero(m)
      images[n, y0:y0 + h, x0:x0 + w, 0][m] = brightness
      tight = (x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1)
      placed.append(((x0, y0, x0 + w, y0 + h), tight, kind))
    for j, (_, tight, kind) in enumerate(placed):
      boxes[n, j] = tight
      labels[n, j] = kind
      valid[n, j] = True
  if noise > 0:
    images += rng.normal(0.0, noise, images.shape).astype(np.float32)
  return Scenes(np.clip(images, 0.0, 1.0), boxes, labels, valid)


class Sequences(NamedTuple):
  """A batch of synthetic sequences (`synthetic_sequences`): `Scenes` with a frame axis ``T``.

  Attributes:
    images: float32 ``(N, T, S, S, 1)`` in [0, 1].
    boxes: float32 ``(N, T, M, 4)`` boxes ``(x1, y1, x2, y2)``; row ``j`` is the same object in every frame.
    labels: int32 ``(N, T, M)`` class ids (indices into `SHAPES`), 0 in padded rows; constant over ``T``.
    valid: bool ``(N, T, M)``, constant over ``T``.
    velocities: int32 ``(N, M, 2)`` the objects' ``(vx, vy)`` in pixels per frame (before bouncing), 0 in
      padded rows.
    dimmed: bool ``(N, T)``, the low-contrast frames.
  """

  images: np.ndarray
  boxes: np.ndarray
  labels: np.ndarray
  valid: np.ndarray
  velocities: np.ndarray
  dimmed: np.ndarray


def _bounce(p, free):
  """The triangle wave folding an unbounded integer coordinate ``p`` into ``[0, free]``."""
  if free == 0:
    return 0
  q = p % (2 * free)
  return q if q <= free else 2 * free - q


def synthetic_sequences(seed: int, num_sequences: int, num_frames: int, *, image_size: int = 64,
                        max_objects: int = 4, min_size: int = 8, max_size: int = 32, noise: float = 0.05,
                        max_speed: int = 3, dim_rate: float = 0.0, dim_factor: float = 0.25) -> Sequences:
  """``num_sequences`` sequences of moving shapes (module docstring, "Sequence mode"), deterministic from ``seed``.

  Frame ``t`` of a sequence places object ``j`` at ``(r(x0 + vx t), r(y0 + vy t))`` (bouncing; module
  docstring) and paints it as `synthetic_scenes` does; then noise is added per frame.

  Args:
    seed: an int ``>= 0`` seeding ``numpy.random.default_rng``.
    num_sequences: ``N >= 1``.
    num_frames: ``T >= 1`` frames per sequence.
    image_size: canvas side ``S >= max_size``.
    max_objects: ``M >= 1``, the most objects per sequence (the padded size of ``boxes``).
    min_size, max_size: object side range in pixels, ``3 <= min_size <= max_size <= image_size``.
    noise: standard deviation ``>= 0`` of the additive Gaussian pixel noise.
    max_speed: an int ``>= 0``: each velocity component is uniform over the integers in
      ``[-max_speed, max_speed]``.
    dim_rate: probability in ``[0, 1]`` that a frame is low-contrast.
    dim_factor: brightness multiplier in ``[0, 1]`` of a low-contrast frame's objects.

  Returns:
    `Sequences`.

  Example:
    >>> s = synthetic_sequences(0, 2, 3, image_size=32, max_objects=2, min_size=6, max_size=10, max_speed=2)
    >>> s.images.shape, s.boxes.shape, bool((s.valid == s.valid[:, :1]).all())
    ((2, 3, 32, 32, 1), (2, 3, 2, 4), True)
  """
  seed = _validation.check_int("seed", seed, lower=0)
  num_sequences = _validation.check_int("num_sequences", num_sequences, lower=1)
  num_frames = _validation.check_int("num_frames", num_frames, lower=1)
  image_size, max_objects, min_size, max_size, noise = _check_canvas(image_size, max_objects, min_size, max_size,
                                                                     noise)
  max_speed = _validation.check_int("max_speed", max_speed, lower=0)
  dim_rate = _validation.check_real("dim_rate", dim_rate, lower=0.0, upper=1.0)
  dim_factor = _validation.check_real("dim_factor", dim_factor, lower=0.0, upper=1.0)
  rng = np.random.default_rng(seed)
  n_, t_, s_, m_ = num_sequences, num_frames, image_size, max_objects
  images = np.zeros((n_, t_, s_, s_, 1), np.float32)
  boxes = np.zeros((n_, t_, m_, 4), np.float32)
  labels = np.zeros((n_, t_, m_), np.int32)
  valid = np.zeros((n_, t_, m_), bool)
  velocities = np.zeros((n_, m_, 2), np.int32)
  dimmed = np.zeros((n_, t_), bool)
  for n in range(n_):
    placed = []  # (x0, y0, w, h, kind, brightness, vx, vy)
    for _ in range(int(rng.integers(1, m_ + 1))):
      kind = int(rng.integers(0, len(SHAPES)))
      w, h = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
      brightness = float(rng.uniform(0.5, 1.0))
      vx, vy = (int(v) for v in rng.integers(-max_speed, max_speed + 1, size=2))
      for _attempt in range(50):
        x0, y0 = int(rng.integers(0, s_ - w + 1)), int(rng.integers(0, s_ - h + 1))
        if not _overlaps((x0, y0, x0 + w, y0 + h), [(p[0], p[1], p[0] + p[2], p[1] + p[3]) for p in placed]):
          break
      else:
        continue
      placed.append((x0, y0, w, h, kind, brightness, vx, vy))
    dimmed[n] = rng.uniform(size=t_) < dim_rate
    for j, (x0, y0, w, h, kind, brightness, vx, vy) in enumerate(placed):
      m = _mask(kind, w, h)
      rows, cols = np.nonzero(m)
      tight = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float32)
      labels[n, :, j], valid[n, :, j], velocities[n, j] = kind, True, (vx, vy)
      for t in range(t_):
        x, y = _bounce(x0 + vx * t, s_ - w), _bounce(y0 + vy * t, s_ - h)
        images[n, t, y:y + h, x:x + w, 0][m] = brightness * (dim_factor if dimmed[n, t] else 1.0)
        boxes[n, t, j] = tight + np.array([x, y, x, y], np.float32)
  if noise > 0:
    images += rng.normal(0.0, noise, images.shape).astype(np.float32)
  return Sequences(np.clip(images, 0.0, 1.0), boxes, labels, valid, velocities, dimmed)
