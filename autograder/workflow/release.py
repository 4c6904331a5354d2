"""Instructor: release a ready week into the exchange, and find the weeks that are due."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from autograder.config import Course
from autograder.workflow.exchange import check_exchange, check_result, keep_sticky
from autograder.workflow.nbconfig import instructor_config, write_nbgrader_config
from autograder.workflow.settings import WorkflowError, WorkflowSettings
from autograder.workflow.timeutil import as_utc_naive


def due_weeks(course: Course, today: dt.date) -> list[str]:
    """Ready weeks whose release date is today or earlier, in course order."""
    return [w.id for w in course.weeks if w.state == "ready" and w.release is not None and w.release <= today]


def _check_gives(course: Course, week) -> None:
    """A week that gives away another's solution waits until that week's late window has closed."""
    for other in map(course.week, week.gives):
        if other.due is None:
            continue
        opens = other.due + course.workflow.late_window()
        if as_utc_naive(dt.datetime.now()) < as_utc_naive(opens):
            raise WorkflowError(f"{week.id} gives away {other.id}'s solution (course.yaml weeks[{week.id}].gives), "
                                f"so it cannot be released before {opens:%Y-%m-%d %H:%M}: {other.id} is due "
                                f"{other.due:%Y-%m-%d %H:%M} and late work counts for "
                                f"{course.workflow.late_window().days} days")


def release_week(course: Course, root: Path, week_id: str, settings: WorkflowSettings,
                 force: bool = False) -> Path:
    """Build the week if needed, record it (with its due date) in the gradebook and release
    it into the exchange; returns the exchange's outbound folder for the week. Keeps
    nbgrader's source folder of the week and the course's nbgrader_config.py, so that
    nbgrader's own commands and formgrader see the course.

    `force` replaces a week already in the exchange (students who fetched keep their copy).
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.api import Gradebook
    from autograder.layout import CoursePaths
    from autograder.pipeline.build import build_week, put_venv_on_path

    week = course.week(week_id)
    if week.state != "ready":
        raise WorkflowError(f"week {week_id} is {week.state!r}, not 'ready'; set state: ready in course.yaml "
                            "once its reference, tests and release are done")
    _check_gives(course, week)
    exchange = check_exchange(settings)
    root = Path(root).resolve()
    if not CoursePaths(root).release(week_id).is_dir():
        build_week(course, week_id, root)
    outbound = exchange / settings.course_id / "outbound" / week_id
    if outbound.exists() and not force:
        raise WorkflowError(f"week {week_id} is already in the exchange ({outbound}); release again with force=True "
                            "to replace it")
    put_venv_on_path()
    config = instructor_config(root, settings)
    config.ExchangeReleaseAssignment.force = force
    CoursePaths(root).gradebook_db.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:  # records the notebook and its part grade cells
        build_week(course, week_id, root, into=Path(tmp) / week_id, db_url=config.CourseDirectory.db_url,
                   source_into=CoursePaths(root).source(week_id))
    write_nbgrader_config(root)
    with Gradebook(config.CourseDirectory.db_url, settings.course_id) as gb:
        gb.update_or_create_assignment(week_id, duedate=as_utc_naive(week.due))
    api = NbGraderAPI(config=config)
    check_result(api.release_assignment(week_id), f"releasing {week_id}")
    keep_sticky(exchange)
    return outbound

