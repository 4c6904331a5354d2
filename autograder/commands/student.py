"""Commands for students and self-learners: check, fetch, submit, fetch-feedback."""

from __future__ import annotations

import argparse
from pathlib import Path

from autograder.commands.context import UsageError, console, open_course, settings_of, student_of, styled
from autograder.layout import CoursePaths


def cmd_check(args: argparse.Namespace) -> int:
    course, root = open_course(args)
    week = course.week(args.week)
    from autograder.selfcheck import UnknownPart, find_public_tests, run_public_tests
    from autograder.submission.forbidden import forbidden_parts
    from autograder.submission.notebook import NotebookError, extract_module

    notebook = Path(args.notebook) if args.notebook else _default_notebook(root, week)
    try:
        module = extract_module(notebook)
    except NotebookError as exc:
        raise UsageError(str(exc)) from None
    namespace: dict = {"__name__": "submission"}
    try:
        exec(compile(module.source, str(notebook), "exec"), namespace)
    except Exception as exc:  # the student's own code, on the student's own machine
        console.print(styled(("Running your notebook's code failed: ", "red"), f"{type(exc).__name__}: {exc}"))
        return 0
    tests = find_public_tests(args.week, root, notebook)
    try:
        report = run_public_tests(args.week, namespace, tests, args.part,
                                  forbidden_parts(module.source, week.forbidden, week.id))
    except UnknownPart as exc:
        raise UsageError(str(exc)) from None
    console.print(report.text(), markup=False)
    return 0


def _default_notebook(root: Path, week) -> Path:
    local = Path.cwd() / f"{week.slug}.ipynb"
    return local if local.is_file() else CoursePaths(root).released_notebook(week.id, week.slug)


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
    what = Path(args.notebook) if args.notebook else Path.cwd() / week.id
    if not what.exists():
        raise UsageError(f"{what} does not exist: name the notebook to submit")
    stamp = submit_week(args.week, student_of(args), what, settings_of(args, course))
    console.print(f"submitted {args.week} as {student_of(args)} at {stamp}")
    return 0


def cmd_fetch_feedback(args: argparse.Namespace) -> int:
    from autograder.workflow import fetch_feedback_week

    course, _ = open_course(args)
    pages = fetch_feedback_week(args.week, student_of(args), Path(args.dest), settings_of(args, course))
    for page in pages:
        console.print(f"feedback: {page}")
    console.print(f"open the newest in a browser: {pages[-1].as_uri()}")
    return 0
