"""Multi-step LIF as a Pallas kernel (the T loop inside the kernel) with a `jax.custom_vjp`.

Forward kernel, per block of neurons: for t = 1..T, u = lam v + I[t], s[t] = [u >= V_th], v = reset(u, s);
it writes the spikes, the pre-reset potentials u[t] (the backward's residual) and v_T.

Backward kernel, in reverse time: with g_v the cotangent of v[t] arriving from step t+1 (of v_T at t=T),
  du[t] = ds[t] g(u[t] - V_th) + g_v dv[t]/du[t],   dI[t] = du[t],   g_v <- lam du[t]
where g is the surrogate derivative and dv/du = 1 - V_th g (soft reset) or 1 - s - u g (hard reset);
with ``detach_membrane=True`` (SLTT) v[t-1] is a constant, so g_v <- 0 after each step.

The forward kernel fires with the same `charge_fire_reset` update as the jnp path (Heaviside without a
gradient rule, NaN for a non-finite potential); the backward kernel mirrors what autodiff of the jnp
path computes, written out by hand: sharing it with autodiff would need the jnp scan's O(T) residuals,
which is what the kernel avoids.

Off GPU/TPU the kernels run in Pallas interpret mode (`jax.experimental.pallas` only interprets on
CPU), which is slower than the `jax.lax.scan` path, so `jaxdyn.snn.lif_multistep` (jnp) stays the
default and this is opt-in. On GPU they compile through Pallas's Triton lowering
(`jaxdyn._pallas.call_options`). Measured on one NVIDIA H200 (jax 0.11.2, 2026-11-30,
``benchmarks/gpu_kernels.py``), T = 6 on the spiking VGG-11's first-layer size (32 x 64 x 32 x 32
neurons), float32: spikes equal to the scan's, gradients within 1e-7 relative; forward + backward
0.28 ms against the scan's 0.47 ms (BPTT) and 0.25 against 0.41 ms (SLTT's detached membrane).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.typing import ArrayLike

from jaxdyn import _pallas, _validation
from jaxdyn.snn._lif import LIFConfig, charge_fire_reset, time_major
from jaxdyn.snn._surrogate import _resolve, heaviside, slope

__all__ = ["lif_multistep_pallas"]


def _forward_kernel(cfg: LIFConfig, num_steps: int):
  def kernel(i_ref, v0_ref, s_ref, u_ref, vt_ref):
    def body(t, v):
      u, s, v = charge_fire_reset(cfg, v, i_ref[pl.ds(t, 1), :], heaviside)
      s_ref[pl.ds(t, 1), :] = s
      u_ref[pl.ds(t, 1), :] = u
      return v

    vt_ref[...] = jax.lax.fori_loop(0, num_steps, body, v0_ref[...])

  return kernel


def _backward_kernel(cfg: LIFConfig, num_steps: int, detach: bool, name: str, alpha: float):
  lam, v_th, soft = cfg.lam, cfg.v_th, cfg.reset == "soft"

  def kernel(u_ref, ds_ref, dvt_ref, di_ref, dv0_ref):
    def body(j, g_v):
      t = num_steps - 1 - j
      u = u_ref[pl.ds(t, 1), :]
      sg = slope(name, u - v_th, alpha)
      dv_du = 1.0 - v_th * sg if soft else (1.0 - heaviside(u - v_th)) - u * sg
      du = ds_ref[pl.ds(t, 1), :] * sg + g_v * dv_du
      di_ref[pl.ds(t, 1), :] = du
      return jnp.zeros_like(du) if detach else lam * du

    g_v = jax.lax.fori_loop(0, num_steps, body, dvt_ref[...])
    dv0_ref[...] = g_v

  return kernel


@functools.lru_cache(maxsize=None)
def _build(cfg: LIFConfig, name: str, alpha: float, detach: bool, num_steps: int, n: int,
           block: int, dtype, target: str):
  grid = (n // block,)
  call = functools.partial(pl.pallas_call, **_pallas.call_options(target))
  seq = pl.BlockSpec((num_steps, block), lambda j: (0, j))
  row = pl.BlockSpec((1, block), lambda j: (0, j))
  seq_shape = jax.ShapeDtypeStruct((num_steps, n), dtype)
  row_shape = jax.ShapeDtypeStruct((1, n), dtype)
  forward = call(_forward_kernel(cfg, num_steps), grid=grid, in_specs=[seq, row],
                 out_specs=[seq, seq, row], out_shape=[seq_shape, seq_shape, row_shape])
  backward = call(_backward_kernel(cfg, num_steps, detach, name, alpha), grid=grid,
                  in_specs=[seq, seq, row], out_specs=[seq, row], out_shape=[seq_shape, row_shape])

  @jax.custom_vjp
  def run(currents, v0):
    s, _, v_t = forward(currents, v0)
    return s, v_t

  def fwd(currents, v0):
    s, u, v_t = forward(currents, v0)
    return (s, v_t), u

  def bwd(u, cotangents):
    ds, dv_t = cotangents
    di, dv0 = backward(u, ds, dv_t)
    return di, dv0

  run.defvjp(fwd, bwd)
  return run


def lif_multistep_pallas(
    currents: ArrayLike,
    v0: ArrayLike | None = None,
    *,
    tau: float = 1.1,
    v_th: float = 1.0,
    reset: str = "soft",
    surrogate: str = "triangle",
    alpha: float | None = None,
    detach_membrane: bool = False,
    block_size: int = 128,
    interpret: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
  """T LIF steps in one Pallas kernel; same values and gradients as `jaxdyn.snn.lif_multistep`.

  u[t] = lam v[t-1] + I[t], s[t] = H(u[t] - V_th), v[t] = u[t] - V_th s[t] (soft) or u[t] (1 - s[t]);
  the backward kernel runs the surrogate-gradient recursion in reverse time (see the module docstring).

  Args:
    currents: ``(T, ...)`` input currents, T >= 1 (integers become the default float).
    v0: initial membrane potential ``(...)``; None for zeros.
    tau, v_th, reset, surrogate, alpha: the LIF neuron (`jaxdyn.snn.lif_step`).
    detach_membrane: SLTT's constant v[t-1]: gradients do not flow between steps.
    block_size: neurons per kernel instance (a power of two; the neuron axis is zero-padded to it).
    interpret: Pallas interpret mode; None chooses it off GPU/TPU (the only mode that runs on CPU).

  Returns:
    ``(spikes (T, ...), v_T (...))``, as `jaxdyn.snn.lif_multistep`: NaN spikes from a non-finite
    potential on; zero neurons give empty arrays without launching a kernel.

  Example:
    >>> import jax.numpy as jnp
    >>> s, v = lif_multistep_pallas(jnp.full((3, 2), 0.6))
    >>> s.sum().item(), v.shape
    (0.0, (2,))

  References:
    Meng et al., ICCV 2023, https://arxiv.org/abs/2302.14311; code https://github.com/qymeng94/SLTT.
  """
  cfg = LIFConfig(tau=tau, v_th=v_th, reset=reset, surrogate=surrogate, alpha=alpha)
  name, a = _resolve(cfg.surrogate, cfg.alpha)
  block_size = _validation.check_int("block_size", block_size, lower=1)
  if block_size & (block_size - 1):
    raise ValueError(f"block_size: must be a power of two, got {block_size!r}")
  currents, v0 = time_major(currents, v0)
  cfg.check_dtype(currents)
  num_steps, shape = currents.shape[0], currents.shape[1:]
  if v0.size == 0:  # no neurons: nothing to run
    return jnp.zeros(currents.shape, currents.dtype), v0
  n = int(v0.size)
  block = min(block_size, 1 << (n - 1).bit_length())
  padded = -(-n // block) * block
  flat = jnp.pad(currents.reshape(num_steps, n), ((0, 0), (0, padded - n)))
  v0_flat = jnp.pad(v0.reshape(1, n), ((0, 0), (0, padded - n)))
  run = _build(cfg, name, a, bool(detach_membrane), num_steps, padded, block, jnp.dtype(currents.dtype),
               _pallas.target(interpret))
  s, v_t = run(flat, v0_flat)
  return s[:, :n].reshape(currents.shape), v_t[0, :n].reshape(shape)
