"""Embedded Representation Warmup (ERW) on scikit-learn's digits, run as a claim's ``runner``: ERW vs a plain DiT.

`erw_runner(config, workdir)` follows Liu et al. (arXiv 2504.10188, code LINs-lab/ERW) at toy scale, with
``c = config.diffusion`` (the DiT and EDM settings of `experiments.techniques.diffusion.micro`) and
``e = config.erw``:

- baseline (``e.enabled = False``): ``c.steps`` EDM steps of `micro.make_train_step` (no masking);
- ERW (``e.enabled = True``):

  1. the pretrained encoder: `configs/vit_digits_encoder.py` (a `jaxdyn.models.ViT` digits classifier) is
     trained by the harness, in this process (`experiments.train.train_and_evaluate`), into
     ``<workdir>/encoder`` on first use (seed ``config.seed``, ``e.encoder_steps`` steps), then restored from
     that folder's orbax checkpoint by path (`load_encoder`); its final-normed patch tokens ``(B, 16, 64)``
     of the clean training digits are the frozen targets;
  2. warm-up, ``e.warmup_steps`` steps: a DiT's embeddings and first ``e.warmup_depth`` blocks and a
     `jaxdyn.diffusion.Projector` minimise ``e.warmup_weight * representation_alignment_loss`` on clean
     digits (noise label of EDM's smallest level ``sigma_min = 0.002``: the code's time 0, where EDM's
     ``c_noise = ln(sigma) / 4`` is undefined);
  3. full phase, ``c.steps - e.warmup_steps`` steps (the warm-up counts in the step budget, as in the code):
     a freshly initialised DiT (the baseline's initialisation) gets the warm-up's early layers
     (`copy_warmup_layers`), a fresh optimizer, and minimises the EDM loss plus
     ``erw_alignment_weight(t) * representation_alignment_loss`` on the tokens after block ``e.align_depth``
     of the noisy input (the projector carried over from the warm-up);

then both sample and are scored as the micro runner does (`micro.sample_quality`: the classifier-feature
Frechet distance, not FID). It writes ``results.json`` in ``workdir`` and returns what is there if it exists.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from experiments import checkpointing
from experiments import train as harness
from experiments.claims import caches_results
from experiments.techniques.diffusion.micro import digits_images, make_optimizer, make_train_step, sample_quality
from jaxdyn import diffusion
from jaxdyn.models import DiT

SIGMA_MIN = 0.002  # EDM's smallest sampling level: the warm-up's stand-in for a clean input


def _tuples(v):
  """config.json's lists back to the tuples the harness's configs hold."""
  if isinstance(v, dict):
    return {k: _tuples(x) for k, x in v.items()}
  if isinstance(v, list):
    return tuple(_tuples(x) for x in v)
  return v


def load_model(workdir: str | pathlib.Path):
  """``(model, config)``: the harness run's model with the parameters of its newest intact checkpoint."""
  workdir = pathlib.Path(workdir)
  path = workdir / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"workdir: {workdir} holds no harness run (no config.json)")
  config = ml_collections.ConfigDict(_tuples(json.loads(path.read_text())["config"]))
  if not (workdir / "checkpoints").is_dir():
    raise FileNotFoundError(f"workdir: {workdir} holds no checkpoints folder")
  built = harness.build(config)
  state = jax.device_put(built.state, built.state_shardings)
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", max_to_keep=config.max_checkpoints)
  try:
    restored = ckpt.restore_latest(jax.tree.map(ocp.utils.to_shape_dtype_struct, state))
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(f"workdir: {workdir}/checkpoints holds no intact checkpoint")
  return nnx.merge(built.graphdef, restored.state.params, restored.state.rest), config


def load_encoder(workdir: str | pathlib.Path) -> Callable[[jax.Array], jax.Array]:
  """Restores a harness-trained ViT from ``workdir`` by path; returns ``images -> patch tokens (B, T, dim)``.

  ``images`` are in the harness's format (digits: ``(B, 8, 8, 1)`` in [0, 1]); the tokens are the ViT's
  final-normed patch tokens before pooling (`jaxdyn.models.ViT.tokens`), as ERW uses DINOv2's
  ``x_norm_patchtokens``.
  """
  model, config = load_model(workdir)
  if config.model != "vit":
    raise ValueError(f"workdir: the run trained model {config.model!r}, not 'vit'")
  model.eval()
  return jax.jit(lambda images: model.tokens(images)[:, 1:])


def train_encoder(workdir: pathlib.Path, *, seed: int, steps: int, depth: int) -> dict[str, Any]:
  """Trains `configs/vit_digits_encoder.py` through the harness into ``workdir`` (resumes or reads a finished run)."""
  from configs import vit_digits_encoder  # noqa: PLC0415  (configs/ is importable from the repository root)
  config = vit_digits_encoder.get_config()
  config.seed = seed
  config.num_train_steps = config.eval_every_steps = config.checkpoint_every_steps = steps
  config.log_every_steps = min(config.log_every_steps, steps)
  config.model_kwargs.depth = depth
  return harness.train_and_evaluate(config, str(workdir))


def run(config, workdir: str) -> dict[str, Any]:
  """One arm for one seed (no caching): the module docstring's steps."""
  c, e = config.diffusion, config.erw
  seed = int(config.seed)
  t0 = time.time()
  x, y, xt, yt = digits_images()
  arch = dict(image_size=8, patch_size=c.patch_size, dim=c.dim, depth=c.depth, num_heads=c.num_heads,
              mlp_ratio=c.mlp_ratio, mixer_depth=c.mixer_depth)
  model = DiT(1, 10, **arch, rngs=nnx.Rngs(seed))
  rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  out: dict[str, Any] = {}
  losses = []

  def batches(n):
    for _ in range(n):
      idx = rng.integers(0, len(x), c.batch)
      yield idx, jnp.asarray(x[idx]), jnp.asarray(y[idx])

  if not e.enabled:
    graphdef, params = nnx.split(model)
    opt = make_optimizer(c.learning_rate, c.steps, 0)
    opt_state = opt.init(params)
    step = jax.jit(make_train_step(c, model, opt, 0.0))
    for i, (_, xb, yb) in enumerate(batches(c.steps)):
      params, opt_state, value = step(params, opt_state, xb, yb, jax.random.fold_in(key, i))
      if (i + 1) % 100 == 0:
        losses.append(float(value))
    model = nnx.merge(graphdef, params)
  else:
    t_enc = time.time()
    enc_results = train_encoder(pathlib.Path(workdir) / "encoder", seed=seed, steps=e.encoder_steps,
                                depth=e.encoder_depth)
    encode = load_encoder(pathlib.Path(workdir) / "encoder")
    targets = np.concatenate([np.asarray(encode(jnp.asarray((x[i:i + 512] + 1.0) / 2.0)))
                              for i in range(0, len(x), 512)])
    out.update(encoder_test_accuracy=enc_results["eval_accuracy"], encoder_seconds=time.time() - t_enc)
    t_train = time.time()
    proj = diffusion.Projector(c.dim, targets.shape[-1], hidden_features=e.projector_hidden,
                               rngs=nnx.Rngs(seed + 1))
    warm = DiT(1, 10, **arch, rngs=nnx.Rngs(seed))
    graphdef, params, rest = nnx.split((warm, proj), nnx.Param, ...)
    s_min = diffusion.edm_preconditioning(SIGMA_MIN, sigma_data=c.sigma_data)
    opt = make_optimizer(c.learning_rate, e.warmup_steps, 0)
    opt_state = opt.init(params)

    @jax.jit
    def warm_step(params, opt_state, xb, yb, zb):
      def loss(p):
        m, pr = nnx.merge(graphdef, p, rest)
        _, h = m(s_min.c_in * xb, jnp.full((xb.shape[0],), s_min.c_noise), yb, features_at=e.warmup_depth)
        return e.warmup_weight * diffusion.representation_alignment_loss(pr(h), zb)
      value, g = jax.value_and_grad(loss)(params)
      u, opt_state = opt.update(g, opt_state, params)
      return optax.apply_updates(params, u), opt_state, value

    align_hist = []
    for i, (idx, xb, yb) in enumerate(batches(e.warmup_steps)):
      params, opt_state, value = warm_step(params, opt_state, xb, yb, jnp.asarray(targets[idx]))
      if (i + 1) % 50 == 0 or i == 0:
        align_hist.append(float(value) / e.warmup_weight)
    warm, proj = nnx.merge(graphdef, params, rest)
    diffusion.copy_warmup_layers(model, warm, e.warmup_depth)

    full_steps = c.steps - e.warmup_steps
    graphdef, params, rest = nnx.split((model, proj), nnx.Param, ...)
    opt = make_optimizer(c.learning_rate, full_steps, 0)
    opt_state = opt.init(params)

    @jax.jit
    def full_step(params, opt_state, xb, yb, zb, weight, k):
      ks, kn = jax.random.split(k)
      sigma = diffusion.edm_sigma_sample(ks, xb.shape[0], p_mean=c.p_mean, p_std=c.p_std)
      noisy = xb + sigma[:, None, None, None] * jax.random.normal(kn, xb.shape)

      def loss(p):
        m, pr = nnx.merge(graphdef, p, rest)
        s = diffusion.edm_preconditioning(sigma, sigma_data=c.sigma_data)
        f, h = m(s.c_in[:, None, None, None] * noisy, s.c_noise, yb, features_at=e.align_depth)
        d = s.c_skip[:, None, None, None] * noisy + s.c_out[:, None, None, None] * f
        edm = diffusion.edm_loss(d, xb, sigma, sigma_data=c.sigma_data)
        align = diffusion.representation_alignment_loss(pr(h), zb)
        return edm + weight * align, (edm, align)

      (_, (edm, align)), g = jax.value_and_grad(loss, has_aux=True)(params)
      u, opt_state = opt.update(g, opt_state, params)
      return optax.apply_updates(params, u), opt_state, edm, align

    for i, (idx, xb, yb) in enumerate(batches(full_steps)):
      t = e.warmup_steps + i
      weight = diffusion.erw_alignment_weight(t, warmup_steps=e.warmup_steps, total_steps=c.steps,
                                              initial_weight=e.initial_weight, half_life=e.half_life)
      params, opt_state, edm, align = full_step(params, opt_state, xb, yb, jnp.asarray(targets[idx]), weight,
                                                jax.random.fold_in(key, t))
      if (t + 1) % 100 == 0:
        losses.append(float(edm))
        align_hist.append(float(align))
    model, _ = nnx.merge(graphdef, params, rest)
    out.update(align_loss_history=align_hist, final_align_loss=align_hist[-1] if align_hist else None,
               final_weight=float(weight) if full_steps else None, erw_train_seconds=time.time() - t_train)

  train_seconds = time.time() - t0
  quality, samples = sample_quality(model, c, (x, y, xt, yt), seed=seed, key=key)
  return {
      **quality,
      **out,
      "final_loss": losses[-1] if losses else None,
      "loss_history": losses,
      "train_seconds": train_seconds,
      "wall_seconds": time.time() - t0,
      "sample_range": [float(samples.min()), float(samples.max())],
  }


erw_runner = caches_results(run)
erw_runner.__name__ = "erw_runner"
