"""Feedback through nbgrader: generated from the autograder's results, released into the
exchange, fetched by the student; hidden tests never show, and nbgrader's default would
show them."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from autograder.grading.score import score_from_tests

from autograder.config import load_course
from autograder.grading.autograde import autograde_week
from autograder.workflow import (WorkflowError, collect_week, feedback_week, fetch_feedback_week, fetch_week,
                                 release_week, submit_week)
from autograder.workflow.feedback import WRAP_WIDTH, write_feedback_notebook
from autograder.workflow.nbconfig import instructor_config
from autograder.workflow.settings import WorkflowSettings

from .conftest import HONEST_SOFTMAX, TOY

WEEK = "m1w01"
SECRET = "SECRET_HIDDEN_CHECK_7f3a"
# An nbgrader-style hidden test region in the week's self-check cell: the release strips it,
# the gradebook keeps it (nbgrader records each grade cell's source at generate_assignment).
HIDDEN_REGION = f"""
### BEGIN HIDDEN TESTS
{SECRET} = softmax(torch.zeros(3))
assert torch.allclose({SECRET}, torch.full((3,), 1 / 3))
### END HIDDEN TESTS
"""


def page_text(path: Path) -> str:
    """What a reader sees: the page without tags, scripts and styles."""
    body = re.sub(r"<(style|script)\b.*?</\1>", "", path.read_text(), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The toy week released with a hidden region, submitted by alice (honest, on time) and
    bob (the placeholder, late), collected and autograded: (course, root, settings, cache)."""
    base = tmp_path_factory.mktemp("feedback")
    root = base / "course"
    shutil.copytree(TOY, root)
    reference = root / "reference" / "m1w01_toy.py"
    reference.write_text(reference.read_text().rstrip() + "\n" + HIDDEN_REGION)
    data = yaml.safe_load((root / "course.yaml").read_text())
    data["weeks"][0]["due"] = "2030-01-01T00:00:00"
    (root / "course.yaml").write_text(yaml.safe_dump(data))
    course = load_course(root / "course.yaml")
    (base / "exchange").mkdir()
    settings = WorkflowSettings(exchange=base / "exchange", late_policy="per_day", penalty_per_day=0.1)
    release_week(course, root, WEEK, settings)
    assert SECRET not in (root / "release" / WEEK / "m1w01_toy.ipynb").read_text()
    cache = base / "cache"  # each student's own nbgrader cache, as on their own machine
    for student, source in (("alice", HONEST_SOFTMAX), ("bob", None)):
        folder = fetch_week(WEEK, student, base / student, settings, cache=cache / student)
        if source:
            notebook = folder / "m1w01_toy.ipynb"
            nb = nbformat.read(notebook, as_version=4)
            cell = next(c for c in nb.cells if "raise NotImplementedError" in c.source)
            cell.source = source
            nbformat.write(nb, notebook)
        submit_week(WEEK, student, folder, settings, cache=cache / student)
    collect_week(course, root, WEEK, settings)
    bob_stamp = root / ".course-work" / "submitted" / "bob" / WEEK / "timestamp.txt"
    bob_stamp.write_text("2030-01-02 12:00:00.000000 UTC")  # a day and a half after the due date
    autograde_week(course, root, WEEK, settings)
    return course, root, settings, cache


@pytest.mark.slow
def test_feedback_is_released_in_words_without_hidden_tests(graded):
    course, root, settings, cache = graded
    done = {f.student: f for f in feedback_week(course, root, WEEK, settings)}
    assert sorted(done) == ["alice", "bob"]
    alice, bob = page_text(done["alice"].html), page_text(done["bob"].html)
    hidden_source = (root / "assignments" / WEEK / "hidden" / "test_h.py").read_text()
    for text in (alice, bob):
        assert SECRET not in text and "BEGIN HIDDEN TESTS" not in text
        for line in hidden_source.splitlines():
            if line.strip().startswith(("assert", "x =", "def test_", "ours =")):
                assert line.strip() not in text, f"hidden test source shown: {line.strip()}"
        assert "softmax equals torch.softmax on random logits" in text, "each test in words"
    assert "4 of 4 hidden tests passed" in alice and "Submitted on time" in alice
    assert "[FAILED] softmax is stable for large logits" in bob
    assert "not implemented yet" in bob, "the failure message a student can act on"
    assert "Submitted 1 day 12 h late" in bob
    outputs = [o.text for c in nbformat.read(root / ".course-work" / "autograded" / "bob" / WEEK / "m1w01_toy.ipynb",
                                              as_version=4).cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert outputs and all(len(line) <= WRAP_WIDTH for text in outputs for line in text.splitlines()), \
        "long failure lines are wrapped to fit their box"
    page = done["bob"].html.read_text()
    assert re.search(r'<img[^>]*alt="\\sigma\(x\)_i[^>]*src="data:image/svg\+xml;base64,', page), \
        "the reference's formula is drawn into the page, readable offline"


@pytest.mark.slow
def test_nbgraders_default_feedback_would_show_the_hidden_region(graded, tmp_path):
    """The reason feedback_config exists: without ClearHiddenTests, nbgrader shows the secret."""
    from nbgrader.apps import NbGraderAPI

    course, root, settings, _ = graded
    config = instructor_config(root, settings)
    config.CourseDirectory.feedback_directory = str(tmp_path / "default-feedback")
    write_feedback_notebook(root, WEEK, course.week(WEEK).title, "alice",
                            {"notebook": "m1w01_toy.ipynb", "parts": ["softmax"]}, config,
                            score_from_tests(0, 0, 0, 100))
    result = NbGraderAPI(config=config).generate_feedback(WEEK, "alice", force=True)
    assert result["success"], result.get("log")
    (page,) = (tmp_path / "default-feedback" / "alice" / WEEK).glob("*.html")
    assert SECRET in page_text(page)


@pytest.mark.slow
def test_student_fetches_their_feedback(graded, tmp_path):
    course, root, settings, cache = graded
    feedback_week(course, root, WEEK, settings, students=["alice"])
    (page,) = fetch_feedback_week(WEEK, "alice", tmp_path / "alice", settings, cache=cache / "alice")
    assert "4 of 4 hidden tests passed" in page_text(page)
    assert page.parent.parent == tmp_path / "alice" / WEEK / "feedback"
    with pytest.raises(WorkflowError, match="autograde"):
        feedback_week(course, root, WEEK, settings, students=["nobody"])


@pytest.mark.slow
def test_locked_cells_edited_by_a_student_are_shown_as_released(graded, tmp_path):
    """A student who rewrites the self-check cell to print a fake result does not see it
    presented back as the autograder's words."""
    course, root, settings, _ = graded
    submitted = root / ".course-work" / "submitted" / "bob" / WEEK / "m1w01_toy.ipynb"
    nb = nbformat.read(submitted, as_version=4)
    check_cell = next(c for c in nb.cells if c.source.startswith("from autograder.selfcheck"))
    check_cell.source = 'print("FAKE: all hidden tests passed, 100/100")'
    nbformat.write(nb, submitted)
    (done,) = feedback_week(course, root, WEEK, settings, students=["bob"], release=False)
    text = page_text(done.html)
    assert "FAKE" not in text
    assert 'check("m1w01","softmax")' in re.sub(r"\s+", "", text), "the released cell, highlighted"


@pytest.mark.slow
def test_a_tampered_notebook_gets_feedback_like_anyone_else(graded, tmp_path):
    """Malformed or forged nbgrader metadata once failed nbgrader's feedback with KeyError 'grade_id'."""
    course, root, settings, _ = graded
    submitted = root / ".course-work" / "submitted" / "bob" / WEEK / "m1w01_toy.ipynb"
    original = submitted.read_text()
    nb = nbformat.read(submitted, as_version=4)
    for cell in nb.cells:
        if "nbgrader" in cell.metadata:
            cell.metadata["nbgrader"].pop("grade_id", None)
    forged = nbformat.v4.new_code_cell('print("FORGED: 100/100")')
    forged.metadata["nbgrader"] = {"grade": True, "solution": False, "points": 100, "grade_id": "part-forged",
                                   "locked": True, "schema_version": 3}
    odd = nbformat.v4.new_code_cell("x = 1")
    odd.metadata["nbgrader"] = "not a dict"
    nb.cells += [forged, odd]
    submitted.write_text(nbformat.writes(nb))
    try:
        (done,) = feedback_week(course, root, WEEK, settings, students=["bob"], release=False)
    finally:
        submitted.write_text(original)
    text = page_text(done.html)
    assert "[FAILED] softmax is stable for large logits" in text
    assert "0 of 4 hidden tests passed" in text


@pytest.mark.slow
def test_on_a_shared_account_a_student_fetches_only_their_own_feedback(graded, tmp_path):
    """Two students submitting from one OS account share nbgrader's cache, whose fetch once
    returned every student's pages (and told the student to open the newest, a classmate's)."""
    course, root, settings, cache = graded
    feedback_week(course, root, WEEK, settings)
    shared = tmp_path / "shared-cache"
    for student in ("alice", "bob"):
        shutil.copytree(cache / student, shared, dirs_exist_ok=True)
    work = tmp_path / "lab-machine"
    bobs = fetch_feedback_week(WEEK, "bob", work, settings, cache=shared)
    alices = fetch_feedback_week(WEEK, "alice", work, settings, cache=shared)  # same folder, after bob
    assert len(bobs) == 1 and len(alices) == 1 and bobs != alices
    assert "0 of 4 hidden tests passed" in page_text(bobs[0])
    assert "4 of 4 hidden tests passed" in page_text(alices[0])


def test_formulas_become_images_and_what_cannot_be_drawn_stays_tex():
    from autograder.workflow.offline_math import render_math

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "Softmax $\\sigma(x)_i = e^{x_i}$ and\n$$\\frac{1}{2}\\|x\\|^2$$\n"
        "an environment $\\begin{aligned} a \\end{aligned}$; it costs $5 and $6."),
        nbformat.v4.new_code_cell("x = '$a$'")])
    assert render_math(notebook) == 2
    text = notebook.cells[0].source
    assert text.count("data:image/svg+xml;base64,") == 2 and '<div style="text-align: center">' in text
    assert "<code>$\\begin{aligned} a \\end{aligned}$</code>" in text
    assert "costs $5 and $6." in text, "money is not math"
    assert notebook.cells[1].source == "x = '$a$'", "code cells are left alone"


def test_long_failure_lines_are_wrapped_with_their_indent():
    from autograder.workflow.feedback import _stream

    message = "      yours " + "1.2345, " * 40 + "expected ..."
    text = _stream("header\n" + message).text
    lines = text.splitlines()
    assert all(len(line) <= WRAP_WIDTH for line in lines) and len(lines) >= 4
    assert lines[0] == "header" and all(line.startswith("        ") for line in lines[2:]), "continuations indented"
    assert "".join(line.strip() for line in lines[1:]).replace(" ", "") == message.replace(" ", ""), "nothing lost"
