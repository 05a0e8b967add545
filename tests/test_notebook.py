"""examples/analysis.ipynb runs top to bottom in a real Jupyter kernel (nbclient) and draws its figure."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.conftest import ROOT


def test_the_analysis_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    notebook = nbformat.read(ROOT / "examples" / "analysis.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # any error raises here
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the strip plot was drawn
    tables = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})]
    assert any("w_error/l2" in t for t in tables) and any("sgd" in t and "adam" in t for t in tables)
