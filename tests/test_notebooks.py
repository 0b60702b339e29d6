"""Every notebook in colabs/ executes on CPU with small settings."""

import pathlib

import pytest

from experiments import notebooks

NOTEBOOKS = sorted(pathlib.Path(notebooks.REPO, "colabs").glob("*.py"))


def test_there_are_notebooks():
  assert any(p.name == "quickstart.py" for p in NOTEBOOKS)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path):
  notebooks.execute(path)
