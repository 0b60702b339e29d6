"""Transformer training schemes in the harness, one module per technique of `jaxdyn.schemes`.

- ``ewa``: Experts Weights Averaging (model ``vit_moe``, transform ``ewa``, capability ``moe``).

Every module of this package is imported here (each registers its pieces on import).
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if not _info.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_info.name}")
