"""`course new-week`: the skeleton of a planned week, on the week kit.

It writes a reference with one placeholder part, its public self-check, a hidden suite with
shape and value tests, one mutant, and the week's `reference` in course.yaml. The skeleton
builds and grades; `course verify` then fails only for what a new week still lacks (gradient
and convergence tests, more mutants), and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from autograder.config import Course, load_course
from autograder.pipeline.render import fill

TEMPLATES = Path(__file__).resolve().parent / "templates" / "new_week"


class ScaffoldError(Exception):
    pass


@dataclass(frozen=True)
class Skeleton:
    week: str
    files: list[Path]


def new_week(course: Course, course_file: Path, week_id: str, slug: str | None = None) -> Skeleton:
    """Write the skeleton of `week_id`, a planned week of `course_file`'s course."""
    week = course.week(week_id)
    root = Path(course_file).resolve().parent
    if week.state == "ready" or week.reference:
        raise ScaffoldError(f"{week_id} already has a reference ({week.reference or 'state: ready'}); "
                            "new-week only starts planned weeks")
    slug = slug or slug_of(week.title)
    if not re.fullmatch(r"[a-z0-9_]+", slug):
        raise ScaffoldError(f"the slug {slug!r} must be lower-case letters, digits and underscores")
    reference = Path("reference") / f"{week_id}_{slug}.py"
    assignment = Path("assignments") / week_id
    targets = {reference: "reference.py", assignment / "public" / "test_public.py": "test_public.py",
               assignment / "hidden" / "test_hidden.py": "test_hidden.py",
               assignment / "mutants" / "unbiased_variance.yaml": "mutant.yaml"}
    present = [str(path) for path in targets if (root / path).exists()]
    if present:
        raise ScaffoldError(f"not overwriting what is there: {', '.join(present)}")
    values = {"week": week_id, "title": week.title, "sources": "; ".join(week.sources) or "TODO(author)"}
    for path, template in targets.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(fill((TEMPLATES / template).read_text(), str(TEMPLATES / template), **values))
    _set_reference(Path(course_file), week_id, reference.as_posix())
    load_course(course_file)  # still valid
    return Skeleton(week_id, [root / p for p in targets] + [Path(course_file)])


def slug_of(title: str) -> str:
    """'DETR from scratch' -> 'detr_from_scratch': the first four words, lower case."""
    words = re.findall(r"[a-z0-9]+", title.lower())[:4]
    return "_".join(words) or "week"


def _set_reference(course_file: Path, week_id: str, reference: str) -> None:
    """Add `reference:` to the week's entry, keeping the file's comments and layout."""
    lines = course_file.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(rf"\s*- id: ['\"]?{week_id}['\"]?\s*$", line)), None)
    if start is None:
        raise ScaffoldError(f"{course_file}: cannot find the line `- id: {week_id}` to add its reference")
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())] + "  "
    end = start + 1
    while end < len(lines) and lines[end].startswith(indent) and lines[end].strip():
        end += 1
    lines.insert(end, f"{indent}reference: {reference}\n")
    course_file.write_text("".join(lines))
