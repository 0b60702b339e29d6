"""The top-level package: its families load on first use, and every docstring example runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import jaxdyn

MODULES = sorted(m.name for m in pkgutil.walk_packages(jaxdyn.__path__, prefix="jaxdyn."))


def test_modules_found():
  assert len(MODULES) > 20, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  finder = doctest.DocTestFinder(exclude_empty=True)
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  for test in finder.find(module, name):
    if test.filename and not test.filename.endswith(module.__file__.rsplit("/", 1)[-1]):
      continue  # an object imported from another module is tested there
    runner.run(test)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_families_load_lazily_from_the_top_level():
  assert jaxdyn.__version__
  assert jaxdyn.snn.lif_step is importlib.import_module("jaxdyn.snn").lif_step
  assert set(jaxdyn.FAMILIES) <= set(dir(jaxdyn))
  with pytest.raises(AttributeError, match="families"):
    jaxdyn.not_a_family  # noqa: B018
