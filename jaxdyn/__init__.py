"""jaxdyn: training techniques from recent papers as pure JAX functions and Optax transforms.

Each family is a subpackage, imported on first use (``import jaxdyn; jaxdyn.snn.lif_step(...)``):

- `jaxdyn.regularization`: multi-sample dropout (Inoue, 2019).
- `jaxdyn.snn`: spiking networks and SLTT / SLTT-K training (Meng et al., ICCV 2023).
- `jaxdyn.calibration`: RankMixup losses, calibration metrics, temperature scaling (Noh et al., ICCV 2023).
- `jaxdyn.bayes`: sparse subspace variational inference, SSVI (Li et al., ICML 2024).
- `jaxdyn.dynamics`: diffusion spectral entropy and mutual information (Liao, Liu et al., 2023).
- `jaxdyn.sparsity`: sparse training (GraNet, GMP, SET, RigL), polarization sub-networks, NUPES.
- `jaxdyn.attention`: attention patterns (causal, window, sink, block-sparse) and a Pallas block-sparse
  flash-attention kernel for LongGen's hybrid stacks (Ge et al., 2024).
- `jaxdyn.memory`: Mesa 8-bit activation residuals, MEMO-style offload / recompute plans, frozen-spatial
  ViViT training.
- `jaxdyn.schemes`: transformer and MoE training schemes: Experts Weights Averaging, SortedNet, delta
  activation layers, Hecate FSSDP beside FSDP and expert parallelism.
- `jaxdyn.detection`: boxes, ATSS and IoU-threshold anchor assignment, focal / GIoU / centerness losses,
  COCO-style AP, synthetic shape scenes and sequences (Zhang et al., CVPR 2020), historical object
  prediction (Zong et al., ICCV 2023), FreeZe's pose core.
- `jaxdyn.diffusion`: EDM training and sampling, micro-budget deferred patch masking (Sehwag et al., 2024),
  a classifier-feature Frechet distance, Embedded Representation Warmup (Liu et al., 2025), HarmoniCa's
  learned feature cache (Huang et al., 2024), MotionMaster's and UniID's training-free cores.
- `jaxdyn.text`: language-model data: dataset decomposition and its length curriculum (Pouransari et al.,
  NeurIPS 2024), concat-and-chunk with document-boundary segment ids, attention-FLOP accounting, MeCo's
  metadata conditioning (Gao et al., 2025), self-generated-token inputs (Cen et al., 2024).
- `jaxdyn.rl`: post-training: a verifiable addition task, GRPO advantages and the clipped surrogate with a
  k3 KL penalty, HAPO's history-aware length reward (Huang et al., 2025), DPO, value-drift metrics.
- `jaxdyn.multimodal`: vision-language and vision data: CLIP with LaCLIP rewrites, PRIOR token weighting,
  visual stitching, CTVIS contrastive items, crafted distribution shifts.
- `jaxdyn.models`, `jaxdyn.data`: reference models (Flax NNX) and grain input pipelines.
"""

import importlib
import importlib.metadata

FAMILIES = ("attention", "bayes", "calibration", "data", "detection", "diffusion", "dynamics", "memory", "models",
            "multimodal", "regularization", "rl", "schemes", "snn", "sparsity", "text")

try:
  __version__ = importlib.metadata.version("jaxdyn")
except importlib.metadata.PackageNotFoundError:  # running from a source tree that was not installed
  __version__ = "0.0.0+unknown"


def __getattr__(name: str):
  if name in FAMILIES:
    return importlib.import_module(f"jaxdyn.{name}")
  raise AttributeError(f"module 'jaxdyn' has no attribute {name!r}; its families are {list(FAMILIES)}")


def __dir__():
  return sorted([*globals(), *FAMILIES])
