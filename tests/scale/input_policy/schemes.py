"""Input-policy declarations for `jaxdyn.schemes` (the vocabulary is in ``spec.py``).

Each technique declares its own in ``_schemes_<technique>.py`` beside this file (Experts Weights
Averaging in ``_schemes_ewa.py``); every such module is merged here.
"""

from __future__ import annotations

import importlib
import pathlib

from tests.scale.input_policy.spec import Case, Spec

CASES: list[Case] = []
SPECS: list[Spec] = []
EXEMPT: dict[str, str] = {}
for _path in sorted(pathlib.Path(__file__).parent.glob("_schemes_*.py")):
  _mod = importlib.import_module(f"tests.scale.input_policy.{_path.stem}")
  CASES.extend(_mod.CASES)
  SPECS.extend(_mod.SPECS)
  EXEMPT.update(_mod.EXEMPT)
