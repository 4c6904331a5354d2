"""Cells that the build writes, so that what many notebooks share has one source:

- `given="<name>"` (a code cell): code students get ready-made, from `reference/given/<name>.py`.
  Such a file holds an earlier week's solution and says which (`SOLUTION_OF = "m1w01"`); the
  week must list that week under `gives` in course.yaml, so that `course release` holds it
  back until the earlier week's late window has closed.
- `boilerplate="<template>"` (a markdown cell): text every notebook opens with (how the
  notebook works, what may not be used), from `autograder/pipeline/templates/<template>.md`
  and course.yaml.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat

from autograder.config import Course, Week

TEMPLATES = Path(__file__).resolve().parent / "templates"


class RenderError(Exception):
    """A rendered cell cannot be written: the message names the cell and what to fix."""


def render_cells(nb: nbformat.NotebookNode, course: Course, week: Week, root: Path, parts: list[str],
                 hidden_tests: int) -> None:
    """Fill every `given` and `boilerplate` cell of the reference's notebook in place."""
    for cell in nb.cells:
        if "given" in cell.metadata:
            cell.source = given_code(root, week, str(cell.metadata.pop("given")))
        elif "boilerplate" in cell.metadata:
            cell.source = boilerplate(str(cell.metadata.pop("boilerplate")), course, week, parts, hidden_tests)


def given_code(root: Path, week: Week, name: str) -> str:
    path = Path(root) / "reference" / "given" / f"{name}.py"
    if not path.is_file():
        raise RenderError(f"reference of {week.id}: a cell is given={name!r}, but {path} does not exist")
    source = path.read_text()
    tree = ast.parse(source)
    solution_of = next((str(n.value.value) for n in tree.body if isinstance(n, ast.Assign)
                        and isinstance(n.value, ast.Constant)
                        and any(getattr(t, "id", "") == "SOLUTION_OF" for t in n.targets)), None)
    if solution_of is not None and solution_of not in week.gives:
        raise RenderError(f"reference of {week.id} gives {path.name}, which is {solution_of}'s solution: add "
                          f"{solution_of} to course.yaml weeks[{week.id}].gives, so that the week is not released "
                          f"before {solution_of}'s late window closes")
    lines = source.splitlines()
    skip: set[int] = set()
    for node in tree.body:
        is_docstring = node is tree.body[0] and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        is_marker = isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SOLUTION_OF" for t in node.targets)
        if is_docstring or is_marker:
            skip.update(range(node.lineno - 1, node.end_lineno or node.lineno))
    body = "\n".join(line for i, line in enumerate(lines) if i not in skip).strip("\n")
    who = f"{solution_of}'s solution" if solution_of else "given code"
    return f"# Given ({who}): read it, run it, do not change it.\n{body}\n"


def boilerplate(name: str, course: Course, week: Week, parts: list[str], hidden_tests: int) -> str:
    path = TEMPLATES / f"{name}.md"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(TEMPLATES.glob("*.md")))
        raise RenderError(f"reference of {week.id}: no boilerplate template {name!r} (known: {known})")
    return fill(path.read_text(), where=str(path),
        week=week.id, parts=", ".join(f"`{p}`" for p in dict.fromkeys(parts)) or "none yet",
        hidden_tests=hidden_tests, import_timeout=f"{course.grading.import_timeout_s:g}",
        forbidden=forbidden_sentence(week)).strip() + "\n"


def fill(template: str, where: str, **values: object) -> str:
    """`{{name}}` replaced by each value (LaTeX's `$` and `{}` stay as they are)."""
    def value(match: re.Match) -> str:
        if match.group(1) not in values:
            raise RenderError(f"{where}: no value for {{{{{match.group(1)}}}}}")
        return str(values[match.group(1)])

    return re.sub(r"\{\{(\w+)\}\}", value, template)


def forbidden_sentence(week: Week) -> str:
    if not week.forbidden:
        return "**What you may use.** Anything installed with the course."
    names = ", ".join(f"`{api}`" for api in week.forbidden)
    return (f"**What you may not use** in graded cells (those not tagged `demo`): {names}. The grader "
            "finds these in your code, also under another name, and the parts that use them earn nothing.")
