"""Crafted distribution shifts: augmentation families, the augmented validation set, k-fold over families, edges.

Efthymiadis, Tolias, Chum, "Crafting Distribution Shifts for Validation and Training in Single Source Domain
Generalization", WACV 2025, https://arxiv.org/abs/2409.19774; authors' code
https://github.com/NikosEfth/crafting-shifts (``create_imgaug_datasets.py``, ``augmentations.py``, the
``experiments/yaml_PACS_imgaug_canny-{first,second,all}.yaml`` configurations).

The paper validates a single-source model on copies of the source validation images, one copy per
augmentation family (ten families of imgaug augmenters: arithmetic, artistic, blur, color, contrast,
convolutional, edges, geometric, segmentation, weather), and trains with the families of the other folds of a
k-fold split over families (the authors' code: k = 2, the first five families against the last five), so the
validation families are never seen in training. Its recognition method adds Canny edge maps (Sobel magnitude,
non-maximum suppression (thinning), hysteresis thresholds 0.5 T and 1.5 T around Otsu's threshold T of the
magnitude) as inputs, which raise shape bias.

What follows which source:

- The ten families, and within each family the list of operations with their parameter ranges, follow
  ``create_imgaug_datasets.py`` (the paper's text only names the families). As there, an image's family copy
  applies ONE operation drawn uniformly from the family's list, its parameters drawn from the ranges
  (``random.choice`` between a low and a high range where the code does so, e.g. gamma in (0.1, 0.3) or
  (1.8, 2.0)). The operations are re-implemented here as pure JAX functions on float images in [0, 1]
  (imgaug works on uint8: additive amounts are divided by 255) and clipped to [0, 1] after each operation.
  Lengths in pixels (blur sigmas and kernel sizes, elastic displacements, cutout sizes) are given in the
  code for images resized to 227 pixels; they are scaled here by ``min(H, W) / 227`` (kernel radii at least 1),
  so an operation changes a small image as it changes a 227-pixel one; counts (Voronoi grid cells, superpixel
  segments) are not scaled but capped at a quarter of the pixels.
- Left out (no pure-array counterpart worth its size here, or meaningless for grayscale): JPEG compression,
  Dropout2d, the coarse salt/pepper variants, piecewise affine, polar warping, jigsaw, bilateral and mean-shift
  blur, the hue/saturation operations and the colour temperature (the "color" family keeps the brightness,
  per-channel gain, grayscale and quantization operations), CLAHE (replaced by global histogram equalization,
  its unclipped single-tile form), the imgaug mean-shift step of the cartoon filter (a smoothing plus
  quantization stands for it). Each family keeps at least one operation; ``CRAFTED_FAMILY_OPERATIONS`` lists them.
- The k-fold split follows the code: contiguous chunks of the family list in its order (``np.array_split``),
  which for k = 2 and the default order is the authors' first / second fold.
- The edge map follows ``augmentations.Canny`` with its validation/test settings (sigma 1, Otsu, hysteresis
  factors 0.5 and 1.5, no perturbation); the randomised training form (sigma drawn from {0, 1, 2}, one of five
  threshold methods, threshold noise) is not reproduced. Borders are mirrored (``scipy.ndimage``'s
  ``"reflect"``) for the Gaussian and the Sobel filters.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates

from jaxdyn._validation import check_finite, check_int, check_key, check_nonempty, check_real, is_concrete

CRAFTED_FAMILIES: tuple[str, ...] = ("arithmetic", "artistic", "blur", "color", "contrast", "convolutional",
                                          "edges", "geometric", "segmentation", "weather")
"""The paper's ten augmentation families, in the authors' order (``create_imgaug_datasets.py``)."""

CRAFTED_FAMILY_OPERATIONS: dict[str, tuple[str, ...]] = {
    "arithmetic": ("add", "add_elementwise", "gaussian_noise", "laplace_noise", "poisson_noise", "multiply",
                   "multiply_elementwise", "cutout", "dropout", "coarse_dropout", "salt_and_pepper", "salt",
                   "pepper", "invert", "solarize"),
    "artistic": ("cartoon",),
    "blur": ("gaussian_blur", "average_blur", "median_blur", "motion_blur"),
    "color": ("brightness_add", "brightness_multiply_add", "brightness_multiply", "channel_gains", "grayscale",
              "uniform_quantization", "quantize_to_bits"),
    "contrast": ("gamma", "sigmoid", "log", "linear", "histogram_equalization"),
    "convolutional": ("laplacian", "sharpen", "emboss", "edge_detect", "directed_edge_detect"),
    "edges": ("blur_canny",),
    "geometric": ("scale", "translate", "rotate", "shear", "perspective", "elastic"),
    "segmentation": ("superpixels", "regular_grid_voronoi"),
    "weather": ("snowy_landscape", "clouds", "fog", "snowflakes", "rain"),
}
"""The operations implemented for each family (imgaug's augmenter each stands for, in snake case)."""

_REFERENCE_SIZE = 227.0  # the authors resize the shorter side to 227 pixels before augmenting
_LUMA = (0.2989, 0.5870, 0.1140)  # augmentations.rgb2gray


# --- argument checks -------------------------------------------------------------------------------------------

def _check_images(name: str, images) -> jax.Array:
  """Float images (N, H, W, C), C in {1, 3}, H, W >= 3, values checked finite (eagerly)."""
  if not hasattr(images, "shape") or not hasattr(images, "dtype"):
    raise TypeError(f"{name}: must be an array of images (N, H, W, C), got {type(images).__name__}")
  if np.ndim(images) != 4:
    raise ValueError(f"{name}: must have shape (N, H, W, C), got shape {np.shape(images)}")
  n, h, w, c = np.shape(images)
  if c not in (1, 3):
    raise ValueError(f"{name}: must have 1 or 3 channels (N, H, W, C), got shape {np.shape(images)}")
  if h < 3 or w < 3:
    raise ValueError(f"{name}: images must be at least 3 x 3 pixels, got shape {np.shape(images)}")
  check_nonempty(name, images, what="images")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(f"{name}: must be floating images with values in [0, 1], got dtype {images.dtype}")
  check_finite(name, images)
  x = jnp.asarray(images)
  return x.astype(jnp.float32) if x.dtype in (jnp.float16, jnp.bfloat16) else x


def _check_families(name: str, families) -> tuple[str, ...]:
  if isinstance(families, str) or not isinstance(families, Sequence):
    raise TypeError(f"{name}: must be a sequence of family names from {list(CRAFTED_FAMILIES)}, got "
                    f"{families!r}")
  families = tuple(families)
  if not families:
    raise ValueError(f"{name}: must name at least one family, got {families!r}")
  for f in families:
    if not isinstance(f, str) or f not in CRAFTED_FAMILIES:
      raise ValueError(f"{name}: must be names from {list(CRAFTED_FAMILIES)}, got {f!r}")
  if len(set(families)) != len(families):
    raise ValueError(f"{name}: must not repeat a family, got {list(families)}")
  return families


def _check_keys(name: str, keys, n: int) -> jax.Array:
  check_key(name, keys)
  typed = jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
  shape = np.shape(keys) if typed else np.shape(keys)[:-1]
  if tuple(shape) != (n,):
    raise ValueError(f"{name}: must hold one key per image, shape ({n},), got key-array shape {tuple(shape)}")
  return keys if typed else jax.random.wrap_key_data(keys)


# --- filters ---------------------------------------------------------------------------------------------------

def _gray(img: jax.Array) -> jax.Array:
  """(H, W, C) -> (H, W): luma for RGB (``augmentations.rgb2gray``), the channel itself for gray."""
  if img.shape[-1] == 1:
    return img[..., 0]
  return img @ jnp.asarray(_LUMA, img.dtype)


def _correlate(img: jax.Array, kernel: jax.Array, mode: str = "symmetric") -> jax.Array:
  """2-D correlation (``scipy.ndimage.correlate``) of each channel of (H, W, C) with an odd (kh, kw) kernel.

  ``mode="symmetric"`` is scipy's ``"reflect"`` border (d c b a | a b c d); ``"constant"`` pads zeros. The kernel
  may be traced (a per-image random kernel under ``vmap``).
  """
  kh, kw = kernel.shape
  rh, rw = kh // 2, kw // 2
  x = jnp.pad(img, ((rh, rh), (rw, rw), (0, 0)), mode=mode)
  c = img.shape[-1]
  lhs = jnp.transpose(x, (2, 0, 1))[:, None]  # (C, 1, H+2rh, W+2rw): channels as a batch
  rhs = kernel.astype(img.dtype)[None, None]
  out = jax.lax.conv_general_dilated(lhs, rhs, (1, 1), "VALID")
  return jnp.transpose(out[:, 0], (1, 2, 0)).reshape(img.shape[:2] + (c,))


def _gaussian_kernel(sigma, radius: int) -> jax.Array:
  """(2r+1, 2r+1) normalised Gaussian; sigma -> 0 gives the identity kernel."""
  t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  s = jnp.maximum(jnp.asarray(sigma, jnp.float32), 1e-3)
  g = jnp.exp(-0.5 * (t / s) ** 2)
  g = g / g.sum()
  return jnp.outer(g, g)


def _blur(img: jax.Array, sigma, max_sigma: float) -> jax.Array:
  radius = max(1, int(math.ceil(4.0 * max_sigma)))  # scipy / skimage truncate at 4 sigma
  radius = min(radius, max(1, min(img.shape[:2]) - 1))
  return _correlate(img, _gaussian_kernel(sigma, radius))


_SOBEL_D = np.array([-1.0, 0.0, 1.0], np.float32)
_SOBEL_S = np.array([1.0, 2.0, 1.0], np.float32)


def _sobel_xy(gray: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(H, W) -> (gx, gy): ``scipy.ndimage.sobel`` along axis 1 (columns, x) and axis 0 (rows, y), reflect border."""
  g = gray[..., None]
  gx = _correlate(g, jnp.asarray(np.outer(_SOBEL_S, _SOBEL_D)))[..., 0]
  gy = _correlate(g, jnp.asarray(np.outer(_SOBEL_D, _SOBEL_S)))[..., 0]
  return gx, gy


def _nms(mag: jax.Array, gx: jax.Array, gy: jax.Array) -> jax.Array:
  """Canny's thinning of one (H, W) magnitude: keep a pixel that is >= both neighbours along its gradient."""
  theta = jnp.mod(jnp.degrees(jnp.arctan2(gy, gx)), 180.0)
  p = jnp.pad(mag, 1)  # zeros outside the image
  h, w = mag.shape

  def at(dr, dc):
    return p[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]

  horizontal = (theta < 22.5) | (theta >= 157.5)  # gradient along x: compare left / right
  diagonal = (theta >= 22.5) & (theta < 67.5)  # gradient along (+x, +y): rows and columns increase together
  vertical = (theta >= 67.5) & (theta < 112.5)
  n1 = jnp.where(horizontal, at(0, -1), jnp.where(diagonal, at(-1, -1), jnp.where(vertical, at(-1, 0), at(-1, 1))))
  n2 = jnp.where(horizontal, at(0, 1), jnp.where(diagonal, at(1, 1), jnp.where(vertical, at(1, 0), at(1, -1))))
  return jnp.where((mag >= n1) & (mag >= n2) & (mag > 0), mag, 0.0)


def _otsu(values: jax.Array, bins: int = 256) -> jax.Array:
  """Otsu's threshold of a flat array (``skimage.filters.threshold_otsu``: 256 bins, the best bin centre)."""
  lo, hi = values.min(), values.max()
  width = jnp.maximum(hi - lo, 1e-12) / bins
  idx = jnp.clip(jnp.floor((values - lo) / width), 0, bins - 1).astype(jnp.int32)
  counts = jnp.zeros(bins, values.dtype).at[idx].add(1.0)
  centres = lo + (jnp.arange(bins, dtype=values.dtype) + 0.5) * width
  w0 = jnp.cumsum(counts)
  w1 = jnp.cumsum(counts[::-1])[::-1]
  m0 = jnp.cumsum(counts * centres) / jnp.maximum(w0, 1e-12)
  m1 = (jnp.cumsum((counts * centres)[::-1]) / jnp.maximum(w1[::-1], 1e-12))[::-1]
  between = w0[:-1] * w1[1:] * (m0[:-1] - m1[1:]) ** 2
  return jnp.where(hi > lo, centres[jnp.argmax(between)], lo)


def _canny(gray: jax.Array, sigma, max_sigma: float, low: float, high: float) -> jax.Array:
  """One (H, W) image -> its binary Canny edge map (float 0 / 1), thresholds relative to Otsu's."""
  smooth = _blur(gray[..., None], sigma, max_sigma)[..., 0]
  gx, gy = _sobel_xy(smooth)
  mag = jnp.hypot(gx, gy)
  thin = _nms(mag, gx, gy)
  t = _otsu(mag.ravel())
  weak = (thin >= low * t) & (thin > 0)
  strong = (thin >= high * t) & (thin > 0)

  def grow(state):
    edges, _ = state
    nb = jax.lax.reduce_window(jnp.pad(edges, 1), False, jax.lax.bitwise_or, (3, 3), (1, 1), "VALID")
    new = weak & nb | edges
    return new, jnp.any(new != edges)

  edges, _ = jax.lax.while_loop(lambda s: s[1], grow, (strong, jnp.array(True)))
  return edges.astype(gray.dtype)


# --- public: edges -------------------------------------------------------------------------------------------

@jax.jit
def _sobel_batch(x):
  return jax.vmap(lambda im: jnp.hypot(*_sobel_xy(_gray(im)))[..., None])(x)


def crafted_sobel_magnitude(images: jax.Array) -> jax.Array:
  r"""The Sobel gradient magnitude of each image's gray level: the edge-strength input.

  .. math:: g_x = I \star (s d^\top),\quad g_y = I \star (d s^\top),\quad |g| = \sqrt{g_x^2 + g_y^2},
     \qquad d = (-1, 0, 1),\ s = (1, 2, 1),

  with ``\star`` correlation and mirrored borders, as ``scipy.ndimage.sobel`` (the authors' ``Canny`` computes
  this magnitude on the smoothed image to set its thresholds). RGB images are reduced to gray with the
  authors' luma weights (0.2989, 0.5870, 0.1140) first.

  Args:
    images: float images (N, H, W, C), C in {1, 3}, H, W >= 3.

  Returns:
    (N, H, W, 1) magnitudes (>= 0). NaN in an image gives NaN there under ``jit``; eagerly it is refused.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.zeros((1, 4, 4, 1)).at[:, :, 2:].set(1.0)  # a vertical step edge
    >>> crafted_sobel_magnitude(x)[0, 0, :, 0].tolist()
    [0.0, 4.0, 4.0, 0.0]
  """
  x = _check_images("images", images)
  return _sobel_batch(x)


def crafted_thin_edges(magnitude: jax.Array, gx: jax.Array, gy: jax.Array) -> jax.Array:
  r"""Canny's non-maximum suppression: the thinning step of the edge map.

  A pixel keeps its magnitude when it is at least each of its two neighbours along the gradient direction
  ``theta = atan2(g_y, g_x)`` quantised to 0, 45, 90 or 135 degrees (x along columns, y along rows; pixels
  outside the image count as 0), and is set to 0 otherwise (also where the magnitude is 0). A ridge several
  pixels wide across the gradient becomes one pixel wide.

  Args:
    magnitude: (N, H, W) gradient magnitudes.
    gx: (N, H, W) derivative along columns.
    gy: (N, H, W) derivative along rows.

  Returns:
    (N, H, W): the magnitude on the thinned ridge, 0 elsewhere; NaN where an input is not finite.

  Example:
    >>> import jax.numpy as jnp
    >>> m = jnp.array([[[1.0, 3.0, 2.0, 0.0]]])  # one row; the gradient is along x
    >>> crafted_thin_edges(m, m, jnp.zeros_like(m)).tolist()
    [[[0.0, 3.0, 0.0, 0.0]]]
  """
  for name, v in (("magnitude", magnitude), ("gx", gx), ("gy", gy)):
    if not hasattr(v, "shape"):
      raise TypeError(f"{name}: must be an array (N, H, W), got {type(v).__name__}")
    if np.ndim(v) != 3:
      raise ValueError(f"{name}: must have shape (N, H, W), got shape {np.shape(v)}")
    check_finite(name, v)
  if np.shape(gx) != np.shape(magnitude):
    raise ValueError(f"gx: must have the shape of magnitude, got {np.shape(gx)} and {np.shape(magnitude)}")
  if np.shape(gy) != np.shape(magnitude):
    raise ValueError(f"gy: must have the shape of magnitude, got {np.shape(gy)} and {np.shape(magnitude)}")
  check_nonempty("magnitude", magnitude, what="images")
  m, a, b = (jnp.asarray(v, jnp.result_type(float)) for v in (magnitude, gx, gy))
  out = jax.vmap(_nms)(m, a, b)
  return jnp.where(jnp.isfinite(m) & jnp.isfinite(a) & jnp.isfinite(b), out, jnp.nan)


@functools.partial(jax.jit, static_argnames=("max_sigma",))
def _edge_batch(x, sigma, low, high, max_sigma):
  def one(im):
    g = _gray(im)
    e = _canny(g, sigma, max_sigma, low, high)
    return jnp.where(jnp.all(jnp.isfinite(g)), e, jnp.nan)[..., None]

  return jax.vmap(one)(x)


def crafted_edge_map(images: jax.Array, *, sigma: float = 1.0, low: float = 0.5, high: float = 1.5) -> jax.Array:
  r"""The thinned binary edge map (Canny) of each image: the shape-biased input of the paper's method.

  Gaussian smoothing (``sigma``), Sobel gradients, non-maximum suppression (`crafted_thin_edges`), then hysteresis:
  with T Otsu's threshold of the smoothed image's Sobel magnitude, pixels of the thinned magnitude
  ``>= high * T`` are edges, and pixels ``>= low * T`` are edges when 8-connected to an edge (grown to a fixed
  point). Defaults are the authors' validation/test setting (``augmentations.Canny`` with sigma 1, Otsu,
  ``hyst_par = (0.5, 1.5)``); the authors then invert the map (black edges on white) before the network.

  Args:
    images: float images (N, H, W, C), C in {1, 3}, H, W >= 3.
    sigma: smoothing standard deviation in pixels, in [0, 10] (0: no smoothing).
    low: lower hysteresis factor, > 0.
    high: upper hysteresis factor, >= low.

  Returns:
    (N, H, W, 1) float 0 / 1 edge maps. A non-finite pixel makes that image all NaN under ``jit``.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.zeros((1, 6, 6, 1)).at[:, 1:5, 1:5].set(1.0)  # a bright square
    >>> int(crafted_edge_map(x, sigma=0.0).sum()) > 0
    True
  """
  x = _check_images("images", images)
  sigma = check_real("sigma", sigma, lower=0.0, upper=10.0)
  low = check_real("low", low, lower=0.0, lower_open=True)
  high = check_real("high", high, lower=0.0, lower_open=True)
  if is_concrete(low) and is_concrete(high) and high < low:
    raise ValueError(f"high: must be >= low ({low}), got {high}")
  max_sigma = float(sigma) if is_concrete(sigma) else 10.0
  return _edge_batch(x, sigma, low, high, max_sigma)


# --- the augmentation operations ---------------------------------------------------------------------------------
# Each op is op(key, img) -> img on one (H, W, C) image in [0, 1]; parameters follow create_imgaug_datasets.py
# (uint8 amounts / 255, lengths * scale). `_two` is the code's random.choice between a low and a high range.

def _u(key, lo, hi, shape=()):
  return jax.random.uniform(key, shape, minval=lo, maxval=hi)


def _two(key, low_range, high_range, shape=()):
  kc, kv = jax.random.split(key)
  lo = jnp.where(jax.random.bernoulli(kc), low_range[0], high_range[0])
  hi = jnp.where(jax.random.bernoulli(kc), low_range[1], high_range[1])
  return lo + (hi - lo) * jax.random.uniform(kv, shape)


def _signed(key, lo, hi, shape=()):
  """A value from (-hi, -lo) or (lo, hi) (the code's choice between a negative and a positive range)."""
  return _two(key, (-hi, -lo), (lo, hi), shape)


def _blend3(img, effect, alpha):
  """(1 - alpha) * identity + alpha * effect, as imgaug's 3 x 3 convolution augmenters build their matrix."""
  ident = jnp.zeros((3, 3)).at[1, 1].set(1.0)
  return _correlate(img, (1.0 - alpha) * ident + alpha * effect)


def _warp(img, inverse):
  """Resample (H, W, C) at ``inverse(rows, cols) -> (rows_in, cols_in)`` (bilinear, zeros outside)."""
  h, w, _ = img.shape
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  r_in, c_in = inverse(rows, cols)
  return jnp.stack([map_coordinates(img[..., k], [r_in, c_in], order=1, mode="constant", cval=0.0)
                    for k in range(img.shape[-1])], axis=-1)


def _upsample_noise(key, img_shape, cells):
  """A smooth random field in [0, 1] of shape (H, W, 1): uniform noise on a cells x cells grid, bilinear."""
  h, w, _ = img_shape
  coarse = jax.random.uniform(key, (cells, cells, 1))
  return jax.image.resize(coarse, (h, w, 1), "bilinear")


def _cell_means(img, assign, num_cells, replace):
  """Every pixel of a cell whose ``replace`` is True becomes the cell's mean colour."""
  flat = img.reshape(-1, img.shape[-1])
  sums = jax.ops.segment_sum(flat, assign, num_cells)
  counts = jax.ops.segment_sum(jnp.ones(flat.shape[0]), assign, num_cells)
  means = sums / jnp.maximum(counts, 1.0)[:, None]
  out = jnp.where(replace[assign][:, None], means[assign], flat)
  return out.reshape(img.shape)


def _operations(shape) -> dict[str, list[Callable]]:
  """The operations of every family for images of ``shape`` (H, W, C) (lengths scale with the image)."""
  h, w, c = shape
  size = min(h, w)
  s = size / _REFERENCE_SIZE
  npix = h * w

  def radius(pixels_at_227):
    return max(1, min(size - 1, int(round(pixels_at_227 * s / 2))))

  # arithmetic ---------------------------------------------------------------------------------------------
  def add(k, x):
    return x + _signed(k, 50 / 255, 200 / 255)

  def add_elementwise(k, x):
    k1, k2 = jax.random.split(k)
    sign = jnp.where(jax.random.bernoulli(k1), 1.0, -1.0)
    return x + sign * _u(k2, 50 / 255, 200 / 255, x.shape)

  def per_channel(k, x):
    """imgaug's per_channel=0.5: for half of the images, a separate draw per channel."""
    return jax.random.bernoulli(k)

  def gaussian_noise(k, x):
    k1, k2, k3 = jax.random.split(k, 3)
    scale = jnp.where(per_channel(k3, x), _u(k1, 50, 150, (c,)), _u(k1, 50, 150)) / 255
    return x + scale * jax.random.normal(k2, x.shape)

  def laplace_noise(k, x):
    k1, k2, k3 = jax.random.split(k, 3)
    scale = jnp.where(per_channel(k3, x), _u(k1, 50, 150, (c,)), _u(k1, 50, 150)) / 255
    return x + scale * jax.random.laplace(k2, x.shape)

  def poisson_noise(k, x):  # imgaug: a random sign times Poisson(lam); lam >= 40: its rounded normal approximation
    k1, k2, k3 = jax.random.split(k, 3)
    lam = _u(k1, 40, 60)
    sign = jnp.where(jax.random.bernoulli(k3, 0.5, x.shape), 1.0, -1.0)
    draw = jnp.maximum(0.0, jnp.round(lam + jnp.sqrt(lam) * jax.random.normal(k2, x.shape)))
    return x + sign * draw / 255

  def multiply(k, x):
    k1, k2 = jax.random.split(k)
    return x * jnp.where(per_channel(k2, x), _u(k1, 2, 4, (c,)), _u(k1, 2, 4))

  def multiply_elementwise(k, x):
    return x * _u(k, 2, 4, x.shape)

  def cutout(k, x):  # 5..10 squares of side 0.2 of the image, filled with 0
    k1, k2, k3 = jax.random.split(k, 3)
    n = jax.random.randint(k1, (), 5, 11)
    half = 0.1 * size
    centres = jax.random.uniform(k2, (10, 2)) * jnp.array([h, w], jnp.float32)
    rows, cols = jnp.meshgrid(jnp.arange(h) + 0.5, jnp.arange(w) + 0.5, indexing="ij")
    inside = ((jnp.abs(rows[None] - centres[:, 0, None, None]) <= half)
              & (jnp.abs(cols[None] - centres[:, 1, None, None]) <= half) & (jnp.arange(10) < n)[:, None, None])
    del k3
    return jnp.where(inside.any(0)[..., None], 0.0, x)

  def dropout(k, x):
    k1, k2 = jax.random.split(k)
    p = _u(k1, 0.2, 0.5)
    return jnp.where(jax.random.bernoulli(k2, p, x.shape[:2] + (1,)), 0.0, x)

  max_grid = max(2, int(round(size * 0.05)))

  def coarse_dropout(k, x):  # the mask drawn on a grid of size_percent (0.02 .. 0.05) of the image, >= 2 cells
    k1, k2, k3 = jax.random.split(k, 3)
    p = _u(k1, 0.2, 0.5)
    cells = jnp.maximum(2.0, jnp.round(size * _u(k2, 0.02, 0.05)))
    grid = jax.random.bernoulli(k3, p, (max_grid, max_grid))
    ri = jnp.minimum(jnp.floor(jnp.arange(h) * cells / h), max_grid - 1).astype(jnp.int32)
    ci = jnp.minimum(jnp.floor(jnp.arange(w) * cells / w), max_grid - 1).astype(jnp.int32)
    return jnp.where(grid[ri][:, ci][..., None], 0.0, x)

  def salt_and_pepper(k, x):
    k1, k2 = jax.random.split(k)
    hit = jax.random.bernoulli(k1, 0.5, x.shape)
    return jnp.where(hit, jnp.where(jax.random.bernoulli(k2, 0.5, x.shape), 1.0, 0.0), x)

  def salt(k, x):
    return jnp.where(jax.random.bernoulli(k, 0.5, x.shape), 1.0, x)

  def pepper(k, x):
    return jnp.where(jax.random.bernoulli(k, 0.5, x.shape), 0.0, x)

  def invert(k, x):  # Invert(0.5, per_channel=True)
    return jnp.where(jax.random.bernoulli(k, 0.5, (c,)), 1.0 - x, x)

  def solarize(k, x):  # Solarize(0.5, threshold=(32, 128)): invert values above the threshold, half the time
    k1, k2 = jax.random.split(k)
    t = _u(k1, 32 / 255, 128 / 255)
    return jnp.where(jax.random.bernoulli(k2) & (x > t), 1.0 - x, x)

  # artistic -----------------------------------------------------------------------------------------------
  def cartoon(k, x):  # smoothing, saturation 2 (contrast here), 4-level quantization, dark Sobel edges on top
    del k
    smooth = _blur(x, 9 * s / 3, 9 * s / 3)
    boosted = jnp.clip(0.5 + 2.0 * (smooth - smooth.mean()), 0.0, 1.0)
    quant = (jnp.minimum(jnp.floor(boosted * 4), 3) + 0.5) / 4
    gx, gy = _sobel_xy(_gray(smooth))
    mag = jnp.hypot(gx, gy)
    return jnp.where((mag > _otsu(mag.ravel()))[..., None], 0.0, quant)

  # blur -----------------------------------------------------------------------------------------------------
  def gaussian_blur(k, x):
    return _blur(x, _u(k, 5.0, 7.0) * s, 7.0 * s)

  r_avg = radius(15)

  def average_blur(k, x):  # k in [9, 15] pixels at 227, a box of that size
    kr = jnp.maximum(1.0, jnp.round(_u(k, 9, 15) * s / 2))
    t = jnp.arange(-r_avg, r_avg + 1)
    box = ((jnp.abs(t)[:, None] <= kr) & (jnp.abs(t)[None] <= kr)).astype(jnp.float32)
    return _correlate(x, box / box.sum())

  r_med = radius(12)

  def median_blur(k, x):  # k in [9, 15] at 227: the median over a (2r+1)^2 window of the middle size
    del k
    p = jnp.pad(x, ((r_med, r_med), (r_med, r_med), (0, 0)), mode="symmetric")
    win = jnp.stack([p[i:i + h, j:j + w] for i in range(2 * r_med + 1) for j in range(2 * r_med + 1)])
    return jnp.median(win, axis=0)

  r_mot = radius(15)

  def motion_blur(k, x):  # a line of length 15 (at 227) through the centre, random angle
    a = _u(k, 0.0, 2 * jnp.pi)
    t = jnp.arange(-r_mot, r_mot + 1, dtype=jnp.float32)
    yy, xx = jnp.meshgrid(t, t, indexing="ij")
    along = xx * jnp.cos(a) + yy * jnp.sin(a)
    across = -xx * jnp.sin(a) + yy * jnp.cos(a)
    kern = jnp.maximum(0.0, 1.0 - jnp.abs(across)) * (jnp.abs(along) <= r_mot)
    return _correlate(x, kern / kern.sum())

  # color (gray-compatible subset) -----------------------------------------------------------------------------
  def brightness_add(k, x):
    return x + _signed(k, 50 / 255, 200 / 255)

  def brightness_multiply_add(k, x):
    k1, k2 = jax.random.split(k)
    return x * _two(k1, (0.1, 0.3), (1.8, 2.0)) + _signed(k2, 50 / 255, 200 / 255)

  def brightness_multiply(k, x):
    return x * _two(k, (0.1, 0.3), (1.8, 2.0))

  def channel_gains(k, x):  # MultiplyHueAndSaturation(per_channel=True) stand-in: a gain per channel
    return x * _two(k, (0.1, 0.3), (1.8, 2.0), (c,))

  def grayscale(k, x):
    a = _u(k, 0.8, 1.0)
    return (1 - a) * x + a * _gray(x)[..., None]

  def _quantize(x, levels):
    return (jnp.minimum(jnp.floor(x * levels), levels - 1) + 0.5) / levels

  def uniform_quantization(k, x):
    del k
    return _quantize(x, 4.0)

  def quantize_to_bits(k, x):
    bits = jax.random.randint(k, (), 2, 5)
    return _quantize(x, 2.0 ** bits)

  # contrast (per channel) -------------------------------------------------------------------------------------
  def gamma(k, x):
    return jnp.maximum(x, 0.0) ** _two(k, (0.1, 0.3), (1.8, 2.0), (c,))

  def sigmoid(k, x):
    k1, k2 = jax.random.split(k)
    return jax.nn.sigmoid(_u(k1, 10, 25, (c,)) * (x - _u(k2, 0.4, 0.6, (c,))))

  def log(k, x):
    return _two(k, (0.1, 0.3), (1.8, 2.0), (c,)) * jnp.log2(1.0 + jnp.maximum(x, 0.0))

  def linear(k, x):
    return 0.5 + _two(k, (0.1, 0.3), (1.8, 2.0), (c,)) * (x - 0.5)

  def histogram_equalization(k, x):
    del k
    flat = x.reshape(-1, c)
    ranks = jax.vmap(lambda col: jnp.searchsorted(jnp.sort(col), col, side="right"), 1, 1)(flat)
    return (ranks / flat.shape[0]).reshape(x.shape).astype(x.dtype)

  # convolutional (imgaug's matrices) -------------------------------------------------------------------------
  def laplacian(k, x):
    del k
    return _correlate(x, jnp.array([[0.0, -1, 0], [-1, 4, -1], [0, -1, 0]]))

  def sharpen(k, x):
    k1, k2 = jax.random.split(k)
    light = _u(k2, 0.75, 2.0)
    effect = jnp.full((3, 3), -1.0).at[1, 1].set(8.0 + light)
    return _blend3(x, effect, _u(k1, 0.8, 1.0))

  def emboss(k, x):
    k1, k2 = jax.random.split(k)
    st = _u(k2, 0.5, 1.5)
    effect = jnp.array([[-1 - st, -st, 0.0], [-st, 1.0, st], [0.0, st, 1 + st]])
    return _blend3(x, effect, _u(k1, 0.8, 1.0))

  def edge_detect(k, x):
    return _blend3(x, jnp.array([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]), _u(k, 0.8, 1.0))

  cells = np.array([(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], np.float32)

  def directed_edge_detect(k, x):  # imgaug: similarity (1 - angle / 180)^4 of each neighbour to the direction
    k1, k2 = jax.random.split(k)
    rad = _u(k2, 0.0, 1.0) * 2 * jnp.pi - 0.5 * jnp.pi
    d = jnp.array([jnp.cos(rad), jnp.sin(rad)])
    norms = np.maximum(np.linalg.norm(cells, axis=1), 1e-12)
    cos = jnp.clip(cells @ d / norms, -1.0, 1.0)
    sim = (1.0 - jnp.degrees(jnp.arccos(cos)) / 180.0) ** 4
    sim = sim.at[4].set(0.0)
    effect = (-sim / sim.sum()).at[4].set(1.0).reshape(3, 3)
    return _blend3(x, effect, _u(k1, 0.8, 1.0))

  # edges ------------------------------------------------------------------------------------------------------
  def blur_canny(k, x):  # GaussianBlur(2) then Canny(alpha 0.8 .. 1): edges in a random colour over black
    k1, k2 = jax.random.split(k)
    blurred = _blur(x, 2.0 * s, 2.0 * s)
    e = _canny(_gray(blurred), 0.0, 0.0, 0.5, 1.5)[..., None]
    a = _u(k1, 0.8, 1.0)
    return a * e * _u(k2, 0.0, 1.0, (c,)) + (1 - a) * x

  # geometric (affine about the centre, zeros outside) ---------------------------------------------------------
  cr, cc = (h - 1) / 2, (w - 1) / 2

  def scale(k, x):
    k1, k2 = jax.random.split(k)
    sy, sx = _two(k1, (0.5, 0.75), (1.25, 1.75)), _two(k2, (0.5, 0.75), (1.25, 1.75))
    return _warp(x, lambda r, q: ((r - cr) / sy + cr, (q - cc) / sx + cc))

  def translate(k, x):
    t = _u(k, -0.4, 0.4, (2,)) * jnp.array([h, w], jnp.float32)
    return _warp(x, lambda r, q: (r - t[0], q - t[1]))

  def rotate(k, x):
    a = jnp.radians(_signed(k, 15.0, 45.0))
    ca, sa = jnp.cos(a), jnp.sin(a)
    return _warp(x, lambda r, q: (ca * (r - cr) - sa * (q - cc) + cr, sa * (r - cr) + ca * (q - cc) + cc))

  def shear(k, x):
    t = jnp.tan(jnp.radians(_signed(k, 15.0, 25.0)))
    return _warp(x, lambda r, q: (r, q + t * (r - cr)))

  def perspective(k, x):  # corners moved inwards by |N(0, scale)| of the size, the quadrilateral stretched out
    k1, k2 = jax.random.split(k)
    sd = _u(k1, 0.1, 0.2)
    d = jnp.abs(jax.random.normal(k2, (4, 2))) * sd * jnp.array([h - 1, w - 1], jnp.float32)
    out_pts = jnp.array([[0, 0], [0, w - 1], [h - 1, w - 1], [h - 1, 0]], jnp.float32)
    in_pts = out_pts + d * jnp.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], jnp.float32)
    rows = []
    for (r, q), (u, v) in zip(out_pts, in_pts):  # homography out -> in, h33 = 1
      rows.append(jnp.stack([r, q, 1.0, 0.0, 0.0, 0.0, -u * r, -u * q]))
      rows.append(jnp.stack([0.0, 0.0, 0.0, r, q, 1.0, -v * r, -v * q]))
    hv = jnp.linalg.solve(jnp.stack(rows), in_pts.reshape(-1))
    hm = jnp.append(hv, 1.0).reshape(3, 3)

    def inv(r, q):
      den = hm[2, 0] * r + hm[2, 1] * q + hm[2, 2]
      return (hm[0, 0] * r + hm[0, 1] * q + hm[0, 2]) / den, (hm[1, 0] * r + hm[1, 1] * q + hm[1, 2]) / den

    return _warp(x, inv)

  def elastic(k, x):  # alpha 2 .. 5 pixels at 227, sigma 0.25: pixel-level random displacements
    k1, k2 = jax.random.split(k)
    alpha = _u(k1, 2.0, 5.0) * s
    dr, dq = jax.random.uniform(k2, (2, h, w), minval=-1.0, maxval=1.0) * alpha
    return _warp(x, lambda r, q: (r + dr, q + dq))

  # segmentation -----------------------------------------------------------------------------------------------
  max_points = max(2, npix // 4)
  rows_f, cols_f = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
  pix = jnp.asarray(np.stack([rows_f.ravel(), cols_f.ravel()], 1))

  def superpixels(k, x):  # Superpixels(p_replace 0.5 .. 1, n_segments 16 .. 128): random-seed Voronoi cells
    k1, k2, k3, k4 = jax.random.split(k, 4)
    n = jnp.minimum(jax.random.randint(k1, (), 16, 129), max_points)
    pts = jax.random.uniform(k2, (max_points, 2)) * jnp.array([h, w], jnp.float32)
    dist = ((pix[:, None] - pts[None]) ** 2).sum(-1) + jnp.where(jnp.arange(max_points) < n, 0.0, jnp.inf)
    replace = jax.random.bernoulli(k4, _u(k3, 0.5, 1.0), (max_points,))
    return _cell_means(x, jnp.argmin(dist, 1), max_points, replace)

  grid_r, grid_c = min(10, max(1, h // 2)), min(20, max(1, w // 2))
  gr, gc = np.meshgrid((np.arange(grid_r) + 0.5) * h / grid_r, (np.arange(grid_c) + 0.5) * w / grid_c, indexing="ij")
  grid_pts = jnp.asarray(np.stack([gr.ravel(), gc.ravel()], 1), jnp.float32)

  def regular_grid_voronoi(k, x):  # RegularGridVoronoi(10, 20): 40% of the grid points dropped, cells averaged
    keep = jax.random.bernoulli(k, 0.6, (grid_pts.shape[0],)).at[0].set(True)
    dist = ((pix[:, None] - grid_pts[None]) ** 2).sum(-1) + jnp.where(keep, 0.0, jnp.inf)
    return _cell_means(x, jnp.argmin(dist, 1), grid_pts.shape[0], jnp.ones(grid_pts.shape[0], bool))

  # weather ----------------------------------------------------------------------------------------------------
  def snowy_landscape(k, x):  # pixels darker than the threshold brightened by 2.5 .. 4
    k1, k2 = jax.random.split(k)
    t, m = _u(k1, 140 / 255, 1.0), _u(k2, 2.5, 4.0)
    return jnp.where(_gray(x)[..., None] < t, x * m, x)

  def clouds(k, x):
    k1, k2 = jax.random.split(k)
    return x + _u(k1, 0.3, 0.6) * _upsample_noise(k2, x.shape, 3)

  def fog(k, x):
    k1, k2 = jax.random.split(k)
    a = _u(k1, 0.4, 0.7)
    return (1 - a) * x + a * (0.5 + 0.5 * _upsample_noise(k2, x.shape, 4))

  def snowflakes(k, x):
    k1, k2, k3 = jax.random.split(k, 3)
    flakes = jax.random.bernoulli(k2, _u(k1, 0.01, 0.075), x.shape[:2] + (1,)) * _u(k3, 0.7, 1.0)
    return jnp.maximum(x, _blur(flakes.astype(x.dtype), 0.5, 0.5) * 2.0)

  r_rain = max(1, size // 8)

  def rain(k, x):  # sparse drops drawn out into near-vertical streaks
    k1, k2, k3 = jax.random.split(k, 3)
    drops = jax.random.bernoulli(k2, _u(k1, 0.02, 0.06), x.shape[:2] + (1,)).astype(x.dtype)
    a = jnp.radians(90.0 + _u(k3, -20.0, 20.0))
    t = jnp.arange(-r_rain, r_rain + 1, dtype=jnp.float32)
    yy, xx = jnp.meshgrid(t, t, indexing="ij")
    across = -xx * jnp.sin(a) + yy * jnp.cos(a)
    kern = jnp.maximum(0.0, 1.0 - jnp.abs(across))
    return x + 0.7 * _correlate(drops, kern, mode="constant")

  ops = {name: fn for name, fn in locals().items() if callable(fn)}
  return {fam: [ops[o] for o in names] for fam, names in CRAFTED_FAMILY_OPERATIONS.items()}


def _augment_one(img, key, families: tuple[str, ...]):
  table = _operations(img.shape)
  kf, ko, kp = jax.random.split(key, 3)
  branches = []
  for fam in families:
    fam_ops = table[fam]

    def run_family(args, fam_ops=fam_ops):
      k_op, k_par, x = args
      i = jax.random.randint(k_op, (), 0, len(fam_ops))
      y = jax.lax.switch(i, [lambda kk, xx, op=op: jnp.clip(op(kk, xx), 0.0, 1.0).astype(xx.dtype)
                             for op in fam_ops], k_par, x)
      return y

    branches.append(run_family)
  f = jax.random.randint(kf, (), 0, len(families))
  out = jax.lax.switch(f, branches, (ko, kp, img))
  return jnp.where(jnp.all(jnp.isfinite(img)), out, jnp.nan)


@functools.partial(jax.jit, static_argnames=("families",))
def _augment_batch(images, keys, families):
  return jax.vmap(lambda im, k: _augment_one(im, k, families))(images, keys)


def crafted_augment(images: jax.Array, keys: jax.Array, families: Sequence[str] = CRAFTED_FAMILIES
                    ) -> jax.Array:
  r"""Augments each image with one operation of one family, drawn under the image's own key.

  For image i with key ``k_i``: a family uniform over ``families``, an operation uniform over the family's list
  (``CRAFTED_FAMILY_OPERATIONS``), its parameters from the authors' ranges (module docstring), the result clipped to
  [0, 1]. Image i's output depends only on (image i, ``k_i``): the same pair gives the same image in any batch.

  Args:
    images: float images (N, H, W, C) in [0, 1], C in {1, 3}, H, W >= 3.
    keys: one `jax.random` key per image, shape (N,) (typed keys or raw (N, 2) uint32).
    families: the families to draw from (names of ``CRAFTED_FAMILIES``, no repeats).

  Returns:
    (N, H, W, C) augmented images. A NaN or infinity in an image makes that output image all NaN (under
    ``jit``; eagerly it is refused).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jnp.full((2, 8, 8, 1), 0.5)
    >>> keys = jax.random.split(jax.random.key(0), 2)
    >>> crafted_augment(x, keys, ("contrast",)).shape
    (2, 8, 8, 1)
  """
  x = _check_images("images", images)
  keys = _check_keys("keys", keys, x.shape[0])
  fams = _check_families("families", families)
  return _augment_batch(x, keys, fams)


def crafted_validation_set(images: jax.Array, labels: jax.Array, key: jax.Array,
                             families: Sequence[str] = CRAFTED_FAMILIES
                             ) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""The paper's validation set: one augmented copy of the source validation images per family.

  Image i's copy in family f is ``crafted_augment(image_i, fold_in(fold_in(key, F(f)), i), (f,))`` with F(f) the
  family's position in ``CRAFTED_FAMILIES``, so a family's copy does not depend on which other families
  are built with it (the authors build one augmented copy of the dataset per family).

  Args:
    images: float source validation images (N, H, W, C) in [0, 1].
    labels: (N,) integer class ids (copied with their images; not range-checked: any ids).
    key: one `jax.random` key.
    families: the families to build (e.g. a k-fold's validation families).

  Returns:
    ``(images, labels, family)``: (len(families) * N, H, W, C) augmented images, family-major (the first N are
    ``families[0]``'s copy), their labels, and each image's family as an index into ``families``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x, y = jnp.full((3, 8, 8, 1), 0.5), jnp.arange(3)
    >>> xa, ya, fa = crafted_validation_set(x, y, jax.random.key(0), ("blur", "weather"))
    >>> xa.shape, ya.tolist(), fa.tolist()
    ((6, 8, 8, 1), [0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1])
  """
  x = _check_images("images", images)
  check_key("key", key)
  fams = _check_families("families", families)
  if not hasattr(labels, "shape") or np.ndim(labels) != 1 or np.shape(labels)[0] != x.shape[0]:
    raise ValueError(f"labels: must have shape ({x.shape[0]},) (one per image), got shape {np.shape(labels)}")
  if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
    raise ValueError(f"labels: must be integer class ids, got dtype {jnp.asarray(labels).dtype}")
  n = x.shape[0]
  outs = []
  for fam in fams:
    fk = jax.random.fold_in(key, CRAFTED_FAMILIES.index(fam))
    keys = jax.vmap(lambda i, fk=fk: jax.random.fold_in(fk, i))(jnp.arange(n))
    outs.append(crafted_augment(x, keys, (fam,)))
  fam_ids = jnp.repeat(jnp.arange(len(fams)), n)
  return jnp.concatenate(outs), jnp.tile(jnp.asarray(labels), len(fams)), fam_ids


def crafted_folds(k: int, families: Sequence[str] = CRAFTED_FAMILIES
                       ) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
  r"""The k-fold split over augmentation families: (training families, validation families) per fold.

  Fold j validates on the j-th contiguous chunk of ``families`` (``np.array_split`` sizes) and trains on the
  others, so within a fold the two sets are disjoint, and over the folds every family is validated on exactly
  once. With k = 2 and the default order these are the authors' two folds: fold 1 is
  ``yaml_PACS_imgaug_canny-first.yaml`` (trains on arithmetic .. contrast, validates on convolutional ..
  weather), fold 0 is ``-second`` (the reverse).

  Args:
    k: number of folds, in [2, len(families)].
    families: the families to split, in order (no repeats).

  Returns:
    A tuple of k pairs ``(train_families, val_families)``.

  Example:
    >>> crafted_folds(2)[1][1]
    ('convolutional', 'edges', 'geometric', 'segmentation', 'weather')
  """
  fams = _check_families("families", families)
  k = check_int("k", k, lower=2, upper=max(2, len(fams)))
  if len(fams) < 2:
    raise ValueError(f"families: a k-fold split needs at least 2 families, got {list(fams)}")
  chunks = [tuple(fams[i] for i in idx) for idx in np.array_split(np.arange(len(fams)), k)]
  folds = []
  for j in range(k):
    val = chunks[j]
    folds.append((tuple(f for f in fams if f not in val), val))
  return tuple(folds)
