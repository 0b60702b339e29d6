"""A small Vision Transformer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn import _validation
from jaxdyn.models._base import Classifier, check_input_shape
from jaxdyn.models._conv import Conv2d


class _Block(nnx.Module):

  def __init__(self, dim: int, num_heads: int, mlp_ratio: int, *, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
        num_heads=num_heads, in_features=dim, decode=False, deterministic=True, rngs=rngs
    )
    self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
    self.fc1 = nnx.Linear(dim, dim * mlp_ratio, rngs=rngs)
    self.fc2 = nnx.Linear(dim * mlp_ratio, dim, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.fc2(nnx.gelu(self.fc1(self.norm2(x))))


class ViT(Classifier):
  """Pre-norm Vision Transformer (Dosovitskiy et al. 2021) with a class token.

  Args:
    in_channels: input channels.
    num_classes: number of logits.
    image_size: height (= width) of the square input.
    patch_size: side of the square patches; must divide ``image_size``.
    dim: token width.
    depth: number of transformer blocks.
    num_heads: attention heads; must divide ``dim``.
    mlp_ratio: hidden width of each MLP block, as a multiple of ``dim``.
    dropout_rate: dropout before the head, in [0, 1).
    rngs: ``nnx.Rngs`` for initialisation.

  The penultimate features are the final-normed class token.
  """

  def __init__(
      self,
      in_channels: int,
      num_classes: int,
      *,
      image_size: int = 32,
      patch_size: int = 4,
      dim: int = 128,
      depth: int = 4,
      num_heads: int = 4,
      mlp_ratio: int = 2,
      dropout_rate: float = 0.0,
      rngs: nnx.Rngs,
  ):
    in_channels, num_classes, image_size, patch_size, dim, depth, num_heads, mlp_ratio = (
        _validation.check_int(name, v, lower=1) for name, v in dict(
            in_channels=in_channels, num_classes=num_classes, image_size=image_size, patch_size=patch_size,
            dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio).items())
    self.input_shape = (image_size, image_size, in_channels)
    if image_size % patch_size:
      raise ValueError(f"patch_size: must divide image_size={image_size}, got {patch_size}")
    if dim % num_heads:
      raise ValueError(f"num_heads: must divide dim={dim}, got {num_heads}")
    p = patch_size
    self.patch = Conv2d(in_channels, dim, (p, p), strides=p, padding="VALID", rngs=rngs)
    n = (image_size // p) ** 2
    self.cls = nnx.Param(jnp.zeros((1, 1, dim)))
    self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, n + 1, dim)))
    self.blocks = nnx.List([_Block(dim, num_heads, mlp_ratio, rngs=rngs) for _ in range(depth)])
    self.norm = nnx.LayerNorm(dim, rngs=rngs)
    self.head = nnx.Linear(dim, num_classes, rngs=rngs)
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)

  def check_input(self, x: jax.Array) -> None:
    check_input_shape(x, self.input_shape, "square images")

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    del train, key  # no dropout or normalisation statistics in the trunk
    t = self.patch(x)
    b = t.shape[0]
    t = t.reshape(b, t.shape[1] * t.shape[2], t.shape[-1])  # explicit: -1 is undefined for an empty batch
    cls = jnp.broadcast_to(self.cls[...], (b, 1, t.shape[-1]))
    t = jnp.concatenate([cls, t], axis=1) + self.pos[...]
    for blk in self.blocks:
      t = blk(t)
    return self.norm(t[:, 0])
