"""`week.json`, beside each released notebook: what students and tools may know of a week without
its hidden tests: its title, notebook, parts, and the number and points of its hidden tests.
The build writes it; self-checks, feedback and verification read it, here and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path

WEEK_INFO = "week.json"


def write_week_info(folder: Path, info: dict) -> Path:
    path = Path(folder) / WEEK_INFO
    path.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return path


def read_week_info(folder: Path) -> dict:
    """The week's info from a release folder (or a fetched week's folder); {} when it has none."""
    path = Path(folder) / WEEK_INFO
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
