"""From `reference/<week>_<slug>.py` to `release/<week>/`.

1. jupytext reads the percent-format reference into a notebook. Each cell gets its
   nbgrader role: a cell with a `### BEGIN SOLUTION` region is a solution cell, a
   markdown cell marked `written=<points>` is a written answer graded by hand, a part's
   `check(...)` cell is that part's autograded cell, explicit `nbgrader` metadata is kept,
   and every other cell is locked. Cell ids are made
   from the week and the cell's position so that builds are byte-for-byte repeatable.
2. That notebook, with the week's public tests, is nbgrader's source
   assignment (the answer key). nbgrader's `generate_assignment` writes the student
   version, with solutions replaced by placeholders.
3. The result replaces `release/<week>/`. Hidden tests and mutants are never copied.

Everything is built in a temporary course folder, so `--check` can compare a fresh
build with the committed `release/` without touching it.
"""

from __future__ import annotations

import ast
import filecmp
import json
import os
import re
import shutil
import sys
import tempfile
from typing import Any
from pathlib import Path

import jupytext
import nbformat

from autograder.config import Course, Week
from autograder.gradebook.parts import WRITTEN_PREFIX
from autograder.grading.score import part_points
from autograder.layout import PUBLIC_TESTS_DIR, CoursePaths
from autograder.pipeline import fingerprint
from autograder.pipeline.render import RenderError, render_cells
from autograder.pipeline.week_info import write_week_info

SOLUTION_BEGIN = "### BEGIN SOLUTION"
CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](\w+)["']\s*,\s*["'](\w+)["']""")


class BuildError(Exception):
    pass


def source_notebook(course: Course, week: Week, root: Path) -> nbformat.NotebookNode:
    """The answer key: the reference as a notebook with nbgrader cell metadata."""
    if not week.reference:
        raise BuildError(f"week {week.id} has no reference file in course.yaml")
    path = root / week.reference
    if not path.is_file():
        raise BuildError(f"{path} does not exist (course.yaml weeks[{week.id}].reference)")
    nb = jupytext.read(path, fmt="py:percent")
    parts = [p for c in nb.cells if (p := check_part(c, week.id))]
    hidden = hidden_suite_size(CoursePaths(root).suite(week.id, "hidden"), parts)
    written = sum(_written_points(c) for c in nb.cells)
    if written >= week.points:
        raise BuildError(f"{path}: the written answers are worth {written:g} points, but the whole week only "
                         f"{week.points:g} (course.yaml weeks[{week.id}].points): leave points for the hidden tests")
    points_of_parts = part_points(hidden["parts"], written, week.points)
    try:
        render_cells(nb, course, week, root, parts, hidden["tests"])
    except RenderError as exc:
        raise BuildError(str(exc)) from None
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    used_ids: set[str] = set()
    for index, cell in enumerate(nb.cells):
        cell.id = f"{week.id}-{index:03d}"
        cell.metadata.pop("lines_to_next_cell", None)
        cell.metadata["nbgrader"] = _nbgrader_metadata(cell, week.id, index, used_ids, points_of_parts)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return nb


def check_part(cell: nbformat.NotebookNode, week: str) -> str | None:
    """The part a self-check cell checks: `check("<week>", "<part>")`."""
    match = CHECK_CALL.search(cell.source) if cell.cell_type == "code" else None
    return match.group(2) if match and match.group(1) == week else None


def _nbgrader_metadata(cell: nbformat.NotebookNode, week: str, index: int, used: set[str],
                       part_points: dict[str, float]) -> dict:
    """nbgrader's role for a cell. A part's self-check cell is that part's autograded grade
    cell in the gradebook (`part-<part>`, worth the part's hidden points): formgrader shows
    one score per part, and the autograder fills it in."""
    given = dict(cell.metadata.get("nbgrader", {}))
    if "written" in cell.metadata:
        return _written_answer(cell, week, index, used)
    part = check_part(cell, week)
    if part and part_points.get(part) and f"part-{part}" not in used and not given:
        used.add(f"part-{part}")
        return {"grade": True, "solution": False, "locked": True, "points": part_points[part],
                "grade_id": f"part-{part}", "schema_version": 3}
    is_solution = SOLUTION_BEGIN in cell.source
    grade_id = given.get("grade_id") or _cell_name(cell, is_solution) or f"{week}-cell-{index:03d}"
    if grade_id in used:
        grade_id = f"{grade_id}-{index:03d}"
    used.add(grade_id)
    meta: dict[str, Any] = {"grade": False, "locked": not is_solution, "solution": is_solution, "schema_version": 3}
    meta.update(given)
    meta["grade_id"] = grade_id
    return meta


def _written_points(cell: nbformat.NotebookNode) -> float:
    """A written answer's points as its cell marks them (checked when its metadata is made)."""
    points = cell.metadata.get("written") if cell.cell_type == "markdown" else None
    return float(points) if isinstance(points, (int, float)) and not isinstance(points, bool) and points > 0 else 0.0


def _written_answer(cell: nbformat.NotebookNode, week: str, index: int, used: set[str]) -> dict:
    """A written answer (theory weeks), marked `# %% [markdown] written=<points>` in the
    reference: its `### BEGIN SOLUTION` region is the model answer, which the release
    replaces with nbgrader's "YOUR ANSWER HERE"; graded by hand in formgrader."""
    points = cell.metadata.pop("written")
    where = f"reference of {week}, cell {index}"
    if cell.cell_type != "markdown" or SOLUTION_BEGIN not in cell.source:
        raise BuildError(f"{where}: a written=<points> cell must be markdown with a {SOLUTION_BEGIN} region "
                         "holding the model answer")
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
        raise BuildError(f"{where}: written={points!r} must be a positive number of points")
    grade_id = f"{WRITTEN_PREFIX}{sum(name.startswith(WRITTEN_PREFIX) for name in used) + 1}"
    used.add(grade_id)
    return {"grade": True, "solution": True, "locked": False, "points": float(points), "grade_id": grade_id,
            "schema_version": 3}


def _cell_name(cell: nbformat.NotebookNode, is_solution: bool) -> str | None:
    if cell.cell_type != "code" or not is_solution:
        return None
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        return None
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    return names[0] if names else None


def build_week(course: Course, week_id: str, root: Path, into: Path | None = None,
               db_url: str | None = None, source_into: Path | None = None) -> Path:
    """Build one week's release; into `into` (a release folder) or `release/<week>/`.

    With `db_url`, nbgrader records the week's notebook and grade cells in that gradebook
    (the course's own, when releasing); otherwise in a throwaway one. With `source_into`,
    nbgrader's source folder (the answer key and the public tests) is kept there, where
    formgrader looks for the course's assignments.
    """
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    week = course.week(week_id)
    paths = CoursePaths(root)
    put_venv_on_path()
    with tempfile.TemporaryDirectory(prefix=f"build-{week_id}-") as tmp:
        work = Path(tmp)
        source = work / "source" / week_id
        source.mkdir(parents=True)
        notebook = source_notebook(course, week, root)
        nbformat.write(notebook, source / f"{week.slug}.ipynb")
        _copy_tree(paths.suite(week_id, "public"), source / PUBLIC_TESTS_DIR, "*.py")
        parts = [p for c in notebook.cells if (p := check_part(c, week.id))]
        hidden = hidden_suite_size(paths.suite(week_id, "hidden"))
        written = [c.metadata["nbgrader"]["points"] for c in notebook.cells
                   if c.metadata["nbgrader"].get("grade_id", "").startswith(WRITTEN_PREFIX)]
        info = {"week": week.id, "title": week.title, "notebook": f"{week.slug}.ipynb", "parts": parts,
                "hidden": hidden, "points": week.points, "written": {"answers": len(written), "points": sum(written)}}
        write_week_info(source, info)
        config = Config()
        config.CourseDirectory.root = str(work)
        config.CourseDirectory.db_url = db_url or f"sqlite:///{work / 'gradebook.db'}"
        config.CourseDirectory.course_id = course.workflow.course_id
        (work / "exchange").mkdir()
        config.Exchange.root = str(work / "exchange")
        config.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
        config.IncludeHeaderFooter.header = ""
        api = NbGraderAPI(config=config)
        result = api.generate_assignment(week_id, force=True, create=True)
        if not result.get("success"):
            raise BuildError(f"nbgrader generate_assignment failed for {week_id}:\n{result.get('log', '')}"
                             f"\n{result.get('error', '')}")
        built = work / "release" / week_id
        _normalise(built)
        if source_into is not None:
            if source_into.exists():
                shutil.rmtree(source_into)
            shutil.copytree(source, source_into)
        fingerprint.record(built, fingerprint.inputs_digest(course, week, root, hidden))
        target = into or paths.release(week_id)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(built, target)
    return target


def hidden_suite_size(folder: Path, parts: list[str] | None = None) -> dict:
    """How many hidden tests there are and what they are worth, in all and per part, read
    from the source (a test belongs to part p when it is named test_<p>_...).

    Students may know this much (not what the tests check); reading the files rather than
    collecting them keeps the build free of the suite's imports.
    """
    from autograder.gradebook.parts import part_of

    tests, points, per_part = 0, 0.0, {p: 0.0 for p in parts or []}
    for node, literals in _test_functions(folder):
        cases = _parametrized_cases(node, literals)
        tests += cases
        points += cases * _points_marker(node)
        part = part_of(node.name, list(per_part))
        if part is not None:
            per_part[part] += cases * _points_marker(node)
    size: dict[str, Any] = {"tests": tests, "points": points}
    if parts is not None:
        size["parts"] = per_part
    return size


def suite_test_names(folder: Path) -> list[str]:
    """The names of a suite's test functions, read from its source."""
    return [node.name for node, _ in _test_functions(folder)]


def _test_functions(folder: Path):
    """Each test function of a suite's files, with its module's literal assignments."""
    for path in sorted(folder.glob("test_*.py")) if folder.is_dir() else []:
        tree = ast.parse(path.read_text())
        literals = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign)
                    for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                yield node, literals


def _parametrized_cases(node: ast.FunctionDef, literals: dict[str, ast.expr]) -> int:
    """How many cases `@pytest.mark.parametrize(names, values)` decorators make, where `values`
    is a literal, a module-level literal, or `list(...)` of one."""
    cases = 1
    for deco in node.decorator_list:
        if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                and deco.func.attr == "parametrize" and len(deco.args) >= 2):
            values = deco.args[1]
            if isinstance(values, ast.Call) and values.args and getattr(values.func, "id", "") in ("list", "tuple"):
                values = values.args[0]
            if isinstance(values, ast.Name):
                values = literals.get(values.id, values)
            if isinstance(values, (ast.List, ast.Tuple, ast.Set)):
                cases *= len(values.elts)
            elif isinstance(values, ast.Dict):
                cases *= len(values.keys)
    return cases


def _points_marker(node: ast.FunctionDef) -> float:
    for deco in node.decorator_list:
        if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "points"
                and deco.args and isinstance(deco.args[0], ast.Constant)
                and isinstance(deco.args[0].value, (int, float))):
            return float(deco.args[0].value)
    return 1.0


def put_venv_on_path() -> None:
    """nbgrader runs the `alembic` program by name; it lives beside this interpreter."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def write_answer_key(course: Course, week_id: str, root: Path, output: Path) -> Path:
    nbformat.write(source_notebook(course, course.week(week_id), root), output)
    return output


def stale_files(course: Course, week_id: str, root: Path, rebuild: bool = False) -> list[str]:
    """Why `release/<week>/` is not what a build would write now (empty when it is up to date):
    from its fingerprint, or with `rebuild`, the files that differ from a fresh build."""
    if not rebuild:
        week = course.week(week_id)
        return fingerprint.problems(course, week, root, hidden_suite_size(CoursePaths(root).suite(week_id, "hidden")))
    with tempfile.TemporaryDirectory(prefix=f"check-{week_id}-") as tmp:
        fresh = build_week(course, week_id, root, into=Path(tmp) / week_id)
        committed = CoursePaths(root).release(week_id)
        if not committed.is_dir():
            return [f"release/{week_id}/ (missing)"]
        return [f"release/{week_id}/{name}" for name in _differences(fresh, committed)]


def _differences(a: Path, b: Path) -> list[str]:
    names_a = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    names_b = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    differ = sorted(names_a ^ names_b)
    differ += sorted(n for n in names_a & names_b if not filecmp.cmp(a / n, b / n, shallow=False))
    return differ


def _copy_tree(src: Path, dst: Path, pattern: str) -> None:
    if not src.is_dir():
        return
    for path in sorted(src.glob(pattern)):
        if path.is_file() and "__pycache__" not in path.parts:
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / path.name)


def _normalise(folder: Path) -> None:
    """Stable bytes: sorted keys, fixed indentation, no timestamps from the build."""
    for path in folder.rglob("*.ipynb"):
        nb = json.loads(path.read_text())
        path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    for path in folder.rglob("__pycache__"):
        shutil.rmtree(path)
