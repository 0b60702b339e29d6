"""Transformer training schemes in the harness, one module per technique of `jaxdyn.schemes`.

- ``ewa``: Experts Weights Averaging (model ``vit_moe``, transform ``ewa``, capability ``moe``).
- ``sortednet``: SortedNet (models ``sorted_mlp`` and ``sorted_vit``, objective ``sortednet``, callback
  ``submodel_eval``, capability ``sortable``).
- ``delta``: delta activation layers (model ``delta_tcn``, objective ``delta_ce``, callback
  ``delta_eval``, capability ``delta_layers``).

Hecate FSSDP has no harness piece: `benchmarks/moe_sharding.py` measures it.

Every module of this package is imported here (each registers its pieces on import).
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if not _info.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_info.name}")
