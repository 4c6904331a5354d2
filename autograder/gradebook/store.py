"""Putting autograder results into nbgrader's gradebook database.

Each graded part of a week has one autograded grade cell, `part-<part>`, whose `max_score`
is the part's hidden points. `record_autograde` turns a `GradeResult` into the `auto_score`
of those cells, so formgrader, `nbgrader export` and the gradebook's own totals all see it.

Regrades: nbgrader keeps a grader's work in separate columns of the same rows, and this
module writes only the autograder's columns:

* `Grade.auto_score` is replaced on every call; `Grade.manual_score` and `Grade.extra_credit`
  are never touched. nbgrader's `Grade.score` is `manual_score` when one is set, else
  `auto_score` (plus extra credit), so an instructor's override keeps winning.
* `Grade.needs_manual_grade` becomes False once an auto score is set, unless a manual score
  exists and the new auto score differs from the old one: then the override is flagged for
  review in formgrader (nbgrader's own autograde flags every overridden cell on every run).
* The note for the student goes in `Comment.auto_comment`; `Comment.manual_comment`, which
  takes precedence in `Comment.comment`, is never touched.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

from nbgrader.api import Comment, Grade, Gradebook, MissingEntry, SubmittedNotebook

from autograder.gradebook.parts import PART_PREFIX, WRITTEN_PREFIX, part_of
from autograder.grading.score import WeekScore

_MAX_MESSAGE = 300


class GradebookError(Exception):
    """The gradebook database does not hold what a record needs (assignment, notebook)."""


def part_scores(result: Any, parts: list[str]) -> dict[str, tuple[float, float]]:
    """(earned, possible) points per part that has tests in `result`."""
    scores: dict[str, list[float]] = {}
    for test in result.tests:
        part = part_of(test.name, parts)
        if part is None:
            continue
        earned, possible = scores.setdefault(part, [0.0, 0.0])
        scores[part] = [earned + (test.points if test.passed else 0.0), possible + test.points]
    # a part whose tests are all worth 0 points is scored by the share of tests passed
    for part, (earned, possible) in scores.items():
        if possible <= 0:
            tests = [t for t in result.tests if part_of(t.name, parts) == part]
            scores[part] = [float(sum(t.passed for t in tests)), float(len(tests))]
    return {part: (earned, possible) for part, (earned, possible) in scores.items()}


def feedback_text(result: Any, parts: list[str]) -> str:
    """The note for one submission in words: why it could not be graded, or which tests failed."""
    lines: list[str] = []
    if result.error:
        lines.append(f"This submission could not be graded: {result.error}")
    failed = [t for t in result.tests if not t.passed]
    if result.tests:
        passed = len(result.tests) - len(failed)
        lines.append(f"Autograder: {passed} of {len(result.tests)} tests passed, "
                     f"{_num(result.earned)} of {_num(result.possible)} points.")
    for test in failed:
        part = part_of(test.name, parts)
        what = test.description or test.name
        message = " ".join((test.message or "").split())
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE - 1] + "…"
        where = f"[{part}] " if part else ""
        lines.append(f"- {where}{what} ({_num(test.points)} pt): failed"
                     + (f": {message}" if message else ""))
    for note in result.notes:
        if note and not result.error:  # with an error the notes are the grader's log tail
            lines.append(f"Note: {note}")
    return "\n".join(lines)


def record_autograde(db_url: str, course_id: str, week: str, student: str, notebook: str, result: Any,
                     parts: list[str], timestamp: datetime | None = None,
                     late_penalty: Callable[[float, float], float] | None = None) -> None:
    """Store one graded submission as the auto scores of its notebook's `part-<p>` grade cells.

    Creates the student and the submission if needed; the assignment and notebook must already
    be in the database (`nbgrader generate_assignment` puts them there). Calling it again
    replaces the auto scores and keeps every manual score. Grade cells of parts that have no
    test in `result` are left alone, unless the submission could not be graded at all
    (`result.error` and no tests), which scores every part 0.

    `late_penalty(score, max_score)` gives the points off for lateness; it is stored as
    nbgrader's `late_submission_penalty` of the notebook (what nbgrader's own autograde
    does with its late-submission plugin), computed from the notebook's score after this
    record, manual scores included.
    """
    notebook = notebook[:-len(".ipynb")] if notebook.endswith(".ipynb") else notebook
    with Gradebook(db_url, course_id=course_id) as gb:
        try:
            master = gb.find_notebook(notebook, week)
        except MissingEntry as exc:
            raise GradebookError(f"notebook {notebook} of assignment {week} is not in {db_url}; "
                                 "run generate_assignment first") from exc
        gb.update_or_create_student(student)
        try:
            submission = gb.find_submission(week, student)
        except MissingEntry:
            with gb.db.no_autoflush:  # nbgrader builds the submission's rows before adding them
                submission = gb.add_submission(week, student, **({"timestamp": timestamp} if timestamp else {}))
        else:
            if timestamp is not None:
                gb.update_or_create_submission(week, student, timestamp=timestamp)
        submitted = _submitted_notebook(gb, submission, master)

        failed_whole = bool(result.error) and not result.tests
        scores = part_scores(result, parts)
        grades = {g.cell_id: g for g in submitted.grades}
        for cell in master.grade_cells:
            if cell.name.startswith(WRITTEN_PREFIX):
                grade = grades.get(cell.id) or Grade(cell_id=cell.id, notebook=submitted)
                grade.needs_manual_grade = grade.manual_score is None  # formgrader lists it until graded
                continue
            if not cell.name.startswith(PART_PREFIX):
                continue
            part = cell.name[len(PART_PREFIX):]
            if failed_whole:
                score = 0.0
            elif part in scores:
                earned, possible = scores[part]
                score = round(cell.max_score * earned / possible, 6) if possible > 0 else 0.0
            else:
                continue
            grade = grades.get(cell.id) or Grade(cell_id=cell.id, notebook=submitted)
            changed = grade.auto_score is None or abs(grade.auto_score - score) > 1e-9
            grade.auto_score = score
            if grade.manual_score is None:
                grade.needs_manual_grade = False
            elif changed:
                grade.needs_manual_grade = True  # the override was made against another auto score

        if late_penalty is not None:
            score = sum(_effective(g) for g in submitted.grades)
            submitted.late_submission_penalty = max(0.0, late_penalty(score, float(master.max_score or 0.0)))
        comment = _note_comment(gb, submitted, master)
        if comment is not None:
            comment.auto_comment = feedback_text(result, parts) or None
        gb.db.commit()


def settle_late_penalties(db_url: str, course_id: str, week: str,
                          late_penalty: Callable[[float, float, timedelta], float]) -> int:
    """Recompute each submission's late penalty from its grades now (manual grades given since
    the autograder ran change what a penalty that depends on the score takes off) and from how
    late the gradebook says it was. Returns how many penalties changed."""
    changed = 0
    with Gradebook(db_url, course_id=course_id) as gb:
        try:
            assignment = gb.find_assignment(week)
        except MissingEntry:
            return 0
        for submission in assignment.submissions:
            late_by = timedelta(seconds=float(submission.total_seconds_late or 0.0))
            for notebook in submission.notebooks:
                score = sum(_effective(g) for g in notebook.grades)
                penalty = max(0.0, late_penalty(score, float(notebook.max_score or 0.0), late_by))
                if abs((notebook.late_submission_penalty or 0.0) - penalty) > 1e-9:
                    notebook.late_submission_penalty = penalty
                    changed += 1
        gb.db.commit()
    return changed


def recorded_score(db_url: str, course_id: str, week: str, student: str) -> WeekScore | None:
    """The week's one score as the gradebook holds it now (manual grades and the late penalty
    included); None when the student has no submission of the week."""
    with Gradebook(db_url, course_id=course_id) as gb:
        try:
            submission = gb.find_submission(week, student)
        except MissingEntry:
            return None
        return score_of(submission)


def score_of(submission) -> WeekScore:
    """A SubmittedAssignment's one score: its part cells, its written answers (graded or pending)
    and its late penalty, out of the assignment's points."""
    tests = manual = pending = penalty = 0.0
    for notebook in submission.notebooks:
        penalty += notebook.late_submission_penalty or 0.0
        for grade in notebook.grades:
            if not grade.cell.name.startswith(WRITTEN_PREFIX):
                tests += _effective(grade)
            elif grade.manual_score is None:
                pending += grade.max_score
            else:
                manual += grade.manual_score + (grade.extra_credit or 0.0)
    return WeekScore(tests=round(tests, 4), manual=manual, pending=pending, late_penalty=round(penalty, 4),
                     possible=float(submission.assignment.max_score or 0.0))


def _effective(grade: Grade) -> float:
    """nbgrader's `Grade.score`, computed here because the SQL property is stale before a flush."""
    base = grade.manual_score if grade.manual_score is not None else (grade.auto_score or 0.0)
    return base + (grade.extra_credit or 0.0)


def _submitted_notebook(gb: Gradebook, submission, master) -> SubmittedNotebook:
    """The submission's copy of `master`, created with its grades and comments when the
    notebook was added to the assignment after the submission was first recorded."""
    for nb in submission.notebooks:
        if nb.notebook_id == master.id:
            return nb
    with gb.db.no_autoflush:
        grade_cells, solution_cells = master.grade_cells, master.solution_cells
        nb = SubmittedNotebook(notebook=master, assignment=submission)
        for cell in grade_cells:
            Grade(cell_id=cell.id, notebook=nb)
        for cell in solution_cells:
            Comment(cell_id=cell.id, notebook=nb)
        gb.db.add(nb)
    gb.db.flush()
    return nb


def _note_comment(gb: Gradebook, submitted: SubmittedNotebook, master) -> Comment | None:
    """Where the autograder's note goes. nbgrader has comments on solution cells only and
    keeps no cell order, so: the solution cell that is not a written answer and comes first
    by name (else a written answer's cell); None when the notebook has no solution cell."""
    graded = {cell.name for cell in master.grade_cells}
    cells = sorted(master.solution_cells, key=lambda c: (c.name in graded, c.name))
    if not cells:
        return None
    cell = cells[0]
    for comment in submitted.comments:
        if comment.cell_id == cell.id:
            return comment
    comment = Comment(cell_id=cell.id, notebook=submitted)
    gb.db.add(comment)
    return comment


def _num(value: float) -> str:
    return f"{value:g}"
