"""The nbgrader exchange workflow with real nbgrader, a real exchange folder and real
notebooks: release, fetch and submit by students who are not the OS user, collect, late
submissions and the late policy, and the errors a user meets."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from autograder.config import load_course
from autograder.workflow import (WorkflowError, WorkflowSettings, apply_late_policy, collect_week, due_weeks,
                                 fetch_week, release_week, submit_week)
from autograder.workflow import exchange as exchange_module

from .conftest import HONEST_SOFTMAX, TOY

WEEK = "m1w01"
NOTEBOOK = "m1w01_toy.ipynb"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The toy course with release/m1w01 built once, by release_week itself (the build is the slow part)."""
    root = tmp_path_factory.mktemp("template") / "course"
    shutil.copytree(TOY, root)
    exchange = tmp_path_factory.mktemp("exchange0")
    assert not (root / "release" / WEEK).exists()
    release_week(load_course(root / "course.yaml"), root, WEEK, WorkflowSettings(course_id="toy", exchange=exchange))
    assert (root / "release" / WEEK / NOTEBOOK).is_file()
    assert (exchange / "toy" / "outbound" / WEEK / NOTEBOOK).is_file()
    return root


@pytest.fixture
def course(built: Path, tmp_path: Path):
    """A fresh copy of the built course and an empty exchange: (course, root, settings).

    The gradebook is copied too: creating one costs nbgrader about 4 s of `alembic`."""
    root = tmp_path / "course"
    shutil.copytree(built, root, ignore=shutil.ignore_patterns(".course-work"))
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    settings = WorkflowSettings(course_id="toy", exchange=exchange)
    return load_course(root / "course.yaml"), root, settings


def edit_course(root: Path, **week_changes) -> None:
    data = yaml.safe_load((root / "course.yaml").read_text())
    data["weeks"][0].update(week_changes)
    (root / "course.yaml").write_text(yaml.safe_dump(data))


def solve(notebook: Path, source: str = HONEST_SOFTMAX) -> None:
    """What a student does: replace the placeholder in the softmax cell."""
    nb = nbformat.read(notebook, as_version=4)
    [cell] = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax"]
    assert "NotImplementedError" in cell.source
    cell.source = source
    nbformat.write(nb, notebook)


def fetch_solve_submit(student: str, tmp_path: Path, settings: WorkflowSettings, source: str = HONEST_SOFTMAX):
    folder = fetch_week(WEEK, student, tmp_path / student, settings, cache=tmp_path / f"{student}-cache")
    solve(folder / NOTEBOOK, source)
    return folder, submit_week(WEEK, student, folder, settings, cache=tmp_path / f"{student}-cache")


def test_two_students_fetch_submit_and_are_collected(course, tmp_path):
    course_, root, settings = course
    release_week(course_, root, WEEK, settings)
    for student in ("alice", "bob"):
        assert student != getpass.getuser()
        folder, _ = fetch_solve_submit(student, tmp_path, settings)
        assert folder == (tmp_path / student / WEEK).resolve()
        assert (folder / "public_tests").is_dir()
    inbound = sorted(p.name for p in (settings.exchange / "toy" / "inbound").iterdir())
    assert [name.split("+")[:2] for name in inbound] == [["alice", WEEK], ["bob", WEEK]]

    collected = collect_week(course_, root, WEEK, settings)

    assert [c.student for c in collected] == ["alice", "bob"]
    for c in collected:
        assert c.notebook == root.resolve() / ".course-work" / "submitted" / c.student / WEEK / NOTEBOOK
        assert "torch.exp" in c.notebook.read_text()
        assert c.submitted_at.tzinfo is not None
        assert abs(dt.datetime.now(dt.timezone.utc) - c.submitted_at) < dt.timedelta(minutes=5)
        assert c.late_by == dt.timedelta(0)
    assert collected[0].submitted_at < collected[1].submitted_at
    again = fetch_week(WEEK, "alice", tmp_path / "alice", settings, cache=tmp_path / "alice-cache")
    assert "torch.exp" in (again / NOTEBOOK).read_text()  # fetching again keeps the student's work
    assert (root / "gradebook" / "gradebook.db").is_file()


def test_second_submission_replaces_the_first(course, tmp_path):
    course_, root, settings = course
    release_week(course_, root, WEEK, settings)
    folder, first = fetch_solve_submit("carol", tmp_path, settings, source="def softmax(x):\n    return x\n")
    assert [c.student for c in collect_week(course_, root, WEEK, settings)] == ["carol"]
    solve_again = nbformat.read(folder / NOTEBOOK, as_version=4)
    [cell] = [c for c in solve_again.cells if c.metadata["nbgrader"]["grade_id"] == "softmax"]
    cell.source = HONEST_SOFTMAX
    nbformat.write(solve_again, folder / NOTEBOOK)
    second = submit_week(WEEK, "carol", folder / NOTEBOOK, settings, cache=tmp_path / "carol-cache")
    assert second > first

    [latest] = collect_week(course_, root, WEEK, settings)

    assert latest.student == "carol"
    assert "torch.exp" in latest.notebook.read_text()
    assert latest.submitted_at.strftime("%Y-%m-%d %H:%M:%S.%f") == second.removesuffix(" UTC")
    assert len(list((settings.exchange / "toy" / "inbound").iterdir())) == 2


def test_late_submission_is_measured_against_the_due_date(course, tmp_path):
    _, root, settings = course
    due = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=1, hours=2)
    edit_course(root, due=due.replace(tzinfo=None).isoformat())
    course_ = load_course(root / "course.yaml")
    release_week(course_, root, WEEK, settings)
    fetch_solve_submit("dave", tmp_path, settings)

    [late] = collect_week(course_, root, WEEK, settings)

    assert dt.timedelta(days=1, hours=2) <= late.late_by < dt.timedelta(days=1, hours=2, minutes=5)
    score, why = apply_late_policy(8, 10, late.late_by, WorkflowSettings(late_policy="per_day"))
    assert score == pytest.approx(6) and "2 started days" in why


@pytest.mark.parametrize("policy, late_by, expected, words", [
    ("none", dt.timedelta(days=3), 7.0, "score stands"),
    ("zero", dt.timedelta(seconds=1), 0.0, "scores 0"),
    ("zero", dt.timedelta(0), 7.0, "on time"),
    ("per_day", dt.timedelta(hours=1), 6.0, "1 started day"),
    ("per_day", dt.timedelta(days=1, seconds=1), 5.0, "2 started days"),
    ("per_day", dt.timedelta(days=30), 0.0, "becomes 0"),
    ("per_day", -dt.timedelta(hours=5), 7.0, "on time"),
])
def test_apply_late_policy(policy, late_by, expected, words):
    settings = WorkflowSettings(late_policy=policy, penalty_per_day=0.1)
    score, why = apply_late_policy(7.0, 10.0, late_by, settings)
    assert score == pytest.approx(expected)
    assert words in why


def test_settings_refuse_an_unknown_policy():
    with pytest.raises(WorkflowError, match="none, zero or per_day"):
        WorkflowSettings(late_policy="halve")


def test_release_refuses_a_planned_week(course):
    _, root, settings = course
    edit_course(root, state="planned")
    with pytest.raises(WorkflowError, match="m1w01 is 'planned', not 'ready'"):
        release_week(load_course(root / "course.yaml"), root, WEEK, settings)
    assert list(settings.exchange.iterdir()) == []


def test_release_twice_needs_force(course):
    course_, root, settings = course
    release_week(course_, root, WEEK, settings)
    with pytest.raises(WorkflowError, match="already in the exchange.*force=True"):
        release_week(course_, root, WEEK, settings)
    assert release_week(course_, root, WEEK, settings, force=True).is_dir()


def test_due_weeks(tmp_path):
    root = tmp_path / "c"
    shutil.copytree(TOY, root)
    data = yaml.safe_load((root / "course.yaml").read_text())
    base = data["weeks"][0]
    data["weeks"] = [
        {**base, "id": "m1w01", "release": "2025-01-06"},
        {**base, "id": "m1w02", "release": "2025-01-13"},
        {**base, "id": "m1w03", "release": "2025-01-20"},
        {**base, "id": "m1w04", "release": "2025-01-01", "state": "planned", "reference": None},
        {**base, "id": "m1w05"},
    ]
    (root / "course.yaml").write_text(yaml.safe_dump(data))
    course_ = load_course(root / "course.yaml")
    assert due_weeks(course_, dt.date(2025, 1, 13)) == ["m1w01", "m1w02"]
    assert due_weeks(course_, dt.date(2024, 12, 31)) == []


def test_missing_exchange_says_how_to_create_it(toy, tmp_path):
    course_, root = toy
    settings = WorkflowSettings(course_id="toy", exchange=tmp_path / "no-exchange")
    calls = [
        lambda: release_week(course_, root, WEEK, settings),
        lambda: fetch_week(WEEK, "alice", tmp_path / "alice", settings),
        lambda: submit_week(WEEK, "alice", tmp_path, settings),
        lambda: collect_week(course_, root, WEEK, settings),
    ]
    for call in calls:
        with pytest.raises(WorkflowError, match=r"does not exist; create it once.*sudo mkdir -p .*no-exchange"):
            call()
    assert not (root / "release").exists()


def test_unwritable_exchange(course, tmp_path, monkeypatch):
    course_, root, settings = course
    settings.exchange.chmod(0o555)
    if os.geteuid() == 0:  # root may write anywhere; judge by the mode bits as a user would
        monkeypatch.setattr(exchange_module, "writable", lambda p: bool(p.stat().st_mode & 0o200))
    try:
        with pytest.raises(WorkflowError, match=r"not writable by this user.*chmod 1777"):
            release_week(course_, root, WEEK, settings)
        with pytest.raises(WorkflowError, match=r"not writable"):
            fetch_week(WEEK, "alice", tmp_path / "alice", settings)
    finally:
        settings.exchange.chmod(0o755)


def test_a_world_writable_exchange_needs_the_sticky_bit(course, tmp_path):
    """Without it, any student may rename or delete the course's folder in the exchange."""
    course_, root, settings = course
    settings.exchange.chmod(0o777)
    with pytest.raises(WorkflowError, match=r"without the sticky bit.*sudo chmod \+t"):
        release_week(course_, root, WEEK, settings)
    settings.exchange.chmod(0o1777)
    release_week(course_, root, WEEK, settings)


def test_submissions_cannot_be_listed_or_guessed_by_classmates(course, tmp_path):
    course_, root, settings = course
    release_week(course_, root, WEEK, settings)
    fetch_solve_submit("alice", tmp_path, settings)
    inbound = settings.exchange / "toy" / "inbound"
    assert inbound.stat().st_mode & 0o004 == 0, "others may not list the inbound folder"
    (name,) = [p.name for p in inbound.iterdir()]
    assert len(name.split("+")) == 4 and len(name.split("+")[3]) >= 12, "a random part no classmate can guess"
    feedback = settings.exchange / "toy" / "feedback"
    assert not feedback.exists() or feedback.stat().st_mode & 0o004 == 0


def test_not_released_yet_and_nothing_to_collect(course, tmp_path):
    course_, root, settings = course
    with pytest.raises(WorkflowError, match="m1w01 has not been released yet"):
        fetch_week(WEEK, "alice", tmp_path / "alice", settings)
    with pytest.raises(WorkflowError, match="m1w01 has not been released yet"):
        collect_week(course_, root, WEEK, settings)
    release_week(course_, root, WEEK, settings)
    with pytest.raises(WorkflowError, match="nothing to collect for m1w01"):
        collect_week(course_, root, WEEK, settings)


def test_submit_checks_student_id_and_path(course, tmp_path):
    course_, root, settings = course
    release_week(course_, root, WEEK, settings)
    with pytest.raises(WorkflowError, match="student id 'a\\+b'"):
        submit_week(WEEK, "a+b", tmp_path, settings)
    with pytest.raises(WorkflowError, match="does not exist"):
        submit_week(WEEK, "alice", tmp_path / "nope.ipynb", settings)
