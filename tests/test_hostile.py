"""Hostile and broken submissions, graded for real: sandboxed workers, the real suite.

Every hostile submission is graded in one batch with an honest one, so each test also
proves that the grader survives and goes on to grade the next submission correctly.
A hostile submission's correct score is what its honest part earns: the toy week's
softmax is worth 5 points over four tests.

All hostile submissions are graded in one batch (one trusted pytest process, one
worker each), and the tests below read that batch's results: it is the same run a
course would see, and it keeps the suite's time down.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from autograder.grading.report import results_json, write_json_atomically
from autograder.grading.score import score_from_tests
from autograder.grading.run import Submitted, grade
from autograder.sandbox.bubblewrap import bubblewrap_available
from autograder.sandbox.spec import RUN_ENV
from tests.conftest import HONEST_SOFTMAX, write_module

needs_bwrap = pytest.mark.skipif(not bubblewrap_available(), reason="bubblewrap is not installed")

PLACEHOLDER = "\ndef softmax(x):\n    raise NotImplementedError()\n"
TIMM_PROBE = HONEST_SOFTMAX + """
import os
site = os.path.dirname(os.path.dirname(torch.__file__))
print("TIMM FILES", len(os.listdir(os.path.join(site, "timm"))))
"""


def _grade_batch(toy, tmp_path: Path, hostile: dict[str, str], sandbox: str | None = None):
    course, root = toy
    folder = tmp_path / "subs"
    folder.mkdir(exist_ok=True, parents=True)
    subs = [Submitted("honest", write_module(folder, "honest", HONEST_SOFTMAX))]
    subs += [Submitted(name, write_module(folder, name, source)) for name, source in hostile.items()]
    started = time.monotonic()
    results = grade(course, root, "m1w01", subs, sandbox=sandbox)
    honest = results["honest"]
    assert honest.earned == honest.possible == 5, "the honest submission must keep full marks"
    return results, time.monotonic() - started


def _messages(result) -> str:
    return " ".join(t.message for t in result.tests) + " " + (result.error or "")



LOOP_IN_FUNCTION = HONEST_SOFTMAX.replace(
    "def softmax(x):\n", "def softmax(x):\n    while x.dim() == 3:\n        pass\n")
HOG = "\nblocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))\n"
FORK_BOMB = ("\nimport ctypes, os\nlibc = ctypes.CDLL(None)\npids = []\nfor _ in range(400):\n"
             "    pid = libc.fork()\n    if pid == 0:\n        libc.pause()\n    pids.append(pid)\n"
             "print('failed forks:', sum(p < 0 for p in pids))\n")
PATCHER = ("import torch\n" + PLACEHOLDER.replace("raise NotImplementedError()", "return torch.zeros(1)") +
           "\nimport builtins, pytest, torch, torch.testing\n"
           "torch.testing.assert_close = lambda *a, **k: None\n"
           "torch.allclose = lambda *a, **k: True\n"
           "pytest.approx = lambda *a, **k: True\n"
           "import autograder.kit.compare as compare\ncompare.assert_close = lambda *a, **k: None\n")


LEAVER = ("\nimport ctypes, os\nopen('/tmp/left_behind.txt', 'w').write('secret of the last student')\n"
          "if ctypes.CDLL(None).fork() == 0:\n    import time\n    time.sleep(600)\n")
SNOOPER = ("\nimport os\nprint('TMP', sorted(os.listdir('/tmp')))\n"
           "mine = [p for p in os.listdir('/proc') if p.isdigit() and os.stat('/proc/' + p).st_uid == os.getuid()]\n"
           "print('OTHER PROCESSES', len([p for p in mine if int(p) != os.getpid()]))\n")


def forbid_packages_only(course_yaml: Path) -> None:
    """What the sandbox contains is under test, not the source check, which in a week that
    forbids torch functions would refuse ctypes: the copy's week forbids only timm."""
    text = course_yaml.read_text()
    start = text.index("    forbidden:")
    course_yaml.write_text(text[:start] + "    forbidden: [timm]\n" + text[text.index("\n", start) + 1:])


def _with_prefix(source: str, line: str) -> str:
    return source.replace("def softmax(x):\n", f"def softmax(x):\n{line}")


# The worker cuts error texts, but it runs student code: this one replaces the worker's own
# description of an exception with a 30 MB one, so only the trusted side's cut remains.
HUGE_ERROR = _with_prefix(HONEST_SOFTMAX, "    if x.dim() == 3:\n        raise ValueError('x')\n") + """
import sys
sys.modules["__main__"].Server._describe = lambda self, exc: {
    "type": "E" * 1_000_000, "message": "[red]<h1>" + "m" * 30_000_000, "traceback": "t" * 1_000_000}
"""


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Grade every hostile submission together with an honest one; returns (results, seconds, extras)."""
    import shutil

    from autograder.config import load_course
    from tests.conftest import TOY

    tmp = tmp_path_factory.mktemp("hostile")
    root = tmp / "course"
    shutil.copytree(TOY, root)
    forbid_packages_only(root / "course.yaml")
    toy = (load_course(root / "course.yaml"), root)
    secrets = [root / "assignments" / "m1w01" / "hidden" / "test_h.py", root / "reference" / "m1w01_toy.py"]
    results_path = tmp / "out" / "results.json"
    results_path.parent.mkdir()
    server, port, connections, stop_server = _listening_server()
    reader = "\nimport os\n" + "".join(
        f"try:\n    print('LEAKED', len(open({str(p)!r}).read()))\nexcept OSError as exc:\n"
        f"    print('BLOCKED', type(exc).__name__)\n" for p in secrets)
    network = (f"\nimport socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
               f"    print('CONNECTED')\nexcept Exception as exc:\n    print('NO NETWORK', type(exc).__name__)\n")
    forger = (f"\nimport json\ntry:\n    json.dump({{'score': 100, 'tests': []}}, open({str(results_path)!r}, 'w'))\n"
              f"    print('WROTE')\nexcept OSError as exc:\n    print('REFUSED', type(exc).__name__)\n")
    hostile = {
        "loop_at_import": HONEST_SOFTMAX + "\nwhile True:\n    pass\n",
        "loop_in_function": LOOP_IN_FUNCTION,
        "hog_at_import": HONEST_SOFTMAX + HOG,
        "hog_in_function": _with_prefix(HONEST_SOFTMAX, "    if x.dim() == 3:\n        torch.empty(1 << 40)\n"),
        "os_exit_at_import": HONEST_SOFTMAX + "\nimport os\nos._exit(0)\n",
        "sys_exit_at_import": HONEST_SOFTMAX + "\nimport sys\nsys.exit(0)\n",
        "os_exit_in_function": _with_prefix(HONEST_SOFTMAX, "    import os\n    if x.dim() == 3:\n        os._exit(3)\n"),
        "segfault_in_function": _with_prefix(
            HONEST_SOFTMAX, "    import ctypes\n    if x.dim() == 3:\n        ctypes.string_at(0)\n"),
        "fork_bomb": HONEST_SOFTMAX + FORK_BOMB,
        "chatty": HONEST_SOFTMAX + "\nfor _ in range(2000):\n    print('x' * 50_000)\n",
        "network": PLACEHOLDER + network,
        "reader": PLACEHOLDER + reader,
        "patcher": PATCHER,
        "patcher_builtins": PATCHER + "\nbuiltins.isinstance = lambda *a: True\n",
        "forger": PLACEHOLDER + forger,
        "leaver": PLACEHOLDER + LEAVER,
        "snooper": PLACEHOLDER + SNOOPER,  # graded right after the leaver, by the same zygote
        "timm_probe": TIMM_PROBE,
        "huge_reply": _with_prefix(HONEST_SOFTMAX, "    if x.dim() == 3:\n        return torch.zeros(25_000_000)\n"),
        "huge_error": HUGE_ERROR,
    }
    try:
        results, seconds = _grade_batch(toy, tmp, hostile)
    finally:
        stop_server()
    return results, seconds, {"connections": connections, "results_path": results_path}


def _listening_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    connections: list = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()

    def stop_server():
        stop.set()
        thread.join()
        server.close()

    return server, server.getsockname()[1], connections, stop_server


@pytest.mark.slow
def test_the_batch_finishes_in_bounded_time(batch):
    _, seconds, _ = batch
    assert seconds < 240, f"the hostile batch took {seconds:.0f} s; timeouts must bound it"


@pytest.mark.slow
def test_endless_loops_are_stopped_and_cost_only_their_tests(batch):
    results, _, _ = batch
    at_import = results["loop_at_import"]
    assert at_import.earned == 0
    assert all("took longer than" in t.message for t in at_import.tests)
    in_function = results["loop_in_function"]
    assert in_function.earned == 4, "only the 3-d shape test (1 point) should be lost"
    shape = next(t for t in in_function.tests if t.name == "test_softmax_shape")
    assert "did not finish within" in shape.message


@pytest.mark.slow
def test_memory_hogs_fail_cleanly(batch):
    results, _, _ = batch
    assert results["hog_at_import"].earned == 0
    assert "MemoryError" in _messages(results["hog_at_import"])
    assert results["hog_in_function"].earned == 4


@pytest.mark.slow
def test_exits_and_crashes_are_reported(batch):
    results, _, _ = batch
    assert results["os_exit_at_import"].earned == 0
    assert "ended unexpectedly" in _messages(results["os_exit_at_import"])
    assert results["sys_exit_at_import"].earned == 0
    assert "sys.exit(0)" in _messages(results["sys_exit_at_import"])
    assert results["os_exit_in_function"].earned == 4
    assert results["segfault_in_function"].earned == 4
    assert "signal 11" in _messages(results["segfault_in_function"])


@pytest.mark.slow
def test_fork_bomb_is_bounded(batch):
    results, _, _ = batch
    bomb = results["fork_bomb"]
    assert bomb.earned == 5, "the bomb is stopped; its softmax still earns its points"
    if bubblewrap_available():
        failed = int(bomb.output.split("failed forks:")[1].split()[0])
        assert failed > 0, "the process limit must stop the forks"
    assert not _processes_of_run(bomb.run_id), "no forked child may outlive grading"


def _processes_of_run(run_id: str) -> list[int]:
    """Live processes started by this grading run (not another run's on a busy machine)."""
    assert run_id
    leftovers = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"{RUN_ENV}={run_id}".encode() in environ:
                leftovers.append(int(entry))
    return leftovers


@pytest.mark.slow
def test_huge_output_is_truncated(batch):
    results, _, _ = batch
    chatty = results["chatty"]
    assert chatty.earned == 5
    assert len(chatty.output) < 200_000
    assert "of output cut" in chatty.output


@needs_bwrap
@pytest.mark.slow
def test_network_is_unreachable(batch):
    results, _, extras = batch
    assert extras["connections"] == [], "a submission reached a server on the grading machine"
    assert "NO NETWORK" in results["network"].output
    assert results["network"].earned == 0


@needs_bwrap
@pytest.mark.slow
def test_hidden_tests_and_reference_cannot_be_read(batch):
    results, _, _ = batch
    output = results["reader"].output
    assert "LEAKED" not in output
    assert output.count("BLOCKED") == 2
    assert results["reader"].earned == 0


@needs_bwrap
@pytest.mark.slow
def test_nothing_of_one_submission_reaches_the_next(batch):
    """The warm worker is reused: the last submission's files and processes must be gone."""
    results, _, _ = batch
    assert results["leaver"].earned == 0
    output = results["snooper"].output
    assert "TMP" in output and "left_behind.txt" not in output, output
    assert "OTHER PROCESSES 0" in output, output


@pytest.mark.slow
def test_patching_the_test_framework_changes_nothing(batch):
    results, _, _ = batch
    assert results["patcher"].earned == 0
    assert results["patcher_builtins"].earned == 0


@pytest.mark.slow
def test_writing_the_results_file_changes_nothing(batch):
    results, _, extras = batch
    path = extras["results_path"]
    write_json_atomically(results_json(results["forger"], score_from_tests(0, 0, 0, 100)), path)
    written = json.loads(path.read_text())
    assert written["score"] == 0
    assert len(written["tests"]) == 4
    if bubblewrap_available():
        assert "REFUSED" in results["forger"].output


@pytest.mark.slow
def test_without_bubblewrap_the_audit_guard_still_refuses(toy, tmp_path):
    """Where bubblewrap is missing, limits and Python's audit hooks still stop the obvious attacks."""
    course, root = toy
    secret = root / "assignments" / "m1w01" / "hidden" / "test_h.py"
    probe = PLACEHOLDER + (
        f"\nimport socket, subprocess\nfor attempt in (lambda: open({str(secret)!r}).read(),\n"
        f"                lambda: socket.create_connection(('127.0.0.1', 9), timeout=1),\n"
        f"                lambda: subprocess.run(['true'])):\n"
        f"    try:\n        attempt()\n        print('ALLOWED')\n    except Exception as exc:\n"
        f"        print('REFUSED', type(exc).__name__)\n")
    probe += "\nimport os\nprint('UID', os.getuid())\n"
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="machine-tmp-sentinel-") as sentinel:
        results, _ = _grade_batch(toy, tmp_path, {"probe": probe, "second": HONEST_SOFTMAX}, sandbox="none")
        assert Path(sentinel.name).exists(), "without a sandbox of its own the worker must leave the machine's /tmp be"
    assert results["probe"].output.count("REFUSED") == 3
    assert "ALLOWED" not in results["probe"].output
    if os.getuid() == 0:
        assert "UID 65534" in results["probe"].output, "run as root, student code runs as nobody even without bwrap"


# -- forbidden APIs, enforced where the submission cannot reach (issue 10, item 1) -------------------

RED_TEAM = HONEST_SOFTMAX + """
import sys, importlib
sys.meta_path[:] = [f for f in sys.meta_path if "Forbidden" not in type(f).__name__]
namespace = globals()
namespace["vi" + "t"] = importlib.import_module("ti" + "mm")
setattr(torch.nn.functional, "scaled_dot_" + "product_attention", torch.ops.aten.scaled_dot_product_attention)
"""
HIDDEN_IN_A_FUNCTION = """
import torch

def softmax(x):
    return getattr(torch, "soft" + "max")(x, -1)
"""


@pytest.fixture(scope="module")
def forbidding_batch(tmp_path_factory):
    """The toy week forbids timm and scaled_dot_product_attention: the red team's attack and variations."""
    import shutil

    from autograder.config import load_course
    from tests.conftest import TOY

    root = tmp_path_factory.mktemp("forbidding") / "course"
    shutil.copytree(TOY, root)
    results, _ = _grade_batch((load_course(root / "course.yaml"), root), root.parent,
                              {"red_team": RED_TEAM, "hidden_in_function": HIDDEN_IN_A_FUNCTION})
    return results


@pytest.mark.slow
def test_the_red_team_attack_scores_zero(forbidding_batch):
    result = forbidding_batch["red_team"]
    assert result.earned == 0
    assert "sys.meta_path" in _messages(result) and "runs when the notebook loads" in _messages(result)


@pytest.mark.slow
def test_reaching_a_function_by_a_computed_name_costs_that_part(forbidding_batch):
    result = forbidding_batch["hidden_in_function"]
    assert result.earned == 0
    assert "getattr() with a computed name" in _messages(result)


@needs_bwrap
@pytest.mark.slow
def test_a_forbidden_package_is_absent_from_the_sandbox(batch):
    result = batch[0]["timm_probe"]
    assert result.earned == 5
    assert "TIMM FILES 0" in result.output, result.output[-2000:]


# -- bounded on the trusted side (issue 10, item 3) ----------------------------------------------------

@pytest.mark.slow
def test_a_reply_over_the_limit_is_refused_before_it_is_read(batch):
    result = batch[0]["huge_reply"]
    shape = next(t for t in result.tests if t.name == "test_softmax_shape")
    assert "more than the 64 MiB this call may return" in shape.message, shape.message
    assert result.earned == 4, "the next tests get a fresh worker"


@pytest.mark.slow
def test_texts_from_the_worker_are_cut_on_the_trusted_side(batch):
    result = batch[0]["huge_error"]
    shape = next(t for t in result.tests if t.name == "test_softmax_shape")
    assert not shape.passed and "characters cut" in shape.message
    assert all(len(t.message) <= 4000 for t in result.tests)
    assert len(json.dumps(results_json(result, score_from_tests(0, 0, 0, 100)))) < 100_000
    assert result.earned == 4
