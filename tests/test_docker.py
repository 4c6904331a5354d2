"""The docker backend against a real Docker engine (docker/engine.sh starts a private one).

Without an engine these tests skip with the reason, except in CI (CI=true), where they
fail: CI on these machines must run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from autograder.config import load_course
from autograder.grading.run import GradingError, Submitted, grade
from autograder.grading.verify import write_variants
from autograder.sandbox.container import IMAGE, RUN_LABEL, DockerUnavailable, check_image, client
from tests.conftest import HONEST_SOFTMAX, REPO, TOY, write_module
from tests.test_hostile import FORK_BOMB, TIMM_PROBE, forbid_packages_only


def _engine_problem() -> str | None:
    try:
        check_image(client(), IMAGE)
    except DockerUnavailable as exc:
        return str(exc)
    return None


PROBLEM = _engine_problem()


@pytest.fixture(scope="module")
def engine():
    if PROBLEM:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the docker tests, but: {PROBLEM} (does .ci/run start docker/engine.sh?)")
        pytest.skip(f"no usable Docker engine: {PROBLEM}")
    return client()


@pytest.fixture(scope="module")
def m1w01_in_containers(engine, tmp_path_factory):
    """The m1w01 answer key and its released notebook, graded in one batch of containers."""
    course = load_course(REPO / "course.yaml")
    tmp = tmp_path_factory.mktemp("docker-m1w01")
    key, _, _ = write_variants(course, REPO, "m1w01", tmp)
    release = REPO / "release" / "m1w01" / "m1w01_vit.ipynb"
    return grade(course, REPO, "m1w01", [Submitted("key", key), Submitted("release", release)], sandbox="docker")


@pytest.mark.slow
def test_m1w01_answer_key_full_marks_and_release_zero(m1w01_in_containers):
    key, release = m1w01_in_containers["key"], m1w01_in_containers["release"]
    assert key.possible == 100 and key.earned == 100, [t.message for t in key.tests if not t.passed][:3]
    assert release.tests and release.earned == 0
    assert key.sandbox.startswith("docker") and key.device.startswith(("cpu", "cuda"))


HOSTILE = {
    "network": ("\nimport socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
                "    print('CONNECTED')\nexcept Exception as exc:\n    print('NO NETWORK', type(exc).__name__)\n"),
    "fork_bomb": FORK_BOMB,
    "hog": "\nblocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))\n",
    "loop": "\nwhile True:\n    pass\n",
}


@pytest.fixture(scope="module")
def hostile_in_containers(engine, tmp_path_factory):
    """The toy week: an honest submission, the hostile ones, and one that looks for the
    course's files, each in its own container."""
    tmp = tmp_path_factory.mktemp("docker-hostile")
    root = tmp / "course"
    shutil.copytree(TOY, root)
    forbid_packages_only(root / "course.yaml")
    course = load_course(root / "course.yaml")
    hidden = root / "assignments" / "m1w01" / "hidden" / "test_h.py"
    snoop = (f"\nimport os\nprint('ROOT', sorted(os.listdir('/')))\n"
             f"print('SEES HIDDEN', os.path.exists({str(hidden)!r}))\n")
    sources = {"honest": HONEST_SOFTMAX, **{name: HONEST_SOFTMAX + code for name, code in HOSTILE.items()},
               "snoop": HONEST_SOFTMAX + snoop, "timm_probe": TIMM_PROBE}
    subs = [Submitted(name, write_module(tmp, name, source)) for name, source in sources.items()]
    before = _our_containers(engine)
    results = grade(course, root, "m1w01", subs, sandbox="docker")
    return results, before, engine


def _our_containers(engine) -> list:
    return engine.containers.list(all=True, filters={"label": RUN_LABEL})


@pytest.mark.slow
def test_hostile_submissions_in_containers_cost_only_themselves(hostile_in_containers):
    results, _, _ = hostile_in_containers
    assert results["honest"].earned == results["honest"].possible == 5
    assert "NO NETWORK" in results["network"].output and "CONNECTED" not in results["network"].output
    assert results["network"].earned == 5, "the network is simply absent"
    failed = int(results["fork_bomb"].output.split("failed forks:")[1].split()[0])
    assert failed > 0, "the container's pid limit stops the forks"
    assert results["hog"].earned == 0 and results["loop"].earned == 0
    assert all("took longer than" in t.message for t in results["loop"].tests)


@pytest.mark.slow
def test_a_container_sees_neither_hidden_tests_nor_the_course(hostile_in_containers):
    results, _, _ = hostile_in_containers
    output = results["snoop"].output
    assert "SEES HIDDEN False" in output
    listing = output.split("ROOT", 1)[1].splitlines()[0]
    assert "'wire'" in listing and "'work'" not in listing, "only the wire (and the week's helpers) come from the host"


@pytest.mark.slow
def test_a_forbidden_package_is_absent_from_the_container(hostile_in_containers):
    results, _, _ = hostile_in_containers
    assert results["timm_probe"].earned == 5
    assert "TIMM FILES 0" in results["timm_probe"].output, results["timm_probe"].output[-2000:]


@pytest.mark.slow
def test_containers_are_removed_after_grading(hostile_in_containers):
    _, before, engine = hostile_in_containers
    assert [c.id for c in _our_containers(engine)] == [c.id for c in before] == []


@pytest.mark.slow
def test_missing_image_is_an_error_a_user_can_act_on(engine):
    with pytest.raises(DockerUnavailable, match="course image build"):
        check_image(engine, "vitssl-grader:no-such-tag")


def test_no_engine_is_an_error_a_user_can_act_on(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    course = load_course(TOY / "course.yaml")
    with pytest.raises(GradingError, match="no Docker engine answers"):
        grade(course, TOY, "m1w01", [Submitted("x", write_module(tmp_path, "x", HONEST_SOFTMAX))], sandbox="docker")


def test_cli_says_what_to_do_without_an_engine(tmp_path):
    notebook = write_module(tmp_path, "mine", HONEST_SOFTMAX)
    result = subprocess.run([sys.executable, "-m", "autograder.cli", "grade", "m1w01", str(notebook),
                             "--backend", "docker"], capture_output=True, text=True, cwd=REPO,
                            env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert result.returncode == 1 and "no Docker engine answers" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_required_gpu_that_is_missing_is_an_error(engine, tmp_path):
    from autograder.sandbox.container import gpu_count

    if gpu_count():
        pytest.skip("this host has a GPU")
    import yaml

    root = tmp_path / "course"
    shutil.copytree(TOY, root)
    data = yaml.safe_load((root / "course.yaml").read_text())
    data["grading"]["gpu"] = "require"
    (root / "course.yaml").write_text(yaml.safe_dump(data))
    course = load_course(root / "course.yaml")
    with pytest.raises(GradingError, match="no NVIDIA GPU"):
        grade(course, root, "m1w01", [Submitted("x", write_module(tmp_path, "x", HONEST_SOFTMAX))], sandbox="docker")


@pytest.mark.slow
def test_a_containers_cpu_time_is_read_from_outside_it(engine, tmp_path):
    """What tells a starved worker from a busy one under the docker backend: the container's
    CPU time, read from its cgroup on the host."""
    from autograder.sandbox.container import ContainerZygote
    from autograder.sandbox.spec import WorkerSpec

    spec = WorkerSpec(module_path=write_module(tmp_path, "x", HONEST_SOFTMAX), sandbox="docker", run_id="cpu-clock")
    zygote = ContainerZygote(spec)
    try:
        readings = []
        for _ in range(120):  # the zygote imports torch as it boots: seconds of CPU
            readings.append(zygote.cpu_seconds())
            if readings[-1] is not None and readings[-1] > 1.0:
                break
            time.sleep(0.5)
        assert readings[-1] is not None and readings[-1] > 1.0, readings[-5:]
        assert readings[0] is None or readings[0] <= readings[-1]
    finally:
        zygote.kill()
