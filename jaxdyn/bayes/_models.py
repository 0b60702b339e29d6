"""Bayesian (mean-field Gaussian) versions of the reference MLP and CIFAR ResNet-18 for SSVI."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn.bayes._layers import GaussianConv, GaussianDense, check_density
from jaxdyn.models._base import check_positive_int

__all__ = ["BayesCNN", "BayesMLP", "BayesResNet18"]


class _Keys:
  """Per-layer keys fold_in(key, 0), fold_in(key, 1), ... in call order; None without a key."""

  def __init__(self, key):
    self.key, self.i = key, 0

  def __call__(self):
    if self.key is None:
      return None
    self.i += 1
    return jax.random.fold_in(self.key, self.i - 1)


class BayesMLP(nnx.Module):
  """ReLU MLP of `GaussianDense` layers; the first layer dense, the others (head too) at ``density``.

  Following the paper's rule that the first layer stays dense. Weights are sampled iff a ``key`` is
  given (``sampling`` "local" or "weights"); ``train`` is accepted for the harness's interface and
  has no other effect (no dropout, no normalisation).

  Args:
    in_features: size of a flattened input.
    num_classes: number of logits.
    hidden: hidden widths (at least one).
    density: active fraction of every layer but the first, in (0, 1].
    dense_first: keep the first layer dense (the paper's rule); False sparsifies it too.
    mu_init_std: std of initial means, None for 1/sqrt(fan_in).
    sigma_init: (mean, std) of the initial sigma's folded normal.
    rngs: ``nnx.Rngs``.

  Returns:
    The module; ``model(x, *, train=False, key=None, return_features=False, sampling="local")``.

  Example:
    >>> m = BayesMLP(40, 10, hidden=(32,), density=0.1, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((2, 40)), key=jax.random.key(0)).shape
    (2, 10)

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """

  def __init__(self, in_features: int, num_classes: int, *, hidden: Sequence[int] = (256, 256),
               density: float = 1.0, dense_first: bool = True, mu_init_std: float | None = None,
               sigma_init: tuple[float, float] = (6e-4, 5e-4), rngs: nnx.Rngs):
    check_density(density)
    check_positive_int("in_features", in_features)
    check_positive_int("num_classes", num_classes)
    hidden = tuple(hidden)
    if not hidden:
      raise ValueError("hidden: need at least one hidden layer")
    for w in hidden:
      check_positive_int("hidden", w)
    widths = (in_features, *hidden)
    kw = dict(mu_init_std=mu_init_std, sigma_init=tuple(sigma_init), rngs=rngs)
    self.layers = nnx.List([
        GaussianDense(a, b, density=1.0 if (i == 0 and dense_first) else density, **kw)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))])
    self.head = GaussianDense(widths[-1], num_classes, density=density, **kw)

  def features(self, x, *, key=None, sampling="local"):
    keys = _Keys(key)
    h = x.reshape(x.shape[0], -1)
    for layer in self.layers:
      h = nnx.relu(layer(h, key=keys(), sampling=sampling))
    return h

  def __call__(self, x, *, train: bool = False, key=None, return_features: bool = False,
               sampling: str = "local"):
    del train
    h = self.features(x, key=None if key is None else jax.random.fold_in(key, 0), sampling=sampling)
    logits = self.head(h, key=None if key is None else jax.random.fold_in(key, 1), sampling=sampling)
    return (logits, h) if return_features else logits


class BayesCNN(nnx.Module):
  """The reference small CNN (`jaxdyn.models.CNN`) with `GaussianConv` / `GaussianDense` layers.

  Conv-ReLU-MaxPool blocks (kernel 3, "SAME", pool 2), global average pooling, a dense ReLU layer
  (the penultimate features) and the head. The first conv is dense (the paper's rule); every other
  layer is at ``density``. Inputs ``(batch, *spatial, channels)``; a 1-D signal ``(batch, length)``
  gets a channel axis. Weights are sampled iff a ``key`` is given; ``train`` has no other effect.

  Args:
    in_channels: input channels.
    num_classes: number of logits.
    spatial_dims: 1 for signals, 2 for images.
    channels: output channels of each conv block.
    hidden: width of the dense layer.
    density: active fraction of all layers but the first, in (0, 1].
    mu_init_std: std of initial means, None for 1/sqrt(fan_in).
    sigma_init: (mean, std) of the initial sigma's folded normal.
    rngs: ``nnx.Rngs``.

  Returns:
    The module; ``model(x, *, train=False, key=None, return_features=False, sampling="local")``.

  Example:
    >>> m = BayesCNN(1, 10, spatial_dims=1, density=0.1, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((2, 40)), key=jax.random.key(0)).shape
    (2, 10)

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """

  def __init__(self, in_channels: int, num_classes: int, *, spatial_dims: int = 1,
               channels: Sequence[int] = (32, 64), hidden: int = 128, density: float = 1.0,
               mu_init_std: float | None = None, sigma_init: tuple[float, float] = (6e-4, 5e-4),
               rngs: nnx.Rngs):
    check_density(density)
    if spatial_dims not in (1, 2):
      raise ValueError(f"spatial_dims: must be 1 or 2, got {spatial_dims!r}")
    channels = tuple(channels)
    if not channels:
      raise ValueError("channels: need at least one conv block")
    for c in channels:
      check_positive_int("channels", c)
    for name, v in (("in_channels", in_channels), ("num_classes", num_classes), ("hidden", hidden)):
      check_positive_int(name, v)
    self.spatial_dims = spatial_dims
    kw = dict(mu_init_std=mu_init_std, sigma_init=tuple(sigma_init), rngs=rngs)
    widths = (in_channels, *channels)
    self.convs = nnx.List([
        GaussianConv(a, b, (3,) * spatial_dims, density=1.0 if i == 0 else density, use_bias=True, **kw)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))])
    self.dense = GaussianDense(widths[-1], hidden, density=density, **kw)
    self.head = GaussianDense(hidden, num_classes, density=density, **kw)

  def __call__(self, x, *, train: bool = False, key=None, return_features: bool = False,
               sampling: str = "local"):
    del train
    keys = _Keys(key)
    if x.ndim == self.spatial_dims + 1:
      x = x[..., None]
    window = (2,) * self.spatial_dims
    for conv in self.convs:
      x = nnx.relu(conv(x, key=keys(), sampling=sampling))
      x = nnx.max_pool(x, window_shape=window, strides=window, padding="SAME")
    x = jnp.mean(x, axis=tuple(range(1, 1 + self.spatial_dims)))
    h = nnx.relu(self.dense(x, key=keys(), sampling=sampling))
    logits = self.head(h, key=keys(), sampling=sampling)
    return (logits, h) if return_features else logits


class _Block(nnx.Module):
  def __init__(self, cin, cout, stride, density, kw, rngs):
    self.conv1 = GaussianConv(cin, cout, (3, 3), strides=stride, density=density, rngs=rngs, **kw)
    self.bn1 = nnx.BatchNorm(cout, rngs=rngs)
    self.conv2 = GaussianConv(cout, cout, (3, 3), density=density, rngs=rngs, **kw)
    self.bn2 = nnx.BatchNorm(cout, rngs=rngs)
    if stride != 1 or cin != cout:
      self.short_conv = GaussianConv(cin, cout, (1, 1), strides=stride, density=density, rngs=rngs, **kw)
      self.short_bn = nnx.BatchNorm(cout, rngs=rngs)
    else:
      self.short_conv = self.short_bn = None

  def __call__(self, x, *, train, keys, sampling):
    ra = not train
    y = nnx.relu(self.bn1(self.conv1(x, key=keys(), sampling=sampling), use_running_average=ra))
    y = self.bn2(self.conv2(y, key=keys(), sampling=sampling), use_running_average=ra)
    if self.short_conv is not None:
      x = self.short_bn(self.short_conv(x, key=keys(), sampling=sampling), use_running_average=ra)
    return nnx.relu(y + x)


class BayesResNet18(nnx.Module):
  """CIFAR ResNet-18 (3x3 stem, no max-pool) of `GaussianConv` layers with BatchNorm.

  The stem conv is dense; every other conv (shortcuts too) and the linear head are at ``density``,
  as in the authors' code. BatchNorm uses batch statistics iff ``train``; weights are sampled iff a
  ``key`` is given, so ``model(x, train=False, key=k, sampling="weights")`` is one posterior sample
  with BatchNorm's running averages (Monte Carlo prediction).

  Args:
    in_channels: input channels.
    num_classes: number of logits.
    density: active fraction of all layers but the stem, in (0, 1].
    width: channels of the first stage (64).
    mu_init_std: std of initial means (0.01, the authors' value).
    sigma_init: (mean, std) of the initial sigma's folded normal.
    rngs: ``nnx.Rngs``.

  Returns:
    The module; ``model(x, *, train=False, key=None, return_features=False, sampling="local")``.

  Example:
    >>> m = BayesResNet18(3, 10, density=0.1, width=4, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((1, 8, 8, 3))).shape
    (1, 10)

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """

  def __init__(self, in_channels: int, num_classes: int, *, density: float = 1.0, width: int = 64,
               mu_init_std: float | None = 0.01, sigma_init: tuple[float, float] = (6e-4, 5e-4),
               rngs: nnx.Rngs):
    check_density(density)
    for name, v in (("in_channels", in_channels), ("num_classes", num_classes), ("width", width)):
      check_positive_int(name, v)
    kw = dict(mu_init_std=mu_init_std, sigma_init=tuple(sigma_init))
    self.stem = GaussianConv(in_channels, width, (3, 3), density=1.0, rngs=rngs, **kw)
    self.stem_bn = nnx.BatchNorm(width, rngs=rngs)
    blocks, cin = [], width
    for i in range(4):
      w = width * 2**i
      for j in range(2):
        blocks.append(_Block(cin, w, 2 if (i > 0 and j == 0) else 1, density, kw, rngs))
        cin = w
    self.blocks = nnx.List(blocks)
    self.head = GaussianDense(cin, num_classes, density=density, rngs=rngs, **kw)

  def __call__(self, x, *, train: bool = False, key=None, return_features: bool = False,
               sampling: str = "local"):
    keys = _Keys(key)
    x = nnx.relu(self.stem_bn(self.stem(x, key=keys(), sampling=sampling), use_running_average=not train))
    for b in self.blocks:
      x = b(x, train=train, keys=keys, sampling=sampling)
    h = jnp.mean(x, axis=(1, 2))
    logits = self.head(h, key=keys(), sampling=sampling)
    return (logits, h) if return_features else logits
