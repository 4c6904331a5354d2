"""Late policy: what a late submission's score becomes, with the sentence that says why."""

from __future__ import annotations

import datetime as dt
import math

from autograder.workflow.settings import WorkflowSettings

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
    if settings.late_policy == "none":
        return score, f"{late}; this course does not penalise late work, so the score stands."
    if settings.late_policy == "zero":
        return 0.0, f"{late}; late work scores 0 in this course (it would have scored {score:g}/{max_score:g})."
    penalty = settings.penalty_per_day * max_score * days
    adjusted = max(0.0, score - penalty)
    return adjusted, (f"{late} ({days} started day{'s' if days > 1 else ''}); "
                      f"{settings.penalty_per_day:.0%} of {max_score:g} points off per started day, {penalty:g} in all, "
                      f"so {score:g} becomes {adjusted:g}.")


def describe_duration(late_by: dt.timedelta) -> str:
    """'2 days 3 h', '4 h 12 min', '5 min', '1 s': how late, in words."""
    seconds = int(late_by.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} day{'s' if days > 1 else ''} {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{max(seconds, 1)} s"
