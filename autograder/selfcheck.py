"""Self-checks: a week's public tests against the student's current code, in this process.

In a notebook, `check("m1w01")` (or `check("m1w01", "attention")`) tests the
definitions the notebook holds right now; `course check m1w01 notebook.ipynb` does the
same from the shell. Passing them is not a full score: the hidden suite tests more,
and the report says how much more, without saying what.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from pathlib import Path

from autograder.config import GradingLimits
from autograder.layout import PUBLIC_TESTS_DIR, CoursePaths
from autograder.pipeline.week_info import read_week_info
from autograder.testing.plugin import SubmissionEntry, SubmissionPlugin, TestOutcome
from autograder.testing.suite_modules import fresh_suite_modules
from autograder.gradebook.parts import case_of, part_of


class UnknownPart(ValueError):
    """A self-check named a part the week does not have; the message lists the parts."""


class NotebookDidNotRun(Exception):
    """The notebook's code failed or took too long while loading; the message says which."""


@dataclass
class CheckReport:
    week: str
    part: str | None
    outcomes: list[TestOutcome] = field(default_factory=list)
    hidden: dict = field(default_factory=dict)
    definitions: list[str] = field(default_factory=list)  # what the notebook defines, as checked

    @property
    def passed(self) -> int:
        return sum(o.passed for o in self.outcomes)

    def text(self) -> str:
        scope = f"{self.week}, part '{self.part}'" if self.part else self.week
        lines = [f"Self-check for {scope}: {self.passed} of {len(self.outcomes)} public tests passed"]
        if self.definitions:
            lines.append(f"  (your definitions: {', '.join(self.definitions)})")
        for o in self.outcomes:
            lines.append(f"  {'PASS' if o.passed else 'FAIL'}  {o.description}{case_of(o.name)}")
            if not o.passed:
                lines += [f"        {line}" for line in o.message.strip().splitlines()[:6]]
        if not self.outcomes:
            lines.append("  (no public test matches this part)")
        count = self.hidden.get("tests")
        if count:
            lines.append(f"The hidden suite has {count} more tests worth {self.hidden.get('points', '?'):g} points "
                         "(shapes, values, gradients, convergence). Passing the public tests is not a full score.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<self-check of {self.week}: {self.passed} of {len(self.outcomes)} passed>"


def check(week: str, part: str | None = None, namespace: dict | types.ModuleType | None = None,
          tests_dir: Path | None = None, quiet: bool = False) -> CheckReport | None:
    """Run `week`'s public tests (or one part's) against the caller's definitions and print the
    report; with `quiet`, return it instead (so a notebook cell shows it once)."""
    if namespace is None:
        caller = inspect.currentframe()
        namespace = caller.f_back.f_globals if caller is not None and caller.f_back is not None else {}
    folder = Path(tests_dir) if tests_dir else find_public_tests(week)
    report = run_public_tests(week, namespace, folder, part)
    if quiet:
        return report
    print(report.text())
    return None


def check_notebook(course, root: Path, week_id: str, notebook: Path, part: str | None = None) -> CheckReport:
    """A saved notebook's self-check, from the shell: its code loaded under the grader's import
    time limit, then the public tests under its per-test limit."""
    from autograder.submission.forbidden import forbidden_parts
    from autograder.submission.locate import MODULE_FILE, in_notebook_terms, kernel_frames
    from autograder.submission.notebook import extract_module
    from autograder.testing.alarm import TimeLimitExceeded, time_limit

    week, limits = course.week(week_id), course.grading
    module = extract_module(notebook)
    namespace: dict = {"__name__": "submission"}
    too_long = (f"loading your notebook took longer than {limits.import_timeout_s:.0f} s; move training and "
                "long demos into cells tagged 'demo' or guard them")
    try:
        with time_limit(limits.import_timeout_s, too_long):
            exec(compile(module.source, MODULE_FILE, "exec"), namespace)
    except TimeLimitExceeded as exc:
        raise NotebookDidNotRun(str(exc)) from None
    except Exception as exc:  # the student's own code, on the student's own machine
        where = in_notebook_terms(kernel_frames(exc), module.source)
        raise NotebookDidNotRun(f"{type(exc).__name__}: {exc}" + (f"\n{where.rstrip()}" if where else "")) from None
    tests = find_public_tests(week_id, root, notebook)
    return run_public_tests(week_id, namespace, tests, part, forbidden_parts(module.source, week.forbidden, week.id),
                            test_timeout_s=limits.test_timeout_s, source=module.source)


def run_public_tests(week: str, namespace: dict | types.ModuleType, folder: Path,
                     part: str | None = None, forbidden_parts: dict[str, str] | None = None,
                     test_timeout_s: float = GradingLimits.model_fields["test_timeout_s"].default,
                     source: str | None = None) -> CheckReport:
    import pytest

    from autograder.testing.in_process import InProcessSubmission

    info = read_week_info(folder.parent)
    parts = info.get("parts") or []
    if part and not parts:
        raise UnknownPart(f"the parts of {week} are not known here: {folder.parent} has no week.json "
                          "(fetch the week again, or check the whole week)")
    if part and part not in parts:
        raise UnknownPart(f"{week} has no part {part!r}; its parts are {', '.join(dict.fromkeys(parts))}")
    entry = SubmissionEntry("yours", lambda: InProcessSubmission(namespace, forbidden_parts), source=source,
                            test_filter=(lambda name: part_of(name, parts) == part) if part else None)
    plugin = SubmissionPlugin([entry], default_visibility="visible", test_timeout_s=test_timeout_s)
    args = [str(folder), "-p", "no:cacheprovider", "--import-mode=importlib", "--assert=plain",
            "-o", "addopts=", "--rootdir", str(folder), "-p", "no:terminal"]
    with fresh_suite_modules(folder):
        code = pytest.main(args, plugins=[plugin])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise RuntimeError(f"the public tests in {folder} did not run (pytest exit code {int(code)})")
    return CheckReport(week, part, plugin.outcomes, info.get("hidden", {}), _definitions(namespace))


def _definitions(namespace: dict | types.ModuleType) -> list[str]:
    """The functions and classes the notebook defines itself (not what it imported)."""
    names = vars(namespace) if isinstance(namespace, types.ModuleType) else namespace
    home = names.get("__name__")
    return sorted(name for name, value in names.items()
                  if not name.startswith("_") and isinstance(value, (type, types.FunctionType))
                  and getattr(value, "__module__", None) == home)


def find_public_tests(week: str, course_root: Path | None = None, notebook: Path | None = None) -> Path:
    """The public tests beside the notebook or in this folder (a fetched week), else in release/."""
    roots = [course_root] if course_root else []
    roots.append(Path(__file__).resolve().parent.parent)
    candidates = ([Path(notebook).resolve().parent / PUBLIC_TESTS_DIR] if notebook else []) + [
        Path.cwd() / PUBLIC_TESTS_DIR, Path.cwd() / week / PUBLIC_TESTS_DIR,
        *[CoursePaths(root).release(week) / PUBLIC_TESTS_DIR for root in roots]]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"no public tests for {week}: looked in " + ", ".join(map(str, candidates)))
