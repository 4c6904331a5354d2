"""The nbgrader exchange workflow: release a week, students fetch and submit, the
instructor collects, late submissions are scored by the course's late policy, and
feedback goes back the same way.

nbgrader does the moving of files (its release, fetch, submit, collect and feedback
classes); this package configures it for the course's layout, turns its failures into
`WorkflowError`s a person can act on, and reads back what was collected.
"""

from autograder.workflow.collect import Collected, collect_week
from autograder.workflow.feedback import feedback_week
from autograder.workflow.late import apply_late_policy
from autograder.layout import COURSE_WORK
from autograder.workflow.nbconfig import instructor_config, student_config
from autograder.workflow.release import due_weeks, release_week
from autograder.workflow.settings import WorkflowError, WorkflowSettings
from autograder.workflow.student import fetch_feedback_week, fetch_week, submit_week

__all__ = [
    "COURSE_WORK", "Collected", "WorkflowError", "WorkflowSettings", "apply_late_policy",
    "collect_week", "due_weeks", "feedback_week", "fetch_feedback_week", "fetch_week",
    "instructor_config", "release_week", "student_config", "submit_week",
]
