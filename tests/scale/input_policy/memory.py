"""Input-policy declarations for `jaxdyn.memory` (the vocabulary is in ``spec.py``).

Mesa, the offload/recompute plans and the ViViT scheme declare theirs in ``_memory_mesa.py``,
``_memory_plans.py`` and ``_memory_vivit.py`` beside this file; they are merged here.
"""

from __future__ import annotations

import importlib

from tests.scale.input_policy.spec import Case, Spec

CASES: list[Case] = []
SPECS: list[Spec] = []
EXEMPT: dict[str, str] = {}
for _sub in ("_memory_mesa", "_memory_plans", "_memory_vivit"):
  _mod = importlib.import_module(f"tests.scale.input_policy.{_sub}")
  CASES.extend(_mod.CASES)
  SPECS.extend(_mod.SPECS)
  EXEMPT.update(_mod.EXEMPT)
