"""`check()` as a student meets it: the fetched notebook run top to bottom in a real
Jupyter kernel (nbclient and ipykernel), from the week's own folder."""

from __future__ import annotations

import shutil

import nbformat
import pytest

from autograder.config import load_course
from autograder.workflow import WorkflowSettings, fetch_week, release_week

from .conftest import HONEST_SOFTMAX, TOY


def run_in_kernel(notebook_path) -> list[str]:
    """Execute the notebook where it lies; the text each code cell printed or showed as its value."""
    from nbclient import NotebookClient

    nb = nbformat.read(notebook_path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
    return ["".join(o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", "")
                    for o in c.get("outputs", []) if o.output_type in ("stream", "execute_result"))
            for c in nb.cells if c.cell_type == "code"]


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """The toy week released and fetched by alice: the notebook in her week folder."""
    base = tmp_path_factory.mktemp("kernel")
    root = base / "course"
    shutil.copytree(TOY, root)
    (base / "exchange").mkdir()
    settings = WorkflowSettings(exchange=base / "exchange")
    release_week(load_course(root / "course.yaml"), root, "m1w01", settings)
    return fetch_week("m1w01", "alice", base / "alice", settings, cache=base / "cache") / "m1w01_toy.ipynb"


@pytest.mark.slow
def test_check_in_a_kernel_reports_the_released_placeholder(fetched):
    printed = run_in_kernel(fetched)
    report = next(text for text in printed if "Self-check" in text)
    assert report.count("Self-check") == 1, "the report is shown once, not printed and shown again as the value"
    assert "0 of 1 public tests passed" in report and "not implemented yet" in report
    assert "hidden suite has 4 more tests" in report and "not a full score" in report


@pytest.mark.slow
def test_check_in_a_kernel_tests_the_notebooks_current_definitions(fetched, tmp_path):
    nb = nbformat.read(fetched, as_version=4)
    next(c for c in nb.cells if "raise NotImplementedError" in c.source).source = HONEST_SOFTMAX
    solved = fetched.parent / "solved.ipynb"
    nbformat.write(nb, solved)
    report = next(text for text in run_in_kernel(solved) if "Self-check" in text)
    assert "1 of 1 public tests passed" in report, report
