"""Multi-sample dropout (Inoue, 2019): M dropout masks on one trunk's features, mean of M losses.

The trunk runs once; only the dropout, the head and the loss are repeated, vectorised with
`jax.vmap` over the M masks. The loss is the mean of the per-sample losses, which is a different
number from the loss of the averaged logits (see `multi_sample_dropout_loss`).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.typing import ArrayLike

from jaxdyn import _validation


class LossFn(Protocol):
  """A loss over one batch of logits: `loss_fn(*, logits, labels) -> scalar`."""

  def __call__(self, *, logits: jax.Array, labels: jax.Array) -> jax.Array:
    ...


HeadFn = Callable[[Any, jax.Array], jax.Array]


def softmax_cross_entropy_loss(*, logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Mean softmax cross-entropy with integer labels or soft (probability) labels.

  Integer labels have the shape of `logits` without its trailing class axis; floating labels are
  per-class probabilities with the shape of `logits`. The loss is averaged over all batch axes.

  Integer labels are range-checked eagerly (`labels: must lie in [0, K)`; -1 is not the last
  class). Under `jit`, where they cannot be checked, an out-of-range label makes the loss NaN, as
  does a NaN or an infinity (-inf included) anywhere in `logits`. An empty batch is rejected.

  Args:
    logits: `(..., num_classes)` unnormalised log-probabilities, at least one example and class.
    labels: `(...)` integer class indices in [0, num_classes), or `(..., num_classes)` floating
      class probabilities.

  Returns:
    A scalar: the mean cross-entropy.

  Example:
    >>> import jax.numpy as jnp
    >>> float(softmax_cross_entropy_loss(logits=jnp.zeros((2, 4)), labels=jnp.array([0, 3])))
    1.386...

  References:
    The default loss of `multi_sample_dropout_loss` (Inoue, 2019, https://arxiv.org/abs/1905.09788).
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.ndim < 1:
    raise ValueError(f"logits: must have a trailing class axis, got shape {logits.shape}")
  num_classes = logits.shape[-1]
  ok = jnp.all(jnp.isfinite(logits))  # -inf too: optax would ignore it off the label.
  if jnp.issubdtype(labels.dtype, jnp.integer):
    _validation.check_labels_for_logits("labels", labels, logits)
    ok &= jnp.all(_validation.labels_valid(labels, num_classes))
    per_example = optax.softmax_cross_entropy_with_integer_labels
  else:  # anything else must be soft labels; a wrong dtype is named there
    _validation.check_soft_labels("labels", labels, logits)
    per_example = optax.softmax_cross_entropy
  for axis in range(logits.ndim - 1):  # every batch axis, then the class axis
    _validation.check_nonempty("logits", logits, axis=axis)
  _validation.check_nonempty("logits", logits, axis=logits.ndim - 1, what="classes")
  return _validation.nan_unless(ok, per_example(logits, labels).mean())


def _check_hyperparameters(num_samples: Any, rate: Any) -> tuple[int, float]:
  return (_validation.check_int("num_samples", num_samples, lower=1),
          _validation.check_rate("rate", rate))


def _draw_masks(key: jax.Array, shape: tuple[int, ...], num_samples: int, rate: Any) -> jax.Array:
  keys = jax.random.split(key, num_samples)
  return jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - rate, shape))(keys)


def multi_sample_dropout_masks(
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    num_samples: int = 8,
    rate: float = 0.5,
) -> jax.Array:
  """The M boolean keep-masks that `multi_sample_dropout_loss` draws for features of `shape`.

  keep[m] = bernoulli(keys[m], 1 - rate, shape) with keys = jax.random.split(key, num_samples).

  Args:
    key: a `jax.random` key.
    shape: the shape of the features the masks apply to (a tuple of ints >= 0).
    num_samples: M, the number of masks (an int >= 1).
    rate: dropout probability p in [0, 1).

  Returns:
    A boolean array of shape `(num_samples, *shape)`, True where a feature is kept.

  Example:
    >>> import jax
    >>> multi_sample_dropout_masks(jax.random.key(0), (2, 3), num_samples=4).shape
    (4, 2, 3)
  """
  _validation.check_key("key", key)
  num_samples, rate = _check_hyperparameters(num_samples, rate)
  try:
    dims = tuple(shape)
  except TypeError:
    raise ValueError(f"shape: must be a tuple of ints >= 0, got {shape!r}") from None
  shape = tuple(_validation.check_int("shape", d, lower=0) for d in dims)
  return _draw_masks(key, shape, num_samples, rate)


def _keep_masks(key: Any, masks: Any, shape: tuple[int, ...], num_samples: int, rate: Any
                ) -> jax.Array:
  """The keep-masks: drawn from `key`, or the explicit `masks` (exactly one of the two)."""
  if masks is None:
    _validation.check_key("key", key, why=" (or explicit masks)")
    return _draw_masks(key, shape, num_samples, rate)
  if key is not None:
    raise ValueError("key: pass either key or masks, not both (masks replace the drawn ones)")
  masks = jnp.asarray(masks)
  if masks.dtype != jnp.bool_:
    raise TypeError(f"masks: must be boolean keep-masks (True = keep), got dtype {masks.dtype}")
  want = (num_samples, *shape)
  if masks.shape != want:
    raise ValueError(f"masks: must have shape (num_samples, *features.shape) = {want}, got "
                     f"{masks.shape}")
  return masks


def _drop(keep: jax.Array, features: jax.Array, rate: float) -> jax.Array:
  # Inverted dropout, h * mask / (1 - p), computed as nnx.Dropout does (same mask, same numbers).
  return jnp.where(keep, features / (1.0 - rate), jnp.zeros((), features.dtype))


def multi_sample_dropout_logits(
    head_fn: HeadFn,
    head_params: Any,
    features: ArrayLike,
    *,
    key: jax.Array | None = None,
    num_samples: int = 8,
    rate: float = 0.5,
    masks: ArrayLike | None = None,
) -> jax.Array:
  """Head logits for M independently dropped-out copies of the features, stacked on axis 0.

  logits[m] = head_fn(head_params, h * keep_m / (1 - p)), with keep_m as in
  `multi_sample_dropout_masks(key, h.shape, num_samples=M, rate=p)`, or `masks[m]` when explicit
  masks are given (a test hook: compare with a reference implementation on the same masks).

  A NaN or an infinity anywhere in `features` makes every logit NaN, even where every mask drops
  it. An empty batch gives empty logits, `(num_samples, *head_fn(head_params, h).shape)`.

  Args:
    head_fn: `head_fn(head_params, h) -> logits`, the layers after the dropout (shared weights).
    head_params: the head's parameters, any PyTree.
    features: h, the trunk's output before the dropout layer.
    key: a `jax.random` key; the M masks are drawn from `jax.random.split(key, num_samples)`.
      Required unless `masks` is given (exactly one of the two).
    num_samples: M, the number of dropout samples (an int >= 1).
    rate: dropout probability p in [0, 1); kept features are scaled by 1 / (1 - p).
    masks: optional boolean keep-masks of shape `(num_samples, *features.shape)` (True = keep),
      used instead of drawing them from `key`.

  Returns:
    The stacked logits, shape `(num_samples, *head_fn(head_params, h).shape)`.

  Example:
    >>> import jax.numpy as jnp
    >>> keep = jnp.array([[[True, False]], [[False, True]]])  # M = 2 masks for h of shape (1, 2)
    >>> multi_sample_dropout_logits(lambda w, h: h @ w, jnp.eye(2), jnp.array([[1.0, 2.0]]),
    ...                             masks=keep, num_samples=2, rate=0.5).tolist()
    [[[2.0, 0.0]], [[0.0, 4.0]]]
  """
  num_samples, rate = _check_hyperparameters(num_samples, rate)
  features = jnp.asarray(features)
  keep = _keep_masks(key, masks, features.shape, num_samples, rate)
  logits = jax.vmap(lambda k: head_fn(head_params, _drop(k, features, rate)))(keep)
  return _validation.nan_unless(jnp.all(jnp.isfinite(features)), logits)


def multi_sample_dropout_loss(
    head_fn: HeadFn,
    head_params: Any,
    features: ArrayLike,
    labels: ArrayLike,
    *,
    key: jax.Array | None = None,
    num_samples: int = 8,
    rate: float = 0.5,
    loss_fn: LossFn | None = None,
    return_mean_logits: bool = False,
    masks: ArrayLike | None = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  r"""Multi-sample dropout loss: the mean of M per-mask losses of one shared head on given features.

  .. math::

    L = \frac{1}{M} \sum_{m=1}^{M}
        \ell\left(\mathrm{head}\left(\frac{h \odot k_m}{1 - p}\right), y\right),
    \qquad k_m \sim \mathrm{Bernoulli}(1 - p) \text{ elementwise, independently.}

  This averages LOSSES, as the paper does (the final loss is the average of the M samples' losses).
  It is not the loss of the averaged logits,
  :math:`\ell(\frac{1}{M}\sum_m \mathrm{head}(\cdot), y)`, which some unofficial ports compute:
  with a linear head that is one dropout sample whose mask is the mean of the M masks, a different
  objective with a different gradient. The two agree when M = 1 or p = 0; for cross-entropy, which
  is convex in the logits, the mean of the losses is otherwise >= the loss of the mean (Jensen),
  strictly when the samples' logits differ.

  The trunk is not involved: `features` are its output, computed once. Only the dropout, the head
  and the loss are repeated, vectorised with `jax.vmap` over the M masks (one batched head call, no
  Python loop), so the extra cost is M head evaluations.

  Masks: keys = `jax.random.split(key, num_samples)`; mask m is
  `jax.random.bernoulli(keys[m], 1 - rate, features.shape)` (True = keep), applied as
  `where(mask, h / (1 - rate), 0)`. `multi_sample_dropout_masks` returns the same masks. Explicit
  `masks` replace the drawn ones (a test hook: compare with a reference on the same masks).

  Inputs: an empty batch (`features` with no rows) is rejected. With the default loss an
  out-of-range label raises eagerly and makes the loss NaN under `jit`, and a NaN or an infinity
  anywhere in `features` makes the loss NaN (even where every mask drops it).

  Left out: the paper's sample-diversity options (horizontal flip, or zero padding on the left for
  half the samples and on the right for the other half) act on the trunk's input or inner feature
  maps, so they need the trunk to run more than once (or a head that contains conv layers) and do
  not fit a function of the trunk's features. Apply such augmentations before the trunk if wanted.

  Args:
    head_fn: `head_fn(head_params, h) -> logits`, the layers after the dropout (shared weights).
    head_params: the head's parameters, any PyTree (differentiate the loss with respect to it).
    features: h, the trunk's output before the dropout layer, e.g. `(batch, dim)`, batch >= 1.
    labels: the targets passed unchanged to `loss_fn` for every sample.
    key: a `jax.random` key (see Masks above); required unless `masks` is given (exactly one).
    num_samples: M, the number of dropout samples (an int >= 1; the paper finds gains saturate near
      M = 8).
    rate: dropout probability p in [0, 1).
    loss_fn: `loss_fn(*, logits, labels) -> scalar` for one sample; default
      `softmax_cross_entropy_loss` (integer labels, or float labels with a trailing class axis).
    return_mean_logits: if True, also return the mean over the M samples of the logits, for
      metrics (it is not what the loss is computed from).
    masks: optional boolean keep-masks of shape `(num_samples, *features.shape)` (True = keep),
      used instead of drawing them from `key`.

  Returns:
    The scalar loss L, or `(L, mean_logits)` if `return_mean_logits`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxdyn.regularization import multi_sample_dropout_loss
    >>> w = jnp.ones((4, 3)) / 4
    >>> h = jnp.ones((2, 4))
    >>> loss = multi_sample_dropout_loss(lambda w, x: x @ w, w, h, jnp.array([0, 2]),
    ...                                  key=jax.random.key(0), num_samples=8, rate=0.5)
    >>> loss.shape
    ()

  References:
    Inoue, "Multi-Sample Dropout for Accelerated Training and Better Generalization", 2019,
    https://arxiv.org/abs/1905.09788. No official code has been released; this follows the paper.
  """
  loss_fn = softmax_cross_entropy_loss if loss_fn is None else loss_fn
  _validation.check_nonempty("features", features)
  labels = jnp.asarray(labels)
  logits = multi_sample_dropout_logits(
      head_fn, head_params, features, key=key, num_samples=num_samples, rate=rate, masks=masks)
  per_sample = jax.vmap(lambda z: loss_fn(logits=z, labels=labels))(logits)
  if per_sample.shape != (logits.shape[0],):
    raise ValueError(f"loss_fn: must return a scalar, got shape {per_sample.shape[1:]}")
  loss = jnp.mean(per_sample)
  if return_mean_logits:
    return loss, jnp.mean(logits, axis=0)
  return loss


class MultiSampleDropoutHead(nnx.Module):
  """A linear classifier head trained with multi-sample dropout; plain logits at evaluation.

  `__call__(h)` is the head without dropout (evaluation). `loss(h, labels, key=...)` is
  `multi_sample_dropout_loss` with this head: L = (1/M) sum_m loss(linear(h * k_m / (1 - p)), y).
  Differentiable w.r.t. the module's params with `nnx.grad`/`nnx.value_and_grad`, or via
  `nnx.split`/`nnx.merge` in a functional step; the key is a raw `jax.random` key.
  `loss(h, labels, masks=...)` takes explicit `(num_samples, *h.shape)` boolean keep-masks instead
  of a key.

  Args:
    in_features: dimension of the features h (an int >= 1).
    out_features: number of classes (an int >= 1).
    num_samples: M, the number of dropout samples (an int >= 1).
    rate: dropout probability p in [0, 1).
    rngs: `nnx.Rngs` used to initialise the linear layer.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxdyn.regularization import MultiSampleDropoutHead
    >>> head = MultiSampleDropoutHead(16, 10, num_samples=8, rate=0.5, rngs=nnx.Rngs(0))
    >>> h, y = jnp.ones((4, 16)), jnp.arange(4)
    >>> loss, grads = nnx.value_and_grad(lambda m: m.loss(h, y, key=jax.random.key(1)))(head)
    >>> head(h).shape
    (4, 10)

  References:
    Inoue, "Multi-Sample Dropout for Accelerated Training and Better Generalization", 2019,
    https://arxiv.org/abs/1905.09788 (no official code exists).
  """

  def __init__(self, in_features: int, out_features: int, *, num_samples: int = 8,
               rate: float = 0.5, rngs: nnx.Rngs):
    in_features = _validation.check_int("in_features", in_features, lower=1)
    out_features = _validation.check_int("out_features", out_features, lower=1)
    self.num_samples, self.rate = _check_hyperparameters(num_samples, rate)
    self.linear = nnx.Linear(in_features, out_features, rngs=rngs)

  def __call__(self, h: ArrayLike) -> jax.Array:
    """Plain logits, no dropout (evaluation)."""
    return self.linear(jnp.asarray(h))

  def loss(
      self,
      h: ArrayLike,
      labels: ArrayLike,
      *,
      key: jax.Array | None = None,
      loss_fn: LossFn | None = None,
      return_mean_logits: bool = False,
      masks: ArrayLike | None = None,
  ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """The multi-sample dropout loss of this head; see `multi_sample_dropout_loss`.

    Exactly one of `key` and `masks` (boolean, `(num_samples, *h.shape)`, True = keep).
    """
    graphdef, params = nnx.split(self.linear)
    return multi_sample_dropout_loss(
        lambda p, x: nnx.merge(graphdef, p)(x), params, h, labels, key=key,
        num_samples=self.num_samples, rate=self.rate, loss_fn=loss_fn,
        return_mean_logits=return_mean_logits, masks=masks)
