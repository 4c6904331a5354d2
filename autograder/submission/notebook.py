"""From a submitted notebook to the module the worker imports.

The notebook is untrusted input: it may be empty, not JSON, huge or half-written.
Each of those ends here as a `NotebookError` with a sentence a student can act on;
the grader turns it into a zero with that sentence, never a traceback.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.submission.locate import CELL_MARK

MAX_NOTEBOOK_BYTES = 20 << 20
DEMO_TAGS = {"demo", "skip-grading"}


class NotebookError(Exception):
    """The submission cannot be turned into a module; the message says why."""


@dataclass(frozen=True)
class ExtractedModule:
    source: str
    code_cells: int
    skipped_cells: int


def extract_module(path: Path) -> ExtractedModule:
    """The submission's code as one Python module: `.py` files as they are, notebooks cell by cell."""
    path = Path(path)
    if not path.is_file():
        raise NotebookError(f"the submission {path.name} does not exist")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookError(f"{path.name} is {size / 2**20:.1f} MiB, over the limit of "
                            f"{MAX_NOTEBOOK_BYTES >> 20} MiB (clear large outputs and images, then save)")
    raw = path.read_bytes()
    if path.suffix == ".py":
        source = _decode(raw, path.name)
        _check_syntax(source, "the file")
        return ExtractedModule(source, 1, 0)
    return _from_notebook(raw, path.name)


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NotebookError(f"{name} is not UTF-8 text") from None


def _from_notebook(raw: bytes, name: str) -> ExtractedModule:
    text = _decode(raw, name)
    if not text.strip():
        raise NotebookError(f"{name} is empty")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(f"{name} is not a notebook: it is not valid JSON ({exc.msg} at line "
                            f"{exc.lineno}); open it in JupyterLab, save it, and submit again") from None
    except (ValueError, RecursionError):
        raise NotebookError(f"{name} is not a notebook: its JSON cannot be read (nested too deeply "
                            "or numbers too long)") from None
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except (Exception, RecursionError) as exc:  # nbformat raises several unrelated types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotebookError(f"{name} is not a valid Jupyter notebook ({first[:200]})") from None
    pieces, kept, skipped = [], 0, 0
    for index, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & DEMO_TAGS:
            skipped += 1
            continue
        code = strip_magics(cell.source)
        if not code.strip():
            continue
        _check_syntax(code, f"code cell {index}")
        pieces.append(f"{CELL_MARK.format(index)}\n{code}\n")
        kept += 1
    source = "\n".join(pieces)
    if "get_ipython()" in source:
        source = NO_IPYTHON + source
    return ExtractedModule(source, kept, skipped)


def strip_magics(code: str) -> str:
    """IPython-only syntax as plain Python that does nothing: magics, shell lines, help queries.

    IPython's own input transformer does the reading, so strings and continuation lines
    are left alone; the result calls `get_ipython()`, which the module defines as a no-op.
    `%%time` and `%%capture` cells keep their code; other cell magics are dropped.
    """
    lines = code.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic = lines[first].lstrip()[2:].split(None, 1)
        if not magic or magic[0] not in PASS_THROUGH_CELL_MAGICS:
            return ""
        lines[first] = ""
        code = "\n".join(lines)
    transformed = _transformer().transform_cell(code)
    return transformed if code.endswith("\n") else transformed.removesuffix("\n")


PASS_THROUGH_CELL_MAGICS = {"time", "capture"}
NO_IPYTHON = ("class _NoIPython:  # magics and shell lines do nothing when graded\n"
              "    __getattr__ = lambda self, name: (lambda *args, **kwargs: None)\n"
              "get_ipython = _NoIPython\n")


def _transformer():
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()


def _check_syntax(code: str, where: str) -> None:
    try:
        ast.parse(code)
    except SyntaxError as exc:
        line = (exc.text or "").strip()
        raise NotebookError(f"{where} has a syntax error at line {exc.lineno}: {exc.msg}"
                            + (f" in `{line[:120]}`" if line else "")) from None
    except (ValueError, RecursionError) as exc:
        raise NotebookError(f"{where} cannot be parsed: {exc}") from None
