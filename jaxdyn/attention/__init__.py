"""Attention patterns and block-sparse attention: LongGen's sparse layers and their kernel.

- Patterns as pure functions: NumPy boolean masks ``(q_len, k_len)``, True = may attend, for
  `causal_mask`, `sliding_window_mask`, `sink_window_mask` (attention sink + window,
  StreamingLLM-style) and `block_sparse_mask` (local + strided blocks, dkernel's rule), by name in
  `PATTERNS`; and for kernels, `block_layout` (which key blocks each query block reads) and
  `layout_indices` (each query block's key-block list, padded, with a count).
- Attention: `block_sparse_attention`, a flash-attention style Pallas kernel (online softmax over
  the listed key blocks only, exact element mask inside a block, forward and backward in a
  ``custom_vjp``; interpret mode off GPU/TPU, Triton on GPU, matmul `PRECISIONS`) or, with
  ``implementation="jnp"``, a blockwise jnp path
  (gathered key blocks, autodiff); `dense_masked_attention`, the dense reference.
- In-context linear regression (He, Pan, Chen & Yang, 2025): `sample_tasks`, the one-layer multi-head softmax
  attention model (`init_icl_attention`, `icl_attention`, `icl_loss`, `train_icl`), its per-head
  metrics (`kq_diagonal`, `ov_last_entry`, `implied_gd_step`) and the predictors it is compared with
  (`debiased_gd_predict`, `linear_attention_predict`, `ridge_predict`, `bayes_predict`).
- LongGen hybrid stacks: `layer_plan` (full layers in the middle, the rest sparse),
  `sink_window_attention` / `hybrid_attention_fns` (attention functions for
  `jaxdyn.models.Transformer`, masked by absolute positions), `hybrid_cache` (ring buffers of
  sink + window slots for the sparse layers) and `kv_cache_bytes` (the cache's size per plan).

LongGen trains long-context models with 1/3 of the layers full attention (in the middle) and 2/3
sparse (sink + window, or block-sparse local + strided), which speeds up training and shrinks the
KV cache, since a sparse layer keeps only the tokens its pattern can still read.

References:
  Ge et al., "A Little Goes a Long Way: Efficient Long Context Training and Inference with Partial
  Contexts", 2024, https://arxiv.org/abs/2410.01485; Xiao et al., "Efficient Streaming Language
  Models with Attention Sinks", ICLR 2024, https://arxiv.org/abs/2309.17453; block-sparse kernels:
  https://github.com/linxihui/dkernel; Dao, "FlashAttention-2", 2023, https://arxiv.org/abs/2307.08691.
"""

from jaxdyn.attention._icl import (
    ICLBatch,
    ICLTrainResult,
    bayes_predict,
    debiased_gd_predict,
    fit_debiased_gd_step,
    fit_linear_attention_step,
    icl_attention,
    icl_loss,
    icl_tokens,
    implied_gd_step,
    init_icl_attention,
    kq_diagonal,
    linear_attention_predict,
    ov_last_entry,
    r_squared,
    ridge_predict,
    sample_tasks,
    train_icl,
)
from jaxdyn.attention._kernel import IMPLEMENTATIONS, PRECISIONS, block_sparse_attention, dense_masked_attention
from jaxdyn.attention._longgen import (
    PLACEMENTS,
    SPARSE_IMPLEMENTATIONS,
    hybrid_attention_fns,
    hybrid_cache,
    hybrid_cache_sizes,
    kv_cache_bytes,
    layer_plan,
    sink_window_attention,
)
from jaxdyn.attention._patterns import (
    PATTERNS,
    block_layout,
    block_sparse_mask,
    causal_mask,
    layout_indices,
    sink_window_mask,
    sliding_window_mask,
)

__all__ = [
    "ICLBatch",
    "ICLTrainResult",
    "IMPLEMENTATIONS",
    "PRECISIONS",
    "PATTERNS",
    "PLACEMENTS",
    "SPARSE_IMPLEMENTATIONS",
    "bayes_predict",
    "block_layout",
    "block_sparse_attention",
    "block_sparse_mask",
    "causal_mask",
    "debiased_gd_predict",
    "dense_masked_attention",
    "fit_debiased_gd_step",
    "fit_linear_attention_step",
    "hybrid_attention_fns",
    "hybrid_cache",
    "hybrid_cache_sizes",
    "icl_attention",
    "icl_loss",
    "icl_tokens",
    "implied_gd_step",
    "init_icl_attention",
    "kq_diagonal",
    "kv_cache_bytes",
    "layer_plan",
    "layout_indices",
    "linear_attention_predict",
    "ov_last_entry",
    "r_squared",
    "ridge_predict",
    "sample_tasks",
    "sink_window_attention",
    "sink_window_mask",
    "sliding_window_mask",
    "train_icl",
]
