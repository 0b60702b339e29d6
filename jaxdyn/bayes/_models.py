"""Bayesian (mean-field Gaussian) versions of the reference MLP, CNN and CIFAR ResNet-18 for SSVI.

Every model is called as ``model(x, *, train=None, key=None, return_features=False,
sampling="local")`` and follows `jaxdyn.models.HeadSplit`: ``features(x, *, train=None, key=None,
sampling="local")`` gives the penultimate features, ``head`` is the last `GaussianDense` and
``apply_head(h, *, train=None, key=None, sampling="local")`` applies it.

Mode, as in `jaxdyn.models` (NNX's ``model.train()`` / ``model.eval()``, which set the class
attribute ``deterministic``; an explicit ``train=`` wins; a new model is in inference mode):

- training: the weights are sampled from ``key``, which is then required (``"key: a jax.random key
  is required in training mode ..."``, as a dropout model needs its key), with the local
  reparameterisation by default (``sampling``); BatchNorm uses batch statistics and updates its
  running averages;
- inference: the mean weights, unless a ``key`` is given, which draws one posterior sample
  (``sampling="weights"`` for Monte Carlo prediction, `mc_predictive`); BatchNorm uses its running
  averages.

Keys: the Gaussian layers draw from fold_in(key, 0), fold_in(key, 1), ... in call order, the head
last (the MLP's hidden layers share fold_in(key, 0) and draw from fold_in(fold_in(key, 0), i)), so
``features(x, key=k)`` is exactly the features of ``model(x, key=k)``. A key, when given, is
checked by name. ``x`` must hold at least one example (an empty batch is rejected naming ``x``:
BatchNorm statistics of no example are NaN); a NaN or an infinity in an example gives non-finite
logits for it (for BatchNorm in training mode, for the whole batch).

Shared arguments: ``density`` (the active fraction of every layer but the first, in (0, 1]),
``mu_init_std`` and ``sigma_init`` (the layers' initialisation, as in `GaussianDense`) and ``rngs``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdyn import _validation
from jaxdyn.bayes._layers import SAMPLING, GaussianConv, GaussianDense, check_density
from jaxdyn.models import is_training

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


class _BayesClassifier(nnx.Module):
  """The calling convention, mode and checks the Bayesian models share; subclasses give `_trunk`."""

  head: GaussianDense
  deterministic: bool = True  # NNX's mode attribute: model.train() sets False, model.eval() True

  def _mode(self, name: str, x, train: bool | None, key, sampling: str) -> bool:
    """Resolves ``train`` (explicit, else the NNX mode) and checks the call's arguments."""
    train = is_training(self, train)
    _validation.check_choice("sampling", sampling, SAMPLING)
    if train:
      _validation.check_key("key", key, why=" in training mode (the weights are sampled)")
    elif key is not None:
      _validation.check_key("key", key)
    _validation.check_nonempty(name, x)
    return train

  def _trunk(self, x, *, train: bool, keys: _Keys, sampling: str) -> jax.Array:
    raise NotImplementedError

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               sampling: str = "local") -> jax.Array:
    """The penultimate features (those of ``model(x, key=key, train=train)``)."""
    train = self._mode("x", x, train, key, sampling)
    return self._trunk(x, train=train, keys=_Keys(key), sampling=sampling)

  def apply_head(self, h: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
                 sampling: str = "local") -> jax.Array:
    """The head on features ``h``, sampled from ``key`` itself when one is given."""
    self._mode("h", h, train, key, sampling)
    return self.head(h, key=key, sampling=sampling)

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               return_features: bool = False, sampling: str = "local"):
    train = self._mode("x", x, train, key, sampling)
    keys = _Keys(key)
    h = self._trunk(x, train=train, keys=keys, sampling=sampling)
    logits = self.head(h, key=keys(), sampling=sampling)
    return (logits, h) if return_features else logits


class BayesMLP(_BayesClassifier):
  """ReLU MLP of `GaussianDense` layers; the first layer dense, the others (head too) at ``density``.

  Following the paper's rule that the first layer stays dense. Inputs are flattened per example.
  No dropout and no normalisation: the mode only decides whether the weights are sampled (see the
  module docstring for the call, the mode, keys and inputs).

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
    The module: logits ``(batch, num_classes)``, features ``(batch, hidden[-1])``.

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
    density = check_density(density)
    in_features = _validation.check_int("in_features", in_features, lower=1)
    num_classes = _validation.check_int("num_classes", num_classes, lower=1)
    hidden = tuple(_validation.check_int("hidden", w, lower=1) for w in hidden)
    if not hidden:
      raise ValueError("hidden: need at least one hidden layer")
    widths = (in_features, *hidden)
    kw = dict(mu_init_std=mu_init_std, sigma_init=sigma_init, rngs=rngs)
    self.layers = nnx.List([
        GaussianDense(a, b, density=1.0 if (i == 0 and dense_first) else density, **kw)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))])
    self.head = GaussianDense(widths[-1], num_classes, density=density, **kw)

  def _trunk(self, x, *, train, keys, sampling):
    del train
    layer_keys = _Keys(keys())  # the hidden layers share one key (the authors' order)
    h = x.reshape(x.shape[0], -1)
    for layer in self.layers:
      h = nnx.relu(layer(h, key=layer_keys(), sampling=sampling))
    return h


class BayesCNN(_BayesClassifier):
  """The reference small CNN (`jaxdyn.models.CNN`) with `GaussianConv` / `GaussianDense` layers.

  Conv-ReLU-MaxPool blocks (kernel 3, "SAME", pool 2), global average pooling, a dense ReLU layer
  (the penultimate features) and the head. The first conv is dense (the paper's rule); every other
  layer is at ``density``. Inputs ``(batch, *spatial, channels)``; a 1-D signal ``(batch, length)``
  gets a channel axis. No dropout and no normalisation: the mode only decides whether the weights
  are sampled (the module docstring describes the call).

  Args:
    in_channels: input channels.
    num_classes: number of logits.
    spatial_dims: 1 for signals, 2 for images.
    channels: output channels of each conv block.
    hidden: width of the dense layer.
    density: active fraction of all layers but the first, in (0, 1].
    mu_init_std: as in `BayesMLP`.
    sigma_init: as in `BayesMLP`.
    rngs: ``nnx.Rngs``.

  Returns:
    The module: logits ``(batch, num_classes)``, features ``(batch, hidden)`` (after the dense ReLU).

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
    density = check_density(density)
    self.spatial_dims = _validation.check_int("spatial_dims", spatial_dims, lower=1, upper=2)
    channels = tuple(_validation.check_int("channels", c, lower=1) for c in channels)
    if not channels:
      raise ValueError("channels: need at least one conv block")
    in_channels, num_classes, hidden = (_validation.check_int(name, v, lower=1) for name, v in (
        ("in_channels", in_channels), ("num_classes", num_classes), ("hidden", hidden)))
    kw = dict(mu_init_std=mu_init_std, sigma_init=sigma_init, rngs=rngs)
    widths = (in_channels, *channels)
    self.convs = nnx.List([
        GaussianConv(a, b, (3,) * self.spatial_dims, density=1.0 if i == 0 else density, use_bias=True, **kw)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))])
    self.dense = GaussianDense(widths[-1], hidden, density=density, **kw)
    self.head = GaussianDense(hidden, num_classes, density=density, **kw)

  def _trunk(self, x, *, train, keys, sampling):
    del train
    if x.ndim == self.spatial_dims + 1:
      x = x[..., None]
    window = (2,) * self.spatial_dims
    for conv in self.convs:
      x = nnx.relu(conv(x, key=keys(), sampling=sampling))
      x = nnx.max_pool(x, window_shape=window, strides=window, padding="SAME")
    x = jnp.mean(x, axis=tuple(range(1, 1 + self.spatial_dims)))
    return nnx.relu(self.dense(x, key=keys(), sampling=sampling))


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


class BayesResNet18(_BayesClassifier):
  """CIFAR ResNet-18 (3x3 stem, no max-pool) of `GaussianConv` layers with BatchNorm.

  The stem conv is dense; every other conv (shortcuts too) and the linear head are at ``density``,
  as in the authors' code. BatchNorm follows the mode (batch statistics in training, running
  averages in inference), so ``model(x, train=False, key=k, sampling="weights")`` is one posterior
  sample with BatchNorm's running averages (Monte Carlo prediction). The module docstring
  describes the call, the mode, keys and inputs.

  Args:
    in_channels: input channels.
    num_classes: number of logits.
    density: active fraction of all layers but the stem, in (0, 1].
    width: channels of the first stage (64).
    stage_sizes: blocks per stage, ``(2, 2, 2, 2)`` for ResNet-18; stage ``i`` has ``width * 2**i``
      channels (fewer stages or blocks make a smaller network of the same kind, for tests).
    mu_init_std: std of initial means (0.01, the authors' value), None for 1/sqrt(fan_in).
    sigma_init: as in `BayesMLP`.
    rngs: ``nnx.Rngs``.

  Returns:
    The module: logits ``(batch, num_classes)``, features ``(batch, 2**(S-1) * width)`` (pooled last
    of the S stages).

  Example:
    >>> m = BayesResNet18(3, 10, density=0.1, width=4, rngs=nnx.Rngs(0))
    >>> m(jnp.ones((1, 8, 8, 3))).shape
    (1, 10)

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """

  def __init__(self, in_channels: int, num_classes: int, *, density: float = 1.0, width: int = 64,
               stage_sizes: Sequence[int] = (2, 2, 2, 2), mu_init_std: float | None = 0.01, sigma_init: tuple[float, float] = (6e-4, 5e-4),
               rngs: nnx.Rngs):
    density = check_density(density)
    in_channels, num_classes, width = (_validation.check_int(name, v, lower=1) for name, v in (
        ("in_channels", in_channels), ("num_classes", num_classes), ("width", width)))
    stage_sizes = tuple(_validation.check_int("stage_sizes", n, lower=1) for n in stage_sizes)
    if not stage_sizes:
      raise ValueError("stage_sizes: must list at least one stage, got ()")
    kw = dict(mu_init_std=mu_init_std, sigma_init=sigma_init)
    self.stem = GaussianConv(in_channels, width, (3, 3), density=1.0, rngs=rngs, **kw)
    self.stem_bn = nnx.BatchNorm(width, rngs=rngs)
    blocks, cin = [], width
    for i, n in enumerate(stage_sizes):
      w = width * 2**i
      for j in range(n):
        blocks.append(_Block(cin, w, 2 if (i > 0 and j == 0) else 1, density, kw, rngs))
        cin = w
    self.blocks = nnx.List(blocks)
    self.head = GaussianDense(cin, num_classes, density=density, rngs=rngs, **kw)

  def _trunk(self, x, *, train, keys, sampling):
    x = nnx.relu(self.stem_bn(self.stem(x, key=keys(), sampling=sampling), use_running_average=not train))
    for b in self.blocks:
      x = b(x, train=train, keys=keys, sampling=sampling)
    return jnp.mean(x, axis=(1, 2))
