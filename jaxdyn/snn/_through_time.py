"""Training a spiking network through time: BPTT, SLTT and SLTT-K as one differentiable loss.

The network is a per-step function ``step_fn(params, state, carry, inputs, t) -> (outputs, carry,
state)``: ``carry`` holds the membrane potentials, ``state`` non-trainable variables such as BatchNorm
statistics (updated at every step, so T times per iteration), ``inputs`` whatever the step reads
(the static input, dropout masks fixed over T, an encoder key). The loss is (1/T) sum_t l(o_t, y).

- ``bptt``: the plain `jax.lax.scan`, differentiated by JAX: gradients flow through v[t-1] across
  steps, and the backward pass keeps O(T) residuals.
- ``sltt``: each step's loss l(o_t, y) / T is differentiated at that step, with v[t-1] (the carry)
  held constant, and the parameter gradients are summed inside the forward scan. The loss is a
  `jax.custom_vjp` whose only residual is that accumulated gradient (params-sized), so memory does not
  grow with T.
- ``sltt_k``: the same forward over all T steps, but only K steps drawn uniformly without replacement
  (per call) contribute gradients; the loss is still divided by T and the reported loss sums all T.
  ``steps=`` names the K steps explicitly instead (a test hook, and for schedules of one's own).

The loss is accumulated in its own dtype (at least float32), so float64 parameters train in float64.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxdyn import _validation

__all__ = [
    "MODES",
    "ThroughTimeAux",
    "sample_steps",
    "sltt_step_loss",
    "through_time_loss",
]

MODES = ("bptt", "sltt", "sltt_k")

StepFn = Callable[[Any, Any, Any, Any, jax.Array], tuple[Any, Any, Any]]


class ThroughTimeAux(NamedTuple):
  """What `through_time_loss` returns besides the loss (all without gradient).

  Attributes:
    outputs: sum over the T steps of the step outputs o_t (the authors predict with argmax of it).
    state: the non-trainable state after the T steps (e.g. BatchNorm statistics updated T times).
    carry: the membrane state after step T.
  """

  outputs: Any
  state: Any
  carry: Any


def sltt_step_loss(*, logits: jax.Array, labels: jax.Array, lam_l: float = 0.05,
                   mse_target: float = 1.0) -> jax.Array:
  """The SLTT authors' per-step loss: (1 - lam_L) CE(o_t, y) + lam_L MSE(o_t, 1).

  l(o_t, y) = (1 - lam_L) mean_b CE(o_t,b, y_b) + lam_L mean_{b,c} (o_t,b,c - 1)^2. The division by T
  happens in `through_time_loss`. The MSE target is the constant 1 (the code's ``loss_means``).

  Args:
    logits: ``(B, C)`` step outputs o_t, B >= 1 (an empty batch raises).
    labels: ``(B,)`` integer labels in [0, C), checked eagerly when concrete.
    lam_l: weight of the MSE term in [0, 1] (0.05; 0 on ImageNet in the paper).
    mse_target: the constant the outputs are pulled towards (1.0), finite.

  Returns:
    The scalar step loss; NaN when a logit is NaN or infinite, or (under ``jit``, where labels cannot
    be checked) when a label lies outside [0, C).

  Example:
    >>> import jax.numpy as jnp
    >>> round(float(sltt_step_loss(logits=jnp.zeros((1, 2)), labels=jnp.array([0]), lam_l=0.0)), 4)
    0.6931

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  lam_l = _validation.check_real("lam_l", lam_l, lower=0.0, upper=1.0)
  mse_target = _validation.check_real("mse_target", mse_target)
  if jnp.ndim(logits) != 2:
    raise ValueError(f"logits: must be (B, C), got shape {jnp.shape(logits)}")
  _validation.check_nonempty("logits", logits)
  _validation.check_labels_for_logits("labels", labels, logits)
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  if not (_validation.is_concrete(lam_l) and lam_l == 0.0):  # a traced lam_l: both terms
    loss = (1.0 - lam_l) * loss + lam_l * jnp.mean(jnp.square(logits - mse_target))
  # One scalar flag over the (B, C) step outputs: a -inf logit leaves the CE finite, and a traced
  # out-of-range label would pick an arbitrary entry.
  ok = jnp.all(jnp.isfinite(logits)) & jnp.all(_validation.labels_valid(labels, logits.shape[-1]))
  return _validation.nan_unless(ok, loss)


def sample_steps(key: jax.Array, num_steps: int, k: int) -> jax.Array:
  """A boolean mask of K of the T steps, drawn uniformly without replacement.

  Every K-subset of {0, ..., T-1} has probability 1 / C(T, K); each step is chosen with probability
  K / T.

  Args:
    key: a `jax.random` key (a new one each iteration).
    num_steps: T >= 1.
    k: K, with 1 <= K <= T.

  Returns:
    ``(T,)`` bool with exactly K True entries.

  Example:
    >>> import jax
    >>> int(sample_steps(jax.random.key(0), 6, 2).sum())
    2

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  num_steps = _validation.check_int("num_steps", num_steps, lower=1)
  k = _validation.check_int("k", k, lower=1, upper=num_steps)
  _validation.check_key("key", key)
  chosen = jax.random.permutation(key, num_steps)[:k]
  return jnp.zeros((num_steps,), bool).at[chosen].set(True)


def _steps_mask(steps: Any, num_steps: int, k: int | None) -> jax.Array:
  """SLTT-K's trained steps as a ``(num_steps,)`` bool mask, from a mask or a sequence of step indices.

  Concrete values are checked (shape, range, distinct indices, exactly ``k`` steps when ``k`` is
  given, at least one); a traced mask or index array is only shape-checked.
  """
  if not _validation.is_concrete(steps):
    if steps.dtype == jnp.bool_ and steps.shape == (num_steps,):
      return steps
    if jnp.issubdtype(steps.dtype, jnp.integer) and steps.ndim == 1:
      return jnp.zeros((num_steps,), bool).at[steps].set(True)
    error = ValueError if steps.dtype == jnp.bool_ or jnp.issubdtype(steps.dtype, jnp.integer) else TypeError
    raise error(f"steps: must be a bool ({num_steps},) mask or a 1-D int array of step indices, got "
                f"{steps.dtype}{list(steps.shape)}")
  a = np.asarray(steps)
  if a.dtype == np.bool_:
    if a.shape != (num_steps,):
      raise ValueError(f"steps: a bool mask must have shape ({num_steps},) (num_steps), got shape {a.shape}")
    mask = a
  elif a.ndim == 1 and (a.size == 0 or np.issubdtype(a.dtype, np.integer)):
    idx = a.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= num_steps):
      raise ValueError(f"steps: step indices must lie in [0, {num_steps}) (num_steps), got {idx.tolist()}")
    if len(set(idx.tolist())) != idx.size:
      raise ValueError(f"steps: step indices must be distinct, got {idx.tolist()}")
    mask = np.zeros(num_steps, bool)
    mask[idx] = True
  else:
    raise TypeError(f"steps: must be a bool ({num_steps},) mask or a sequence of int step indices, got "
                    f"{steps!r}")
  count = int(mask.sum())
  if count == 0 or (k is not None and count != k):
    want = f"exactly k = {k}" if k is not None else "at least one"
    raise ValueError(f"steps: must select {want} of the {num_steps} steps, got {count}")
  return jnp.asarray(mask)


def _zeros_like(tree):
  return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), tree)


def _add(a, b):
  return jax.tree.map(jnp.add, a, b)


def _bptt(step_fn, loss_fn, num_steps, unroll, params, state, carry, inputs, labels, out0, loss0):
  def body(c, t):
    carry, state, loss, out_sum = c
    out, carry, state = step_fn(params, state, carry, inputs, t)
    loss = loss + loss_fn(logits=out, labels=labels) / num_steps
    return (carry, state, loss, _add(out_sum, out)), None

  init = (carry, state, loss0, out0)
  (carry, state, loss, out_sum), _ = jax.lax.scan(body, init, jnp.arange(num_steps), unroll=unroll)
  aux = jax.lax.stop_gradient(ThroughTimeAux(out_sum, state, carry))
  return loss, aux


def _sltt(step_fn, loss_fn, num_steps, unroll, params, state, carry, inputs, labels, out0, loss0, mask):
  """SLTT / SLTT-K: the loss as a custom_vjp whose forward accumulates per-step gradients."""

  def scan(params, state, carry, inputs, labels, mask, with_grad: bool):
    def step_loss(p, state, carry, t):
      out, carry, state = step_fn(p, state, carry, inputs, t)
      return loss_fn(logits=out, labels=labels) / num_steps, (out, carry, state)

    def body(c, t):
      carry, state, loss, out_sum, g_sum = c
      if not with_grad:
        l, (out, carry, state) = step_loss(params, state, carry, t)
      else:
        # v[t-1] (carry) and the statistics (state) enter as constants: only this step's path to
        # the parameters is differentiated.
        grad_step = jax.value_and_grad(step_loss, has_aux=True)
        if mask is None:
          (l, (out, carry, state)), g = grad_step(params, state, carry, t)
          g_sum = _add(g_sum, g)
        else:
          def trained(args):
            g_sum, state, carry = args
            (l, aux), g = grad_step(params, state, carry, t)
            return l, aux, _add(g_sum, g)

          def forward_only(args):
            g_sum, state, carry = args
            l, aux = step_loss(params, state, carry, t)
            return l, aux, g_sum

          l, (out, carry, state), g_sum = jax.lax.cond(mask[t], trained, forward_only, (g_sum, state, carry))
      return (carry, state, loss + l, _add(out_sum, out), g_sum), None

    g0 = _zeros_like(params) if with_grad else None
    init = (carry, state, loss0, out0, g0)
    (carry, state, loss, out_sum, g_sum), _ = jax.lax.scan(body, init, jnp.arange(num_steps), unroll=unroll)
    return (loss, ThroughTimeAux(out_sum, state, carry)), g_sum

  @jax.custom_vjp
  def loss_and_aux(params, state, carry, inputs, labels, mask):
    return scan(params, state, carry, inputs, labels, mask, with_grad=False)[0]

  def fwd(params, state, carry, inputs, labels, mask):
    return scan(params, state, carry, inputs, labels, mask, with_grad=True)

  def bwd(g_sum, cotangents):
    ct_loss = cotangents[0]  # the aux outputs carry no gradient
    grads = jax.tree.map(lambda g: (g * ct_loss).astype(g.dtype), g_sum)
    return grads, None, None, None, None, None

  loss_and_aux.defvjp(fwd, bwd)
  return loss_and_aux(params, state, carry, inputs, labels, mask)


def through_time_loss(
    step_fn: StepFn,
    params: Any,
    state: Any,
    inputs: Any,
    labels: ArrayLike,
    *,
    num_steps: int,
    mode: str = "sltt",
    k: int | None = None,
    key: jax.Array | None = None,
    loss_fn: Callable[..., jax.Array] | None = None,
    lam_l: float = 0.05,
    carry: Any = None,
    unroll: int | bool = 1,
    steps: ArrayLike | Sequence[int] | None = None,
) -> tuple[jax.Array, ThroughTimeAux]:
  """The loss (1/T) sum_t l(o_t, y) of a spiking network run for T steps, differentiable w.r.t. params.

  With o_t, v[t] = f(theta, v[t-1], x, t): ``bptt`` differentiates through v[t-1]; ``sltt`` uses
  sum_t d l(o_t, y) / d theta with v[t-1] held constant (computed step by step inside the forward scan,
  memory flat in T); ``sltt_k`` keeps only K uniformly drawn steps of that sum (still divided by T),
  or the K steps named by ``steps``.

  The loss is accumulated in the dtype of ``loss_fn``'s result, at least float32 (float64 parameters
  give a float64 loss and gradients). With the default loss, a NaN or an infinity in the step outputs
  makes the loss NaN (so it does in any step function built from `jaxdyn.snn.spike`, whose spikes of a
  non-finite potential are NaN), and so does an out-of-range label under ``jit``; concrete labels are
  checked eagerly, and an empty batch is rejected.

  Args:
    step_fn: ``(params, state, carry, inputs, t) -> (outputs, carry, state)``, pure; ``carry=None``
      must mean v = 0 (used to find the carry's shape when ``carry`` is None).
    params: the trainable PyTree; the only argument that receives gradients in ``sltt``/``sltt_k``
      (in ``bptt`` the gradient also reaches ``inputs`` as JAX computes it).
    state: non-trainable state threaded through the steps (BatchNorm statistics), or None.
    inputs: what every step reads (static input, fixed dropout masks, encoder key), a PyTree.
    labels: the targets handed to ``loss_fn``; for the default loss ``(B,)`` integer class ids of the
      step outputs ``(B, C)``, B >= 1.
    num_steps: T >= 1.
    mode: ``"bptt"``, ``"sltt"`` or ``"sltt_k"``.
    k: K for ``sltt_k`` (1 <= K <= T); must be None for the other modes. With ``steps`` it may be
      None (K is then the number of steps given).
    key: a `jax.random` key; ``sltt_k`` draws its K steps from it (not needed with ``steps``).
    loss_fn: the per-step loss ``loss_fn(*, logits, labels) -> scalar``; default `sltt_step_loss`
      with ``lam_l`` (the authors' loss).
    lam_l: the MSE weight of the default loss (0.05), in [0, 1].
    carry: the initial membrane state; None gives zeros shaped from ``step_fn``.
    unroll: passed to `jax.lax.scan` (an int >= 1 or a bool). Keep 1 for ``sltt``: fully unrolled,
      XLA:CPU interleaved the steps and SLTT's temp memory grew to BPTT's (spiking VGG, T = 6).
    steps: ``sltt_k`` only: the trained steps instead of a draw from ``key``, as a bool ``(T,)`` mask
      or a sequence of distinct step indices in [0, T), exactly K of them (the same gradient as the
      draw that picks them, see `sample_steps`).

  Returns:
    ``(loss, ThroughTimeAux(outputs=sum_t o_t, state, carry))``; only ``loss`` carries gradients.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxdyn.snn import lif_step
    >>> def step_fn(w, state, v, x, t):
    ...   s, v = lif_step(v, x @ w)
    ...   return s, v, state
    >>> w, x, y = jnp.ones((3, 2)), jnp.ones((4, 3)), jnp.zeros(4, int)
    >>> g = jax.grad(lambda w: through_time_loss(step_fn, w, None, x, y, num_steps=4)[0])(w)
    >>> g.shape
    (3, 2)

  References:
    Meng et al., "Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural
    Networks", ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  if not callable(step_fn):
    raise TypeError(f"step_fn: must be a callable (params, state, carry, inputs, t), got {step_fn!r}")
  if loss_fn is not None and not callable(loss_fn):
    raise TypeError(f"loss_fn: must be a callable (*, logits, labels) -> scalar, got {loss_fn!r}")
  num_steps = _validation.check_int("num_steps", num_steps, lower=1)
  _validation.check_choice("mode", mode, MODES)
  lam_l = _validation.check_real("lam_l", lam_l, lower=0.0, upper=1.0)
  unroll = unroll if isinstance(unroll, bool) else _validation.check_int("unroll", unroll, lower=1)
  if key is not None:
    _validation.check_key("key", key)
  if mode != "sltt_k":
    for name, value in (("k", k), ("steps", steps)):
      if value is not None:
        raise ValueError(f"{name}: only used with mode='sltt_k'; got {name}={value!r} with mode={mode!r} "
                         f"(pass {name}=None)")
  mask = None
  if mode == "sltt_k":
    if k is not None:
      k = _validation.check_int("k", k, lower=1, upper=num_steps)
    if steps is not None:
      mask = _steps_mask(steps, num_steps, k)
    elif k is None:
      raise ValueError(f"k: mode='sltt_k' needs k with 1 <= k <= num_steps = {num_steps} (or steps=), got None")
    elif key is None:
      raise ValueError("key: mode='sltt_k' needs a jax.random key to draw its K steps (or steps=)")
    else:
      mask = sample_steps(key, num_steps, k)
  default_loss = loss_fn is None
  if default_loss:
    loss_fn = functools.partial(sltt_step_loss, lam_l=lam_l)
  labels = jnp.asarray(labels)

  out_shape, carry_shape, _ = jax.eval_shape(
      lambda p, s, c, i: step_fn(p, s, c, i, jnp.int32(0)), params, state, carry, inputs)
  if default_loss:  # eagerly here: inside the scan the labels are traced
    _validation.check_nonempty("labels", labels)
    _validation.check_labels_for_logits("labels", labels, out_shape)
  loss_shape = jax.eval_shape(lambda o, y: loss_fn(logits=o, labels=y), out_shape, labels)
  if jnp.shape(loss_shape) != ():
    raise ValueError(f"loss_fn: must return a scalar, got shape {jnp.shape(loss_shape)}")
  if carry is None:
    carry = _zeros_like(carry_shape)
  out0 = _zeros_like(out_shape)
  loss0 = jnp.zeros((), jnp.promote_types(loss_shape.dtype, jnp.float32))
  if mode == "bptt":
    return _bptt(step_fn, loss_fn, num_steps, unroll, params, state, carry, inputs, labels, out0, loss0)
  return _sltt(step_fn, loss_fn, num_steps, unroll, params, state, carry, inputs, labels, out0, loss0, mask)
