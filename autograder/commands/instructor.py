"""Commands for instructors: grade one notebook, release, collect, autograde, feedback, gradebook."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from autograder.commands.context import UsageError, console, open_course, sandbox_of, settings_of, styled
from autograder.config import Course
from autograder.layout import CoursePaths


def cmd_grade(args: argparse.Namespace) -> int:
    course, root = open_course(args)
    week = course.week(args.week)
    notebook = Path(args.notebook)
    if not notebook.exists():
        raise UsageError(f"{notebook} does not exist")
    from autograder.grading.report import feedback_markdown, results_json, write_json_atomically
    from autograder.grading.run import Submitted, grade
    from autograder.grading.score import score_from_tests
    from autograder.pipeline.week_info import read_week_info

    with console.status(f"grading {notebook.name} against the {args.week} hidden suite…"):
        result = grade(course, root, args.week, [Submitted(notebook.stem, notebook)],
                       sandbox=sandbox_of(args))[notebook.stem]
    written = read_week_info(CoursePaths(root).release(week.id)).get("written", {}).get("points", 0.0)
    score = score_from_tests(result.earned, result.possible, float(written), week.points)
    _print_result(result)
    console.print(f"score: {score.text()}")
    if args.results:
        write_json_atomically(results_json(result, score), Path(args.results))
        console.print(f"results: {args.results}")
    if args.feedback:
        Path(args.feedback).write_text(feedback_markdown(result, week.title, score))
        console.print(f"feedback: {args.feedback}")
    return 0


def _print_result(result) -> None:
    from autograder.grading.report import common_failure

    if result.error and not result.tests:
        console.print(styled(("Not graded: ", "red"), result.error))
    for note in result.notes:
        console.print(styled(("note: ", "yellow"), note))
    headline = common_failure(result)
    if headline:
        console.print(styled(("Every test failed for the same reason: ", "red"), headline))
    if result.tests:
        table = Table()
        for column in ("test", "kind", "points", "result"):
            table.add_column(column)
        for t in result.tests:
            verdict = styled(("passed", "green")) if t.passed else styled(("failed", "red"), "" if headline else
                                                                         " " + t.message[:160])
            table.add_row(t.name, t.kind, f"{t.points if t.passed else 0:g}/{t.points:g}", verdict)
        console.print(table)
    console.print(f"hidden tests: {result.earned:g} / {result.possible:g} points   "
                  f"({result.seconds:.1f} s, sandbox: {result.sandbox}, device: {result.device or 'unknown'})")


def cmd_release(args: argparse.Namespace) -> int:
    import datetime as dt

    from autograder.workflow import due_weeks, release_week

    course, root = open_course(args)
    settings = settings_of(args, course)
    weeks = due_weeks(course, dt.date.today()) if args.due else args.weeks
    if not weeks:
        raise UsageError("name the weeks to release, or use --due for every ready week whose date has come")
    for week_id in weeks:
        outbound = release_week(course, root, week_id, settings, force=args.force)
        console.print(f"released {week_id} to {outbound}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from autograder.workflow import collect_week

    course, root = open_course(args)
    collected = collect_week(course, root, args.week, settings_of(args, course))
    table = Table(title=f"{args.week}: {len(collected)} submissions")
    for column in ("student", "submitted at (UTC)", "late by", "notebook"):
        table.add_column(column)
    for item in collected:
        late = str(item.late_by).split(".")[0] if item.late_by.total_seconds() > 0 else ""
        table.add_row(item.student, item.submitted_at.strftime("%Y-%m-%d %H:%M:%S"), late,
                      str(item.notebook.relative_to(root)) if item.notebook.is_relative_to(root)
                      else str(item.notebook))
    console.print(table)
    return 0


def cmd_autograde(args: argparse.Namespace) -> int:
    course, root = open_course(args)
    autograde_with_progress(course, root, args.week, settings_of(args, course), args.student, args.jobs,
                            sandbox_of(args))
    return 0


def autograde_with_progress(course: Course, root: Path, week_id: str, settings, students: list[str] | None, jobs: int,
               sandbox: str | None) -> None:
    """Grade the collected submissions with a progress bar, a line per student, and a summary."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from autograder.grading.autograde import autograde_week
    from autograder.gradebook.parts import case_of
    from autograder.workflow.collect import read_collected

    week = course.week(week_id)
    total = len([c for c in read_collected(root, week) if not students or c.student in students])
    columns = (TextColumn("autograding {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(week.id, total=total)

        def finished(student: str, earned: float, possible: float) -> None:
            progress.console.print(f"  {student}: {earned:g} / {possible:g}")
            progress.advance(task)

        graded = autograde_week(course, root, week.id, settings, students=students, jobs=jobs, sandbox=sandbox,
                                on_progress=finished)
    table = Table(title=f"{week.id}: {len(graded)} graded")
    for column in ("student", "hidden-test points", "score (late policy applied)", "written answers",
                   "first failed test", "late policy"):
        table.add_column(column)
    for item in graded:
        tests = f"{item.result.earned:g}/{item.result.possible:g}" if item.result.tests else "not graded"
        failed = next(((t.description or t.name) + case_of(t.name) for t in item.result.tests if not t.passed),
                      item.result.error or "")
        failed = failed if len(failed) <= 60 else failed[:59] + "…"
        written = (f"{item.score.pending:g} pts pending" if item.score.pending else
                   f"{item.score.manual:g}" if item.score.manual else "-")
        table.add_row(item.student, tests, f"{item.score.final:g} / {item.score.possible:g}", written, failed,
                      item.late_note)
    console.print(table)
    scores = [item.score.final for item in graded]
    pending = sum(bool(item.score.pending) for item in graded)
    console.print(f"mean {sum(scores) / len(scores):.1f}" + (f"; {pending} with written answers to grade in "
                  "formgrader" if pending else "") + f"; results in {CoursePaths(Path(root)).work('autograded')}")


def cmd_feedback(args: argparse.Namespace) -> int:
    from autograder.workflow import feedback_week

    course, root = open_course(args)
    with console.status(f"generating feedback on {args.week}…"):
        done = feedback_week(course, root, args.week, settings_of(args, course), students=args.student,
                             release=not args.no_release)
    for item in done:
        console.print(f"  {item.student}: {item.html.relative_to(root)}")
    where = "kept in .course-work/feedback" if args.no_release else "released; students run `course fetch-feedback`"
    console.print(f"feedback for {len(done)} students of {args.week} {where}")
    return 0


def cmd_gradebook(args: argparse.Namespace) -> int:
    course, root = open_course(args)
    print_gradebook(course, root, args.csv, args.html)
    return 0


def settle_all_late_penalties(course: Course, db_url: str) -> None:
    """Late penalties that depend on the score follow the manual grades given since autograding."""
    from autograder.gradebook.store import settle_late_penalties
    from autograder.workflow.late import late_penalty
    from autograder.workflow.settings import settings_from_course

    settings = settings_from_course(course)
    for week in course.weeks:
        settle_late_penalties(db_url, settings.course_id, week.id,
                              lambda score, possible, late_by: late_penalty(score, possible, late_by, settings))


def print_gradebook(course: Course, root: Path, csv: str | Path | None, html: str | Path | None) -> Path | None:
    """Print students by weeks; write the CSV and the HTML report when asked. Returns the report."""
    from autograder.grading.autograde import failure_rates
    from autograder.workflow.nbconfig import gradebook_url
    from autograder.gradebook.report import write_html_report
    from autograder.gradebook.table import scores_table, write_csv

    if not CoursePaths(Path(root)).gradebook_db.is_file():
        raise UsageError("there is no gradebook yet: `course release` a week first")
    url, course_id = gradebook_url(root), course.workflow.course_id
    settle_all_late_penalties(course, url)
    rows = scores_table(url, course_id)
    weeks = sorted({week for row in rows for week in row["scores"]})
    table = Table(title=f"{course.title}: {len(rows)} students")
    for column in ["student", *weeks, "total"]:
        table.add_column(column)
    for row in rows:
        cells = [("-" if row["scores"].get(w) is None else f"{row['scores'][w]:g}"
                  + (f" ({row['pending'][w]:g} pending)" if w in row["pending"] else "")) for w in weeks]
        table.add_row(row["id"], *cells, f"{row['total']:g} / {row['max_total']:g}")
    console.print(table)
    if csv:
        console.print(f"CSV: {write_csv(rows, csv)}")
    if not html:
        return None
    report = write_html_report(url, course_id, html, failure_rates(root))
    console.print(f"report: {report}")
    return Path(report)


def cmd_gradescope(args: argparse.Namespace) -> int:
    from autograder.gradescope.bundle import BundleError, build_autograder_zip

    course, root = open_course(args)
    try:
        names = build_autograder_zip(course, root, args.week, Path(args.output))
    except BundleError as exc:
        raise UsageError(str(exc)) from None
    size = Path(args.output).stat().st_size
    console.print(f"{args.output}: {len(names)} files, {size / 1e6:.1f} MB; on Gradescope, make a programming "
                  f"assignment for {args.week} and upload it as its autograder (setup.sh installs uv.lock's "
                  "environment, several GB; run_autograder grades /autograder/submission/*.ipynb)")
    return 0
