"""The pytest plugin that runs a week's tests against one or more submissions.

It provides the `sub` fixture, the `points`, `kind`, `visibility` and `timeout`
markers, per-test deadlines and a per-submission time budget, and it records each
test's outcome as data (never the test's source). One pytest process can grade many
submissions (`course verify` grades the reference, the release and every mutant at
once), so the trusted side's imports (torch, timm) are paid once.

Grading loads it with `-p autograder.testing.plugin --grading-config FILE`; self-checks
pass a `SubmissionPlugin` instance to `pytest.main`.
"""

from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from autograder.testing.errors import SubmissionError

KINDS = ("shape", "value", "grad", "convergence")
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")


@dataclass
class TestOutcome:
    submission: str
    name: str
    description: str
    points: float
    kind: str
    visibility: str
    passed: bool
    message: str = ""
    duration: float = 0.0


@dataclass
class SubmissionEntry:
    """A submission for this run: how to reach it, and which tests apply to it."""

    name: str
    factory: Callable[[], Any]
    only: list[str] | None = None
    budget_s: float | None = None
    client: Any = None  # the remote WorkerClient, when there is one
    spent_s: float = 0.0
    _instance: Any = field(default=None, repr=False)

    def get(self) -> Any:
        if self._instance is None:
            self._instance = self.factory()
        return self._instance


class SubmissionPlugin:
    def __init__(self, entries: list[SubmissionEntry], test_timeout_s: float = 60.0,
                 default_visibility: str = "after_published", pool: Any = None):
        self.entries = {e.name: e for e in entries}
        self.test_timeout_s = test_timeout_s
        self.default_visibility = default_visibility
        self.outcomes: list[TestOutcome] = []
        self._last_item: dict[str, str] = {}
        self.progress_path: str | None = None  # a JSON line per finished submission, for progress bars
        self.pool = pool
        if pool is not None:
            pool.warm(first=True)  # torch is imported in the sandbox while pytest collects the suite

    # -- collection --------------------------------------------------------------------
    def pytest_configure(self, config: pytest.Config) -> None:
        for line in ("points(n): points this test is worth",
                     "kind(name): shape, value, grad or convergence",
                     "visibility(v): visible, hidden, after_due_date or after_published",
                     "timeout(seconds): this test's own time limit"):
            config.addinivalue_line("markers", line)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "sub" in metafunc.fixturenames:
            names = list(self.entries)
            metafunc.parametrize("sub", names, indirect=True, ids=names)

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep, drop = [], []
        for item in items:
            entry = self.entries.get(_submission_of(item))
            if entry is not None and entry.only is not None and not any(
                    fnmatch.fnmatch(item.originalname, pattern) for pattern in entry.only):
                drop.append(item)
            else:
                keep.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
        order = {name: i for i, name in enumerate(self.entries)}
        keep.sort(key=lambda item: order.get(_submission_of(item), -1))  # one submission at a time
        items[:] = keep
        self._last_item = {_submission_of(item): item.nodeid for item in keep}

    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        name = _submission_of(item)
        entry = self.entries.get(name)
        if entry is None or self._last_item.get(name) != item.nodeid:
            return
        if entry.client is not None:
            entry.client.close()  # its last test is done: the zygote moves on to the next submission
        if self.progress_path is not None:
            done = [o for o in self.outcomes if o.submission == name]
            line = {"submission": name, "earned": sum(o.points for o in done if o.passed),
                    "possible": sum(o.points for o in done)}
            with open(self.progress_path, "a") as handle:
                handle.write(json.dumps(line) + "\n")

    # -- fixtures and deadlines --------------------------------------------------------
    @pytest.fixture
    def sub(self, request: pytest.FixtureRequest) -> Any:
        entry = self.entries[request.param]
        submission = entry.get()
        submission.seed(0)
        return submission

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        entry = self.entries.get(_submission_of(item))
        torch.manual_seed(0)
        limit = _marker_arg(item, "timeout", self.test_timeout_s)
        started = time.monotonic()
        client = entry.client if entry is not None else None
        if client is not None:
            client.deadline = started + limit
            client.timeout_reason = f"this test's time limit of {limit:.0f} s"
            if entry.budget_s is not None:
                client.budget_deadline = started + max(0.0, entry.budget_s - entry.spent_s)
        try:
            return (yield)
        finally:
            if entry is not None:
                entry.spent_s += time.monotonic() - started
            if client is not None:
                client.deadline = None

    # -- results ------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self._record(item, report, call)
        return report

    def _record(self, item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo) -> None:
        if report.skipped:
            return
        message = "" if report.passed else describe_failure(call.excinfo)
        doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
        name = item.originalname + _extra_params(item)
        self.outcomes.append(TestOutcome(
            submission=_submission_of(item) or "", name=name,
            description=doc[0] if doc else item.originalname.replace("_", " "),
            points=float(_marker_arg(item, "points", 1.0)), kind=str(_marker_arg(item, "kind", "value")),
            visibility=str(_marker_arg(item, "visibility", self.default_visibility)),
            passed=report.passed, message=message, duration=report.duration))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for entry in self.entries.values():
            if entry.client is not None:
                entry.client.kill()
        if self.pool is not None:
            self.pool.close()


def describe_failure(excinfo: pytest.ExceptionInfo | None) -> str:
    """The failure in words, for a student: never the test's source or traceback."""
    if excinfo is None:
        return "the test failed"
    exc = excinfo.value
    if isinstance(exc, SubmissionError):
        return str(exc)
    if isinstance(exc, AssertionError):
        text = str(exc).strip()
        return text or "the result is not what the test expected"
    return f"the test could not use what your code returned ({type(exc).__name__}: {str(exc)[:500]})"


def _submission_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("sub") if callspec is not None else None


def _extra_params(item: pytest.Item) -> str:
    """The test's own parametrization ids, without the submission's."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return ""
    ids = callspec.id
    name = callspec.params.get("sub")
    if name is not None:
        for candidate in (f"-{name}", f"{name}-", name):
            if candidate in ids:
                ids = ids.replace(candidate, "", 1)
                break
    return f"[{ids}]" if ids else ""


def _marker_arg(item: pytest.Item, name: str, default: Any) -> Any:
    marker = item.get_closest_marker(name)
    return marker.args[0] if marker is not None and marker.args else default


# -- loading the plugin from a grading config (the remote transport) ----------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--grading-config", default=None, help="JSON file describing the submissions to grade")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--grading-config", default=None)
    if path:
        grading = json.loads(Path(path).read_text())
        plugin = plugin_from_config(grading)
        config.pluginmanager.register(plugin, "autograder-submissions")
        config._autograder_plugin = plugin  # type: ignore[attr-defined]
        config._autograder_results = Path(grading["outcomes_path"])  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = getattr(config, "_autograder_plugin", None)
    if plugin is not None:
        outputs = {name: entry.client.output() for name, entry in plugin.entries.items()
                   if entry.client is not None}
        devices = {name: entry.client.device for name, entry in plugin.entries.items()
                   if entry.client is not None and entry.client.device}
        config._autograder_results.write_text(json.dumps(
            {"outcomes": [asdict(o) for o in plugin.outcomes], "outputs": outputs, "devices": devices}))


def plugin_from_config(config: dict) -> SubmissionPlugin:
    """Build the plugin for sandboxed workers; their imports start now, during collection."""
    from autograder.sandbox.launch import Limits, WorkerSpec, ZygotePool
    from autograder.testing.remote import RemoteSubmission, WorkerClient

    limits = Limits(**config.get("limits", {}))
    entries = []
    pool = None
    for item in config["submissions"]:
        spec = WorkerSpec(module_path=Path(item["module_path"]), week=config.get("week", "this week"),
                          helper_dirs=[Path(p) for p in config.get("helper_dirs", [])],
                          forbidden=config.get("forbidden", []),
                          denied_paths=[Path(p) for p in config.get("denied_paths", []) + item.get("denied_paths", [])],
                          limits=limits, sandbox=config.get("sandbox", "auto"), **config.get("docker", {}))
        # one sandbox recipe per run (week, helpers, forbidden APIs); a spare only for batches
        pool = pool or ZygotePool(spec, spare=len(config["submissions"]) > 1)
        client = WorkerClient(spec, import_timeout=config.get("import_timeout_s", 60.0), pool=pool)
        parts = item.get("forbidden_parts", {})
        entries.append(SubmissionEntry(name=item["name"], only=item.get("only"),
                                       budget_s=config.get("submission_timeout_s"), client=client,
                                       factory=lambda c=client, p=parts: RemoteSubmission(c, p)))
    plugin = SubmissionPlugin(entries, test_timeout_s=config.get("test_timeout_s", 60.0), pool=pool)
    plugin.progress_path = config.get("progress_path")
    return plugin
