"""Memory-saving training: Mesa 8-bit activations, MEMO-style offload/recompute plans, frozen-spatial ViViT.

- Mesa (Pan et al., 2021, https://arxiv.org/abs/2111.11124): exact forward, 8-bit residuals for the
  backward (``jaxdyn.memory._mesa``).
- MEMO (Efficiently Training 7B LLM with 1 Million Sequence Length on 8 GPUs,
  https://arxiv.org/abs/2407.12117): per-layer keep / offload / recompute plans as ``jax.checkpoint``
  policies (``jaxdyn.memory._plans``).
- Optimizing ViViT Training (Gowda, Arnab, Huang, 2024): frozen spatial transformer, adapter and
  temporal initialisation (``jaxdyn.memory._vivit``).
"""

from jaxdyn.memory import _mesa, _plans, _vivit
from jaxdyn.memory._mesa import *  # noqa: F403  (each module lists its exports in __all__)
from jaxdyn.memory._plans import *  # noqa: F403
from jaxdyn.memory._vivit import *  # noqa: F403

__all__ = [*_mesa.__all__, *_plans.__all__, *_vivit.__all__]
