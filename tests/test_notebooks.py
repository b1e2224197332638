"""Static checks of the notebooks (CI executes them with nbmake in .ci/run)."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
#: Every notebook's parameter cell names these (the runs on real models override them).
PARAMETERS = ("TESTBED", "ZOO", "MODELS", "DEVICE", "DTYPE")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def test_the_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {"00_quickstart", "01_s1_belief", "07_followup_patching"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_holds_the_parameters(path):
    first = next(c for c in _cells(path) if c["cell_type"] == "code")
    assert "parameters" in first["metadata"].get("tags", [])
    source = "".join(first["source"])
    for name in PARAMETERS:
        assert re.search(rf"^{name}\b.*=", source, re.M), f"{path.name}: no {name} parameter"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_or_machine_paths(path):
    for cell in _cells(path):
        if cell["cell_type"] == "code":
            assert not cell["outputs"] and cell["execution_count"] is None, path.name
        source = "".join(cell["source"])
        assert not re.search(r"(/work/|/home/|/root/|/Users/|C:\\\\)", source), path.name
