"""The notebooks in colabs/: paired and stripped, one shared setup and runtime cell, and each executes
on CPU with small settings (the .ipynb, the code "Open in Colab" runs)."""

import importlib.metadata
import importlib.util
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib
import warnings

import jupytext
import pytest

from experiments import notebooks

NOTEBOOKS = notebooks.notebooks()
IDS = [p.stem for p in NOTEBOOKS]
SETUP = "# Setup."  # the first line of the shared setup cell (install outside a checkout)
RUNTIME = "# Runtime."  # the first line of the shared runtime cell (backend, CPU warning, SMALL)


def code_cells(path):
  return [c.source for c in jupytext.read(path).cells if c.cell_type == "code"]


def shared_cell(path, marker):
  cells = [s for s in code_cells(path) if s.startswith(marker)]
  assert len(cells) == 1, f"{path.name}: {len(cells)} code cells start with {marker!r}, expected 1"
  return cells[0]


def test_there_are_notebooks():
  assert any(p.name == "quickstart.py" for p in NOTEBOOKS)


def test_every_ipynb_has_its_py():
  assert sorted(p.with_suffix(".py") for p in notebooks.COLABS.glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_paired_in_sync_and_stripped(path):
  assert not notebooks.pair_problems(path), "\n".join(notebooks.pair_problems(path))


def _write_pair(tmp_path, cells, *, outputs=False):
  nb = jupytext.reads("\n\n".join(f"# %%\n{c}" for c in cells), fmt="py:percent")
  nb.metadata["jupytext"] = {"formats": notebooks.FORMATS}
  py = tmp_path / "nb.py"
  jupytext.write(nb, py, fmt="py:percent")
  jupytext.write(nb, py.with_suffix(".ipynb"))
  if outputs:
    raw = json.loads(py.with_suffix(".ipynb").read_text())
    raw["cells"][0]["execution_count"] = 1
    raw["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}]
    py.with_suffix(".ipynb").write_text(json.dumps(raw))
  return py


def test_pair_problems_finds_each_fault(tmp_path):
  py = _write_pair(tmp_path, ["x = 1", "print(x)"])
  assert notebooks.pair_problems(py) == []
  # A cell edited in the .py only.
  py.write_text(py.read_text().replace("print(x)", "print(x + 1)"))
  assert any("differ at cell 1" in p for p in notebooks.pair_problems(py))
  # A cell added in the .py only.
  py.write_text(py.read_text() + "\n# %%\ny = 2\n")
  assert any("3 cells" in p for p in notebooks.pair_problems(py))
  # Outputs and execution counts left in the .ipynb.
  py = _write_pair(tmp_path, ["x = 1", "print(x)"], outputs=True)
  problems = notebooks.pair_problems(py)
  assert any("has outputs" in p for p in problems) and any("execution count" in p for p in problems)
  # The .py pairs with nothing, or is not declared as paired.
  py.with_suffix(".ipynb").unlink()
  assert "no paired nb.ipynb" in notebooks.pair_problems(py)[0]
  py = _write_pair(tmp_path, ["x = 1"])
  py.write_text(py.read_text().replace("formats: ipynb,py:percent", "formats: py:percent"))
  assert any("formats" in p for p in notebooks.pair_problems(py))


def test_every_notebook_shares_the_setup_and_runtime_cells():
  for marker in (SETUP, RUNTIME):
    cells = {p.name: shared_cell(p, marker) for p in NOTEBOOKS}
    first = cells[NOTEBOOKS[0].name]
    differ = sorted(name for name, c in cells.items() if c != first)
    assert not differ, f"the {marker!r} cell of {differ} differs from {NOTEBOOKS[0].name}'s: copy it"
  for p in NOTEBOOKS:  # the setup cell comes before anything imports jaxdyn, configs or experiments
    assert code_cells(p)[0].startswith(SETUP), p.name


def test_setup_cell_clones_the_repository_of_pyproject():
  url = tomllib.loads((notebooks.REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
  assert f'JAXDYN_REPO = "{url}"' in shared_cell(NOTEBOOKS[0], SETUP)


def _run_setup_cell(monkeypatch, tmp_path, *, in_checkout, pip_returncode=0):
  """Executes the setup cell with `subprocess.run` recorded (git and pip are not run)."""
  calls = []

  def fake_run(argv, **kwargs):
    calls.append(list(argv))
    if argv[:2] == ["git", "clone"]:
      pathlib.Path(argv[-1]).mkdir()
    returncode = pip_returncode if "pip" in argv else 0
    return subprocess.CompletedProcess(argv, returncode, "", "pip: conflict on jax")

  find_spec = importlib.util.find_spec
  monkeypatch.setattr(subprocess, "run", fake_run)
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
  monkeypatch.setattr(sys, "path", list(sys.path))
  monkeypatch.delitem(sys.modules, "google.colab", raising=False)
  monkeypatch.chdir(tmp_path)
  if in_checkout:
    monkeypatch.syspath_prepend(str(notebooks.REPO))
  else:
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("configs", "experiments") else find_spec(name, *a))
  exec(shared_cell(NOTEBOOKS[0], SETUP), {"__name__": "__main__"})  # pylint: disable=exec-used
  return calls


def test_setup_cell_does_nothing_in_a_checkout(monkeypatch, tmp_path):
  assert _run_setup_cell(monkeypatch, tmp_path, in_checkout=True) == []


def test_setup_cell_outside_a_checkout_installs_with_the_runtimes_jax_pinned(monkeypatch, tmp_path):
  calls = _run_setup_cell(monkeypatch, tmp_path, in_checkout=False)
  checkout = str(tmp_path / "jaxdyn")  # outside Colab: a temporary folder
  clone, pip = calls
  assert clone[:2] == ["git", "clone"] and "--depth=1" in clone and clone[-2:] == [
      "https://github.com/jaxdyn/jaxdyn", checkout]
  assert pip[:4] == [sys.executable, "-m", "pip", "install"] and pip[-1] == checkout
  pins = pathlib.Path(pip[pip.index("-c") + 1]).read_text().split()
  for name in ("jax", "jaxlib"):
    assert f"{name}=={importlib.metadata.version(name)}" in pins
  accelerator = r"(jax|jaxlib|jax-(cuda|rocm)\d*-(plugin|pjrt)|libtpu.*)==\S+"
  assert all(re.fullmatch(accelerator, p.lower().replace("_", "-")) for p in pins), pins  # not jaxtyping, ...
  assert pathlib.Path.cwd() == pathlib.Path(checkout) and sys.path[0] == checkout
  # Run again (a restarted runtime): the checkout is reused, not cloned again.
  monkeypatch.chdir(tmp_path)
  calls = _run_setup_cell(monkeypatch, tmp_path, in_checkout=False)
  assert [c[:3] for c in calls] == [[sys.executable, "-m", "pip"]]


def test_setup_cell_says_why_when_pip_refuses(monkeypatch, tmp_path):
  message = (r"(?s)with this runtime's jax==.* kept as they are.*older than jaxdyn needs.*"
             r"pip said:\npip: conflict on jax")  # the header, then pip's own words
  with pytest.raises(RuntimeError, match=message):
    _run_setup_cell(monkeypatch, tmp_path, in_checkout=False, pip_returncode=1)


@pytest.mark.parametrize("backend, env, small", [("cpu", None, True), ("cpu", "1", True), ("cpu", "0", False),
                                                  ("gpu", None, False), ("tpu", "1", True)])
def test_runtime_cell_warns_on_cpu_and_picks_the_small_settings(monkeypatch, capsys, backend, env, small):
  import jax  # pylint: disable=g-import-not-at-top
  # The cell reads jax.default_backend(): pin it, so both branches run on any machine.
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  if env is None:
    monkeypatch.delenv("JAXDYN_NOTEBOOK_SMALL", raising=False)
  else:
    monkeypatch.setenv("JAXDYN_NOTEBOOK_SMALL", env)
  namespace = {"__name__": "__main__"}
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    exec(shared_cell(NOTEBOOKS[0], RUNTIME), namespace)  # pylint: disable=exec-used (the cell as shipped)
  assert namespace["SMALL"] is small
  out = capsys.readouterr().out
  assert f"backend: {backend}" in out and "devices:" in out
  cpu_warnings = [str(w.message) for w in caught
                  if issubclass(w.category, RuntimeWarning) and "jax runs on CPU" in str(w.message)]
  if backend == "cpu":
    assert len(cpu_warnings) == 1 and "Runtime > Change runtime type" in cpu_warnings[0]
    assert "WARNING: No GPU or TPU" in out
    assert ("small settings" in cpu_warnings[0]) is small
  else:  # an accelerator: no warning, full settings unless asked for small ones
    assert not cpu_warnings and "WARNING" not in out


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_executes(path):
  notebooks.execute(path.with_suffix(".ipynb"))
