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


@pytest.mark.slow
def test_a_new_week_builds_grades_and_says_what_it_lacks(course_copy, capsys):
    assert main(["--course", str(course_copy / "course.yaml"), "new-week", "m2w01"]) == 0
    assert "course verify m2w01" in capsys.readouterr().out
    course = load_course(course_copy / "course.yaml")
    week = course.week("m2w01")
    assert week.reference == "reference/m2w01_detr_from_scratch.py" and week.state == "planned"
    assert (course_copy / "course.yaml").read_text().startswith("# The course:")

    build_week(course, "m2w01", course_copy)
    notebook = (course_copy / "release" / "m2w01" / "m2w01_detr_from_scratch.ipynb").read_text()
    assert "How this notebook works" in notebook and "BEGIN SOLUTION" not in notebook

    verdict = verify_week(course, course_copy, "m2w01")
    rows = {row[0]: row[2] for row in verdict.rows}
    assert rows["answer key"] == "full marks" and rows["release"] == "zero"
    assert rows["mutant:unbiased_variance"].startswith("caught by test_standardize_matches_layer_norm")
    assert len(verdict.problems) == 3, verdict.problems
    lacks = " ".join(verdict.problems)
    assert "no grad check: add tests marked" in lacks and "no convergence check: add a tiny training run" in lacks
    assert "only 1 usable mutants" in lacks and "write more plausible student bugs" in lacks


def test_new_week_refuses_ready_weeks_existing_files_and_bad_slugs(course_copy):
    course = load_course(course_copy / "course.yaml")
    with pytest.raises(ScaffoldError, match="already has a reference"):
        new_week(course, course_copy / "course.yaml", "m1w01")
    with pytest.raises(ScaffoldError, match="lower-case"):
        new_week(course, course_copy / "course.yaml", "m2w02", slug="LW DETR")
    (course_copy / "assignments" / "m2w02" / "hidden").mkdir(parents=True)
    (course_copy / "assignments" / "m2w02" / "hidden" / "test_hidden.py").write_text("# mine\n")
    with pytest.raises(ScaffoldError, match="not overwriting"):
        new_week(course, course_copy / "course.yaml", "m2w02")
    assert (course_copy / "assignments" / "m2w02" / "hidden" / "test_hidden.py").read_text() == "# mine\n"
    assert load_course(course_copy / "course.yaml").week("m2w02").reference is None


def test_slugs_come_from_titles():
    assert slug_of("DETR from scratch") == "detr_from_scratch"
    assert slug_of("Masked modeling compared: MAE, SimMIM, BEiT, iBOT, data2vec") == "masked_modeling_compared_mae"
