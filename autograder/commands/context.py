"""What every command shares: the consoles, the course it works on, and the options that many
commands take (--course, --exchange, --student, --sandbox, --backend)."""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path

from rich.console import Console
from rich.text import Text

import autograder
from autograder.config import Course, load_course
from autograder.layout import COURSE_ENV, COURSE_FILE

# No markup and no emoji codes: text from submissions (messages, ids, file names) is printed as
# it is, never read as `[red]` or `:train:`. Styles go through `styled`.
console = Console(highlight=False, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, markup=False, emoji=False)


def styled(*pieces: str | tuple[str, str]) -> Text:
    """Text from pieces, each plain or (text, style): only the styles given here apply."""
    return Text.assemble(*pieces)


class UsageError(Exception):
    """The command was given something it cannot use; the message says what to do instead."""


def find_course_file(given: str | None) -> Path:
    """--course, else $COURSE_YAML, else the course.yaml of this folder or the nearest above it,
    else the one beside the package in a checkout."""
    if given or os.environ.get(COURSE_ENV):
        return Path(given or os.environ[COURSE_ENV])
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / COURSE_FILE).is_file():
            return folder / COURSE_FILE
    bundled = Path(autograder.__file__).resolve().parent.parent / COURSE_FILE
    if not bundled.is_file():
        raise UsageError(f"no {COURSE_FILE} in {Path.cwd()} or any folder above it. Run `course` inside a course "
                         f"folder, point at one with `course --course PATH/{COURSE_FILE} ...` or "
                         f"`export {COURSE_ENV}=PATH/{COURSE_FILE}`, or make a demo course with "
                         "`course demo --dir DIR`")
    return bundled


def open_course(args: argparse.Namespace) -> tuple[Course, Path]:
    path = find_course_file(args.course)
    return load_course(path), path.resolve().parent


def pick_weeks(course: Course, ids: list[str], ready_only: bool = True) -> list[str]:
    """The weeks named (each checked), or every ready week."""
    if ids:
        for week_id in ids:
            course.week(week_id)
        return ids
    return [w.id for w in course.weeks if w.state == "ready" or not ready_only]


def settings_of(args: argparse.Namespace, course: Course):
    from autograder.workflow.settings import settings_from_course

    return settings_from_course(course, getattr(args, "exchange", None))


def student_of(args: argparse.Namespace) -> str:
    return args.student or getpass.getuser()


def sandbox_of(args: argparse.Namespace) -> str | None:
    """`--backend docker` runs workers in containers; `--sandbox` picks the local sandbox."""
    if getattr(args, "backend", "local") == "docker":
        if args.sandbox not in (None, "docker"):
            raise UsageError("--sandbox applies to the local backend only; drop it or use --backend local")
        return "docker"
    return args.sandbox
