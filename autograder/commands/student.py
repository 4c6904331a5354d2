"""Commands for students and self-learners: check, fetch, submit, fetch-feedback."""

from __future__ import annotations

import argparse
from pathlib import Path

from autograder.commands.context import UsageError, console, open_course, settings_of, student_of, styled


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when every public test passed, 1 when one failed or the notebook did not run."""
    from autograder.selfcheck import NotebookDidNotRun, UnknownPart, check_notebook
    from autograder.submission.notebook import NotebookError

    course, root = open_course(args)
    week = course.week(args.week)
    notebook = _notebook(week, args.notebook)
    console.print(f"checking {notebook}")
    try:
        report = check_notebook(course, root, week.id, notebook, args.part)
    except (NotebookError, UnknownPart) as exc:
        raise UsageError(str(exc)) from None
    except NotebookDidNotRun as exc:
        console.print(styled(("Running your notebook's code failed: ", "red"), str(exc)))
        return 1
    console.print(report.text())
    return 0 if report.passed == len(report.outcomes) else 1


def _notebook(week, given: str | None) -> Path:
    """The student's notebook by the rule `course check` and `course submit` share; not finding
    it is a usage error that says where it looked."""
    from autograder.workflow.settings import WorkflowError
    from autograder.workflow.student import find_notebook

    try:
        return find_notebook(week.id, week.slug, Path(given) if given else None)
    except WorkflowError as exc:
        raise UsageError(str(exc)) from None


def cmd_fetch(args: argparse.Namespace) -> int:
    from autograder.workflow import fetch_week

    course, _ = open_course(args)
    folder = fetch_week(args.week, student_of(args), Path(args.dest), settings_of(args, course))
    console.print(f"fetched {args.week} into {folder}; open it in JupyterLab (`jupyter lab {folder}`)")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from autograder.workflow import submit_week

    course, _ = open_course(args)
    week = course.week(args.week)
    given = Path(args.notebook) if args.notebook else None
    notebook = _notebook(week, args.notebook)
    what = notebook if given is not None and given.is_file() else notebook.parent  # a week folder: its files too
    left_out: list[str] = []
    stamp = submit_week(args.week, student_of(args), what, settings_of(args, course), left_out=left_out)
    console.print(f"submitted {notebook} as {student_of(args)} for {args.week} at {stamp}")
    if left_out:
        console.print(f"not submitted (not part of the week): {', '.join(left_out)}")
    return 0


def cmd_fetch_feedback(args: argparse.Namespace) -> int:
    from autograder.workflow import fetch_feedback_week

    course, _ = open_course(args)
    pages = fetch_feedback_week(args.week, student_of(args), Path(args.dest), settings_of(args, course))
    for page in pages:
        console.print(f"feedback: {page}")
    console.print(f"open the newest in a browser: {pages[-1].as_uri()}")
    return 0
