"""Diffusion in the harness, one module per technique of `jaxdyn.diffusion`.

- ``micro``: micro-budget diffusion (deferred masking with a patch-mixer) on digits, a claim ``runner``
  (`micro_runner`): no harness piece is registered (the loop trains classifiers; this trains a denoiser).
- ``erw``: Embedded Representation Warmup against a plain DiT (`erw_runner`); its encoder is a ViT digits
  classifier trained by the harness (`configs/vit_digits_encoder.py`) and restored by path (`load_encoder`).
- ``harmonica``: HarmoniCa's learned cache router against the fixed-interval cache and no cache, on one
  trained DiT per seed (`harmonica_runner`).

Every module of this package is imported here (each registers its pieces on import).
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if not _info.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_info.name}")
