"""Language-model data and objectives: dataset decomposition, MeCo, self-generated tokens, repository
context, masked-span objectives and noise-aware training, on byte-level token documents.

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
- `repo_proposals`, `Proposal`, `REPO_KINDS`, `parse_imports`, `completion_lines`, `split_at_point`,
  `encode_completion`, `RepoExample`: repository context for single-line completion (RepoFusion, Shrivastava
  et al., https://arxiv.org/abs/2306.10998): proposals from imported, sibling and similarly named files and
  the prior lines, cut to budgets, concatenated for a decoder-only model with the loss on the target line.
- `bidirectional_attention`, `random_selection`, `adversarial_selection`, `corrupt`, `MaskedTokens`, `mlm_loss`,
  `masker_loss`, `update_mask_book`, `mask_fine_tuning`: Adversarial-MidiBERT (Zhao, https://arxiv.org/abs/2407.08306):
  a BERT-style encoder's 80/10/10 masking, the masker's adversarial top-k selection and regression loss, the
  mask book that keeps context-free (bias-carrying) tokens out of masking, and mask fine-tuning.
- `salient_spans`, `choose_spans`, `mask_spans`, `unmask`, `MaskedText`, `LexicalRetriever`, `span_curriculum`,
  `ramp_example`, `RampExample`, `span_exact_match`, `MASK_ID`, `RAMP_VOCAB_SIZE`, `SPAN_KINDS`: MaskSearch's
  retrieval-augmented mask prediction (Wu et al., https://arxiv.org/abs/2505.20285): salient spans of source
  code masked, TF-IDF retrieved passages (own document excluded), the curriculum over the span count.
- `confidence_weighted_cross_entropy`, `label_confidence`, `calibrate_temperature`, `identifier_kinds`,
  `weak_identifier_kinds`, `identifier_task`, `IdentifierTask`, `IDENTIFIER_KINDS`: Noise-Aware Training (Sarkhel
  et al., https://arxiv.org/abs/2404.00488): weak labels' cross-entropy weighted by an annotator's (calibrated)
  confidence, and identifier kinds in Python source, exact (`ast`) and from a noisy regex heuristic.

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
from jaxdyn.text import _adversarial_masking, _masksearch, _meco, _nat, _repo_context, _self_generated
from jaxdyn.text._adversarial_masking import *  # noqa: F403  (Adversarial-MidiBERT)
from jaxdyn.text._masksearch import *  # noqa: F403  (MaskSearch's RAMP)
from jaxdyn.text._nat import *  # noqa: F403  (Noise-Aware Training)
from jaxdyn.text._repo_context import *  # noqa: F403  (RepoFusion repository context)
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
    *_repo_context.__all__,
    *_adversarial_masking.__all__,
    *_masksearch.__all__,
    *_nat.__all__,
]
