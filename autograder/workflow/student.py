"""Student: fetch a released week into a work folder, and submit it under a student id.

Where a student's notebook is, one rule for `course check` and `course submit`
(`find_notebook`): the path given (a notebook, or a folder holding the week's notebook);
else `<slug>.ipynb` in this folder (working inside the week's folder); else
`<week>/<slug>.ipynb` below it (the folder `course fetch` wrote into). Never the release's copy.

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
                cache: Path | None = None, left_out: list[str] | None = None) -> str:
    """Submit a notebook (saved under the released notebook's name) or a fetched week folder (its
    notebook and the release's files; the names of other files there are added to `left_out`);
    returns nbgrader's timestamp of the submission."""
    _check_student(student)
    course = course_folder(settings, week_id)
    if not (course / "inbound").is_dir():
        raise WorkflowError(f"{course / 'inbound'} is missing; the instructor should release {week_id} again")
    with tempfile.TemporaryDirectory(prefix=f"submit-{week_id}-") as tmp:
        staged = Path(tmp) / week_id
        skipped = _stage(Path(notebook_or_dir), staged, course / "outbound" / week_id)
        if left_out is not None:
            left_out.extend(skipped)
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


def find_notebook(week_id: str, slug: str, given: Path | None = None, here: Path | None = None) -> Path:
    """The student's notebook of the week, by the rule in this module's docstring."""
    name = f"{slug}.ipynb"
    if given is not None:
        given = Path(given)
        if given.is_dir():
            given = given / name
        if not given.is_file():
            raise WorkflowError(f"{given} does not exist: name the week's notebook ({name}) or its folder")
        return given
    here = Path(here or Path.cwd())
    candidates = [here / name, here / week_id / name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise WorkflowError(f"no {name} here (looked at {', '.join(map(str, candidates))}): run this inside the "
                        f"week's folder, name the notebook, or fetch the week first (course fetch {week_id})")


def _stage(given: Path, staged: Path, released: Path) -> list[str]:
    """Copy what is submitted to `staged`: the week's notebook (under its released name) and the
    files of the release beside it; returns the names left out (scratch notebooks, data)."""
    if not given.exists():
        raise WorkflowError(f"{given} does not exist; pass the week's notebook or the folder fetch_week made")
    names = sorted(p.name for p in released.glob("*.ipynb"))
    staged.mkdir()
    if given.is_file() and given.suffix == ".ipynb":
        shutil.copy2(given, staged / (names[0] if len(names) == 1 else given.name))
        return []
    if not given.is_dir():
        raise WorkflowError(f"{given} is neither a notebook (.ipynb) nor a folder; submit the week's notebook")
    week_files = {p.name for p in released.iterdir()}
    left_out = []
    for entry in sorted(given.iterdir()):
        if entry.name in week_files and not SKIP(str(given), [entry.name]):
            if entry.is_dir():
                shutil.copytree(entry, staged / entry.name, ignore=SKIP)
            else:
                shutil.copy2(entry, staged / entry.name)
        elif not entry.name.startswith(".") and entry.name not in ("__pycache__",):
            left_out.append(entry.name)
    if not any((staged / n).is_file() for n in names):
        raise WorkflowError(f"{given} does not hold the week's notebook ({', '.join(names)}); submit that notebook")
    return left_out


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
