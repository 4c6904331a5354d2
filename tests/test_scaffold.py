"""`course new-week`: a planned week's skeleton builds, grades, and fails verification only for
what a new week still lacks, with messages that say what to write next."""

from __future__ import annotations

import shutil

import pytest

from autograder.cli import main
from autograder.config import load_course
from autograder.grading.verify import verify_week
from autograder.pipeline.build import build_week
from autograder.pipeline.scaffold import ScaffoldError, new_week, slug_of
from tests.conftest import REPO


@pytest.fixture
def course_copy(tmp_path):
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(REPO / "course.yaml", root / "course.yaml")
    return root


def planned_weeks(course) -> list[str]:
    """The weeks a new skeleton may be written for: planned, with no reference yet."""
    return [w.id for w in course.weeks if w.state == "planned" and w.reference is None]


@pytest.mark.slow
def test_a_new_week_builds_grades_and_says_what_it_lacks(course_copy, capsys):
    week_id = planned_weeks(load_course(course_copy / "course.yaml"))[0]
    assert main(["--course", str(course_copy / "course.yaml"), "new-week", week_id, "--slug", "first_try"]) == 0
    assert f"course verify {week_id}" in capsys.readouterr().out
    course = load_course(course_copy / "course.yaml")
    week = course.week(week_id)
    assert week.reference == f"reference/{week_id}_first_try.py" and week.state == "planned"
    assert (course_copy / "course.yaml").read_text().startswith("# The course:")

    build_week(course, week_id, course_copy)
    notebook = (course_copy / "release" / week_id / f"{week_id}_first_try.ipynb").read_text()
    assert "How this notebook works" in notebook and "BEGIN SOLUTION" not in notebook

    verdict = verify_week(course, course_copy, week_id)
    rows = {row[0]: row[2] for row in verdict.rows}
    assert rows["answer key"] == "full marks" and rows["release"] == "zero"
    assert rows["mutant:unbiased_variance"].startswith("caught by test_standardize_matches_layer_norm")
    assert len(verdict.problems) == 3, verdict.problems
    lacks = " ".join(verdict.problems)
    assert "no grad check: add tests marked" in lacks and "no convergence check: add a tiny training run" in lacks
    assert "only 1 usable mutants" in lacks and "write more plausible student bugs" in lacks


def test_new_week_refuses_ready_weeks_existing_files_and_bad_slugs(course_copy):
    course = load_course(course_copy / "course.yaml")
    week_id = planned_weeks(course)[0]
    with pytest.raises(ScaffoldError, match="already has a reference"):
        new_week(course, course_copy / "course.yaml", "m1w01")
    with pytest.raises(ScaffoldError, match="lower-case"):
        new_week(course, course_copy / "course.yaml", week_id, slug="Two Words")
    (course_copy / "assignments" / week_id / "hidden").mkdir(parents=True)
    (course_copy / "assignments" / week_id / "hidden" / "test_hidden.py").write_text("# mine\n")
    with pytest.raises(ScaffoldError, match="not overwriting"):
        new_week(course, course_copy / "course.yaml", week_id)
    assert (course_copy / "assignments" / week_id / "hidden" / "test_hidden.py").read_text() == "# mine\n"
    assert load_course(course_copy / "course.yaml").week(week_id).reference is None
