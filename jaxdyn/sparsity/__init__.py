"""Sparse training and compression: GraNet, GMP, SET, RigL, static sparse masks; ERK and friends.

- Masks as PyTrees with the params' structure (`prunable`, `layer_counts`, `random_masks`,
  `dense_masks`, `apply_masks`, `mask_stats`): which leaves are sparse, how a global density is
  spread over layers (uniform, ER, ERK), exact per-layer counts.
- Schedules as frozen dataclasses: `PruningSchedule` (the cubic schedule of Zhu and Gupta and of
  GraNet), `DropSchedule` (RigL's and GraNet's cosine-decayed drop fraction).
- Optax wrappers around any optimizer, state `SparseState`: `static_sparse`, `gmp`, `set_sparse`,
  `rigl` and `granet` (its authors' code with ``official_compat=True``); the per-layer step
  `drop_and_regrow`.
- FLOPs by the mask: `sparse_flops`, `training_flops`.
- Polarization consensus sub-networks (Zhi et al., 2023): `GatedCNN` with a `ChannelGate` per conv
  block (`GatedResNet`: per residual block, on its inner channels) and the straight-through
  `binary_gate`, `polarization_regularizer`, `consensus_masks`, and `extract_subnetwork` (the static
  smaller `jaxdyn.models.CNN` or `ResNet`); the magnitude channel-pruning
  baseline `prune_channels_by_magnitude` / `prune_channels`; `compression_report`, `cnn_flops`.
- NUPES post-training quantization (Yvinec et al., 2023): the power automorphism
  (`power_transform`, `inverse_power_transform`), `quantize_power` / `quantize_uniform` into integer
  `QuantizedTensor` s, `dequantize`, `search_exponent`, the grid-wide optimisation `nupes_layer`, the
  AdaRound-style baseline `adaround_layer`, and `quantize_tree` for a whole parameter tree.

References:
  Liu et al., "Sparse Training via Boosting Pruning Plasticity with Neuroregeneration", NeurIPS 2021,
  https://arxiv.org/abs/2106.10404; Evci et al., "Rigging the Lottery", ICML 2020,
  https://arxiv.org/abs/1911.11134; Zhu and Gupta, 2017, https://arxiv.org/abs/1710.01878;
  Mocanu et al., 2018, https://arxiv.org/abs/1707.04780.
"""

from jaxdyn.sparsity._flops import LayerFlops, sparse_flops, training_flops
from jaxdyn.sparsity._masks import (
    DISTRIBUTIONS,
    apply_masks,
    default_predicate,
    dense_masks,
    layer_counts,
    mask_stats,
    prunable,
    random_masks,
)
from jaxdyn.sparsity._nupes import (
    EXPONENTS,
    QuantizedTensor,
    adaround_layer,
    dequantize,
    inverse_power_transform,
    nupes_layer,
    power_transform,
    quantize_power,
    quantize_tree,
    quantize_uniform,
    search_exponent,
)
from jaxdyn.sparsity._polarization import (
    ChannelGate,
    CompressionReport,
    GatedCNN,
    GatedResNet,
    binary_gate,
    cnn_flops,
    compression_report,
    consensus_masks,
    extract_subnetwork,
    polarization_regularizer,
    prune_channels,
    prune_channels_by_magnitude,
)
from jaxdyn.sparsity._schedules import DropSchedule, PruningSchedule
from jaxdyn.sparsity._transforms import (
    SparseState,
    drop_and_regrow,
    gmp,
    granet,
    rigl,
    set_sparse,
    static_sparse,
)

__all__ = [
    "ChannelGate",
    "CompressionReport",
    "DISTRIBUTIONS",
    "DropSchedule",
    "EXPONENTS",
    "GatedCNN",
    "GatedResNet",
    "LayerFlops",
    "PruningSchedule",
    "QuantizedTensor",
    "SparseState",
    "adaround_layer",
    "apply_masks",
    "binary_gate",
    "cnn_flops",
    "compression_report",
    "consensus_masks",
    "default_predicate",
    "dense_masks",
    "dequantize",
    "drop_and_regrow",
    "extract_subnetwork",
    "gmp",
    "granet",
    "inverse_power_transform",
    "layer_counts",
    "mask_stats",
    "nupes_layer",
    "polarization_regularizer",
    "power_transform",
    "prunable",
    "prune_channels",
    "prune_channels_by_magnitude",
    "quantize_power",
    "quantize_tree",
    "quantize_uniform",
    "random_masks",
    "rigl",
    "search_exponent",
    "set_sparse",
    "sparse_flops",
    "static_sparse",
    "training_flops",
]
