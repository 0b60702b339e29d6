"""Delta activation layers in the harness (Yousefzadeh & Sifalakis, 2021): temporal sparsity of activations.

Model ``delta_tcn``: a temporal convolutional network that reads a 1-D signal (MNIST-1D's 40 samples)
as a sequence of ``T`` frames of one channel. Each block is a 1-D convolution over time (``SAME``
padding), a ReLU, a max-pool of 2 over time and, with ``delta=True``, a `jaxdyn.schemes.DeltaActivation`
(per-channel trainable step, initial ``threshold_init``), so every block hands the next linear layer
quantized activations ``(batch, time, channels)`` whose frame-to-frame deltas are what delta inference
sends. Then the flattened last block, a dense ReLU layer and the head. Each delta layer's ``fan_out``
is what one of its deltas costs downstream: ``kernel_size * out_channels`` of the next convolution,
``hidden`` for the last block (read by the dense layer). With ``delta=False`` it is the same network
without the delta layers: the baseline, whose ReLU-and-pool outputs at the same places are counted.

Objective ``delta_ce`` (requires ``delta_layers``): cross-entropy plus every delta layer's
temporal-sparsity loss ``sp_rate * fan_out * mean |q_t - q_{t-1}|`` (the model returns the quantized
activations with its logits, `DeltaTCN.delta_forward`; the layers' ``sp_rate`` is the model's
``sp_rate``). With ``ce`` the same model trains on cross-entropy alone (quantization only, whatever
``sp_rate`` says); ``delta_ce`` on ``delta=False`` is ``ce``. It logs ``ce``, ``sparsity_loss`` and the
training batch's ``nonzero_delta_fraction``.

Callback ``delta_eval`` (requires ``delta_layers``): at the end, on the eval set in inference mode,
``nonzero_delta_fraction`` (nonzero deltas over all deltas of every block's output, the ``T - 1``
transitions of each sequence: `jaxdyn.schemes.count_nonzero_deltas`), the same per block
(``nonzero_delta_fraction_l<i>``) and ``nonzero_delta_macs_fraction`` (each block weighted by its
``fan_out``: the share of downstream multiply-accumulates delta inference still does), as
``final_<key>`` in results.json.

References:
  Yousefzadeh, Sifalakis, "Training for temporal sparsity in deep neural networks, application in
  video processing", 2021, https://arxiv.org/abs/2107.07305.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.callbacks import Callback
from experiments.registry import register
from jaxdyn import _validation
from jaxdyn.data import eval_batches
from jaxdyn.models import Classifier
from jaxdyn.models._base import check_input_shape
from jaxdyn.schemes import DeltaActivation, count_nonzero_deltas


class DeltaTCN(Classifier):
  """Conv1d-ReLU-MaxPool(-DeltaActivation) blocks over time, a dense layer, the head (module docstring)."""

  def __init__(self, length: int, num_classes: int, *, channels: Sequence[int] = (32, 32, 64),
               kernel_size: int = 5, hidden: int = 128, delta: bool = True, sp_rate: float = 0.0,
               threshold_init: float = 0.1, dropout_rate: float = 0.0, rngs: nnx.Rngs):
    self.length = _validation.check_int("length", length, lower=1)
    num_classes = _validation.check_int("num_classes", num_classes, lower=1)
    channels = tuple(_validation.check_int("channels", c, lower=1) for c in channels)
    if not channels:
      raise ValueError("channels: must name at least one block")
    kernel_size = _validation.check_int("kernel_size", kernel_size, lower=1)
    hidden = _validation.check_int("hidden", hidden, lower=1)
    if not isinstance(delta, bool):
      raise TypeError(f"delta: must be a bool, got {type(delta).__name__}")
    self.delta = delta
    widths = (1, *channels)
    self.convs = nnx.List([nnx.Conv(a, b, kernel_size=(kernel_size,), rngs=rngs)
                           for a, b in zip(widths[:-1], widths[1:])])
    steps = self.length
    for _ in channels:
      steps = -(-steps // 2)
    fan_outs = [kernel_size * c for c in channels[1:]] + [hidden]
    self.fan_outs = tuple(float(f) for f in fan_outs)
    self.deltas = nnx.List([DeltaActivation(c, sp_rate=sp_rate, fan_out=f, threshold_init=threshold_init)
                            for c, f in zip(channels, fan_outs)]) if delta else nnx.List([])
    self.dense = nnx.Linear(steps * channels[-1], hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, num_classes, rngs=rngs)
    self.dropout_rate = _validation.check_rate("dropout_rate", dropout_rate)

  def check_input(self, x: jax.Array) -> None:
    super().check_input(x)
    check_input_shape(x, (self.length,), "1-D signals")

  def _trunk(self, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    a = x[..., None]  # (batch, time, 1)
    acts = []
    for i, conv in enumerate(self.convs):
      a = nnx.max_pool(nnx.relu(conv(a)), window_shape=(2,), strides=(2,), padding="SAME")
      if self.delta:
        a = self.deltas[i](a)
      acts.append(a)
    return nnx.relu(self.dense(a.reshape(a.shape[0], -1))), acts

  def features(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None) -> jax.Array:
    del train, key  # no dropout or normalisation statistics in the trunk
    self.check_input(x)
    return self._trunk(x)[0]

  def delta_forward(self, x: jax.Array, *, train: bool | None = None, key: jax.Array | None = None
                    ) -> tuple[jax.Array, list[jax.Array]]:
    """``(logits, acts)``: ``acts[i]`` is block ``i``'s output ``(batch, time_i, channels_i)``, quantized
    when ``delta``; the objective adds the layers' losses of them, the callback counts their deltas."""
    self.check_input(x)
    h, acts = self._trunk(x)
    return self.apply_head(h, train=train, key=key), acts


@register("capability", "delta_layers")
def has_delta_layers(model) -> bool:
  """a DeltaTCN: logits and each block's (quantized) activations over time (delta_forward)"""
  return isinstance(model, DeltaTCN)


@register("model", "delta_tcn", tiny={"channels": (4, 4), "hidden": 8, "sp_rate": 1e-3})
def delta_tcn(input_shape, num_classes, rngs, **kwargs):
  """`DeltaTCN`: a 1-D signal read as a sequence; delta layers after its ReLU blocks (``delta=True``)."""
  if len(input_shape) != 1:
    raise ValueError(f"input_shape: delta_tcn reads 1-D signals (length,), got {tuple(input_shape)}")
  return DeltaTCN(input_shape[0], num_classes, rngs=rngs, **kwargs)


def _fraction(acts) -> jax.Array:
  nonzero = sum(count_nonzero_deltas(a) for a in acts)
  return nonzero / sum(a.shape[0] * (a.shape[1] - 1) * int(np.prod(a.shape[2:])) for a in acts)


@register("objective", "delta_ce", requires=("delta_layers",))
def delta_ce(model, batch, *, key):
  """Cross-entropy plus every delta layer's temporal-sparsity loss of its quantized output."""
  logits, acts = model.delta_forward(batch["x"], train=True, key=key)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
  sparsity = sum((layer.sparsity_loss(a) for layer, a in zip(model.deltas, acts)), jnp.zeros(()))
  return ce + sparsity, {"logits": logits, "ce": ce, "sparsity_loss": sparsity,
                         "nonzero_delta_fraction": jax.lax.stop_gradient(_fraction(acts))}


@register("callback", "delta_eval", requires=("delta_layers",))
class DeltaEval(Callback):
  """At the end: the eval set's nonzero-delta fractions, overall, per block and weighted by fan-out."""

  def __init__(self):
    super().__init__(every_steps=1)

  def on_step(self, step: int) -> None:
    del step

  def on_end(self) -> dict[str, float]:
    model = self.ctx.model()
    fan_outs = np.asarray(model.fan_outs)

    @jax.jit
    def counts(x, mask):
      _, acts = model.delta_forward(x, train=False)
      keep = mask > 0  # padding rows of the last batch are left out
      nz = [jnp.sum(jnp.where(keep[:, None, None], jnp.diff(a, axis=1) != 0, False)) for a in acts]
      tot = [jnp.sum(keep) * (a.shape[1] - 1) * a.shape[2] for a in acts]
      return jnp.stack(nz), jnp.stack(tot)  # int32: a batch holds far fewer than 2**31 deltas

    nonzero = np.zeros(len(fan_outs))
    total = np.zeros(len(fan_outs))
    for b in eval_batches(self.ctx.dataset.eval, batch_size=self.ctx.config.eval_batch_size):
      nz, tot = counts(jnp.asarray(b["x"]), jnp.asarray(b["mask"]))
      nonzero += np.asarray(nz, np.float64)
      total += np.asarray(tot, np.float64)
    out = {"nonzero_delta_fraction": float(nonzero.sum() / total.sum()),
           "nonzero_delta_macs_fraction": float((fan_outs * nonzero).sum() / (fan_outs * total).sum())}
    out.update({f"nonzero_delta_fraction_l{i}": float(n / t) for i, (n, t) in enumerate(zip(nonzero, total))})
    return out
