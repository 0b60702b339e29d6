"""Checks and executes the notebooks in ``colabs/`` on CPU with small settings.

Each notebook is a jupytext percent-format ``colabs/<name>.py`` paired with ``colabs/<name>.ipynb``
(``formats: ipynb,py:percent`` in both; the ``.ipynb`` is what "Open in Colab" loads, so it carries
no outputs or execution counts). After editing either file, ``jupytext --sync colabs/<name>.py``
brings the other up to date; ``jupyter nbconvert --clear-output --inplace colabs/<name>.ipynb`` strips
a notebook saved with outputs.

``make notebooks`` checks every pair (`pair_problems`) and executes every ``.ipynb``;
``python -m experiments.notebooks colabs/<name>.py`` (or ``.ipynb``) executes one.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
COLABS = REPO / "colabs"
FORMATS = "ipynb,py:percent"
SYNC_HINT = "run `jupytext --sync colabs/<name>.py` (or `.ipynb`, whichever you edited last)"


def runtime_settings() -> bool:
  """The notebooks' runtime cell: prints jax's backend and devices and returns SMALL.

  SMALL (small settings) is ``JAXDYN_NOTEBOOK_SMALL`` when set ("1" or "0"), else True on CPU and
  False on a GPU or TPU. On CPU it also prints a framed warning and raises a `RuntimeWarning` that
  says how to pick an accelerator in Colab.
  """
  import textwrap  # pylint: disable=g-import-not-at-top
  import warnings  # pylint: disable=g-import-not-at-top

  import jax  # pylint: disable=g-import-not-at-top

  backend = jax.default_backend()
  print(f"jax {jax.__version__}, backend: {backend}, devices: {jax.devices()}")
  small = os.environ.get("JAXDYN_NOTEBOOK_SMALL", "1" if backend == "cpu" else "0") == "1"
  if backend == "cpu":
    message = (f"No GPU or TPU: jax runs on CPU, with this notebook's {'small' if small else 'full'} "
               "settings. In Colab: Runtime > Change runtime type > Hardware accelerator: a GPU "
               "(e.g. T4) or a TPU > Save, then Runtime > Run all.")
    print("\n".join(["!" * 80, *textwrap.wrap("WARNING: " + message, 80), "!" * 80]))
    warnings.warn(message, RuntimeWarning, stacklevel=2)
  return small


def notebooks() -> list[pathlib.Path]:
  """The percent-format ``.py`` of every notebook in ``colabs/``."""
  return sorted(COLABS.glob("*.py"))


def pair_problems(py: str | os.PathLike) -> list[str]:
  """What is wrong with the pairing of ``py`` and its ``.ipynb``: empty when they are in sync.

  The ``.ipynb`` must exist, both must declare ``formats: ipynb,py:percent``, their cells must have the
  same types and sources (both read with jupytext), and the ``.ipynb`` must carry no outputs and no
  execution counts.
  """
  import jupytext  # pylint: disable=g-import-not-at-top

  py = pathlib.Path(py)
  ipynb = py.with_suffix(".ipynb")
  if not ipynb.exists():
    return [f"{py.name}: no paired {ipynb.name}; create it with "
            f"`jupytext --set-formats {FORMATS} colabs/{py.name}`"]
  problems = []
  text_nb, ipynb_nb = jupytext.read(py), jupytext.read(ipynb)
  for name, nb in ((py.name, text_nb), (ipynb.name, ipynb_nb)):
    formats = nb.metadata.get("jupytext", {}).get("formats")
    if formats != FORMATS:
      problems.append(f"{name}: jupytext formats is {formats!r}, not {FORMATS!r}; "
                      f"run `jupytext --set-formats {FORMATS} colabs/{py.name}`")
  a = [(c.cell_type, c.source) for c in text_nb.cells]
  b = [(c.cell_type, c.source) for c in ipynb_nb.cells]
  for i, (ca, cb) in enumerate(zip(a, b)):
    if ca != cb:
      la, lb = ca[1].splitlines(), cb[1].splitlines()
      j = next((j for j, (x, y) in enumerate(zip(la, lb)) if x != y), min(len(la), len(lb)))
      line_a, line_b = (repr(ls[j]) if j < len(ls) else "(no line)" for ls in (la, lb))
      problems.append(f"{py.name} and {ipynb.name} differ at cell {i} ({ca[0]} / {cb[0]}), line {j + 1}: "
                      f"{line_a} / {line_b}; {SYNC_HINT}")
      break
  if len(a) != len(b):
    problems.append(f"{py.name} has {len(a)} cells, {ipynb.name} {len(b)}; {SYNC_HINT}")
  raw = json.loads(ipynb.read_text())  # the file as Colab loads it
  clear = f"jupyter nbconvert --clear-output --inplace colabs/{ipynb.name}"
  for i, cell in enumerate(raw.get("cells", [])):
    if cell.get("outputs"):
      problems.append(f"{ipynb.name}: cell {i} has outputs; clear them: {clear}")
    if cell.get("execution_count") is not None:
      problems.append(f"{ipynb.name}: cell {i} has an execution count; clear it: {clear}")
  return problems


def execute(path: str | os.PathLike, *, timeout: int = 600) -> None:
  """Runs every cell of the notebook at ``path`` (``.ipynb`` or ``.py``) with small settings, from the
  repository root (a checkout: the notebook's setup cell does nothing); raises on the first failing cell.
  """
  import jupytext  # pylint: disable=g-import-not-at-top
  import nbclient  # pylint: disable=g-import-not-at-top

  nb = jupytext.read(path)
  env = {**os.environ, "JAXDYN_NOTEBOOK_SMALL": "1", "MPLBACKEND": "Agg",
         "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
  client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                   resources={"metadata": {"path": str(REPO)}})
  client.execute(env=env)  # the kernel's environment


def main(argv: list[str]) -> int:
  if argv[1:]:
    paths = argv[1:]
  else:  # everything: the pairs first, then the .ipynb files (the code a Colab user runs)
    problems = [p for py in notebooks() for p in pair_problems(py)]
    if problems:
      print("\n".join(problems), file=sys.stderr)
      return 1
    paths = [str(py.with_suffix(".ipynb")) for py in notebooks()]
  for p in paths:
    t = time.monotonic()
    execute(p)
    print(f"ok  {p}  ({time.monotonic() - t:.0f} s)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
