"""Instructor: per-student feedback, generated and released through nbgrader.

For each autograded student the feedback notebook is their submitted notebook with

* locked cells restored from the gradebook (nbgrader's OverwriteCells, as `nbgrader
  autograde` does), so what a student edited in a cell they were not meant to edit is not
  shown back as ours;
* a summary at the top: the score after the late policy, and how many tests passed;
* under each part's self-check cell, in place of whatever output the student saved, that
  part's hidden tests in words: the one-line description, passed or failed, and the
  failure message. A test's source never appears;
* its formulas drawn into the page (offline_math), so that it reads the same offline.

nbgrader's `generate_feedback` then renders it with the gradebook's scores, and
`release_feedback` puts it in the exchange, where `fetch_feedback_week` finds it.

nbgrader's default feedback shows hidden tests: OverwriteCells puts back each grade cell's
source as recorded at generate_assignment, `### BEGIN HIDDEN TESTS` regions included, and
GenerateFeedback's default preprocessors (GetGrades, CSSHTMLHeaderPreprocessor) never
clear them. `feedback_config` adds ClearHiddenTests.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.config import Course
from autograder.grading.score import WeekScore
from autograder.layout import CoursePaths
from autograder.pipeline.week_info import read_week_info
from autograder.workflow.exchange import check_result
from autograder.workflow.late import late_penalty
from autograder.workflow.offline_math import render_math
from autograder.workflow.nbconfig import instructor_config, submitted_folder
from autograder.workflow.settings import WorkflowError, WorkflowSettings

SUBMISSION_FILES = ("timestamp.txt", "submission_secret.txt")
OUTPUT_LIMIT = 2000  # characters of one failure message shown under a part
WRAP_WIDTH = 100  # the page's text boxes do not wrap (its CSS is nbgrader's, and raw HTML is sanitised)


@dataclass(frozen=True)
class Feedback:
    student: str
    html: Path       # the generated page in .course-work/feedback/
    note: str        # why there is none, when html does not exist


def feedback_config(root: Path, settings: WorkflowSettings):
    """The instructor's nbgrader configuration, with hidden tests cleared from feedback."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades

    config = instructor_config(root, settings)
    config.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
    return config


def feedback_week(course: Course, root: Path, week_id: str, settings: WorkflowSettings,
                  students: list[str] | None = None, release: bool = True) -> list[Feedback]:
    """Generate (and with `release`, release) feedback for every autograded student of the week."""
    from nbgrader.apps import NbGraderAPI

    from autograder.gradebook.store import recorded_score, settle_late_penalties
    from autograder.pipeline.build import put_venv_on_path

    week = course.week(week_id)
    root = Path(root).resolve()
    graded = _autograded_students(root, week_id)
    if students:
        unknown = sorted(set(students) - set(graded))
        if unknown:
            raise WorkflowError(f"no autograded {week_id} submission for {', '.join(unknown)}; "
                                "run `course autograde` first")
        graded = [s for s in graded if s in students]
    if not graded:
        raise WorkflowError(f"no autograded submissions of {week_id}: run `course autograde {week_id}` first")
    info = read_week_info(CoursePaths(root).release(week_id))
    put_venv_on_path()
    config = feedback_config(root, settings)
    db_url = config.CourseDirectory.db_url
    settle_late_penalties(db_url, settings.course_id, week_id,
                          lambda score, possible, late_by: late_penalty(score, possible, late_by, settings))
    api = NbGraderAPI(config=config)
    done = []
    for student in graded:
        score = recorded_score(db_url, settings.course_id, week_id, student)
        if score is None:
            raise WorkflowError(f"the gradebook has no {week_id} submission of {student}: run `course autograde "
                                f"{week_id} --student {student}` again")
        notebook = write_feedback_notebook(root, week_id, week.title, student, info, config, score)
        check_result(api.generate_feedback(week_id, student, force=True), f"feedback for {student}")
        html = CoursePaths(root).work("feedback") / student / week_id / f"{notebook.stem}.html"
        if release:
            check_result(api.release_feedback(week_id, student), f"releasing feedback for {student}")
        done.append(Feedback(student, html, ""))
    return done


def _autograded_students(root: Path, week_id: str) -> list[str]:
    return sorted(p.parent.parent.name for p in CoursePaths(root).work("autograded").glob(f"*/{week_id}/results.json")
                  if (submitted_folder(root) / p.parent.parent.name / week_id / "timestamp.txt").is_file())


def write_feedback_notebook(root: Path, week_id: str, title: str, student: str, info: dict, config,
                            score: WeekScore) -> Path:
    """The notebook nbgrader's generate_feedback renders, in `.course-work/autograded/`."""
    target = CoursePaths(Path(root)).work("autograded") / student / week_id
    results = json.loads((target / "results.json").read_text())
    notebook, problem = graded_notebook(root, week_id, student, info, config)
    _annotate(notebook, results, info.get("parts", []), title, problem, score)
    render_math(notebook)
    return _write_graded(root, week_id, student, info, notebook)


def write_graded_notebook(root: Path, week_id: str, student: str, info: dict, config) -> Path:
    """The submitted notebook as formgrader shows it for grading by hand (written answers), in
    `.course-work/autograded/`: nbgrader's roles from the release, locked cells restored."""
    notebook, _ = graded_notebook(root, week_id, student, info, config)
    return _write_graded(root, week_id, student, info, notebook)


def graded_notebook(root: Path, week_id: str, student: str, info: dict, config):
    """The student's notebook with the released notebook's nbgrader roles and locked cells (or
    the released notebook, with the reason, when theirs cannot be read)."""
    submitted = submitted_folder(root) / student / week_id
    released = CoursePaths(Path(root)).release(week_id) / info["notebook"]
    notebook, problem = _base_notebook(submitted, released)
    _trust_only_released_metadata(notebook, nbformat.read(released, as_version=4))
    return _restore_locked_cells(notebook, week_id, info["notebook"], student, config), problem


def _write_graded(root: Path, week_id: str, student: str, info: dict, notebook) -> Path:
    submitted = submitted_folder(root) / student / week_id
    target = CoursePaths(Path(root)).work("autograded") / student / week_id
    target.mkdir(parents=True, exist_ok=True)
    path = target / info["notebook"]
    nbformat.write(notebook, path)
    for name in SUBMISSION_FILES:
        if (submitted / name).is_file():
            shutil.copy2(submitted / name, target / name)
    return path


def _base_notebook(submitted: Path, released: Path) -> tuple[nbformat.NotebookNode, str]:
    """The student's notebook, or the released one when theirs cannot be read."""
    found = sorted(submitted.glob("*.ipynb"))
    if found:
        try:
            notebook = nbformat.read(found[0], as_version=4)
            nbformat.validate(notebook)
            return notebook, ""
        except Exception as exc:  # the student's file: any way it can be broken is their result
            reason = f"your notebook could not be read ({type(exc).__name__}), so the released notebook is shown"
    else:
        reason = "no notebook was found in your submission, so the released notebook is shown"
    return nbformat.read(released, as_version=4), reason


def _trust_only_released_metadata(notebook, released) -> None:
    """A cell's nbgrader role comes from the released notebook, never from the student's copy:
    each released grade id keeps the released metadata (once), and every other cell loses its
    nbgrader metadata, which a tampered notebook could have made malformed (nbgrader's feedback
    then fails with a KeyError) or forged (a grade cell of its own)."""
    roles = {cell.metadata["nbgrader"]["grade_id"]: cell.metadata["nbgrader"] for cell in released.cells
             if isinstance(cell.get("metadata", {}).get("nbgrader"), dict) and "grade_id" in cell.metadata["nbgrader"]}
    for cell in notebook.cells:
        claimed = cell.get("metadata", {}).pop("nbgrader", None)
        grade_id = claimed.get("grade_id") if isinstance(claimed, dict) else None
        if isinstance(grade_id, str) and grade_id in roles:
            cell.metadata["nbgrader"] = copy.deepcopy(roles.pop(grade_id))


def _restore_locked_cells(notebook, week_id: str, notebook_name: str, student: str, config):
    from nbgrader.preprocessors import OverwriteCells

    resources = {"nbgrader": {"db_url": config.CourseDirectory.db_url, "assignment": week_id,
                              "notebook": Path(notebook_name).stem, "student": student}}
    try:
        notebook, _ = OverwriteCells(config=config).preprocess(notebook, resources)
    except Exception:  # tampered metadata: show the student's cells as they are
        pass
    return notebook


def _annotate(notebook, results: dict, parts: list[str], title: str, problem: str, score: WeekScore) -> None:
    from autograder.gradebook.parts import PART_PREFIX, part_of

    tests = results.get("tests", [])
    by_part: dict[str, list[dict]] = {}
    for test in tests:
        by_part.setdefault(part_of(test["name"], parts) or "", []).append(test)
    shown = set()
    for cell in notebook.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if cell.cell_type == "code" and grade_id.startswith(PART_PREFIX):
            part = grade_id[len(PART_PREFIX):]
            cell.outputs = [_stream(_part_text(part, by_part.get(part, [])))]
            cell.execution_count = None
            shown.add(part)
    rest = [t for part, group in by_part.items() if part not in shown for t in group]
    notebook.cells[:0] = _summary_cells(results, title, rest, problem, score)


def _summary_cells(results: dict, title: str, unplaced: list[dict], problem: str, score: WeekScore) -> list:
    extra = results.get("extra_data", {})
    tests = results.get("tests", [])
    passed = sum(t["status"] == "passed" for t in tests)
    pending = f" ({score.pending_text()})" if score.pending else ""
    late = f", after {score.late_penalty:g} points off for lateness" if score.late_penalty else ""
    written = f"; written answers {score.manual:g} points" if score.manual or score.pending else ""
    lines = [f"# Autograder feedback: {extra.get('week', '')}, {title}", "",
             f"**Score: {score.final:g} of {score.possible:g} points{late}.**{pending} "
             f"{passed} of {len(tests)} hidden tests passed, worth {score.tests:g} points{written}.", "",
             "Each part's tests are listed under its self-check cell below, with what went wrong where "
             "a test failed. The tests themselves stay hidden."]
    cells = [nbformat.v4.new_markdown_cell("\n".join(lines))]
    details = [text for text in (problem, results.get("output", "").strip(),
                                 _part_text("", unplaced) if unplaced else "") if text]
    if details:  # in a text output, so nothing a submission printed is ever rendered as HTML
        cell = nbformat.v4.new_code_cell("# notes from the autograder")
        cell.outputs = [_stream("\n\n".join(details))]
        cells.append(cell)
    return cells


def _part_text(part: str, tests: list[dict]) -> str:
    if not tests:
        return f"No hidden test of part {part!r} ran." if part else ""
    passed = sum(t["status"] == "passed" for t in tests)
    earned = sum(t["score"] for t in tests)
    possible = sum(t["max_score"] for t in tests)
    header = (f"Hidden tests of part {part!r}" if part else "Other hidden tests") + \
             f": {passed} of {len(tests)} passed, {earned:g} of {possible:g} points."
    lines = [header]
    for test in tests:
        description, _, message = test.get("output", "").partition("\n")
        mark = "passed" if test["status"] == "passed" else "FAILED"
        case = re.search(r"\[(.+)\]$", test["name"])
        what = (description or test["name"]) + (f" (case {case.group(1)})" if case else "")
        lines.append(f"  [{mark}] {what}: {test['score']:g}/{test['max_score']:g}")
        if test["status"] != "passed" and message.strip():
            text = message.strip()
            text = text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + " …"
            lines += ["      " + line for line in text.splitlines()]
    return "\n".join(lines)


def _stream(text: str):
    """A text output whose long lines are wrapped, each continuation indented like its line."""
    lines = []
    for line in text.splitlines():
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        lines += textwrap.wrap(line, WRAP_WIDTH, subsequent_indent=indent, break_long_words=True,
                               break_on_hyphens=False, drop_whitespace=False) or [""]
    return nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n")
