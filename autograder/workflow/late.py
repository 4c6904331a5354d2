"""Late policy: what a late submission's score becomes, with the sentence that says why."""

from __future__ import annotations

import datetime as dt
import math

from autograder.grading.score import WeekScore, score_from_tests, tests_share
from autograder.workflow.settings import WorkflowSettings
from autograder.gradebook.durations import describe_duration

DAY = dt.timedelta(days=1)


def days_started(late_by: dt.timedelta) -> int:
    """1 for a second to 24 hours late, 2 for just over a day, and so on."""
    return math.ceil(late_by / DAY) if late_by > dt.timedelta(0) else 0


def apply_late_policy(score: float, max_score: float, late_by: dt.timedelta,
                      settings: WorkflowSettings) -> tuple[float, str]:
    days = days_started(late_by)
    if days == 0:
        return score, "Submitted on time."
    late = f"Submitted {describe_duration(late_by)} late"
    window = settings.late_window_days
    if window is not None and late_by > window * DAY:
        return 0.0, (f"{late}, after the late window of {window:g} days had closed (a later week may have given "
                     f"away the solution), so it scores 0 (it would have scored {score:g}/{max_score:g}).")
    if settings.late_policy == "none":
        return score, f"{late}; this course does not penalise late work, so the score stands."
    if settings.late_policy == "zero":
        return 0.0, f"{late}; late work scores 0 in this course (it would have scored {score:g}/{max_score:g})."
    penalty = settings.penalty_per_day * max_score * days
    adjusted = max(0.0, score - penalty)
    return adjusted, (f"{late} ({days} started day{'s' if days > 1 else ''}); "
                      f"{settings.penalty_per_day:.0%} of {max_score:g} points off per started day, "
                      f"{penalty:g} in all, "
                      f"so {score:g} becomes {adjusted:g}.")


def late_penalty(score: float, max_score: float, late_by: dt.timedelta, settings: WorkflowSettings) -> float:
    """The points the late policy takes off `score`."""
    return score - apply_late_policy(score, max_score, late_by, settings)[0]


def late_score(earned: float, possible: float, written_points: float, week_points: float, late_by: dt.timedelta,
               settings: WorkflowSettings) -> WeekScore:
    """The week's score before any manual grade (written answers pending), the late policy applied to
    the hidden tests' share of `earned` of `possible` points."""
    tests = tests_share(earned, possible, written_points, week_points)
    return score_from_tests(earned, possible, written_points, week_points,
                            late_penalty(tests, week_points, late_by, settings))
