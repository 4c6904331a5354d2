"""Shared fixtures: a copy of the toy course, the real repository's course, and the verification
of every ready week, which runs in the background beside the other tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import pytest

from autograder.config import load_course

REPO = Path(__file__).resolve().parent.parent
TOY = Path(__file__).resolve().parent / "fixtures" / "toy_course"

HONEST_SOFTMAX = '''
import torch

def softmax(x):
    e = torch.exp(x - x.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)
'''


@pytest.fixture
def toy(tmp_path: Path):
    """A private copy of the toy course: (course, root)."""
    root = tmp_path / "course"
    shutil.copytree(TOY, root)
    return load_course(root / "course.yaml"), root


@pytest.fixture(scope="session")
def repo_course():
    return load_course(REPO / "course.yaml"), REPO


def write_module(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(source)
    return path


VERIFY_LIMIT_S = 3600
_verification: dict = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    """When the weeks' verification is among the collected tests, start `course verify` now in a
    subprocess: it keeps about one core busy (its trusted process and one worker take turns),
    so it runs beside the rest of the suite on the other core instead of after it."""
    if any(item.originalname == "test_week_verifies" for item in session.items) and not _verification:
        folder = Path(tempfile.mkdtemp(prefix="verify-"))
        log = open(folder / "verify.log", "w")
        command = [sys.executable, "-m", "autograder.cli", "--course", str(REPO / "course.yaml"), "verify",
                   "--json", str(folder / "verdicts.json")]
        _verification.update(folder=folder, log=log,
                             process=subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))


@pytest.fixture(scope="session")
def week_verification() -> Callable[[], list[dict]]:
    """Waits for the background `course verify` and returns its verdicts, one per ready week."""
    def wait() -> list[dict]:
        process = _verification["process"]
        try:
            process.wait(timeout=VERIFY_LIMIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        verdicts = _verification["folder"] / "verdicts.json"
        log = (_verification["folder"] / "verify.log").read_text()
        assert verdicts.is_file(), f"course verify wrote no verdicts (exit {process.returncode}):\n{log[-3000:]}"
        return json.loads(verdicts.read_text())

    return wait


def pytest_sessionfinish(session: pytest.Session) -> None:
    process = _verification.get("process")
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
    if _verification:
        _verification["log"].close()
        shutil.rmtree(_verification["folder"], ignore_errors=True)
