"""Post-training in the harness (`jaxdyn.rl`), one module per technique.

- ``addition``: the addition task's SFT stage, sampling, GRPO step and evaluation, shared by the runners.
- ``objective``: the ``"grpo"`` harness objective: GRPO on a classifier's sampled labels with the 0/1 reward.
- ``hapo``: HAPO against correctness-only GRPO from one SFT policy on multi-digit addition
  (`hapo_runner`), a claim runner.
- ``drift``: the ``"probe_drift"`` callback: any harness run's choices on a fixed probe set across
  checkpoints, reduced by `jaxdyn.rl.value_drift`.
- ``mstar``: M-STaR's self-evolving loop at a fixed or an automatically balanced temperature (`mstar_runner`).
- ``tomap``: ToMAP's persuader with and without the stance predictor on the toy dialogue game (`tomap_runner`).
- ``score``: SCoRe (stage I, then stage II) against SFT on correction traces from one two-turn base policy
  (`score_runner`).

Every module of this package is imported here (each registers its pieces on import).
"""

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if not _info.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_info.name}")
