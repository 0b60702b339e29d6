"""RankMixup (Noh et al., ICCV 2023): rank the confidences of mixed samples below the clean ones.

A mixed sample carries less evidence than the clean samples it was made from, so its confidence
should be lower. Two ranking losses encode this:

* MRL (mixup-based ranking loss, M = 1): a margin hinge asking max z~ to sit `margin` below max z.
* M-NDCG (M mixes, M = 3 in the paper): the clean confidence and the M mixed confidences, ordered
  by the mixing coefficient, are scored with a normalised discounted cumulative gain whose ideal
  gains are [1, max-label of each mix].

The total loss is CE on the clean logits + alpha * ranking loss; there is no CE on the mixed
samples and nothing is detached. Draw the mixed copies with `sample_mixup`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxdyn.calibration import _losses
from jaxdyn import _validation

__all__ = ["mndcg_loss", "mrl_loss", "rankmixup_loss"]

_METHODS = ("mndcg", "mrl")
_SPACES = ("logits", "probs")
_REDUCTIONS = ("mean", "none")


_INPUTS = """Inputs: a NaN or an infinity (-inf included) anywhere in `logits`, `mixed_logits` or
  `mixed_labels` makes the loss NaN, eagerly and under `jit`. An empty batch (B = 0), no classes
  (K = 0) or no mixes (M = 0) is rejected."""


def _doc(fn):
  fn.__doc__ = fn.__doc__.replace("{inputs}", _INPUTS)
  return fn


def _prepare(logits: ArrayLike, mixed_logits: ArrayLike, mixed_labels: ArrayLike):
  """Validates shapes; returns logits (B, K), mixed logits and labels (M, B, K)."""
  logits = jnp.asarray(logits)
  mixed_logits = jnp.asarray(mixed_logits)
  mixed_labels = jnp.asarray(mixed_labels)
  _validation.check_ndim("logits", logits, 2)
  _validation.check_ndim("mixed_logits", mixed_logits, (2, 3))
  _validation.check_nonempty("logits", logits)
  _validation.check_nonempty("logits", logits, axis=1, what="classes")
  if mixed_logits.ndim == 2:  # A single mix (M = 1) given without its leading axis.
    mixed_logits = mixed_logits[None]
    mixed_labels = mixed_labels[None] if mixed_labels.ndim == 2 else mixed_labels
  if mixed_logits.shape[1:] != logits.shape:
    raise ValueError(
        f"mixed_logits: must have shape (M, B, K) or (B, K) with (B, K) = logits.shape = "
        f"{logits.shape}, got {mixed_logits.shape}")
  _validation.check_nonempty("mixed_logits", mixed_logits, what="mixes")
  _validation.check_soft_labels("mixed_labels", mixed_labels, mixed_logits)
  return logits, mixed_logits, mixed_labels


def _finite(*arrays: jax.Array) -> jax.Array:
  """Scalar: no NaN or infinity in any of `arrays` (traced)."""
  return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(a)) for a in arrays])


@_doc
def mrl_loss(
    *,
    logits: ArrayLike,
    mixed_logits: ArrayLike,
    mixed_labels: ArrayLike,
    margin: float = 2.0,
    official_compat: bool = False,
    space: str = "logits",
) -> jax.Array:
  """Mixup-based ranking loss (MRL): a mixed sample's top score should trail the clean one's.

  For clean logits z_i and a mixed copy z~_mi (pairing sample i with another),

    d_mi = max_k z~_mik - max_k z_ik,      h_mi = relu(d_mi + margin),
    v_mi = 1 if no entry of the mixed label y~_mi equals 1.0 exactly, else 0.

  v masks pairs that are not really mixed: a sample paired with itself or with a sample of its own
  class (and lam exactly 0 or 1). Two reductions:

  * default (paper): the masked mean sum(v h) / sum(v) over the valid pairs (0 if none is valid);
  * `official_compat=True` (authors' code): mean(v) * mean(h). Their code multiplies a (B,) mask by
    a (B, 1) hinge, which broadcasts to a (B, B) outer product, so masked pairs still contribute
    their hinge, scaled by the fraction of valid pairs.

  The paper writes d on confidences (max softmax); the authors' code, followed by default, uses
  logits. `space="probs"` gives the confidence form.

  {inputs}

  Args:
    logits: `(B, K)` logits of the clean batch.
    mixed_logits: `(M, B, K)` logits of the M mixed copies (`(B, K)` is read as M = 1).
    mixed_labels: floating mixed labels, same shape as `mixed_logits` (`MixupSample.labels`).
    margin: hinge margin >= 0; 2.0 on CIFAR, 1.0 on Tiny-ImageNet in the paper.
    official_compat: reproduce the authors' reduction instead of the paper's masked mean.
    space: "logits" (default, authors' code) or "probs" (paper's equation) for d.

  Returns:
    A scalar loss.

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.array([[3.0, 0.0], [0.0, 1.0]])
    >>> z_mix = jnp.array([[[2.0, 0.0], [0.0, 3.0]]])
    >>> y_mix = jnp.array([[[0.6, 0.4], [0.0, 1.0]]])  # second pair is same-class: masked
    >>> float(mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, margin=2.0))
    1.0
    >>> float(mrl_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, margin=2.0,
    ...                official_compat=True))  # 0.5 * mean([1, 4])
    1.25

  References:
    Noh et al., "RankMixup: Ranking-Based Mixup Training for Network Calibration", ICCV 2023,
    https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.
  """
  _validation.check_real("margin", margin, lower=0.0)
  _validation.check_choice("space", space, _SPACES)
  logits, mixed_logits, mixed_labels = _prepare(logits, mixed_logits, mixed_labels)
  return _mrl(logits, mixed_logits, mixed_labels, margin, bool(official_compat), space)


@functools.partial(jax.jit, static_argnames=("official_compat", "space"))
def _mrl(logits, mixed_logits, mixed_labels, margin, official_compat, space):
  ok = _finite(logits, mixed_logits, mixed_labels)
  if space == "probs":
    logits = jax.nn.softmax(logits, axis=-1)
    mixed_logits = jax.nn.softmax(mixed_logits, axis=-1)
  diff = jnp.max(mixed_logits, axis=-1) - jnp.max(logits, axis=-1)[None, :]  # (M, B)
  hinge = jax.nn.relu(diff + margin)
  valid = jnp.logical_not(jnp.any(mixed_labels == 1.0, axis=-1)).astype(hinge.dtype)
  if official_compat:
    loss = jnp.mean(valid) * jnp.mean(hinge)
  else:
    loss = jnp.sum(valid * hinge) / jnp.maximum(jnp.sum(valid), 1.0)
  return _validation.nan_unless(ok, loss)


@_doc
def mndcg_loss(
    *,
    logits: ArrayLike,
    mixed_logits: ArrayLike,
    mixed_labels: ArrayLike,
    reduction: str = "mean",
) -> jax.Array:
  """M-NDCG loss: 1 - NDCG of [clean, mixed...] confidences against their mixing coefficients.

  Per clean sample i, with c_i = max_k softmax(z_i)_k, c~_im = max_k softmax(z~_im)_k and
  l_im = max_k y~_imk (max(lam, 1 - lam) for a mixed pair, 1 for a same-class pair), sort the M
  mixes by l descending (ties keep the mix order m) and set, for ranks k = 1..M+1,

    r = [c_i, c~ sorted],   g = [1, l sorted],
    DCG = sum_k r_k / log2(k + 1),   IDCG = sum_k g_k / log2(k + 1),
    ndcg_i = DCG / IDCG if IDCG > DCG else IDCG / DCG,
    loss = mean_i (1 - ndcg_i).

  The folded ratio is at most 1 and equals 1 only when DCG = IDCG, so the discounted sum of
  confidences is pulled towards that of the label coefficients from above and from below. This
  follows the authors' code, including the fold when DCG > IDCG.

  {inputs} With `reduction="none"` every entry is then NaN.

  Args:
    logits: `(B, K)` logits of the clean batch.
    mixed_logits: `(M, B, K)` logits of the M mixed copies (`(B, K)` is read as M = 1).
    mixed_labels: floating mixed labels, same shape as `mixed_logits` (`MixupSample.labels`).
    reduction: "mean" (default) averages over the clean samples; "none" returns the per-sample
      losses 1 - ndcg_i, one per clean sample i along axis 0 of `logits` (a test hook).

  Returns:
    A scalar loss in [0, 1) (`reduction="mean"`), or the `(B,)` per-sample losses ("none").

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.log(jnp.array([[0.9, 0.1]]))  # c = 0.9
    >>> z_mix = jnp.log(jnp.array([[[0.6, 0.4]], [[0.8, 0.2]]]))  # c~ = 0.6, 0.8
    >>> y_mix = jnp.array([[[0.7, 0.3]], [[0.9, 0.1]]])  # l = 0.7, 0.9 -> order: mix 2, mix 1
    >>> # DCG = 0.9 + 0.8/log2(3) + 0.6/2 = 1.7047, IDCG = 1 + 0.9/log2(3) + 0.7/2 = 1.9178
    >>> round(float(mndcg_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix)), 4)
    0.1111
    >>> mndcg_loss(logits=z, mixed_logits=z_mix, mixed_labels=y_mix, reduction="none").shape
    (1,)

  References:
    Noh et al., "RankMixup: Ranking-Based Mixup Training for Network Calibration", ICCV 2023,
    https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.
  """
  _validation.check_choice("reduction", reduction, _REDUCTIONS)
  logits, mixed_logits, mixed_labels = _prepare(logits, mixed_logits, mixed_labels)
  return _mndcg(logits, mixed_logits, mixed_labels, reduction)


@functools.partial(jax.jit, static_argnames="reduction")
def _mndcg(logits, mixed_logits, mixed_labels, reduction):
  ok = _finite(logits, mixed_logits, mixed_labels)
  conf = jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)  # (B,)
  mixed_conf = jnp.max(jax.nn.softmax(mixed_logits, axis=-1), axis=-1)  # (M, B)
  lam_max = jnp.max(mixed_labels, axis=-1)  # (M, B)
  order = jnp.argsort(-lam_max, axis=0, stable=True)
  mixed_conf = jnp.take_along_axis(mixed_conf, order, axis=0)
  lam_max = jnp.take_along_axis(lam_max, order, axis=0)
  relevance = jnp.concatenate([conf[None], mixed_conf], axis=0)  # (M + 1, B)
  ideal = jnp.concatenate([jnp.ones_like(conf)[None], lam_max], axis=0)
  ranks = jnp.arange(1, relevance.shape[0] + 1, dtype=relevance.dtype)
  discount = (1.0 / jnp.log2(ranks + 1.0))[:, None]
  dcg = jnp.sum(relevance * discount, axis=0)
  idcg = jnp.sum(ideal * discount, axis=0)
  ndcg = jnp.where(idcg > dcg, dcg / idcg, idcg / dcg)
  losses = 1.0 - ndcg  # (B,)
  return _validation.nan_unless(ok, jnp.mean(losses) if reduction == "mean" else losses)


@_doc
def rankmixup_loss(
    *,
    logits: ArrayLike,
    labels: ArrayLike,
    mixed_logits: ArrayLike,
    mixed_labels: ArrayLike,
    method: str = "mndcg",
    alpha: float = 0.1,
    margin: float = 2.0,
    official_compat: bool = False,
) -> jax.Array:
  """RankMixup training loss: CE on the clean logits + alpha * a ranking loss on mixed copies.

    L = CE(z, y) + alpha * L_rank,   L_rank = M-NDCG (`method="mndcg"`) or MRL (`method="mrl"`).

  There is no cross-entropy on the mixed samples and no `stop_gradient`: the ranking loss
  back-propagates into both forward passes, as in the authors' code.

  MRL reduction: by default the paper's per-sample masked mean over the pairs whose mixed label has
  no entry exactly 1.0; `official_compat=True` gives the authors' code, mean(mask) *
  mean_i relu(d_i + margin) (see `mrl_loss`). M-NDCG follows the authors' code.

  {inputs} Integer `labels` are range-checked eagerly (`labels: must lie in [0, K)`); under `jit`
  an out-of-range label makes the loss NaN.

  Args:
    logits: `(B, K)` logits of the clean batch.
    labels: `(B,)` integer class ids or `(B, K)` soft labels of the clean batch.
    mixed_logits: `(M, B, K)` logits of the mixed copies (`(B, K)` is read as M = 1).
    mixed_labels: floating mixed labels, same shape as `mixed_logits`.
    method: "mndcg" (default; M = 3 in the paper) or "mrl" (M = 1).
    alpha: weight of the ranking loss, > 0 (0.1 in the paper).
    margin: MRL margin >= 0 (2.0 on CIFAR, 1.0 on Tiny-ImageNet); unused by M-NDCG.
    official_compat: MRL only: reproduce the authors' reduction.

  Returns:
    A scalar loss.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxdyn.calibration import sample_mixup
    >>> y = jnp.array([0, 1, 2, 1])
    >>> mix = sample_mixup(jax.random.key(0), jnp.ones((4, 5)), jax.nn.one_hot(y, 3), num_mixes=3)
    >>> z, z_mix = jnp.zeros((4, 3)), jnp.zeros((3, 4, 3))  # stand-ins for f(x), f(mix.inputs)
    >>> loss = rankmixup_loss(logits=z, labels=y, mixed_logits=z_mix, mixed_labels=mix.labels)
    >>> loss.shape
    ()

  References:
    Noh et al., "RankMixup: Ranking-Based Mixup Training for Network Calibration", ICCV 2023,
    https://arxiv.org/abs/2308.11990; code https://github.com/cvlab-yonsei/RankMixup.
  """
  _validation.check_real("alpha", alpha, lower=0.0, lower_open=True)
  _validation.check_real("margin", margin, lower=0.0)
  _validation.check_choice("method", method, _METHODS)
  ce = _losses.cross_entropy_loss(logits=logits, labels=labels)
  if method == "mrl":
    rank = mrl_loss(
        logits=logits, mixed_logits=mixed_logits, mixed_labels=mixed_labels, margin=margin,
        official_compat=official_compat)
  else:
    rank = mndcg_loss(logits=logits, mixed_logits=mixed_logits, mixed_labels=mixed_labels)
  return ce + alpha * rank
