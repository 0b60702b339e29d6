"""README's framework examples run as written (each block marked ``<!-- tested ... -->``)."""

import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"<!-- tested[^>]*-->\s*```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_the_linen_and_equinox_examples():
  assert len(BLOCKS) == 2
  assert "flax.linen" in BLOCKS[0] and "equinox" in BLOCKS[1]


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=["linen", "equinox"][:len(BLOCKS)])
def test_readme_example_runs_and_learns(index):
  namespace = {}
  exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)  # pylint: disable=exec-used
  if index == 0:  # 50 Adam steps on 32 examples: the multi-sample dropout loss falls well below log(10)
    assert float(namespace["loss"]) < 0.5 * np.log(10)
  else:  # the Equinox MLP fits its 32 examples
    assert float(namespace["metrics"]["accuracy"]) > 0.9
    assert 0.0 <= float(namespace["metrics"]["ece"]) <= 1.0
