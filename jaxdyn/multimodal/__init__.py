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

__all__: list[str] = []
