"""SortedNet: many nested sub-models in one network, trained together by sampling one per update.

Valipour, Rezagholizadeh, Rajabzadeh, Kavehzadeh, Tahaei, Chen, Ghodsi, "SortedNet, a Place for Every
Network and Every Network in its Place: Towards a Generalized Solution for Training Many-in-One Neural
Networks" (later "SortedNet: A Scalable and Generalized Framework for Training Modular Deep Neural
Networks"), 2023, https://arxiv.org/abs/2309.00255.

**Sorted (nested) architecture.** A sub-model ``b = (depth, width, heads)`` of a network uses the
*leading* slices of the shared parameters: its first ``depth`` layers, the first ``width`` hidden
units of every hidden layer (the MLP's hidden layers, the transformer's feed-forward layers) and the
first ``heads`` attention heads of every attention layer. For a dense layer with kernel
:math:`W \\in R^{m \\times n}` and bias :math:`c`, sub-model ``b`` computes

.. math::  h' = \\sigma(h \\, W_{[:m_b, :n_b]} + c_{[:n_b]}),

so sub-models are nested (``b <= b'`` in every dimension means ``theta_b`` is a slice of
``theta_b'``), the largest is the full model, and every sub-model of the ladder lives in one set of
weights. The slices are taken inside the forward pass (`SortedMLP`, `SortedViT`: ``model(x,
submodel=b)``); nothing is copied, and a gradient is exactly zero outside the slice it came through.
The token width of the transformer (its residual stream, LayerNorms, embeddings) is never sliced.

**Training** (the paper's update scheme: random sub-model sampling combined with gradient
accumulation). Each update draws ``G`` sub-models ``b_1 .. b_G`` i.i.d. uniformly from the ladder
``B`` (`sample_submodels`; uniform over a Cartesian grid of sizes is the paper's independent uniform
draw per dimension) and accumulates their gradients before one optimizer step:

.. math::  g = \\frac1G \\sum_{j=1}^G \\nabla_\\theta \\, L\\big(f(x_j; \\theta_{b_j}), y_j\\big),
           \\qquad b_j \\sim \\mathcal U(B),

an unbiased estimate of the gradient of the sorted objective :math:`\\frac1{|B|} \\sum_{b \\in B}
L(f(x; \\theta_b), y)`. By default (`sortednet_loss`, ``share_batch=False``) the batch is split into
``G`` micro-batches ``x_j``, one per sampled sub-model: the paper's loop, where each mini-batch draws
its own sub-model and gradients are accumulated over ``G`` of them before the update, with the
accumulated mini-batches handed over as one batch. ``share_batch=True`` runs every sampled sub-model
on the whole batch instead (``x_j = x``). ``G = 1`` is plain per-step sampling.

**Inference.** Every sub-model is evaluated from the one set of weights (`evaluate_submodels`), and
`export_submodel` returns a chosen sub-model as a standalone model of the smaller configuration,
whose parameters are the sliced arrays: it computes the sliced forward bit for bit.

Provenance, which matters here: only the abstract and third-party summaries of the paper could be
read in this environment, not its method section or its authors' code. The nested leading-slice
architecture, uniform sampling and the accumulation of sampled sub-models' gradients before one
update are what the abstract and summaries state; whether the paper's accumulated sub-models share
one mini-batch or take one each, and whether their gradients are summed or averaged (the two differ
only by a factor ``G`` in the learning rate of SGD, and not at all for Adam up to its epsilon), is
unverified; the default splits the batch and averages. There is therefore no ``official_compat``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxdyn import _validation
from jaxdyn.models._base import Classifier, check_input_shape, is_training

__all__ = [
    "SortedMLP",
    "SortedViT",
    "SubModel",
    "evaluate_submodels",
    "export_submodel",
    "sample_submodels",
    "sorted_ladder",
    "sortednet_loss",
]

DIMENSIONS = ("depth", "width", "heads")


class SubModel(NamedTuple):
  """A sub-model of a sorted network: its leading ``depth`` layers, ``width`` hidden units, ``heads`` heads.

  ``width`` is the hidden width of every sliced layer (`SortedMLP`'s hidden layers, `SortedViT`'s
  feed-forward layers); ``heads`` the attention heads of every attention layer (``None`` for models
  without attention). A model's ``full_submodel`` is the full model. Hashable and static: sub-models
  are Python ints, so every sliced shape is known when tracing.
  """

  depth: int
  width: int
  heads: int | None = None


def sorted_ladder(full: SubModel, num_submodels: int = 8, *, along: Sequence[str] = ("width",)) -> tuple[
    SubModel, ...]:
  """A sorted ladder of ``num_submodels`` nested sub-models, smallest first, the last one ``full``.

  Sub-model ``k = 1 .. n`` scales each dimension ``d`` in ``along`` to ``ceil(full.d * k / n)`` and
  keeps the others full; dimensions listed together grow together (``along=("width", "depth")``: a
  diagonal through width x depth). Each sub-model is a slice of the next. For a Cartesian grid of sizes
  (the paper's independent sampling per dimension), pass any list of `SubModel`s to the other functions.

  Args:
    full: the full model's `SubModel` (``model.full_submodel``).
    num_submodels: ``n >= 1``, at most the largest size among the ``along`` dimensions (so the ladder
      has no repeated sub-model).
    along: a non-empty subset of ``("depth", "width", "heads")``.

  Returns:
    A tuple of ``n`` distinct `SubModel`s, nested and increasing.

  Example:
    >>> [s.width for s in sorted_ladder(SubModel(depth=2, width=64), 8)]
    [8, 16, 24, 32, 40, 48, 56, 64]
    >>> sorted_ladder(SubModel(4, 32, 4), 4, along=("depth", "heads"))[0]
    SubModel(depth=1, width=32, heads=1)
  """
  full = _check_submodel_kind("full", full)
  n = _validation.check_int("num_submodels", num_submodels, lower=1)
  if isinstance(along, str) or not isinstance(along, (tuple, list)):
    raise TypeError(f"along: must be a tuple of dimension names from {DIMENSIONS}, got {along!r}")
  if not along:
    raise ValueError(f"along: must name at least one of {DIMENSIONS}, got ()")
  along = tuple(_validation.check_choice("along", d, DIMENSIONS) for d in along)
  if len(set(along)) != len(along):
    raise ValueError(f"along: must not repeat a dimension, got {along}")
  if "heads" in along and full.heads is None:
    raise ValueError("along: 'heads' needs a full sub-model with heads (a model with attention)")
  largest = max(getattr(full, d) for d in along)
  if n > largest:
    raise ValueError(f"num_submodels: must be at most {largest} (the largest size along {along}) for distinct "
                     f"sub-models, got {n}")
  return tuple(full._replace(**{d: -(-getattr(full, d) * k // n) for d in along}) for k in range(1, n + 1))


def sample_submodels(key: jax.Array, num_submodels: int, num_samples: int = 1) -> jax.Array:
  """The sub-models of one update: ``num_samples`` i.i.d. uniform indices into a ladder of ``num_submodels``.

  ``jax.random.randint(key, (num_samples,), 0, num_submodels)``: a pure function of the key, in the
  order the sub-models are accumulated (with replacement, as independent draws per accumulation step).

  Args:
    key: a `jax.random` key.
    num_submodels: ``|B| >= 1``, the ladder's length.
    num_samples: ``G >= 1``, the sub-models accumulated per update.

  Returns:
    An int32 array ``(num_samples,)`` of indices in ``[0, num_submodels)``.

  Example:
    >>> import jax
    >>> idx = sample_submodels(jax.random.key(0), 8, 4)
    >>> idx.shape, bool(((idx >= 0) & (idx < 8)).all())
    ((4,), True)
  """
  _validation.check_key("key", key)
  num_submodels = _validation.check_int("num_submodels", num_submodels, lower=1)
  num_samples = _validation.check_int("num_samples", num_samples, lower=1)
  return jax.random.randint(key, (num_samples,), 0, num_submodels, dtype=jnp.int32)


def _check_submodel_kind(name: str, s) -> SubModel:
  if not isinstance(s, SubModel):
    raise TypeError(f"{name}: must be a jaxdyn.schemes.SubModel, got {type(s).__name__}")
  def size(field, v):
    try:
      return _validation.check_int(name, v, lower=1)
    except ValueError as e:  # name the field too: "submodel: width must be an int >= 1, got 0"
      raise ValueError(f"{name}: {field} {str(e)[len(name) + 2:]}") from None
  return SubModel(size("depth", s.depth), size("width", s.width), None if s.heads is None else size("heads", s.heads))


class _Sorted:
  """What `SortedMLP` and `SortedViT` share: the full sub-model, its checks, the sliced head."""

  full_submodel: SubModel
  head: nnx.Linear
  dropout_rate: float

  def check_submodel(self, submodel: SubModel | None, name: str = "submodel") -> SubModel:
    """``submodel`` (default: the full model), checked against this model's sizes."""
    if submodel is None:
      return self.full_submodel
    s = _check_submodel_kind(name, submodel)
    full = self.full_submodel
    for d in DIMENSIONS:
      v, top = getattr(s, d), getattr(full, d)
      if top is None and v is not None:
        raise ValueError(f"{name}: this model has no {d}, got {d}={v}")
      if top is not None and v is None:
        raise ValueError(f"{name}: must give {d} (an int in [1, {top}]), got None")
      if top is not None and v > top:
        raise ValueError(f"{name}: {d} must be an int in [1, {top}], got {v}")
    return s

  def apply_head(self, h: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    """Dropout (in training), then the head on the leading ``h.shape[-1]`` rows of its kernel."""
    if is_training(self, train) and self.dropout_rate > 0.0:
      _validation.check_key("key", key, why=" in training with dropout_rate > 0")
      keep = jax.random.bernoulli(key, 1.0 - self.dropout_rate, h.shape)
      h = jnp.where(keep, h / (1.0 - self.dropout_rate), 0.0)
    return h @ self.head.kernel[...][: h.shape[-1]] + self.head.bias[...]

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               return_features: bool = False, submodel: SubModel | None = None):
    """Logits of sub-model ``submodel`` (default: the full model); features too with ``return_features``."""
    self.check_input(x)
    s = self.check_submodel(submodel)
    train = is_training(self, train)
    h = self.features(x, train=train, submodel=s)
    logits = self.apply_head(h, train=train, key=key)
    return (logits, h) if return_features else logits


def _dense(h: jax.Array, layer: nnx.Linear, width: int) -> jax.Array:
  """``h @ W[:m, :width] + c[:width]`` with ``m = h.shape[-1]``: the leading slice of an ``nnx.Linear``."""
  return h @ layer.kernel[...][: h.shape[-1], :width] + layer.bias[...][:width]


class SortedMLP(_Sorted, Classifier):
  """A ReLU MLP whose sub-models are its leading hidden layers and leading hidden units.

  ``depth`` hidden layers of ``hidden`` units on flattened inputs, then a linear head (the penultimate
  features are the last used hidden layer). Sub-model ``SubModel(depth=d, width=w)`` runs the first
  ``d`` hidden layers on their first ``w`` units each, and the head on its first ``w`` input rows:
  ``model(x, submodel=SubModel(d, w))``. ``full_submodel`` is ``SubModel(depth, hidden)``. Initialised
  as ``nnx.Linear`` (LeCun-normal kernels, zero biases).

  Args:
    in_features: size of a flattened input.
    num_classes: number of logits.
    hidden: width of every hidden layer.
    depth: number of hidden layers (>= 1).
    dropout_rate: dropout before the head, in [0, 1).
    rngs: ``nnx.Rngs`` for initialisation.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> m = SortedMLP(4, 3, hidden=8, depth=2, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((5, 4)), submodel=SubModel(depth=1, width=2)).shape
    (5, 3)
  """

  def __init__(self, in_features: int, num_classes: int, *, hidden: int = 64, depth: int = 2,
               dropout_rate: float = 0.0, rngs: nnx.Rngs):
    self.in_features = _validation.check_int("in_features", in_features, lower=1)
    self.num_classes = _validation.check_int("num_classes", num_classes, lower=1)
    self.hidden = _validation.check_int("hidden", hidden, lower=1)
    self.depth = _validation.check_int("depth", depth, lower=1)
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)
    widths = (self.in_features,) + (self.hidden,) * self.depth
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
    self.head = nnx.Linear(self.hidden, self.num_classes, rngs=rngs)
    self.full_submodel = SubModel(self.depth, self.hidden, None)

  def config(self, submodel: SubModel) -> dict:
    """The constructor arguments of the standalone model of ``submodel`` (`export_submodel`)."""
    s = self.check_submodel(submodel)
    return dict(in_features=self.in_features, num_classes=self.num_classes, hidden=s.width, depth=s.depth,
                dropout_rate=self.dropout_rate)

  def check_input(self, x: jax.Array) -> None:
    super().check_input(x)
    if math.prod(jnp.shape(x)[1:]) != self.in_features:
      raise ValueError(f"x: must flatten to in_features={self.in_features} per example, got shape "
                       f"{tuple(jnp.shape(x))}")

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               submodel: SubModel | None = None) -> jax.Array:
    del train, key  # no dropout or normalisation statistics in the trunk
    s = self.check_submodel(submodel)
    h = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    for layer in self.layers[: s.depth]:
      h = nnx.relu(_dense(h, layer, s.width))
    return h


class _SortedBlock(nnx.Module):
  """Pre-norm transformer block with a head axis on its attention weights and sliceable FFN units."""

  def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
    head_dim = dim // num_heads
    init = nnx.initializers.lecun_normal()
    self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
    # q, k, v kernels (dim, 3, heads, head_dim) and output kernel (heads, head_dim, dim): a head axis to slice.
    self.qkv = nnx.Param(init(rngs.params(), (dim, 3 * dim)).reshape(dim, 3, num_heads, head_dim))
    self.qkv_bias = nnx.Param(jnp.zeros((3, num_heads, head_dim)))
    self.out = nnx.Param(init(rngs.params(), (dim, dim)).reshape(num_heads, head_dim, dim))
    self.out_bias = nnx.Param(jnp.zeros((dim,)))
    self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
    self.fc1 = nnx.Linear(dim, mlp_dim, rngs=rngs)
    self.fc2 = nnx.Linear(mlp_dim, dim, rngs=rngs)

  def __call__(self, x: jax.Array, heads: int, width: int) -> jax.Array:
    y = self.norm1(x)
    qkv = jnp.einsum("btd,dshe->sbthe", y, self.qkv[...][:, :, :heads]) + self.qkv_bias[...][:, None, None, :heads]
    q, k, v = qkv[0], qkv[1], qkv[2]
    att = jax.nn.softmax(jnp.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(q.shape[-1]), axis=-1)
    o = jnp.einsum("bhqk,bkhe->bqhe", att, v)
    x = x + jnp.einsum("bqhe,hed->bqd", o, self.out[...][:heads]) + self.out_bias[...]
    h = nnx.gelu(_dense(self.norm2(x), self.fc1, width))
    return x + h @ self.fc2.kernel[...][:width] + self.fc2.bias[...]


class SortedViT(_Sorted, Classifier):
  """A pre-norm Vision Transformer whose sub-models are its leading blocks, heads and FFN units.

  Square images are cut into ``patch_size`` patches, linearly embedded to ``dim``, prefixed with a
  class token and given learned positions; ``depth`` blocks of multi-head self-attention
  (``num_heads`` heads of ``dim / num_heads``) and a GELU feed-forward layer of ``mlp_dim`` units
  follow, then a LayerNorm and the linear head on the class token. Sub-model
  ``SubModel(depth=d, width=w, heads=a)`` runs the first ``d`` blocks with the first ``a`` heads of
  each attention (the output projection summing those heads only) and the first ``w`` units of each
  feed-forward layer; the token width ``dim`` is never sliced. ``full_submodel`` is
  ``SubModel(depth, mlp_dim, num_heads)``. The attention is this module's own (a head axis on its
  weights), not ``nnx.MultiHeadAttention``, so its parameters are not `jaxdyn.models.ViT`'s.

  Args:
    in_channels: input channels.
    num_classes: number of logits.
    image_size: height (= width) of the square input.
    patch_size: side of the square patches; must divide ``image_size``.
    dim: token width.
    depth: number of blocks.
    num_heads: attention heads; must divide ``dim``.
    mlp_dim: hidden units of each feed-forward layer.
    dropout_rate: dropout before the head, in [0, 1).
    rngs: ``nnx.Rngs`` for initialisation.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> m = SortedViT(1, 10, image_size=8, patch_size=4, dim=16, depth=2, num_heads=4, mlp_dim=32,
    ...               rngs=nnx.Rngs(0))
    >>> m(jnp.ones((2, 8, 8, 1)), submodel=SubModel(depth=1, width=8, heads=2)).shape
    (2, 10)
  """

  def __init__(self, in_channels: int, num_classes: int, *, image_size: int = 32, patch_size: int = 4,
               dim: int = 64, depth: int = 4, num_heads: int = 4, mlp_dim: int = 128, dropout_rate: float = 0.0,
               rngs: nnx.Rngs):
    in_channels, num_classes, image_size, patch_size, dim, depth, num_heads, mlp_dim = (
        _validation.check_int(name, v, lower=1) for name, v in dict(
            in_channels=in_channels, num_classes=num_classes, image_size=image_size, patch_size=patch_size,
            dim=dim, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim).items())
    if image_size % patch_size:
      raise ValueError(f"patch_size: must divide image_size={image_size}, got {patch_size}")
    if dim % num_heads:
      raise ValueError(f"num_heads: must divide dim={dim}, got {num_heads}")
    self.in_channels, self.num_classes, self.image_size, self.patch_size = in_channels, num_classes, image_size, \
        patch_size
    self.dim, self.depth, self.num_heads, self.mlp_dim = dim, depth, num_heads, mlp_dim
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)
    self.input_shape = (image_size, image_size, in_channels)
    n = (image_size // patch_size) ** 2
    self.patch = nnx.Linear(patch_size * patch_size * in_channels, dim, rngs=rngs)
    self.cls = nnx.Param(jnp.zeros((1, 1, dim)))
    self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, n + 1, dim)))
    self.blocks = nnx.List([_SortedBlock(dim, num_heads, mlp_dim, rngs=rngs) for _ in range(depth)])
    self.norm = nnx.LayerNorm(dim, rngs=rngs)
    self.head = nnx.Linear(dim, num_classes, rngs=rngs)
    self.full_submodel = SubModel(depth, mlp_dim, num_heads)

  def config(self, submodel: SubModel) -> dict:
    """The constructor arguments of the standalone model of ``submodel`` (`export_submodel`)."""
    s = self.check_submodel(submodel)
    return dict(in_channels=self.in_channels, num_classes=self.num_classes, image_size=self.image_size,
                patch_size=self.patch_size, dim=self.dim, depth=s.depth, num_heads=s.heads, mlp_dim=s.width,
                dropout_rate=self.dropout_rate)

  def check_input(self, x: jax.Array) -> None:
    check_input_shape(x, self.input_shape, "images")

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               submodel: SubModel | None = None) -> jax.Array:
    del train, key
    s = self.check_submodel(submodel)
    b, p, g = x.shape[0], self.patch_size, self.image_size // self.patch_size
    patches = x.reshape(b, g, p, g, p, self.in_channels).transpose(0, 1, 3, 2, 4, 5).reshape(
        b, g * g, p * p * self.in_channels)
    tokens = self.patch(patches)
    tokens = jnp.concatenate([jnp.broadcast_to(self.cls[...], (b, 1, self.dim)).astype(tokens.dtype), tokens], 1)
    h = tokens + self.pos[...]
    for block in self.blocks[: s.depth]:
      h = block(h, s.heads, s.width)
    return self.norm(h[:, 0])


def _check_sorted_model(model) -> None:
  if not isinstance(model, _Sorted):
    raise TypeError(f"model: must be a jaxdyn.schemes.SortedMLP or SortedViT, got {type(model).__name__}")


def _check_submodels(model, submodels) -> tuple[SubModel, ...]:
  if isinstance(submodels, SubModel) or not isinstance(submodels, (tuple, list)):
    raise TypeError(f"submodels: must be a tuple or list of jaxdyn.schemes.SubModel, got {type(submodels).__name__}")
  if not submodels:
    raise ValueError("submodels: must hold at least one sub-model, got none")
  return tuple(model.check_submodel(s, "submodels") for s in submodels)


def sortednet_loss(model: nnx.Module, x: jax.Array, labels: jax.Array, submodels: Sequence[SubModel],
                   key: jax.Array, *, num_samples: int = 1, share_batch: bool = False,
                   train: bool = True) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The SortedNet objective of one update: mean cross-entropy of ``G`` sampled sub-models.

  .. math::  L = \\frac1G \\sum_{j=1}^G \\mathrm{CE}\\big(f(x_j; \\theta_{b_j}), y_j\\big),\\qquad
             (b_1..b_G) = \\text{sample\\_submodels}(k_s, |B|, G)

  so ``jax.grad`` of it is the gradient accumulated over the ``G`` sampled sub-models (module
  docstring). ``x_j`` is the ``j``-th of ``G`` equal consecutive micro-batches of ``x`` (default) or
  ``x`` itself (``share_batch=True``). Each sampled sub-model runs under ``lax.switch`` over the
  ladder, so only its sliced forward and backward are computed and every parameter outside the
  union of the sampled slices gets an exactly zero gradient. The sampling key is
  ``fold_in(key, 0)``, the dropout key of draw ``j`` ``fold_in(key, j + 1)``.

  Args:
    model: a `SortedMLP` or `SortedViT` (its parameters may be traced, e.g. inside ``jax.grad``).
    x: a batch of inputs; with ``share_batch=False`` its size must be a multiple of ``num_samples``.
    labels: integer class ids ``(N,)``; out of range: an eager error, NaN under ``jit``.
    submodels: the ladder ``B`` (e.g. `sorted_ladder` of ``model.full_submodel``).
    key: a `jax.random` key.
    num_samples: ``G >= 1``, sub-models accumulated per update.
    share_batch: run every sampled sub-model on the whole batch instead of one micro-batch each.
    train: the mode of the sub-models' forward passes (dropout).

  Returns:
    ``(loss, aux)``: the scalar mean loss, and ``aux`` with ``"logits"`` ``(N, classes)`` (each
    example's logits from the sub-model that saw it; with ``share_batch``, the first sampled
    sub-model's) and ``"indices"`` ``(G,)`` (the sampled ladder positions, in order).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> m = SortedMLP(4, 3, hidden=8, rngs=nnx.Rngs(0))
    >>> ladder = sorted_ladder(m.full_submodel, 4)
    >>> loss, aux = sortednet_loss(m, jnp.ones((6, 4)), jnp.array([0, 1, 2, 0, 1, 2]), ladder,
    ...                            jax.random.key(0), num_samples=2)
    >>> loss.shape, aux["logits"].shape, aux["indices"].shape
    ((), (6, 3), (2,))
  """
  _check_sorted_model(model)
  ladder = _check_submodels(model, submodels)
  _validation.check_key("key", key)
  g = _validation.check_int("num_samples", num_samples, lower=1)
  model.check_input(x)
  _validation.check_nonempty("x", x)
  n, k = jnp.shape(x)[0], model.num_classes
  _validation.check_integer_labels("labels", labels, k, shape=(n,))
  if not share_batch and n % g:
    raise ValueError(f"x: a batch of {n} examples must split into num_samples={g} equal micro-batches")
  idx = sample_submodels(jax.random.fold_in(key, 0), len(ladder), g)
  graphdef, state = nnx.split(model)

  def branch(s):
    def run(state, xb, kb):
      return nnx.merge(graphdef, state)(xb, train=train, key=kb, submodel=s)
    return run

  branches = [branch(s) for s in ladder]
  m = n if share_batch else n // g
  losses, logits = [], []
  for j in range(g):
    xb, yb = (x, labels) if share_batch else (x[j * m:(j + 1) * m], labels[j * m:(j + 1) * m])
    out = jax.lax.switch(idx[j], branches, state, xb, jax.random.fold_in(key, j + 1))
    ce = optax.softmax_cross_entropy_with_integer_labels(out, jnp.clip(yb, 0, k - 1))
    losses.append(jnp.mean(_validation.nan_unless(_validation.labels_valid(yb, k), ce)))
    logits.append(out)
  all_logits = logits[0] if share_batch else jnp.concatenate(logits, 0)
  return jnp.mean(jnp.stack(losses)), {"logits": all_logits, "indices": idx}


def evaluate_submodels(model: nnx.Module, x: jax.Array, labels: jax.Array, submodels: Sequence[SubModel]
                       ) -> jax.Array:
  """Test accuracy of every sub-model of ``submodels``, all from the one set of weights (inference mode).

  .. math::  \\mathrm{acc}_b = \\frac1N \\sum_i [\\arg\\max f(x_i; \\theta_b) = y_i]

  Args:
    model: a `SortedMLP` or `SortedViT`.
    x: a non-empty batch of inputs ``(N, ...)``.
    labels: integer class ids ``(N,)``; out of range: an eager error, NaN under ``jit``.
    submodels: the sub-models to evaluate.

  Returns:
    A float32 array ``(len(submodels),)`` of accuracies, in the order of ``submodels``. A sub-model
    whose logits hold a NaN or an infinity (e.g. from a NaN input) gets accuracy NaN, never a number.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> m = SortedMLP(4, 3, hidden=8, rngs=nnx.Rngs(0))
    >>> evaluate_submodels(m, jnp.ones((5, 4)), jnp.zeros(5, jnp.int32), sorted_ladder(m.full_submodel, 2)).shape
    (2,)
  """
  _check_sorted_model(model)
  ladder = _check_submodels(model, submodels)
  model.check_input(x)
  _validation.check_nonempty("x", x)
  k = model.num_classes
  _validation.check_integer_labels("labels", labels, k, shape=(jnp.shape(x)[0],))
  ok = jnp.all(_validation.labels_valid(labels, k))
  accs = []
  for s in ladder:
    logits = model(x, train=False, submodel=s)
    acc = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    accs.append(_validation.nan_unless(ok & jnp.all(jnp.isfinite(logits)), acc))
  return jnp.stack(accs)


def export_submodel(model: nnx.Module, submodel: SubModel) -> nnx.Module:
  """Sub-model ``submodel`` as a standalone model: a new model of the smaller configuration.

  A `SortedMLP` becomes ``SortedMLP(hidden=width, depth=depth)``, a `SortedViT` becomes
  ``SortedViT(depth=depth, num_heads=heads, mlp_dim=width)`` (same token width, patches, classes);
  every parameter of the new model is the leading slice of the corresponding one of ``model`` (the
  blocks past ``depth`` dropped), so the exported model computes ``model(x, submodel=submodel)``
  bit for bit, with only the sub-model's parameters.

  Args:
    model: a `SortedMLP` or `SortedViT`.
    submodel: the `SubModel` to export.

  Returns:
    A new model of ``type(model)`` (in inference mode) whose ``full_submodel`` is ``submodel``.

  Example:
    >>> from flax import nnx
    >>> m = SortedMLP(4, 3, hidden=8, depth=3, rngs=nnx.Rngs(0))
    >>> small = export_submodel(m, SubModel(depth=2, width=4))
    >>> small.full_submodel, small.layers[0].kernel.shape
    (SubModel(depth=2, width=4, heads=None), (4, 4))
  """
  _check_sorted_model(model)
  s = model.check_submodel(_check_submodel_kind("submodel", submodel))
  cls, kwargs = type(model), model.config(s)
  small = nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))
  _, abstract = nnx.split(small, nnx.Param)
  full = nnx.to_pure_dict(nnx.state(model, nnx.Param))

  def take(path, leaf):
    node = full
    for p in path:
      node = node[getattr(p, "key", getattr(p, "idx", p))]
    return node[tuple(slice(0, d) for d in leaf.shape)]

  sliced = jax.tree_util.tree_map_with_path(take, nnx.to_pure_dict(abstract))
  nnx.update(small, sliced)
  small.eval()
  return small
