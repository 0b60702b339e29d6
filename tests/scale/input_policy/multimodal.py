"""Input-policy declarations for `jaxdyn.multimodal` (the vocabulary is in ``spec.py``).

Each technique declares its callables in its own ``_multimodal_<technique>.py`` beside this file; they are
merged here.
"""

from __future__ import annotations

import importlib as _importlib
import pathlib as _pathlib

from tests.scale.input_policy.spec import Case, Spec

CASES: list[Case] = []
SPECS: list[Spec] = []
EXEMPT: dict[str, str] = {}

for _path in sorted(_pathlib.Path(__file__).parent.glob("_multimodal_*.py")):
  _mod = _importlib.import_module(f"tests.scale.input_policy.{_path.stem}")
  CASES.extend(_mod.CASES)
  SPECS.extend(_mod.SPECS)
  EXEMPT.update(_mod.EXEMPT)
