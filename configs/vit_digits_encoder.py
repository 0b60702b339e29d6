"""A small ViT trained as a digits classifier: the pretrained encoder of ERW's claim (`configs/erw_digits.py`).

    python -m experiments.main --config=configs/vit_digits_encoder.py --workdir=runs/vit_digits_encoder

An ordinary harness run: `jaxdyn.models.ViT` with 2x2 patches on scikit-learn's 8x8 digits (16 patch tokens +
the class token, width 64, 4 blocks, 4 heads, MLP ratio 2), Adam 1e-3 (cosine), batch 128, 400 steps, one
orbax checkpoint at the end. `experiments.techniques.diffusion.erw.load_encoder(workdir)` restores its
parameters from the workdir's checkpoint folder by path and returns images -> final-normed patch tokens
``(B, 16, 64)``, the frozen targets of ERW's alignment (as ERW aligns to DINOv2's ``x_norm_patchtokens``).
No claim of its own.
"""

from configs import default

NUM_STEPS = 400


def get_config():
  c = default.get_config()
  c.dataset = "digits"
  c.model = "vit"
  c.model_kwargs = {"patch_size": 2, "dim": 64, "depth": 4, "num_heads": 4, "mlp_ratio": 2, "dropout_rate": 0.0}
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "cosine"
  c.batch_size = 128
  c.num_train_steps = NUM_STEPS
  c.log_every_steps = 100
  c.eval_every_steps = NUM_STEPS
  c.checkpoint_every_steps = NUM_STEPS
  return c
