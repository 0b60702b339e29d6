"""Where jaxdyn's Pallas kernels run: interpret mode on CPU, compiled (Triton) on GPU, Mosaic on TPU."""

from __future__ import annotations

import jax

TARGETS = ("interpret", "gpu", "tpu")


def target(interpret: bool | None) -> str:
  """The target for a kernel call: ``interpret`` (None picks it off GPU/TPU), else the default backend's.

  Raises:
    ValueError: ``interpret=False`` on the CPU backend, where Pallas has no compiler.
  """
  backend = jax.default_backend()
  if interpret or (interpret is None and backend not in ("gpu", "cuda", "rocm", "tpu")):
    return "interpret"
  if backend not in ("gpu", "cuda", "rocm", "tpu"):
    raise ValueError(f"interpret: must not be False on the {backend} backend: Pallas compiles only for "
                     "GPU and TPU")
  return "tpu" if backend == "tpu" else "gpu"


def call_options(target: str, *, num_warps: int = 4, num_stages: int = 2) -> dict:
  """`pl.pallas_call` keyword arguments for ``target`` (one of `TARGETS`).

  On GPU they select Pallas's Triton lowering, which jaxdyn's kernels are written for (a loop over
  dynamic slices of a block held in global memory). JAX's default GPU lowering, Mosaic GPU, copies
  each whole BlockSpec block into shared memory, which a long sequence's keys or a long time axis
  exceed.
  """
  if target == "interpret":
    return {"interpret": True}
  if target == "gpu":
    from jax.experimental.pallas import triton as pltriton  # noqa: PLC0415 (only for a GPU build)
    return {"compiler_params": pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages)}
  if target == "tpu":
    return {}
  raise ValueError(f"target: must be one of {list(TARGETS)}, got {target!r}")
