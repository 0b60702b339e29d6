"""CTVIS: contrastive items built the way online video instance segmentation infers (Ying et al., ICCV 2023).

An online VIS model associates the instances of frame t with the tracks found so far by comparing each
instance embedding with the tracks' *momentum-averaged* embeddings in a *memory bank*. Methods such as IDOL
and MinVIS train those embeddings with contrastive items (CIs: anchor / positive / negatives) taken from one
reference frame only. CTVIS builds the CIs the inference way: the frames of a clip are run through a memory
bank in order, and at frame t the anchor (an instance's embedding at t) is compared with its own track's
momentum-averaged memory embedding (the positive) and the other tracks' memory embeddings (the negatives);
noise is added to the embeddings that enter the memory, as wrong matches at inference put them there.

Here, with static shapes throughout (jit- and vmap-friendly):

- `CtvisMemory`: the memory bank, a NamedTuple of fixed-size arrays, one slot per identity (per track at
  inference): momentum-averaged embedding, last embedding, the running sum of normalised embeddings and the
  count (for the similarity-guided momentum), validity and age. `ctvis_memory_init`, `ctvis_memory_update`.
- `ctvis_contrastive_items` (CTVIS) and `ctvis_reference_items` (the one-reference-frame baseline), both
  returning `CtvisItems`; `ctvis_noise`, the noise on the memory's embeddings; `ctvis_contrastive_loss`.
- `ctvis_associate` (one frame) and `ctvis_track` (a whole video): online association by matching against
  the memory bank as the authors' tracker does (bi-softmax scores, greedy matching with a threshold).
- `ctvis_pseudo_video`: a still image made into a clip by a smooth random affine trajectory (the paper's
  finding: such pseudo-videos train association well), a pure transform under an explicit key.

Which source each detail follows: the paper (arXiv 2307.12616) for the overall scheme; the authors' code
(https://github.com/KainingYing/CTVIS, ``ctvis/modeling/cl_plugin/ct_cl_plugin.py``, ``tracker/``) for the
similarity-guided momentum, the positive drawn as the momentum average or the last embedding with probability
1/2, the noise, the IDOL-form loss with its auxiliary cosine term and weights, and the tracker's bi-softmax,
greedy matching and threshold 0.2. Differences are noted in each docstring.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxdyn import _validation as v

_EPS = 1e-12


def _check_bool(name: str, x, shape: tuple[int, ...] | None = None) -> jax.Array:
  dtype = getattr(x, "dtype", None)
  if dtype is None:
    dtype = np.asarray(x).dtype
  if dtype != np.bool_:
    raise TypeError(f"{name}: must be a boolean array, got dtype {dtype}")
  if shape is not None and tuple(np.shape(x)) != tuple(shape):
    raise ValueError(f"{name}: must have shape {tuple(shape)}, got shape {np.shape(x)}")
  return jnp.asarray(x)


def _check_embeddings(name: str, x, ndim: int) -> jax.Array:
  if not hasattr(x, "shape") and not isinstance(x, (list, tuple)):
    raise TypeError(f"{name}: must be a floating array, got {type(x).__name__}")
  v.check_ndim(name, x, ndim)
  dtype = getattr(x, "dtype", None)
  if dtype is None:
    dtype = np.asarray(x).dtype
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"{name}: must be a floating array, got dtype {dtype}")
  v.check_nonempty(name, x, axis=ndim - 1, what="embedding dimensions")
  return v.check_floating(name, x)


def _normalize(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def _all_finite(*xs) -> jax.Array:
  ok = jnp.array(True)
  for x in xs:
    if x is not None:
      ok = ok & jnp.all(jnp.isfinite(x))
  return ok


class CtvisMemory(NamedTuple):
  """The memory bank: ``M`` identity slots of ``D``-dimensional embeddings (a PyTree of fixed-size arrays).

  Attributes:
    average: ``(M, D)`` the momentum-averaged embedding of each slot (what matching compares with).
    last: ``(M, D)`` the slot's most recent embedding.
    direction_sum: ``(M, D)`` the sum of the slot's normalised embeddings so far (for the similarity-guided
      momentum: their mean cosine with a new embedding is ``<e/|e|, direction_sum> / count``).
    count: ``(M,)`` int32, how many embeddings the slot has received.
    valid: ``(M,)`` bool, whether the slot holds a live track.
    age: ``(M,)`` int32, frames since the slot last received an embedding.
  """

  average: jax.Array
  last: jax.Array
  direction_sum: jax.Array
  count: jax.Array
  valid: jax.Array
  age: jax.Array


def ctvis_memory_init(num_slots: int, dim: int, dtype=jnp.float32) -> CtvisMemory:
  """An empty memory bank of ``num_slots`` slots of ``dim``-dimensional embeddings.

  Args:
    num_slots: M >= 1, the number of identity (track) slots.
    dim: D >= 1, the embedding size.
    dtype: the floating dtype of the embeddings.

  Returns:
    A `CtvisMemory` with every slot invalid, zero embeddings, count and age 0.

  Example:
    >>> ctvis_memory_init(3, 4).average.shape
    (3, 4)
  """
  num_slots = v.check_int("num_slots", num_slots, lower=1)
  dim = v.check_int("dim", dim, lower=1)
  if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
    raise ValueError(f"dtype: must be a floating dtype, got {dtype!r}")
  z = jnp.zeros((num_slots, dim), dtype)
  zi = jnp.zeros((num_slots,), jnp.int32)
  return CtvisMemory(z, z, z, zi, jnp.zeros((num_slots,), bool), zi)


def _check_memory(memory) -> None:
  if not isinstance(memory, CtvisMemory):
    raise TypeError(f"memory: must be a CtvisMemory (ctvis_memory_init), got {type(memory).__name__}")


def ctvis_memory_update(memory: CtvisMemory, embeddings: ArrayLike, present: ArrayLike, *,
                        momentum: float | None = None, max_age: int | None = None) -> CtvisMemory:
  """One frame's update of the memory bank: momentum-average each present slot's new embedding in.

  For a slot i that receives embedding e (``present[i]``):

  - an invalid slot starts: ``average = last = e``, ``direction_sum = e/|e|``, ``count = 1``, valid;
  - a valid slot: ``average <- (1 - beta) * average + beta * e`` with the similarity-guided momentum of the
    authors' code (``momentum=None``; after Similarity-Guided Feature Fusion, arXiv 2203.14208)
    ``beta = max(0, (1/count) * sum_k cos(e, e_k))`` over the slot's earlier embeddings e_k, or a fixed
    ``beta = momentum``; then ``last = e``, ``direction_sum += e/|e|``, ``count += 1``.

  Either way its age is reset to 0. A slot that receives nothing keeps its embeddings and ages by one frame
  when valid; with ``max_age``, a slot older than ``max_age`` frames is dropped (invalid), as the tracker
  drops dead tracklets (the authors use 20 frames). The authors' code keeps a cache of the last 10 embeddings
  for the similarity; here all of them are counted (a running sum, so shapes stay static).

  Args:
    memory: the bank before the frame.
    embeddings: ``(M, D)`` one embedding per slot (rows of absent slots are ignored).
    present: ``(M,)`` bool, which slots receive an embedding this frame.
    momentum: a fixed beta in [0, 1], or None for the similarity-guided beta.
    max_age: frames a slot may go without an embedding before it is dropped (None: never).

  Returns:
    The updated `CtvisMemory`. A NaN or infinity in ``embeddings`` makes every float field NaN.

  Example:
    >>> m = ctvis_memory_init(1, 2)
    >>> m = ctvis_memory_update(m, jnp.array([[2.0, 0.0]]), jnp.array([True]))
    >>> m = ctvis_memory_update(m, jnp.array([[0.0, 2.0]]), jnp.array([True]), momentum=0.25)
    >>> [float(x) for x in m.average[0]]
    [1.5, 0.5]
  """
  _check_memory(memory)
  m, d = np.shape(memory.average)
  e = _check_embeddings("embeddings", embeddings, 2)
  if tuple(np.shape(e)) != (m, d):
    raise ValueError(f"embeddings: must have shape {(m, d)} (one row per memory slot), got shape {np.shape(e)}")
  present = _check_bool("present", present, (m,))
  if momentum is not None:
    momentum = v.check_real("momentum", momentum, lower=0.0, upper=1.0)
  if max_age is not None:
    max_age = v.check_int("max_age", max_age, lower=0)
  return _update_core(memory, e.astype(memory.average.dtype), present, momentum, max_age)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _update_core(memory, e, present, momentum, max_age):
  m = e.shape[0]
  unit = _normalize(e)
  if momentum is None:
    cos = jnp.sum(unit * memory.direction_sum, axis=-1) / jnp.maximum(memory.count, 1)
    beta = jnp.maximum(cos, 0.0)
  else:
    beta = jnp.full((m,), momentum, e.dtype)
  beta = jnp.where(memory.valid, beta, 1.0)[:, None]  # a new slot starts at e
  p = present[:, None]
  average = jnp.where(p, (1 - beta) * memory.average + beta * e, memory.average)
  last = jnp.where(p, e, memory.last)
  direction_sum = jnp.where(p, jnp.where(memory.valid[:, None], memory.direction_sum, 0.0) + unit,
                            memory.direction_sum)
  count = jnp.where(present, jnp.where(memory.valid, memory.count, 0) + 1, memory.count)
  age = jnp.where(present, 0, jnp.where(memory.valid, memory.age + 1, memory.age))
  valid = memory.valid | present
  if max_age is not None:
    valid = valid & (age <= max_age)
  ok = _all_finite(e)
  return CtvisMemory(v.nan_unless(ok, average), v.nan_unless(ok, last), v.nan_unless(ok, direction_sum),
                     count.astype(jnp.int32), valid, age.astype(jnp.int32))


def ctvis_noise(key: jax.Array, embeddings: ArrayLike, present: ArrayLike, *, rate: float,
                background: ArrayLike | None = None) -> tuple[jax.Array, jax.Array]:
  """CTVIS's noise: an absent instance's memory receives, with probability ``rate``, another embedding.

  At inference an instance that is missing from a frame (occluded, out of view, missed) can still be
  matched to some other detection, whose embedding then pollutes its track's memory. The authors' code
  simulates this in training: for each frame where an instance is absent, with a small probability its
  memory is updated with a randomly chosen other embedding of that frame (another instance's or a
  background query's) instead of nothing. Only the embeddings that enter the memory are noised; the
  anchors stay clean. The authors' code uses a rate of 0.001 (for absent instances only, as here).

  Args:
    key: the `jax.random` key of the draws.
    embeddings: ``(T, M, D)`` the clip's instance embeddings per frame and identity.
    present: ``(T, M)`` bool, which identities are present in each frame.
    rate: the probability in [0, 1] that an absent (frame, identity) receives a wrong embedding.
    background: optional ``(T, B, D)`` background embeddings (unmatched queries) per frame, also drawn from.

  Returns:
    ``(noisy_embeddings, noisy_present)``: the embeddings for the memory's updates and which entries update
    it. A wrong embedding is drawn uniformly from the frame's present instances and backgrounds; a frame with
    none of them adds no noise. A NaN or infinity in ``embeddings`` or ``background`` makes every embedding NaN.

  Example:
    >>> e = jnp.arange(8.0).reshape(2, 2, 2)
    >>> p = jnp.array([[True, False], [True, True]])
    >>> ne, np_ = ctvis_noise(jax.random.key(0), e, p, rate=1.0)
    >>> [float(x) for x in ne[0, 1]], [bool(x) for x in np_[0]]
    ([0.0, 1.0], [True, True])
  """
  v.check_key("key", key)
  e = _check_embeddings("embeddings", embeddings, 3)
  t, m, d = np.shape(e)
  v.check_nonempty("embeddings", e, what="frames")
  present = _check_bool("present", present, (t, m))
  rate = v.check_real("rate", rate, lower=0.0, upper=1.0)
  cands, cmask = e, present
  if background is not None:
    b = _check_embeddings("background", background, 3)
    if np.shape(b)[0] != t or np.shape(b)[2] != d:
      raise ValueError(f"background: must have shape ({t}, B, {d}), got shape {np.shape(b)}")
    cands = jnp.concatenate([e, b.astype(e.dtype)], axis=1)
    cmask = jnp.concatenate([present, jnp.ones(np.shape(b)[:2], bool)], axis=1)
  return _noise_core(key, e, present, cands, cmask, rate)


@jax.jit
def _noise_core(key, e, present, cands, cmask, rate):
  t, m = present.shape
  k_flip, k_pick = jax.random.split(key)
  flip = (~present) & (jax.random.uniform(k_flip, (t, m)) < rate) & cmask.any(axis=1, keepdims=True)
  logits = jnp.where(cmask, 0.0, -jnp.inf)  # uniform over the frame's candidates
  pick = jax.random.categorical(k_pick, jnp.broadcast_to(logits[:, None, :], (t, m, cmask.shape[1])), axis=-1)
  wrong = jnp.take_along_axis(cands, pick[..., None], axis=1)
  noisy = jnp.where(flip[..., None], wrong, e)
  return v.nan_unless(_all_finite(cands), noisy), present | flip


class CtvisItems(NamedTuple):
  """Contrastive items in static shapes: K anchors, each with one positive and up to P negatives.

  Attributes:
    anchors: ``(K, D)``.
    positives: ``(K, D)``.
    negatives: ``(K, P, D)``.
    negative_mask: ``(K, P)`` bool, which negatives are real.
    item_mask: ``(K,)`` bool, which items are real (an anchor with no positive is not an item).
  """

  anchors: jax.Array
  positives: jax.Array
  negatives: jax.Array
  negative_mask: jax.Array
  item_mask: jax.Array


def _check_clip(embeddings, present, background):
  e = _check_embeddings("embeddings", embeddings, 3)
  t, m, d = np.shape(e)
  if t < 2:
    raise ValueError(f"embeddings: must hold at least 2 frames (axis 0), got shape {np.shape(e)}")
  if m < 1:
    raise ValueError(f"embeddings: must hold at least one identity (axis 1), got shape {np.shape(e)}")
  present = _check_bool("present", present, (t, m))
  if background is None:
    b = jnp.zeros((t, 0, d), e.dtype)
  else:
    b = _check_embeddings("background", background, 3)
    if np.shape(b)[0] != t or np.shape(b)[2] != d:
      raise ValueError(f"background: must have shape ({t}, B, {d}), got shape {np.shape(b)}")
    b = b.astype(e.dtype)
  return e, present, b


def ctvis_contrastive_items(embeddings: ArrayLike, present: ArrayLike, *, background: ArrayLike | None = None,
                            key: jax.Array | None = None, noise_rate: float = 0.0, average_prob: float = 0.5,
                            momentum: float | None = None) -> CtvisItems:
  """CTVIS's contrastive items: the clip's frames run through a memory bank in order, as at inference.

  The memory starts empty. For t = 0 .. T-1, with the memory M_{t-1} holding frames 0 .. t-1:

  - every identity i present at t whose slot is valid gives an item: anchor ``e_{t,i}``; positive the slot's
    momentum-averaged embedding ``average_i`` (with probability ``average_prob``, else its last embedding
    ``last_i``, as the authors' code draws it); negatives the momentum-averaged embeddings of the other valid
    slots (the tracks the anchor is matched against at inference) and the background embeddings of frame
    t-1;
  - then the memory takes frame t (`ctvis_memory_update`), its embeddings noised by `ctvis_noise` at
    ``noise_rate``.

  So an identity back after an occlusion is compared with its track's memory from before it, not skipped.
  Gradients flow into anchors, positives and negatives (they are the same forward pass, as in the authors'
  code). Differences from the authors' code: its negatives are the other *query embeddings of frame t-1*
  (instances and backgrounds) rather than the other tracks' memory embeddings; and an instance's first
  appearance there takes its next appearance as the positive, while here it gives no item.

  Args:
    embeddings: ``(T, M, D)`` instance embeddings per frame and identity (T >= 2).
    present: ``(T, M)`` bool.
    background: optional ``(T, B, D)`` background embeddings per frame.
    key: the `jax.random` key (for the positive's draw and the noise); required unless ``average_prob`` is 1
      and ``noise_rate`` is 0.
    noise_rate: `ctvis_noise`'s rate.
    average_prob: the probability in [0, 1] that the positive is the momentum average (else the last one).
    momentum: `ctvis_memory_update`'s momentum (None: similarity-guided).

  Returns:
    `CtvisItems` with K = T * M items and P = M + B negatives (the anchor's own slot masked).

  Example:
    >>> e = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    >>> items = ctvis_contrastive_items(e, jnp.ones((2, 1), bool), average_prob=1.0)
    >>> [bool(x) for x in items.item_mask], [float(x) for x in items.positives[1]]
    ([False, True], [1.0, 0.0])
  """
  e, present, b = _check_clip(embeddings, present, background)
  t, m, d = e.shape
  noise_rate = v.check_real("noise_rate", noise_rate, lower=0.0, upper=1.0)
  average_prob = v.check_real("average_prob", average_prob, lower=0.0, upper=1.0)
  if momentum is not None:
    momentum = v.check_real("momentum", momentum, lower=0.0, upper=1.0)
  need_key = not (isinstance(noise_rate, float) and noise_rate == 0.0 and isinstance(average_prob, float)
                  and average_prob == 1.0)
  if need_key:
    v.check_key("key", key, why=" when noise_rate > 0 or average_prob < 1")
  else:
    key = jax.random.key(0)  # not drawn from
  return _items_core(e, present, b, key, noise_rate, average_prob, need_key, background is not None, momentum)


@functools.partial(jax.jit, static_argnums=(6, 7, 8))
def _items_core(e, present, b, key, noise_rate, average_prob, need_key, has_background, momentum):
  t, m, d = e.shape
  if need_key:
    k_noise, k_pos = jax.random.split(key)
    if has_background:
      cands = jnp.concatenate([e, b], axis=1)
      cmask = jnp.concatenate([present, jnp.ones(b.shape[:2], bool)], axis=1)
    else:
      cands, cmask = e, present
    noisy, noisy_present = _noise_core(k_noise, e, present, cands, cmask, noise_rate)
    use_average = jax.random.uniform(k_pos, (t, m)) < average_prob
  else:
    noisy, noisy_present = e, present
    use_average = jnp.ones((t, m), bool)
  prev_b = jnp.concatenate([jnp.zeros_like(b[:1]), b[:-1]], axis=0)
  has_prev_b = jnp.arange(t) > 0
  memory = ctvis_memory_init(m, d, e.dtype)
  eye = jnp.eye(m, dtype=bool)

  def step(mem, xs):
    e_t, p_t, ne_t, np_t, avg_t, b_t, hb_t = xs
    positive = jnp.where(avg_t[:, None], mem.average, mem.last)
    item = p_t & mem.valid
    negs = jnp.broadcast_to(mem.average[None], (m, m, d))
    nmask = mem.valid[None, :] & ~eye
    nb = b_t.shape[0]
    negs = jnp.concatenate([negs, jnp.broadcast_to(b_t[None], (m, nb, d))], axis=1)
    nmask = jnp.concatenate([nmask, jnp.broadcast_to(hb_t, (m, nb))], axis=1)
    mem = _update_core(mem, ne_t, np_t, momentum, None)
    return mem, (e_t, positive, negs, nmask, item)

  _, out = jax.lax.scan(step, memory, (e, present, noisy, noisy_present, use_average, prev_b, has_prev_b))
  anchors, positives, negatives, nmask, item = out
  negatives = v.nan_unless(_all_finite(b), negatives)  # the last frame's backgrounds are never a negative
  return CtvisItems(anchors.reshape(t * m, d), positives.reshape(t * m, d),
                    negatives.reshape(t * m, -1, d), nmask.reshape(t * m, -1), item.reshape(t * m))


def ctvis_reference_items(embeddings: ArrayLike, present: ArrayLike, *,
                          background: ArrayLike | None = None) -> CtvisItems:
  """The baseline's contrastive items from one reference frame (IDOL / MinVIS-style), frame t against t-1.

  For t = 1 .. T-1 (items at t = 0 are masked, so K matches `ctvis_contrastive_items`), every identity i
  present in both frame t and its reference frame t-1 gives an item: anchor ``e_{t,i}``, positive
  ``e_{t-1,i}``, negatives the other identities present at t-1 and the background embeddings of t-1. An
  identity absent from the reference frame gives no item.

  Args:
    embeddings: ``(T, M, D)`` instance embeddings per frame and identity (T >= 2).
    present: ``(T, M)`` bool.
    background: optional ``(T, B, D)`` background embeddings per frame.

  Returns:
    `CtvisItems` with K = T * M items and P = M + B negatives.

  Example:
    >>> e = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 2.0]]])
    >>> items = ctvis_reference_items(e, jnp.ones((2, 2), bool))
    >>> [bool(x) for x in items.item_mask], [float(x) for x in items.positives[2]]
    ([False, False, True, True], [1.0, 0.0])
  """
  e, present, b = _check_clip(embeddings, present, background)
  return _reference_core(e, present, b)


@jax.jit
def _reference_core(e, present, b):
  t, m, d = e.shape
  nb = b.shape[1]
  ref = jnp.concatenate([jnp.zeros_like(e[:1]), e[:-1]], axis=0)
  ref_present = jnp.concatenate([jnp.zeros_like(present[:1]), present[:-1]], axis=0)
  ref_b = jnp.concatenate([jnp.zeros_like(b[:1]), b[:-1]], axis=0)
  eye = jnp.eye(m, dtype=bool)
  negs = jnp.concatenate([jnp.broadcast_to(ref[:, None], (t, m, m, d)),
                          jnp.broadcast_to(ref_b[:, None], (t, m, nb, d))], axis=2)
  has_ref = (jnp.arange(t) > 0)[:, None, None]
  nmask = jnp.concatenate([ref_present[:, None, :] & ~eye[None], jnp.broadcast_to(has_ref, (t, m, nb))], axis=2)
  item = present & ref_present
  negs = v.nan_unless(_all_finite(b), negs)  # the last frame's backgrounds are never a negative
  return CtvisItems(e.reshape(t * m, d), ref.reshape(t * m, d), negs.reshape(t * m, m + nb, d),
                    nmask.reshape(t * m, m + nb), item.reshape(t * m))


def ctvis_contrastive_loss(items: CtvisItems, *, aux_weight: float = 1.5) -> jax.Array:
  """The contrastive loss over CtvisItems (IDOL's form, as CTVIS uses it), plus the auxiliary cosine term.

  For an item with anchor a, positive k+ and negatives k-_j (dot products, no temperature):

      L_item = log(1 + sum_j exp(a . k-_j - a . k+)),

  the multi-positive form ``log(1 + sum_{k+} sum_{k-} exp(a.k- - a.k+))`` of IDOL with one positive. The
  auxiliary term pulls cosine similarities to their labels (1 for the positive, 0 for negatives):
  ``A_item = mean_{k in {k+, k-_j}} (cos(a, k) - label_k)^2``. The loss is
  ``mean_items L_item + aux_weight * mean_items A_item`` over the real items (0 when there are none). The
  authors weigh the two terms 2 and 3 (``aux_weight = 1.5`` relative to the first, the default).

  Args:
    items: `CtvisItems` (from `ctvis_contrastive_items` or `ctvis_reference_items`).
    aux_weight: the weight (>= 0) of the auxiliary cosine term.

  Returns:
    The scalar loss. A NaN or infinity in any embedding of ``items`` makes it NaN.

  Example:
    >>> items = CtvisItems(jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 0.0]]), jnp.array([[[0.0, 1.0]]]),
    ...                    jnp.array([[True]]), jnp.array([True]))
    >>> round(float(ctvis_contrastive_loss(items, aux_weight=0.0)), 4)  # log(1 + e^-1)
    0.3133
  """
  if not isinstance(items, CtvisItems):
    raise TypeError(f"items: must be a CtvisItems, got {type(items).__name__}")
  aux_weight = v.check_real("aux_weight", aux_weight, lower=0.0)
  a = _check_embeddings("items", items.anchors, 2)
  k, d = a.shape
  if np.shape(items.positives) != (k, d) or np.ndim(items.negatives) != 3 or np.shape(items.negatives)[::2] != (
      k, d) or np.shape(items.negative_mask) != np.shape(items.negatives)[:2] or np.shape(items.item_mask) != (k,):
    raise ValueError(f"items: fields must have shapes (K, D), (K, D), (K, P, D), (K, P), (K,), got "
                     f"{[np.shape(x) for x in items]}")
  pos = v.check_floating("items", items.positives)
  neg = v.check_floating("items", items.negatives)
  nmask = _check_bool("items", items.negative_mask)
  imask = _check_bool("items", items.item_mask)
  return _loss_core(a, pos, neg, nmask, imask, aux_weight)


@jax.jit
def _loss_core(a, pos, neg, nmask, imask, aux_weight):
  k = a.shape[0]
  s_pos = jnp.sum(a * pos, axis=-1)
  s_neg = jnp.einsum("kd,kpd->kp", a, neg)
  diff = jnp.where(nmask, s_neg - s_pos[:, None], -jnp.inf)
  diff = jnp.concatenate([jnp.zeros((k, 1), diff.dtype), diff], axis=1)
  per_item = jax.nn.logsumexp(diff, axis=1)
  an, pn, nn_ = _normalize(a), _normalize(pos), _normalize(neg)
  cos_pos = jnp.sum(an * pn, axis=-1)
  cos_neg = jnp.einsum("kd,kpd->kp", an, nn_)
  sq = (cos_pos - 1.0) ** 2 + jnp.sum(jnp.where(nmask, cos_neg ** 2, 0.0), axis=1)
  aux = sq / (1.0 + jnp.sum(nmask, axis=1))
  n = jnp.sum(imask)
  w = imask.astype(a.dtype) / jnp.maximum(n, 1)
  loss = jnp.sum(jnp.where(imask, per_item, 0.0) * w) + aux_weight * jnp.sum(jnp.where(imask, aux, 0.0) * w)
  return v.nan_unless(_all_finite(a, pos, neg), loss)


def ctvis_associate(memory: CtvisMemory, embeddings: ArrayLike, detected: ArrayLike, *, threshold: float = 0.2,
                    momentum: float | None = None, max_age: int | None = None) -> tuple[jax.Array, CtvisMemory]:
  """One frame of online association against the memory bank, as the authors' tracker does it.

  Scores: ``S = E M^T`` between the frame's detections E and the valid slots' momentum-averaged embeddings
  M; the bi-softmax score is the mean of the softmax over slots (per detection) and over detections (per
  slot). Detections are matched greedily in order: detection n takes its best slot if the score exceeds
  ``threshold`` (the authors' 0.2) and the slot is not taken yet; an unmatched detection opens the first free
  (invalid) slot, or gets id -1 when none is left. The memory then takes each slot's new embedding
  (`ctvis_memory_update`). The authors' extra weighting of close scores by track length is left out.

  Args:
    memory: the bank before the frame (M slots).
    embeddings: ``(N, D)`` the frame's detection embeddings.
    detected: ``(N,)`` bool, which rows are real detections.
    threshold: the bi-softmax score a match must exceed, in [0, 1].
    momentum: `ctvis_memory_update`'s momentum (None: similarity-guided).
    max_age: `ctvis_memory_update`'s max_age.

  Returns:
    ``(ids, memory)``: ``(N,)`` int32 slot ids (-1 for rows not detected or left without a slot) and the
    updated bank. A NaN or infinity anywhere in ``embeddings`` makes the bank's averages NaN.

  Example:
    >>> m = ctvis_memory_init(4, 2)
    >>> ids, m = ctvis_associate(m, jnp.array([[3.0, 0.0], [0.0, 3.0]]), jnp.array([True, True]))
    >>> ids, m = ctvis_associate(m, jnp.array([[0.0, 3.0], [3.0, 0.0]]), jnp.array([True, True]))
    >>> [int(i) for i in ids]
    [1, 0]
  """
  _check_memory(memory)
  m, d = np.shape(memory.average)
  e = _check_embeddings("embeddings", embeddings, 2)
  if np.shape(e)[1] != d:
    raise ValueError(f"embeddings: must have {d} columns (the memory's embedding size), got shape {np.shape(e)}")
  n = np.shape(e)[0]
  detected = _check_bool("detected", detected, (n,))
  threshold = v.check_real("threshold", threshold, lower=0.0, upper=1.0)
  if momentum is not None:
    momentum = v.check_real("momentum", momentum, lower=0.0, upper=1.0)
  if max_age is not None:
    max_age = v.check_int("max_age", max_age, lower=0)
  return _associate_core(memory, e.astype(memory.average.dtype), detected, threshold, momentum, max_age)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _associate_core(memory, e, detected, threshold, momentum, max_age):
  n = e.shape[0]
  m = memory.valid.shape[0]
  sim = e @ memory.average.T
  ok = detected[:, None] & memory.valid[None, :]
  masked = jnp.where(ok, sim, -jnp.inf)
  safe_rows = jnp.where(ok.any(axis=1, keepdims=True), masked, 0.0)
  safe_cols = jnp.where(ok.any(axis=0, keepdims=True), masked, 0.0)
  score = jnp.where(ok, 0.5 * (jax.nn.softmax(safe_rows, axis=1) + jax.nn.softmax(safe_cols, axis=0)), -1.0)

  def greedy(i, carry):
    ids, taken = carry
    s = jnp.where(taken, -1.0, score[i])
    j = jnp.argmax(s)
    hit = detected[i] & (s[j] > threshold)
    return ids.at[i].set(jnp.where(hit, j, -1)), taken.at[j].set(taken[j] | hit)

  init = (jnp.full((n,), -1, jnp.int32), jnp.zeros((m,), bool))
  ids, taken = jax.lax.fori_loop(0, n, greedy, init) if n else init
  need = detected & (ids < 0)
  free = ~memory.valid & ~taken
  free_slots = jnp.argsort(~free, stable=True)  # free slots first, in order
  rank = jnp.cumsum(need) - 1
  num_free = jnp.sum(free)
  new = jnp.where(rank < num_free, free_slots[jnp.clip(rank, 0, m - 1)], -1)
  ids = jnp.where(need, new, ids).astype(jnp.int32)
  onehot = (ids[:, None] == jnp.arange(m)[None, :]) & (ids >= 0)[:, None]
  slot_e = onehot.T.astype(e.dtype) @ jnp.where(detected[:, None], e, 0.0)
  memory = _update_core(memory, slot_e, onehot.any(axis=0), momentum, max_age)
  memory = memory._replace(average=v.nan_unless(_all_finite(e), memory.average))
  return ids, memory


def ctvis_track(embeddings: ArrayLike, detected: ArrayLike, *, num_slots: int, threshold: float = 0.2,
                momentum: float | None = None, max_age: int | None = None) -> jax.Array:
  """Online association of a whole video: `ctvis_associate` frame by frame from an empty memory bank.

  Args:
    embeddings: ``(T, N, D)`` detection embeddings per frame.
    detected: ``(T, N)`` bool.
    num_slots: the memory's number of track slots (>= 1).
    threshold, momentum, max_age: as in `ctvis_associate`.

  Returns:
    ``(T, N)`` int32 track ids (-1 where not detected or no slot was left). Ids are integers and cannot carry a
    NaN, so a NaN or infinity in ``embeddings`` raises (eagerly; call it on concrete arrays).

  Example:
    >>> e = jnp.array([[[3.0, 0.0], [0.0, 3.0]], [[0.0, 3.0], [3.0, 0.0]]])
    >>> [[int(i) for i in row] for row in ctvis_track(e, jnp.ones((2, 2), bool), num_slots=4)]
    [[0, 1], [1, 0]]
  """
  e = _check_embeddings("embeddings", embeddings, 3)
  t, n, d = np.shape(e)
  detected = _check_bool("detected", detected, (t, n))
  v.check_finite("embeddings", e)
  num_slots = v.check_int("num_slots", num_slots, lower=1)
  threshold = v.check_real("threshold", threshold, lower=0.0, upper=1.0)
  if momentum is not None:
    momentum = v.check_real("momentum", momentum, lower=0.0, upper=1.0)
  if max_age is not None:
    max_age = v.check_int("max_age", max_age, lower=0)
  return _track_core(e, detected, threshold, num_slots, momentum, max_age)


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _track_core(e, detected, threshold, num_slots, momentum, max_age):
  memory = ctvis_memory_init(num_slots, e.shape[-1], e.dtype)

  def step(mem, xs):
    ids, mem = _associate_core(mem, xs[0], xs[1], threshold, momentum, max_age)
    return mem, ids

  _, ids = jax.lax.scan(step, memory, (e, detected))
  return ids


def ctvis_pseudo_video(key: jax.Array, image: ArrayLike, *, num_frames: int, max_rotation: float = 15.0,
                       max_scale: float = 0.15, max_shift: float = 0.15, order: int = 1) -> jax.Array:
  """A pseudo-video from one still image: a smooth random affine trajectory (rotation, zoom, shift).

  CTVIS finds that clips made from still images train association well. Two poses are drawn, each a rotation
  in ``[-max_rotation, max_rotation]`` degrees, a scale in ``[1 - max_scale, 1 + max_scale]`` and a shift of
  ``[-max_shift, max_shift]`` of the image size per axis; frame t (of T) samples the image through the pose
  interpolated linearly at ``t / (T - 1)``, about the image centre, zero outside. The authors' pseudo-videos
  rotate COCO images by up to 15 degrees with random crops and resizes (``ctvis/data/pseudo_video``); here
  the crop is the zoom and shift. A pure function of ``key``: masks transformed with the same key (and
  ``order=0``) follow the image exactly.

  Args:
    key: the `jax.random` key of the trajectory.
    image: ``(H, W)`` or ``(H, W, C)`` floating image (channels are transformed alike).
    num_frames: T >= 1 (T = 1 gives the first pose).
    max_rotation: degrees, >= 0.
    max_scale: in [0, 1).
    max_shift: >= 0, a fraction of the image size.
    order: 0 (nearest, for masks) or 1 (bilinear).

  Returns:
    ``(T, H, W)`` or ``(T, H, W, C)`` frames. A NaN or infinity in ``image`` makes every frame NaN.

  Example:
    >>> clip = ctvis_pseudo_video(jax.random.key(0), jnp.ones((8, 8)), num_frames=3)
    >>> clip.shape
    (3, 8, 8)
  """
  v.check_key("key", key)
  if not hasattr(image, "shape") and not isinstance(image, (list, tuple)):
    raise TypeError(f"image: must be a floating array, got {type(image).__name__}")
  v.check_ndim("image", image, (2, 3))
  dtype = getattr(image, "dtype", None)
  if dtype is None:
    dtype = np.asarray(image).dtype
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"image: must be a floating array, got dtype {dtype}")
  v.check_nonempty("image", image, axis=0, what="rows")
  v.check_nonempty("image", image, axis=1, what="columns")
  num_frames = v.check_int("num_frames", num_frames, lower=1)
  max_rotation = v.check_real("max_rotation", max_rotation, lower=0.0)
  max_scale = v.check_real("max_scale", max_scale, lower=0.0, upper=1.0, upper_open=True)
  max_shift = v.check_real("max_shift", max_shift, lower=0.0)
  order = v.check_int("order", order, lower=0, upper=1)
  img = v.check_floating("image", image)
  return _pseudo_core(key, img, max_rotation, max_scale, max_shift, num_frames, order)


@functools.partial(jax.jit, static_argnums=(5, 6))
def _pseudo_core(key, img, max_rotation, max_scale, max_shift, num_frames, order):
  squeeze = img.ndim == 2
  if squeeze:
    img = img[..., None]
  h, w, _ = img.shape
  u = jax.random.uniform(key, (2, 4), minval=-1.0, maxval=1.0)
  poses = u * jnp.array([jnp.deg2rad(max_rotation), max_scale, max_shift, max_shift])
  frac = jnp.linspace(0.0, 1.0, num_frames) if num_frames > 1 else jnp.zeros((1,))
  pose = poses[0][None] + frac[:, None] * (poses[1] - poses[0])[None]
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=img.dtype), jnp.arange(w, dtype=img.dtype), indexing="ij")
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0

  def frame(p):
    ang, sc, dy, dx = p[0], 1.0 + p[1], p[2] * h, p[3] * w
    # output pixel -> source pixel: the inverse of (rotate by ang, scale by sc, shift by (dy, dx)) about the centre
    y0, x0 = yy - cy - dy, xx - cx - dx
    c, s = jnp.cos(ang), jnp.sin(ang)
    sy = (c * y0 + s * x0) / sc + cy
    sx = (-s * y0 + c * x0) / sc + cx
    return jnp.stack([jax.scipy.ndimage.map_coordinates(img[..., ch], [sy, sx], order=order, mode="constant")
                      for ch in range(img.shape[-1])], axis=-1)

  frames = jax.vmap(frame)(pose.astype(img.dtype))
  frames = v.nan_unless(_all_finite(img), frames)
  return frames[..., 0] if squeeze else frames
