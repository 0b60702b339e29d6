"""Memory-saving training: the Mesa ViT, MEMO-style plans for the decoder, the frozen-spatial ViViT.

- `mesa`: the Mesa ViT is the ``vit`` model with ``model_kwargs.mesa=True`` (nothing new to register);
  its memory comes from the ``train_step_memory`` callback.
- `plans`: the claim runner of ``configs/memo_plans.py`` (longest sequence per device budget, run in a
  subprocess on forced CPU devices); it registers nothing.
- `vivit`: the ``vivit`` model, the ``freeze_spatial`` transform, the ``step_time`` callback and the
  claim runner with the spatial pre-training.
"""

from experiments.techniques.memory import mesa, plans, vivit  # noqa: F401  (vivit registers on import)
