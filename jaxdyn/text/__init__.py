"""Language-model data: dataset decomposition, its variable-sequence-length curriculum, concat-and-chunk.

- `decompose`, `Decomposition`, `BucketSource`: the binary decomposition of documents into buckets of
  ``2^k``-token chunks, each from one document, and a random-access source per bucket.
- `VSLSampler`, `curriculum_odds`, `dd_dataset`: batches of constant tokens per step with a length
  curriculum (Grow-P2, Grow-Linear, Uniform, Shrink-P2) over cycles, checkpointable; as a grain dataset.
- `concat_and_chunk`, `PackedBatch`: the baseline, with per-document segment ids and positions for the
  Transformer's document-boundary mask (`jaxdyn.models.Transformer(..., segment_ids=...)`).
- `attention_flops`, `segment_lengths`: attention cost per step of either.

Corpora (the Python standard library's sources, synthetic documents) are in `jaxdyn.data`.

Reference: Pouransari et al., "Dataset Decomposition: Faster LLM Training with Variable Sequence Length
Curriculum", NeurIPS 2024. https://arxiv.org/abs/2405.13226
"""

from jaxdyn.text._decomposition import (
    CURRICULA,
    BucketSource,
    Decomposition,
    PackedBatch,
    VSLSampler,
    attention_flops,
    concat_and_chunk,
    curriculum_odds,
    dd_dataset,
    decompose,
    segment_lengths,
)

__all__ = [
    "CURRICULA",
    "BucketSource",
    "Decomposition",
    "PackedBatch",
    "VSLSampler",
    "attention_flops",
    "concat_and_chunk",
    "curriculum_odds",
    "dd_dataset",
    "decompose",
    "segment_lengths",
]
