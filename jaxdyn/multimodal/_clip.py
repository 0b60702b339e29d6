r"""CLIP's contrastive loss (sharded over the batch), zero-shot classification and retrieval recall@k.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021,
https://arxiv.org/abs/2103.00020. For a batch of ``N`` paired image and text embeddings, with
:math:`u_i, v_j` the L2-normalised image and text embeddings and :math:`s = \min(e^{\tau}, 100)` the logit
scale (:math:`\tau` = ``log_scale``, learnable), the logits are :math:`S_{ij} = s \, u_i^\top v_j` and the loss
is the symmetric InfoNCE, the mean of the image->text and text->image cross-entropies with the pairs on
the diagonal (the paper's Figure 3 pseudocode):

.. math::
   \mathcal{L} = \frac{1}{2N} \sum_{i=1}^{N} \Big[ \big(\log \textstyle\sum_j e^{S_{ij}} - S_{ii}\big)
                 + \big(\log \textstyle\sum_j e^{S_{ji}} - S_{ii}\big) \Big].

Which source each detail follows:

- the loss and its symmetry: the paper's Figure 3;
- the clip of the scale at 100: the paper's Sec. 2.5 ("the learnable temperature parameter was initialized
  to the equivalent of 0.07 ... and clipped to prevent scaling the logits by more than 100"); OpenAI's and
  LaCLIP's training code (LijieFan/LaCLIP ``train.py``, after SLIP) clamp the parameter to
  :math:`[0, \log 100]` after every optimizer step. Here `clip_loss` clips in the forward pass,
  :math:`\min(\tau, \log 100)`, which gives the same loss value (and no gradient to :math:`\tau` above the
  clip); a training loop may clamp the parameter as well (the LaCLIP claim runner does);
- the sharded loss: each device all-gathers every device's embeddings and computes the loss of its own rows
  against the global batch (LaCLIP's ``losses.py``, OpenCLIP's ``gather_with_grad`` path), the row
  ``i`` of device ``d`` having its positive at global column ``d * n + i``;
- zero-shot classification: the class embedding is the mean of the unit-norm embeddings of the class's
  prompts (one per template), renormalised (the paper's Sec. 3.1.4 prompt ensembling; OpenAI's
  ``Prompt_Engineering_for_ImageNet.ipynb``: normalise, average, normalise).

Every function upcasts half precision to float32 and normalises with a rescale first (the rows are divided
by their largest entry before the norm), so embeddings of any finite scale compute to finite values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxdyn import _validation as v

MAX_LOGIT_SCALE = 100.0  # CLIP's clip of exp(log_scale) (Radford et al., 2021, Sec. 2.5)


def _unit(x: jax.Array) -> jax.Array:
  """Rows of ``x`` scaled to unit L2 norm (rescaled by their largest entry first); a zero row stays 0."""
  m = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
  y = x / jnp.where(m > 0, m, 1.0)  # NaN/inf propagate: inf / inf is NaN
  ss = jnp.sum(y * y, axis=-1, keepdims=True)
  return y / jnp.sqrt(jnp.where(ss > 0, ss, 1.0))  # no sqrt at 0: its infinite slope would make the gradient NaN


def _check_embeddings(name: str, x, *, dim: int | None = None, other: str = "") -> jax.Array:
  if not hasattr(x, "shape") and not isinstance(x, (list, tuple)):
    raise TypeError(f"{name}: must be a floating array (batch, dim), got {type(x).__name__}")
  v.check_ndim(name, x, 2)
  x = v.check_floating(name, x)
  v.check_nonempty(name, x)
  if x.shape[1] == 0:
    raise ValueError(f"{name}: must have at least one feature, got shape {x.shape}")
  if dim is not None and x.shape[1] != dim:
    raise ValueError(f"{name}: must have the feature dimension of {other} ({dim}), got shape {x.shape}")
  return x


def _check_log_scale(log_scale) -> jax.Array:
  if isinstance(log_scale, (bool, np.bool_)) or not (isinstance(log_scale, (int, float, np.number))
                                                      or hasattr(log_scale, "shape")):
    raise TypeError(f"log_scale: must be a real scalar, got {type(log_scale).__name__}")
  if np.ndim(log_scale) != 0:
    raise ValueError(f"log_scale: must be a scalar, got shape {np.shape(log_scale)}")
  ls = v.check_floating("log_scale", log_scale)
  v.check_finite("log_scale", ls)
  return ls


def clip_logit_scale(log_scale: ArrayLike) -> jax.Array:
  r"""CLIP's logit scale :math:`s = \exp(\min(\tau, \log 100))`: the learnable temperature's inverse,
  clipped at `MAX_LOGIT_SCALE` = 100 as CLIP does (Sec. 2.5 of the paper).

  Args:
    log_scale: :math:`\tau`, a finite real scalar (``jaxdyn.models.CLIP``'s ``log_scale``).

  Returns:
    A float32 scalar in :math:`(0, 100]` (NaN for a non-finite ``log_scale`` under ``jit``).

  Example:
    >>> float(clip_logit_scale(0.0)), float(clip_logit_scale(10.0))
    (1.0, 100.00000762939453)
  """
  ls = _check_log_scale(log_scale)
  scale = jnp.exp(jnp.minimum(ls, math.log(MAX_LOGIT_SCALE)))
  return v.nan_unless(jnp.isfinite(ls), scale)


def clip_loss(image_emb: ArrayLike, text_emb: ArrayLike, log_scale: ArrayLike, *,
              axis_name: str | None = None) -> jax.Array:
  r"""CLIP's symmetric InfoNCE loss over a batch of paired embeddings (module docstring).

  Embeddings are L2-normalised here (cosine similarities; unit-norm inputs such as ``jaxdyn.models.CLIP``'s
  are unchanged), and the scale is `clip_logit_scale` (clipped at 100).

  With ``axis_name`` (inside ``shard_map`` or ``pmap`` over a batch-sharded mesh axis) each device holds
  ``n`` rows of the global batch of ``N = n * devices``; the embeddings are all-gathered (``tiled``) so that
  each device computes its rows' image->text and text->image cross-entropies against all ``N`` columns,
  device ``d``'s row ``i`` having its positive at column ``d * n + i``, and the mean over devices
  (``pmean``) is returned on every device. It equals the unsharded loss of the global batch, and so do its
  gradients (the all-gather's transpose sums each column's gradient back onto the device that holds it).

  Args:
    image_emb: ``(n, dim)`` image embeddings (this device's rows under ``axis_name``).
    text_emb: ``(n, dim)`` text embeddings, row ``i`` paired with ``image_emb[i]``.
    log_scale: :math:`\tau`, a finite real scalar; the logit scale is :math:`\min(e^\tau, 100)`.
    axis_name: the mesh axis the batch is sharded over, or None (one device / the whole batch).

  Returns:
    The scalar loss (float32). NaN when an input holds a NaN or an infinity (under ``jit``; eagerly a
    non-finite ``log_scale`` raises).

  Example:
    >>> u = jnp.eye(3)
    >>> round(float(clip_loss(u, u, jnp.log(10.0))), 4)  # 2 negatives at 0 against a positive at 10
    0.0001
  """
  u = _check_embeddings("image_emb", image_emb)
  t = _check_embeddings("text_emb", text_emb)
  v.check_same_shape("text_emb", t, "image_emb", u)
  scale = clip_logit_scale(log_scale)
  u, t = _unit(u), _unit(t)
  if axis_name is None:
    all_u, all_t = u, t
  else:
    if not isinstance(axis_name, str):
      raise TypeError(f"axis_name: must be a mesh axis name (str) or None, got {type(axis_name).__name__}")
    all_u = jax.lax.all_gather(u, axis_name, tiled=True)
    all_t = jax.lax.all_gather(t, axis_name, tiled=True)
  logits_i2t = scale * (u @ all_t.T)  # (n, N): this device's images against every text
  logits_t2i = scale * (t @ all_u.T)  # (n, N): this device's texts against every image
  pos = scale * jnp.sum(u * t, axis=-1)  # S_ii, the logit at this row's global column (device * n + i)
  loss_i2t = jax.nn.logsumexp(logits_i2t, axis=-1) - pos
  loss_t2i = jax.nn.logsumexp(logits_t2i, axis=-1) - pos
  loss = 0.5 * (jnp.mean(loss_i2t) + jnp.mean(loss_t2i))
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
  return loss


def clip_zero_shot_prompts(templates: Sequence[str], class_names: Sequence[Sequence[str] | str]) -> list[str]:
  """The prompts of CLIP's zero-shot classifier, class-major: ``templates[t].format(name)`` for every class
  name of every class.

  ``class_names[c]`` is one name or several (e.g. ``("three", "3")``): every name of a class is filled into
  every template, so class ``c`` has ``len(templates) * len(names_c)`` prompts, and every class must have
  the same number (so the embeddings reshape to ``(classes, prompts, dim)`` for `clip_zero_shot_weights`).

  Args:
    templates: strings with one ``{}`` slot each.
    class_names: one name (str) or a sequence of names per class.

  Returns:
    ``classes * prompts_per_class`` strings, class 0's first.

  Example:
    >>> clip_zero_shot_prompts(["a photo of the digit {}"], [("zero", "0"), ("one", "1")])
    ['a photo of the digit zero', 'a photo of the digit 0', 'a photo of the digit one', 'a photo of the digit 1']
  """
  if isinstance(templates, str) or not isinstance(templates, Sequence) or not templates:
    raise ValueError(f"templates: must be a non-empty sequence of strings, got {templates!r}")
  for t in templates:
    if not isinstance(t, str) or t.count("{}") != 1:
      raise ValueError(f"templates: each must be a str with exactly one '{{}}' slot, got {t!r}")
  if isinstance(class_names, str) or not isinstance(class_names, Sequence) or not class_names:
    raise ValueError(f"class_names: must be a non-empty sequence (one name or names per class), got {class_names!r}")
  for c, ns in enumerate(class_names):
    if not isinstance(ns, (str, Sequence)):
      raise ValueError(f"class_names: class {c} must be a name or a sequence of names, got {ns!r}")
  names = [(c,) if isinstance(c, str) else tuple(c) for c in class_names]
  for c, ns in enumerate(names):
    if not ns or not all(isinstance(s, str) and s for s in ns):
      raise ValueError(f"class_names: class {c} must have non-empty string names, got {class_names[c]!r}")
  if len({len(ns) for ns in names}) != 1:
    raise ValueError(f"class_names: every class must have the same number of names, got {[len(n) for n in names]}")
  return [t.format(s) for ns in names for s in ns for t in templates]


def clip_zero_shot_weights(class_text_emb: ArrayLike) -> jax.Array:
  r"""CLIP's zero-shot classifier from the text embeddings of each class's prompts.

  .. math::
     w_c = \frac{\bar e_c}{\lVert \bar e_c \rVert}, \qquad
     \bar e_c = \frac{1}{T} \sum_{t=1}^{T} \frac{e_{ct}}{\lVert e_{ct} \rVert}

  (normalise each prompt's embedding, average over the ``T`` prompts, normalise again, as OpenAI's
  prompt-ensembling notebook does).

  Args:
    class_text_emb: ``(classes, T, dim)`` text embeddings of every class's ``T`` prompts (e.g. of
      `clip_zero_shot_prompts`, reshaped).

  Returns:
    ``(classes, dim)`` unit-norm class embeddings (NaN rows from non-finite inputs).

  Example:
    >>> e = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> [[round(float(x), 4) for x in row] for row in clip_zero_shot_weights(e)]
    [[0.7071, 0.7071]]
  """
  if not hasattr(class_text_emb, "shape") and not isinstance(class_text_emb, (list, tuple)):
    raise TypeError(f"class_text_emb: must be a floating array (classes, prompts, dim), got "
                    f"{type(class_text_emb).__name__}")
  v.check_ndim("class_text_emb", class_text_emb, 3)
  e = v.check_floating("class_text_emb", class_text_emb)
  if 0 in e.shape:
    raise ValueError(f"class_text_emb: must hold at least one class, prompt and feature, got shape {e.shape}")
  return _unit(jnp.mean(_unit(e), axis=1))


def clip_zero_shot_scores(image_emb: ArrayLike, class_weights: ArrayLike) -> jax.Array:
  r"""Cosine similarities :math:`u_i^\top w_c` of each image with each class embedding ``(N, classes)``; the
  prediction is their argmax (a logit scale would not change it).

  Args:
    image_emb: ``(N, dim)`` image embeddings (normalised here).
    class_weights: ``(classes, dim)`` class embeddings (`clip_zero_shot_weights`; normalised here).

  Returns:
    ``(N, classes)`` float32 cosine similarities.

  Example:
    >>> clip_zero_shot_scores(jnp.array([[2.0, 0.0]]), jnp.eye(2)).tolist()
    [[1.0, 0.0]]
  """
  u = _check_embeddings("image_emb", image_emb)
  w = _check_embeddings("class_weights", class_weights, dim=u.shape[1], other="image_emb")
  return _unit(u) @ _unit(w).T


def clip_zero_shot_accuracy(image_emb: ArrayLike, class_weights: ArrayLike, labels: ArrayLike) -> jax.Array:
  r"""Zero-shot accuracy: the share of images whose most similar class embedding is their label's,
  :math:`\frac{1}{N} \sum_i [\arg\max_c u_i^\top w_c = y_i]` (ties go to the lowest class id, as ``argmax``).

  Args:
    image_emb: ``(N, dim)`` image embeddings.
    class_weights: ``(classes, dim)`` class embeddings (`clip_zero_shot_weights`).
    labels: ``(N,)`` integer class ids in ``[0, classes)``.

  Returns:
    A float32 scalar in [0, 1]; NaN under ``jit`` when a label is out of range or a score is not finite.

  Example:
    >>> w = jnp.eye(2)
    >>> float(clip_zero_shot_accuracy(jnp.array([[1.0, 0.1], [0.9, 0.2]]), w, jnp.array([0, 1])))
    0.5
  """
  scores = clip_zero_shot_scores(image_emb, class_weights)
  v.check_integer_labels("labels", labels, scores.shape[1], shape=scores.shape[:1])
  labels = jnp.asarray(labels)
  acc = jnp.mean((jnp.argmax(scores, axis=1) == labels).astype(jnp.float32))
  ok = jnp.all(v.labels_valid(labels, scores.shape[1])) & jnp.all(jnp.isfinite(scores))
  return v.nan_unless(ok, acc)


def clip_recall_at_k(image_emb: ArrayLike, text_emb: ArrayLike, k: int, *,
                     text_image_ids: ArrayLike | None = None) -> tuple[jax.Array, jax.Array]:
  r"""Retrieval recall@k, image->text and text->image, by cosine similarity :math:`S_{ij} = u_i^\top v_j`.

  Text ``j`` belongs to image :math:`g(j)` (``text_image_ids``; by default ``g(j) = j``, one caption per
  image). A query is a hit when fewer than ``k`` of its *wrong* candidates score at least as high as its
  best right one (ties count against the query, so a constant model scores 0, not 1):

  .. math::
     \text{R@k}_{i \to t} = \frac{1}{|I^+|} \sum_{i \in I^+} \Big[ \#\{j : g(j) \ne i,\;
        S_{ij} \ge \max_{g(j') = i} S_{ij'}\} < k \Big], \qquad
     \text{R@k}_{t \to i} = \frac{1}{M} \sum_{j} \Big[ \#\{i \ne g(j) : S_{ij} \ge S_{g(j) j}\} < k \Big],

  with :math:`I^+` the images that have at least one text (several captions per image, as COCO's five,
  are one right answer each for an image query).

  Args:
    image_emb: ``(N, dim)`` image embeddings (normalised here).
    text_emb: ``(M, dim)`` text embeddings.
    k: the cut-off, an int >= 1 (static under ``jit``).
    text_image_ids: ``(M,)`` integer ids in ``[0, N)`` of each text's image, or None (``M == N``, text ``j``
      with image ``j``).

  Returns:
    ``(image_to_text, text_to_image)`` recall@k, float32 scalars in [0, 1]; NaN under ``jit`` for a
    non-finite embedding or an out-of-range id.

  Example:
    >>> u = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> t = jnp.array([[1.0, 0.1], [1.0, 0.0], [1.0, 1.0]])  # text 1 is closer to image 0 than to image 1
    >>> [round(float(r), 4) for r in clip_recall_at_k(u, t, 1)]  # images 0 and 1 miss; text 1 misses
    [0.3333, 0.6667]
  """
  u = _check_embeddings("image_emb", image_emb)
  t = _check_embeddings("text_emb", text_emb, dim=u.shape[1], other="image_emb")
  k = v.check_int("k", k, lower=1)
  n, m = u.shape[0], t.shape[0]
  if text_image_ids is None:
    if m != n:
      raise ValueError(f"text_emb: must have one row per image ({n}) when text_image_ids is None, got shape {t.shape}")
    ids = jnp.arange(m)
  else:
    v.check_integer_labels("text_image_ids", text_image_ids, n, shape=(m,))
    ids = jnp.asarray(text_image_ids)
  s = _unit(u) @ _unit(t).T  # (N, M)
  own = ids[None, :] == jnp.arange(n)[:, None]  # (N, M): text j belongs to image i
  # image -> text: the best right text of each image, against the wrong texts.
  best = jnp.max(jnp.where(own, s, -jnp.inf), axis=1, keepdims=True)
  wrong_above = jnp.sum((s >= best) & ~own, axis=1)
  has_text = jnp.any(own, axis=1)
  i2t = jnp.sum((wrong_above < k) & has_text) / jnp.maximum(jnp.sum(has_text), 1)
  # text -> image: the right image's similarity, against the other images.
  right = jnp.sum(jnp.where(own, s, 0.0), axis=0, keepdims=True)
  t2i = jnp.mean(jnp.sum((s >= right) & ~own, axis=0) < k)
  ok = jnp.all(jnp.isfinite(s)) & jnp.all(v.labels_valid(ids, n))
  return v.nan_unless(ok, i2t.astype(jnp.float32)), v.nan_unless(ok, t2i.astype(jnp.float32))
