"""Training schemes for transformers and mixtures of experts.

- Experts Weights Averaging (Huang, Ye et al., 2023, https://arxiv.org/abs/2308.06093): random-partition
  MoE feed-forward layers for training, averaged toward each other after every step and collapsed
  into a plain FFN for inference (``jaxdyn.schemes._ewa``).
- SortedNet (Valipour et al., 2023, https://arxiv.org/abs/2309.00255): nested sub-models (leading layers,
  hidden units, heads) sliced from shared parameters, sampled per update with gradient accumulation,
  evaluated from one set of weights and exported as smaller models (``jaxdyn.schemes._sortednet``).
- Delta activation layers (Yousefzadeh & Sifalakis, 2021, https://arxiv.org/abs/2107.07305): activations
  quantized on a trainable per-channel grid with a temporal-sparsity loss, so most frame-to-frame deltas
  are zero; delta inference and the nonzero-delta count (``jaxdyn.schemes._delta``).
- Hecate FSSDP (Qing et al., 2025, https://arxiv.org/abs/2502.02581): a routed MoE layer under fully sharded
  sparse data parallelism (sparse all-gather of the experts local tokens use, sparse reduce-scatter of
  their gradients) beside plain FSDP and expert parallelism, and its communication bytes counted from
  the program's collectives (``jaxdyn.schemes._fssdp``).
"""

from jaxdyn.schemes import _delta, _ewa, _fssdp, _sortednet
from jaxdyn.schemes._delta import *  # noqa: F403  (each module lists its exports in __all__)
from jaxdyn.schemes._ewa import *  # noqa: F403
from jaxdyn.schemes._fssdp import *  # noqa: F403
from jaxdyn.schemes._sortednet import *  # noqa: F403

__all__ = [*_ewa.__all__, *_sortednet.__all__, *_delta.__all__, *_fssdp.__all__]
