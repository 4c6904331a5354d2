"""Shared fixtures: a copy of the toy course, and the real repository's course."""

from __future__ import annotations

import shutil
from pathlib import Path

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
