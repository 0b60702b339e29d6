"""Post-training in the harness (`jaxdyn.rl`), one module per technique.

- ``addition``: the addition task's SFT stage, sampling, GRPO step and evaluation, shared by the runners.
- ``hapo``: HAPO against correctness-only GRPO from one SFT policy on multi-digit addition
  (`hapo_runner`), a claim runner.
- ``drift``: the ``"probe_drift"`` callback: any harness run's choices on a fixed probe set across
  checkpoints, reduced by `jaxdyn.rl.value_drift`.

Every module of this package is imported here (each registers its pieces on import).
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if not _info.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_info.name}")
