"""`course demo`: one week's whole loop, in a throwaway copy of the course.

The instructor releases the week into a private nbgrader exchange; two students fetch it
and hand in, one the answer key and one the answer key with a plausible bug (one of the
week's mutants); the instructor collects, autogrades, releases feedback and reads the
gradebook. Each step calls the function its `course` command calls, so the demo is also
a tour of the commands.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

from autograder.config import Course
from autograder.grading.mutants import MutantError, load_mutants
from autograder.layout import CoursePaths
from autograder.pipeline.build import source_notebook
from autograder.workflow import WorkflowSettings, fetch_week, submit_week
from autograder.workflow.settings import WorkflowError

COPIED = ("reference", "assignments", "release")
DAYS_TO_DUE = 7


@dataclass(frozen=True)
class DemoStudent:
    id: str
    work: str                       # what they hand in, in words
    notebook: nbformat.NotebookNode


def make_demo_course(repo: Path, target: Path, week_id: str, today: dt.date | None = None) -> Path:
    """A copy of the course in `target/course`, with its exchange in `target/exchange` and
    the week released today and due in a week (so both demo students are on time whatever
    the date). Returns the copy's root."""
    target, root = Path(target), Path(target) / "course"
    if target.exists() and any(target.iterdir()):
        raise WorkflowError(f"{target} is not empty; give the demo a new folder")
    root.mkdir(parents=True)
    for name in (n for n in COPIED if (Path(repo) / n).is_dir()):
        shutil.copytree(Path(repo) / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (target / "exchange").mkdir()
    data = yaml.safe_load((Path(repo) / "course.yaml").read_text())
    today = today or dt.date.today()
    data.setdefault("workflow", {})["exchange"] = str((target / "exchange").resolve())
    weeks = {week["id"]: week for week in data["weeks"]}
    demo = weeks[week_id]
    demo["release"], demo["due"] = today, today + dt.timedelta(days=DAYS_TO_DUE)
    for given in demo.get("gives", []):  # the weeks whose solutions it gives are long past
        weeks[given]["release"], weeks[given]["due"] = today - dt.timedelta(days=28), today - dt.timedelta(days=21)
    (root / "course.yaml").write_text("# A copy made by `course demo`.\n" + yaml.safe_dump(data, sort_keys=False))
    return root


def demo_students(course: Course, root: Path, week_id: str, bug: str | None = None) -> list[DemoStudent]:
    """ada hands in the answer key; ben the answer key with one of the week's known bugs
    (`bug` names a mutant; default: the first)."""
    key = source_notebook(course, course.week(week_id), root)
    mutants = load_mutants(CoursePaths(root).mutants(week_id))
    if not mutants:
        raise WorkflowError(f"{week_id} has no mutants to take a plausible bug from")
    chosen = [m for m in mutants if m.name == bug] if bug else mutants[:1]
    if not chosen:
        raise WorkflowError(f"{week_id} has no mutant {bug!r}; it has {', '.join(m.name for m in mutants)}")
    try:
        buggy = chosen[0].apply_to_notebook(key)
    except MutantError as exc:
        raise WorkflowError(str(exc)) from None
    return [DemoStudent("ada", "the answer key", key),
            DemoStudent("ben", f"one bug: {chosen[0].bug}", buggy)]


def hand_in(student: DemoStudent, week_id: str, homes: Path, settings: WorkflowSettings) -> str:
    """Fetch the week as `student`, put their notebook in place of the released one, submit;
    returns nbgrader's timestamp. Each student has their own folder and nbgrader cache."""
    home = Path(homes) / student.id
    folder = fetch_week(week_id, student.id, home, settings, cache=home / "nbgrader-cache")
    (released,) = folder.glob("*.ipynb")
    nbformat.write(student.notebook, released)
    return submit_week(week_id, student.id, folder, settings, cache=home / "nbgrader-cache")
