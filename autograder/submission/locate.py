"""Lines of the generated module, in the student's terms: a cell of their notebook.

A notebook becomes one module with a marker line before each code cell (`notebook.py`), so a
line of the module is a line of a cell. Messages about student code (forbidden APIs, the
tracebacks of their errors) name the cell by its number in the notebook and its first line,
never a line of a file the student never sees.
"""

from __future__ import annotations

import re

CELL_MARK = "# --- cell {} ---"
MODULE_FILE = "submission.py"  # the name the module is compiled under, in the worker and in a shell self-check
_MARK = re.compile(r"^# --- cell (\d+) ---$")
_FRAME = re.compile(r'File "[^"]*' + re.escape(MODULE_FILE) + r'", line (\d+)')


def describe_line(source: str, line: int) -> str:
    """`cell 7 (def attention(q, k, v):), line 3` for line `line` of the module `source`."""
    lines = source.splitlines()
    for index in range(min(line, len(lines)) - 1, -1, -1):
        found = _MARK.match(lines[index])
        if found:
            body = lines[index + 1:]
            first = next((text.strip() for text in body if text.strip()), "")
            return f"cell {found.group(1)} ({first[:60]}), line {line - index - 1}"
    return f"line {line}"


def kernel_frames(exc: BaseException, keep: int = 5) -> str:
    """The traceback of `exc` through student code in this process, in notebook terms: frames of
    a Jupyter kernel's cells (named by their first line) and of a graded module's cells."""
    import linecache
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.endswith(MODULE_FILE) or _is_kernel_cell(f.filename)]
    lines = []
    for frame in frames[-keep:]:
        if _is_kernel_cell(frame.filename):
            first = linecache.getline(frame.filename, 1).strip()
            lines.append(f"  the cell that starts with {first[:60]}, line {frame.lineno}, in {frame.name}\n")
        else:
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
        if frame.line:
            lines.append(f"    {frame.line.strip()}\n")
    return "".join(lines)


def _is_kernel_cell(filename: str) -> bool:
    return "ipykernel_" in filename or filename.startswith("<ipython-input")


def in_notebook_terms(text: str, source: str) -> str:
    """`text` (a traceback or message) with each frame of the module named by its notebook cell."""
    return _FRAME.sub(lambda m: describe_line(source, int(m.group(1))), text)
