"""A small class-conditional Diffusion Transformer (DiT) with a patch-mixer and deferred patch masking.

Peebles & Xie, "Scalable Diffusion Models with Transformers", 2023, https://arxiv.org/abs/2212.09748 (the
adaLN-Zero DiT); Sehwag, Kong, Li, Spranger, Lyu, "Stretching Each Dollar: Diffusion Training from Scratch
on a Micro-Budget", 2024, https://arxiv.org/abs/2407.15811 (the patch-mixer and deferred masking).

The network ``F(x_in, c_noise, y)`` of an EDM denoiser (`jaxdyn.diffusion.edm_preconditioning`):

1. patchify the image ``(B, H, W, C)`` into ``T = (H / p)(W / p)`` patches (raster order), embed each
   linearly and add a fixed 2-D sine-cosine position embedding;
2. conditioning ``c = MLP(sinusoid(c_noise)) + E[y]`` (the noise level's sinusoidal embedding with
   periods up to 10,000 applied to ``c_noise`` itself, as the authors' code does, and a class embedding);
3. **patch-mixer**: ``mixer_depth`` adaLN-Zero transformer blocks over *all* ``T`` patch tokens;
4. **deferred masking**: keep only the ``K`` tokens listed in ``keep`` (``(B, K)`` patch indices, see
   `jaxdyn.diffusion.random_keep_indices`; ``K`` is static, so shapes are static under ``jit``);
5. the backbone: ``depth`` adaLN-Zero blocks on the kept tokens only, then the adaLN final layer to
   ``p * p * C`` values per token;
6. scatter the kept tokens back to their patches (the masked patches' outputs are 0, as the authors'
   zero ``mask_token``) and unpatchify.

Each adaLN-Zero block computes ``x += g1 * Attn(LN(x)(1 + s1) + b1)`` and ``x += g2 * MLP(LN(x)(1 + s2) + b2)``
with ``(b1, s1, g1, b2, s2, g2) = Linear(SiLU(c))`` initialised to zero, so every block starts as the
identity, and the final linear layer starts at zero (``F = 0``: the denoiser starts as ``c_skip x``).

The masked tokens never reach the backbone, so the backbone's cost falls with the mask ratio; the mixer
runs before the mask, so every kept token has already seen the masked patches (what distinguishes deferred
masking from plain masking, ``mixer_depth=0``). Differences from the authors' MicroDiT (a text-to-image
model): class labels instead of caption cross-attention, a GELU MLP instead of SwiGLU / expert-choice MoE
layers, and the mixer at the backbone's width (their mixer may be wider, with projections in and out).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdyn import _validation

__all__ = ["DiT"]


def _patchify(x: jax.Array, p: int) -> jax.Array:
  """``(B, H, W, C) -> (B, (H/p)(W/p), p*p*C)``, patches in raster order, each flattened (row, col, channel)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // p) * (w // p), p * p * c)


def _unpatchify(t: jax.Array, p: int, h: int, w: int, c: int) -> jax.Array:
  b = t.shape[0]
  t = t.reshape(b, h // p, w // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return t.reshape(b, h, w, c)


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
  omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2))
  out = pos.reshape(-1)[:, None] * omega[None]
  return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def _sincos_2d(dim: int, grid: int) -> np.ndarray:
  """DiT's fixed 2-D sine-cosine position embedding ``(grid * grid, dim)`` (half the width per axis)."""
  gh, gw = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
  half = dim // 2
  emb = np.concatenate([_sincos_1d(half - half % 2, gh), _sincos_1d(half - half % 2, gw)], axis=1)
  return np.pad(emb, ((0, 0), (0, dim - emb.shape[1]))).astype(np.float32)


def _noise_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t[:, None].astype(jnp.float32) * freqs[None]
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


def _modulate(x, shift, scale):
  return x * (1 + scale[:, None]) + shift[:, None]


class _AdaLNBlock(nnx.Module):
  """A pre-norm transformer block with adaLN-Zero modulation from the conditioning vector."""

  def __init__(self, dim: int, num_heads: int, mlp_ratio: int, *, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(dim, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=num_heads, in_features=dim, decode=False, deterministic=True,
                                       rngs=rngs)
    self.norm2 = nnx.LayerNorm(dim, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
    self.fc1 = nnx.Linear(dim, dim * mlp_ratio, rngs=rngs)
    self.fc2 = nnx.Linear(dim * mlp_ratio, dim, rngs=rngs)
    zeros = nnx.initializers.zeros_init()
    self.ada = nnx.Linear(dim, 6 * dim, kernel_init=zeros, bias_init=zeros, rngs=rngs)

  def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
    b1, s1, g1, b2, s2, g2 = jnp.split(self.ada(nnx.silu(c)), 6, axis=-1)
    x = x + g1[:, None] * self.attn(_modulate(self.norm1(x), b1, s1))
    return x + g2[:, None] * self.fc2(nnx.gelu(self.fc1(_modulate(self.norm2(x), b2, s2))))


class _FinalLayer(nnx.Module):

  def __init__(self, dim: int, out: int, *, rngs: nnx.Rngs):
    zeros = nnx.initializers.zeros_init()
    self.norm = nnx.LayerNorm(dim, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
    self.ada = nnx.Linear(dim, 2 * dim, kernel_init=zeros, bias_init=zeros, rngs=rngs)
    self.linear = nnx.Linear(dim, out, kernel_init=zeros, bias_init=zeros, rngs=rngs)

  def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
    shift, scale = jnp.split(self.ada(nnx.silu(c)), 2, axis=-1)
    return self.linear(_modulate(self.norm(x), shift, scale))


class DiT(nnx.Module):
  """Class-conditional DiT with an optional patch-mixer and deferred patch masking (module docstring).

  Args:
    in_channels: image channels ``C``.
    num_classes: number of classes of the conditioning labels.
    image_size: height (= width) of the square images.
    patch_size: side ``p`` of the square patches; must divide ``image_size``.
    dim: token width (mixer and backbone).
    depth: backbone blocks (run on the kept tokens).
    num_heads: attention heads; must divide ``dim``.
    mlp_ratio: hidden width of each block's MLP, as a multiple of ``dim``.
    mixer_depth: patch-mixer blocks run on all tokens before the mask (0: no mixer, plain masking).
    rngs: ``nnx.Rngs`` for initialisation.

  Call ``model(x, noise_labels, class_labels, keep=None)`` with ``x`` ``(B, H, W, C)`` (the
  preconditioned input ``c_in x``), ``noise_labels`` ``(B,)`` (``c_noise``), integer ``class_labels``
  ``(B,)`` and ``keep`` ``(B, K)`` patch indices (raster order, ``1 <= K <= T``) or None (every patch,
  the plain model). It returns ``F`` ``(B, H, W, C)``, zero on the patches not in ``keep``.
  `masked` draws ``keep`` for a mask ratio and returns it too, so a loss can use the kept patches only
  (`jaxdyn.diffusion.edm_loss`). An out-of-range class label raises eagerly and gives NaN under ``jit``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> m = DiT(1, 10, image_size=8, patch_size=2, dim=16, depth=1, num_heads=2, mixer_depth=1, rngs=nnx.Rngs(0))
    >>> x = jnp.ones((3, 8, 8, 1))
    >>> out, keep = m.masked(x, jnp.zeros(3), jnp.arange(3), mask_ratio=0.75, key=jax.random.key(0))
    >>> out.shape, keep.shape
    ((3, 8, 8, 1), (3, 4))
  """

  def __init__(self, in_channels: int, num_classes: int, *, image_size: int = 8, patch_size: int = 2, dim: int = 64,
               depth: int = 4, num_heads: int = 4, mlp_ratio: int = 4, mixer_depth: int = 0, rngs: nnx.Rngs):
    in_channels, num_classes, image_size, patch_size, dim, depth, num_heads, mlp_ratio = (
        _validation.check_int(name, v, lower=1) for name, v in dict(
            in_channels=in_channels, num_classes=num_classes, image_size=image_size, patch_size=patch_size,
            dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio).items())
    mixer_depth = _validation.check_int("mixer_depth", mixer_depth, lower=0)
    if image_size % patch_size:
      raise ValueError(f"patch_size: must divide image_size={image_size}, got {patch_size}")
    if dim % num_heads:
      raise ValueError(f"num_heads: must divide dim={dim}, got {num_heads}")
    self.in_channels, self.num_classes = in_channels, num_classes
    self.image_size, self.patch_size = image_size, patch_size
    self.input_shape = (image_size, image_size, in_channels)
    grid = image_size // patch_size
    self.num_patches = grid * grid
    self.dim = dim
    self._pos = _sincos_2d(dim, grid)  # a NumPy constant, not a parameter
    self.patch = nnx.Linear(patch_size * patch_size * in_channels, dim, rngs=rngs)
    self.noise_mlp = nnx.Sequential(nnx.Linear(dim, dim, rngs=rngs), nnx.silu, nnx.Linear(dim, dim, rngs=rngs))
    self.class_embed = nnx.Embed(num_classes, dim, rngs=rngs)
    self.mixer = nnx.List([_AdaLNBlock(dim, num_heads, mlp_ratio, rngs=rngs) for _ in range(mixer_depth)])
    self.blocks = nnx.List([_AdaLNBlock(dim, num_heads, mlp_ratio, rngs=rngs) for _ in range(depth)])
    self.final = _FinalLayer(dim, patch_size * patch_size * in_channels, rngs=rngs)

  def _check(self, x, noise_labels, class_labels, keep):
    shape = tuple(jnp.shape(x))
    if len(shape) != 4 or shape[1:] != self.input_shape:
      raise ValueError(f"x: must be a batch of images of shape (batch, {', '.join(map(str, self.input_shape))}), "
                       f"got {shape}")
    b = shape[0]
    if tuple(jnp.shape(noise_labels)) != (b,):
      raise ValueError(f"noise_labels: must have shape ({b},) (one per image), got {tuple(jnp.shape(noise_labels))}")
    _validation.check_integer_labels("class_labels", class_labels, self.num_classes, shape=(b,))
    if keep is None:
      return
    kshape = tuple(jnp.shape(keep))
    if len(kshape) != 2 or kshape[0] != b or not 1 <= kshape[1] <= self.num_patches:
      raise ValueError(f"keep: must be patch indices of shape ({b}, K) with 1 <= K <= {self.num_patches}, "
                       f"got shape {kshape}")
    dtype = keep.dtype if hasattr(keep, "dtype") else np.asarray(keep).dtype
    if not jnp.issubdtype(dtype, jnp.integer):
      raise TypeError(f"keep: must be integer patch indices, got dtype {dtype}")
    if _validation.is_concrete(keep) and np.size(keep):
      k = np.asarray(keep)
      if k.min() < 0 or k.max() >= self.num_patches:
        raise ValueError(f"keep: must lie in [0, {self.num_patches}), got values in [{k.min()}, {k.max()}]")

  def __call__(self, x: jax.Array, noise_labels: jax.Array, class_labels: jax.Array, *,
               keep: jax.Array | None = None, features_at: int | None = None):
    """``F`` (class docstring); with ``features_at=j`` (1 <= j <= depth), ``(F, h_j)``: ``h_j`` the tokens after
    backbone block ``j``, ``(B, K, dim)`` (``K = T`` without ``keep``), for representation alignment (ERW, REPA)."""
    self._check(x, noise_labels, class_labels, keep)
    if features_at is not None:
      features_at = _validation.check_int("features_at", features_at, lower=1, upper=len(self.blocks))
    b, h, w, ch = jnp.shape(x)
    tokens, c = self._embed(x, noise_labels, class_labels)
    if keep is not None:
      keep = jnp.asarray(keep)
      tokens = jnp.take_along_axis(tokens, keep[:, :, None], axis=1)
    features = None
    for i, blk in enumerate(self.blocks):
      tokens = blk(tokens, c)
      if i + 1 == features_at:
        features = tokens
    out = self.final(tokens, c)
    if keep is not None:
      rows = jnp.arange(b)[:, None]
      out = jnp.zeros((b, self.num_patches, out.shape[-1]), out.dtype).at[rows, keep].set(out)
    out = _unpatchify(out, self.patch_size, h, w, ch)
    return out if features_at is None else (out, features)

  def masked(self, x: jax.Array, noise_labels: jax.Array, class_labels: jax.Array, *, mask_ratio: float,
             key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(F, keep)``: the model on a random subset of ``K = num_kept_patches(T, mask_ratio)`` patches per image.

    ``keep`` is `jaxdyn.diffusion.random_keep_indices` ``(B, K)`` (sorted); pass it to
    `jaxdyn.diffusion.edm_loss` so that only the kept patches count. ``mask_ratio = 0`` keeps every
    patch in order, which computes exactly the plain model.
    """
    from jaxdyn.diffusion import _masking  # noqa: PLC0415  (jaxdyn.diffusion builds on jaxdyn.models)
    self._check(x, noise_labels, class_labels, None)
    keep = _masking.random_keep_indices(key, jnp.shape(x)[0], self.num_patches, mask_ratio)
    return self(x, noise_labels, class_labels, keep=keep), keep

  def embed(self, x: jax.Array, noise_labels: jax.Array,
            class_labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(tokens, c)``: steps 1-3 of the forward pass (embedding, conditioning, patch-mixer), no masking.

    With `blocks` and `unembed` it runs the backbone one block at a time (a feature cache,
    `jaxdyn.diffusion.cached_sampler`): ``t, c = m.embed(x, n, y)``, ``t = blk(t, c)`` for ``blk`` in
    ``m.blocks``, ``m.unembed(t, c)`` computes the same operations as ``m(x, n, y)``, so the same values.
    ``tokens`` is ``(B, T, dim)``, ``c`` ``(B, dim)``.
    """
    self._check(x, noise_labels, class_labels, None)
    return self._embed(x, noise_labels, class_labels)

  def _embed(self, x, noise_labels, class_labels):
    tokens = self.patch(_patchify(jnp.asarray(x), self.patch_size)) + self._pos[None]
    labels = jnp.asarray(class_labels)
    c = self.noise_mlp(_noise_embedding(jnp.asarray(noise_labels), self.dim))
    c = c + self.class_embed(jnp.clip(labels, 0, self.num_classes - 1))
    c = _validation.nan_unless(_validation.labels_valid(labels, self.num_classes)[:, None], c)
    for blk in self.mixer:
      tokens = blk(tokens, c)
    return tokens, c

  def unembed(self, tokens: jax.Array, c: jax.Array) -> jax.Array:
    """``F`` ``(B, H, W, C)`` from the backbone's output tokens ``(B, T, dim)``: the final layer, unpatchified."""
    h, w, ch = self.input_shape
    return _unpatchify(self.final(tokens, c), self.patch_size, h, w, ch)
