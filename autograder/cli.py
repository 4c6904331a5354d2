"""`course`: one command for the course, with a subcommand per job. This file only parses the
arguments; `autograder.commands` does each job.

Exit status is 0 when the job was done (a low score is a result, not an error),
1 when the job failed (a stale release, a week that does not verify), and 2 for
usage and configuration errors, which are printed as one clear sentence.
"""

from __future__ import annotations

import argparse
import sys

from autograder.commands import authoring, demo, instructor, student
from autograder.commands.context import UsageError, err
from autograder.config import CourseConfigError


def _options() -> dict[str, argparse.ArgumentParser]:
    """Options that several commands share, each defined once."""
    week = argparse.ArgumentParser(add_help=False)
    week.add_argument("week", metavar="WEEK", help="a week's id, m<module>w<week>: m1w01 ... m3w21 "
                      "(`course list` shows them)")
    weeks = argparse.ArgumentParser(add_help=False)
    weeks.add_argument("weeks", nargs="*", metavar="WEEK", help="week ids such as m1w01 (default: every ready week)")
    exchange = argparse.ArgumentParser(add_help=False)
    exchange.add_argument("--exchange", metavar="DIR",
                          help="nbgrader's exchange folder (default: course.yaml's workflow.exchange)")
    me = argparse.ArgumentParser(add_help=False)
    me.add_argument("--student", metavar="ID", help="your student id (default: your user name)")
    students = argparse.ArgumentParser(add_help=False)
    students.add_argument("--student", action="append", metavar="ID", help="only this student (repeatable)")
    sandbox = argparse.ArgumentParser(add_help=False)
    sandbox.add_argument("--sandbox", choices=["auto", "bwrap", "none"], default=None,
                         help="the local sandbox (default: course.yaml's grading.sandbox; auto uses bubblewrap "
                         "where installed)")
    backend = argparse.ArgumentParser(add_help=False, parents=[sandbox])
    backend.add_argument("--backend", choices=["local", "docker"], default="local",
                         help="where workers run: local (sandboxed processes on this machine) or docker "
                         "(containers from the grader image, with a GPU where the host has one)")
    return {"week": week, "weeks": weeks, "exchange": exchange, "me": me, "students": students,
            "sandbox": sandbox, "backend": backend}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="course", description="Course platform and autograder for Vision Transformers and SSL.",
        epilog="Run `course COMMAND --help` for a command's options.")
    parser.add_argument("--course", metavar="FILE", help="course.yaml to use (default: $COURSE_YAML, else "
                        "found from the current folder upwards, else the checkout's own)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    o = _options()

    def command(name: str, run, help: str, *parents: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=[o[p] for p in parents])
        sub.set_defaults(run=run)
        return sub

    # -- authors ------------------------------------------------------------------------------
    command("list", authoring.cmd_list, "every week, its state and points")
    p = command("build", authoring.cmd_build, "regenerate release/ from reference/ (author)", "weeks")
    p.add_argument("--check", action="store_true", help="fail if the committed release/ is stale (from the "
                   "fingerprint in its week.json: no rebuild)")
    p.add_argument("--rebuild", action="store_true", help="with --check: rebuild and compare byte by byte")
    p = command("solution", authoring.cmd_solution, "write a week's answer key notebook (author)", "week")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the .ipynb")
    p = command("new-week", authoring.cmd_new_week, "write the skeleton of a planned week on the week kit "
                "(author)", "week")
    p.add_argument("--slug", help="the reference's file name after the week id (default: from the title)")
    p = command("verify", authoring.cmd_verify, "prove weeks' suites in one run: key full, release zero, "
                "mutants caught, half of them by the public self-checks (author)", "weeks", "sandbox")
    p.add_argument("--json", metavar="FILE", help="also write the verdicts as JSON (the test suite reads them)")
    p.add_argument("--all-catches", action="store_true",
                   help="run every test each mutant's catches names, proving each list (default: cheapest kind "
                   "first, until one fails; a convergence run only for a mutant nothing else catches)")
    p = command("image", authoring.cmd_image, "build or check the docker backend's grader image (instructor)")
    p.add_argument("action", choices=["build", "check"])
    p.add_argument("--base", metavar="IMAGE", help="base image (default: the Dockerfile's debian:bookworm-slim; "
                   "without a registry, one made with debootstrap, as docker/engine.sh does)")
    p.add_argument("--tag", metavar="NAME", help="image name (default: course.yaml's grading.image)")

    # -- students -----------------------------------------------------------------------------
    p = command("check", student.cmd_check, "run a week's public self-checks against a notebook (student)", "week")
    p.add_argument("notebook", nargs="?", metavar="NOTEBOOK",
                   help="default: the week's notebook in this folder, else the one in release/")
    p.add_argument("--part", help="only this part's tests, e.g. attention")
    p = command("fetch", student.cmd_fetch, "fetch a released week to work on (student)", "week", "me", "exchange")
    p.add_argument("--dest", default=".", metavar="DIR", help="where to put the week's folder (default: here)")
    p = command("submit", student.cmd_submit, "submit a week's notebook (student)", "week", "me", "exchange")
    p.add_argument("notebook", nargs="?", metavar="NOTEBOOK", help="default: the fetched week's folder here")
    p = command("fetch-feedback", student.cmd_fetch_feedback, "fetch your feedback on a week (student)",
                "week", "me", "exchange")
    p.add_argument("--dest", default=".", metavar="DIR", help="the folder holding the fetched week (default: here)")

    # -- instructors --------------------------------------------------------------------------
    p = command("grade", instructor.cmd_grade, "grade one submission against the hidden suite (instructor)",
                "week", "backend")
    p.add_argument("notebook", metavar="NOTEBOOK", help="a submitted .ipynb (or a .py module)")
    p.add_argument("--results", metavar="FILE", help="write Gradescope-style results JSON here")
    p.add_argument("--feedback", metavar="FILE", help="write a markdown feedback report here")
    p = command("release", instructor.cmd_release, "release weeks into the nbgrader exchange (instructor)",
                "weeks", "exchange")
    p.add_argument("--due", action="store_true", help="every ready week whose release date has come")
    p.add_argument("--force", action="store_true", help="replace a week already in the exchange")
    command("collect", instructor.cmd_collect, "collect a week's submissions with their timestamps (instructor)",
            "week", "exchange")
    p = command("autograde", instructor.cmd_autograde, "grade every collected submission of a week (instructor)",
                "week", "students", "backend", "exchange")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="batches graded side by side (default 1)")
    p = command("feedback", instructor.cmd_feedback, "generate and release per-student feedback (instructor)",
                "week", "students", "exchange")
    p.add_argument("--no-release", action="store_true", help="generate the pages only, to review them first")
    p = command("gradebook", instructor.cmd_gradebook, "students by weeks from nbgrader's gradebook (instructor)")
    p.add_argument("--csv", metavar="FILE", help="export one row per student (Canvas-style columns)")
    p.add_argument("--html", metavar="FILE", help="write a report: score distributions, most-failed tests, "
                   "late and missing submissions")

    p = command("gradescope", instructor.cmd_gradescope, "build a Gradescope autograder zip for a week from its "
                "suites and this engine (instructor)", "week")
    p.add_argument("-o", "--output", default="autograder.zip", metavar="FILE",
                   help="where to write the zip (default: autograder.zip); upload it as the assignment's autograder")

    # -- newcomers ----------------------------------------------------------------------------
    p = command("demo", demo.cmd_demo, "the whole loop for one week in a throwaway course: release, two "
                "students submit, collect, autograde, feedback, gradebook", "sandbox")
    p.add_argument("--week", default="m1w01", metavar="WEEK", help="the week to run (default m1w01)")
    p.add_argument("--dir", metavar="DIR", help="where to put the demo course (default: a new temporary folder, "
                   "kept so that you can open the report)")
    p.add_argument("--bug", metavar="MUTANT", help="the known bug the second student hands in (a mutant's name; "
                   "default: the week's first)")
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
