"""Object detection in the harness, one module per technique of `jaxdyn.detection`.

- ``scenes``: the claim runner that trains `jaxdyn.models.TinyDetector` on `jaxdyn.detection.synthetic_scenes`
  with ATSS or IoU-threshold assignment (a jitted step of its own, not the classification loop) and
  returns COCO-style AP on held-out scenes.
- ``hop``: the claim runner that trains `jaxdyn.models.TemporalDetector` on
  `jaxdyn.detection.synthetic_sequences` with or without the historical-object-prediction branch and returns
  COCO-style AP at the last frame with the inference path only, and its inference FLOPs.

Every module of this package is imported here (each registers its pieces on import).
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if not _info.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_info.name}")
