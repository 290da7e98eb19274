"""notebooks/quickstart.ipynb runs top to bottom (it trains, serves, calls and stops the service)."""

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(
        not cell.get("outputs") and not cell.get("execution_count")
        for cell in notebook.cells
        if cell.cell_type == "code"
    )


@pytest.mark.served  # the notebook starts `bentoml serve` (from its kernel: the conftest guard can't see it)
@pytest.mark.slow
def test_notebook_runs_top_to_bottom(bentoml_home):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    outputs = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "ready at http://127.0.0.1:" in outputs
    assert "200 Gentoo" in outputs and "400 invalid input: island" in outputs
    assert "median" in outputs and "exit code" in outputs
    assert any(output.get("data", {}).get("image/png") for cell in notebook.cells for output in cell.get("outputs", []))
