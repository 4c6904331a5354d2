"""`course gradescope`: the zip, and the autograder run as Gradescope runs it.

The container test unpacks the zip into an /autograder-shaped folder inside a container from
the course's base image, runs setup.sh, then run_autograder for the answer key, the release and
a mutant, and validates each results.json against the specification's schema (fixtures/).
There is no network at test time, so uv installs the locked environment from the host's uv
cache, for the host's Python (mounted read-only at its own path): uv.lock resolves some packages differently
for other Python patch releases, whose wheels the cache may not hold.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import nbformat
import pytest
import yaml

from autograder.config import load_course
from autograder.gradescope.bundle import build_autograder_zip
from autograder.grading.mutants import load_mutants
from autograder.grading.verify import answer_key_source
from autograder.pipeline.build import build_week, source_notebook

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "gradescope_results.schema.json").read_text())
DUE = "2027-01-18T23:59:00+00:00"
LATE = {"created_at": "2027-01-20T12:00:00.000000+00:00", "assignment": {"due_date": DUE}}  # 2 started days
BASE_IMAGE = "vitssl-base:bookworm"  # docker/engine.sh's debootstrap image: Debian with python3


@pytest.fixture
def bundle(toy, tmp_path):
    """The toy week, with a per-day late policy, built and zipped for Gradescope."""
    _, root = toy
    data = yaml.safe_load((root / "course.yaml").read_text())
    data["workflow"] = {"late_policy": "per_day", "penalty_per_day": 0.1}
    (root / "course.yaml").write_text(yaml.safe_dump(data))
    course = load_course(root / "course.yaml")
    build_week(course, "m1w01", root)
    names = build_autograder_zip(course, root, "m1w01", tmp_path / "autograder.zip")
    return course, root, tmp_path / "autograder.zip", names


def submissions(course, root, folder: Path) -> dict[str, Path]:
    """The answer key, the release and the week's mutant, as notebooks a student would upload."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "key.ipynb"
    nbformat.write(source_notebook(course, course.week("m1w01"), root), key)
    (mutant,) = load_mutants(root / "assignments" / "m1w01" / "mutants")
    buggy = folder / "mutant.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        mutant.apply(answer_key_source(course, root, "m1w01")))]), buggy)
    return {"key": key, "release": root / "release" / "m1w01" / "m1w01_toy.ipynb", "mutant": buggy}


def check_results(results: dict, case: str) -> None:
    jsonschema.validate(results, SCHEMA)
    hidden = [t for t in results["tests"] if t["extra_data"]["suite"] == "hidden"]
    public = [t for t in results["tests"] if t["extra_data"]["suite"] == "public"]
    assert hidden and public, "hidden tests score the week; the public self-checks are listed too"
    assert {t["visibility"] for t in hidden} == {"after_due_date"} and {t["visibility"] for t in public} == {"visible"}
    assert all(t["max_score"] == 0 for t in public)
    assert all(not t["name"].startswith("test_") and t["extra_data"]["test"].startswith("test_") for t in hidden), \
        "tests are named by their sentence; the pytest id is kept in extra_data"
    assert all(t["number"].startswith("1.") for t in results["tests"]), "the toy week's one part groups its tests"
    assert len({t["number"] for t in results["tests"]}) == len(results["tests"])
    expected = {"key": 80.0, "release": 0.0}.get(case)  # late by 2 started days: 100 - 2 * 10
    if expected is not None:
        assert results["score"] == pytest.approx(expected), results["output"]
    else:
        assert 0 < results["score"] < 80, "the mutant loses points"
    assert "2 started days" in results["output"]


def test_the_zip_holds_the_suites_and_the_engine_but_no_answer_key(bundle):
    course, root, path, names = bundle
    for name in ("setup.sh", "run_autograder", "course.yaml", "uv.lock", "pyproject.toml", "gradescope.json",
                 "assignments/m1w01/hidden/test_h.py", "assignments/m1w01/public/test_public.py",
                 "release/m1w01/week.json", "autograder/gradescope/run.py"):
        assert name in names, name
    assert not any(n.startswith(("reference/", "assignments/m1w01/mutants")) or "__pycache__" in n for n in names)
    with zipfile.ZipFile(path) as archive:
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        solution = "e = torch.exp(x - x.max(-1, keepdim=True).values)"
        assert not any(solution in archive.read(n).decode(errors="ignore") for n in names), "the answer key leaked"
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111


def test_a_stale_release_is_refused(bundle, tmp_path):
    course, root, _, _ = bundle
    (root / "assignments" / "m1w01" / "hidden" / "test_h.py").write_text("# changed\n", encoding="utf-8")
    from autograder.gradescope.bundle import BundleError

    with pytest.raises(BundleError, match="course build m1w01"):
        build_autograder_zip(course, root, "m1w01", tmp_path / "again.zip")


CONTAINER_SCRIPT = r"""
set -euo pipefail
chmod 711 /root  # the host's Python may live under /root (mounted at its own path: it finds its libraries there)
mkdir -p /autograder/source /autograder/results
python3 - <<'UNZIP'
import os, zipfile  # as unzip does: files keep the modes the zip records
with zipfile.ZipFile("/input/autograder.zip") as archive:
    for info in archive.infolist():
        os.chmod(archive.extract(info, "/autograder/source"), (info.external_attr >> 16) or 0o644)
UNZIP
cd /autograder/source && bash setup.sh
for case in key release mutant nothing; do
  rm -rf /autograder/submission /autograder/results/results.json && mkdir -p /autograder/submission
  if [ "$case" != nothing ]; then cp /input/$case.ipynb /autograder/submission/m1w01_toy.ipynb; fi
  cp /input/submission_metadata.json /autograder/submission_metadata.json
  cp /autograder/source/run_autograder /autograder/run_autograder && /autograder/run_autograder
  cp /autograder/results/results.json /output/$case.json
done
"""


@pytest.mark.slow
def test_gradescope_runs_setup_then_run_autograder_in_a_container(bundle, tmp_path):
    """As Gradescope runs it: unzip, setup.sh, then run_autograder for the late answer key (80),
    the release (0), a mutant, and an upload with no notebook (0, with the reason)."""
    from autograder.pipeline.image import uv_binary
    from autograder.sandbox.container import DockerUnavailable, client

    try:
        docker = client()
        docker.images.get(BASE_IMAGE)
        uv = uv_binary()
    except Exception as exc:  # no engine, no base image, no uv binary
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Gradescope container test, but: {exc} (does .ci/run start docker/engine.sh?)")
        pytest.skip(f"no Docker engine with {BASE_IMAGE}: {exc}")
    course, root, path, _ = bundle
    inputs, outputs = tmp_path / "input", tmp_path / "output"
    inputs.mkdir()
    outputs.mkdir()
    shutil.copy(path, inputs / "autograder.zip")
    for case, notebook in submissions(course, root, tmp_path / "uploads").items():
        shutil.copy(notebook, inputs / f"{case}.ipynb")
    (inputs / "submission_metadata.json").write_text(json.dumps(LATE))
    cache = subprocess.run([str(uv), "cache", "dir"], capture_output=True, text=True).stdout.strip()
    try:
        container = docker.containers.run(
            BASE_IMAGE, ["bash", "-c", CONTAINER_SCRIPT], detach=True, network_mode="none",
            volumes={str(inputs): {"bind": "/input", "mode": "ro"}, str(outputs): {"bind": "/output", "mode": "rw"},
                     str(uv): {"bind": "/usr/local/bin/uv", "mode": "ro"}, cache: {"bind": "/uv-cache", "mode": "rw"},
                     sys.base_prefix: {"bind": sys.base_prefix, "mode": "ro"}},
            environment={"UV_CACHE_DIR": "/uv-cache", "UV_OFFLINE": "1", "UV_LINK_MODE": "symlink",
                         "UV_PYTHON_DOWNLOADS": "never", "UV_PYTHON": f"{sys.base_prefix}/bin/python{sys.version_info[0]}",
                         "PATH": "/usr/local/bin:/usr/bin:/bin"})
        status = container.wait(timeout=1500)
        log = container.logs().decode(errors="replace")
        container.remove(force=True)
    except DockerUnavailable as exc:
        pytest.fail(str(exc))
    assert status["StatusCode"] == 0, log[-4000:]
    for case in ("key", "release", "mutant"):
        check_results(json.loads((outputs / f"{case}.json").read_text()), case)
    nothing = json.loads((outputs / "nothing.json").read_text())
    jsonschema.validate(nothing, SCHEMA)
    assert nothing["score"] == 0 and "no notebook was submitted: upload m1w01_toy.ipynb" in nothing["output"]
