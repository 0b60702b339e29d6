"""UniID's inference-time normalised rescaling of identity features (a reading of the paper's description).

Pang, Zhou, Wang, Zhao, Yang, Li, Mao, "Training for Identity, Inference for Controllability: A Unified
Approach to Tuning-Free Face Personalization", 2025, https://arxiv.org/abs/2512.03964.

What could be verified (the abstract and third-party summaries of the paper; the authors' code was not
public when this was written): UniID adds an identity branch (face features injected through an adapter's
cross-attention, beside face features mapped into the text embedding) to a text-to-image diffusion model,
trains both branches on identity only, and at inference applies a *layer-wise normalised rescaling* that
"recovers the text controllability of the base diffusion model". The exact formula was not verified.

This module's reading (ours): in each cross-attention layer, the identity branch's output ``f_id`` is
normalised and rescaled to a user-set multiple ``s`` of the norm of the base (text) branch's output
``f_txt``, so that the identity signal can never swamp the text signal whatever its trained magnitude:

    f_id' = s ||f_txt|| f_id / ||f_id||,        out = f_txt + f_id'.

With ``per_token=True`` the norms are taken per token (over the feature axis); with ``per_token=False`` one
norm per layer output (over tokens and features), i.e. one factor per example. ``s = 0`` gives back the
base model; ``s = 1`` gives the identity term the text term's magnitude. A zero ``f_id`` stays zero.
Norms are computed on max-abs-rescaled vectors, so tiny or huge features do not under- or overflow.

Covered: the rescaling and the injection sum. Not covered: the diffusion model and its cross-attention, the
two identity branches (text-embedding mapping and adapter), the identity-focused training scheme, and any
detail of the paper's rescaling (which norm, which layers, which default scale) not stated above.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxdyn import _validation

__all__ = ["normalized_rescale", "inject_identity"]


def _norm(x, axes):
  """``||x||`` over ``axes`` (kept), computed on ``x / max|x|`` so that it neither under- nor overflows."""
  big = jnp.max(jnp.abs(x), axis=axes, keepdims=True)
  safe = jnp.where(big > 0, big, 1.0)
  return big * jnp.sqrt(jnp.sum((x / safe) ** 2, axis=axes, keepdims=True)), safe


def _check(identity, reference, scale):
  _validation.check_ndim("identity", identity, (2, 3))
  _validation.check_same_shape("reference", reference, "identity", identity)
  s = _validation.check_real("scale", scale, lower=0.0, upper=100.0)
  return _validation.check_floating("identity", identity), _validation.check_floating("reference", reference), s


def _rescale(f_id, f_txt, s, per_token):
  axes = (-1,) if per_token else tuple(range(1, f_id.ndim))
  n_txt, _ = _norm(f_txt, axes)
  n_id, big = _norm(f_id, axes)
  unit = jnp.where(n_id > 0, (f_id / big) / jnp.where(n_id > 0, n_id / big, 1.0), f_id * 0.0)
  return (s * n_txt) * unit


def normalized_rescale(identity: jax.Array, reference: jax.Array, scale: float = 1.0,
                       per_token: bool = True) -> jax.Array:
  """``scale * ||reference|| * identity / ||identity||``: identity features at a set multiple of the text norm.

  Args:
    identity: the identity branch's features ``f_id``, shape ``(B, N, D)`` (tokens of dimension ``D``) or
      ``(B, D)``.
    reference: the base (text) branch's features ``f_txt``, the shape of ``identity``.
    scale: ``s`` in [0, 100]; 0 removes the identity term.
    per_token: norms per token (over ``D``) when True, else one norm per example over all its entries.

  Returns:
    ``f_id'``, the shape of ``identity``: the direction of ``f_id`` with norm ``s ||f_txt||`` (0 where
    ``f_id`` is 0).

  Example:
    >>> import jax.numpy as jnp
    >>> normalized_rescale(jnp.array([[3.0, 4.0]]), jnp.array([[0.0, 10.0]]), 0.5).tolist()
    [[3.0, 4.0]]
  """
  f_id, f_txt, s = _check(identity, reference, scale)
  return _rescale(f_id, f_txt, s, per_token)


def inject_identity(reference: jax.Array, identity: jax.Array, scale: float = 1.0,
                    per_token: bool = True) -> jax.Array:
  """``reference + normalized_rescale(identity, reference, scale)``: the layer output with identity injected.

  Args:
    reference: the base (text) cross-attention output ``f_txt``, ``(B, N, D)`` or ``(B, D)``.
    identity: the identity branch's output ``f_id``, the same shape.
    scale: ``s`` in [0, 100]; 0 gives back ``reference`` (the base model).
    per_token: as in `normalized_rescale`.

  Returns:
    ``f_txt + s ||f_txt|| f_id / ||f_id||``, the shape of ``reference``.

  Example:
    >>> import jax.numpy as jnp
    >>> inject_identity(jnp.array([[0.0, 2.0]]), jnp.array([[5.0, 0.0]]), 1.0).tolist()
    [[2.0, 2.0]]
  """
  f_id, f_txt, s = _check(identity, reference, scale)
  return f_txt + _rescale(f_id, f_txt, s, per_token)
