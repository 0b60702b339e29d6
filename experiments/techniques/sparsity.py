"""Sparse training experiments: the `jaxdyn.sparsity` wrappers as transforms, and their accounting.

Registers
- transforms ``static_sparse``, ``gmp``, ``set``, ``rigl`` and ``granet``: `jaxdyn.sparsity`'s
  wrappers around the configured optimizer (so they must come last in ``config.transforms``). The
  harness fills in ``total_steps`` (the run's steps, for the default windows) and ``seed``
  (``config.seed``, the initial random masks) unless the config sets them. Windows are given as
  fractions of the run (``start_fraction``, ``end_fraction``) so one config serves any length;
  GraNet's CIFAR recipe prunes from epoch 0 to 110 of 160 (0.69), RigL updates until 0.75.
- callback ``quantize_eval`` (NUPES, Yvinec et al. 2023): post-training quantization of the trained
  model's kernels (any NNX model: `linear_layers` walks the layers in forward order) at each of
  ``bits`` by ``method`` (round-to-nearest, NUPES, AdaRound-style),
  layer by layer on a calibration batch, and the test accuracy of each;
- models ``gated_cnn`` and ``gated_resnet18``, objective ``polarization`` (CE + the polarization
  regularizer of the gates) and
  callbacks ``subnetwork_eval`` (the extracted static sub-network's accuracy and size) and
  ``magnitude_prune_eval`` (the baseline: filter-norm channel pruning of a trained CNN, fine-tuned);
- callback ``sparsity_eval``: logs the density every ``every_steps``; at the end returns the
  density, active and total parameters, and the training and inference FLOPs by the mask against
  dense (`jaxdyn.sparsity.sparse_flops` / `training_flops`: what a sparse kernel would execute;
  this masked-dense implementation runs at dense cost).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.callbacks import Callback
from experiments.registry import register
from experiments.techniques.models import image_channels, signal_or_image
from jaxdyn import _validation, models
from jaxdyn._trees import path_names
from jaxdyn.data import eval_batches
from jaxdyn.sparsity import (
    GatedCNN,
    GatedResNet,
    PruningSchedule,
    adaround_layer,
    compression_report,
    extract_subnetwork,
    polarization_regularizer,
    prune_channels_by_magnitude,
    dequantize,
    nupes_layer,
    quantize_uniform,
    gmp,
    granet,
    mask_stats,
    rigl,
    set_sparse,
    sparse_flops,
    static_sparse,
    training_flops,
)


def _step(name: str, fraction: float, total_steps: int) -> int:
  fraction = _validation.check_real(name, fraction, lower=0.0, upper=1.0)
  return int(round(fraction * total_steps))


def _window(total_steps, start_fraction, end_fraction) -> tuple[int, int]:
  t0 = _step("start_fraction", start_fraction, total_steps)
  tf = max(1, _step("end_fraction", end_fraction, total_steps))
  if t0 >= tf:
    raise ValueError(f"end_fraction: the window [{start_fraction}, {end_fraction}] of {total_steps} steps is empty")
  return t0, tf


@register("transform", "static_sparse", tiny={"density": 0.5})
def static_sparse_transform(tx, *, density: float, seed: int, distribution: str = "erk", exclude=()):
  """`jaxdyn.sparsity.static_sparse`: fixed random masks (ERK by default) at ``density``."""
  return static_sparse(tx, density=density, key=jax.random.key(seed), distribution=distribution,
                       exclude=tuple(exclude))


@register("transform", "gmp", tiny={"final_density": 0.5, "update_every": 1})
def gmp_transform(tx, *, final_density: float, total_steps: int, start_fraction: float = 0.0,
                  end_fraction: float = 0.7, update_every: int = 100, scope: str = "layer", exclude=()):
  """`jaxdyn.sparsity.gmp`: dense to ``final_density`` on the cubic schedule over the window."""
  t0, tf = _window(total_steps, start_fraction, end_fraction)
  return gmp(tx, schedule=PruningSchedule(final_density=final_density, start_step=t0, end_step=tf,
                                          update_every=update_every), scope=scope, exclude=tuple(exclude))


@register("transform", "granet", tiny={"final_density": 0.5, "update_every": 1})
def granet_transform(tx, *, final_density: float, total_steps: int, seed: int, init_density: float = 1.0,
                     start_fraction: float = 0.0, end_fraction: float = 0.7, update_every: int = 100,
                     drop_fraction: float = 0.5, min_drop_fraction: float = 0.005, distribution: str = "erk",
                     exclude=(), official_compat: bool = False):
  """`jaxdyn.sparsity.granet`: global gradual pruning with zero-cost neuroregeneration."""
  t0, tf = _window(total_steps, start_fraction, end_fraction)
  schedule = PruningSchedule(final_density=final_density, init_density=init_density, start_step=t0, end_step=tf,
                             update_every=update_every)
  return granet(tx, schedule=schedule, key=jax.random.key(seed), drop_fraction=drop_fraction,
                min_drop_fraction=min_drop_fraction, total_steps=total_steps, distribution=distribution,
                exclude=tuple(exclude), official_compat=official_compat)


def _dst(fn, tx, density, total_steps, seed, end_fraction, update_every, drop_fraction, distribution, exclude):
  tf = max(1, _step("end_fraction", end_fraction, total_steps))
  return fn(tx, density=density, key=jax.random.key(seed), end_step=tf, update_every=update_every,
            drop_fraction=drop_fraction, distribution=distribution, exclude=tuple(exclude))


@register("transform", "rigl", tiny={"density": 0.5, "update_every": 1})
def rigl_transform(tx, *, density: float, total_steps: int, seed: int, end_fraction: float = 0.75,
                   update_every: int = 100, drop_fraction: float = 0.3, distribution: str = "erk", exclude=()):
  """`jaxdyn.sparsity.rigl`: ERK masks, magnitude drop and gradient regrowth until ``end_fraction``."""
  return _dst(rigl, tx, density, total_steps, seed, end_fraction, update_every, drop_fraction, distribution,
              exclude)


@register("transform", "set", tiny={"density": 0.5, "update_every": 1})
def set_transform(tx, *, density: float, total_steps: int, seed: int, end_fraction: float = 0.75,
                  update_every: int = 100, drop_fraction: float = 0.3, distribution: str = "erk", exclude=()):
  """`jaxdyn.sparsity.set_sparse`: ERK masks, magnitude drop and random regrowth until ``end_fraction``."""
  return _dst(set_sparse, tx, density, total_steps, seed, end_fraction, update_every, drop_fraction,
              distribution, exclude)


def _has_masks(state) -> bool:
  return optax.tree_utils.tree_get(state.opt_state, "active_step_sum", default=None) is not None


@register("callback", "sparsity_eval")
class SparsityEval(Callback):
  """Density during training; at the end, active parameters and FLOPs by the mask against dense.

  ``on_end()`` returns (``final_<key>`` in results.json): ``density`` (active fraction of the sparse
  kernels), ``active_params`` / ``total_params`` (all parameters, dense leaves included),
  ``param_ratio``, ``inference_flop_ratio`` (forward FLOPs of the masked kernels over dense), and
  ``train_flops``, ``train_flops_dense`` and ``train_flop_ratio`` (every step at its own masks, from
  the state's per-layer ``active_step_sum``, plus a dense weight gradient at each topology step of the
  gradient-regrowth methods, RigL's convention). Without a sparsity transform the run is dense and
  the ratios are 1.
  """

  def __init__(self, *, every_steps: int = 100):
    super().__init__(every_steps=every_steps)

  def run(self, step: int) -> None:
    if _has_masks(self.ctx.state):
      self.ctx.writer.write(step, {"density": float(self.ctx.opt_state_value("density"))})

  def on_end(self) -> dict[str, float]:
    st, c = self.ctx.state, self.ctx.config
    if not _has_masks(st):
      return {"density": 1.0, "param_ratio": 1.0, "inference_flop_ratio": 1.0, "train_flop_ratio": 1.0}
    params = jax.device_get(st.params)
    masks = jax.device_get(optax.tree_utils.tree_get(st.opt_state, "masks"))
    stats = mask_stats(masks, params)
    graphdef, rest = self.ctx.graphdef, st.rest
    x0 = np.zeros((1, *self.ctx.dataset.input_shape), np.float32)
    layers = sparse_flops(lambda p, x: nnx.merge(graphdef, p, rest)(x, train=False), params, masks, x0)
    # Per sparse leaf, the density averaged over the run's steps; layers lists the kernels in leaf order.
    sums = [float(s) for s in jax.device_get(self.ctx.opt_state_value("active_step_sum"))]
    count = max(1, int(jax.device_get(st.step)))
    m_leaves = [np.asarray(m) for m in jax.tree.leaves(masks)]
    sizes = [m.size for m in m_leaves if m.ndim > 0]
    paths = ["/".join(map(str, p)) for p, m in _sparse_paths(params, masks)]
    mean = dict(zip(paths, [s / (count * n) for s, n in zip(sums, sizes)]))
    mean_density = [mean.get(layer.path, layer.density) for layer in layers]
    regrow = {"rigl", "granet"} & {t["name"] for t in c.transforms}
    topo = int(self.ctx.opt_state_value("topology_steps")) if regrow else 0
    tr = training_flops(layers, num_steps=c.num_train_steps, batch_size=c.batch_size, mean_density=mean_density,
                        dense_gradient_steps=min(topo, c.num_train_steps))
    inf_dense = sum(layer.dense for layer in layers)
    return {"density": stats["density"], "active_params": float(stats["params_active"]),
            "total_params": float(stats["params_total"]),
            "param_ratio": stats["params_active"] / stats["params_total"],
            "inference_flop_ratio": sum(layer.sparse for layer in layers) / inf_dense,
            "train_flops": tr["sparse"], "train_flops_dense": tr["dense"], "train_flop_ratio": tr["ratio"],
            "topology_steps": float(topo)}


def _sparse_paths(params, masks):
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  out = []
  for (path, _), m in zip(flat, treedef.flatten_up_to(masks)):
    if np.ndim(m) > 0:
      out.append((path_names(path), m))
  return out



# --- post-training quantization (NUPES) -------------------------------------------------------------

QUANT_METHODS = ("rtn", "nupes", "adaround")


@register("capability", "reference_cnn")
def is_reference_cnn(model) -> bool:
  """the reference `jaxdyn.models.CNN` (filter-norm channel pruning covers its conv blocks)"""
  return isinstance(model, models.CNN)


def _kernel_modules(model) -> list[tuple[str, nnx.Module]]:
  return [("/".join(map(str, path)), m) for path, m in nnx.iter_modules(model)
          if isinstance(getattr(m, "kernel", None), nnx.Param)]


def linear_layers(model, x, *, check: bool = True) -> list[tuple[str, nnx.Module, jax.Array, object]]:
  """The layers of an NNX model that hold a ``kernel``, in the order its forward pass calls them.

  Returns ``[(path, module, input, apply)]``: each module's input during ``model(x, train=False)``
  (the inputs of a module called more than once, e.g. at each time step, stacked on the leading
  axis), and ``apply(kernel, input)``, the module's map with that kernel and its bias at zero, what
  a per-layer calibration reconstructs. Any module with a ``kernel`` Param works (`jaxdyn.models.Conv2d`,
  ``nnx.Linear``, ``nnx.Conv``, ...) provided it is called with one positional input; each one is
  checked, on what it saw, to output ``apply(kernel, input) + bias`` with ``apply`` linear in the
  kernel (``apply(2 kernel, input) = 2 apply(kernel, input)``, to 1e-4), so a module whose output
  is not linear in its kernel (weight normalisation, say) is refused, not quantized wrongly.
  Modules holding a kernel that the forward pass never calls are left out. ``check=False`` skips the
  linearity check (for repeated walks of a model already checked, as `quantize_model` does).
  """
  mods = _kernel_modules(model)
  by_id = {id(m): (p, m) for p, m in mods}
  seen: dict[int, list[tuple[jax.Array, jax.Array]]] = {}
  originals, active = {}, set()
  for _, m in mods:
    cls = type(m)
    if cls in originals:
      continue
    originals[cls] = cls.__dict__.get("__call__")

    def recording(self, *args, __call=cls.__call__, **kwargs):
      if id(self) in active:  # a patched subclass calling its patched parent: record once
        return __call(self, *args, **kwargs)
      active.add(id(self))
      try:
        y = __call(self, *args, **kwargs)
      finally:
        active.discard(id(self))
      if id(self) in by_id:
        if len(args) != 1 or kwargs:
          raise ValueError(f"model: {by_id[id(self)][0]} is called with arguments other than one input; "
                           "the layer walk cannot replay it")
        seen.setdefault(id(self), []).append((args[0], y))
      return y

    cls.__call__ = recording
  try:
    model(x, train=False)
  finally:
    for cls, call in originals.items():
      if call is None:
        del cls.__call__
      else:
        cls.__call__ = call
  out = []
  for i, calls in seen.items():  # in the order of first call
    path, m = by_id[i]
    graphdef, params, rest = nnx.split(m, nnx.Param, ...)

    def apply(w, a, graphdef=graphdef, params=params, rest=rest):
      def swap(p, leaf):
        name = path_names(p)[-1]
        return w if name == "kernel" else (jnp.zeros_like(leaf) if name == "bias" else leaf)
      return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(swap, params), rest)(a)

    h = jnp.concatenate([a for a, _ in calls]) if len(calls) > 1 else calls[0][0]
    if check:
      y = jnp.concatenate([b for _, b in calls]) if len(calls) > 1 else calls[0][1]
      bias = getattr(m, "bias", None)
      bias = 0.0 if bias is None or not isinstance(bias, nnx.Param) else bias[...]
      w = m.kernel[...]
      lin = np.asarray(apply(w, h))
      if not (np.allclose(lin + bias, np.asarray(y), rtol=1e-4, atol=1e-4)
              and np.allclose(np.asarray(apply(2 * w, h)), 2 * lin, rtol=1e-4, atol=1e-4)):
        raise ValueError(f"model: layer {path} does not compute apply(kernel, input) + bias; it cannot be "
                         "calibrated layer by layer")
    out.append((path, m, h, apply))
  return out


def quantize_model(model, x_calib, *, bits: int, method: str, steps: int = 200, seed: int = 0):
  """Quantizes every kernel of a trained NNX model in place, layer by layer in forward order.

  Each layer is calibrated on its input under the layers already quantized before it (the
  sequential protocol of AdaRound and NUPES; `linear_layers` finds the layers and their inputs):
  ``"rtn"`` rounds to nearest on the uniform grid, ``"nupes"`` runs `jaxdyn.sparsity.nupes_layer`
  (exponent searched on the layer's output, then the codes and the exponent optimised over the
  whole grid), ``"adaround"`` `adaround_layer`. Biases, normalisation and embeddings stay in float.
  Returns the number of kernels quantized.
  """
  _validation.check_choice("method", method, QUANT_METHODS)
  order = [path for path, *_ in linear_layers(model, x_calib)]
  for i, target in enumerate(order):
    # The inputs under the layers quantized so far (the first walk checked every layer).
    path, module, h, apply = next(layer for layer in linear_layers(model, x_calib, check=False)
                                  if layer[0] == target)
    w = module.kernel[...]
    if method == "rtn":
      qt = quantize_uniform(w, bits)
    elif method == "nupes":
      qt = nupes_layer(w, h, bits=bits, apply=apply, steps=steps, key=jax.random.key(seed + i))
    else:
      qt = adaround_layer(w, h, bits=bits, apply=apply, steps=steps, key=jax.random.key(seed + i))
    module.kernel[...] = dequantize(qt).astype(w.dtype)
  return len(order)


def _accuracy(model, dataset, batch_size: int) -> float:
  predict = jax.jit(lambda x: model(x, train=False))
  correct = total = 0
  for b in eval_batches(dataset.eval, batch_size=batch_size):
    keep = b["mask"] > 0
    correct += int((np.asarray(predict(b["x"])).argmax(-1)[keep] == b["y"][keep]).sum())
    total += int(keep.sum())
  return correct / total


def _calibration(dataset, size: int) -> jax.Array:
  return jnp.asarray(next(iter(eval_batches(dataset.train, batch_size=size)))["x"])


@register("callback", "quantize_eval",
          tiny={"method": "rtn", "bits": (4,), "calibration_size": 32})
class QuantizeEval(Callback):
  """At the end: test accuracy of the trained model with its kernels quantized by ``method``.

  ``on_end()`` returns ``float_accuracy`` and, per entry of ``bits``, ``acc_<b>bit`` (test
  accuracy with every kernel on the b-bit grid, biases in float) and ``drop_<b>bit`` (the float
  accuracy minus it). Calibration uses the first ``calibration_size`` training examples.
  """

  def __init__(self, *, method: str = "nupes", bits=(4, 3), calibration_size: int = 256, steps: int = 200,
               seed: int = 0):
    super().__init__(every_steps=1)
    self.method = _validation.check_choice("method", method, QUANT_METHODS)
    self.bits = tuple(_validation.check_int("bits", b, lower=2, upper=8) for b in bits)
    self.calibration_size = _validation.check_int("calibration_size", calibration_size, lower=1)
    self.steps = _validation.check_int("steps", steps, lower=1)
    self.seed = _validation.check_int("seed", seed)

  def on_step(self, step: int) -> None:
    del step

  def on_end(self) -> dict[str, float]:
    ds, batch_size = self.ctx.dataset, self.ctx.config.eval_batch_size
    x_calib = _calibration(ds, self.calibration_size)
    out = {"float_accuracy": _accuracy(self.ctx.model(), ds, batch_size)}
    for b in self.bits:
      model = self.ctx.model()
      quantize_model(model, x_calib, bits=b, method=self.method, steps=self.steps, seed=self.seed)
      out[f"acc_{b}bit"] = _accuracy(model, ds, batch_size)
      out[f"drop_{b}bit"] = out["float_accuracy"] - out[f"acc_{b}bit"]
    return out


# --- polarization sub-networks -----------------------------------------------------------------------


@register("capability", "gated")
def is_gated(model) -> bool:
  """a `jaxdyn.sparsity.GatedCNN` or `GatedResNet`: binary channel gates on each block"""
  return isinstance(model, (GatedCNN, GatedResNet))


@register("model", "gated_cnn", tiny={"channels": (4,), "hidden": 8, "gate_hidden": 4})
def gated_cnn(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.sparsity.GatedCNN`: the reference CNN with a channel gate on each conv block."""
  spatial, cin = signal_or_image(input_shape, "gated_cnn")
  return GatedCNN(cin, num_classes, spatial_dims=spatial, rngs=rngs, **kwargs)


@register("model", "gated_resnet18", tiny={"stage_sizes": (1,), "width": 4, "gate_hidden": 4})
def gated_resnet18(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.sparsity.GatedResNet`: the CIFAR ResNet-18 with a channel gate on each block's inner channels."""
  return GatedResNet(image_channels(input_shape, "gated_resnet18"), num_classes, rngs=rngs, **kwargs)


@register("objective", "polarization", requires=("gated",))
def polarization(model, batch, *, key, target_sparsity: float = 0.5, weight: float = 1.0,
                 polarization_weight: float = 1.0, consensus_weight: float = 2.0, sparsity_weight: float = 2.0):
  """CE + weight * `jaxdyn.sparsity.polarization_regularizer` of the gates (one training pass).

  Logs ``kept_fraction`` (the mean binary gate over the batch and the blocks) and ``regularizer``.
  """
  weight = _validation.check_real("weight", weight, lower=0.0)
  logits, gates = model(batch["x"], train=True, key=key, return_gates=True)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
  reg = polarization_regularizer(gates, target_sparsity=target_sparsity, polarization_weight=polarization_weight,
                                 consensus_weight=consensus_weight, sparsity_weight=sparsity_weight)
  kept = jnp.mean(jnp.stack([jnp.mean(g > 0.5) for g in gates]))
  return ce + weight * reg, {"logits": logits, "kept_fraction": kept, "regularizer": reg}


@register("callback", "subnetwork_eval", requires=("gated",))
class SubnetworkEval(Callback):
  """At the end: the static sub-network of a `GatedCNN` or `GatedResNet`, extracted from one training pass.

  A channel is kept when its gate is on for at least ``quorum`` of ``calibration_size`` training
  examples (`jaxdyn.sparsity.extract_subnetwork`); the gating modules are removed and the pruned
  channels are physically gone. ``on_end()`` returns ``subnet_accuracy`` (test accuracy of the
  extracted `jaxdyn.models.CNN` or `jaxdyn.models.ResNet`), ``gated_accuracy`` (the gated network),
  ``channel_fraction`` and
  ``flop_fraction`` (kept over dense, `compression_report`).
  """

  def __init__(self, *, calibration_size: int = 512, quorum: float = 0.5):
    super().__init__(every_steps=1)
    self.calibration_size = _validation.check_int("calibration_size", calibration_size, lower=1)
    self.quorum = _validation.check_real("quorum", quorum, lower=0.0, lower_open=True, upper=1.0)

  def on_step(self, step: int) -> None:
    del step

  def on_end(self) -> dict[str, float]:
    model, ds, bs = self.ctx.model(), self.ctx.dataset, self.ctx.config.eval_batch_size
    x = _calibration(ds, self.calibration_size)
    sub = extract_subnetwork(model, x, quorum=self.quorum)
    rep = compression_report(model, sub, x[:1])
    return {"subnet_accuracy": _accuracy(sub, ds, bs), "gated_accuracy": _accuracy(model, ds, bs),
            "channel_fraction": rep.channel_fraction, "flop_fraction": rep.flops / rep.dense_flops}


@register("callback", "magnitude_prune_eval", requires=("reference_cnn",), tiny={"finetune_steps": 2})
class MagnitudePruneEval(Callback):
  """At the end: the trained CNN pruned to ``keep_fraction`` of each block's channels by filter L1 norm
  (`jaxdyn.sparsity.prune_channels_by_magnitude`), then fine-tuned for ``finetune_steps`` Adam steps
  at ``learning_rate`` on the training set (batches of the run's size, in order, cycling). The
  baseline of the polarization claim at the same FLOPs. ``on_end()`` returns ``pruned_accuracy``
  (before fine-tuning), ``finetuned_accuracy``, ``channel_fraction`` and ``flop_fraction``.
  """

  def __init__(self, *, keep_fraction: float = 0.5, finetune_steps: int = 300, learning_rate: float = 1e-3):
    super().__init__(every_steps=1)
    self.keep_fraction = _validation.check_real("keep_fraction", keep_fraction, lower=0.0, lower_open=True,
                                                upper=1.0)
    self.finetune_steps = _validation.check_int("finetune_steps", finetune_steps, lower=0)
    self.learning_rate = _validation.check_real("learning_rate", learning_rate, lower=0.0, lower_open=True)

  def on_step(self, step: int) -> None:
    del step

  def on_end(self) -> dict[str, float]:
    model, ds, c = self.ctx.model(), self.ctx.dataset, self.ctx.config
    pruned = prune_channels_by_magnitude(model, self.keep_fraction)
    x0 = _calibration(ds, 1)
    rep = compression_report(model, pruned, x0)
    out = {"pruned_accuracy": _accuracy(pruned, ds, c.eval_batch_size), "channel_fraction": rep.channel_fraction,
           "flop_fraction": rep.flops / rep.dense_flops}
    graphdef, params = nnx.split(pruned, nnx.Param)
    tx = optax.adam(self.learning_rate)

    @jax.jit
    def step(params, opt_state, x, y):
      def loss_fn(p):
        logits = nnx.merge(graphdef, p)(x, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      grads = jax.grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    opt_state, done = tx.init(params), 0
    while done < self.finetune_steps:
      for b in eval_batches(ds.train, batch_size=c.batch_size):
        if done == self.finetune_steps:
          break
        if b["mask"].min() == 0:  # the padded last batch
          continue
        params, opt_state = step(params, opt_state, b["x"], b["y"])
        done += 1
    out["finetuned_accuracy"] = _accuracy(nnx.merge(graphdef, params), ds, c.eval_batch_size)
    return out
