"""The build pipeline: reference -> nbgrader source -> release, repeatable and leak-free."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from autograder.config import load_course
from autograder.grading.mutants import load_mutants
from autograder.pipeline.build import SOLUTION_BEGIN, build_week, source_notebook, stale_files
from tests.conftest import REPO
from tests.test_weeks import READY


def _solution_lines(reference: Path, public: Path | None = None) -> list[str]:
    """Substantial lines that appear only inside the solution regions of a reference file
    (a line the lesson also shows elsewhere, or gives ready-made, or a public test uses, is no secret)."""
    inside, secret, shown = False, [], []
    for line in reference.read_text().splitlines():
        if "### BEGIN SOLUTION" in line:
            inside = True
        elif "### END SOLUTION" in line:
            inside = False
        elif inside and len(line.strip()) >= 12 and not line.strip().startswith("#"):
            secret.append(line.strip())
        else:
            shown.append(line)
    given = "".join(p.read_text() for p in (reference.parent / "given").glob("*.py"))
    shown_text = "\n".join(shown) + given + ("".join(p.read_text() for p in public.glob("*.py")) if public else "")
    return [line for line in secret if line not in shown_text]


def _is_fixture(node: ast.FunctionDef) -> bool:
    """A hidden fixture's name is a secret; a plain helper that a public test also has is not."""
    return any("fixture" in ast.unparse(d) for d in node.decorator_list)


def _released_text(release: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(release.rglob("*")) if p.is_file())


def test_toy_build_replaces_solutions_with_placeholders(toy):
    course, root = toy
    release = build_week(course, "m1w01", root)
    notebook = nbformat.read(release / "m1w01_toy.ipynb", as_version=4)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    assert "raise NotImplementedError()" in code
    assert SOLUTION_BEGIN not in code
    for line in _solution_lines(root / "reference" / "m1w01_toy.py"):
        assert line not in _released_text(release)
    assert (release / "public_tests" / "test_public.py").is_file()
    assert json.loads((release / "week.json").read_text())["hidden"] == {"tests": 4, "points": 5.0}


def test_toy_build_is_repeatable_and_check_detects_staleness(toy):
    course, root = toy
    build_week(course, "m1w01", root)
    assert stale_files(course, "m1w01", root, rebuild=True) == [], "the same inputs give the same bytes"
    assert stale_files(course, "m1w01", root) == []
    reference = root / "reference" / "m1w01_toy.py"
    reference.write_text(reference.read_text().replace("Softmax over the last axis.", "Softmax, changed."))
    assert stale_files(course, "m1w01", root, rebuild=True) == ["release/m1w01/m1w01_toy.ipynb",
                                                                "release/m1w01/week.json"]
    [problem] = stale_files(course, "m1w01", root)
    assert "built from other inputs" in problem


def test_the_fingerprint_notices_hand_edits_and_other_inputs(toy):
    course, root = toy
    build_week(course, "m1w01", root)
    released = root / "release" / "m1w01" / "public_tests" / "test_public.py"
    released.write_text(released.read_text() + "\n# edited by hand\n")
    assert any("edited after it was built" in p for p in stale_files(course, "m1w01", root))
    build_week(course, "m1w01", root)
    hidden = root / "assignments" / "m1w01" / "hidden" / "test_h.py"
    hidden.write_text(hidden.read_text() + "\n\n@pytest.mark.points(3)\ndef test_softmax_more(sub):\n    pass\n")
    assert any("other inputs" in p for p in stale_files(course, "m1w01", root)), "the hidden suite's size is quoted"
    hidden.write_text(hidden.read_text().replace("def test_softmax_more(sub):\n    pass", "def test_softmax_more(sub):\n    assert True"))
    build_week(course, "m1w01", root)
    hidden.write_text(hidden.read_text().replace("assert True", "assert 1"))
    assert stale_files(course, "m1w01", root) == [], "a hidden test's body is not in the release"


def test_answer_key_keeps_solutions_and_nbgrader_roles(toy):
    course, root = toy
    nb = source_notebook(course, course.week("m1w01"), root)
    solutions = [c for c in nb.cells if c.metadata["nbgrader"]["solution"]]
    assert len(solutions) == 1 and SOLUTION_BEGIN in solutions[0].source
    assert solutions[0].metadata["nbgrader"]["grade_id"] == "softmax"
    assert all(c.metadata["nbgrader"]["locked"] for c in nb.cells if c not in solutions)
    demo = [c for c in nb.cells if "demo" in c.metadata.get("tags", [])]
    assert len(demo) == 2
    part = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "part-softmax"]
    assert len(part) == 1 and part[0].metadata["nbgrader"]["points"] == 100.0, "the part holds the week's 100 points"


@pytest.mark.parametrize("week", READY)
def test_committed_release_has_no_secrets(week):
    """Nothing from hidden/, mutants/ or a solution region is in release/."""
    release = REPO / "release" / week
    text = _released_text(release)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    hidden = REPO / "assignments" / week / "hidden"
    names = {n.name for p in hidden.glob("*.py") for n in ast.parse(p.read_text()).body
             if isinstance(n, ast.FunctionDef) and (n.name.startswith("test_") or _is_fixture(n))}
    public = {n.name for p in (REPO / "assignments" / week / "public").glob("*.py")
              for n in ast.parse(p.read_text()).body if isinstance(n, ast.FunctionDef)}
    for name in names - public:  # a name the public tests also use tells nothing
        assert not re.search(rf"\b{re.escape(name)}\b", text), f"hidden test name {name} is in release/"
    reference = REPO / load_course(REPO / "course.yaml").week(week).reference
    for line in _solution_lines(reference, REPO / "assignments" / week / "public"):
        assert line not in text, f"solution line leaked: {line}"
    for mutant in load_mutants(REPO / "assignments" / week / "mutants"):
        assert mutant.bug not in text


WRITTEN = '''
# %% [markdown] written=2
# Why subtract the maximum before exponentiating?
#
# ### BEGIN SOLUTION
# exp overflows for large logits; the shift cancels in the ratio.
# ### END SOLUTION
'''


def test_written_answers_are_graded_by_hand(toy):
    """A theory question: the model answer becomes nbgrader's placeholder, and the cell is a
    manually graded answer worth its points in formgrader."""
    course, root = toy
    reference = root / "reference" / "m1w01_toy.py"
    reference.write_text(reference.read_text() + WRITTEN)
    release = build_week(course, "m1w01", root)
    (cell,) = [c for c in nbformat.read(release / "m1w01_toy.ipynb", as_version=4).cells
               if c.metadata.get("nbgrader", {}).get("grade_id") == "written-1"]
    assert cell.cell_type == "markdown" and "YOUR ANSWER HERE" in cell.source
    assert "exp overflows" not in _released_text(release)
    role = cell.metadata["nbgrader"]
    assert (role["grade"], role["solution"], role["locked"], role["points"]) == (True, True, False, 2.0)
    assert "written" not in cell.metadata
    (part,) = [c for c in nbformat.read(release / "m1w01_toy.ipynb", as_version=4).cells
               if c.metadata.get("nbgrader", {}).get("grade_id") == "part-softmax"]
    assert part.metadata["nbgrader"]["points"] == 98.0, "the hidden tests share what the written answer leaves"
    info = json.loads((release / "week.json").read_text())
    assert info["written"] == {"answers": 1, "points": 2.0} and info["points"] == 100


def test_written_answers_cannot_take_the_whole_week(toy):
    course, root = toy
    reference = root / "reference" / "m1w01_toy.py"
    reference.write_text(reference.read_text() + WRITTEN.replace("written=2", "written=100"))
    from autograder.pipeline.build import BuildError

    with pytest.raises(BuildError, match="written answers are worth 100 points, but the whole week only 100"):
        source_notebook(course, course.week("m1w01"), root)


@pytest.mark.parametrize("header, problem", [("# %% [markdown] written=0", "positive number"),
                                             ("# %% written=2", "must be markdown")])
def test_malformed_written_answers_name_the_cell(toy, header, problem):
    course, root = toy
    reference = root / "reference" / "m1w01_toy.py"
    reference.write_text(reference.read_text() + WRITTEN.replace("# %% [markdown] written=2", header))
    from autograder.pipeline.build import BuildError

    with pytest.raises(BuildError, match=problem):
        source_notebook(course, course.week("m1w01"), root)
