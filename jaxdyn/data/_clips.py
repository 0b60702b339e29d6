"""Synthetic action clips: a handwritten digit moving across a small canvas, classed by its motion.

Each clip is ``num_frames`` frames of a ``size x size`` canvas (one channel, values in [0, 1] plus
noise) holding one 8x8 digit of scikit-learn's ``load_digits`` (1,797 images shipped in the wheel, no
network). The digit starts at a uniformly random position and moves in a straight line with velocity
``speed * d_y`` pixels per frame, ``d_y`` one of the 8 compass directions

    y:    0   1    2   3    4   5    6   7
    d_y:  E   SE   S   SW   W   NW   N   NE      ((row, col) steps (0,1), (1,1), (1,0), ... (-1,1))

and ``speed`` drawn from {1, 2}; the canvas is a torus (the digit wraps around the edges), so every
position is equally likely in every frame and no single frame tells the class: only the motion does.
The digit's identity is random and carries no label information.

Frame pre-training (``clip_frames``): single frames from the same generator (another seed), labelled
by WHERE the digit is, the cell of its top-left corner on a 4 x 4 grid of the canvas
(``(row // (size / 4)) * 4 + col // (size / 4)``, 16 classes). A spatial encoder trained on it
learns to locate the digit, a frame-level skill related to but not the same as the clip task, as
image pre-training is for action recognition.

Everything is a deterministic function of the seed (NumPy's ``default_rng``), generated in well
under a second, so nothing is cached on disk.
"""

from __future__ import annotations

import numpy as np

DIRECTIONS = np.array([(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)], np.int64)
NUM_FRAMES, SIZE, GRID = 8, 16, 4
NUM_TRAIN, NUM_EVAL = 4000, 1000
NOISE = 0.1
# The seeds of the named datasets' splits (train, eval), one pair per dataset.
CLIP_SEEDS, FRAME_SEEDS = (0, 1), (2, 3)


def _digits() -> np.ndarray:
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  return (load_digits().images / 16.0).astype(np.float32)  # (1797, 8, 8) in [0, 1]


def _render(digits: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
  """Canvases ``(n, t, size, size)`` with ``digits[i]`` at top-left ``(rows[i, t], cols[i, t])`` (wrapping)."""
  n, t = rows.shape
  k = digits.shape[-1]
  offs = np.arange(k)
  r = (rows[:, :, None, None] + offs[None, None, :, None]) % size  # (n, t, k, 1)
  c = (cols[:, :, None, None] + offs[None, None, None, :]) % size  # (n, t, 1, k)
  canvas = np.zeros((n, t, size, size), np.float32)
  canvas[np.arange(n)[:, None, None, None], np.arange(t)[None, :, None, None], r, c] = digits[:, None]
  return canvas


def make_clips(num: int, *, seed: int, num_frames: int = NUM_FRAMES, size: int = SIZE, noise: float = NOISE
               ) -> dict[str, np.ndarray]:
  """``num`` clips: ``x`` (num, num_frames, size, size, 1) float32, ``y`` (num,) int32 in [0, 8).

  Also returns the per-frame top-left positions ``rows``, ``cols`` (num, num_frames) int32.
  """
  rng = np.random.default_rng(seed)
  digits = _digits()
  which = rng.integers(len(digits), size=num)
  y = rng.integers(len(DIRECTIONS), size=num)
  speed = rng.integers(1, 3, size=num)
  r0, c0 = rng.integers(size, size=(2, num))
  t = np.arange(num_frames)
  rows = (r0[:, None] + (speed * DIRECTIONS[y, 0])[:, None] * t) % size
  cols = (c0[:, None] + (speed * DIRECTIONS[y, 1])[:, None] * t) % size
  x = _render(digits[which], rows, cols, size)
  x += noise * rng.standard_normal(x.shape, dtype=np.float32)
  return {"x": x[..., None], "y": y.astype(np.int32), "rows": rows.astype(np.int32), "cols": cols.astype(np.int32)}


def make_frames(num: int, *, seed: int, size: int = SIZE, noise: float = NOISE, grid: int = GRID
                ) -> dict[str, np.ndarray]:
  """``num`` single frames ``x`` (num, size, size, 1), labelled by the digit's cell on a ``grid x grid`` grid.

  Also returns the digit's top-left ``rows``, ``cols`` (num,) int32.
  """
  rng = np.random.default_rng(seed)
  digits = _digits()
  which = rng.integers(len(digits), size=num)
  rows, cols = rng.integers(size, size=(2, num, 1))
  x = _render(digits[which], rows, cols, size)[:, 0]
  x += noise * rng.standard_normal(x.shape, dtype=np.float32)
  cell = size // grid
  y = (rows[:, 0] // cell) * grid + cols[:, 0] // cell
  return {"x": x[..., None], "y": y.astype(np.int32), "rows": rows[:, 0].astype(np.int32),
          "cols": cols[:, 0].astype(np.int32)}
