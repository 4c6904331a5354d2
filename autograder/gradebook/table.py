"""One row per student with a score per assignment, and a Canvas-style CSV of it.

Scores are what nbgrader's own CSV export calls `score`: `SubmittedAssignment.score` (the
sum over the submission's grade cells of the manual score where a grader gave one, else
the auto score, plus extra credit) less its `late_submission_penalty`, never below zero.
"""

from __future__ import annotations

import csv
from pathlib import Path

from nbgrader.api import Gradebook


def _assignments(gb: Gradebook) -> list:
    return sorted(gb.assignments, key=lambda a: a.name)


def scores_table(db_url: str, course_id: str) -> list[dict]:
    """Rows of {"id", "first_name", "last_name", "email", "name", "scores", "max_scores", "total",
    "max_total", "pending"}, sorted by student id.

    `scores` maps every assignment in the database to the student's score, or None where
    the student has no submission; `total` counts those as 0. `pending` maps an assignment to
    the points of its written answers not graded yet (counted as 0 in its score).
    """
    with Gradebook(db_url, course_id=course_id) as gb:
        assignments = _assignments(gb)
        max_scores = {a.name: float(a.max_score or 0.0) for a in assignments}
        rows = []
        for student in sorted(gb.students, key=lambda s: s.id):
            submitted = {sub.assignment.name: sub for sub in student.submissions}
            scores = {a.name: (final_score(submitted[a.name]) if a.name in submitted else None)
                      for a in assignments}
            rows.append({
                "id": student.id,
                "first_name": student.first_name,
                "last_name": student.last_name,
                "email": student.email,
                "name": display_name(student.first_name, student.last_name, student.id),
                "scores": scores,
                "max_scores": dict(max_scores),
                "total": sum(s for s in scores.values() if s is not None),
                "max_total": sum(max_scores.values()),
                "pending": {name: points for name, sub in submitted.items() if (points := pending_points(sub))},
            })
        return rows


def waiting_cells(submission) -> list[dict]:
    """The submission's grade cells a person must look at: written answers with no grade yet
    ("not graded yet") and manual overrides the autograder has since scored differently
    ("regraded: review the override")."""
    from autograder.gradebook.parts import WRITTEN_PREFIX

    found = []
    for notebook in submission.notebooks:
        for grade in notebook.grades:
            if not grade.needs_manual_grade:
                continue
            pending = grade.manual_score is None and grade.cell.name.startswith(WRITTEN_PREFIX)
            if pending or grade.manual_score is not None:
                found.append({"cell": grade.cell.name, "points": float(grade.max_score or 0.0),
                              "why": "not graded yet" if pending else "regraded: review the override"})
    return found


def pending_points(submission) -> float:
    """The points of the submission's written answers not graded yet."""
    return sum(c["points"] for c in waiting_cells(submission) if c["why"] == "not graded yet")


def final_score(submission) -> float:
    """The score after the late penalty, as `nbgrader export` computes it."""
    return max(0.0, float(submission.score) - float(submission.late_submission_penalty or 0.0))


def display_name(first: str | None, last: str | None, fallback: str) -> str:
    """Canvas's "Last, First"; the student id when no name is known."""
    if first and last:
        return f"{last}, {first}"
    return last or first or fallback


def write_csv(rows: list[dict], path: str | Path, missing: str = "") -> Path:
    """Canvas-style columns: `Student`, `ID`, one per assignment, `Total`, and `Notes` (Canvas's
    own notes column: written answers still to grade); the row after the header is Canvas's
    `Points Possible`.

    A missing submission is written as `missing` (blank by default, which Canvas reads as
    "not graded"; pass "0" to enter zeros).
    """
    path = Path(path)
    assignments: list[str] = []
    for row in rows:
        for name in row["scores"]:
            if name not in assignments:
                assignments.append(name)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Student", "ID", *assignments, "Total", "Notes"])
        possible = rows[0]["max_scores"] if rows else {}
        writer.writerow(["Points Possible", "", *(_fmt(possible.get(name, 0.0)) for name in assignments),
                         _fmt(sum(possible.get(name, 0.0) for name in assignments)), ""])
        for row in rows:
            cells = []
            for name in assignments:
                score = row["scores"].get(name)
                cells.append(missing if score is None else _fmt(score))
            writer.writerow([text_cell(row["name"]), text_cell(row["id"]), *cells, _fmt(row["total"]),
                             pending_note(row)])
    return path


def pending_note(row: dict) -> str:
    """`m1w04: 4 points of written answers not graded yet`, one clause per assignment."""
    return "; ".join(f"{name}: {points:g} points of written answers not graded yet"
                     for name, points in sorted(row.get("pending", {}).items()))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(text: str) -> str:
    """A cell a spreadsheet shows as text, never runs: one that would start a formula gets a
    leading apostrophe (OWASP's advice for CSV injection)."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _fmt(value: float) -> str:
    return f"{round(value, 4):g}"
