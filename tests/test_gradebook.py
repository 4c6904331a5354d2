"""The gradebook package against a real nbgrader course (no mocks).

One nbgrader course is generated per module (`generate_assignment` takes seconds); each test
works on its own copy of the gradebook database.
"""

from __future__ import annotations

import csv
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.grading.run import GradeResult
from autograder.pipeline.build import put_venv_on_path
from autograder.testing.plugin import TestOutcome as Outcome
from autograder.gradebook.parts import part_of
from autograder.gradebook.report import write_html_report
from autograder.gradebook.store import GradebookError, feedback_text, record_autograde
from autograder.gradebook.table import scores_table, write_csv

COURSE = "vitssl"
WEEK = "m1w01"
NOTEBOOK = "attention"
PARTS = ["attention", "mlp"]
DUE = datetime(2025, 3, 1, 12, 0)


def _meta(**fields) -> dict:
    return {"nbgrader": {"schema_version": 3, **fields}}


@pytest.fixture(scope="module")
def built_course(tmp_path_factory) -> Path:
    """A real nbgrader course with m1w01 generated: its gradebook.db holds the grade cells."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    put_venv_on_path()
    root = tmp_path_factory.mktemp("nbcourse")
    source = root / "source" / WEEK
    source.mkdir(parents=True)
    nb = new_notebook(cells=[
        new_markdown_cell("# Attention"),
        new_code_cell("def attention(q, k, v):\n    ### BEGIN SOLUTION\n    return v\n    ### END SOLUTION",
                      metadata=_meta(grade=False, solution=True, locked=False, grade_id="attention")),
        new_code_cell("# hidden tests of part attention",
                      metadata=_meta(grade=True, solution=False, locked=True, points=10, grade_id="part-attention")),
        new_code_cell("# hidden tests of part mlp",
                      metadata=_meta(grade=True, solution=False, locked=True, points=5, grade_id="part-mlp")),
        new_markdown_cell("Why scale by sqrt(d)?\n\nYOUR ANSWER HERE",
                          metadata=_meta(grade=True, solution=True, locked=False, points=2, grade_id="written-1")),
    ])
    nbformat.write(nb, source / f"{NOTEBOOK}.ipynb")
    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.course_id = COURSE
    config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    (root / "exchange").mkdir()
    config.Exchange.root = str(root / "exchange")
    result = NbGraderAPI(config=config).generate_assignment(WEEK, force=True, create=True)
    assert result.get("success"), result.get("log")
    return root


@pytest.fixture
def db_url(built_course: Path, tmp_path: Path) -> str:
    db = tmp_path / "gradebook.db"
    shutil.copy(built_course / "gradebook.db", db)
    return f"sqlite:///{db}"


def _gb(db_url: str):
    from nbgrader.api import Gradebook

    return Gradebook(db_url, course_id=COURSE)


def outcome(name: str, points: float, passed: bool, message: str = "", student: str = "alice") -> Outcome:
    return Outcome(submission=student, name=name, description=name.replace("_", " "), points=points,
                       kind="value", visibility="hidden", passed=passed, message=message)


def result_of(student: str, *tests: tuple, error: str | None = None) -> GradeResult:
    return GradeResult(submission=student, week=WEEK, error=error,
                       tests=[outcome(*t, student=student) for t in tests])


def alice_first() -> GradeResult:
    # attention: 3 of 4 points -> 7.5 of 10; mlp: 2 of 4 -> 2.5 of 5; the unpartitioned test counts nowhere
    return result_of("alice",
                     ("test_attention_shape", 1, True),
                     ("test_attention_values[2]", 1, False, "expected 0.5, got 0.7"),
                     ("test_attention_values[3]", 2, True),
                     ("test_mlp", 2, True),
                     ("test_mlp_grad", 2, False, "gradient is None"),
                     ("test_style", 3, False, "unused"))


def grades(db_url: str, student: str) -> dict[str, tuple]:
    with _gb(db_url) as gb:
        return {name: (g.auto_score, g.manual_score, g.score, g.needs_manual_grade)
                for name in ("part-attention", "part-mlp", "written-1")
                for g in [gb.find_grade(name, NOTEBOOK, WEEK, student)]}


def test_part_of_takes_the_longest_matching_part():
    parts = ["attn", "attn_mask", "mlp"]
    assert part_of("test_attn", parts) == "attn"
    assert part_of("test_attn_shape[2-True]", parts) == "attn"
    assert part_of("test_attn_mask_values", parts) == "attn_mask"
    assert part_of("test_attn_mask[x_y]", parts) == "attn_mask"
    assert part_of("test_mlpx", parts) is None
    assert part_of("test_style", parts) is None


def test_scores_land_per_part_scaled_to_max_score(db_url):
    record_autograde(db_url, COURSE, WEEK, "alice", f"{NOTEBOOK}.ipynb", alice_first(), PARTS)
    got = grades(db_url, "alice")
    assert got["part-attention"][:3] == (7.5, None, 7.5)
    assert got["part-mlp"][:3] == (2.5, None, 2.5)
    assert got["part-attention"][3] is False and got["part-mlp"][3] is False
    # the written answer stays for the grader
    assert got["written-1"] == (None, None, 0.0, True)
    with _gb(db_url) as gb:
        submission = gb.find_submission(WEEK, "alice")
        assert submission.score == pytest.approx(10.0)
        assert submission.max_score == pytest.approx(17.0)
        assert submission.needs_manual_grade
        # the note: the code solution cell's comment, not the written answer's
        note = gb.find_comment("attention", NOTEBOOK, WEEK, "alice").auto_comment
        assert gb.find_comment("written-1", NOTEBOOK, WEEK, "alice").auto_comment is None
    assert "expected 0.5, got 0.7" in note and "gradient is None" in note
    assert "[attention]" in note and "[mlp]" in note
    assert "3 of 6 tests passed" in note


def test_ungradable_submission_scores_zero_and_says_why(db_url):
    record_autograde(db_url, COURSE, WEEK, "bob", NOTEBOOK, result_of("bob", error="notebook is not valid JSON"),
                     PARTS)
    got = grades(db_url, "bob")
    assert got["part-attention"][0] == 0.0 and got["part-mlp"][0] == 0.0
    with _gb(db_url) as gb:
        assert gb.find_submission(WEEK, "bob").score == 0.0
        assert "could not be graded: notebook is not valid JSON" in \
            gb.find_comment("attention", NOTEBOOK, WEEK, "bob").auto_comment


def test_part_without_tests_is_left_alone(db_url):
    record_autograde(db_url, COURSE, WEEK, "carol", NOTEBOOK,
                     result_of("carol", ("test_mlp", 1, True), ("test_mlp_grad", 1, True)), PARTS)
    got = grades(db_url, "carol")
    assert got["part-mlp"][0] == 5.0
    assert got["part-attention"][0] is None and got["part-attention"][3] is True


def test_regrade_replaces_auto_scores_and_keeps_manual_grades(db_url):
    record_autograde(db_url, COURSE, WEEK, "alice", NOTEBOOK, alice_first(), PARTS)
    # what formgrader does when an instructor grades: manual_score, needs_manual_grade False
    with _gb(db_url) as gb:
        written = gb.find_grade("written-1", NOTEBOOK, WEEK, "alice")
        written.manual_score, written.needs_manual_grade = 1.5, False
        override = gb.find_grade("part-mlp", NOTEBOOK, WEEK, "alice")
        override.manual_score, override.needs_manual_grade = 4.0, False
        comment = gb.find_comment("attention", NOTEBOOK, WEEK, "alice")
        comment.manual_comment = "See me about the mask."
        gb.db.commit()

    regrade = result_of("alice", ("test_attention_shape", 1, True), ("test_attention_values[2]", 1, True),
                        ("test_attention_values[3]", 2, True), ("test_mlp", 2, True), ("test_mlp_grad", 2, True))
    record_autograde(db_url, COURSE, WEEK, "alice", NOTEBOOK, regrade, PARTS)
    got = grades(db_url, "alice")
    assert got["part-attention"] == (10.0, None, 10.0, False)
    assert got["part-mlp"][:3] == (5.0, 4.0, 4.0)  # auto replaced, the override still counts
    assert got["part-mlp"][3] is True  # overridden against another auto score: flagged for review
    assert got["written-1"] == (None, 1.5, 1.5, False)
    with _gb(db_url) as gb:
        assert gb.find_submission(WEEK, "alice").score == pytest.approx(15.5)
        comment = gb.find_comment("attention", NOTEBOOK, WEEK, "alice")
        assert comment.manual_comment == "See me about the mask."
        assert "6 of 6" not in comment.auto_comment and "5 of 5 tests passed" in comment.auto_comment
        assert len(gb.find_submission(WEEK, "alice").notebooks) == 1  # no duplicate submission

    # the instructor reviews it; the same autograde again leaves the review alone
    with _gb(db_url) as gb:
        gb.find_grade("part-mlp", NOTEBOOK, WEEK, "alice").needs_manual_grade = False
        gb.db.commit()
    record_autograde(db_url, COURSE, WEEK, "alice", NOTEBOOK, regrade, PARTS)
    assert grades(db_url, "alice")["part-mlp"] == (5.0, 4.0, 4.0, False)


def test_late_penalty_is_nbgraders_and_follows_the_manual_score(db_url, tmp_path):
    """The penalty is computed from the notebook's score with manual overrides, stored where
    nbgrader's export and feedback read it, and the table subtracts it."""
    from nbgrader.plugins.export import CsvExportPlugin

    def half_off(score: float, max_score: float) -> float:
        return score / 2

    record_autograde(db_url, COURSE, WEEK, "alice", NOTEBOOK, alice_first(), PARTS, late_penalty=half_off)
    with _gb(db_url) as gb:
        raw = gb.find_submission(WEEK, "alice").score
        gb.find_grade("part-mlp", NOTEBOOK, WEEK, "alice").manual_score = 0.0
        gb.db.commit()
    record_autograde(db_url, COURSE, WEEK, "alice", NOTEBOOK, alice_first(), PARTS, late_penalty=half_off)
    with _gb(db_url) as gb:
        submission = gb.find_submission(WEEK, "alice")
        assert submission.score < raw and submission.late_submission_penalty == pytest.approx(submission.score / 2)
        out = tmp_path / "export.csv"
        CsvExportPlugin(to=str(out)).export(gb)
        exported = next(r for r in csv.DictReader(out.open()) if r["student_id"] == "alice")
        assert float(exported["score"]) == pytest.approx(submission.score / 2)
    (row,) = [r for r in scores_table(db_url, COURSE) if r["id"] == "alice"]
    assert row["scores"][WEEK] == pytest.approx(float(exported["score"]))


def test_unknown_week_or_notebook_is_an_error(db_url):
    with pytest.raises(GradebookError, match="generate_assignment"):
        record_autograde(db_url, COURSE, "m9w99", "alice", NOTEBOOK, alice_first(), PARTS)
    with pytest.raises(GradebookError):
        record_autograde(db_url, COURSE, WEEK, "alice", "nope", alice_first(), PARTS)


def _populate(db_url: str) -> None:
    """alice and bob graded for m1w01 (bob late); carol in the db without a submission;
    m1w02 added directly through the API with one part and a written answer, and nobody graded
    but alice (her written answer not graded yet)."""
    with _gb(db_url) as gb:
        gb.update_or_create_assignment(WEEK, duedate=DUE)
        gb.update_or_create_student("carol", first_name="Carol", last_name="Chen", email="carol@example.org")
        gb.update_or_create_student("alice", first_name="Alice", last_name="Abbot")
        gb.add_assignment("m1w02", duedate=DUE + timedelta(days=7))
        gb.add_notebook("vit", "m1w02")
        gb.add_grade_cell("part-vit", "vit", "m1w02", max_score=4, cell_type="code")
        gb.add_grade_cell("written-1", "vit", "m1w02", max_score=2, cell_type="markdown")
        gb.add_solution_cell("written-1", "vit", "m1w02")
    record_autograde(db_url, COURSE, WEEK, "alice", NOTEBOOK, alice_first(), PARTS,
                     timestamp=datetime(2025, 3, 1, 11, 0, tzinfo=timezone.utc))
    bob = result_of("bob", ("test_attention_shape", 1, True), ("test_attention_values[2]", 1, False),
                    ("test_attention_values[3]", 2, False), ("test_mlp", 2, True), ("test_mlp_grad", 2, True))
    record_autograde(db_url, COURSE, WEEK, "bob", NOTEBOOK, bob, PARTS,
                     timestamp=datetime(2025, 3, 1, 15, 30, tzinfo=timezone(timedelta(hours=1))))
    vit = GradeResult(submission="alice", week="m1w02", tests=[outcome("test_vit", 1, True)])
    record_autograde(db_url, COURSE, "m1w02", "alice", "vit", vit, ["vit"])


def test_nbgrader_csv_export_has_the_scores(db_url, tmp_path):
    from nbgrader.plugins.export import CsvExportPlugin

    _populate(db_url)
    out = tmp_path / "grades.csv"
    with _gb(db_url) as gb:
        CsvExportPlugin(to=str(out)).export(gb)
    rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(out.open())}
    assert float(rows[(WEEK, "alice")]["raw_score"]) == pytest.approx(10.0)
    assert float(rows[(WEEK, "bob")]["raw_score"]) == pytest.approx(2.5 + 5.0)
    assert float(rows[(WEEK, "bob")]["max_score"]) == pytest.approx(17.0)
    assert float(rows[(WEEK, "carol")]["score"]) == 0.0 and rows[(WEEK, "carol")]["timestamp"] == ""
    assert float(rows[("m1w02", "alice")]["score"]) == pytest.approx(4.0)
    assert rows[(WEEK, "bob")]["timestamp"].startswith("2025-03-01 14:30")  # stored as UTC


def test_scores_table_and_canvas_csv(db_url, tmp_path):
    _populate(db_url)
    rows = {r["id"]: r for r in scores_table(db_url, COURSE)}
    assert set(rows) == {"alice", "bob", "carol"}
    assert rows["alice"]["name"] == "Abbot, Alice"
    assert rows["alice"]["scores"] == {WEEK: pytest.approx(10.0), "m1w02": pytest.approx(4.0)}
    assert rows["alice"]["total"] == pytest.approx(14.0)
    assert rows["bob"]["scores"] == {WEEK: pytest.approx(7.5), "m1w02": None}
    assert rows["carol"]["scores"] == {WEEK: None, "m1w02": None} and rows["carol"]["total"] == 0
    assert rows["carol"]["max_scores"] == {WEEK: 17.0, "m1w02": 6.0}
    assert rows["alice"]["pending"] == {WEEK: 2.0, "m1w02": 2.0} and rows["bob"]["pending"] == {WEEK: 2.0}

    path = write_csv(list(rows.values()), tmp_path / "canvas.csv")
    lines = list(csv.reader(path.open()))
    assert lines[0] == ["Student", "ID", WEEK, "m1w02", "Total", "Notes"]
    assert lines[1] == ["Points Possible", "", "17", "6", "23", ""]
    assert lines[2:] == [["Abbot, Alice", "alice", "10", "4", "14", "m1w01: 2 points of written answers not graded "
                          "yet; m1w02: 2 points of written answers not graded yet"],
                         ["bob", "bob", "7.5", "", "7.5", "m1w01: 2 points of written answers not graded yet"],
                         ["Chen, Carol", "carol", "", "", "0", ""]]
    zeros = list(csv.reader(write_csv(list(rows.values()), tmp_path / "z.csv", missing="0").open()))
    assert zeros[4] == ["Chen, Carol", "carol", "0", "0", "0", ""]


def test_written_answers_pending_then_graded_and_overrides_to_review(db_url, tmp_path):
    """A written answer counts 0 and shows as pending until graded by hand; then it counts, and a
    regrade keeps it. An override of a part's score, once a regrade scores that part differently,
    is listed for review. The course's export plugin and the HTML report say both."""
    from autograder.gradebook.export import CourseCsvExport
    from autograder.gradebook.store import recorded_score

    _populate(db_url)
    pending = recorded_score(db_url, COURSE, "m1w02", "alice")
    assert (pending.final, pending.pending, pending.possible) == (4.0, 2.0, 6.0)
    assert "2 points of written answers not graded yet" in pending.text()
    assert "Waiting for a grader" in write_html_report(db_url, COURSE, tmp_path / "r.html").read_text()
    with _gb(db_url) as gb:
        grades = {g.name: g for g in gb.find_submission_notebook("vit", "m1w02", "alice").grades}
        assert grades["written-1"].needs_manual_grade
        grades["written-1"].manual_score = 1.5
        grades["written-1"].needs_manual_grade = False
        grades["part-vit"].manual_score = 3.0  # an override of the autograder's 4
        gb.db.commit()
    vit = GradeResult(submission="alice", week="m1w02", tests=[outcome("test_vit", 1, False)])
    record_autograde(db_url, COURSE, "m1w02", "alice", "vit", vit, ["vit"])  # a regrade that scores it 0
    graded = recorded_score(db_url, COURSE, "m1w02", "alice")
    assert (graded.final, graded.manual, graded.pending, graded.tests) == (4.5, 1.5, 0.0, 3.0)
    out = tmp_path / "export.csv"
    with _gb(db_url) as gb:
        CourseCsvExport(to=str(out)).export(gb)
    row = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(out.open())}[("m1w02", "alice")]
    assert (float(row["score"]), float(row["pending_manual_points"]), row["overrides_to_review"]) == (4.5, 0.0, "1")
    report = write_html_report(db_url, COURSE, tmp_path / "r2.html").read_text()
    waiting = report.split("<h2>Waiting for a grader</h2>")[1].split("<h2>")[0]
    listed = re.findall(r"<tr><td>(\w+)</td><td>[^<]*</td><td>(\w+)</td><td><code>([\w-]+)</code>.*?"
                        r"'tag late'>([^<]+)<", waiting)
    assert listed == [("m1w01", "alice", "written-1", "not graded yet"), ("m1w01", "bob", "written-1", "not graded yet"),
                      ("m1w02", "alice", "part-vit", "regraded: review the override")]


def test_html_report(db_url, tmp_path):
    _populate(db_url)
    failures = {WEEK: {"test_attention_values[2]": 1.0, "test_attention_values[3]": 0.5, "test_mlp": 0.0},
                "m1w02": {"test_vit": 0.25}}
    path = write_html_report(db_url, COURSE, tmp_path / "report.html", failures=failures,
                             now=DUE + timedelta(days=30))
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text
    assert "<link" not in text and "<script" not in text  # self-contained
    images = re.findall(r'<img alt="Score distribution of ([^"]+)"[^>]*src="data:image/png;base64,', text)
    assert images == [WEEK, "m1w02"]
    for heading in ("Overview", "Score distributions", "Most often failed tests", "Late submissions",
                    "Missing submissions"):
        assert f"<h2>{heading}</h2>" in text
    failed = text.split("<h2>Most often failed tests</h2>")[1].split("<h2>")[0]
    assert failed.index("test_attention_values[2]") < failed.index("test_attention_values[3]")
    assert "100%" in failed and "50%" in failed and "25%" in failed
    assert "test_mlp<" not in failed  # never failed: not listed
    late = text.split("<h2>Late submissions</h2>")[1].split("<h2>")[0]
    assert "bob" in late and "2 h 30 min" in late and "alice" not in late
    missing = text.split("<h2>Missing submissions</h2>")[1]
    assert "Chen, Carol" in missing and "carol" in missing
    assert ("<td>m1w02</td><td>bob</td>" in missing)
    assert "<td>m1w01</td><td>Abbot, Alice</td>" not in missing


def test_a_week_not_yet_due_has_no_missing_submissions(db_url, tmp_path):
    _populate(db_url)
    text = write_html_report(db_url, COURSE, tmp_path / "r.html", now=DUE + timedelta(days=1)).read_text()
    missing = text.split("<h2>Missing submissions</h2>")[1]
    assert "<td>m1w01</td>" in missing and "Chen, Carol" in missing  # due a day ago
    assert "<td>m1w02</td>" not in missing  # due in six days


def test_html_report_on_an_empty_gradebook(db_url, tmp_path):
    text = write_html_report(db_url, COURSE, tmp_path / "r.html").read_text()
    assert "No submissions yet." in text and "No failure data given" in text


def test_feedback_text_in_words():
    text = feedback_text(alice_first(), PARTS)
    assert text.splitlines()[0] == "Autograder: 3 of 6 tests passed, 5 of 11 points."
    assert "- [attention] test attention values[2] (1 pt): failed: expected 0.5, got 0.7" in text
    assert "- test style (3 pt): failed: unused" in text


def test_notebook_added_after_the_submission_gets_its_grades(db_url):
    record_autograde(db_url, COURSE, WEEK, "alice", NOTEBOOK, alice_first(), PARTS)
    with _gb(db_url) as gb:  # a rebuild added a second notebook to the week
        gb.add_notebook("extra", WEEK)
        gb.add_grade_cell("part-norm", "extra", WEEK, max_score=3, cell_type="code")
    record_autograde(db_url, COURSE, WEEK, "alice", "extra", result_of("alice", ("test_norm", 1, True)), ["norm"])
    with _gb(db_url) as gb:
        assert gb.find_grade("part-norm", "extra", WEEK, "alice").auto_score == 3.0
        assert gb.find_submission(WEEK, "alice").score == pytest.approx(13.0)


@pytest.mark.parametrize("student", ["-1-1", "@A1", "=HYPERLINK(\"http://x\")", "+1", "\tx"])
def test_csv_cells_a_student_controls_never_start_a_formula(tmp_path, student):
    rows = [{"id": student, "name": student, "scores": {WEEK: 1.0}, "max_scores": {WEEK: 1.0}, "total": 1.0}]
    [_, _, row] = list(csv.reader(write_csv(rows, tmp_path / "c.csv").open()))
    assert row[:2] == ["'" + student] * 2, "a leading apostrophe makes the cell text"
