"""HarmoniCa on scikit-learn's digits, run as a claim's ``runner``: a learned cache router vs the fixed-interval cache.

`harmonica_runner(config, workdir)` follows Huang et al. ("HarmoniCa", arXiv 2410.01723) at toy scale, with
``c = config.diffusion`` and ``h = config.harmonica``; one seed computes every arm on one trained DiT:

1. train a class-conditional `jaxdyn.models.DiT` as an EDM denoiser on the 1,437 training digits (unmasked,
   ``c.steps`` Adam steps: `micro.make_optimizer`, `micro.make_train_step`), then freeze it;
2. sample ``c.samples_per_class`` digits of each class from one noise draw with the ``c.sample_steps``-step
   Heun sampler three ways (`jaxdyn.diffusion.cached_sampler`): no cache; the fixed-interval cache
   (`fixed_interval_schedule`, ``h.interval``: every block computed at every ``h.interval``-th denoiser
   call); the learned router;
3. the router (`jaxdyn.diffusion.Router`) is trained for ``h.router_steps`` iterations of SDT + IEPO
   (`harmonica_loss`, one fresh trajectory of ``h.router_batch`` noises per iteration, Adam ``h.router_lr``,
   logits clamped to [-5, 5] as the authors' code), the IEPO proxy (`iepo_weights`, on the current
   trajectory's noise) recomputed every ``h.proxy_every`` iterations. The penalty ``beta`` starts at
   ``h.beta`` and is adapted multiplicatively (``x exp(+-h.beta_rate)`` per iteration) toward the fixed
   interval's cache ratio at threshold ``h.threshold`` (here: the paper sets beta by hand per target);
4. at inference the threshold is set so that the router reuses as many block evaluations as the fixed
   interval (`matched_threshold`), and the two ratios are reported (``cache_ratio_learned``,
   ``cache_ratio_fixed``; the declared tolerance is ``h.ratio_tolerance``);
5. quality of each arm: the Frechet distance between Gaussian fits of the digits MLP classifier's
   penultimate features (`micro.train_classifier`) of its samples and of the training digits (**not FID**),
   and that classifier's accuracy on the samples of each requested class.

The arms of a claim differ only in ``h.policy`` (``"none"``, ``"fixed"``, ``"learned"``): the runner computes
all three once per seed into ``<runs dir>/harmonica-shared-<hash>/seed<k>/results.json`` (the hash of the
config without the seed and the policy; with ``h.share_runs`` False, into the arm's own workdir) and returns
the arm's numbers, so every arm reads the same DiT, classifier and noise.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from experiments.claims import caches_results, shared_run
from experiments.techniques.diffusion import micro
from jaxdyn import diffusion
from jaxdyn.models import DiT

POLICIES = ("none", "fixed", "learned")


def _train_dit(c, seed: int, x, y) -> DiT:
  model = DiT(1, 10, image_size=8, patch_size=c.patch_size, dim=c.dim, depth=c.depth, num_heads=c.num_heads,
              mlp_ratio=c.mlp_ratio, mixer_depth=c.mixer_depth, rngs=nnx.Rngs(seed))
  graphdef, params = nnx.split(model)
  opt = micro.make_optimizer(c.learning_rate, c.steps, 0)
  opt_state = opt.init(params)
  step = jax.jit(micro.make_train_step(c, model, opt, 0.0))
  rng, key = np.random.default_rng(seed), jax.random.key(seed)
  for i in range(c.steps):
    idx = rng.integers(0, len(x), c.batch)
    params, opt_state, _ = step(params, opt_state, jnp.asarray(x[idx]), jnp.asarray(y[idx]),
                                jax.random.fold_in(key, i))
  return nnx.merge(graphdef, params)


def train_router(model: DiT, c, h, *, seed: int, target_ratio: float) -> tuple[diffusion.Router, dict[str, Any]]:
  """Step 3 of the module docstring: ``(router, log)``; ``log`` has the loss, beta and ratio history."""
  sampler = dict(num_steps=c.sample_steps, sigma_data=c.sigma_data)
  rows = diffusion.num_cache_steps(c.sample_steps)
  router = diffusion.Router(rows, len(model.blocks), rngs=nnx.Rngs(seed + 7))
  opt = optax.adam(h.router_lr)
  logits = router.logits.value
  opt_state = opt.init(logits)
  labels = jnp.arange(h.router_batch) % 10
  kw = dict(threshold=h.threshold, estimator=h.estimator, **sampler)

  @jax.jit
  def step(logits, opt_state, noise, proxy, beta):
    (loss, aux), g = jax.value_and_grad(
        lambda a: diffusion.harmonica_loss(a, model, noise, labels, proxy, beta=beta, **kw), has_aux=True)(logits)
    u, opt_state = opt.update(g, opt_state, logits)
    return jnp.clip(optax.apply_updates(logits, u), -5.0, 5.0), opt_state, loss, aux["mse"]

  proxy_fn = jax.jit(lambda a, noise: diffusion.iepo_weights(a, model, noise, labels, **kw))
  key = jax.random.key(seed + 10**5)
  beta, proxy, log = float(h.beta), None, {"loss": [], "beta": [], "ratio_at_threshold": [], "proxy": []}
  for i in range(h.router_steps):
    noise = jax.random.normal(jax.random.fold_in(key, i), (h.router_batch, 8, 8, 1))
    if i % h.proxy_every == 0:
      proxy = proxy_fn(logits, noise)
      log["proxy"].append([float(v) for v in proxy])
    logits, opt_state, loss, _ = step(logits, opt_state, noise, proxy, jnp.float32(beta))
    p = np.array(jax.nn.sigmoid(logits))
    p[0] = 1.0
    ratio = float(1.0 - (p >= h.threshold).mean())
    beta *= float(np.exp(h.beta_rate if ratio < target_ratio else -h.beta_rate))
    log["loss"].append(float(loss))
    log["beta"].append(beta)
    log["ratio_at_threshold"].append(ratio)
  router.logits.value = logits
  return router, log


def run_all(config) -> dict[str, Any]:
  """Every arm for one seed (no caching of its own): the module docstring's steps 1-5."""
  c, h = config.diffusion, config.harmonica
  seed = int(config.seed)
  t0 = time.time()
  x, y, xt, yt = micro.digits_images()
  model = _train_dit(c, seed, x, y)
  dit_seconds = time.time() - t0
  rows = diffusion.num_cache_steps(c.sample_steps)
  fixed = diffusion.fixed_interval_schedule(rows, c.depth, h.interval)
  ratio_fixed = diffusion.cache_ratio(fixed)

  t1 = time.time()
  router, log = train_router(model, c, h, seed=seed, target_ratio=ratio_fixed)
  router_seconds = time.time() - t1
  scores = np.asarray(router.scores(), np.float64)
  threshold = diffusion.matched_threshold(scores, ratio_fixed)
  learned = scores >= threshold
  learned[0] = True
  ratio_learned = diffusion.cache_ratio(learned)

  labels = jnp.repeat(jnp.arange(10), c.samples_per_class)
  noise = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 10**6), (len(labels), 8, 8, 1))
  classify, clf_acc = micro.train_classifier(x, y, xt, yt, steps=c.classifier_steps, seed=seed)
  _, feats_real = classify(jnp.asarray(x))
  schedules = {"none": np.ones_like(fixed), "fixed": fixed, "learned": learned}
  per_policy = {}
  for name, sched in schedules.items():
    ts = time.time()
    samples = jax.jit(lambda z, s=sched: diffusion.cached_sampler(model, z, labels, s, num_steps=c.sample_steps,
                                                                  sigma_data=c.sigma_data))(noise)
    samples = np.asarray(jax.block_until_ready(samples))
    sample_seconds = time.time() - ts
    logits_gen, feats_gen = classify(jnp.asarray(np.clip(samples, -1.0, 1.0)))
    per_class = np.asarray(diffusion.conditional_accuracy(logits_gen, labels))
    per_policy[name] = {
        "frechet_distance": diffusion.frechet_distance(np.asarray(feats_gen), np.asarray(feats_real)),
        "conditional_accuracy": float(np.mean(per_class)),
        "cache_ratio": diffusion.cache_ratio(sched),
        "sample_seconds": sample_seconds,
        "rmse_to_uncached": None,
        "samples_head": samples[:20].tolist(),
    }
  ref = np.asarray(per_policy["none"]["samples_head"])
  for v in per_policy.values():
    v["rmse_to_uncached"] = float(np.sqrt(np.mean((np.asarray(v["samples_head"]) - ref) ** 2)))
  return {
      "per_policy": per_policy,
      "cache_ratio_fixed": ratio_fixed,
      "cache_ratio_learned": ratio_learned,
      "ratio_gap": abs(ratio_learned - ratio_fixed),
      "ratio_within_tolerance": abs(ratio_learned - ratio_fixed) <= h.ratio_tolerance,
      "learned_threshold": threshold,
      "learned_schedule": learned.astype(int).tolist(),
      "router_scores": scores.tolist(),
      "ratio_at_training_threshold": log["ratio_at_threshold"][-1] if log["loss"] else None,
      "router_log": log,
      "classifier_test_accuracy": clf_acc,
      "dit_seconds": dit_seconds,
      "router_seconds": router_seconds,
      "wall_seconds": time.time() - t0,
  }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One arm (``config.harmonica.policy``) for one seed, from the seed's shared run of every arm."""
  policy = config.harmonica.policy
  if policy not in POLICIES:
    raise ValueError(f"harmonica.policy: must be one of {list(POLICIES)}, got {policy!r}")
  shared, path = shared_run(run_all, config, workdir, prefix="harmonica", arm_keys=('harmonica.policy',),
                            share=config.harmonica.share_runs)
  arm = shared["per_policy"][policy]
  return {**{k: v for k, v in shared.items() if k not in ("per_policy", "router_log")},
          **{k: v for k, v in arm.items() if k != "samples_head"}, "policy": policy, "shared_results": str(path)}


harmonica_runner = caches_results(run)
harmonica_runner.__name__ = "harmonica_runner"
