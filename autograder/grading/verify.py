"""Proving a week's suite: the answer key earns full marks, the released notebook zero,
every mutant loses points, code that does nothing (nulls.py) earns nothing beyond shape
tests, and the suite has all four kinds of check. And the student's side: the key passes
every public test, and the public tests catch at least half of the mutants, so that the
self-check a student runs while working finds the common bugs before the grader does.

All variants are graded in one pytest process (the trusted imports are paid once), a
mutant runs only the tests its `catches` list names, and a null only its part's tests.
The public suite runs each mutant in-process, as `check()` runs a student's notebook.
"""

from __future__ import annotations

import fnmatch
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.config import Course
from autograder.grading.mutants import MutantError, load_mutants
from autograder.grading.nulls import null_variants
from autograder.grading.run import Batch, GradeResult, Submitted, grade_batches
from autograder.layout import CoursePaths
from autograder.pipeline.build import check_part, suite_test_names, source_notebook
from autograder.pipeline.week_info import WEEK_INFO, read_week_info
from autograder.submission.notebook import extract_module
from autograder.testing.plugin import KINDS
from autograder.gradebook.parts import part_of

MIN_MUTANTS = 6
WHAT_TO_WRITE = {
    "shape": "add tests marked @pytest.mark.kind(\"shape\") that check output and parameter shapes for several sizes",
    "value": "add tests marked @pytest.mark.kind(\"value\") that compare outputs with a trusted implementation, a "
             "closed form or hand-computed cases (autograder.kit: randomize, load_same_weights, assert_close)",
    "grad": "add tests marked @pytest.mark.kind(\"grad\") that compare gradients with a trusted implementation's "
            "(autograder.kit.gradients; sub.vjp gives the notebook's)",
    "convergence": "add a tiny training run marked @pytest.mark.kind(\"convergence\") on the kit's data "
                   "(autograder.kit.data), judged by a metric the trusted side computes (autograder.kit.probes), "
                   "its gate calibrated over at least 10 seeds",
}
IN_PROCESS_KEY = "answer key (in-process)"
PUBLIC = "public:"  # the public suite's run of a variant: its name in that batch
PUBLIC_SHARE = 0.5  # the share of a week's mutants its public tests must catch


@dataclass
class Verification:
    week: str
    problems: list[str] = field(default_factory=list)
    rows: list[tuple[str, ...]] = field(default_factory=list)  # (variant, score, verdict, self-check)
    seconds: float = 0.0      # the week's own tests (every variant), without the run's shared start-up
    key_seconds: float = 0.0  # the answer key's tests over the wire: what grading one submission costs
    catches: dict[str, list[str]] = field(default_factory=dict)
    public_caught: tuple[int, int] = (0, 0)  # (mutants the public tests catch, mutants)

    @property
    def ok(self) -> bool:
        return not self.problems


def answer_key_source(course: Course, root: Path, week_id: str) -> str:
    """The module the grader would make of the answer key's notebook (demo cells dropped)."""
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "answer_key.ipynb"
        nbformat.write(source_notebook(course, course.week(week_id), root), key)
        return extract_module(key).source


def write_variants(course: Course, root: Path, week_id: str, folder: Path) -> tuple[Path, list[Submitted], list[str]]:
    """The answer key notebook and one module per mutant and per null variant, written to `folder`.

    Returns the key, the variants as submissions (a mutant limited to the tests that should
    catch it, a null to its part's tests) and the problems found on the way (mutants that no
    longer apply).
    """
    key = folder / "answer_key.ipynb"
    notebook = source_notebook(course, course.week(week_id), root)
    nbformat.write(notebook, key)
    key_source = extract_module(key).source
    variants, problems = [], []
    try:
        found = load_mutants(CoursePaths(root).mutants(week_id))
    except MutantError as exc:
        found = []
        problems.append(str(exc))
    for mutant in found:
        try:
            source = mutant.apply(key_source)
        except MutantError as exc:
            problems.append(str(exc))
            continue
        path = folder / f"mutant_{mutant.name}.py"
        path.write_text(source)
        variants.append(Submitted(f"mutant:{mutant.name}", path, mutant.catches))
    return key, variants + _null_submissions(notebook, week_id, key_source, root, folder), problems


def _null_submissions(notebook, week_id: str, key_source: str, root: Path, folder: Path) -> list[Submitted]:
    cells = [(c.source, check_part(c, week_id)) for c in notebook.cells if c.cell_type == "code"]
    parts = [p for _, p in cells if p]
    tests = suite_test_names(CoursePaths(root).suite(week_id, "hidden"))
    nulls = []
    for variant in null_variants(cells):
        path = folder / f"null_{variant.part}_{variant.kind}.py"
        path.write_text(variant.source(key_source))
        mine = [t for t in tests if part_of(t, parts) == variant.part]
        if mine:  # shape tests may pass: they are not run
            nulls.append(Submitted(variant.name, path, mine, skip_kinds=("shape",), exhaustive=True))
    return nulls


def verify_week(course: Course, root: Path, week_id: str, sandbox: str | None = None,
                all_catches: bool = False) -> Verification:
    return verify_weeks(course, root, [week_id], sandbox, all_catches)[0]


def verify_weeks(course: Course, root: Path, week_ids: list[str], sandbox: str | None = None,
                 all_catches: bool = False) -> list[Verification]:
    """Verify several weeks in one trusted pytest process (its imports are paid once).

    For each week: the answer key over the wire (every test) and in-process (every test but
    the convergence runs, which repeat the same calls: enough to show that both transports
    agree), the release, and each mutant on the tests its `catches` names, cheapest kind first
    and only until one fails (a convergence run only for a mutant that nothing else catches),
    or on all of them with `all_catches`, which also proves each catches list right.

    Mutants and null variants run in-process, as the public self-checks do: they are the
    course's own code, not a student's, so they need no sandbox, and a worker each cost more
    than their tests (m2w02: 85 s with a worker per variant, 35 s in-process). The answer key
    and the release still go over the wire, so the sandboxed path is proven for every week.
    """
    paths = CoursePaths(root)
    checks = {w: Verification(w) for w in week_ids}
    with tempfile.TemporaryDirectory() as tmp:
        batches = []
        for week_id in week_ids:
            week, check = course.week(week_id), checks[week_id]
            release_nb = paths.release(week_id) / f"{week.slug}.ipynb"
            if not release_nb.is_file():
                check.problems.append(f"{release_nb} is missing: run `course build {week_id}`")
                continue
            folder = Path(tmp) / week_id
            folder.mkdir()
            key, variants, problems = write_variants(course, root, week_id, folder)
            check.problems += problems
            mutants = [v for v in variants if v.name.startswith("mutant:")]
            if len(mutants) < MIN_MUTANTS:
                check.problems.append(f"only {len(mutants)} usable mutants in assignments/{week_id}/mutants "
                                      f"(at least {MIN_MUTANTS}): write more plausible student bugs as mutants")
            batches.append(Batch(week_id, [Submitted("answer key", key), Submitted("release", release_nb)],
                                 in_process=[Submitted(IN_PROCESS_KEY, key, skip_kinds=("convergence",)), *variants]))
            public = suite_test_names(paths.suite(week_id, "public"))
            shared = sorted(set(public) & set(suite_test_names(paths.suite(week_id, "hidden"))))
            if shared:
                check.problems.append(f"public and hidden tests share names ({', '.join(shared)}): rename the public "
                                      "ones, since a hidden test's name is not for students to see")
            batches.append(Batch(week_id, [], suite="public", in_process=[
                Submitted(PUBLIC + "answer key", key, public, exhaustive=True),
                *(Submitted(PUBLIC + v.name, v.path, public) for v in mutants)]))
            check.catches = {v.name: v.only or [] for v in mutants}
        results = grade_batches(course, root, batches, sandbox=sandbox, until_caught=not all_catches)
    for batch in (b for b in batches if b.suite is None):
        check = checks[batch.week]
        week_results = {name: r for (week, name), r in results.items() if week == batch.week}
        check.seconds = sum(t.duration for r in week_results.values() for t in r.tests)
        check.key_seconds = sum(t.duration for t in week_results["answer key"].tests)
        _judge(check, {n: r for n, r in week_results.items() if not n.startswith(PUBLIC)})
        _check_transports(check, week_results["answer key"], week_results[IN_PROCESS_KEY])
        _check_catches(check, week_results, check.catches)
        _check_advertised_size(check, paths.release(batch.week), week_results["answer key"])
        _judge_public(check, {n.removeprefix(PUBLIC): r for n, r in week_results.items() if n.startswith(PUBLIC)})
    return [checks[w] for w in week_ids]


def _check_transports(check: Verification, wire: GradeResult, in_process: GradeResult) -> None:
    """Self-checks run in-process and grading over the wire: the key must fare the same in both."""
    over_wire = {t.name: t.passed for t in wire.tests}
    differ = [t.name for t in in_process.tests if over_wire.get(t.name) != t.passed]
    if not in_process.tests:
        check.problems.append(f"the answer key did not run in-process: {in_process.error or '?'}")
    elif differ:
        check.problems.append("the answer key passes different tests in-process and over the wire: "
                              + ", ".join(differ[:8]))


def _check_catches(check: Verification, results: dict[str, GradeResult], catches: dict[str, list[str]]) -> None:
    """A mutant's `catches` documents which tests find the bug: each that ran must fail at least
    once (a parametrized test counts when any of its cases fails), or the list has gone stale;
    each must name a test of the suite."""
    names = {t.name.split("[")[0] for t in results["answer key"].tests}
    for name, patterns in catches.items():
        tests = results[name].tests
        if not tests:
            continue  # it could not be graded at all: reported by _judge
        for pattern in patterns:
            if not any(fnmatch.fnmatch(n, pattern) for n in names):
                check.problems.append(f"{name} lists {pattern} in catches, but no hidden test has that name")
                continue
            matched = [t for t in tests if fnmatch.fnmatch(t.name.split("[")[0], pattern)]
            if matched and all(t.passed for t in matched):
                check.problems.append(f"{name} lists {pattern} in catches, but it passes: update the list")


def _check_advertised_size(check: Verification, release: Path, key: GradeResult) -> None:
    """The self-check tells students how many hidden tests there are; it must be true."""
    info = read_week_info(release)
    if not info:
        check.problems.append(f"{release / WEEK_INFO} is missing: run `course build {check.week}`")
        return
    hidden = info.get("hidden", {})
    actual = {"tests": len(key.tests), "points": key.possible}
    if hidden.get("tests") != actual["tests"] or hidden.get("points") != actual["points"]:
        check.problems.append(f"week.json advertises {hidden} hidden tests but the suite has {actual}; "
                              "use literal parametrize lists so the build can count them")


def _judge(check: Verification, results: dict[str, GradeResult]) -> None:
    key, release = results["answer key"], results["release"]
    kinds = {t.kind for t in key.tests}
    for kind in (k for k in KINDS if k not in kinds):
        check.problems.append(f"the hidden suite has no {kind} check: {WHAT_TO_WRITE[kind]}")
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
        if name.startswith("null:"):
            _judge_null(check, name, result)
        if not name.startswith("mutant:"):
            continue
        caught = [t.name for t in result.tests if not t.passed]
        more = f" and {len(caught) - 1} more" if len(caught) > 1 else ""
        verdict = f"caught by {caught[0]}{more}" if caught else "NOT CAUGHT"
        check.rows.append((name, f"{result.earned:g}/{result.possible:g}", verdict))
        if not caught:
            check.problems.append(f"{name} loses no points" + (f" ({result.error})" if result.error else ""))


def _judge_null(check: Verification, name: str, result: GradeResult) -> None:
    """Code that does nothing earns nothing in the tests of its part (shape tests, which it may
    pass, are not run)."""
    earning = [t for t in result.tests if t.passed and t.kind != "shape"]
    verdict = "earns nothing"
    if not result.tests:
        verdict = "no test but shape tests"
    elif earning:
        verdict = f"EARNS {sum(t.points for t in earning):g} points"
        check.problems.append(f"{name} (the part's code replaced by one that does nothing) passes "
                              + ", ".join(f"{t.name} ({t.kind})" for t in earning[:6])
                              + ": these tests must compare with an independent truth the code cannot fake")
    check.rows.append((name, f"{result.earned:g}/{result.possible:g}", verdict))


def _judge_public(check: Verification, results: dict[str, GradeResult]) -> None:
    """The public tests, run in-process as a student's `check()` runs them: the answer key
    passes every one, and they catch at least PUBLIC_SHARE of the mutants."""
    key = results.get("answer key")
    failing = [t for t in key.tests if not t.passed] if key else []
    if key is None or not key.tests:
        check.problems.append("the public tests did not run on the answer key: "
                              + ((key.error or "") if key else "") + " (is assignments/<week>/public empty?)")
    elif failing:
        check.problems.append("the answer key fails public tests: "
                              + "; ".join(f"{t.name}: {t.message[:300]}" for t in failing))
    verdicts = {"answer key": "passes all" if key and key.tests and not failing else "FAILS"}
    mutants = {name: r for name, r in results.items() if name.startswith("mutant:")}
    for name, result in mutants.items():
        caught = [t.name for t in result.tests if not t.passed]
        verdicts[name] = f"caught by {caught[0]}" if caught else ("passes" if result.tests else "did not run")
    missed = [name.removeprefix("mutant:") for name in mutants if not verdicts[name].startswith("caught")]
    need = math.ceil(PUBLIC_SHARE * len(mutants))
    check.public_caught = (len(mutants) - len(missed), len(mutants))
    if len(mutants) - len(missed) < need:
        check.problems.append(
            f"the public tests catch {len(mutants) - len(missed)} of {len(mutants)} mutants (at least {need}): add "
            "cheap public checks for the common bugs of each part, without revealing hidden cases; they miss "
            + ", ".join(missed))
    check.rows = [(*row, verdicts.get(row[0], "")) for row in check.rows]
