"""Micro-budget diffusion on scikit-learn's digits, run as a claim's ``runner``: deferred masking vs plain masking.

`micro_runner(config, workdir)` follows Sehwag et al. ("Stretching Each Dollar", arXiv 2407.15811) at toy
scale, with ``c = config.diffusion``:

1. train a class-conditional `jaxdyn.models.DiT` (``mixer_depth`` patch-mixer blocks, ``depth`` backbone
   blocks) as an EDM denoiser (`jaxdyn.diffusion.edm_preconditioning`, log-normal levels, `edm_loss`) on
   the 1,437 training digits as images in [-1, 1], for ``steps`` Adam steps with ``mask_ratio`` of each
   image's patches masked (`random_keep_indices`; the loss on the kept patches only), then ``finetune_steps``
   unmasked steps (mask ratio 0: the paper's final unmasked fine-tune);
2. count the training FLOPs from XLA's cost analysis of the two compiled train steps (``flops``), and the
   FLOPs of training the same model unmasked for ``steps + finetune_steps`` steps (``flops_unmasked``);
3. sample ``samples_per_class`` digits of each class with the Heun sampler (`heun_sampler`, ``sample_steps``);
4. train a small MLP classifier on the same training digits (``classifier_steps`` Adam steps; its test
   accuracy is ``classifier_test_accuracy``) and report the Frechet distance between Gaussian fits of its
   penultimate features on the generated samples and on the training digits (`frechet_distance`; **not
   FID**) and its accuracy on the generated samples of each requested class (`conditional_accuracy`).

It writes ``results.json`` in ``workdir`` and returns what is there if it exists.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results
from jaxdyn import diffusion
from jaxdyn.data import load_dataset
from jaxdyn.models import MLP, DiT


def digits_images():
  """``(x, y, x_test, y_test)``: scikit-learn's digits as ``(N, 8, 8, 1)`` images in [-1, 1] and int32 labels."""
  d = load_dataset("digits")
  to_img = lambda a: (2.0 * np.asarray(a, np.float32) - 1.0)  # noqa: E731  [0, 1] -> [-1, 1]
  return to_img(d.train.x), np.asarray(d.train.y, np.int32), to_img(d.eval.x), np.asarray(d.eval.y, np.int32)


def train_classifier(x, y, xt, yt, *, steps: int, seed: int):
  """``(classify, test_accuracy)``: the runner's digits MLP classifier; ``classify(images) -> (logits, features)``."""
  model = MLP(64, 10, hidden=(128, 64), rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model)
  opt = optax.adam(1e-3)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state, xb, yb):
    def loss(p):
      logits = nnx.merge(graphdef, p)(xb.reshape(len(xb), -1))
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    g = jax.grad(loss)(params)
    u, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, u), opt_state

  rng = np.random.default_rng(seed + 1000)
  for _ in range(steps):
    idx = rng.integers(0, len(x), 128)
    params, opt_state = step(params, opt_state, x[idx], y[idx])
  model = nnx.merge(graphdef, params)
  apply = jax.jit(lambda a: model(a.reshape(len(a), -1), return_features=True))
  acc = float((np.argmax(apply(xt)[0], -1) == yt).mean())
  return apply, acc


def compiled_flops(compiled) -> float:
  """XLA's FLOP count of a compiled program (`jax.stages.Compiled.cost_analysis`)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


def make_optimizer(learning_rate: float, steps: int, finetune_steps: int) -> optax.GradientTransformation:
  """The runner's optimizer: Adam after global-norm clipping at 1, warm-up then cosine decay to a tenth."""
  sched = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(100, steps // 10 + 1),
                                             steps + finetune_steps + 1, 0.1 * learning_rate)
  return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))


def make_train_step(c, model: DiT, opt: optax.GradientTransformation, mask_ratio: float):
  """The runner's EDM train step for ``model``'s architecture (not jitted).

  ``step(params, opt_state, xb, yb, key) -> (params, opt_state, loss)`` with ``params`` from
  ``nnx.split(model)``: noise levels from EDM's log-normal, the preconditioned DiT with a random
  ``mask_ratio`` of its patches masked (none at 0), the EDM loss on the kept patches, one ``opt`` update.
  ``c`` is the config's ``diffusion`` block (``p_mean``, ``p_std``, ``sigma_data``). The benchmark and
  the notebook train with this same step.
  """
  graphdef = nnx.graphdef(model)
  num_patches, patch_size = model.num_patches, model.patch_size

  def step(params, opt_state, xb, yb, key):
    ks, kn, km = jax.random.split(key, 3)
    sigma = diffusion.edm_sigma_sample(ks, xb.shape[0], p_mean=c.p_mean, p_std=c.p_std)
    noisy = xb + sigma[:, None, None, None] * jax.random.normal(kn, xb.shape)

    def loss(p):
      s = diffusion.edm_preconditioning(sigma, sigma_data=c.sigma_data)
      m = nnx.merge(graphdef, p)
      keep = diffusion.random_keep_indices(km, xb.shape[0], num_patches, mask_ratio) if mask_ratio > 0 else None
      f = m(s.c_in[:, None, None, None] * noisy, s.c_noise, yb, keep=keep)
      d = s.c_skip[:, None, None, None] * noisy + s.c_out[:, None, None, None] * f
      return diffusion.edm_loss(d, xb, sigma, sigma_data=c.sigma_data, keep=keep, patch_size=patch_size)

    value, g = jax.value_and_grad(loss)(params)
    u, opt_state = opt.update(g, opt_state, params)
    return optax.apply_updates(params, u), opt_state, value

  return step


def sample_quality(model: DiT, c, data, *, seed: int, key: jax.Array) -> tuple[dict[str, Any], np.ndarray]:
  """The runner's evaluation of a trained denoiser: ``({frechet_distance, conditional_accuracy, ...}, samples)``.

  Samples ``c.samples_per_class`` digits of each class with the ``c.sample_steps``-step Heun sampler from
  noise drawn with ``fold_in(key, 10**6)``, trains the digits MLP classifier (``c.classifier_steps``, seed
  ``seed``) on ``data = (x, y, x_test, y_test)`` (`digits_images`) and returns the Frechet distance of its
  penultimate features (generated vs training digits; not FID), its accuracy on the generated digits of each
  requested class and its test accuracy.
  """
  x, y, xt, yt = data
  labels = jnp.repeat(jnp.arange(10), c.samples_per_class)

  @jax.jit
  def sample(noise):
    def denoiser(xs, sig):
      s = diffusion.edm_preconditioning(sig, sigma_data=c.sigma_data)
      f = model(s.c_in * xs, jnp.full((xs.shape[0],), s.c_noise), labels)
      return s.c_skip * xs + s.c_out * f
    return diffusion.heun_sampler(denoiser, noise, num_steps=c.sample_steps)

  samples = np.asarray(sample(jax.random.normal(jax.random.fold_in(key, 10**6), (len(labels), 8, 8, 1))))
  classify, clf_acc = train_classifier(x, y, xt, yt, steps=c.classifier_steps, seed=seed)
  logits_gen, feats_gen = classify(jnp.asarray(np.clip(samples, -1.0, 1.0)))
  _, feats_real = classify(jnp.asarray(x))
  per_class = np.asarray(diffusion.conditional_accuracy(logits_gen, labels))
  fd = diffusion.frechet_distance(np.asarray(feats_gen), np.asarray(feats_real))
  return {
      "frechet_distance": fd,
      "conditional_accuracy": float(np.mean(per_class)),
      "conditional_accuracy_per_class": [float(a) for a in per_class],
      "classifier_test_accuracy": clf_acc,
  }, samples


def run(config) -> dict[str, Any]:
  """One arm for one seed (no caching): the module docstring's steps 1-4."""
  c = config.diffusion
  seed = int(config.seed)
  t0 = time.time()
  x, y, xt, yt = digits_images()
  model = DiT(1, 10, image_size=8, patch_size=c.patch_size, dim=c.dim, depth=c.depth, num_heads=c.num_heads,
              mlp_ratio=c.mlp_ratio, mixer_depth=c.mixer_depth, rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model)
  opt = make_optimizer(c.learning_rate, c.steps, c.finetune_steps)
  opt_state = opt.init(params)

  def make_step(mask_ratio):
    return jax.jit(make_train_step(c, model, opt, mask_ratio))

  xb0, yb0 = jnp.asarray(x[: c.batch]), jnp.asarray(y[: c.batch])
  args = (params, opt_state, xb0, yb0, jax.random.key(0))
  masked_step = make_step(float(c.mask_ratio)).lower(*args).compile()
  full_step = make_step(0.0).lower(*args).compile()
  flops = c.steps * compiled_flops(masked_step) + c.finetune_steps * compiled_flops(full_step)
  flops_unmasked = (c.steps + c.finetune_steps) * compiled_flops(full_step)

  rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  losses = []
  for i in range(c.steps + c.finetune_steps):
    idx = rng.integers(0, len(x), c.batch)
    step = masked_step if i < c.steps else full_step
    params, opt_state, value = step(params, opt_state, jnp.asarray(x[idx]), jnp.asarray(y[idx]),
                                    jax.random.fold_in(key, i))
    losses.append(float(value) if (i + 1) % 100 == 0 else None)
  train_seconds = time.time() - t0

  quality, samples = sample_quality(nnx.merge(graphdef, params), c, (x, y, xt, yt), seed=seed, key=key)
  last = [v for v in losses if v is not None]
  return {
      **quality,
      "flops": flops,
      "flops_unmasked": flops_unmasked,
      "flops_ratio": flops_unmasked / flops,
      "final_loss": last[-1] if last else float(np.mean([0.0])),
      "loss_history": last,
      "train_seconds": train_seconds,
      "wall_seconds": time.time() - t0,
      "sample_range": [float(samples.min()), float(samples.max())],
  }


micro_runner = caches_results(lambda config, workdir: run(config))
micro_runner.__name__ = "micro_runner"
