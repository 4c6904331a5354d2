"""Autograding a collected week: parallel batches, a hostile submission among good ones,
the late policy, and a regrade that replaces the old results."""

from __future__ import annotations

import json

import pytest
import yaml

from autograder.config import load_course
from autograder.grading.autograde import autograde_week
from autograder.workflow import release_week
from autograder.workflow.settings import WorkflowSettings, settings_from_course
from autograder.gradebook.table import scores_table
from tests.conftest import HONEST_SOFTMAX

STAMP_ON_TIME = "2027-01-17 12:00:00.000000 UTC"
STAMP_LATE = "2027-01-20 12:00:00.000000 UTC"  # due 2027-01-18 23:59: two started days late


def _collected(root, student: str, source: str, stamp: str) -> None:
    folder = root / ".course-work" / "submitted" / student / "m1w01"
    folder.mkdir(parents=True)
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, folder / "m1w01_toy.ipynb")
    (folder / "timestamp.txt").write_text(stamp)


@pytest.fixture
def course_with_submissions(toy):
    _, root = toy
    data = yaml.safe_load((root / "course.yaml").read_text())
    data["weeks"][0]["due"] = "2027-01-18T23:59:00"
    data["workflow"] = {"late_policy": "per_day", "penalty_per_day": 0.1}
    (root / "course.yaml").write_text(yaml.safe_dump(data))
    course = load_course(root / "course.yaml")
    exchange = root.parent / "exchange"
    exchange.mkdir()
    release_week(course, root, "m1w01", WorkflowSettings(exchange=exchange))  # the gradebook learns the week
    _collected(root, "alice", HONEST_SOFTMAX, STAMP_ON_TIME)
    _collected(root, "mallory", HONEST_SOFTMAX + "\nwhile True:\n    pass\n", STAMP_ON_TIME)
    _collected(root, "bob", HONEST_SOFTMAX, STAMP_LATE)
    _collected(root, "carol", "def softmax(x):\n    raise NotImplementedError()\n", STAMP_ON_TIME)
    return load_course(root / "course.yaml"), root


@pytest.mark.slow
def test_parallel_autograde_with_a_hostile_submission(course_with_submissions):
    course, root = course_with_submissions
    finished = []
    graded = autograde_week(course, root, "m1w01", settings_from_course(course), jobs=2,
                            on_progress=lambda name, earned, possible: finished.append(name))
    by_student = {g.student: g for g in graded}
    assert sorted(finished) == ["alice", "bob", "carol", "mallory"]
    assert by_student["alice"].score.final == 100
    assert by_student["mallory"].score.final == 0 and "took longer than" in by_student["mallory"].result.tests[0].message
    assert by_student["carol"].score.final == 0
    assert by_student["bob"].score.final == pytest.approx(80.0), "two started days at 10% each"
    assert "2 started days" in by_student["bob"].late_note
    saved = json.loads((root / ".course-work" / "autograded" / "bob" / "m1w01" / "results.json").read_text())
    assert saved["score"] == pytest.approx(80.0) and saved["extra_data"]["late_penalty"] == pytest.approx(20.0)
    table = {row["id"]: row for row in scores_table(f"sqlite:///{root / 'gradebook' / 'gradebook.db'}", "vitssl")}
    assert table["alice"]["scores"]["m1w01"] == pytest.approx(100.0), "one score, in nbgrader's gradebook as well"
    assert table["carol"]["scores"]["m1w01"] == 0
    assert table["bob"]["scores"]["m1w01"] == pytest.approx(80.0), "the late penalty reaches the gradebook too"


@pytest.mark.slow
def test_regrade_of_one_student_replaces_only_their_results(course_with_submissions):
    course, root = course_with_submissions
    settings = settings_from_course(course)
    autograde_week(course, root, "m1w01", settings, students=["carol", "alice"])
    alice_before = (root / ".course-work" / "autograded" / "alice" / "m1w01" / "results.json").read_text()
    fixed = root / ".course-work" / "submitted" / "carol" / "m1w01" / "m1w01_toy.ipynb"
    import nbformat

    nb = nbformat.read(fixed, as_version=4)
    nb.cells[0].source = HONEST_SOFTMAX
    nbformat.write(nb, fixed)
    (regraded,) = autograde_week(course, root, "m1w01", settings, students=["carol"])
    assert regraded.score.final == 100
    carol = json.loads((root / ".course-work" / "autograded" / "carol" / "m1w01" / "results.json").read_text())
    assert carol["score"] == 100 and carol["extra_data"]["hidden_points_earned"] == 5
    after = (root / ".course-work" / "autograded" / "alice" / "m1w01" / "results.json").read_text()
    assert after == alice_before
