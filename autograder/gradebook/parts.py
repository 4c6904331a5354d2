"""The one rule that maps a week's tests to its parts.

A part is what one self-check cell checks (`check("m1w01", "attention")`) and what one grade
cell (`part-attention`) scores. A test belongs to the longest part `p` such that its name, less
any `[...]` parameters, is `test_<p>` or starts with `test_<p>_`. The build counts the hidden
points per part with it, self-checks pick a part's public tests with it, and the gradebook and
the feedback sum scores per part with it. (Kept free of torch, so the gradebook stays light.)
"""

from __future__ import annotations

import re

PART_PREFIX = "part-"
WRITTEN_PREFIX = "written-"  # a written answer's grade cell, graded by hand
_PARAM = re.compile(r"\[.*\]$", re.DOTALL)


def part_of(test_name: str, parts: list[str]) -> str | None:
    """The part `test_name` belongs to, or None when it belongs to none."""
    base = _PARAM.sub("", test_name.split("::")[-1])
    best = None
    for part in parts:
        stem = f"test_{part}"
        if (base == stem or base.startswith(stem + "_")) and (best is None or len(part) > len(best)):
            best = part
    return best


def case_of(test_name: str) -> str:
    """A parametrized test's case id, as ` (case …)`; empty for a plain test."""
    found = re.search(r"\[(.+)\]$", test_name)
    return f" (case {found.group(1)})" if found else ""
