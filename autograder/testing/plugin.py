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
import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from autograder.kit.seeding import setup
from autograder.submission.locate import in_notebook_terms
from autograder.testing.alarm import TimeLimitExceeded, time_limit
from autograder.testing.bounds import MESSAGE_CHARS, cut
from autograder.testing.errors import SubmissionError, WorkerTimeout

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
    note: str = ""  # what the grader did beyond running the test (a retry after a busy machine)


@dataclass
class SubmissionEntry:
    """A submission for this run: how to reach it, and which tests apply to it.

    `suite` is the folder of the week's tests it is graded by (None: every collected test);
    `only` limits it to tests with these names (a mutant's `catches`); with `until_caught` they
    run cheapest kind first (shape, value, grad, convergence; within a kind, in the order of
    `only`) and stop at the first failure;
    `skip_kinds` drops tests of these kinds."""

    name: str
    factory: Callable[[], Any]
    only: list[str] | None = None
    budget_s: float | None = None
    client: Any = None  # the remote WorkerClient, when there is one
    suite: Path | None = None
    until_caught: bool = False
    skip_kinds: tuple[str, ...] = ()
    test_filter: Callable[[str], bool] | None = None  # on test names: a self-check's one part
    source: str | None = None  # the module graded: its tracebacks are told in notebook cells
    spent_s: float = 0.0
    _instance: Any = field(default=None, repr=False)

    def applies_to(self, path: Path) -> bool:
        return self.suite is None or Path(path).resolve().is_relative_to(self.suite)

    def get(self) -> Any:
        if self._instance is None:
            self._instance = self.factory()
        return self._instance

    def selects(self, items: list[pytest.Item], name: str) -> set[str]:
        """The node ids of the collected tests this submission runs."""
        mine = [item for item in items if _submission_of(item) == name
                and _marker_arg(item, "kind", "value") not in self.skip_kinds
                and (self.test_filter is None or self.test_filter(_test_name(item)))]
        if self.only is not None:
            mine = [item for item in mine if any(fnmatch.fnmatch(_test_name(item), p) for p in self.only)]
        return {item.nodeid for item in mine}


class SubmissionPlugin:
    def __init__(self, entries: list[SubmissionEntry], test_timeout_s: float = 60.0,
                 default_visibility: str = "after_published", pool: Any = None):
        self.entries = {e.name: e for e in entries}
        self.test_timeout_s = test_timeout_s
        self.default_visibility = default_visibility
        self.outcomes: list[TestOutcome] = []
        self._notes: dict[str, str] = {}
        self._last_item: dict[str, str] = {}
        self.progress_path: str | None = None  # a JSON line per finished submission, for progress bars
        self._threads_before = torch.get_num_threads()
        self.pool = pool  # the run's sandboxed workers, when there are any
        if pool is not None:
            pool.warm(first=True)  # torch is imported in the sandbox while pytest collects

    # -- collection --------------------------------------------------------------------
    def pytest_configure(self, config: pytest.Config) -> None:
        setup(seed=0)  # the trusted side's seed and thread count, for every suite
        for line in ("points(n): points this test is worth",
                     "kind(name): shape, value, grad or convergence",
                     "visibility(v): visible, hidden, after_due_date or after_published",
                     "timeout(seconds): this test's own time limit"):
            config.addinivalue_line("markers", line)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "sub" in metafunc.fixturenames:
            names = [n for n, e in self.entries.items() if e.applies_to(metafunc.definition.path)]
            metafunc.parametrize("sub", names, indirect=True, ids=names)

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        chosen = {name: entry.selects(items, name) for name, entry in self.entries.items()}
        keep = [item for item in items
                if _submission_of(item) not in self.entries or item.nodeid in chosen[_submission_of(item)]]
        drop = [item for item in items if item not in keep]
        if drop:
            config.hook.pytest_deselected(items=drop)
        order = {name: i for i, name in enumerate(self.entries)}

        def position(item: pytest.Item) -> tuple[int, int, int]:  # one submission at a time
            entry = self.entries.get(_submission_of(item))
            if entry is None or not entry.only:
                return order.get(_submission_of(item), -1), 0, 0
            listed = next(i for i, p in enumerate(entry.only) if fnmatch.fnmatch(_test_name(item), p))
            return order[entry.name], _kind_rank(item), listed  # cheapest kind, then as `only` lists them

        keep.sort(key=position)
        items[:] = keep
        self._last_item = {_submission_of(item): item.nodeid for item in keep}

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """A submission graded until caught stops at its first failure."""
        name = _submission_of(item)
        entry = self.entries.get(name)
        if entry is not None and entry.until_caught and any(
                o.submission == name and not o.passed for o in self.outcomes):
            pytest.skip("already caught")

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
        client = entry.client if entry is not None else None
        started = self._start_clocks(item, entry)
        try:
            if client is None and entry is not None:  # code in this process: no worker to kill, an alarm
                limit = _marker_arg(item, "timeout", self.test_timeout_s)
                with time_limit(limit, f"your code did not finish within this test's time limit of {limit:.0f} s; "
                                       "it was stopped (look for an endless loop or far too much work)"):
                    return (yield)
            return (yield)
        except WorkerTimeout as exc:
            if not exc.starved:
                raise
            # The machine, not the code, was slow: try once more on a fresh worker, and say so.
            self._notes[item.nodeid] = (f"retried once on a fresh worker: the first try ran out of time while the "
                                        f"machine was busy (its worker got {exc.cpu_s:.1f} s of CPU in "
                                        f"{exc.wall_s:.1f} s)")
            self._start_clocks(item, entry)
            return item.runtest()
        finally:
            if entry is not None:
                entry.spent_s += time.monotonic() - started
            if client is not None:
                client.deadline = None

    def _start_clocks(self, item: pytest.Item, entry: SubmissionEntry | None) -> float:
        """Seed the test and start its deadline, and the submission's budget, on the worker's client."""
        setup(seed=0)
        limit = _marker_arg(item, "timeout", self.test_timeout_s)
        started = time.monotonic()
        client = entry.client if entry is not None else None
        if entry is not None and client is not None:
            client.deadline = started + limit
            client.timeout_reason = f"this test's time limit of {limit:.0f} s"
            if entry.budget_s is not None:
                client.budget_deadline = started + max(0.0, entry.budget_s - entry.spent_s)
        return started

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
        message = "" if report.passed else cut(describe_failure(call.excinfo), MESSAGE_CHARS)
        entry = self.entries.get(_submission_of(item))
        if message and entry is not None and entry.source:
            message = in_notebook_terms(message, entry.source)
        doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
        name = _test_name(item) + _extra_params(item)
        self.outcomes.append(TestOutcome(
            submission=_submission_of(item), name=name,
            description=doc[0] if doc else _test_name(item).replace("_", " "),
            points=float(_marker_arg(item, "points", 1.0)), kind=str(_marker_arg(item, "kind", "value")),
            visibility=str(_marker_arg(item, "visibility", self.default_visibility)),
            passed=report.passed, message=message, duration=report.duration,
            note=self._notes.get(item.nodeid, "")))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        torch.set_num_threads(self._threads_before)  # a notebook's kernel gets its own setting back

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for entry in self.entries.values():
            if entry.client is not None:
                entry.client.kill()
        if self.pool is not None:
            self.pool.close()


def _kind_rank(item: pytest.Item) -> int:
    """Shape tests are the cheapest, then value, grad and convergence tests."""
    kind = str(_marker_arg(item, "kind", "value"))
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def describe_failure(excinfo: pytest.ExceptionInfo | None) -> str:
    """The failure in words, for a student: never the test's source or traceback."""
    if excinfo is None:
        return "the test failed"
    exc = excinfo.value
    if isinstance(exc, (SubmissionError, TimeLimitExceeded)):
        return str(exc)
    if isinstance(exc, AssertionError):
        text = str(exc).strip()
        return text or "the result is not what the test expected"
    return f"the test could not use what your code returned ({type(exc).__name__}: {str(exc)[:500]})"


def _submission_of(item: pytest.Item) -> str:
    """The submission a test item grades ("" for a test that takes no `sub`)."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("sub", "") if callspec is not None else ""


def _test_name(item: pytest.Item) -> str:
    """The test function's name, without parametrization."""
    return str(getattr(item, "originalname", item.name))


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
        results: Path = config._autograder_results  # type: ignore[attr-defined]
        results.write_text(json.dumps(
            {"outcomes": [asdict(o) for o in plugin.outcomes], "outputs": outputs, "devices": devices}))


def plugin_from_config(config: dict) -> SubmissionPlugin:
    """Build the plugin for a grading run: one pool of sandboxed workers for every week (its
    zygote imports torch now, during collection; each child gets its week's forbidden APIs and
    released folder), and trusted code for the in-process transport, if any."""
    from autograder.sandbox.pool import ZygotePool
    from autograder.sandbox.spec import Limits, WorkerSpec
    from autograder.testing.remote import RemoteSubmission, WorkerClient

    limits = Limits(**config.get("limits", {}))
    release_root = Path(config["release_root"]) if config.get("release_root") else None
    count = sum(len(suite["submissions"]) for suite in config["suites"])
    entries, pool = [], None
    for suite in config["suites"]:
        folder = Path(suite["dir"]).resolve()
        for item in suite["submissions"]:
            spec = WorkerSpec(module_path=Path(item["module_path"]), week=suite["week"], release_root=release_root,
                              forbidden=suite.get("forbidden", []),
                              denied_paths=[Path(p) for p in
                                            config.get("denied_paths", []) + item.get("denied_paths", [])],
                              limits=limits, sandbox=config.get("sandbox", "auto"), **config.get("docker", {}))
            pool = pool or ZygotePool(spec, spare=count > 1)  # one sandbox recipe for the run
            client = WorkerClient(spec, import_timeout=config.get("import_timeout_s", 60.0), pool=pool)
            source = Path(item["module_path"]).read_text()
            parts = item.get("forbidden_parts", {})
            entries.append(SubmissionEntry(
                name=entry_key(suite["week"], item["name"]), only=item.get("only"), suite=folder,
                until_caught=_until_caught(config, item), budget_s=config.get("submission_timeout_s"), client=client,
                skip_kinds=tuple(item.get("skip_kinds", ())), source=source,
                factory=functools.partial(RemoteSubmission, client, parts)))
        for item in suite.get("in_process", []):
            entries.append(SubmissionEntry(
                name=entry_key(suite["week"], item["name"]), only=item.get("only"), suite=folder,
                until_caught=_until_caught(config, item), skip_kinds=tuple(item.get("skip_kinds", ())),
                factory=_trusted_module(Path(item["module_path"]))))
    plugin = SubmissionPlugin(entries, test_timeout_s=config.get("test_timeout_s", 60.0), pool=pool)
    plugin.progress_path = config.get("progress_path")
    return plugin


def _until_caught(config: dict, item: dict) -> bool:
    """A run that stops at a mutant's first catch stops each submission limited to some tests,
    unless it asks to run them all."""
    return bool(item.get("only")) and bool(config.get("until_caught")) and not item.get("exhaustive")


def entry_key(week: str, name: str) -> str:
    """How a grading run names a submission: unique across the weeks of one run."""
    return f"{week}::{name}"


def split_key(key: str) -> tuple[str, str]:
    week, _, name = key.partition("::")
    return week, name


def _trusted_module(path: Path) -> Callable[[], Any]:
    """Trusted code (an answer key) loaded into this process, for the in-process transport."""
    def load() -> Any:
        from autograder.submission.notebook import extract_module
        from autograder.testing.in_process import InProcessSubmission

        source = extract_module(path).source
        namespace: dict = {"__name__": "submission"}
        exec(compile(source, str(path), "exec"), namespace)
        return InProcessSubmission(namespace)

    return load
