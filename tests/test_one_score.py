"""One score for one submission, in every place a person reads it, and nbgrader's own commands
working in the course folder with no flags.

A late submission of a week with a written answer is autograded (the written answer pending),
the written answer is graded by hand through nbgrader's API, the week is regraded, and then
the autograder's result, results.json, feedback.md, the gradebook table, its CSV and HTML
report, `nbgrader export` and the feedback page all say the same score.
"""

from __future__ import annotations

import csv
import os
import html
import json
import re
import subprocess
import sys

import nbformat
import pytest
import yaml

from autograder.config import load_course
from autograder.gradebook.report import write_html_report
from autograder.gradebook.table import scores_table, write_csv
from autograder.grading.autograde import autograde_week
from autograder.workflow import feedback_week, release_week
from autograder.workflow.nbconfig import gradebook_url
from autograder.workflow.settings import settings_from_course
from tests.conftest import HONEST_SOFTMAX

WEEK, STUDENT = "m1w01", "bob"
WRITTEN_CELL = """
# %% [markdown] written=20
# **Question (20 points).** Why does softmax subtract the row maximum first?
#
# ### BEGIN SOLUTION
# So that the exponentials cannot overflow; the result is unchanged.
# ### END SOLUTION
"""
LATE = "2027-01-20 12:00:00.000000 UTC"  # due 2027-01-18 23:59: two started days late


@pytest.fixture
def released(toy, tmp_path):
    """The toy week with a 20-point written answer, due before bob's submission, released."""
    _, root = toy
    reference = root / "reference" / "m1w01_toy.py"
    reference.write_text(reference.read_text() + WRITTEN_CELL)
    data = yaml.safe_load((root / "course.yaml").read_text())
    data["weeks"][0].update(due="2027-01-18T23:59:00", points=100)
    data["workflow"] = {"late_policy": "per_day", "penalty_per_day": 0.1, "exchange": str(tmp_path / "exchange")}
    (root / "course.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "exchange").mkdir()
    course = load_course(root / "course.yaml")
    release_week(course, root, WEEK, settings_from_course(course))
    folder = root / ".course-work" / "submitted" / STUDENT / WEEK
    folder.mkdir(parents=True)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(HONEST_SOFTMAX)])
    nbformat.write(notebook, folder / "m1w01_toy.ipynb")
    (folder / "timestamp.txt").write_text(LATE)
    (folder / "submission_secret.txt").write_text("secret")
    return course, root


def nbgrader(root, *args: str) -> subprocess.CompletedProcess:
    """nbgrader's own command line, run in the course folder with no settings passed."""
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, capture_output=True, text=True,
                          timeout=300)


def every_score(course, root) -> dict[str, object]:
    """The score as each report says it, after a (re)grade of bob."""
    settings = settings_from_course(course)
    (graded,) = autograde_week(course, root, WEEK, settings, students=[STUDENT])
    folder = root / ".course-work" / "autograded" / STUDENT / WEEK
    row = next(r for r in scores_table(gradebook_url(root), settings.course_id) if r["id"] == STUDENT)
    canvas = list(csv.reader(write_csv([row], root / "canvas.csv").open()))
    report = write_html_report(gradebook_url(root), settings.course_id, root / "report.html").read_text()
    exported = nbgrader(root, "export", "--to", str(root / "export.csv"))
    assert exported.returncode == 0, exported.stderr
    export = next(r for r in csv.DictReader((root / "export.csv").open()) if r["student_id"] == STUDENT)
    (page,) = feedback_week(course, root, WEEK, settings, students=[STUDENT], release=False)
    page_text = html.unescape(page.html.read_text())
    return {
        "autograde": graded.score.final,
        "results.json": json.loads((folder / "results.json").read_text())["score"],
        "feedback.md": float(re.search(r"\*\*Score: ([\d.]+) / 100", (folder / "feedback.md").read_text())[1]),
        "gradebook": row["scores"][WEEK],
        "canvas csv": float(canvas[2][2]),
        "html report mean": float(re.search(r"<td>m1w01</td><td>[^<]*</td><td class='num'>100</td>"
                                            r"<td class='num'>1 / 1</td><td class='num'>([\d.]+)<", report)[1]),
        "nbgrader export": float(export["score"]),
        "feedback page header": float(re.search(r"Score: ([\d.]+) / 100", page_text)[1]),
        "feedback page summary": float(re.search(r"Score: ([\d.]+) of 100 points", page_text)[1]),
        "pending": (graded.score.pending, float(export["pending_manual_points"]), row["pending"].get(WEEK, 0.0)),
    }


@pytest.mark.slow
def test_one_score_everywhere_before_and_after_a_manual_grade(released):
    course, root = released
    before = every_score(course, root)
    # hidden tests: 5 of 5 points, worth the 80 of 100 the written answer leaves; 2 started days late
    # at 10% of 100 each: 80 - 20 = 60, with the written answer's 20 points pending
    assert before.pop("pending") == (20.0, 20.0, 20.0)
    assert set(before.values()) == {60.0}, before
    feedback = (root / ".course-work" / "autograded" / STUDENT / WEEK / "feedback.md").read_text()
    assert "20 points of written answers not graded yet" in feedback

    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url(root), course_id=course.workflow.course_id) as gb:
        grade = gb.find_grade("written-1", "m1w01_toy", WEEK, STUDENT)
        assert grade.needs_manual_grade, "formgrader lists the written answer as needing a grade"
        grade.manual_score, grade.needs_manual_grade = 15.0, False
        gb.db.commit()

    after = every_score(course, root)  # the regrade keeps the manual grade
    assert after.pop("pending") == (0.0, 0.0, 0.0)
    assert set(after.values()) == {75.0}, after  # 80 + 15 - 20


@pytest.mark.slow
def test_nbgraders_own_commands_see_the_course(released):
    """nbgrader_config.py in the course folder: nbgrader's commands need no flags, write no stray
    gradebook, and formgrader finds the week's source folder."""
    course, root = released
    autograde_week(course, root, WEEK, settings_from_course(course), students=[STUDENT])
    students = nbgrader(root, "db", "student", "list")
    assert students.returncode == 0 and STUDENT in students.stdout, students.stdout + students.stderr
    assignments = nbgrader(root, "db", "assignment", "list")
    assert WEEK in assignments.stdout, assignments.stdout + assignments.stderr
    listed = nbgrader(root, "list")
    assert WEEK in listed.stdout + listed.stderr, listed.stdout + listed.stderr  # released into the exchange
    assert not (root / "gradebook.db").exists(), "nbgrader used the course's gradebook, not a stray one"
    assert (root / "build" / "source" / WEEK / "m1w01_toy.ipynb").is_file(), "formgrader lists source/ folders"
    assert "course.yaml" in (root / "nbgrader_config.py").read_text()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _browse(url: str) -> str:
    """The page as a real browser shows it once its scripts have run: Debian's chromium, headless."""
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--virtual-time-budget=15000", "--dump-dom", url], capture_output=True, text=True,
                          timeout=120)
    return done.stdout


@pytest.mark.slow
def test_formgrader_in_a_real_server_shows_the_course(released):
    """JupyterLab's server with nbgrader's formgrader, started in the course folder with no flags
    but its own port and token, looked at through headless chromium: the week is listed, bob's
    submission too, with the autograder's part score; a written answer graded by hand through
    formgrader's API is in the gradebook's one score."""
    import shutil as shutil_
    import time
    import urllib.request

    if shutil_.which("chromium") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the formgrader test, but chromium is missing (does .ci/run install it?)")
        pytest.skip("Debian's chromium is not installed")
    course, root = released
    autograde_week(course, root, WEEK, settings_from_course(course), students=[STUDENT])
    # on loopback and without a token: the browser's page scripts call formgrader's API with no login cookie
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root",
                               f"--port={port}", "--IdentityProvider.token=", "--ServerApp.ip=127.0.0.1",
                               "--ServerApp.disable_check_xsrf=True"],
                              cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def api(path: str, data: dict | None = None, method: str = "GET"):
        request = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(data).encode() if data
                                         else None)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    try:
        for _ in range(120):
            try:
                api("/api/status")
                break
            except OSError:
                time.sleep(0.5)
        assignments = _browse(f"{base}/formgrader/manage_assignments")
        assert "Loading, please wait" not in assignments and re.search(r">\s*m1w01\s*<", assignments), \
            "formgrader lists the released week"
        submissions = _browse(f"{base}/formgrader/manage_submissions/{WEEK}")
        assert "Loading, please wait" not in submissions and re.search(rf">\s*{STUDENT}\s*<", submissions), \
            "formgrader lists bob's submission"
        from nbgrader.api import Gradebook

        with Gradebook(gradebook_url(root), course_id=course.workflow.course_id) as gb:
            notebook_id = gb.find_submission_notebook("m1w01_toy", WEEK, STUDENT).id
        grades = {g["name"]: g for g in api(f"/formgrader/api/grades?submission_id={notebook_id}")}
        assert grades["part-softmax"]["auto_score"] == pytest.approx(80.0), "the part's score, out of its 80"
        assert grades["written-1"]["needs_manual_grade"]
        gradebook = _browse(f"{base}/formgrader/gradebook/{WEEK}/m1w01_toy")
        assert "Loading, please wait" not in gradebook and re.search(rf">\s*{STUDENT}\s*<", gradebook), gradebook[-2000:]
        assert re.search(r">\s*80(\.0+)?\s*/\s*100(\.0+)?\s*<", gradebook), \
            ("formgrader's gradebook shows the autograded points, out of the week's", gradebook[-2000:])
        api(f"/formgrader/api/grade/{grades['written-1']['id']}", {"manual_score": 15.0}, method="PUT")
    finally:
        server.terminate()
        server.wait(timeout=30)
    from autograder.gradebook.store import recorded_score

    score = recorded_score(gradebook_url(root), course.workflow.course_id, WEEK, STUDENT)
    assert (score.manual, score.pending, score.final) == (15.0, 0.0, 75.0), "graded by hand in formgrader"
