"""A block-level feature cache for the DiT sampler: compute a block, or reuse its cached residual.

Feature caching (FORA: Selvaraju et al., 2024, https://arxiv.org/abs/2407.01425; HarmoniCa: Huang et al.,
2024, https://arxiv.org/abs/2410.01723) exploits that a Diffusion Transformer's block outputs change slowly
from one sampling step to the next. The sampler runs `jaxdyn.models.DiT` one backbone block at a time
(`DiT.embed`, ``DiT.blocks``, `DiT.unembed`). With tokens ``h`` entering block ``l`` at denoiser call ``i``:

.. math::  h' = \\begin{cases} B_l(h), & r_l \\leftarrow B_l(h) - h & \\text{if } s_{i,l} \\text{ (compute)} \\\\
                               h + r_l & & \\text{otherwise (reuse)} \\end{cases}

where ``r_l`` is the cache of block ``l``: its residual ``B_l(h) - h`` from the last call that computed
it. ``s`` is a static boolean ``compute`` schedule of shape ``(num_cache_steps, num_blocks)``; its first
row must compute every block (the cache is empty before it). The embedding, the patch-mixer and the
final layer always run. The **cache ratio** is the fraction of block evaluations reused,
``1 - mean(s)`` (`cache_ratio`).

**One denoiser call is one cache step.** The EDM samplers (`jaxdyn.diffusion.heun_sampler`) call the
denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x, c_noise)`` once per Euler step, and twice per Heun
step but the last (the Euler point, then the trapezoidal correction): ``num_cache_steps = 2N - 1`` rows
for ``N`` Heun steps (row ``2i`` at ``(x_i, sigma_i)``, row ``2i + 1`` at the Euler point
``(x'_{i+1}, sigma_{i+1})``, row ``2N - 2`` the final Euler step), ``N`` rows for Euler steps. So a
Heun correction may reuse the residuals of the step's first evaluation, and the next step's first
evaluation (at the same ``sigma_{i+1}``) those of the correction.

**Compute saved under jit.** The schedule is static (a concrete boolean array, known when the sampler is
traced). Each distinct row of it becomes one specialised network (Python decides which blocks run), and
inside the sampler's ``lax.fori_loop`` a ``lax.switch`` on the step's row picks it: XLA runs only the
taken branch, so a reused block costs one addition instead of attention and the MLP. (Under ``vmap``
a ``switch`` or ``cond`` with a batched index becomes a ``select`` that evaluates every branch, and a
``jnp.where`` between computed and cached values would always evaluate both: neither saves anything.)
A block's fresh residual is stored only where the next step reuses it, so a row that computes every
block is the plain network, operation for operation: the cached sampler with an all-True schedule
returns the same samples as `heun_sampler` on `dit_denoiser`, bit for bit under ``jit`` (tested; a
``lax.cond`` per block with a traced predicate changes XLA's fusion and the last bits).

What is cached follows the brief of this project: the residual of a whole block. The HarmoniCa and FORA
code cache the attention and MLP outputs of each block separately (two decisions per block).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdyn import _validation
from jaxdyn.diffusion import _edm

__all__ = ["cache_ratio", "cached_sampler", "dit_denoiser", "fixed_interval_schedule", "num_cache_steps"]


def num_cache_steps(num_steps: int, *, second_order: bool = True) -> int:
  """Denoiser calls of an ``N``-step EDM sampler: ``2N - 1`` (Heun) or ``N`` (Euler), the schedule's rows.

  Example:
    >>> num_cache_steps(18), num_cache_steps(18, second_order=False)
    (35, 18)
  """
  n = _validation.check_int("num_steps", num_steps, lower=1)
  if not isinstance(second_order, bool):
    raise TypeError(f"second_order: must be a bool, got {type(second_order).__name__}")
  return 2 * n - 1 if second_order else n


def fixed_interval_schedule(num_steps: int, num_blocks: int, interval: int) -> np.ndarray:
  """The non-learned cache (FORA-style): every block computes at cache steps ``i % interval == 0``, else reuses.

  Args:
    num_steps: rows (cache steps, i.e. denoiser calls: `num_cache_steps`), ``>= 1``.
    num_blocks: backbone blocks, ``>= 1``.
    interval: ``N >= 1``; 1 computes everything (no reuse).

  Returns:
    A boolean NumPy array ``(num_steps, num_blocks)``, True where the block is computed.

  Example:
    >>> fixed_interval_schedule(5, 2, 2)[:, 0].tolist()
    [True, False, True, False, True]
  """
  rows = _validation.check_int("num_steps", num_steps, lower=1)
  cols = _validation.check_int("num_blocks", num_blocks, lower=1)
  k = _validation.check_int("interval", interval, lower=1)
  return np.repeat((np.arange(rows) % k == 0)[:, None], cols, axis=1)


def _check_schedule(schedule, rows: int | None = None, cols: int | None = None) -> jax.Array:
  shape = tuple(np.shape(schedule))
  dtype = getattr(schedule, "dtype", None)
  if dtype is None:
    dtype = np.asarray(schedule).dtype
  if dtype != np.bool_:
    raise TypeError(f"schedule: must be a boolean array (True = compute), got dtype {dtype}")
  want = (rows if rows is not None else "steps", cols if cols is not None else "blocks")
  if len(shape) != 2 or (rows is not None and shape[0] != rows) or (cols is not None and shape[1] != cols) \
      or 0 in shape:
    raise ValueError(f"schedule: must have shape ({want[0]}, {want[1]}), got {shape}")
  if _validation.is_concrete(schedule) and not np.asarray(schedule)[0].all():
    raise ValueError("schedule: the first row must compute every block (the cache is empty before it), got "
                     f"{np.asarray(schedule)[0].tolist()}")
  return jnp.asarray(schedule)


def cache_ratio(schedule: Any) -> float:
  """The fraction of block evaluations that reuse the cache: ``1 - mean(schedule)``.

  Args:
    schedule: a boolean ``(num_steps, num_blocks)`` compute schedule (first row all True).

  Example:
    >>> cache_ratio(fixed_interval_schedule(5, 2, 2))  # 2 of 5 rows reuse
    0.4
  """
  s = np.asarray(_check_schedule(schedule))
  return float(1.0 - s.mean())


def _check_model(model) -> None:
  from jaxdyn.models import DiT  # noqa: PLC0415  (jaxdyn.models imports nothing from here)
  if not isinstance(model, DiT):
    raise TypeError(f"model: must be a jaxdyn.models.DiT, got {type(model).__name__}")


def dit_denoiser(model: Any, class_labels: Any, *, sigma_data: float = 0.5) -> Callable[[jax.Array, jax.Array],
                                                                                        jax.Array]:
  """The uncached EDM denoiser ``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise, y)`` of a DiT, for `heun_sampler`.

  Args:
    model: a `jaxdyn.models.DiT` (its network ``F``).
    class_labels: ``(B,)`` integer labels ``y`` the samples are conditioned on.
    sigma_data: as in `edm_preconditioning`.

  Returns:
    ``D(x, sigma)`` with ``x`` ``(B, H, W, C)`` and ``sigma`` a scalar.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxdyn.diffusion import heun_sampler
    >>> from jaxdyn.models import DiT
    >>> m = DiT(1, 10, image_size=4, patch_size=2, dim=8, depth=2, num_heads=2, rngs=nnx.Rngs(0))
    >>> d = dit_denoiser(m, jnp.arange(3), sigma_data=0.5)
    >>> heun_sampler(d, jnp.ones((3, 4, 4, 1)), num_steps=2).shape
    (3, 4, 4, 1)
  """
  _check_model(model)
  _validation.check_integer_labels("class_labels", class_labels, model.num_classes)
  sd = _validation.check_real("sigma_data", sigma_data, lower=1e-3, upper=1e3)
  labels = jnp.asarray(class_labels)

  def denoiser(x, sigma):
    s = _edm.edm_preconditioning(sigma, sigma_data=sd)
    f = model(s.c_in * x, jnp.full((x.shape[0],), s.c_noise), labels)
    return s.c_skip * x + s.c_out * f

  return denoiser


def _heun_rollout(call, x, state, sigmas, second_order: bool):
  """``heun_sampler``'s loop with a carried ``state`` and ``call(row, y, sigma, state) -> (D, state)``.

  The arithmetic is `heun_sampler`'s, operation for operation (so an all-compute cache reproduces it).
  """
  n = sigmas.shape[0] - 1

  def slope(row, y, s, st):
    den, st = call(row, y, s, st)
    return (y - den.astype(y.dtype)) / s, st

  def heun(i, carry):
    y, st = carry
    s, s_next = sigmas[i], sigmas[i + 1]
    d, st = slope(2 * i, y, s, st)
    y_euler = y + (s_next - s) * d
    d2, st = slope(2 * i + 1, y_euler, s_next, st)
    return y + (s_next - s) * 0.5 * (d + d2), st

  def euler(i, carry, row):
    y, st = carry
    d, st = slope(row, y, sigmas[i], st)
    return y + (sigmas[i + 1] - sigmas[i]) * d, st

  carry = (x * sigmas[0], state)
  if second_order:
    carry = jax.lax.fori_loop(0, n - 1, heun, carry)
    return euler(n - 1, carry, 2 * (n - 1))
  carry = jax.lax.fori_loop(0, n - 1, lambda i, c: euler(i, c, i), carry)
  return euler(n - 1, carry, n - 1)


def _empty_cache(model, batch: int, dtype) -> jax.Array:
  return jnp.zeros((len(model.blocks), batch, model.num_patches, model.dim), dtype)


def _row_patterns(model, schedule: np.ndarray):
  """One network per distinct ``(compute row, store row)``, and each cache step's pattern index.

  Block ``l`` at step ``i`` computes where ``schedule[i, l]`` and reuses ``h + cache[l]`` otherwise; its fresh
  residual is stored only where the next step reuses it (``store = compute & ~compute_next``): a residual
  never read is never formed, so an all-compute row is exactly the plain network.
  """
  rows, cols = schedule.shape
  store = schedule & np.vstack([~schedule[1:], np.zeros((1, cols), bool)])
  keys = [(tuple(bool(v) for v in schedule[i]), tuple(bool(v) for v in store[i])) for i in range(rows)]
  unique = sorted(set(keys))
  index = np.array([unique.index(k) for k in keys], np.int32)

  def make(compute, keep):
    def network(x_in, c_noise, labels, cache):
      tokens, c = model.embed(x_in, c_noise, labels)
      for l, blk in enumerate(model.blocks):
        if compute[l]:
          out = blk(tokens, c)
          if keep[l]:
            cache = cache.at[l].set(out - tokens)
          tokens = out
        else:
          tokens = tokens + cache[l]
      return model.unembed(tokens, c), cache
    return network

  reused = np.array([cols - sum(k[0]) for k in unique], np.int32)
  return [make(*k) for k in unique], index, reused


def _sampler_setup(model, noise, class_labels, num_steps, sigma_min, sigma_max, rho, second_order, sigma_data):
  _check_model(model)
  if not isinstance(second_order, bool):
    raise TypeError(f"second_order: must be a bool, got {type(second_order).__name__}")
  sigmas = _edm.karras_sigmas(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
  x = _validation.check_floating("noise", noise)
  if x.ndim != 4 or tuple(x.shape[1:]) != model.input_shape:
    raise ValueError(f"noise: must have shape (batch, {', '.join(map(str, model.input_shape))}), got {x.shape}")
  _validation.check_integer_labels("class_labels", class_labels, model.num_classes, shape=(x.shape[0],))
  sd = _validation.check_real("sigma_data", sigma_data, lower=1e-3, upper=1e3)
  return sigmas.astype(x.dtype), x, jnp.asarray(class_labels), sd


def cached_sampler(model: Any, noise: Any, class_labels: Any, schedule: Any, *, num_steps: int = 18,
                   sigma_data: float = 0.5, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                   second_order: bool = True, return_reused: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
  """EDM sampling (`heun_sampler`) of a DiT with its backbone blocks computed or reused per ``schedule``.

  Args:
    model: a `jaxdyn.models.DiT`, used as the EDM denoiser ``c_skip x + c_out F(c_in x, c_noise, y)``.
    noise: standard normal draws ``(B, H, W, C)``.
    class_labels: ``(B,)`` integer class labels.
    schedule: boolean ``(num_cache_steps(num_steps, second_order), len(model.blocks))``, True = compute
      (`fixed_interval_schedule`, `jaxdyn.diffusion.Router.schedule`); its first row must be all True.
    num_steps, sigma_min, sigma_max, rho, second_order: as in `heun_sampler`.
    sigma_data: as in `edm_preconditioning`.
    return_reused: also return the number of block evaluations that reused the cache, counted as the
      sampler runs (per image it equals ``cache_ratio(schedule) * schedule.size``).

  Returns:
    The samples, shaped like ``noise`` (and the reuse count, an int32 scalar, with ``return_reused``).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxdyn.models import DiT
    >>> m = DiT(1, 10, image_size=4, patch_size=2, dim=8, depth=2, num_heads=2, rngs=nnx.Rngs(0))
    >>> z, y = jax.random.normal(jax.random.key(0), (3, 4, 4, 1)), jnp.arange(3)
    >>> sched = fixed_interval_schedule(num_cache_steps(4), 2, 2)
    >>> x, reused = cached_sampler(m, z, y, sched, num_steps=4, return_reused=True)
    >>> x.shape, int(reused), cache_ratio(sched) * sched.size
    ((3, 4, 4, 1), 6, 6.0)
  """
  sigmas, x, labels, sd = _sampler_setup(model, noise, class_labels, num_steps, sigma_min, sigma_max, rho,
                                         second_order, sigma_data)
  if not isinstance(return_reused, bool):
    raise TypeError(f"return_reused: must be a bool, got {type(return_reused).__name__}")
  _check_schedule(schedule, num_cache_steps(num_steps, second_order=second_order), len(model.blocks))
  if not _validation.is_concrete(schedule):
    raise TypeError("schedule: must be a concrete boolean array (static: known when the sampler is traced), "
                    "got a traced value")
  networks, index, reused = _row_patterns(model, np.asarray(schedule))
  index, reused = jnp.asarray(index), jnp.asarray(reused)

  def call(row, y, sigma, state):
    cache, count = state
    s = _edm.edm_preconditioning(sigma, sigma_data=sd)
    args = (s.c_in * y, jnp.full((y.shape[0],), s.c_noise), labels, cache)
    f, cache = networks[0](*args) if len(networks) == 1 else jax.lax.switch(index[row], networks, *args)
    return s.c_skip * y + s.c_out * f, (cache, count + reused[index[row]])

  state = (_empty_cache(model, x.shape[0], x.dtype), jnp.zeros((), jnp.int32))
  out, (_, count) = _heun_rollout(call, x, state, sigmas, second_order)
  return (out, count) if return_reused else out
