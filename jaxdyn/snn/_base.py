"""The interface of jaxdyn's spiking classifiers, and the bridge from an NNX model to SLTT training.

A spiking classifier defines one time step, ``step(carry, x_t, *, train, masks) -> (logits_t,
features_t, carry)``, with the membrane potentials as an explicit carry (a tuple, one array per LIF
layer; ``carry=None`` means all zeros). Everything else is built on it:

- `step_function(graphdef)`: the pure per-step function ``(params, state, carry, inputs, t)`` that
  `through_time_loss` runs; it merges the model, encodes the input, steps, and splits the updated
  state (BatchNorm statistics) back out.
- ``model(x, train=..., key=..., return_features=...)``: all T steps forward; returns the mean over
  steps of the outputs (argmax equal to the authors' sum) and of the penultimate spikes (firing rates).
  ``train=None`` follows ``model.train()`` / ``model.eval()`` as NNX's own modules do (a new model is
  in inference mode, as every jaxdyn model; see `jaxdyn.models.is_training`).
- `spiking_loss(model, x, labels, key=..., mode=...)`: the SLTT/BPTT loss of an NNX model; writes the
  statistics updated T times back into the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike

from jaxdyn import _validation
from jaxdyn.models import is_training
from jaxdyn.snn._dropout import fixed_dropout_masks
from jaxdyn.snn._encoding import ENCODERS, encode
from jaxdyn.snn._lif import LIF
from jaxdyn.snn._through_time import MODES, through_time_loss

__all__ = [
    "SpikingClassifier",
    "spiking_loss",
    "step_function",
]


class SpikingClassifier(nnx.Module):
  """Base class: a spiking network run for ``num_steps`` steps on an encoded static input.

  o_t, v[t] = step(v[t-1], enc(x, t)); ``model(x)`` returns (1/T) sum_t o_t (and the mean penultimate
  spikes with ``return_features=True``). Subclasses set ``num_steps``, ``encoder``, ``dropout_rate``
  and ``head`` and implement `step`. The membrane state is never stored in the module: it is passed in
  and returned by `step`. BatchNorm layers see each step's batch separately (in training they update
  their running statistics at every step, i.e. T times per call).

  Training mode follows Flax NNX: ``model.train()`` / ``model.eval()`` switch the model (the
  ``deterministic`` attribute, as on ``nnx.Dropout``); a new model is in inference mode, and an
  explicit ``train=`` argument of a call overrides the mode.

  Args (of a call):
    x: a batch of static inputs, B >= 1 (an empty batch raises: its BatchNorm statistics would be NaN);
      a concrete ``x`` holding a NaN or an infinity raises, naming it.
    train: batch statistics (updated) and dropout when True; running statistics when False; None
      (the default) follows ``model.train()`` / ``model.eval()``.
    key: a `jax.random` key for dropout masks (drawn once, fixed over T) and the Poisson encoder
      (evaluation without a key uses a fixed one).
    return_features: also return the mean penultimate spikes (firing rates).
    unroll: `jax.lax.scan` unrolling of the time loop (an int >= 1 or a bool).

  Returns:
    The mean output over steps ``(B, num_classes)`` (argmax equal to the authors' sum over steps).
    Under ``jit``, NaN in the rows of inputs holding a NaN or an infinity (all rows in training,
    through BatchNorm's batch statistics), since a non-finite membrane fires NaN spikes.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxdyn.snn import SpikingMLP
    >>> SpikingMLP(3, 2, hidden=(4,), num_steps=2, rngs=nnx.Rngs(0))(jnp.ones((5, 3))).shape
    (5, 2)

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """

  num_steps: int
  encoder: str = "direct"
  dropout_rate: float = 0.0
  deterministic: bool = True  # NNX's mode attribute: model.train() sets False, model.eval() True

  def step(self, carry: tuple | None, x_t: jax.Array, *, train: bool,
           masks: tuple | None = None) -> tuple[jax.Array, jax.Array, tuple]:
    """One time step: ``(logits_t, penultimate spikes_t, new carry)``; ``carry=None`` means v = 0."""
    raise NotImplementedError

  def check_input(self, x: jax.Array) -> None:
    """Raises a ValueError naming ``x`` unless it is a batch this model accepts (subclasses say which)."""
    if jnp.ndim(x) < 1:
      raise ValueError(f"x: must be a batch with a leading batch axis, got shape {jnp.shape(x)}")

  def _init_spiking(self, *, num_steps: int, encoder: str, dropout_rate: float, tau: float, v_th: float,
                    reset: str, surrogate: str, alpha: float | None, **positive_ints: int) -> tuple[int, ...]:
    """Checks the arguments every spiking model takes and sets the shared LIF neuron, ``num_steps``,
    ``encoder`` and ``dropout_rate``; returns each of ``positive_ints`` (name=value) as a checked int."""
    checked = tuple(_validation.check_int(name, value, lower=1) for name, value in positive_ints.items())
    self.num_steps = _validation.check_int("num_steps", num_steps, lower=1)
    self.encoder = _validation.check_choice("encoder", encoder, ENCODERS)
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)
    self.lif = LIF(tau=tau, v_th=v_th, reset=reset, surrogate=surrogate, alpha=alpha)
    return checked

  def encode(self, x: jax.Array, t: jax.Array, key: jax.Array | None) -> jax.Array:
    """The input at step t under ``self.encoder`` (``key`` is the Poisson encoder's per-call key)."""
    return encode(x, t, encoder=self.encoder, key=key)

  def carry_shape(self, x: jax.Array) -> tuple:
    """The membrane carry's shapes and dtypes for a batch ``x`` (`jax.ShapeDtypeStruct`s)."""
    graphdef, params, state = nnx.split(self, nnx.Param, ...)

    def f(params, state, x):
      return nnx.merge(graphdef, params, state, copy=True).step(None, x, train=False)[2]

    return jax.eval_shape(f, params, state, x)

  def step_inputs(self, x: jax.Array, *, train: bool, key: jax.Array | None) -> dict[str, Any]:
    """What every step reads: the static input, dropout masks fixed over T, the encoder's key."""
    self.check_input(x)
    _validation.check_nonempty("x", x)
    _validation.check_finite("x", x)  # concrete x only: under jit a NaN/inf propagates to NaN outputs
    if key is not None:
      _validation.check_key("key", key)
    if key is None and not train and self.encoder == "poisson":
      key = jax.random.key(0)  # evaluation without a key: a fixed, reproducible spike train
    needs_key = (train and self.dropout_rate > 0) or self.encoder == "poisson"
    if needs_key and key is None:
      raise ValueError("key: a jax.random key is required in training for dropout (dropout_rate > 0) "
                       "or the Poisson encoder")
    k_drop, k_enc = jax.random.split(key) if key is not None else (None, None)
    masks = None
    if train and self.dropout_rate > 0:
      masks = fixed_dropout_masks(k_drop, self.carry_shape(x), self.dropout_rate)
    return {"x": x, "masks": masks, "key": k_enc if self.encoder == "poisson" else None}

  def __call__(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None,
               return_features: bool = False, unroll: int | bool = 1):
    train = is_training(self, train)
    unroll = unroll if isinstance(unroll, bool) else _validation.check_int("unroll", unroll, lower=1)
    graphdef, params, state = nnx.split(self, nnx.Param, ...)
    fn = step_function(graphdef, train=train, return_features=True)
    inputs = self.step_inputs(x, train=train, key=key)
    out_shape, carry_shape, _ = jax.eval_shape(
        lambda p, s, i: fn(p, s, None, i, jnp.int32(0)), params, state, inputs)
    zeros = lambda tree: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), tree)  # noqa: E731

    def body(c, t):
      carry, state, acc = c
      out, carry, state = fn(params, state, carry, inputs, t)
      return (carry, state, jax.tree.map(jnp.add, acc, out)), None

    (_, state, (logits, feats)), _ = jax.lax.scan(
        body, (zeros(carry_shape), state, zeros(out_shape)), jnp.arange(self.num_steps), unroll=unroll)
    if train:
      nnx.update(self, state)  # BatchNorm statistics, updated once per step
    logits, feats = logits / self.num_steps, feats / self.num_steps
    return (logits, feats) if return_features else logits


def step_function(graphdef: nnx.GraphDef, *, train: bool = True, return_features: bool = False):
  """The pure per-step function of a `SpikingClassifier` for `through_time_loss`.

  ``fn(params, state, carry, inputs, t) -> (logits_t, carry, state)``: merge the model from
  ``(graphdef, params, state)``, encode ``inputs["x"]`` at step t, run `SpikingClassifier.step` with
  ``inputs["masks"]``, and split the updated non-parameter state back out (BatchNorm running
  statistics move once per call, i.e. T times per iteration). An empty batch ``inputs["x"]`` raises
  (naming ``inputs``); a NaN or an infinity in it gives NaN outputs (a non-finite membrane fires NaN).

  Args:
    graphdef: from ``nnx.split(model, nnx.Param, ...)``.
    train: BatchNorm on batch statistics (and updating them) when True.
    return_features: make the first output ``(logits_t, penultimate spikes_t)``.

  Returns:
    The step function.

  Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxdyn.snn import SpikingMLP
    >>> model = SpikingMLP(4, 3, hidden=(8,), rngs=nnx.Rngs(0))
    >>> g, p, s = nnx.split(model, nnx.Param, ...)
    >>> inputs = {"x": jnp.ones((2, 4)), "masks": None, "key": None}
    >>> logits, carry, s = step_function(g)(p, s, None, inputs, 0)
    >>> logits.shape, len(carry)
    ((2, 3), 1)

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  if not isinstance(graphdef, nnx.GraphDef):
    raise TypeError(f"graphdef: must be the nnx.GraphDef of nnx.split(model, nnx.Param, ...), "
                    f"got {type(graphdef).__name__}")

  def fn(params, state, carry, inputs, t):
    _validation.check_nonempty("inputs", inputs["x"])  # static shape: free, also under jit
    model = nnx.merge(graphdef, params, state, copy=True)
    x_t = model.encode(inputs["x"], t, inputs.get("key"))
    logits, feats, carry = model.step(carry, x_t, train=train, masks=inputs.get("masks"))
    _, _, state = nnx.split(model, nnx.Param, ...)
    return ((logits, feats) if return_features else logits), carry, state

  return fn


def spiking_loss(
    model: SpikingClassifier,
    x: ArrayLike,
    labels: ArrayLike,
    *,
    key: jax.Array | None = None,
    mode: str = "sltt",
    k: int | None = None,
    lam_l: float = 0.05,
    loss_fn=None,
    unroll: int | bool = 1,
    steps: ArrayLike | Sequence[int] | None = None,
) -> tuple[jax.Array, jax.Array]:
  """The through-time training loss of a spiking NNX model; differentiate it w.r.t. the model's params.

  L = (1/T) sum_t l(o_t, y), l = (1 - lam_L) CE + lam_L MSE(o_t, 1) by default; the gradient is
  BPTT's, SLTT's (v[t-1] constant, per-step gradients accumulated in the forward scan, memory flat in
  T) or SLTT-K's (K random steps, or the ``steps`` given). The model always runs in training mode here
  (batch statistics, dropout), whatever ``model.train()`` / ``model.eval()`` set. Its non-parameter
  state (BatchNorm statistics, updated at each of the T steps) is written back into ``model``.

  A NaN or an infinity in ``x`` raises naming ``x`` when ``x`` is concrete (an eager call); under
  ``jit`` (or with NaN parameters) it gives a NaN loss: a non-finite membrane fires NaN spikes, which
  reach the loss at no extra cost. Under ``jit`` an out-of-range label gives a NaN loss too; concrete
  labels are range-checked eagerly. An empty batch raises, naming ``x``.

  Args:
    model: a `SpikingClassifier` (T is ``model.num_steps``).
    x: a batch of static inputs, B >= 1.
    labels: ``(B,)`` integer labels.
    key: a `jax.random` key: dropout masks (fixed over T), the Poisson encoder, SLTT-K's steps.
    mode: ``"bptt"``, ``"sltt"`` or ``"sltt_k"``.
    k: K for ``"sltt_k"``.
    lam_l: MSE weight of the authors' loss (0.05), in [0, 1].
    loss_fn: a per-step loss ``(*, logits, labels) -> scalar`` replacing the authors' loss.
    unroll: `jax.lax.scan` unrolling of the time loop.
    steps: ``"sltt_k"`` only: the K trained steps, a bool ``(T,)`` mask or K step indices, instead of
      a draw from ``key`` (see `through_time_loss`).

  Returns:
    ``(loss, mean_t o_t)``: the loss and the (gradient-free) mean step output for predictions.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxdyn.snn import SpikingMLP
    >>> model = SpikingMLP(4, 3, hidden=(8,), num_steps=2, rngs=nnx.Rngs(0))
    >>> g, p, s = nnx.split(model, nnx.Param, ...)
    >>> def loss(p):
    ...   return spiking_loss(nnx.merge(g, p, s, copy=True), jnp.ones((2, 4)), jnp.array([0, 1]))[0]
    >>> grads = jax.grad(loss)(p)

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  if not isinstance(model, SpikingClassifier):
    raise TypeError(f"model: must be a jaxdyn.snn.SpikingClassifier, got {type(model).__name__}")
  _validation.check_choice("mode", mode, MODES)  # before any tracing; the rest in through_time_loss
  num_steps = model.num_steps
  x = jnp.asarray(x)
  model.check_input(x)
  _validation.check_nonempty("x", x)
  if jnp.ndim(labels) < 1 or jnp.shape(labels)[0] != x.shape[0]:
    raise ValueError(f"labels: need a leading batch axis B = x.shape[0] = {x.shape[0]} (the default loss "
                     f"takes (B,) integer labels), got shape {jnp.shape(labels)}")
  if key is not None:
    _validation.check_key("key", key)
  k_inputs, k_steps = jax.random.split(key) if key is not None else (None, None)
  inputs = model.step_inputs(x, train=True, key=k_inputs)
  graphdef, params, state = nnx.split(model, nnx.Param, ...)
  loss, aux = through_time_loss(step_function(graphdef, train=True), params, state, inputs, labels,
                                num_steps=num_steps, mode=mode, k=k, key=k_steps, loss_fn=loss_fn,
                                lam_l=lam_l, unroll=unroll, steps=steps)
  nnx.update(model, aux.state)
  return loss, aux.outputs / num_steps


class SpikingImageClassifier(SpikingClassifier):
  """A spiking classifier of NHWC image batches with ``in_channels`` channels (VGG-11, ResNet-18).

  The convolutional models share their constructor: it checks the arguments, sets the LIF neuron and
  the step count, and calls `build` for the layers.

  Args:
    in_channels: input channels.
    num_classes: number of outputs.
    width: channels of the first stage (64 in the paper).
    num_steps: T (6 in the paper's CIFAR runs).
    dropout_rate: dropout on the spikes, masks fixed over T (where: see the model).
    encoder: ``"direct"`` (the paper) or ``"poisson"``.
    tau, v_th, reset, surrogate, alpha: the LIF neuron (`jaxdyn.snn.lif_step`).
    rngs: ``nnx.Rngs``.
  """

  in_channels: int

  def __init__(self, in_channels: int, num_classes: int, *, width: int = 64, num_steps: int = 6,
               dropout_rate: float = 0.0, encoder: str = "direct", tau: float = 1.1, v_th: float = 1.0,
               reset: str = "soft", surrogate: str = "triangle", alpha: float | None = None,
               rngs: nnx.Rngs):
    self.in_channels, num_classes, width = self._init_spiking(
        num_steps=num_steps, encoder=encoder, dropout_rate=dropout_rate, tau=tau, v_th=v_th, reset=reset,
        surrogate=surrogate, alpha=alpha, in_channels=in_channels, num_classes=num_classes, width=width)
    self.build(num_classes, width, rngs=rngs)

  def build(self, num_classes: int, width: int, *, rngs: nnx.Rngs) -> None:
    """Creates the layers (``self.in_channels`` and the LIF neuron are set)."""
    raise NotImplementedError

  def check_input(self, x: jax.Array) -> None:
    shape = jnp.shape(x)
    if len(shape) != 4 or shape[-1] != self.in_channels:
      raise ValueError(f"x: must be an NHWC batch (B, H, W, {self.in_channels}), got shape {shape}")
