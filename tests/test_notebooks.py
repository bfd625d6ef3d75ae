"""CI runs every notebook top to bottom in its tiny configuration: a broken notebook fails here."""
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _runner():
    spec = importlib.util.spec_from_file_location("notebooks_execute", NOTEBOOKS / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNER = _runner()


def test_every_notebook_is_run_here():
    assert sorted(RUNNER.NOTEBOOKS) == sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("name", RUNNER.NOTEBOOKS)
def test_notebook_runs_top_to_bottom_in_tiny_mode(name):
    nb = RUNNER.execute(NOTEBOOKS / name, tiny=True, write=False, timeout=120)
    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs)  # the figures were drawn
    if name == "sweep_figures.ipynb":
        text = "".join(output.get("text", "") for output in outputs)
        assert "CIFAR-10: no sweep CSV at" in text and "s/image" in text


@pytest.mark.parametrize("name", RUNNER.NOTEBOOKS)
def test_notebook_data_root_honours_the_environment(name, monkeypatch, tmp_path):
    import nbformat

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    parameters = next(cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", []))
    monkeypatch.setenv("DEFENSE_HGAN_DATA", str(tmp_path))
    namespace = {}
    exec(parameters.source, namespace)
    assert namespace.get("DATA_ROOT", str(tmp_path)) == str(tmp_path)
