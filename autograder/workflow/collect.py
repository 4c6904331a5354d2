"""Instructor: collect the latest submission of each student into `.course-work/submitted/`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from autograder.config import Course
from autograder.workflow.exchange import check_result, course_folder
from autograder.workflow.nbconfig import instructor_config, submitted_folder
from autograder.workflow.settings import WorkflowError, WorkflowSettings
from autograder.workflow.timeutil import as_utc


@dataclass(frozen=True)
class Collected:
    student: str
    notebook: Path
    submitted_at: dt.datetime  # aware, UTC
    late_by: dt.timedelta      # zero when on time or when the week has no due date


def collect_week(course: Course, root: Path, week_id: str, settings: WorkflowSettings) -> list[Collected]:
    """nbgrader's collect (newest submission per student, replacing older collected ones),
    then every collected submission of the week, sorted by student."""
    from nbgrader.apps import NbGraderAPI
    from autograder.pipeline.build import put_venv_on_path

    week = course.week(week_id)
    inbound = course_folder(settings, week_id) / "inbound"
    if not inbound.is_dir():
        raise WorkflowError(f"{inbound} is missing; release {week_id} again to recreate it")
    put_venv_on_path()
    root = Path(root).resolve()
    (root / "gradebook").mkdir(exist_ok=True)
    api = NbGraderAPI(config=instructor_config(root, settings))
    check_result(api.collect(week_id, update=True), f"collecting {week_id}")
    collected = read_collected(root, week)
    if not collected:
        raise WorkflowError(f"nothing to collect for {week_id}: no student has submitted it yet "
                            f"(submissions arrive in {inbound})")
    return collected


def read_collected(root: Path, week) -> list[Collected]:
    """The week's submissions already collected into the course folder, sorted by student."""
    found = [_read(folder, week) for folder in sorted(submitted_folder(Path(root)).glob(f"*/{week.id}"))]
    return [c for c in found if c is not None]


def _read(folder: Path, week) -> Collected | None:
    from nbgrader.utils import parse_utc

    stamp = folder / "timestamp.txt"
    if not stamp.is_file():
        return None
    submitted_at = as_utc(parse_utc(stamp.read_text().strip()))
    due = as_utc(week.due)
    late_by = max(submitted_at - due, dt.timedelta(0)) if due else dt.timedelta(0)
    return Collected(student=folder.parent.name, notebook=_notebook(folder, week.slug),
                     submitted_at=submitted_at, late_by=late_by)


def _notebook(folder: Path, slug: str) -> Path:
    """The week's notebook; if the student renamed it, the only notebook there is."""
    expected = folder / f"{slug}.ipynb"
    if expected.is_file():
        return expected
    found = sorted(folder.glob("*.ipynb"))
    return found[0] if len(found) == 1 else expected
