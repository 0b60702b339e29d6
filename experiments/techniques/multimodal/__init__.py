"""Vision-language and vision-data techniques in the harness (`jaxdyn.multimodal`), one module per technique.

Every module of this package is imported here (each registers its pieces on import).
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if not _info.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_info.name}")
