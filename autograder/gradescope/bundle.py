"""`course gradescope WEEK -o autograder.zip`: a Gradescope autograder for one week.

The zip holds what grading needs and nothing else: the engine (the autograder package,
pyproject.toml, uv.lock), course.yaml, the week's hidden and public suites and its released
folder, and Gradescope's two scripts. Never the reference (the answer key), nor the mutants.

On Gradescope the public self-checks run in the sandboxed worker, not in the student's kernel;
a few pass the test's own objects (a model defined in the test) into the notebook's functions,
which only a kernel can do. The build grades the answer key on the public suite in the worker
and lists the tests it passes there; Gradescope runs those.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import nbformat

import autograder
from autograder.config import Course
from autograder.gradescope.run import BUNDLE_INFO
from autograder.layout import COURSE_FILE, CoursePaths
from autograder.pipeline.build import source_notebook, stale_files

FILES = Path(__file__).parent / "files"
SCRIPTS = ("setup.sh", "run_autograder")
ENGINE_FILES = ("pyproject.toml", "uv.lock", "README.md")
SKIP = {"__pycache__", ".ipynb_checkpoints"}


class BundleError(Exception):
    """The zip cannot be built; the message says what to do."""


def build_autograder_zip(course: Course, root: Path, week_id: str, output: Path) -> list[str]:
    """Write the zip; returns the names it holds."""
    week = course.week(week_id)
    paths = CoursePaths(root)
    if week.state != "ready":
        raise BundleError(f"week {week_id} is {week.state!r}: only a ready week can go to Gradescope")
    if not paths.release(week_id).is_dir() or stale_files(course, week_id, root):
        raise BundleError(f"release/{week_id} is missing or stale: run `course build {week_id}` first")
    checkout = Path(autograder.__file__).resolve().parent.parent
    missing = [name for name in ENGINE_FILES if not (checkout / name).is_file()]
    if missing:
        raise BundleError(f"{', '.join(missing)} not found beside the autograder package in {checkout}: build the "
                          "zip from the course's checkout, where uv.lock pins the environment")
    entries: dict[str, Path | bytes] = {name: checkout / name for name in ENGINE_FILES}
    entries[COURSE_FILE] = paths.course_file
    entries[BUNDLE_INFO] = json.dumps({"week": week_id, "public_tests": public_tests_in_the_worker(
        course, root, week_id)}).encode()
    entries.update(_tree(checkout / "autograder", "autograder"))
    for suite in ("hidden", "public"):
        entries.update(_tree(paths.suite(week_id, suite), f"assignments/{week_id}/{suite}"))
    entries.update(_tree(paths.release(week_id), f"release/{week_id}"))
    for script in SCRIPTS:
        entries[script] = FILES / script
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name in SCRIPTS else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = entries[name]
            bundle.writestr(info, data if isinstance(data, bytes) else data.read_bytes())
    return sorted(entries)


def public_tests_in_the_worker(course: Course, root: Path, week_id: str) -> list[str]:
    """The public tests (every case of each) the answer key passes in the sandboxed worker."""
    from autograder.grading.run import Submitted, grade

    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "answer_key.ipynb"
        nbformat.write(source_notebook(course, course.week(week_id), root), key)
        result = grade(course, root, week_id, [Submitted("answer key", key)], suite="public")["answer key"]
    names = {t.name.split("[")[0] for t in result.tests}
    return sorted(n for n in names if all(t.passed for t in result.tests if t.name.split("[")[0] == n))


def _tree(folder: Path, prefix: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {f"{prefix}/{path.relative_to(folder).as_posix()}": path for path in sorted(folder.rglob("*"))
            if path.is_file() and not SKIP & set(path.relative_to(folder).parts)}
