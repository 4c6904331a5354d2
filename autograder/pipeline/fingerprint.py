"""What a week's release was built from, and what it holds: two digests in its week.json, so
that `course build --check` tells a stale or hand-edited release without rebuilding it.

The inputs are everything the build reads: the reference and the given code it uses, the public tests,
the size of the hidden suite, the week's entry in course.yaml and the course settings the
notebook quotes, the build's own code and templates, and the versions of nbgrader, jupytext and
nbformat. The outputs are the released files, week.json aside. `course build --check --rebuild`
compares with a fresh build byte by byte instead (the tests do so for a toy week, which is how
we know that the same inputs give the same bytes).
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib.metadata import version
from pathlib import Path

from autograder.config import Course, Week
from autograder.layout import CoursePaths
from autograder.pipeline.week_info import WEEK_INFO, read_week_info, write_week_info

PIPELINE = Path(__file__).resolve().parent
GIVEN_CELL = re.compile(r'given="(\w+)"')  # a reference's cells filled from reference/given/<name>.py


def inputs_digest(course: Course, week: Week, root: Path, hidden_size: dict) -> str:
    paths = CoursePaths(Path(root))
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(label.encode() + b"\0" + hashlib.sha256(data).digest())

    if week.reference is None:
        raise ValueError(f"{week.id} has no reference to build from")
    reference = (Path(root) / week.reference).read_bytes()
    add("reference", reference)
    for name in sorted(set(GIVEN_CELL.findall(reference.decode()))):
        path = paths.reference / "given" / f"{name}.py"
        add(f"given/{name}.py", path.read_bytes() if path.is_file() else b"")
    for path in sorted(paths.suite(week.id, "public").glob("*.py")):
        add(f"public/{path.name}", path.read_bytes())
    add("hidden", json.dumps(hidden_size, sort_keys=True).encode())
    settings = {"week": week.model_dump(mode="json"), "course_id": course.workflow.course_id,
                "import_timeout_s": course.grading.import_timeout_s}
    add("course.yaml", json.dumps(settings, sort_keys=True).encode())
    for path in sorted(p for p in PIPELINE.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        add(f"pipeline/{path.relative_to(PIPELINE)}", path.read_bytes())
    add("versions", " ".join(version(p) for p in ("nbgrader", "jupytext", "nbformat")).encode())
    return digest.hexdigest()


def outputs_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != WEEK_INFO):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def record(folder: Path, inputs: str) -> None:
    """Write both digests into the built release's week.json."""
    info = read_week_info(folder)
    info["build"] = {"inputs": inputs, "outputs": outputs_digest(folder)}
    write_week_info(folder, info)


def problems(course: Course, week: Week, root: Path, hidden_size: dict) -> list[str]:
    """Why the committed release is not what a build would write now (empty when it is)."""
    folder = CoursePaths(Path(root)).release(week.id)
    recorded = read_week_info(folder).get("build", {})
    if not folder.is_dir() or not recorded:
        return [f"release/{week.id}/ (missing, or built before releases were fingerprinted)"]
    found = []
    if recorded.get("inputs") != inputs_digest(course, week, root, hidden_size):
        found.append(f"release/{week.id}/ was built from other inputs (the reference, the given code, the public "
                     "tests, the hidden suite's size, course.yaml or the build changed since)")
    if recorded.get("outputs") != outputs_digest(folder):
        found.append(f"release/{week.id}/ was edited after it was built")
    return found
