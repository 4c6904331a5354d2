"""Commands for whoever writes the course: list, build, solution, new-week, verify, image."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from rich.table import Table

from autograder.commands.context import (UsageError, console, err, find_course_file, open_course, pick_weeks,
                                         styled)


def cmd_list(args: argparse.Namespace) -> int:
    course, _ = open_course(args)
    table = Table(title=course.title)
    for column in ("week", "title", "state", "points", "release", "due"):
        table.add_column(column, no_wrap=column != "title", overflow="fold")
    for w in course.weeks:  # at 80 columns the title wraps; ids and dates stay whole
        table.add_row(w.id, w.title, w.state, f"{w.points:g}", str(w.release or ""),
                      f"{w.due:%Y-%m-%d %H:%M}" if w.due else "")
    console.print(table)
    ready = sum(w.state == "ready" for w in course.weeks)
    console.print(f"{ready} of {len(course.weeks)} weeks ready")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from autograder.pipeline.build import build_week, stale_files

    course, root = open_course(args)
    weeks = pick_weeks(course, args.weeks)
    if args.check:
        stale = [f for w in weeks for f in stale_files(course, w, root, rebuild=args.rebuild)]
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

    course, root = open_course(args)
    path = write_answer_key(course, args.week, root, Path(args.output))
    console.print(f"answer key for {args.week} written to {path}")
    return 0


def cmd_new_week(args: argparse.Namespace) -> int:
    from autograder.pipeline.scaffold import ScaffoldError, new_week

    course, root = open_course(args)
    try:
        skeleton = new_week(course, find_course_file(args.course), args.week, args.slug)
    except ScaffoldError as exc:
        raise UsageError(str(exc)) from None
    for path in skeleton.files:
        console.print(f"  wrote {path.relative_to(root) if path.is_relative_to(root) else path}")
    console.print(f"""
{args.week} has a skeleton. Next:
  1. course build {args.week}    writes release/{args.week}/ from the reference
  2. course verify {args.week}   grades the answer key, the release and the mutant, and says
                          what the week still lacks (gradient and convergence tests, mutants)
  3. replace the placeholder part with the week's parts: public and hidden tests of all four
     kinds for each, a mutant per plausible bug; autograder.kit has data, probes and helpers
  4. once verify is green: state: ready in course.yaml, and commit release/{args.week}/""", soft_wrap=True)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from autograder.grading.verify import verify_weeks

    course, root = open_course(args)
    weeks = pick_weeks(course, args.weeks)
    started = time.monotonic()
    with console.status(f"verifying {', '.join(weeks)}: answer keys, releases, mutants and self-checks, in one run…"):
        verdicts = verify_weeks(course, root, weeks, sandbox=args.sandbox, all_catches=args.all_catches)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(v) | {"ok": v.ok} for v in verdicts], indent=1))
    failed = 0
    for verdict in verdicts:
        table = Table(title=f"{verdict.week} (the answer key's tests {verdict.key_seconds:.1f} s; "
                            f"all variants {verdict.seconds:.1f} s)")
        for column in ("variant", "hidden score", "hidden suite's verdict", "public self-checks"):
            table.add_column(column)
        for row in verdict.rows:
            table.add_row(*row)
        console.print(table)
        caught, mutants = verdict.public_caught
        console.print(f"{verdict.week}: the public self-checks catch {caught} of {mutants} mutants")
        if verdict.ok:
            console.print(f"{verdict.week} verified", style="green")
        else:
            failed += 1
            for problem in verdict.problems:
                console.print(styled((f"{verdict.week}: ", "red"), problem))
    console.print(f"{len(verdicts) - failed} of {len(verdicts)} weeks verified in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


def cmd_image(args: argparse.Namespace) -> int:
    from autograder.pipeline.image import build_image
    from autograder.sandbox.container import DockerUnavailable, check_image, client

    course, _ = open_course(args)
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
