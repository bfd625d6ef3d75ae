"""Run notebooks top to bottom in this Python's kernel, writing their outputs back into them.

    python notebooks/execute.py                    # every notebook here, on the real checkpoints and CSVs
    python notebooks/execute.py --tiny quickstart.ipynb   # CI's tiny configuration, outputs not written

``--tiny`` sets DEFENSE_HGAN_NOTEBOOK_TINY=1 in the kernel: tiny untrained
models and random images, so no checkpoint, CSV or data set is needed.
Needs nbclient, nbformat and ipykernel (the dev extra).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ("quickstart.ipynb", "sweep_figures.ipynb")
TINY = "DEFENSE_HGAN_NOTEBOOK_TINY"
KERNEL = "defense-hgan-python"


def execute(path: str | os.PathLike, *, tiny: bool = False, write: bool = True, timeout: int = 1800):
    """Execute one notebook (cwd: its folder; ``timeout`` seconds per cell); return it, executed.

    The kernel is this interpreter, named by a kernelspec made for the run, so
    no other installed "python3" kernel can be picked up. A failing cell raises
    nbclient's CellExecutionError, naming the cell and its traceback.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as jupyter_dir:
        spec = Path(jupyter_dir) / "kernels" / KERNEL
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)", "language": "python",
            "env": {TINY: "1"} if tiny else {},
        }))
        previous = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [jupyter_dir, previous]))
        try:
            NotebookClient(nb, timeout=timeout, kernel_name=KERNEL,
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        finally:
            if previous is None:
                os.environ.pop("JUPYTER_PATH")
            else:
                os.environ["JUPYTER_PATH"] = previous
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    if write:
        nbformat.write(nb, path)
    return nb


def main(argv: list[str]) -> None:
    tiny = "--tiny" in argv
    names = [arg for arg in argv if arg != "--tiny"] or NOTEBOOKS
    for name in names:
        path = Path(name) if Path(name).exists() else HERE / name
        execute(path, tiny=tiny, write=not tiny)
        print(f"ran {path}{' (tiny, outputs not written)' if tiny else ''}")


if __name__ == "__main__":
    main(sys.argv[1:])
