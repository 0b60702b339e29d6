"""Executes the notebooks in ``colabs/`` (jupytext percent-format ``.py``) on CPU with small settings.

``make notebooks`` runs them all; ``python -m experiments.notebooks colabs/<name>.py`` runs one.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


def execute(path: str | os.PathLike, *, timeout: int = 600) -> None:
  """Runs every cell of the notebook at ``path``; raises on the first failing cell."""
  import jupytext  # pylint: disable=g-import-not-at-top
  import nbclient  # pylint: disable=g-import-not-at-top

  nb = jupytext.read(path)
  os.environ["JAXDYN_NOTEBOOK_SMALL"] = "1"
  os.environ["MPLBACKEND"] = "Agg"
  os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
  client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                   resources={"metadata": {"path": str(REPO)}})
  client.execute()


def main(argv: list[str]) -> int:
  paths = argv[1:] or sorted(str(p) for p in (REPO / "colabs").glob("*.py"))
  for p in paths:
    t = time.monotonic()
    execute(p)
    print(f"ok  {p}  ({time.monotonic() - t:.0f} s)", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
