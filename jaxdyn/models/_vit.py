"""A small Vision Transformer, its Mesa variant (8-bit saved activations, ``mesa=True``) and its
Experts-Weights-Averaging training form (MoE feed-forward layers, ``num_experts`` and ``moe_layers``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn import _validation
from jaxdyn.models._base import Classifier, check_input_shape, is_training
from jaxdyn.models._conv import Conv2d


def _init_attention_half(block: nnx.Module, dim: int, num_heads: int, rngs: nnx.Rngs) -> None:
  """The pre-norm block's norm1, attention and norm2, created in this order (the init streams)."""
  block.norm1 = nnx.LayerNorm(dim, rngs=rngs)
  block.attn = nnx.MultiHeadAttention(
      num_heads=num_heads, in_features=dim, decode=False, deterministic=True, rngs=rngs
  )
  block.norm2 = nnx.LayerNorm(dim, rngs=rngs)


class _Block(nnx.Module):

  def __init__(self, dim: int, num_heads: int, mlp_ratio: int, *, rngs: nnx.Rngs):
    _init_attention_half(self, dim, num_heads, rngs)
    self.fc1 = nnx.Linear(dim, dim * mlp_ratio, rngs=rngs)
    self.fc2 = nnx.Linear(dim * mlp_ratio, dim, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.fc2(nnx.gelu(self.fc1(self.norm2(x))))


class _MoEBlock(nnx.Module):
  """The pre-norm block with its FFN a `jaxdyn.schemes.MoEFeedForward` under ``experts``."""

  def __init__(self, dim: int, num_heads: int, mlp_ratio: int, num_experts: int, *, rngs: nnx.Rngs):
    from jaxdyn.schemes import _ewa  # noqa: PLC0415  (jaxdyn.schemes builds on jaxdyn.models' family)
    _init_attention_half(self, dim, num_heads, rngs)
    self.experts = _ewa.MoEFeedForward(dim, dim * mlp_ratio, num_experts, rngs=rngs)

  def __call__(self, x, *, key: jax.Array | None):
    x = x + self.attn(self.norm1(x))
    return x + self.experts(self.norm2(x), key=key)


class _MesaBlock(nnx.Module):
  """The pre-norm block with every saved activation in 8 bits (`jaxdyn.memory` Mesa layers)."""

  def __init__(self, dim: int, num_heads: int, mlp_ratio: int, groups: int, options: dict, *, rngs: nnx.Rngs):
    from jaxdyn.memory import _mesa  # noqa: PLC0415  (jaxdyn.memory imports jaxdyn.models)
    self.norm1 = _mesa.MesaLayerNorm(dim, groups=groups, **options)
    self.attn = _mesa.MesaAttention(dim, num_heads, groups=groups, rngs=rngs, **options)
    self.norm2 = _mesa.MesaLayerNorm(dim, groups=groups, **options)
    self.fc1 = _mesa.MesaDense(dim, dim * mlp_ratio, groups=groups, rngs=rngs, **options)
    self.act = _mesa.MesaGELU(groups=groups, **options)
    self.fc2 = _mesa.MesaDense(dim * mlp_ratio, dim, groups=groups, rngs=rngs, **options)

  def __call__(self, x, *, train: bool, key: jax.Array | None):
    k = [None] * 6 if key is None else [jax.random.fold_in(key, i) for i in range(6)]
    x = x + self.attn(self.norm1(x, train=train, key=k[0]), train=train, key=k[1])
    h = self.act(self.fc1(self.norm2(x, train=train, key=k[2]), train=train, key=k[3]), train=train, key=k[4])
    return x + self.fc2(h, train=train, key=k[5])


_MESA_SALT = 0x6D657361  # fold_in(key, "mesa"): the rounding key, distinct from the dropout key
_MOE_SALT = 0x6D6F65  # fold_in(key, "moe"): the token partitions' key, distinct from the dropout key


def _check_moe_layers(moe_layers, depth: int) -> tuple[int, ...]:
  if not isinstance(moe_layers, (tuple, list)):
    raise TypeError(f"moe_layers: must be a tuple of block indices, got {type(moe_layers).__name__}")
  layers = tuple(_validation.check_int("moe_layers", i, lower=0, upper=depth - 1) for i in moe_layers)
  if len(set(layers)) != len(layers):
    raise ValueError(f"moe_layers: must not repeat a block, got {tuple(moe_layers)}")
  return tuple(sorted(layers))


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
    mesa: build the Mesa variant (Pan et al. 2021, https://arxiv.org/abs/2111.11124): every block's
      LayerNorms, attention (projections, q k^T, softmax, p v), MLP dense layers and GELU, and the
      final LayerNorm, compute exactly what the float model computes but save 8-bit activations for
      the backward pass (`jaxdyn.memory.MesaAttention` etc.). Its attention takes q, k, v from one
      fused projection (DeiT's layout), so its parameters are not the float ViT's. In training it
      needs ``key``: the stochastic rounding uses ``fold_in(key, 0x6D657361)``, and dropout ``key``
      itself; in inference it needs none and runs the plain operations.
    mesa_groups: channel groups of the 8-bit ranges of the non-attention activations (default:
      ``num_heads``, as DeiT-Mesa); must divide ``dim``. Attention tensors use one group per head.
    mesa_official_compat: the authors' code's quantizer and copies (`jaxdyn.memory` Mesa's module
      docstring lists the differences).
    mesa_implementation: ``"jnp"`` or ``"pallas"`` (the group-wise quantize kernel).
    num_experts: with ``moe_layers``, the experts of each MoE feed-forward layer (>= 2).
    moe_layers: indices of the blocks whose FFN is a `jaxdyn.schemes.MoEFeedForward` with
      ``num_experts`` experts (Experts Weights Averaging, https://arxiv.org/abs/2308.06093; default none).
      In training the model then needs ``key``: block ``i``'s token partition uses
      ``fold_in(fold_in(key, 0x6D6F65), i)``; in inference each MoE computes its mean expert, as the
      plain ViT loaded with `jaxdyn.schemes.collapse_experts` of these parameters does.
    moe_inference: what the MoE layers compute in inference: ``"mean"`` (the mean expert, EWA's
      collapse) or ``"partition"`` (random partitions as in training, drawn from
      ``jax.random.key(0)``, the same for every call: a naive MoE evaluated as it was trained).
    rngs: ``nnx.Rngs`` for initialisation.

  The penultimate features are the final-normed class token. With ``mesa=True`` the running
  quantization ranges are `jaxdyn.memory.MesaRange` variables, updated by each training forward pass.
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
      mesa: bool = False,
      mesa_groups: int | None = None,
      mesa_official_compat: bool = False,
      mesa_implementation: str = "jnp",
      num_experts: int = 0,
      moe_layers: tuple[int, ...] = (),
      moe_inference: str = "mean",
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
    self.mesa = bool(mesa)
    self.moe_layers = _check_moe_layers(moe_layers, depth)
    num_experts = _validation.check_int("num_experts", num_experts, lower=2 if self.moe_layers else 0)
    self.moe_inference = _validation.check_choice("moe_inference", moe_inference, ("mean", "partition"))
    if self.moe_layers:
      if self.mesa:
        raise ValueError("moe_layers: MoE feed-forward layers are not available with mesa=True")
    if self.mesa:
      from jaxdyn.memory import _mesa  # noqa: PLC0415  (jaxdyn.memory imports jaxdyn.models)
      groups = num_heads if mesa_groups is None else _validation.check_int("mesa_groups", mesa_groups, lower=1)
      if dim % groups or (dim * mlp_ratio) % groups:
        raise ValueError(f"mesa_groups: must divide dim={dim}, got {mesa_groups}")
      _validation.check_choice("mesa_implementation", mesa_implementation, _mesa.IMPLEMENTATIONS)
      options = dict(official_compat=bool(mesa_official_compat), implementation=mesa_implementation)
      self.blocks = nnx.List([_MesaBlock(dim, num_heads, mlp_ratio, groups, options, rngs=rngs)
                              for _ in range(depth)])
      self.norm = _mesa.MesaLayerNorm(dim, groups=groups, **options)
    else:
      self.blocks = nnx.List([
          _MoEBlock(dim, num_heads, mlp_ratio, num_experts, rngs=rngs) if i in self.moe_layers
          else _Block(dim, num_heads, mlp_ratio, rngs=rngs) for i in range(depth)])
      self.norm = nnx.LayerNorm(dim, rngs=rngs)
    self.head = nnx.Linear(dim, num_classes, rngs=rngs)
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)

  @property
  def _why_key(self) -> str:
    return (" in training with mesa=True (stochastic rounding)" if self.mesa
            else " in training with moe_layers (random token partitions)")

  def check_input(self, x: jax.Array) -> None:
    check_input_shape(x, self.input_shape, "square images")

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    """The final-normed class token. In training, ``key`` draws Mesa's rounding or the MoE partitions."""
    if self.mesa or self.moe_layers:
      train = is_training(self, train)
      if train:
        _validation.check_key("key", key, why=self._why_key)
      elif self.moe_layers and self.moe_inference == "partition":
        key = jax.random.fold_in(jax.random.key(0), _MOE_SALT)  # the same partitions in every inference call
      else:
        key = None
      return self._features(x, train=train, key=key)
    del train, key  # no dropout or normalisation statistics in the trunk
    return self._features(x, train=False, key=None)

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               return_features: bool = False):
    if not (self.mesa or self.moe_layers):
      return super().__call__(x, train=train, key=key, return_features=return_features)
    self.check_input(x)
    train = is_training(self, train)
    if train:
      _validation.check_key("key", key, why=self._why_key)
    salt = _MESA_SALT if self.mesa else _MOE_SALT
    h = self.features(x, train=train, key=jax.random.fold_in(key, salt) if train else None)
    logits = self.apply_head(h, train=train, key=key)
    return (logits, h) if return_features else logits

  def tokens(self, x: jax.Array) -> jax.Array:
    """Every final-normed token ``(B, 1 + T, dim)`` of a plain ViT: the class token (`features`), then the
    ``T`` patch tokens in row-major patch order (the targets of representation alignment, as ERW and
    REPA use DINOv2's normed patch tokens). Not for ``mesa`` or ``moe_layers``, whose trunks take keys."""
    if self.mesa or self.moe_layers:
      raise ValueError("tokens: defined for a plain ViT only (mesa=False, no moe_layers)")
    self.check_input(x)
    return self.norm(self._plain_trunk(self._embed(x)))

  def _embed(self, x):
    t = self.patch(x)
    b = t.shape[0]
    t = t.reshape(b, t.shape[1] * t.shape[2], t.shape[-1])  # explicit: -1 is undefined for an empty batch
    cls = jnp.broadcast_to(self.cls[...], (b, 1, t.shape[-1]))
    return jnp.concatenate([cls, t], axis=1) + self.pos[...]

  def _plain_trunk(self, t):
    for blk in self.blocks:
      t = blk(t)
    return t

  def _features(self, x, *, train: bool, key: jax.Array | None) -> jax.Array:
    t = self._embed(x)
    if self.moe_layers:
      for i, blk in enumerate(self.blocks):
        t = blk(t, key=None if key is None else jax.random.fold_in(key, i)) if i in self.moe_layers else blk(t)
      return self.norm(t[:, 0])
    if not self.mesa:
      return self.norm(self._plain_trunk(t)[:, 0])
    keys = [None] * (len(self.blocks) + 1) if key is None else [
        jax.random.fold_in(key, i) for i in range(len(self.blocks) + 1)]
    for blk, k in zip(self.blocks, keys):
      t = blk(t, train=train, key=k)
    return self.norm(t[:, 0], train=train, key=keys[-1])
