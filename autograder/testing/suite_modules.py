"""Running several suites in one process (self-checks in a notebook kernel, in-process
grading): pytest's importlib mode names a test module by its path under the rootdir, so
two weeks' `test_hidden.py` (or `conftest.py`) share a module name, and the second run
would find the first week's module in `sys.modules`. Each run starts and ends without
any module loaded from its suite's folder."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def fresh_suite_modules(folder: Path) -> Iterator[None]:
    forget_modules_under(folder)
    try:
        yield
    finally:
        forget_modules_under(folder)


def forget_modules_under(folder: Path) -> None:
    root = Path(folder).resolve()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().is_relative_to(root):
            del sys.modules[name]
