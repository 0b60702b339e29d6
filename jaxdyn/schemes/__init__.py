"""Training schemes for transformers: Experts Weights Averaging (more of issue 20 to come).

- Experts Weights Averaging (Huang, Ye et al., 2023, https://arxiv.org/abs/2308.06093): random-partition
  MoE feed-forward layers for training, averaged toward each other after every step and collapsed
  into a plain FFN for inference (``jaxdyn.schemes._ewa``).
"""

from jaxdyn.schemes import _ewa
from jaxdyn.schemes._ewa import *  # noqa: F403  (each module lists its exports in __all__)

__all__ = [*_ewa.__all__]
