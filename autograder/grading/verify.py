"""Proving a week's suite: the answer key earns full marks, the released notebook zero,
every mutant loses points, and the suite has all four kinds of check.

All variants are graded in one pytest process (the trusted imports are paid once),
and a mutant runs only the tests its `catches` list names.
"""

from __future__ import annotations

import fnmatch
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.config import Course
from autograder.grading.mutants import MutantError, load_mutants
from autograder.grading.run import GradeResult, Submitted, grade
from autograder.pipeline.build import CoursePaths, source_notebook
from autograder.submission.notebook import extract_module
from autograder.testing.plugin import KINDS


@dataclass
class Verification:
    week: str
    problems: list[str] = field(default_factory=list)
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (variant, score, verdict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def write_variants(course: Course, root: Path, week_id: str, folder: Path) -> tuple[Path, list[Submitted], list[str]]:
    """The answer key notebook and one module per mutant, written to `folder`.

    Returns the key, the mutants as submissions (each limited to the tests that should catch
    it) and the problems found on the way (mutants that no longer apply).
    """
    key = folder / "answer_key.ipynb"
    nbformat.write(source_notebook(course.week(week_id), root), key)
    key_source = extract_module(key).source
    variants, problems = [], []
    try:
        found = load_mutants(CoursePaths(root).assignment(week_id) / "mutants")
    except MutantError as exc:
        return key, [], [str(exc)]
    for mutant in found:
        try:
            source = mutant.apply(key_source)
        except MutantError as exc:
            problems.append(str(exc))
            continue
        path = folder / f"mutant_{mutant.name}.py"
        path.write_text(source)
        variants.append(Submitted(f"mutant:{mutant.name}", path, mutant.catches))
    return key, variants, problems


def verify_week(course: Course, root: Path, week_id: str, sandbox: str | None = None) -> Verification:
    paths = CoursePaths(root)
    week = course.week(week_id)
    check = Verification(week_id)
    release_nb = paths.release(week_id) / f"{week.slug}.ipynb"
    if not release_nb.is_file():
        check.problems.append(f"{release_nb} is missing: run `course build {week_id}`")
        return check
    with tempfile.TemporaryDirectory() as tmp:
        key, variants, problems = write_variants(course, root, week_id, Path(tmp))
        check.problems += problems
        if len(variants) < 6:
            check.problems.append(f"only {len(variants)} usable mutants in assignments/{week_id}/mutants "
                                  "(at least 6)")
        submissions = [Submitted("answer key", key), Submitted("release", release_nb)] + variants
        results = grade(course, root, week_id, submissions, sandbox=sandbox)
    check.seconds = next(iter(results.values())).seconds
    _judge(check, results)
    _check_catches(check, results, {v.name: v.only or [] for v in variants})
    _check_advertised_size(check, paths.release(week_id) / "week.json", results["answer key"])
    return check


def _check_catches(check: Verification, results: dict[str, GradeResult], catches: dict[str, list[str]]) -> None:
    """A mutant's `catches` documents which tests find the bug: each must fail at least once
    (a parametrized test counts when any of its cases fails), or the list has gone stale."""
    for name, patterns in catches.items():
        tests = results[name].tests
        if not tests:
            continue  # it could not be graded at all: reported by _judge
        for pattern in patterns:
            matched = [t for t in tests if fnmatch.fnmatch(t.name.split("[")[0], pattern)]
            if not matched:
                check.problems.append(f"{name} lists {pattern} in catches, but no hidden test has that name")
            elif all(t.passed for t in matched):
                check.problems.append(f"{name} lists {pattern} in catches, but it passes: update the list")


def _check_advertised_size(check: Verification, info_path: Path, key: GradeResult) -> None:
    """The self-check tells students how many hidden tests there are; it must be true."""
    if not info_path.is_file():
        check.problems.append(f"{info_path} is missing: run `course build {check.week}`")
        return
    hidden = json.loads(info_path.read_text()).get("hidden", {})
    actual = {"tests": len(key.tests), "points": key.possible}
    if hidden.get("tests") != actual["tests"] or hidden.get("points") != actual["points"]:
        check.problems.append(f"week.json advertises {hidden} hidden tests but the suite has {actual}; "
                              "use literal parametrize lists so the build can count them")


def _judge(check: Verification, results: dict[str, GradeResult]) -> None:
    key, release = results["answer key"], results["release"]
    kinds = {t.kind for t in key.tests}
    missing = [k for k in KINDS if k not in kinds]
    if missing:
        check.problems.append(f"the hidden suite has no {', '.join(missing)} check")
    full = key.possible > 0 and key.earned == key.possible
    check.rows.append(("answer key", f"{key.earned:g}/{key.possible:g}", "full marks" if full else "NOT FULL"))
    if not full:
        failed = [f"{t.name}: {t.message[:300]}" for t in key.tests if not t.passed]
        check.problems.append("the answer key loses points: " + ("; ".join(failed) or key.error or "?"))
    zero = release.earned == 0 and release.possible > 0
    check.rows.append(("release", f"{release.earned:g}/{release.possible:g}", "zero" if zero else "NOT ZERO"))
    if not zero:
        passed = [t.name for t in release.tests if t.passed]
        check.problems.append(f"the released notebook earns points: {', '.join(passed) or release.error}")
    for name, result in results.items():
        if not name.startswith("mutant:"):
            continue
        caught = [t.name for t in result.tests if not t.passed]
        more = f" and {len(caught) - 1} more" if len(caught) > 1 else ""
        verdict = f"caught by {caught[0]}{more}" if caught else "NOT CAUGHT"
        check.rows.append((name, f"{result.earned:g}/{result.possible:g}", verdict))
        if not caught:
            check.problems.append(f"{name} loses no points" + (f" ({result.error})" if result.error else ""))
