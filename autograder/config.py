"""course.yaml: the course, its weeks and its grading limits, validated on load."""

from __future__ import annotations

import datetime as dt
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

WEEK_ID = re.compile(r"^m[1-9]w\d{2}$")


class CourseConfigError(Exception):
    """course.yaml is missing, unreadable or invalid; the message names the key and the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GradingLimits(_Strict):
    test_timeout_s: float = Field(60, gt=0, description="wall-clock limit for one test")
    submission_timeout_s: float = Field(600, gt=0, description="wall-clock budget for one submission")
    import_timeout_s: float = Field(60, gt=0, description="limit for loading a notebook's code")
    memory_mb: int = Field(4096, ge=256, description="data memory of the worker")
    trusted_memory_mb: int = Field(8192, ge=1024, description="data memory of the trusted pytest process")
    cpu_seconds: int = Field(900, ge=10)
    processes: int = Field(64, ge=8, description="threads and processes the worker may add")
    file_size_mb: int = Field(64, ge=1)
    gpu: Literal["never", "prefer", "require"] = "prefer"
    sandbox: Literal["auto", "bwrap", "none", "docker"] = "auto"
    image: str = Field("vitssl-grader:latest", description="the docker backend's grader image")

    def worker_limits(self) -> dict[str, int]:
        """The resource limits each worker process gets (`autograder.sandbox.spec.Limits`)."""
        return {"memory_mb": self.memory_mb, "cpu_seconds": self.cpu_seconds, "processes": self.processes,
                "file_size_mb": self.file_size_mb}


class Workflow(_Strict):
    """nbgrader's exchange and the late policy."""

    course_id: str = Field("vitssl", pattern=r"^[A-Za-z0-9_.@-]+$")
    exchange: str = "/srv/nbgrader/exchange"
    late_policy: Literal["none", "zero", "per_day"] = "none"
    penalty_per_day: float = Field(0.1, ge=0, le=1, description="fraction of the points per started day")
    late_window_days: float | None = Field(None, ge=0, description="late work after this many days scores 0; "
                                           "a week that gives another's solution is released after it")

    def late_window(self) -> dt.timedelta:
        """How long after a due date a submission can still earn points (unbounded: a year)."""
        if self.late_policy == "zero":
            return dt.timedelta(0)
        return dt.timedelta(days=365 if self.late_window_days is None else self.late_window_days)


Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]


class Gradescope(_Strict):
    """What students see of a Gradescope autograder's tests (`course gradescope`)."""

    public_visibility: Visibility = Field("visible", description="the public self-checks, shown for 0 points")
    hidden_visibility: Visibility = Field("after_due_date", description="the hidden tests that score the week")


class Module(_Strict):
    id: int = Field(ge=1)
    title: str


class Week(_Strict):
    id: str
    module: int
    title: str
    category: Literal["implementation", "compare", "theory", "project"]
    sources: list[str] = []
    points: float = Field(100, gt=0)
    state: Literal["planned", "ready"] = "planned"
    reference: str | None = None
    release: dt.date | None = None
    due: dt.datetime | None = None
    forbidden: list[str] = []
    gives: list[str] = Field([], description="weeks whose solution this week's notebook gives away "
                                          "(given code from reference/given/)")

    @field_validator("id")
    @classmethod
    def _week_id(cls, value: str) -> str:
        if not WEEK_ID.match(value):
            raise ValueError(f"week ids look like m1w01, not {value!r}")
        return value

    @model_validator(mode="after")
    def _ready_has_reference(self) -> "Week":
        if self.state == "ready" and not self.reference:
            raise ValueError(f"week {self.id} is ready but names no reference file")
        return self

    @property
    def slug(self) -> str:
        return Path(self.reference).stem if self.reference else self.id


class Course(_Strict):
    title: str
    modules: list[Module]
    weeks: list[Week]
    grading: GradingLimits = GradingLimits()
    workflow: Workflow = Workflow()
    gradescope: Gradescope = Gradescope()

    @model_validator(mode="after")
    def _consistent(self) -> "Course":
        ids = [w.id for w in self.weeks]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise ValueError(f"week ids appear twice: {', '.join(sorted(duplicates))}")
        modules = {m.id for m in self.modules}
        for week in self.weeks:
            if week.module not in modules:
                raise ValueError(f"week {week.id} names module {week.module}, which is not in modules")
            for other in week.gives:
                self._check_gives(week, other, ids)
        return self

    def _check_gives(self, week: "Week", other: str, ids: list[str]) -> None:
        """A week that hands out another's solution opens only after that week's late window."""
        if other not in ids or other == week.id:
            raise ValueError(f"week {week.id} gives {other!r}, which is not another week of the course")
        given = self.weeks[ids.index(other)]
        if week.release is None or given.due is None:
            return
        opens = given.due + self.workflow.late_window()
        if dt.datetime.combine(week.release, dt.time()) < opens:
            raise ValueError(f"week {week.id} gives away {other}'s solution, so it can be released on "
                             f"{opens:%Y-%m-%d %H:%M} at the earliest ({other} is due {given.due:%Y-%m-%d %H:%M}, "
                             f"and late work counts for {self.workflow.late_window().days} days), "
                             f"not on {week.release}")

    @cached_property
    def by_id(self) -> dict[str, Week]:
        return {w.id: w for w in self.weeks}

    def week(self, week_id: str) -> Week:
        try:
            return self.by_id[week_id]
        except KeyError:
            known = ", ".join(self.by_id)
            raise CourseConfigError(f"no week {week_id!r} in course.yaml (known: {known})") from None


def load_course(path: Path) -> Course:
    """Read and validate course.yaml; errors name the file and the offending key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CourseConfigError(f"{path}: not found (run from the course folder or pass --course)") from None
    except yaml.YAMLError as exc:
        raise CourseConfigError(f"{path}: not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CourseConfigError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise CourseConfigError(f"{path}: expected a mapping with title, modules, weeks and grading")
    try:
        return Course.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = _key_path(error["loc"], data)
            problems.append(f"{path}: {key}: {error['msg']}")
        raise CourseConfigError("\n".join(problems)) from None


def _key_path(loc: tuple, data: dict) -> str:
    """weeks.3.title -> weeks[m1w04].title, so the key is easy to find in the file."""
    parts: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list):
            item = node[part] if part < len(node) else None
            label = item.get("id") if isinstance(item, dict) and "id" in item else part
            parts[-1] = f"{parts[-1]}[{label}]" if parts else f"[{label}]"
            node = item
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"
