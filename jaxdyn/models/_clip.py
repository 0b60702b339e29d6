"""Small image-text models: an image tower, a text tower, CLIP's dual encoder and an image-conditioned captioner.

Sized for CPU studies on rendered digits (`jaxdyn.data.paired_digits`): the image tower is a two-block CNN
(or an MLP), the text tower and the captioner's decoder are the library's `Transformer`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn import _validation
from jaxdyn.models._conv import Conv2d
from jaxdyn.models._transformer import Transformer

IMAGE_KINDS = ("cnn", "mlp")


def _check_image_shape(image_shape) -> tuple[int, int, int]:
  if isinstance(image_shape, (str, bytes)) or not isinstance(image_shape, Sequence) or len(image_shape) != 3:
    raise ValueError(f"image_shape: must be (height, width, channels), got {image_shape!r}")
  return tuple(_validation.check_int("image_shape", v, lower=1) for v in image_shape)


class ImageEncoder(nnx.Module):
  r"""Images ``(batch, H, W, C)`` to features ``(batch, dim)``.

  ``kind="cnn"``: two blocks of a 3x3 convolution (`Conv2d`, ``width`` then ``2 * width`` channels), ReLU
  and 2x2 average pooling, then a dense layer on the flattened map (position is kept: a caption can
  say where the digit is). ``kind="mlp"``: a two-layer ReLU MLP of width ``4 * width`` on the flattened
  image. The output is linear (no activation), as CLIP's projections are.

  Args:
    image_shape: ``(H, W, C)`` of the inputs.
    dim: output features.
    width: channels of the first convolution (the MLP's hidden width is ``4 * width``).
    kind: ``"cnn"`` or ``"mlp"``.
    rngs: ``nnx.Rngs``.
  """

  def __init__(self, image_shape: Sequence[int], dim: int, *, width: int = 16, kind: str = "cnn",
               rngs: nnx.Rngs):
    self.image_shape = _check_image_shape(image_shape)
    self.dim = _validation.check_int("dim", dim, lower=1)
    width = _validation.check_int("width", width, lower=1)
    self.kind = _validation.check_choice("kind", kind, IMAGE_KINDS)
    h, w, c = self.image_shape
    if kind == "cnn":
      self.conv1 = Conv2d(c, width, (3, 3), rngs=rngs)
      self.conv2 = Conv2d(width, 2 * width, (3, 3), rngs=rngs)
      flat = (h // 4) * (w // 4) * 2 * width
      if flat == 0:
        raise ValueError(f"image_shape: a CNN image tower needs images of at least 4x4, got {self.image_shape}")
      self.hidden = nnx.Linear(flat, 4 * width, rngs=rngs)
    else:
      self.hidden = nnx.Linear(h * w * c, 4 * width, rngs=rngs)
    self.out = nnx.Linear(4 * width, dim, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    images = _validation.check_floating("images", images)
    if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
      raise ValueError(f"images: must be (batch, {', '.join(map(str, self.image_shape))}), got shape {images.shape}")
    x = images
    if self.kind == "cnn":
      for conv in (self.conv1, self.conv2):
        x = nnx.avg_pool(jax.nn.relu(conv(x)), (2, 2), strides=(2, 2))
    x = jax.nn.relu(self.hidden(x.reshape(x.shape[0], math.prod(x.shape[1:]))))  # not -1: a batch may be empty
    return self.out(x)


def _first_eos(tokens: jax.Array, eos_id: int) -> jax.Array:
  """Index of each row's first ``eos_id`` (the last position when a row has none)."""
  is_eos = tokens == eos_id
  return jnp.where(is_eos.any(axis=1), jnp.argmax(is_eos, axis=1), tokens.shape[1] - 1)


class TextEncoder(nnx.Module):
  """Token ids ``(batch, seq)`` to features ``(batch, dim)``: a causal `Transformer`'s final-normed hidden
  state at each row's first end-of-text token (``eos_id``), as CLIP's text tower pools (Radford et al.,
  2021, Sec. 2.4), then a linear projection.

  Args:
    vocab_size: token ids.
    dim: output features.
    width: the transformer's residual width.
    depth: transformer blocks.
    num_heads: attention heads.
    eos_id: the end-of-text id (`jaxdyn.data.EOS`, 2, for caption vocabularies).
    rngs: ``nnx.Rngs``.
  """

  def __init__(self, vocab_size: int, dim: int, *, width: int = 64, depth: int = 2, num_heads: int = 2,
               eos_id: int = 2, rngs: nnx.Rngs):
    self.dim = _validation.check_int("dim", dim, lower=1)
    vocab_size = _validation.check_int("vocab_size", vocab_size, lower=1)
    self.eos_id = _validation.check_int("eos_id", eos_id, lower=0, upper=vocab_size - 1)
    self.transformer = Transformer(vocab_size, dim=width, depth=depth, num_heads=num_heads, rngs=rngs)
    self.out = nnx.Linear(width, dim, use_bias=False, rngs=rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    h = self.transformer.features(tokens)
    idx = _first_eos(jnp.asarray(tokens), self.eos_id)
    return self.out(jnp.take_along_axis(h, idx[:, None, None], axis=1)[:, 0])


class CLIP(nnx.Module):
  r"""CLIP's dual encoder (Radford et al., 2021, https://arxiv.org/abs/2103.00020): L2-normalised image and
  text embeddings and a learnable logit scale.

  .. math::
    u_i = \frac{f(x_i)}{\lVert f(x_i) \rVert}, \quad v_j = \frac{g(t_j)}{\lVert g(t_j) \rVert}, \quad
    s_{ij} = e^{\tau} \, u_i^\top v_j,

  with ``tau`` the parameter ``log_scale``, initialised to ``log(1 / temperature)`` (CLIP: 0.07). The
  contrastive loss over ``s`` is `jaxdyn.multimodal.clip_loss`, which also clips the scale at 100 as CLIP
  does.

  Args:
    image_shape: ``(H, W, C)``.
    vocab_size: caption token ids.
    embed_dim: the joint embedding's dimension.
    image_width, image_kind: the `ImageEncoder`'s ``width`` and ``kind``.
    text_width, text_depth, num_heads, eos_id: the `TextEncoder`'s.
    temperature: the initial temperature, > 0.
    rngs: ``nnx.Rngs``.

  Example:
    >>> m = CLIP((24, 24, 1), 90, embed_dim=16, rngs=nnx.Rngs(0))
    >>> u, v, log_scale = m(jnp.zeros((2, 24, 24, 1)), jnp.array([[1, 5, 2], [1, 6, 2]]))
    >>> u.shape, v.shape
    ((2, 16), (2, 16))
  """

  def __init__(self, image_shape: Sequence[int], vocab_size: int, *, embed_dim: int = 64, image_width: int = 16,
               image_kind: str = "cnn", text_width: int = 64, text_depth: int = 2, num_heads: int = 2,
               eos_id: int = 2, temperature: float = 0.07, rngs: nnx.Rngs):
    temperature = _validation.check_real("temperature", temperature, lower=0.0, lower_open=True)
    embed_dim = _validation.check_int("embed_dim", embed_dim, lower=1)
    self.image = ImageEncoder(image_shape, embed_dim, width=image_width, kind=image_kind, rngs=rngs)
    self.text = TextEncoder(vocab_size, embed_dim, width=text_width, depth=text_depth, num_heads=num_heads,
                            eos_id=eos_id, rngs=rngs)
    self.log_scale = nnx.Param(jnp.asarray(math.log(1.0 / temperature), jnp.float32))

  def encode_image(self, images: jax.Array) -> jax.Array:
    """Unit-norm image embeddings ``(batch, embed_dim)``."""
    return _unit(self.image(images))

  def encode_text(self, tokens: jax.Array) -> jax.Array:
    """Unit-norm text embeddings ``(batch, embed_dim)``."""
    return _unit(self.text(tokens))

  def __call__(self, images: jax.Array, tokens: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(image embeddings, text embeddings, log_scale)`` of paired ``images`` and ``tokens``."""
    return self.encode_image(images), self.encode_text(tokens), self.log_scale[...]


def _unit(x: jax.Array) -> jax.Array:
  return x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


class Captioner(nnx.Module):
  r"""An image-conditioned language model: an `ImageEncoder` gives ``prefix_len`` embeddings that a causal
  `Transformer` reads before the caption (``Transformer(..., prefix=...)``), as prefix-LM captioners do.

  ``captioner(images, tokens)`` gives next-token logits ``(batch, seq, vocab_size)``: position ``t``
  predicts token ``t + 1`` from the image and tokens ``0 .. t``. ``images=None`` runs the same decoder
  without an image (a caption-only language model with the same architecture).

  Args:
    image_shape: ``(H, W, C)``.
    vocab_size: caption token ids.
    dim, depth, num_heads: the decoder's width, blocks and heads.
    prefix_len: image embeddings before the caption, >= 1.
    image_width, image_kind: the `ImageEncoder`'s ``width`` and ``kind``.
    rngs: ``nnx.Rngs``.

  Example:
    >>> m = Captioner((24, 24, 1), 90, dim=32, depth=1, rngs=nnx.Rngs(0))
    >>> m(jnp.zeros((2, 24, 24, 1)), jnp.array([[1, 5, 2], [1, 6, 2]])).shape
    (2, 3, 90)
  """

  def __init__(self, image_shape: Sequence[int], vocab_size: int, *, dim: int = 64, depth: int = 2,
               num_heads: int = 2, prefix_len: int = 4, image_width: int = 16, image_kind: str = "cnn",
               rngs: nnx.Rngs):
    self.prefix_len = _validation.check_int("prefix_len", prefix_len, lower=1)
    self.decoder = Transformer(vocab_size, dim=dim, depth=depth, num_heads=num_heads, rngs=rngs)
    self.image = ImageEncoder(image_shape, self.prefix_len * self.decoder.dim, width=image_width, kind=image_kind,
                              rngs=rngs)

  def prefix(self, images: jax.Array) -> jax.Array:
    """The image's ``(batch, prefix_len, dim)`` embeddings."""
    return self.image(images).reshape(-1, self.prefix_len, self.decoder.dim)

  def __call__(self, images: jax.Array | None, tokens: jax.Array) -> jax.Array:
    prefix = None if images is None else self.prefix(images)
    return self.decoder(tokens, prefix=prefix)
