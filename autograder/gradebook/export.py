"""`nbgrader export` for this course: nbgrader's CSV columns, plus what waits for a grader.

The course folder's nbgrader_config.py makes this the export plugin, so `nbgrader export`
with no flags writes the same score as every other report (nbgrader's `score`: the grade
cells' scores less the late penalty) and says which written answers are not graded yet.
Unlike nbgrader's own plugin it quotes its cells, and a cell that would start a spreadsheet
formula is written as text.
"""

from __future__ import annotations

import csv

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins.export import ExportPlugin

from autograder.gradebook.table import pending_points, text_cell, waiting_cells

COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email", "raw_score",
           "late_submission_penalty", "score", "max_score", "pending_manual_points", "overrides_to_review"]


class CourseCsvExport(ExportPlugin):
    """One row per assignment and student, as nbgrader's CSV export, with two more columns."""

    def export(self, gradebook: Gradebook) -> None:
        dest = self.to or "grades.csv"
        self.log.info("Exporting grades to %s", dest)
        with open(dest, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for assignment in gradebook.assignments:
                if self.assignment and assignment.name not in self.assignment:
                    continue
                for student in gradebook.students:
                    if self.student and student.id not in self.student:
                        continue
                    writer.writerow([_cell(v) for v in _row(gradebook, assignment, student)])


def _cell(value) -> str:
    if value is None:
        return ""
    return text_cell(value) if isinstance(value, str) else str(value)


def _row(gradebook: Gradebook, assignment, student) -> list:
    head = [assignment.name, assignment.duedate or "", "", student.id, student.last_name, student.first_name,
            student.email]
    try:
        submission = gradebook.find_submission(assignment.name, student.id)
    except MissingEntry:
        return head + [0.0, 0.0, 0.0, assignment.max_score, 0.0, 0]
    waiting = waiting_cells(submission)
    penalty = submission.late_submission_penalty or 0.0
    head[2] = submission.timestamp
    return head + [submission.score, penalty, max(0.0, submission.score - penalty), assignment.max_score,
                   pending_points(submission),
                   sum(c["why"] != "not graded yet" for c in waiting)]
