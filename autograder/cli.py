"""`course`: one command for the course, with a subcommand per job.

Exit status is 0 when the job was done (a low score is a result, not an error),
1 when the job failed (a stale release, a week that does not verify), and 2 for
usage and configuration errors, which are printed as one clear sentence.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autograder.config import Course, CourseConfigError, load_course
from autograder.layout import CoursePaths

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class UsageError(Exception):
    pass


def find_course_file(given: str | None) -> Path:
    if given:
        return Path(given)
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "course.yaml").is_file():
            return folder / "course.yaml"
    bundled = Path(__file__).resolve().parent.parent / "course.yaml"
    return bundled


def _course(args: argparse.Namespace) -> tuple[Course, Path]:
    path = find_course_file(args.course)
    return load_course(path), path.resolve().parent


def _weeks(course: Course, ids: list[str], ready_only: bool = True) -> list[str]:
    if ids:
        for week_id in ids:
            course.week(week_id)
        return ids
    return [w.id for w in course.weeks if w.state == "ready" or not ready_only]


# -- subcommands ---------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    course, _ = _course(args)
    table = Table(title=course.title)
    for column in ("week", "module", "title", "category", "state", "points", "release", "due"):
        table.add_column(column)
    for w in course.weeks:
        table.add_row(w.id, str(w.module), w.title, w.category, w.state, f"{w.points:g}",
                      str(w.release or ""), str(w.due or ""))
    console.print(table)
    ready = sum(w.state == "ready" for w in course.weeks)
    console.print(f"{ready} of {len(course.weeks)} weeks ready")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from autograder.pipeline.build import build_week, stale_files

    course, root = _course(args)
    weeks = _weeks(course, args.weeks)
    if args.check:
        stale = [f for w in weeks for f in stale_files(course, w, root)]
        if stale:
            err.print("release/ is stale; run `course build` and commit. Differs:\n  " + "\n  ".join(stale))
            return 1
        console.print(f"release/ is up to date for {', '.join(weeks)}")
        return 0
    for week_id in weeks:
        started = time.monotonic()
        target = build_week(course, week_id, root)
        console.print(f"built {week_id} -> {target.relative_to(root)} ({time.monotonic() - started:.1f} s)")
    return 0


def cmd_solution(args: argparse.Namespace) -> int:
    from autograder.pipeline.build import write_answer_key

    course, root = _course(args)
    path = write_answer_key(course, args.week, root, Path(args.output))
    console.print(f"answer key for {args.week} written to {path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    course, root = _course(args)
    week = course.week(args.week)
    from autograder.selfcheck import find_public_tests, run_public_tests
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
        console.print(f"[red]Running your notebook's code failed:[/red] {type(exc).__name__}: {exc}")
        return 0
    tests = find_public_tests(args.week, root, notebook)
    report = run_public_tests(args.week, namespace, tests, args.part,
                              forbidden_parts(module.source, week.forbidden, week.id))
    console.print(report.text(), markup=False)
    return 0


def _default_notebook(root: Path, week) -> Path:
    local = Path.cwd() / f"{week.slug}.ipynb"
    return local if local.is_file() else CoursePaths(root).released_notebook(week.id, week.slug)


def cmd_grade(args: argparse.Namespace) -> int:
    course, root = _course(args)
    week = course.week(args.week)
    notebook = Path(args.notebook)
    if not notebook.exists():
        raise UsageError(f"{notebook} does not exist")
    from autograder.grading.report import feedback_markdown, results_json, write_json_atomically
    from autograder.grading.run import Submitted, grade

    with console.status(f"grading {notebook.name} against the {args.week} hidden suite…"):
        result = grade(course, root, args.week, [Submitted(notebook.stem, notebook)],
                       sandbox=_sandbox(args))[notebook.stem]
    _print_result(result)
    if args.results:
        write_json_atomically(results_json(result, week.points), Path(args.results))
        console.print(f"results: {args.results}")
    if args.feedback:
        Path(args.feedback).write_text(feedback_markdown(result, week.title))
        console.print(f"feedback: {args.feedback}")
    return 0


def _print_result(result) -> None:
    if result.error and not result.tests:
        console.print(f"[red]Not graded:[/red] {result.error}")
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if result.tests:
        table = Table()
        for column in ("test", "kind", "points", "result"):
            table.add_column(column)
        for t in result.tests:
            verdict = "[green]passed[/green]" if t.passed else f"[red]failed[/red] {t.message[:160]}"
            table.add_row(t.name, t.kind, f"{t.points if t.passed else 0:g}/{t.points:g}", verdict)
        console.print(table)
    console.print(f"total: {result.earned:g} / {result.possible:g}   "
                  f"({result.seconds:.1f} s, sandbox: {result.sandbox}, device: {result.device or 'unknown'})")


def _sandbox(args: argparse.Namespace) -> str | None:
    """`--backend docker` runs workers in containers; `--sandbox` picks the local sandbox."""
    if getattr(args, "backend", "local") == "docker":
        if args.sandbox not in (None, "docker"):
            raise UsageError("--sandbox applies to the local backend only; drop it or use --backend local")
        return "docker"
    return args.sandbox


def cmd_image(args: argparse.Namespace) -> int:
    from autograder.pipeline.image import build_image
    from autograder.sandbox.container import DockerUnavailable, check_image, client

    course, _ = _course(args)
    tag = args.tag or course.grading.image
    try:
        if args.action == "check":
            check_image(client(), tag)
            console.print(f"{tag} is built from this checkout's uv.lock and worker code")
            return 0
        started = time.monotonic()
        image_id = build_image(base=args.base, tag=tag, on_line=lambda line: console.print(line, markup=False))
    except DockerUnavailable as exc:
        err.print(f"course image: {exc}", markup=False)
        return 1
    console.print(f"built {tag} ({image_id[:19]}) in {time.monotonic() - started:.0f} s")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from autograder.grading.verify import verify_weeks

    course, root = _course(args)
    weeks = _weeks(course, args.weeks)
    started = time.monotonic()
    with console.status(f"verifying {', '.join(weeks)}: answer keys, releases and mutants, in one run…"):
        verdicts = verify_weeks(course, root, weeks, sandbox=args.sandbox, all_catches=args.all_catches)
    failed = 0
    for verdict in verdicts:
        table = Table(title=f"{verdict.week} ({verdict.seconds:.1f} s of tests)")
        for column in ("variant", "score", "verdict"):
            table.add_column(column)
        for row in verdict.rows:
            table.add_row(*row)
        console.print(table)
        if verdict.ok:
            console.print(f"[green]{verdict.week} verified[/green]")
        else:
            failed += 1
            for problem in verdict.problems:
                console.print(f"[red]{verdict.week}:[/red] {escape(problem)}")
    console.print(f"{len(verdicts) - failed} of {len(verdicts)} weeks verified in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


def cmd_new_week(args: argparse.Namespace) -> int:
    from autograder.pipeline.scaffold import ScaffoldError, new_week

    course, root = _course(args)
    try:
        skeleton = new_week(course, find_course_file(args.course), args.week, args.slug)
    except ScaffoldError as exc:
        raise UsageError(str(exc)) from None
    for path in skeleton.files:
        console.print(f"  wrote {path.relative_to(root) if path.is_relative_to(root) else path}")
    console.print(f"""
[bold]{args.week} has a skeleton.[/bold] Next:
  1. course build {args.week}    writes release/{args.week}/ from the reference
  2. course verify {args.week}   grades the answer key, the release and the mutant, and says
                          what the week still lacks (gradient and convergence tests, mutants)
  3. replace the placeholder part with the week's parts: public and hidden tests of all four
     kinds for each, a mutant per plausible bug; autograder.kit has data, probes and helpers
  4. once verify is green: state: ready in course.yaml, and commit release/{args.week}/""", soft_wrap=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole loop for one week, in a throwaway copy of the course."""
    import os
    import tempfile

    from autograder import demo
    from autograder.workflow import collect_week, feedback_week, release_week
    from autograder.workflow.settings import settings_from_course

    _, repo = _course(args)
    target = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="course-demo-"))
    root = demo.make_demo_course(repo, target, args.week)
    course = load_course(root / "course.yaml")
    week, settings = course.week(args.week), settings_from_course(course)
    console.print(f"[bold]A demo course for {week.id} ({week.title})[/bold] in {target}\n"
                  f"  course: {root}\n  nbgrader exchange: {settings.exchange}")
    steps = _Steps()

    with steps("the instructor releases the week", f"course release {week.id}"):
        console.print(f"  released to {release_week(course, root, week.id, settings)}")
    with steps("two students fetch it, work, and submit", f"course fetch {week.id} ; course submit {week.id}"):
        for student in demo.demo_students(course, root, week.id, args.bug):
            stamp = demo.hand_in(student, week.id, target / "students", settings)
            console.print(f"  {student.id} submits {student.work} ({stamp})")
    with steps("the instructor collects the submissions", f"course collect {week.id}"):
        for item in collect_week(course, root, week.id, settings):
            console.print(f"  {item.student}: {item.notebook.relative_to(root)}")
    with steps("the autograder grades them in sandboxed workers", f"course autograde {week.id}"):
        _autograde(course, root, week.id, settings, None, min(2, os.cpu_count() or 1), args.sandbox)
    with steps("students get feedback in words", f"course feedback {week.id}"):
        for item in feedback_week(course, root, week.id, settings):
            console.print(f"  {item.student}: {item.html}")
    with steps("the instructor reads the gradebook", "course gradebook --html report.html"):
        report = _gradebook(course, root, None, target / "report.html")
    console.print(f"\n[bold]Done in {steps.total:.0f} s.[/bold] Open the report: {report.as_uri()}\n"
                  f"Go on with the same commands on the demo course: "
                  f"course --course {root / 'course.yaml'} gradebook")
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
            console.print(f"\n[bold]{self.number}. {what}[/bold]  [dim]({command})[/dim]")
            started = time.monotonic()
            yield
            self.total += time.monotonic() - started
            console.print(f"  [dim]{time.monotonic() - started:.1f} s[/dim]")

        return step()


def _settings(args: argparse.Namespace, course: Course):
    from autograder.workflow.settings import settings_from_course

    return settings_from_course(course, getattr(args, "exchange", None))


def _student(args: argparse.Namespace) -> str:
    import getpass

    return args.student or getpass.getuser()


def cmd_release(args: argparse.Namespace) -> int:
    import datetime as dt

    from autograder.workflow import due_weeks, release_week

    course, root = _course(args)
    settings = _settings(args, course)
    weeks = due_weeks(course, dt.date.today()) if args.due else args.weeks
    if not weeks:
        raise UsageError("name the weeks to release, or use --due for every ready week whose date has come")
    for week_id in weeks:
        outbound = release_week(course, root, week_id, settings, force=args.force)
        console.print(f"released {week_id} to {outbound}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from autograder.workflow import fetch_week

    course, _ = _course(args)
    folder = fetch_week(args.week, _student(args), Path(args.dest), _settings(args, course))
    console.print(f"fetched {args.week} into {folder}; open it in JupyterLab (`jupyter lab {folder}`)")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from autograder.workflow import submit_week

    course, _ = _course(args)
    week = course.week(args.week)
    what = Path(args.notebook) if args.notebook else Path.cwd() / week.id
    if not what.exists():
        raise UsageError(f"{what} does not exist: name the notebook to submit")
    stamp = submit_week(args.week, _student(args), what, _settings(args, course))
    console.print(f"submitted {args.week} as {_student(args)} at {stamp}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from autograder.workflow import collect_week

    course, root = _course(args)
    collected = collect_week(course, root, args.week, _settings(args, course))
    table = Table(title=f"{args.week}: {len(collected)} submissions")
    for column in ("student", "submitted at (UTC)", "late by", "notebook"):
        table.add_column(column)
    for item in collected:
        late = str(item.late_by).split(".")[0] if item.late_by.total_seconds() > 0 else ""
        table.add_row(item.student, item.submitted_at.strftime("%Y-%m-%d %H:%M:%S"), late,
                      str(item.notebook.relative_to(root)) if item.notebook.is_relative_to(root) else str(item.notebook))
    console.print(table)
    return 0


def cmd_autograde(args: argparse.Namespace) -> int:
    course, root = _course(args)
    _autograde(course, root, args.week, _settings(args, course), args.student, args.jobs, _sandbox(args))
    return 0


def _autograde(course: Course, root: Path, week_id: str, settings, students: list[str] | None, jobs: int,
               sandbox: str | None) -> None:
    """Grade the collected submissions with a progress bar, a line per student, and a summary."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from autograder.grading.autograde import autograde_week
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
    for column in ("student", "tests", "score", "first failed test", "late policy"):
        table.add_column(column)
    for item in graded:
        tests = f"{item.result.earned:g}/{item.result.possible:g}" if item.result.tests else "not graded"
        failed = next((t.description or t.name for t in item.result.tests if not t.passed), item.result.error or "")
        failed = failed if len(failed) <= 60 else failed[:59] + "…"
        table.add_row(item.student, tests, f"{item.score:g} / {week.points:g}", failed, item.late_note)
    console.print(table)
    scores = [item.score for item in graded]
    console.print(f"mean {sum(scores) / len(scores):.1f}, results in {CoursePaths(Path(root)).work('autograded')}")


def cmd_feedback(args: argparse.Namespace) -> int:
    from autograder.workflow import feedback_week

    course, root = _course(args)
    with console.status(f"generating feedback on {args.week}…"):
        done = feedback_week(course, root, args.week, _settings(args, course), students=args.student,
                             release=not args.no_release)
    for item in done:
        console.print(f"  {item.student}: {item.html.relative_to(root)}")
    where = "kept in .course-work/feedback" if args.no_release else "released; students run `course fetch-feedback`"
    console.print(f"feedback for {len(done)} students of {args.week} {where}")
    return 0


def cmd_fetch_feedback(args: argparse.Namespace) -> int:
    from autograder.workflow import fetch_feedback_week

    course, _ = _course(args)
    pages = fetch_feedback_week(args.week, _student(args), Path(args.dest), _settings(args, course))
    for page in pages:
        console.print(f"feedback: {page}")
    console.print(f"open the newest in a browser: {pages[-1].as_uri()}")
    return 0


def cmd_gradebook(args: argparse.Namespace) -> int:
    course, root = _course(args)
    _gradebook(course, root, args.csv, args.html)
    return 0


def _gradebook(course: Course, root: Path, csv: str | Path | None, html: str | Path | None) -> Path | None:
    """Print students by weeks; write the CSV and the HTML report when asked. Returns the report."""
    from autograder.grading.autograde import failure_rates
    from autograder.workflow.nbconfig import gradebook_url
    from gradebook.report import write_html_report
    from gradebook.table import scores_table, write_csv

    if not CoursePaths(Path(root)).gradebook_db.is_file():
        raise UsageError("there is no gradebook yet: `course release` a week first")
    url, course_id = gradebook_url(root), course.workflow.course_id
    rows = scores_table(url, course_id)
    weeks = sorted({week for row in rows for week in row["scores"]})
    table = Table(title=f"{course.title}: {len(rows)} students")
    for column in ["student", *weeks, "total"]:
        table.add_column(column)
    for row in rows:
        cells = [("-" if row["scores"].get(w) is None else f"{row['scores'][w]:g}") for w in weeks]
        table.add_row(row["id"], *cells, f"{row['total']:g} / {row['max_total']:g}")
    console.print(table)
    if csv:
        console.print(f"CSV: {write_csv(rows, csv)}")
    if not html:
        return None
    report = write_html_report(url, course_id, html, failure_rates(root))
    console.print(f"report: {report}")
    return Path(report)


# -- the parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course", description="Course platform and autograder for Vision Transformers and SSL.",
        epilog="Run `course COMMAND --help` for a command's options.")
    parser.add_argument("--course", metavar="FILE", help="course.yaml to use (default: found from the "
                        "current folder upwards, else the bundled one)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("list", help="every week, its state and points")
    p.set_defaults(run=cmd_list)

    p = commands.add_parser("build", help="regenerate release/ from reference/ (instructor)")
    p.add_argument("weeks", nargs="*", metavar="WEEK", help="weeks to build (default: every ready week)")
    p.add_argument("--check", action="store_true", help="fail if the committed release/ is stale")
    p.set_defaults(run=cmd_build)

    p = commands.add_parser("solution", help="write a week's answer key notebook (instructor)")
    p.add_argument("week", metavar="WEEK")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the .ipynb")
    p.set_defaults(run=cmd_solution)

    p = commands.add_parser("check", help="run a week's public self-checks against a notebook (student)")
    p.add_argument("week", metavar="WEEK")
    p.add_argument("notebook", nargs="?", metavar="NOTEBOOK",
                   help="default: the week's notebook in this folder, else the one in release/")
    p.add_argument("--part", help="only this part's tests, e.g. attention")
    p.set_defaults(run=cmd_check)

    p = commands.add_parser("grade", help="grade one submission against the hidden suite (instructor)")
    p.add_argument("week", metavar="WEEK")
    p.add_argument("notebook", metavar="NOTEBOOK", help="a submitted .ipynb (or a .py module)")
    p.add_argument("--results", metavar="FILE", help="write Gradescope-style results JSON here")
    p.add_argument("--feedback", metavar="FILE", help="write a markdown feedback report here")
    p.add_argument("--backend", choices=["local", "docker"], default="local",
                   help="where the worker runs: local (a sandboxed process on this machine) or docker "
                   "(a container from the grader image, with a GPU where the host has one)")
    p.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default=None,
                   help="local sandbox (default from course.yaml: auto uses bubblewrap where installed)")
    p.set_defaults(run=cmd_grade)

    exchange_help = "nbgrader's exchange folder (default: course.yaml's workflow.exchange)"
    p = commands.add_parser("release", help="release weeks into the nbgrader exchange (instructor)")
    p.add_argument("weeks", nargs="*", metavar="WEEK")
    p.add_argument("--due", action="store_true", help="every ready week whose release date has come")
    p.add_argument("--force", action="store_true", help="replace a week already in the exchange")
    p.add_argument("--exchange", metavar="DIR", help=exchange_help)
    p.set_defaults(run=cmd_release)

    p = commands.add_parser("fetch", help="fetch a released week to work on (student)")
    p.add_argument("week", metavar="WEEK")
    p.add_argument("--student", metavar="ID", help="your student id (default: your user name)")
    p.add_argument("--dest", default=".", metavar="DIR", help="where to put the week's folder (default: here)")
    p.add_argument("--exchange", metavar="DIR", help=exchange_help)
    p.set_defaults(run=cmd_fetch)

    p = commands.add_parser("submit", help="submit a week's notebook (student)")
    p.add_argument("week", metavar="WEEK")
    p.add_argument("notebook", nargs="?", metavar="NOTEBOOK", help="default: the fetched week's folder here")
    p.add_argument("--student", metavar="ID", help="your student id (default: your user name)")
    p.add_argument("--exchange", metavar="DIR", help=exchange_help)
    p.set_defaults(run=cmd_submit)

    p = commands.add_parser("collect", help="collect a week's submissions with their timestamps (instructor)")
    p.add_argument("week", metavar="WEEK")
    p.add_argument("--exchange", metavar="DIR", help=exchange_help)
    p.set_defaults(run=cmd_collect)

    p = commands.add_parser("autograde", help="grade every collected submission of a week (instructor)")
    p.add_argument("week", metavar="WEEK")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="batches graded side by side (default 1)")
    p.add_argument("--student", action="append", metavar="ID", help="only this student (repeatable)")
    p.add_argument("--backend", choices=["local", "docker"], default="local",
                   help="where workers run: local sandboxed processes, or docker containers")
    p.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default=None)
    p.add_argument("--exchange", metavar="DIR", help="nbgrader's exchange folder (for the late policy settings)")
    p.set_defaults(run=cmd_autograde)

    p = commands.add_parser("feedback", help="generate and release per-student feedback (instructor)")
    p.add_argument("week", metavar="WEEK")
    p.add_argument("--student", action="append", metavar="ID", help="only this student (repeatable)")
    p.add_argument("--no-release", action="store_true", help="generate the pages only, to review them first")
    p.add_argument("--exchange", metavar="DIR", help=exchange_help)
    p.set_defaults(run=cmd_feedback)

    p = commands.add_parser("fetch-feedback", help="fetch your feedback on a week (student)")
    p.add_argument("week", metavar="WEEK")
    p.add_argument("--student", metavar="ID", help="your student id (default: your user name)")
    p.add_argument("--dest", default=".", metavar="DIR", help="the folder holding the fetched week (default: here)")
    p.add_argument("--exchange", metavar="DIR", help=exchange_help)
    p.set_defaults(run=cmd_fetch_feedback)

    p = commands.add_parser("gradebook", help="students by weeks from nbgrader's gradebook (instructor)")
    p.add_argument("--csv", metavar="FILE", help="export one row per student (Canvas-style columns)")
    p.add_argument("--html", metavar="FILE", help="write a report: score distributions, most-failed tests, "
                   "late and missing submissions")
    p.set_defaults(run=cmd_gradebook)

    p = commands.add_parser("demo", help="the whole loop for one week in a throwaway course: release, two "
                            "students submit, collect, autograde, feedback, gradebook")
    p.add_argument("--week", default="m1w01", metavar="WEEK", help="the week to run (default m1w01)")
    p.add_argument("--dir", metavar="DIR", help="where to put the demo course (default: a new temporary folder, "
                   "kept so that you can open the report)")
    p.add_argument("--bug", metavar="MUTANT", help="the known bug the second student hands in (a mutant's name; "
                   "default: the week's first)")
    p.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default=None)
    p.set_defaults(run=cmd_demo)

    p = commands.add_parser("new-week", help="write the skeleton of a planned week on the week kit (author)")
    p.add_argument("week", metavar="WEEK", help="a planned week of course.yaml, e.g. m2w01")
    p.add_argument("--slug", help="the reference's file name after the week id (default: from the title)")
    p.set_defaults(run=cmd_new_week)

    p = commands.add_parser("image", help="build or check the docker backend's grader image (instructor)")
    p.add_argument("action", choices=["build", "check"])
    p.add_argument("--base", metavar="IMAGE", help="base image (default: the Dockerfile's debian:bookworm-slim; "
                   "without a registry, one made with debootstrap, as docker/engine.sh does)")
    p.add_argument("--tag", metavar="NAME", help="image name (default: course.yaml's grading.image)")
    p.set_defaults(run=cmd_image)

    p = commands.add_parser("verify", help="prove a week's suite: key full, release zero, mutants caught")
    p.add_argument("weeks", nargs="*", metavar="WEEK", help="weeks to verify (default: every ready week)")
    p.add_argument("--all-catches", action="store_true",
                   help="run every test each mutant's catches names, proving each list (default: cheapest kind "
                   "first, until one fails; a convergence run only for a mutant nothing else catches)")
    p.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default=None)
    p.set_defaults(run=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CourseConfigError, UsageError, FileNotFoundError) as exc:
        err.print(f"course {args.command}: {exc}", markup=False)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as exc:
        from autograder.grading.run import GradingError
        from autograder.pipeline.build import BuildError
        from autograder.workflow.settings import WorkflowError

        if isinstance(exc, (GradingError, BuildError, WorkflowError)):
            err.print(f"course {args.command}: {exc}", markup=False)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
