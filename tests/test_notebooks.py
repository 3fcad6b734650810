"""The colab/ notebooks run top to bottom, and are committed without outputs (slow: a kernel each)."""

import glob
import os

import nbformat
import pytest

from conftest import REPO_ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(REPO_ROOT, "colab", "*.ipynb")))


def test_there_are_notebooks_and_none_carries_outputs():
  assert {os.path.basename(path) for path in NOTEBOOKS} >= {
      "quickstart.ipynb", "embeddings.ipynb", "compare_runs.ipynb", "finetune.ipynb"}
  for path in NOTEBOOKS:
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    for index, cell in enumerate(book.cells):
      if cell.cell_type == "code":
        assert not cell.outputs and cell.execution_count is None, (
            f"{path} cell {index} has stale outputs: clear them before committing "
            "(jupyter nbconvert --clear-output --inplace colab/*.ipynb)")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
  from nbclient import NotebookClient
  # The kernel inherits this environment: runs in a temporary folder, the generated RuCoLA
  # stand-in rather than ../shared (the same work on every machine), one CPU device.
  monkeypatch.setenv("JAXLM_NOTEBOOK_RUNS", str(tmp_path / "runs"))
  monkeypatch.setenv("JAXLM_RUCOLA", str(tmp_path / "no_rucola"))
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  book = nbformat.read(path, as_version=4)
  client = NotebookClient(book, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": os.path.dirname(path)}})
  client.execute()  # raises CellExecutionError naming the cell that failed
  printed = "".join(output.get("text", "") for cell in book.cells if cell.cell_type == "code"
                    for output in cell.outputs)
  assert "Traceback" not in printed
