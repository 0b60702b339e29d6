"""SSVI experiments (Li et al., ICML 2024): Bayesian models, the VI objective, the ``ssvi`` transform.

Registers
- models ``bayes_mlp`` (flattened inputs), ``bayes_cnn`` (the reference small CNN: mnist1d, digits)
  and ``bayes_resnet18`` (images, CIFAR), built from `jaxdyn.bayes` mean-field Gaussian layers at
  ``density`` (first layer dense);
- objective ``vi``: CE of one local-reparameterisation sample + kl_scale / N_train *
  min(2 epoch / epochs, 1) * KL(q || N(0, prior_std^2)) over the active entries;
- optimizer ``sgd_vi``: SGD with momentum and L2 weight decay on every leaf but rho (the paper's);
- transform ``ssvi``: `jaxdyn.bayes.ssvi` around the configured optimizer;
- callback ``bayes_eval``: at the end, accuracy / NLL / ECE with the mean weights and with the Monte
  Carlo predictive over S weight samples, and the training-FLOP count of the run against dense VI.

The harness calls ``tx.update(grads, opt_state, params)``; that is all ``ssvi`` needs (its topology
step rewrites parameters through the returned updates, new - old). The harness passes
``total_steps=config.num_train_steps`` to ``ssvi`` unless the config entry sets it; ``end_step``
defaults to 0.75 of it. ``bayes_eval`` reads the schedule and the number of topology steps from the
optimizer state (`Context.opt_state_value`), never from the config. Capability ``bayesian``: the model
has `jaxdyn.bayes` Gaussian layers (what ``vi``, ``ssvi`` and ``bayes_eval`` need).

References:
  Li et al., "Training Bayesian Neural Networks with Sparse Subspace Variational Inference", ICML 2024,
  https://arxiv.org/abs/2402.11025; code https://github.com/ljb121002/SSVI.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.callbacks import Callback
from experiments.registry import register
from experiments.techniques.models import image_channels, signal_or_image
from jaxdyn import _validation
from jaxdyn.bayes import (
    BayesCNN,
    BayesMLP,
    GaussianConv,
    GaussianDense,
    RHO_NAME,
    BayesResNet18,
    kl_warmup,
    layer_costs,
    mc_predictive,
    model_kl,
    ssvi,
    training_flops,
)
from jaxdyn.calibration import calibration_metrics
from jaxdyn.data import eval_batches


@register("capability", "bayesian")
def is_bayesian(model) -> bool:
  """mean-field Gaussian layers of jaxdyn.bayes (GaussianDense / GaussianConv)"""
  return any(isinstance(m, (GaussianDense, GaussianConv)) for _, m in nnx.iter_modules(model))


@register("model", "bayes_mlp", tiny={"hidden": (8,)})
def bayes_mlp(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.bayes.BayesMLP` on flattened inputs."""
  return BayesMLP(math.prod(input_shape), num_classes, rngs=rngs, **kwargs)


@register("model", "bayes_cnn", tiny={"channels": (4,), "hidden": 8})
def bayes_cnn(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.bayes.BayesCNN`: the reference small CNN (1-D signals or 2-D images)."""
  spatial, cin = signal_or_image(input_shape, "bayes_cnn")
  return BayesCNN(cin, num_classes, spatial_dims=spatial, rngs=rngs, **kwargs)


@register("model", "bayes_resnet18", tiny={"width": 2})
def bayes_resnet18(input_shape, num_classes, rngs, **kwargs):
  """`jaxdyn.bayes.BayesResNet18` on (H, W, C) images (CIFAR)."""
  return BayesResNet18(image_channels(input_shape, "bayes_resnet18"), num_classes, rngs=rngs, **kwargs)


@register("objective", "vi", requires=("bayesian",))
def variational(model, batch, *, key, step, num_train: int, steps_per_epoch: int, num_epochs: int,
                kl_scale: float = 0.01, prior_std: float = 0.005):
  """CE(f(x; theta ~ q), y) + kl_scale / N_train * min(2 epoch / epochs, 1) * KL(q || N(0, s0^2)).

  The harness fills ``num_train``, ``steps_per_epoch`` and ``num_epochs`` from the dataset, the batch
  size and ``num_train_steps`` unless ``config.objective_kwargs`` sets them.

  One local-reparameterisation sample per example (``model(x, train=True, key=key)``); the KL is the
  closed form over the active entries (`jaxdyn.bayes.model_kl`); epochs count from 1
  (`jaxdyn.bayes.kl_warmup`). The paper's values: kl_scale 0.01, prior_std 0.005.
  """
  _validation.check_int("num_train", num_train, lower=1)
  _validation.check_real("kl_scale", kl_scale, lower=0.0)
  logits = model(batch["x"], train=True, key=key)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
  kl = model_kl(model, prior_std=prior_std)
  weight = kl_warmup(step, steps_per_epoch=steps_per_epoch, num_epochs=num_epochs)
  loss = ce + (kl_scale / num_train) * weight * kl
  return loss, {"logits": logits, "ce": ce, "kl": kl, "kl_weight": weight}


def _not_rho(params):
  def keep(path, _):
    return not any(getattr(k, "key", getattr(k, "name", None)) == RHO_NAME for k in path)
  return jax.tree_util.tree_map_with_path(keep, params)


@register("optimizer", "sgd_vi")
def sgd_vi(learning_rate, *, momentum: float = 0.9, weight_decay: float = 5e-4):
  """SGD with momentum and coupled L2 weight decay on every parameter but rho (the paper's groups)."""
  _validation.check_real("weight_decay", weight_decay, lower=0.0)
  return optax.chain(optax.add_decayed_weights(weight_decay, mask=_not_rho),
                     optax.sgd(learning_rate, momentum=momentum or None))


@register("transform", "ssvi", requires=("bayesian",))
def ssvi_transform(tx, *, total_steps: int, end_step: int | None = None, update_every: int = 100,
                   drop_fraction: float = 0.15, criterion: str = "snr_abs"):
  """`jaxdyn.bayes.ssvi` around the configured optimizer (``total_steps`` = the run's steps)."""
  return ssvi(tx, total_steps=total_steps, end_step=end_step, update_every=update_every,
              drop_fraction=drop_fraction, criterion=criterion)


def _has_ssvi(ctx) -> bool:
  try:
    ctx.opt_state_value("topology_steps")
  except KeyError:
    return False
  return True


@register("callback", "bayes_eval", requires=("bayesian",), tiny={"num_samples": 2})
class BayesEvalCallback(Callback):
  """At the end: mean-weight and Monte Carlo predictive metrics, and the training-FLOP count.

  ``on_end()`` returns (``final_<key>`` in results.json): ``mean_accuracy``, ``mean_nll``,
  ``mean_ece`` (mean weights, `calibration_metrics`, 15 bins); ``mc_accuracy``, ``mc_nll``,
  ``mc_ece`` (averaged softmax of ``num_samples`` weight samples, BatchNorm in inference mode);
  ``active_fraction`` (active / all kernel entries of the Gaussian layers); ``train_flops``,
  ``train_flops_dense_vi`` and ``flop_ratio`` (`jaxdyn.bayes.training_flops` for this run's steps,
  batch and topology steps, against dense VI on the same layers). The FLOP saving is what a sparse
  implementation would execute: this masked-dense implementation runs at dense cost.
  """

  def __init__(self, *, num_samples: int = 16, seed: int = 0):
    super().__init__(every_steps=1)
    self.num_samples = _validation.check_int("num_samples", num_samples, lower=1)
    self.seed = _validation.check_int("seed", seed)

  def on_step(self, step: int) -> None:
    del step

  def _mc_probs(self):
    graphdef, num_samples = self.ctx.graphdef, self.num_samples

    @jax.jit
    def probs(params, rest, x, key):
      model = nnx.merge(graphdef, params, rest)
      return mc_predictive(lambda xx, k: model(xx, train=False, key=k, sampling="weights"), x,
                           key=key, num_samples=num_samples)

    out, labels = [], []
    key = jax.random.key(self.seed)
    st = self.ctx.state
    for b in eval_batches(self.ctx.dataset.eval, batch_size=self.ctx.config.eval_batch_size,
                          process_index=jax.process_index(), process_count=jax.process_count()):
      keep = b["mask"] > 0
      # One key for all batches: each batch sees the same S weight samples.
      out.append(np.asarray(probs(st.params, st.rest, b["x"], key))[keep])
      labels.append(b["y"][keep])
    return np.concatenate(out), np.concatenate(labels)

  def on_end(self) -> dict[str, float]:
    c = self.ctx.config
    logits, _, labels = self.ctx.eval_outputs()
    mean = {k: float(v) for k, v in calibration_metrics(logits, labels).items()}
    probs, mc_labels = self._mc_probs()
    mc = {k: float(v) for k, v in calibration_metrics(
        jnp.log(jnp.maximum(probs, 1e-30)), mc_labels).items()}
    model = self.ctx.model()
    x0 = np.zeros((1, *self.ctx.dataset.input_shape), np.float32)
    costs = layer_costs(model, x0)
    # Topology steps the ssvi transform performed, from its state (0 without the transform).
    topo = int(self.ctx.opt_state_value("topology_steps")) if _has_ssvi(self.ctx) else 0
    flops = training_flops(costs, num_steps=c.num_train_steps, batch_size=c.batch_size, topology_steps=topo)
    dense = training_flops(costs, num_steps=c.num_train_steps, batch_size=c.batch_size, dense=True)
    return {
        "mean_accuracy": mean["accuracy"], "mean_nll": mean["nll"], "mean_ece": mean["ece"],
        "mc_accuracy": mc["accuracy"], "mc_nll": mc["nll"], "mc_ece": mc["ece"],
        "active_fraction": sum(l.num_active for l in costs) / sum(l.num_weights for l in costs),
        "train_flops": flops, "train_flops_dense_vi": dense, "flop_ratio": flops / dense,
        "topology_steps": float(topo),
    }
