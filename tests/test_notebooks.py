"""Execute every notebook in notebooks/ through papermill with small parameters.

Each notebook runs with its own ``parameters`` cell defaults, replaced by the
entries of ``SMALL_PARAMETERS`` that the cell defines, so that every cell runs
but on a small model trained for one epoch.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest

from layershare.reports import run_report
from layershare.specs import Spec

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))

# Small model, short training and few members, so each notebook runs quickly.
# The accuracy floor is dropped because one epoch does not reach it.
SMALL_PARAMETERS = {
    "blocks": 3,
    "width": 8,
    "epochs": 1,
    "sample_members": 4,
    "expected_min_accuracy": 0.0,
}


def parameters_cell_names(path: Path) -> set[str]:
    """Return the names that a notebook's parameters cell defines."""
    parameters = papermill.inspect_notebook(str(path))
    return set(parameters)


# With no notebooks, one case with path None fails, where pytest would skip an
# empty parametrization.
@pytest.mark.slow
@pytest.mark.parametrize(
    "path", NOTEBOOKS or [None], ids=[path.stem for path in NOTEBOOKS] or ["none"]
)
def test_notebook_runs(path, tmp_path):
    assert path is not None, f"no notebooks found in {NOTEBOOKS_DIR}"
    defined = parameters_cell_names(path)
    parameters = {
        key: value for key, value in SMALL_PARAMETERS.items() if key in defined
    }
    spec = Spec(name=path.stem, notebook=path.stem, parameters=parameters)

    paths = run_report(spec, output_dir=tmp_path, progress=False)

    executed = nbformat.read(paths.notebook, as_version=4)
    errors = [
        output
        for cell in executed.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert errors == []
    assert paths.html.stat().st_size > 0
