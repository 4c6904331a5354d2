"""Workflow settings (course.yaml's `workflow` block) and the workflow's one error type."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

LatePolicy = Literal["none", "zero", "per_day"]


class WorkflowError(Exception):
    """A release, fetch, submit or collect that cannot go ahead; the message says what to do."""


@dataclass(frozen=True)
class WorkflowSettings:
    course_id: str = "vitssl"
    exchange: Path = Path("/srv/nbgrader/exchange")
    late_policy: LatePolicy = "none"
    penalty_per_day: float = 0.1
    late_window_days: float | None = None  # later than this, work scores 0 (None: no window)

    def __post_init__(self) -> None:
        if self.late_policy not in ("none", "zero", "per_day"):
            raise WorkflowError(f"late_policy must be none, zero or per_day, not {self.late_policy!r}")
        if not 0 <= self.penalty_per_day <= 1:
            raise WorkflowError(f"penalty_per_day is a fraction of the points (0 to 1), not {self.penalty_per_day}")
        if not self.course_id or "+" in self.course_id or "/" in self.course_id:
            raise WorkflowError(f"course_id must be a non-empty name without '+' or '/', not {self.course_id!r}")
        object.__setattr__(self, "exchange", Path(self.exchange))


def settings_from_course(course, exchange: str | Path | None = None) -> WorkflowSettings:
    """The course's workflow block as settings; `exchange` overrides the folder (a flag, a test)."""
    block = course.workflow
    return WorkflowSettings(course_id=block.course_id, exchange=Path(exchange or block.exchange),
                            late_policy=block.late_policy, penalty_per_day=block.penalty_per_day,
                            late_window_days=block.late_window_days)
