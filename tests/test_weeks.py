"""Every ready week proves its own suite: the answer key earns full marks over the wire and
in-process alike, the released notebook scores zero, every mutant loses points, the suite
has all four kinds of check, and the committed release is fresh."""

from __future__ import annotations

import ast

import pytest

from autograder.config import load_course
from autograder.grading.run import Submitted, grade, grade_in_process
from autograder.grading.verify import verify_week
from autograder.pipeline.build import source_notebook, stale_files
from autograder.submission.notebook import strip_magics
from autograder.testing.plugin import KINDS
from tests.conftest import REPO

READY = [w.id for w in load_course(REPO / "course.yaml").weeks if w.state == "ready"]


def answer_key_source(course, root, week: str) -> str:
    nb = source_notebook(course.week(week), root)
    return "\n\n".join(strip_magics(c.source) for c in nb.cells
                       if c.cell_type == "code" and "demo" not in c.metadata.get("tags", []))


@pytest.mark.slow
@pytest.mark.parametrize("week", READY)
def test_week_verifies(repo_course, week):
    """Answer key full marks, release zero, every mutant loses points, all four kinds present."""
    course, root = repo_course
    verdict = verify_week(course, root, week)
    assert verdict.ok, "\n".join(verdict.problems)
    assert sum(row[0].startswith("mutant:") for row in verdict.rows) >= 6


@pytest.mark.slow
@pytest.mark.parametrize("week", READY)
def test_answer_key_passes_identically_in_both_transports(repo_course, tmp_path, week):
    course, root = repo_course
    key = tmp_path / "key.py"
    key.write_text(answer_key_source(course, root, week))
    in_process = grade_in_process(course, root, week, [Submitted("key", key)])["key"]
    over_wire = grade(course, root, week, [Submitted("key", key)])["key"].tests
    assert [(o.name, o.passed) for o in in_process] == [(o.name, o.passed) for o in over_wire]
    assert in_process and all(o.passed for o in in_process)


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
