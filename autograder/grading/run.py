"""Grading submissions: prepare each one, run the suite on the trusted side, collect outcomes.

One pytest process grades a batch of submissions of one week, each in its own
sandboxed worker. The pytest process itself is trusted: it holds the hidden tests and
never runs student code. A submission that cannot even be turned into a module gets
its zero here, with the reason, and never reaches pytest.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from autograder.config import Course, GradingLimits, Week
from autograder.layout import CoursePaths
from autograder.sandbox.spec import new_run_id
from autograder.submission.forbidden import WHOLE_SUBMISSION, find_forbidden, forbidden_parts
from autograder.submission.locate import describe_line
from autograder.submission.opaque import MODULE_LEVEL
from autograder.testing.bounds import bounded_notes
from autograder.submission.notebook import NotebookError, extract_module
from autograder.testing.plugin import TestOutcome, entry_key, split_key


class GradingError(Exception):
    """The grader itself failed (not the submission): nothing was scored."""


@dataclass
class Submitted:
    """One submission to grade: a notebook or a .py module, and optionally which tests apply."""

    name: str
    path: Path
    only: list[str] | None = None
    skip_kinds: tuple[str, ...] = ()  # kinds of test to leave out (a platform test that needs no training run)
    exhaustive: bool = False  # run every test `only` names, even in a run that stops at a mutant's first catch


@dataclass
class GradeResult:
    submission: str
    week: str
    tests: list[TestOutcome] = field(default_factory=list)
    error: str | None = None  # why nothing could be graded
    notes: list[str] = field(default_factory=list)
    output: str = ""
    seconds: float = 0.0
    sandbox: str = ""
    device: str = ""  # where the student's code ran: "cpu" or "cuda (<GPU name>)"
    run_id: str = ""  # the grading run: its workers carry it (RUN_ENV, or a container label)

    @property
    def earned(self) -> float:
        return sum(t.points for t in self.tests if t.passed)

    @property
    def possible(self) -> float:
        return sum(t.points for t in self.tests)


@dataclass
class Batch:
    """One week's submissions for a grading run. `in_process` holds trusted code (answer keys,
    mutants) to run in the trusted process as well, through the in-process transport that
    self-checks use (each on the tests of every kind but its `skip_kinds`). `suite` ("hidden"
    or "public") overrides the run's suite for this batch."""

    week: str
    submissions: list[Submitted]
    in_process: list[Submitted] = field(default_factory=list)
    suite: str | None = None


def grade(course: Course, root: Path, week_id: str, submissions: list[Submitted], suite: str = "hidden",
          sandbox: str | None = None, extra_pytest_args: list[str] | None = None,
          on_progress: Callable[[str, float, float], None] | None = None,
          gpu_index: int = 0) -> dict[str, GradeResult]:
    """Grade each submission against the week's `hidden` (or `public`) suite.

    `on_progress(name, earned, possible)` is called as each submission's tests finish.
    `sandbox` "docker" runs each worker in a container; `gpu_index` picks its GPU where
    there are several (parallel batches pass their number).
    """
    graded = grade_batches(course, root, [Batch(week_id, submissions)], suite, sandbox, extra_pytest_args,
                           on_progress, gpu_index)
    return {name: result for (_, name), result in graded.items()}


def grade_batches(course: Course, root: Path, batches: list[Batch], suite: str = "hidden",
                  sandbox: str | None = None, extra_pytest_args: list[str] | None = None,
                  on_progress: Callable[[str, float, float], None] | None = None,
                  gpu_index: int = 0, until_caught: bool = False) -> dict[tuple[str, str], GradeResult]:
    """Grade several weeks' batches in one trusted pytest process, so that its imports (torch,
    timm, the suites' own) are paid once. Results are keyed by (week, submission name).

    With `until_caught`, a submission limited to some tests (a mutant's `catches`) runs them
    cheapest kind first (shape, value, grad, convergence) and stops at its first failure.
    """
    paths = CoursePaths(root)
    suite_dirs = [paths.suite(b.week, b.suite or suite) for b in batches]
    for batch, folder in zip(batches, suite_dirs):
        course.week(batch.week)
        if not folder.is_dir():
            raise GradingError(f"{folder} does not exist: week {batch.week} has no {batch.suite or suite} tests")
    limits = course.grading
    sandbox = sandbox or limits.sandbox
    docker = _docker_settings(limits, gpu_index) if sandbox == "docker" else None
    run_id = docker["run_id"] if docker else new_run_id()
    started = time.monotonic()
    results: dict[tuple[str, str], GradeResult] = {}
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        suites = []
        for batch, suite_dir in zip(batches, suite_dirs):
            week = course.week(batch.week)
            prepared = []
            for item in batch.submissions:
                result = results[(week.id, item.name)] = GradeResult(item.name, week.id)
                entry = _prepare(item, len(results), work, week.forbidden, week.id, result)
                if entry is not None:
                    prepared.append(entry)
                elif on_progress is not None:
                    on_progress(item.name, 0.0, 0.0)
            trusted: list[dict] = []
            for item in batch.in_process:
                results[(week.id, item.name)] = GradeResult(item.name, week.id, sandbox="in-process")
                trusted.append({"name": item.name, "module_path": str(item.path), "only": item.only,
                                "forbidden_parts": {}, "skip_kinds": list(item.skip_kinds),
                                "exhaustive": item.exhaustive})
            if prepared or trusted:
                suites.append(_suite_config(root, week, suite_dir, prepared, trusted, work))
        if suites:
            try:
                outcomes, outputs, devices, log = _run_suites(course, root, suites, work, limits, sandbox,
                                                             extra_pytest_args or [], on_progress, docker,
                                                             until_caught, run_id)
            finally:
                if docker is not None:
                    from autograder.sandbox.container import remove_run_containers

                    remove_run_containers(docker["run_id"])
            for outcome in outcomes:
                week_id, name = split_key(outcome.submission)
                outcome.submission = name
                results[(week_id, name)].tests.append(outcome)
            for config in suites:
                for entry in config["submissions"] + config["in_process"]:
                    key = (config["week"], entry["name"])
                    result = results[key]
                    result.output = outputs.get(entry_key(*key), "")
                    result.device = devices.get(entry_key(*key), "")
                    if not result.tests:
                        result.error = "no test ran for this submission"
                        result.notes.append(log[-2000:])
    elapsed = time.monotonic() - started
    for result in results.values():
        result.seconds, result.run_id = elapsed, run_id
        if result.sandbox != "in-process":
            result.sandbox = f"docker ({limits.image})" if docker else _sandbox_name(sandbox)
    return results


def _docker_settings(limits: GradingLimits, gpu_index: int) -> dict:
    """Check the engine, the image and the GPU policy before anything runs; the settings
    every container of this run gets."""
    from autograder.sandbox.container import DockerUnavailable, check_image, client, gpu_request

    try:
        check_image(client(), limits.image)
        gpu_request(limits.gpu, gpu_index)
    except DockerUnavailable as exc:
        raise GradingError(str(exc)) from None
    return {"image": limits.image, "run_id": new_run_id(), "gpu": limits.gpu, "gpu_index": gpu_index}


def _prepare(item: Submitted, index: int, work: Path, forbidden: list[str], week: str,
             result: GradeResult) -> dict | None:
    try:
        module = extract_module(item.path)
    except NotebookError as exc:
        result.error = str(exc)
        return None
    folder = work / f"s{index:04d}"
    folder.mkdir()
    os.chmod(folder, 0o755)
    module_path = folder / "submission.py"
    module_path.write_text(module.source)
    os.chmod(module_path, 0o644)
    notes = [f"{describe_line(module.source, finding.line)}: {finding.api} is not allowed in {week}"
             + (f" (in `{finding.owner}`)" if finding.owner != MODULE_LEVEL else "")
             for finding in find_forbidden(module.source, forbidden)]
    parts = forbidden_parts(module.source, forbidden, week)
    if WHOLE_SUBMISSION in parts:
        notes.insert(0, parts[WHOLE_SUBMISSION])
    result.notes += bounded_notes(notes)
    return {"name": item.name, "module_path": str(module_path), "only": item.only,
            "skip_kinds": list(item.skip_kinds), "forbidden_parts": parts, "exhaustive": item.exhaustive}


def _suite_config(root: Path, week: Week, suite_dir: Path, prepared: list[dict], trusted: list[dict],
                  work: Path) -> dict:
    """What the trusted process needs to grade one week's submissions."""
    folders = [str(Path(e["module_path"]).parent) for e in prepared]
    for entry in prepared:  # nor may one submission read another's
        entry["denied_paths"] = [f for f in folders if f != str(Path(entry["module_path"]).parent)]
    return {"week": week.id, "dir": str(suite_dir), "submissions": prepared, "in_process": trusted,
            "forbidden": week.forbidden}


def _run_suites(course: Course, root: Path, suites: list[dict], work: Path, limits: GradingLimits, sandbox: str,
                extra: list[str], on_progress: Callable[[str, float, float], None] | None = None,
                docker: dict | None = None, until_caught: bool = False, run_id: str = "",
                ) -> tuple[list[TestOutcome], dict[str, str], dict[str, str], str]:
    outcomes_path = work / "outcomes.json"
    progress_path = work / "progress.jsonl"
    config = {
        "suites": suites,
        "outcomes_path": str(outcomes_path),
        "progress_path": str(progress_path),
        "limits": limits.worker_limits(),
        "test_timeout_s": limits.test_timeout_s,
        "submission_timeout_s": limits.submission_timeout_s,
        "import_timeout_s": limits.import_timeout_s,
        "sandbox": sandbox,
        "until_caught": until_caught,
        "docker": docker or {"run_id": run_id},
        "release_root": str(_stage_releases(root, [s["week"] for s in suites], work)),
        "denied_paths": [str(root / "assignments"), str(CoursePaths(root).reference), str(root / "gradebook"),
                         str(root / "build"), str(work / "grading.json"), str(outcomes_path)],
    }
    config_path = work / "grading.json"
    config_path.write_text(json.dumps(config))
    os.chmod(config_path, 0o600)
    rootdir = Path(os.path.commonpath([s["dir"] for s in suites]))
    command = [sys.executable, "-m", "pytest", *[s["dir"] for s in suites], "-p", "autograder.testing.plugin",
               "--grading-config", str(config_path), "-q", "--assert=plain", "-p", "no:cacheprovider",
               "--import-mode=importlib", "--rootdir", str(rootdir), "-o", "addopts=", "--no-header", "-rN",
               "--tb=native",  # pytest's default traceback costs ~50 ms a failure; outcomes are ours anyway
               *extra]
    count = sum(len(s["submissions"]) + len(s["in_process"]) for s in suites)
    budget = limits.submission_timeout_s * count + limits.import_timeout_s * len(suites) + 120
    # only our plugin in the trusted process: installed packages register pytest plugins of their
    # own (lightly brings hydra's), which have no business in a grading run
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    log = _run_reporting_progress(command, env, root, budget, progress_path, on_progress,
                                  memory_bytes=limits.trusted_memory_mb << 20)
    weeks = ", ".join(s["week"] for s in suites)
    if not outcomes_path.exists():
        raise GradingError(f"the test suite for {weeks} did not run:\n{log[-4000:]}")
    data = json.loads(outcomes_path.read_text())
    outcomes = [TestOutcome(**o) for o in data["outcomes"]]
    if not outcomes and "error" in log.lower():
        raise GradingError(f"the test suite for {weeks} failed to load:\n{log[-4000:]}")
    return outcomes, data.get("outputs", {}), data.get("devices", {}), log


def _stage_releases(root: Path, weeks: list[str], work: Path) -> Path:
    """A world-readable copy of each week's released folder (its helpers go on the worker's
    path): a worker that runs as `nobody` reads it wherever the course folder lives."""
    staged = work / "release"
    for week in dict.fromkeys(weeks):
        source = CoursePaths(root).release(week)
        if source.is_dir() and not (staged / week).exists():
            shutil.copytree(source, staged / week, ignore=shutil.ignore_patterns("*.ipynb"))
    for folder in [staged, *(p for p in staged.rglob("*"))]:
        if folder.exists():
            os.chmod(folder, 0o755 if folder.is_dir() else 0o644)
    return staged


def _run_reporting_progress(command: list[str], env: dict, cwd: Path, budget: float, progress_path: Path,
                            on_progress: Callable[[str, float, float], None] | None,
                            memory_bytes: int | None = None) -> str:
    """Run the trusted pytest process, under a data-memory limit; pass on each submission's
    total as its tests finish."""
    def limit_memory() -> None:
        if memory_bytes:
            resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))

    with tempfile.TemporaryFile("w+") as output:
        proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                                preexec_fn=limit_memory)
        deadline, reported = time.monotonic() + budget, 0
        while True:
            try:
                proc.wait(timeout=0.5)
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
            reported = _report(progress_path, reported, on_progress)
            if finished:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                output.write(f"\nthe grading run exceeded {budget:.0f} s and was stopped\n")
                break
        output.seek(0)
        return output.read()


def _report(progress_path: Path, already: int, on_progress: Callable[[str, float, float], None] | None) -> int:
    if on_progress is None or not progress_path.exists():
        return already
    lines = progress_path.read_text().splitlines()
    for line in lines[already:]:
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            return already  # a line half written: read it next time
        on_progress(split_key(item["submission"])[1], item["earned"], item["possible"])
        already += 1
    return already


def grade_in_process(course: Course, root: Path, week_id: str, submissions: list[Submitted],
                     suite: str = "hidden") -> dict[str, list[TestOutcome]]:
    """The same suite with the code in this process: no sandbox, so only for code you trust
    (a reference, your own notebook). Fast, and the yardstick for the sandbox's overhead."""
    import pytest

    from autograder.testing.in_process import InProcessSubmission
    from autograder.testing.plugin import SubmissionEntry, SubmissionPlugin
    from autograder.testing.suite_modules import fresh_suite_modules

    week = course.week(week_id)
    entries = []
    for item in submissions:
        source = extract_module(item.path).source
        namespace: dict = {"__name__": "submission"}
        exec(compile(source, str(item.path), "exec"), namespace)
        parts = forbidden_parts(source, week.forbidden, week.id)
        entries.append(SubmissionEntry(item.name, functools.partial(InProcessSubmission, namespace, parts),
                                       only=item.only))
    plugin = SubmissionPlugin(entries, test_timeout_s=course.grading.test_timeout_s)
    suite_dir = CoursePaths(root).assignment(week_id) / suite
    with fresh_suite_modules(suite_dir):
        code = pytest.main([str(suite_dir), "-p", "no:cacheprovider", "--import-mode=importlib", "--assert=plain",
                            "--rootdir", str(suite_dir), "-o", "addopts=", "-p", "no:terminal"], plugins=[plugin])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise GradingError(f"the {suite} suite of {week_id} did not run (pytest exit code {int(code)})")
    grouped: dict[str, list[TestOutcome]] = {item.name: [] for item in submissions}
    for outcome in plugin.outcomes:
        grouped[outcome.submission].append(outcome)
    return grouped


def _sandbox_name(requested: str) -> str:
    from autograder.sandbox.bubblewrap import bubblewrap_available

    if requested == "none":
        return "none (resource limits only)"
    return "bubblewrap" if bubblewrap_available() else "none (bubblewrap missing; resource limits only)"
