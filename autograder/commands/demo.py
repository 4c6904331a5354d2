"""`course demo`: the whole loop for one week in a throwaway course, step by step."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from autograder.commands import instructor
from autograder.commands.context import console, open_course, styled
from autograder.config import load_course


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole loop for one week, in a throwaway copy of the course."""
    import os
    import tempfile

    from autograder import demo
    from autograder.workflow import collect_week, feedback_week, release_week
    from autograder.workflow.settings import settings_from_course

    _, repo = open_course(args)
    target = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="course-demo-"))
    root = demo.make_demo_course(repo, target, args.week)
    course = load_course(root / "course.yaml")
    week, settings = course.week(args.week), settings_from_course(course)
    console.print(styled((f"A demo course for {week.id} ({week.title})", "bold"),
                         f" in {target}\n  course: {root}\n  nbgrader exchange: {settings.exchange}"))
    steps = _Steps()

    with steps("the instructor releases the week", f"course release {week.id}"):
        console.print(f"  released to {release_week(course, root, week.id, settings)}")
    with steps("two students fetch it, work, and submit", f"course fetch {week.id} ; course submit {week.id}"):
        for student in demo.demo_students(course, root, week.id, args.bug):
            stamp = demo.hand_in(student, week.id, target / "students", settings)
            console.print(f"  {student.id} submits {student.work} ({stamp})")
    with steps("the instructor collects the submissions", f"course collect {week.id}"):
        for collected in collect_week(course, root, week.id, settings):
            console.print(f"  {collected.student}: {collected.notebook.relative_to(root)}")
    with steps("the autograder grades them in sandboxed workers", f"course autograde {week.id}"):
        jobs = min(2, os.cpu_count() or 1)
        instructor.autograde_with_progress(course, root, week.id, settings, None, jobs, args.sandbox)
    with steps("students get feedback in words", f"course feedback {week.id}"):
        for item in feedback_week(course, root, week.id, settings):
            console.print(f"  {item.student}: {item.html}")
    with steps("the instructor reads the gradebook", "course gradebook --html report.html"):
        report = instructor.print_gradebook(course, root, None, target / "report.html")
    where = f" Open the report: {report.as_uri()}" if report is not None else ""
    console.print(styled((f"\nDone in {steps.total:.0f} s.", "bold"), f"{where}\n"
                         f"Go on with the same commands on the demo course: "
                         f"course --course {root / 'course.yaml'} gradebook"))
    return 0


class _Steps:
    """Numbered steps of the demo, each with the command it stands for and its time."""

    def __init__(self) -> None:
        self.number, self.total = 0, 0.0

    def __call__(self, what: str, command: str):
        from contextlib import contextmanager

        @contextmanager
        def step():
            self.number += 1
            console.print(styled((f"\n{self.number}. {what}", "bold"), "  ", (f"({command})", "dim")))
            started = time.monotonic()
            yield
            self.total += time.monotonic() - started
            console.print(f"  {time.monotonic() - started:.1f} s", style="dim")

        return step()
