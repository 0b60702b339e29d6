"""Training-time data augmentation for image batches, drawn with NumPy on the host.

The CIFAR recipes of the papers jaxdyn reproduces (SLTT, RankMixup, SSVI, multi-sample dropout) train
with the standard CIFAR augmentation: zero-pad 4 pixels, crop back to the input size at a uniformly
random offset, and flip horizontally with probability 1/2 (He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016, https://arxiv.org/abs/1512.03385, Sec. 4.2). `train_pipeline` applies a named
augmentation to each batch with a generator seeded by (seed, process, step), so a run stays
deterministic and resumes exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jaxdyn import _validation

__all__ = ["AUGMENTATIONS", "get_augmentation", "random_crop_flip"]

Augmentation = Callable[[np.random.Generator, np.ndarray], np.ndarray]


def random_crop_flip(rng: np.random.Generator, x: np.ndarray, *, padding: int = 4,
                     flip: bool = True) -> np.ndarray:
  """Random crop after zero padding, and a random horizontal flip, for each image of an NHWC batch.

  out[b, i, j] = pad(x)[b, dy_b + i, c_b(j)] with dy_b, dx_b ~ U{0, ..., 2p} and c_b(j) = dx_b + j, or
  dx_b + W - 1 - j when image b is flipped (probability 1/2). p = 0 with ``flip=False`` is the identity.

  Args:
    rng: the generator to draw offsets and flips from.
    x: ``(B, H, W, C)`` images.
    padding: p >= 0, the zero padding on each side before cropping (4 for CIFAR).
    flip: also flip horizontally at random.

  Returns:
    The augmented batch, shape and dtype of ``x`` (an empty batch gives an empty batch; values,
    NaN included, are moved, never changed).

  Example:
    >>> import numpy as np
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    >>> out = random_crop_flip(np.random.default_rng(0), x, padding=1)
    >>> out.shape, bool(np.isin(out[out != 0], x).all())
    ((1, 4, 4, 1), True)

  References:
    He et al., CVPR 2016, https://arxiv.org/abs/1512.03385 (Sec. 4.2, the CIFAR augmentation).
  """
  if not isinstance(rng, np.random.Generator):
    raise TypeError(f"rng: must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
  x = np.asarray(x)
  if x.ndim != 4:
    raise ValueError(f"x: random_crop_flip needs an NHWC image batch (B, H, W, C), got shape {x.shape}")
  padding = _validation.check_int("padding", padding, lower=0)
  b, h, w, _ = x.shape
  padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  rows = rng.integers(0, 2 * padding + 1, size=b)[:, None] + np.arange(h)  # (B, H)
  cols = rng.integers(0, 2 * padding + 1, size=b)[:, None] + np.arange(w)  # (B, W)
  if flip:
    flipped = rng.random(b) < 0.5
    cols = np.where(flipped[:, None], cols[:, ::-1], cols)
  return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _flip_only(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
  return random_crop_flip(rng, x, padding=0, flip=True)


_AUGMENTATIONS: dict[str, Augmentation] = {
    "crop_flip": random_crop_flip,
    "flip": _flip_only,
}
AUGMENTATIONS = tuple(_AUGMENTATIONS)


def get_augmentation(name: str) -> Augmentation:
  """The augmentation ``fn(rng, x) -> x`` called ``name`` (one of `AUGMENTATIONS`)."""
  if not isinstance(name, str) or name not in _AUGMENTATIONS:
    raise ValueError(f"name: must be an augmentation in {', '.join(AUGMENTATIONS)}, got {name!r}")
  return _AUGMENTATIONS[name]
