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
    "max_total"}, sorted by student id.

    `scores` maps every assignment in the database to the student's score, or None where
    the student has no submission; `total` counts those as 0.
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
            })
        return rows


def final_score(submission) -> float:
    """The score after the late penalty, as `nbgrader export` computes it."""
    return max(0.0, float(submission.score) - float(submission.late_submission_penalty or 0.0))


def display_name(first: str | None, last: str | None, fallback: str) -> str:
    """Canvas's "Last, First"; the student id when no name is known."""
    if first and last:
        return f"{last}, {first}"
    return last or first or fallback


def write_csv(rows: list[dict], path: str | Path, missing: str = "") -> Path:
    """Canvas-style columns: `Student`, `ID`, one per assignment, `Total`; the row after the
    header is Canvas's `Points Possible`.

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
        writer.writerow(["Student", "ID", *assignments, "Total"])
        possible = rows[0]["max_scores"] if rows else {}
        writer.writerow(["Points Possible", "", *(_fmt(possible.get(name, 0.0)) for name in assignments),
                         _fmt(sum(possible.get(name, 0.0) for name in assignments))])
        for row in rows:
            cells = []
            for name in assignments:
                score = row["scores"].get(name)
                cells.append(missing if score is None else _fmt(score))
            writer.writerow([_text_cell(row["name"]), _text_cell(row["id"]), *cells, _fmt(row["total"])])
    return path


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(text: str) -> str:
    """A cell a spreadsheet shows as text, never runs: one that would start a formula gets a
    leading apostrophe (OWASP's advice for CSV injection)."""
    text = str(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _fmt(value: float) -> str:
    return f"{round(value, 4):g}"
