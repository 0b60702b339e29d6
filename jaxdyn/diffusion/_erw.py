"""Embedded Representation Warmup (ERW): align a diffusion model's early layers to a pretrained encoder.

Liu, Sun, Li, Lin, "Efficient Generative Model Training via Embedded Representation Warmup", 2025,
https://arxiv.org/abs/2504.10188 (code https://github.com/LINs-lab/ERW); it builds on REPA (Yu et al.,
"Representation Alignment for Generation", 2024, https://arxiv.org/abs/2410.06940).

The patch tokens ``h`` ``(B, N, d)`` after block ``j`` of the diffusion transformer pass through a small MLP
projector (`Projector`, REPA's three linear layers with SiLU) and are aligned to a frozen pretrained
encoder's patch features ``y`` ``(B, N, D)`` of the clean image by the negative cosine similarity averaged
over tokens and batch (`representation_alignment_loss`):

.. math::  L_{align} = -\\frac{1}{B N} \\sum_{b, n} \\frac{\\langle z_{bn}, y_{bn} \\rangle}{\\|z_{bn}\\| \\|y_{bn}\\|},
           \\qquad z = \\mathrm{proj}(h).

Training has two phases (the authors' ``train.py``):

1. **warm-up**, ``warmup_steps`` steps: only the input embeddings, the first ``j`` blocks and the projector
   are trained, on ``L_align`` alone (times a constant, 0.5 in the code), with the clean image as input
   (the code passes time 0 of its linear path, i.e. the clean image);
2. **full training**: a full model whose input embeddings, first ``j`` blocks and projector are copied from
   the warm-up (`copy_warmup_layers`; the rest freshly initialised, a fresh optimizer) minimises the
   diffusion loss plus ``lambda(t) L_align`` with the weight decaying by half every ``half_life`` steps of
   the full phase (`erw_alignment_weight`):

   .. math::  \\lambda(t) = \\lambda_0 \\, 2^{-\\min(\\max(t - W, 0),\\, T - W) / h}

   (``W`` warm-up steps, ``T`` total steps, ``h = 50,000`` and ``lambda_0`` = 1, 3 or 6 for SiT-B, -L,
   -XL in the code). The step ``t`` counts the warm-up steps: the warm-up is inside the total budget.

Only the abstract of the paper could be read here; the details above (the layers, the projector, the loss,
the coefficient schedule) are read from the authors' code. One difference from that code:
``loss.py``'s warm-up loss (``compute_proj_loss``) normalises and accumulates outside its loop over the
batch, so only the **last** batch element counts (still divided by the batch size): an indentation slip.
The default here is the evident intent (every element, as the full phase's loss in the same file does);
``official_compat=True`` reproduces the slip.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdyn import _validation

__all__ = ["Projector", "copy_warmup_layers", "erw_alignment_weight", "representation_alignment_loss"]

_EPS = 1e-12  # torch.nn.functional.normalize's default: x / max(||x||, eps)


def _check_flag(name, value) -> bool:
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name}: must be a bool, got {type(value).__name__}")
  return bool(value)


def _normalize(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def representation_alignment_loss(projected: jax.Array, target: jax.Array, *,
                                  official_compat: bool = False) -> jax.Array:
  """Negative cosine similarity between projected model tokens and encoder tokens, averaged (module docstring).

  ``L = -(1 / (B N)) sum_{b,n} cos(projected[b, n], target[b, n])``, each vector normalised as
  ``x / max(||x||, 1e-12)`` (so a zero vector has cosine 0 with anything). Identical directions give -1,
  orthogonal ones 0, opposite ones +1.

  Args:
    projected: ``(B, N, D)`` the model's projected patch tokens.
    target: ``(B, N, D)`` the frozen encoder's patch features (no gradient flows into them).
    official_compat: the authors' warm-up loss (``loss.py``, ``compute_proj_loss``), where an indentation
      slip keeps only the last batch element: ``-(1 / N) sum_n cos(projected[B-1, n], target[B-1, n]) / B``.

  Returns:
    The scalar loss in [-1, 1] (NaN when an input holds a NaN or an infinity).

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.array([[[1.0, 0.0], [1.0, 1.0]]])
    >>> y = jnp.array([[[2.0, 0.0], [0.0, 3.0]]])
    >>> round(float(representation_alignment_loss(z, y)), 4)  # -(1 + 1/sqrt(2)) / 2
    -0.8536
  """
  compat = _check_flag("official_compat", official_compat)
  projected = _validation.check_floating("projected", projected)
  target = _validation.check_floating("target", target)
  _validation.check_ndim("projected", projected, 3)
  _validation.check_same_shape("target", target, "projected", projected)
  _validation.check_nonempty("projected", projected)
  _validation.check_nonempty("projected", projected, axis=1, what="tokens")
  target = jax.lax.stop_gradient(target)
  cos = jnp.sum(_normalize(projected) * _normalize(target), axis=-1)  # (B, N)
  if compat:
    return -jnp.mean(cos[-1]) / cos.shape[0]
  return -jnp.mean(cos)


def erw_alignment_weight(step, *, warmup_steps: int, total_steps: int | None = None, initial_weight: float = 1.0,
                         half_life: float = 50000.0) -> jax.Array:
  """The alignment loss's weight at global step ``step`` of the full phase (module docstring).

  ``lambda(t) = initial_weight * 2 ** (-min(max(t - warmup_steps, 0), total_steps - warmup_steps) / half_life)``:
  constant ``initial_weight`` up to the end of the warm-up, then halved every ``half_life`` steps, and held
  from ``total_steps`` on (the authors' ``get_dynamic_proj_coeff``; their warm-up phase itself uses a fixed
  coefficient, ``--proj-coeff``, not this schedule). It is an `optax.Schedule` once the keywords are bound.

  Args:
    step: the global step (warm-up steps included): an int or an integer array (traced under ``jit``).
    warmup_steps: ``W >= 0``.
    total_steps: ``T >= W``, or None (no clamp).
    initial_weight: ``lambda_0 >= 0`` (the code: 1 for SiT-B, 3 for SiT-L, 6 for SiT-XL).
    half_life: ``h > 0`` steps (the code: 50,000).

  Returns:
    A float32 array of the shape of ``step``.

  Example:
    >>> [round(float(erw_alignment_weight(t, warmup_steps=100, total_steps=400, initial_weight=2.0,
    ...                                   half_life=100)), 3) for t in (0, 100, 200, 300, 500)]
    [2.0, 2.0, 1.0, 0.5, 0.25]
  """
  w = _validation.check_int("warmup_steps", warmup_steps, lower=0)
  if total_steps is not None:
    total_steps = _validation.check_int("total_steps", total_steps, lower=w)
  lam = _validation.check_real("initial_weight", initial_weight, lower=0.0, upper=1e6)
  h = _validation.check_real("half_life", half_life, lower=0.0, lower_open=True, upper=1e12)
  dtype = getattr(step, "dtype", None)
  if isinstance(step, (bool, np.bool_)) or (dtype is not None and not jnp.issubdtype(dtype, jnp.integer)) or (
      dtype is None and not isinstance(step, (int, np.integer))):
    raise TypeError(f"step: must be an integer step count (int or integer array), got {step!r}")
  if _validation.is_concrete(step) and np.size(step) and np.min(np.asarray(step)) < 0:
    raise ValueError(f"step: must be >= 0, got {step!r}")
  t = jnp.maximum(jnp.asarray(step, jnp.float32) - w, 0.0)
  if total_steps is not None:
    t = jnp.minimum(t, float(total_steps - w))
  return jnp.float32(lam) * jnp.exp2(-t / jnp.float32(h))


class Projector(nnx.Module):
  """REPA's / ERW's projector: ``Linear -> SiLU -> Linear -> SiLU -> Linear`` applied to each token.

  Maps the model's token width ``in_features`` to the encoder's feature width ``out_features`` through two
  hidden layers of ``hidden_features`` (2048 in the authors' code). Default flax initialisation (the code
  uses Xavier-uniform weights and zero biases for it, as for every linear layer of its SiT).

  Args:
    in_features: the model's token width ``d``.
    out_features: the encoder's feature width ``D``.
    hidden_features: the hidden width.
    rngs: ``nnx.Rngs`` for initialisation.

  Call it on ``(..., in_features)`` tokens; it returns ``(..., out_features)``.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> Projector(8, 5, hidden_features=16, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 8))).shape
    (2, 3, 5)
  """

  def __init__(self, in_features: int, out_features: int, *, hidden_features: int = 2048, rngs: nnx.Rngs):
    d_in = _validation.check_int("in_features", in_features, lower=1)
    d_out = _validation.check_int("out_features", out_features, lower=1)
    hidden = _validation.check_int("hidden_features", hidden_features, lower=1)
    self.in_features = d_in
    self.fc1 = nnx.Linear(d_in, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.fc3 = nnx.Linear(hidden, d_out, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    shape = tuple(jnp.shape(x))
    if not shape or shape[-1] != self.in_features:
      raise ValueError(f"x: must have {self.in_features} features on its last axis, got shape {shape}")
    return self.fc3(nnx.silu(self.fc2(nnx.silu(self.fc1(jnp.asarray(x))))))


_EMBEDDINGS = ("patch", "noise_mlp", "class_embed")


def copy_warmup_layers(model, warm, depth: int):
  """Initialises ``model``'s early layers from a warm-up DiT (in place); returns ``model``.

  Copies the parameters of the input embeddings (patch, noise and class embeddings), the patch-mixer
  blocks and the first ``depth`` backbone blocks of ``warm`` into ``model`` (both `jaxdyn.models.DiT` of
  the same width); the later blocks and the final layer keep ``model``'s own initialisation. This is the
  authors' transition from the warm-up to the full phase (``load_state_dict(..., strict=False)`` of the
  warm-up model, which holds only the first ``depth`` blocks, into a freshly initialised full model).

  Args:
    model: the full-phase `jaxdyn.models.DiT`.
    warm: the warmed-up `jaxdyn.models.DiT` (at least ``depth`` backbone blocks).
    depth: how many backbone blocks to copy, in ``[1, len(model.blocks)]``.

  Returns:
    ``model``.

  Example:
    >>> from flax import nnx
    >>> from jaxdyn.models import DiT
    >>> a = DiT(1, 10, dim=8, depth=2, num_heads=2, rngs=nnx.Rngs(0))
    >>> b = DiT(1, 10, dim=8, depth=2, num_heads=2, rngs=nnx.Rngs(1))
    >>> m = copy_warmup_layers(a, b, 1)
    >>> bool((m.blocks[0].fc1.kernel[...] == b.blocks[0].fc1.kernel[...]).all())
    True
  """
  from jaxdyn.models import DiT  # noqa: PLC0415  (jaxdyn.models imports nothing of jaxdyn.diffusion)
  for name, m in (("model", model), ("warm", warm)):
    if not isinstance(m, DiT):
      raise TypeError(f"{name}: must be a jaxdyn.models.DiT, got {type(m).__name__}")
  j = _validation.check_int("depth", depth, lower=1, upper=len(model.blocks))
  if len(warm.blocks) < j:
    raise ValueError(f"depth: must be at most warm's {len(warm.blocks)} backbone blocks, got {j}")
  if (warm.dim, warm.patch_size, warm.in_channels, warm.num_classes, len(warm.mixer)) != (
      model.dim, model.patch_size, model.in_channels, model.num_classes, len(model.mixer)):
    raise ValueError("warm: must have model's width, patch size, channels, classes and mixer depth, got "
                     f"{(warm.dim, warm.patch_size, warm.in_channels, warm.num_classes, len(warm.mixer))} against "
                     f"{(model.dim, model.patch_size, model.in_channels, model.num_classes, len(model.mixer))}")
  parts = [*_EMBEDDINGS, *(f"mixer.{i}" for i in range(len(model.mixer))), *(f"blocks.{i}" for i in range(j))]
  for part in parts:
    src, dst = warm, model
    for attr in part.split("."):
      src = src[int(attr)] if attr.isdigit() else getattr(src, attr)
      dst = dst[int(attr)] if attr.isdigit() else getattr(dst, attr)
    nnx.update(dst, jax.tree.map(jnp.array, nnx.state(src, nnx.Param)))
  return model
