"""Language-model data: dataset decomposition, its variable-sequence-length curriculum, concat-and-chunk.

- `decompose`, `Decomposition`, `BucketSource`: the binary decomposition of documents into buckets of
  ``2^k``-token chunks, each from one document, and a random-access source per bucket.
- `VSLSampler`, `curriculum_odds`, `dd_dataset`: batches of constant tokens per step with a length
  curriculum (Grow-P2, Grow-Linear, Uniform, Shrink-P2) over cycles, checkpointable; as a grain dataset.
- `concat_and_chunk`, `PackedBatch`: the baseline, with per-document segment ids and positions for the
  Transformer's document-boundary mask (`jaxdyn.models.Transformer(..., segment_ids=...)`).
- `attention_flops`, `segment_lengths`: attention cost per step of either.
- `metadata_prefix`, `meco_document`, `meco_pack`, `MecoBatch`, `meco_switch_step`, `meco_conditioned`,
  `meco_prompt`: MeCo (Gao et al., https://arxiv.org/abs/2501.01956): metadata prefixes excluded from the
  loss, the plain-text cooldown, conditional inference.
- `self_generated_inputs`, `SelfGenerated`, `sampling_probability`, `correction_sequence`: self-generated
  tokens (Cen et al., https://arxiv.org/abs/2410.14655): Batch-Scheduled Sampling and the
  Reference-Answer-based Correction layout.

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
from jaxdyn.text import _meco, _self_generated
from jaxdyn.text._meco import (
    MecoBatch,
    meco_conditioned,
    meco_document,
    meco_pack,
    meco_prompt,
    meco_switch_step,
    metadata_prefix,
)
from jaxdyn.text._self_generated import SelfGenerated, correction_sequence, sampling_probability, self_generated_inputs

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
    *_meco.__all__,
    *_self_generated.__all__,
]
