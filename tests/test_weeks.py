"""Every ready week proves its own suite: the answer key earns full marks over the wire and
in-process alike, the released notebook scores zero, every mutant loses points, code that does
nothing earns nothing beyond shape tests, the suite has all four kinds of check, and the
committed release is fresh. The weeks are verified
together, in one trusted process, so that each week adds only its own tests' time."""

from __future__ import annotations

import ast

import pytest

from autograder.config import load_course
from autograder.pipeline.build import stale_files
from autograder.testing.plugin import KINDS
from tests.conftest import REPO

READY = [w.id for w in load_course(REPO / "course.yaml").weeks if w.state == "ready"]


@pytest.fixture(scope="module")
def verdicts(week_verification):
    """Every ready week verified in one trusted process by `course verify`, which tests/conftest.py
    starts in the background as soon as collection is done (it runs beside the other tests)."""
    return {v["week"]: v for v in week_verification()}


@pytest.mark.slow
@pytest.mark.parametrize("week", READY)
def test_week_verifies(verdicts, week):
    """Answer key full marks over the wire and in-process alike, release zero, every mutant loses
    points, every mutant's catches names real tests, all four kinds present."""
    verdict = verdicts[week]
    assert verdict["ok"], "\n".join(verdict["problems"])
    assert sum(row[0].startswith("mutant:") for row in verdict["rows"]) >= 6
    assert sum(row[0].startswith("null:") for row in verdict["rows"]) >= 3, "every part gets three null variants"
    caught, mutants = verdict["public_caught"]
    assert 2 * caught >= mutants, "the public self-checks catch at least half of the mutants"


@pytest.mark.parametrize("week", READY)
def test_release_is_fresh(repo_course, week):
    course, root = repo_course
    assert stale_files(course, week, root) == [], f"run `course build {week}` and commit release/"


@pytest.mark.parametrize("week", READY)
def test_suite_has_every_kind_of_check(week):
    kinds = set()
    for path in (REPO / "assignments" / week / "hidden").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "kind" and node.args:
                kinds.add(node.args[0].value)
    assert kinds == set(KINDS)


@pytest.mark.parametrize("week", READY)
def test_no_cell_shows_a_generator(repo_course, week):
    """A cell ending in `torch.manual_seed(0)` shows `<torch._C.Generator at 0x...>` to the student."""
    import nbformat

    course, root = repo_course
    notebook = nbformat.read(root / "release" / week / f"{course.week(week).slug}.ipynb", as_version=4)
    for cell in (c for c in notebook.cells if c.cell_type == "code"):
        body = ast.parse(cell.source).body if cell.source.strip() and "%" not in cell.source else []
        last = body[-1] if body else None
        shown = isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
        assert not (shown and ast.unparse(last.value.func).endswith("manual_seed")), cell.source[:200]
