"""Training-FLOP accounting of mean-field VI: dense against SSVI's sparse active set.

Counts follow the paper's argument: what a sparse kernel would execute, from each layer's active
weights and output positions. jaxdyn itself runs SSVI as masked dense arithmetic (inactive entries are
stored zeros), which XLA executes at full dense cost: the saving counted here is not a wall-time
saving of this implementation; it needs sparse kernels (or hardware that skips zeros).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Iterator, Sequence

import jax
import numpy as np

from jaxdyn import _validation

__all__ = ["LayerCost", "layer_costs", "topology_update_count", "training_flops"]

KINDS = ("dense", "conv")
_RECORDER: contextvars.ContextVar[list | None] = contextvars.ContextVar("jaxdyn_bayes_costs", default=None)


def record(layer, kind: str, out_shape: Sequence[int]) -> None:
  """Called by the Gaussian layers in their forward pass; records only inside `layer_costs`."""
  rec = _RECORDER.get()
  if rec is not None:
    rec.append((layer, kind, int(math.prod(out_shape[1:-1]))))


@contextlib.contextmanager
def _recording() -> Iterator[list]:
  rec: list = []
  token = _RECORDER.set(rec)
  try:
    yield rec
  finally:
    _RECORDER.reset(token)


@dataclasses.dataclass(frozen=True)
class LayerCost:
  """One Gaussian layer for the FLOP count.

  Attributes:
    kind: "dense" or "conv".
    num_weights: kernel entries (in * out, or k^d * in * out).
    num_active: active kernel entries (the SSVI set; ``num_weights`` for dense VI).
    positions: output positions per example (1 for a dense layer, H_out * W_out for a 2-D conv).
  """

  kind: str
  num_weights: int
  num_active: int
  positions: int = 1

  def __post_init__(self):
    _validation.check_choice("kind", self.kind, KINDS)
    num_weights = _validation.check_int("num_weights", self.num_weights, lower=1)
    # Stored as Python ints: costs built from NumPy integers equal those built from Python ints.
    object.__setattr__(self, "num_weights", num_weights)
    object.__setattr__(self, "num_active", _validation.check_int("num_active", self.num_active, lower=0,
                                                                   upper=num_weights))
    object.__setattr__(self, "positions", _validation.check_int("positions", self.positions, lower=1))


def layer_costs(model, example_input: jax.Array, **call_kwargs) -> list[LayerCost]:
  """The `LayerCost` of every Gaussian layer the model calls on ``example_input`` (shapes only).

  The forward pass is traced abstractly (`jax.eval_shape`, mean weights), so no FLOP is spent; each
  call of a layer is one entry (a layer called twice counts twice). Active counts are rho != 0.

  Args:
    model: a module built from `GaussianDense` / `GaussianConv` layers.
    example_input: one batch (or a `jax.ShapeDtypeStruct`) of model inputs; the batch size is
      irrelevant.
    **call_kwargs: passed to the model call (e.g. ``train=False``).

  Returns:
    A list of `LayerCost`, in call order.

  Example:
    >>> from jaxdyn.bayes import GaussianDense
    >>> from flax import nnx
    >>> layer = GaussianDense(4, 3, density=0.5, rngs=nnx.Rngs(0))
    >>> layer_costs(layer, jax.numpy.ones((1, 4)))
    [LayerCost(kind='dense', num_weights=12, num_active=6, positions=1)]

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025 (training-FLOP comparison);
    code https://github.com/ljb121002/SSVI.
  """
  if not callable(model):
    raise TypeError(f"model: must be a callable module built from Gaussian layers, got {type(model).__name__}")
  if not hasattr(example_input, "shape") or not hasattr(example_input, "dtype"):
    example_input = np.asarray(example_input)
  spec = jax.ShapeDtypeStruct(example_input.shape, example_input.dtype)
  with _recording() as rec:
    try:
      jax.eval_shape(lambda x: model(x, **call_kwargs), spec)
    except (TypeError, ValueError) as e:
      raise ValueError(f"example_input: the model cannot be called on shape {spec.shape} "
                       f"({type(e).__name__}: {e})") from e
  out = []
  for layer, kind, positions in rec:
    rho = np.asarray(layer.kernel_rho[...])
    out.append(LayerCost(kind, int(rho.size), int(np.count_nonzero(rho)), positions))
  if not out:
    raise ValueError("model: called no GaussianDense or GaussianConv layer")
  return out


def topology_update_count(num_steps: int, *, update_every: int, end_step: int) -> int:
  """Number of iterations t in 1..num_steps with t % update_every == 0 and t < end_step.

  That is the number of SSVI topology steps in a run of ``num_steps`` (`TopologySchedule`); a run's
  optimizer state also counts them (`SSVIState`'s ``topology_steps``, with ``topology_every`` and
  ``topology_end_step``). Integers (Python, NumPy or 0-d arrays): num_steps >= 0, update_every >= 1,
  end_step >= 0.

  Example:
    >>> topology_update_count(1000, update_every=100, end_step=750)
    7
  """
  num_steps = _validation.check_int("num_steps", num_steps, lower=0)
  update_every = _validation.check_int("update_every", update_every, lower=1)
  end_step = _validation.check_int("end_step", end_step, lower=0)
  last = min(num_steps, end_step - 1)
  return max(0, last // update_every)


def training_flops(layers: Sequence[LayerCost], *, num_steps: int, batch_size: int,
                   topology_steps: int = 0, dense: bool = False) -> float:
  """Training FLOPs of mean-field VI with the local reparameterisation over the Gaussian layers.

  Per example, per layer, with a active weights and P output positions (a multiply-add = 2 FLOPs):
  forward 4aP (the mean and the variance convolutions), backward 8aP (input gradients through both,
  and the mu and sigma^2 weight gradients), 12aP in all. An SSVI topology step adds the dense mu
  gradient of the inactive entries, 2(N - a)P, and skips nothing else (its optimizer update is
  skipped, which costs O(N), not O(batch)). Elementwise work (softplus, sqrt, noise, KL, scores) is
  O(N) per step or O(outputs) per example and is left out, as are layers that are not Gaussian
  (normalisation, pooling). ``dense=True`` counts dense VI on the same layers (a = N, no topology
  steps).

  Args:
    layers: from `layer_costs` or written by hand.
    num_steps: optimizer steps.
    batch_size: examples per step.
    topology_steps: SSVI removal/addition steps among ``num_steps``, in [0, num_steps]: the
      ``topology_steps`` field of the run's `SSVIState`
      (``optax.tree_utils.tree_get(opt_state, "topology_steps")``) or `topology_update_count`.
    dense: count dense VI instead.

  Returns:
    Total training FLOPs (a float).

  Example:
    >>> layer = LayerCost("dense", num_weights=100, num_active=10)
    >>> training_flops([layer], num_steps=1, batch_size=1) / training_flops(
    ...     [layer], num_steps=1, batch_size=1, dense=True)
    0.1

  References:
    Li et al., ICML 2024, https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
  """
  num_steps = _validation.check_int("num_steps", num_steps, lower=1)
  batch_size = _validation.check_int("batch_size", batch_size, lower=1)
  topology_steps = _validation.check_int("topology_steps", topology_steps, lower=0, upper=num_steps)
  layers = list(layers)
  if not layers or not all(isinstance(layer, LayerCost) for layer in layers):
    raise ValueError(f"layers: must be a non-empty sequence of LayerCost (from layer_costs), got {layers!r}")
  per_example = 0.0
  extra = 0.0
  for layer in layers:
    a = layer.num_weights if dense else layer.num_active
    per_example += 12.0 * a * layer.positions
    extra += 2.0 * (layer.num_weights - a) * layer.positions
  total = per_example * batch_size * num_steps
  if not dense:
    total += extra * batch_size * topology_steps
  return total
