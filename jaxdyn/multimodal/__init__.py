"""Vision-language and vision-data techniques.

- CLIP's symmetric InfoNCE loss with a learnable temperature, batch-sharded, zero-shot classification and
  retrieval metrics; LaCLIP's caption rewrites (Fan et al., NeurIPS 2023).
- PRIOR's token weighting from a caption-only reference LM (Prioritizing Image-Related Tokens, 2025).
- Visual stitching: (patch, ID) data at several granularities and the ID-naming measurement (Zhou et al.,
  2025, "VLMs Can Aggregate Scattered Training Patches").
- CTVIS's contrastive items built the inference way: momentum-averaged embeddings, a memory bank, noise
  (Ying et al., ICCV 2023).
- Crafted distribution shifts for validation and training in single-source domain generalization
  (Efthymiadis et al., 2024).

Each technique lives in its own private module and is re-exported here.
"""

from jaxdyn.multimodal._clip import (
    clip_logit_scale,
    clip_loss,
    clip_recall_at_k,
    clip_zero_shot_accuracy,
    clip_zero_shot_prompts,
    clip_zero_shot_scores,
    clip_zero_shot_weights,
)
from jaxdyn.multimodal._crafted_shifts import (
    CRAFTED_FAMILIES,
    CRAFTED_FAMILY_OPERATIONS,
    crafted_augment,
    crafted_edge_map,
    crafted_folds,
    crafted_sobel_magnitude,
    crafted_thin_edges,
    crafted_validation_set,
)
from jaxdyn.multimodal._ctvis import (
    CtvisItems,
    CtvisMemory,
    ctvis_associate,
    ctvis_contrastive_items,
    ctvis_contrastive_loss,
    ctvis_memory_init,
    ctvis_memory_update,
    ctvis_noise,
    ctvis_pseudo_video,
    ctvis_reference_items,
    ctvis_track,
)
from jaxdyn.multimodal._laclip import (
    LaclipTextSampler,
    LaclipVariants,
    laclip_choose,
    laclip_pipeline,
    laclip_variants,
)
from jaxdyn.multimodal._prior import prior_loss, prior_token_weights
from jaxdyn.multimodal._stitching import (
    ID_WORDS,
    StitchingResult,
    stitching_id_texts,
    stitching_ids,
    stitching_measure,
    stitching_patches,
    stitching_ranks,
)

__all__: list[str] = [
    "CRAFTED_FAMILIES",
    "CRAFTED_FAMILY_OPERATIONS",
    "CtvisItems",
    "CtvisMemory",
    "ID_WORDS",
    "LaclipTextSampler",
    "LaclipVariants",
    "StitchingResult",
    "clip_logit_scale",
    "clip_loss",
    "clip_recall_at_k",
    "clip_zero_shot_accuracy",
    "clip_zero_shot_prompts",
    "clip_zero_shot_scores",
    "clip_zero_shot_weights",
    "crafted_augment",
    "crafted_edge_map",
    "crafted_folds",
    "crafted_sobel_magnitude",
    "crafted_thin_edges",
    "crafted_validation_set",
    "ctvis_associate",
    "ctvis_contrastive_items",
    "ctvis_contrastive_loss",
    "ctvis_memory_init",
    "ctvis_memory_update",
    "ctvis_noise",
    "ctvis_pseudo_video",
    "ctvis_reference_items",
    "ctvis_track",
    "laclip_choose",
    "laclip_pipeline",
    "laclip_variants",
    "prior_loss",
    "prior_token_weights",
    "stitching_id_texts",
    "stitching_ids",
    "stitching_measure",
    "stitching_patches",
    "stitching_ranks",
]
