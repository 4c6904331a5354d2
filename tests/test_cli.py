"""The `course` command as a user runs it: a real subprocess, real files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import HONEST_SOFTMAX, REPO, write_module


def course(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **env})


def test_help_lists_every_command():
    result = course("--help")
    assert result.returncode == 0
    for command in ("list", "build", "solution", "check", "grade", "verify", "demo"):
        assert command in result.stdout
    assert "--results" in course("grade", "--help").stdout


def test_list_shows_all_weeks():
    result = course("list")
    assert result.returncode == 0
    for week in ("m1w01", "m2w04", "m3w21"):
        assert week in result.stdout
    assert "of 29 weeks ready" in result.stdout
    narrow = course("list", COLUMNS="80")
    assert "2027-01-18 23:59" in narrow.stdout and "m1w01" in narrow.stdout, "ids and dates stay whole at 80 columns"
    assert "m1w01 ... m3w21" in course("check", "--help").stdout, "--help says what WEEK is"
    assert "bubblewrap" in course("autograde", "--help").stdout


def test_invalid_course_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "course.yaml"
    bad.write_text("title: x\nmodules: [{id: 1, title: a}]\nweeks:\n  - {id: m1w01, module: 1, title: t, "
                   "category: implementation, points: lots}\n")
    result = course("--course", str(bad), "list")
    assert result.returncode == 2
    assert str(bad) in result.stderr and "weeks[m1w01].points" in result.stderr
    assert "Traceback" not in result.stderr


def test_outside_a_checkout_course_says_how_to_find_the_course(tmp_path):
    """The package installed without a checkout beside it (a copy on PYTHONPATH, run from a folder
    with no course.yaml above it): one sentence naming --course and $COURSE_YAML."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "autograder", site / "autograder", ignore=shutil.ignore_patterns("__pycache__"))
    lost = course("list", cwd=tmp_path, PYTHONPATH=str(site))
    assert lost.returncode == 2, lost.stdout + lost.stderr
    assert "--course" in lost.stderr and "COURSE_YAML" in lost.stderr and "Traceback" not in lost.stderr
    found = course("list", cwd=tmp_path, PYTHONPATH=str(site), COURSE_YAML=str(REPO / "course.yaml"))
    assert found.returncode == 0 and "m1w01" in found.stdout, found.stderr


def test_unknown_week_is_a_usage_error():
    result = course("grade", "m9w99", "x.ipynb")
    assert result.returncode == 2 and "no week 'm9w99'" in result.stderr


def test_grade_writes_results_and_feedback(toy, tmp_path):
    _, root = toy
    submission = write_module(tmp_path, "mine", HONEST_SOFTMAX)
    results, feedback = tmp_path / "results.json", tmp_path / "feedback.md"
    result = course("grade", "m1w01", str(submission), "--results", str(results), "--feedback", str(feedback),
                    cwd=root)
    assert result.returncode == 0, result.stderr
    assert "hidden tests: 5 / 5 points" in result.stdout and "score: 100 / 100" in result.stdout
    assert json.loads(results.read_text())["score"] == 100, "the hidden tests' 5 points are the week's 100"
    assert "Every test passed" in feedback.read_text() and "**Score: 100 / 100**" in feedback.read_text()


def test_submission_text_is_never_terminal_markup(toy, tmp_path):
    """A message a submission controls is printed as it is: no styles, no emoji codes."""
    _, root = toy
    text = "[red]boom[/red] :train: [link=http://x]y[/link]"
    submission = write_module(tmp_path, "mine", f"\ndef softmax(x):\n    raise ValueError({text!r})\n")
    result = course("grade", "m1w01", str(submission), cwd=root, COLUMNS="400")
    assert result.returncode == 0, result.stderr
    assert text in result.stdout


def test_check_runs_public_tests_from_the_shell(toy, tmp_path):
    _, root = toy
    assert course("build", cwd=root).returncode == 0
    mine = write_module(tmp_path, "mine", HONEST_SOFTMAX)
    result = course("check", "m1w01", str(mine), cwd=root)
    assert result.returncode == 0, result.stderr
    assert "1 of 1 public tests passed" in result.stdout
    placeholder = root / "release" / "m1w01" / "m1w01_toy.ipynb"
    result = course("check", "m1w01", str(placeholder), cwd=root)
    assert "0 of 1 public tests passed" in result.stdout and "not implemented yet" in result.stdout
    assert result.returncode == 1, "a failed self-check is a failure in a script or a CI job"
    typo = course("check", "m1w01", str(mine), "--part", "softmx", cwd=root)
    assert typo.returncode == 2 and "no part 'softmx'; its parts are softmax" in typo.stderr
    one = course("check", "m1w01", str(mine), "--part", "softmax", cwd=root)
    assert one.returncode == 0 and "1 of 1 public tests passed" in one.stdout


def _solved_week_folder(root: Path, parent: Path) -> Path:
    """A week folder as `course fetch` writes it, with the notebook solved."""
    import nbformat

    folder = parent / "m1w01"
    shutil.copytree(root / "release" / "m1w01", folder)
    notebook = folder / "m1w01_toy.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    next(c for c in nb.cells if "raise NotImplementedError" in c.source).source = HONEST_SOFTMAX
    nbformat.write(nb, notebook)
    return folder


def test_check_finds_the_students_notebook_by_submits_rule(toy, tmp_path):
    _, root = toy
    assert course("build", cwd=root).returncode == 0
    folder = _solved_week_folder(root, tmp_path / "work")
    for where in (folder, folder.parent):  # inside the week's folder, or where `course fetch` ran
        result = course("--course", str(root / "course.yaml"), "check", "m1w01", cwd=where)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"checking {folder / 'm1w01_toy.ipynb'}" in result.stdout
        assert "1 of 1 public tests passed" in result.stdout and "your definitions: softmax" in result.stdout
    nowhere = course("--course", str(root / "course.yaml"), "check", "m1w01", cwd=tmp_path)
    assert nowhere.returncode == 2 and "no m1w01_toy.ipynb here" in nowhere.stderr, "never the release's copy"


def test_check_has_the_graders_time_limits(toy, tmp_path):
    """A hang in a self-check ends as it would in grading, in seconds, in the grader's words."""
    _, root = toy
    settings = root / "course.yaml"
    settings.write_text(settings.read_text().replace("test_timeout_s: 8", "test_timeout_s: 2")
                        .replace("import_timeout_s: 15", "import_timeout_s: 2"))
    assert course("build", cwd=root).returncode == 0
    stuck = write_module(tmp_path, "stuck", HONEST_SOFTMAX + "\nwhile True:\n    pass\n")
    started = time.monotonic()
    result = course("check", "m1w01", str(stuck), cwd=root)
    assert result.returncode == 1 and "loading your notebook took longer than 2 s" in result.stdout
    looping = write_module(tmp_path, "looping", HONEST_SOFTMAX.replace(
        "def softmax(x):\n", "def softmax(x):\n    while True:\n        try:\n            pass\n"
        "        except Exception:\n            pass\n"))
    result = course("check", "m1w01", str(looping), cwd=root)
    assert result.returncode == 1 and "did not finish within this test's time limit of 2 s" in result.stdout
    assert time.monotonic() - started < 60


def test_release_fetch_submit_collect_from_the_shell(toy, tmp_path):
    """The nbgrader workflow as two students and an instructor would type it."""
    _, root = toy
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    assert course("release", "m1w01", "--exchange", str(exchange), cwd=root).returncode == 0
    again = course("release", "m1w01", "--exchange", str(exchange), cwd=root)
    assert again.returncode == 1 and "already in the exchange" in again.stderr
    for student in ("alice", "bob"):
        home = tmp_path / student
        home.mkdir()
        fetched = course("fetch", "m1w01", "--student", student, "--dest", str(home), "--exchange", str(exchange),
                         cwd=root, JUPYTER_DATA_DIR=str(home / "jupyter"))
        assert fetched.returncode == 0, fetched.stderr
        notebook = home / "m1w01" / "m1w01_toy.ipynb"
        assert notebook.is_file()
        submitted = course("submit", "m1w01", str(notebook), "--student", student, "--exchange", str(exchange),
                           cwd=root, JUPYTER_DATA_DIR=str(home / "jupyter"))
        assert submitted.returncode == 0, submitted.stderr
    collected = course("collect", "m1w01", "--exchange", str(exchange), cwd=root)
    assert collected.returncode == 0, collected.stderr
    assert "2 submissions" in collected.stdout and "alice" in collected.stdout and "bob" in collected.stdout

    graded = course("autograde", "m1w01", "--jobs", "2", "--exchange", str(exchange), cwd=root)
    assert graded.returncode == 0, graded.stderr
    assert "alice: 0 / 5" in graded.stdout and "bob: 0 / 5" in graded.stdout  # placeholders, as fetched
    results = json.loads((root / ".course-work" / "autograded" / "alice" / "m1w01" / "results.json").read_text())
    assert results["score"] == 0 and "Submitted on time" in results["output"]

    report, csv = tmp_path / "report.html", tmp_path / "grades.csv"
    book = course("gradebook", "--csv", str(csv), "--html", str(report), cwd=root)
    assert book.returncode == 0, book.stderr
    assert "alice" in book.stdout and "bob" in book.stdout
    assert csv.read_text().splitlines()[0].startswith("Student,ID")
    html = report.read_text()
    assert "<img" in html and "test_softmax_values" in html

    released = course("feedback", "m1w01", "--exchange", str(exchange), cwd=root)
    assert released.returncode == 0, released.stderr
    assert "feedback for 2 students" in released.stdout
    alice = tmp_path / "alice"
    fetched = course("fetch-feedback", "m1w01", "--student", "alice", "--dest", str(alice), "--exchange",
                     str(exchange), cwd=root, JUPYTER_DATA_DIR=str(alice / "jupyter"))
    assert fetched.returncode == 0, fetched.stderr
    (page,) = (alice / "m1w01" / "feedback").glob("*/m1w01_toy.html")
    assert "0 of 4 hidden tests passed" in page.read_text()


def test_workflow_errors_are_one_sentence(toy, tmp_path):
    _, root = toy
    missing = course("fetch", "m1w01", "--student", "alice", "--exchange", str(tmp_path / "nowhere"), cwd=root)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "exchange" in missing.stderr


@pytest.mark.slow
def test_demo_runs_the_whole_loop_on_the_real_week(tmp_path):
    """The README's main job: release m1w01, two students submit (the key and a known bug),
    collect, autograde, feedback, gradebook and the report, in a course copy of its own."""
    result = course("demo", "--dir", str(tmp_path / "demo"), "--bug", "no_scale")
    assert result.returncode == 0, result.stderr + result.stdout
    out = " ".join(result.stdout.split())
    assert "ada: 100 / 100" in out
    ben = re.search(r"ben: (\d+) / 100", out)
    assert ben and int(ben.group(1)) < 100, "the plausible bug loses points"
    assert "forgets the 1/sqrt(d) scale" in out
    demo = tmp_path / "demo"
    report = (demo / "report.html").read_text()
    assert "<img" in report and "test_attention_hand_computed" in report, "plots and the most failed tests"
    page = (demo / "course" / ".course-work" / "feedback" / "ben" / "m1w01" / "m1w01_vit.html").read_text()
    assert "[FAILED]" in page and "BEGIN HIDDEN" not in page
    assert not (REPO / ".course-work" / "submitted" / "ada").exists(), "the real course is left alone"
