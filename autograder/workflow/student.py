"""Student: fetch a released week into a work folder, and submit it under a student id.

The student id is explicit: nbgrader's submit names the inbound folder
`<student>+<week>+<timestamp>+<random>` from `CourseDirectory.student_id` when that is set
(`nbgrader submit --student=alice`), and from the OS user only when it is left at '*'.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from autograder.workflow.exchange import course_folder, run_step
from autograder.workflow.nbconfig import student_config
from autograder.workflow.settings import WorkflowError, WorkflowSettings

STUDENT_ID = re.compile(r"^[A-Za-z0-9_.@-]+$")
SKIP = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc")


def fetch_week(week_id: str, student: str, dest_dir: Path, settings: WorkflowSettings,
               cache: Path | None = None) -> Path:
    """Copy the released week into `dest_dir/<week>/`; files already there are kept and only
    missing ones are restored, so fetching again never overwrites a student's work."""
    _check_student(student)
    course_folder(settings, week_id)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    config = student_config(student, dest_dir, settings, cache)
    config.ExchangeFetchAssignment.replace_missing_files = True
    run_step(_app("FetchAssignment", config, week_id), f"fetching {week_id} for {student}")
    return dest_dir.resolve() / week_id


def submit_week(week_id: str, student: str, notebook_or_dir: Path, settings: WorkflowSettings,
                cache: Path | None = None) -> str:
    """Submit a notebook (saved under the released notebook's name) or a fetched week folder;
    returns nbgrader's timestamp of the submission."""
    _check_student(student)
    course = course_folder(settings, week_id)
    if not (course / "inbound").is_dir():
        raise WorkflowError(f"{course / 'inbound'} is missing; the instructor should release {week_id} again")
    with tempfile.TemporaryDirectory(prefix=f"submit-{week_id}-") as tmp:
        staged = Path(tmp) / week_id
        _stage(Path(notebook_or_dir), staged, course / "outbound" / week_id)
        config = student_config(student, Path(tmp), settings, cache)
        app = _app("Submit", config, week_id)
        run_step(app, f"submitting {week_id} for {student}")
        return app.timestamp


def fetch_feedback_week(week_id: str, student: str, dest_dir: Path, settings: WorkflowSettings,
                        cache: Path | None = None) -> list[Path]:
    """Copy the feedback released for this student's submissions of the week into
    `dest_dir/<week>/feedback/<timestamp>/`; returns the pages, newest last.

    nbgrader finds a submission's feedback through the copy `submit_week` kept in the
    student's cache, so this works on the machine (and with the `cache`) they submitted from.
    """
    _check_student(student)
    course_folder(settings, week_id)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    config = student_config(student, dest_dir, settings, cache)
    app = _app("FetchFeedback", config, week_id)
    with _own_submissions(Path(app.cache), settings.course_id, student, week_id) as (view, stamps):
        app.cache = str(view)
        run_step(app, f"fetching feedback on {week_id} for {student}")
    feedback = dest_dir.resolve() / week_id / "feedback"
    pages = sorted(page for stamp in stamps for page in (feedback / stamp).glob("*.html"))
    if not pages:
        raise WorkflowError(f"no feedback on {week_id} has been released for {student} yet "
                            "(or it was submitted from another machine, whose submission cache has the key)")
    return pages


@contextmanager
def _own_submissions(cache: Path, course_id: str, student: str, week_id: str):
    """A view of nbgrader's submission cache with only this student's submissions of the week,
    and their timestamps.

    nbgrader's FetchFeedback looks for every `*+<week>+*` entry of the cache, which on a shared
    OS account (a lab machine, a shared JupyterHub user) holds classmates' submissions too, and
    would fetch their pages as well.
    """
    entries = sorted((cache / course_id).glob(f"{student}+{week_id}+*"))
    with tempfile.TemporaryDirectory(prefix="feedback-cache-") as tmp:
        view = Path(tmp) / course_id
        view.mkdir()
        for entry in entries:
            (view / entry.name).symlink_to(entry.resolve(), target_is_directory=True)
        yield Path(tmp), [entry.name.split("+")[2] for entry in entries]


def _stage(given: Path, staged: Path, released: Path) -> None:
    if not given.exists():
        raise WorkflowError(f"{given} does not exist; pass the week's notebook or the folder fetch_week made")
    if given.is_dir():
        shutil.copytree(given, staged, ignore=SKIP)
    elif given.is_file() and given.suffix == ".ipynb":
        names = sorted(p.name for p in released.glob("*.ipynb"))
        staged.mkdir()
        shutil.copy2(given, staged / (names[0] if len(names) == 1 else given.name))
    else:
        raise WorkflowError(f"{given} is neither a notebook (.ipynb) nor a folder; submit the week's notebook")


def _app(kind: str, config, week_id: str):
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import ExchangeFactory

    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = week_id
    factory = ExchangeFactory(config=config)
    return getattr(factory, kind)(coursedir=coursedir, authenticator=Authenticator(config=config), config=config)


def _check_student(student: str) -> None:
    if not STUDENT_ID.match(student or ""):
        raise WorkflowError(f"student id {student!r} may use letters, digits and _ . @ - only "
                            "(nbgrader separates names with '+')")
