"""Checks on the exchange folder, and running nbgrader's exchange steps."""

from __future__ import annotations

import os
from pathlib import Path

from autograder.workflow.settings import WorkflowError, WorkflowSettings

HOW_TO_CREATE = "create it once, as an administrator: sudo mkdir -p {root} && sudo chmod 777 {root}"


def writable(path: Path) -> bool:
    """Can this process create entries in `path` (a separate function so tests can stand in
    for a non-root user: root passes every permission check)."""
    return os.access(path, os.W_OK | os.X_OK)


def check_exchange(settings: WorkflowSettings) -> Path:
    """The exchange root, if it exists and is writable; otherwise say how to make it so."""
    root = settings.exchange
    how = HOW_TO_CREATE.format(root=root)
    if not root.exists():
        raise WorkflowError(f"the nbgrader exchange folder {root} does not exist; {how} "
                            "(or point the course's exchange setting at another folder)")
    if not root.is_dir():
        raise WorkflowError(f"the nbgrader exchange {root} is not a folder; remove it, then {how}")
    if not writable(root):
        raise WorkflowError(f"the nbgrader exchange folder {root} is not writable by this user; "
                            f"make it writable for everyone: sudo chmod 777 {root}")
    return root


def course_folder(settings: WorkflowSettings, week_id: str, released: bool = True) -> Path:
    """`<exchange>/<course>`; with `released`, insist that `week_id` has been released."""
    course = check_exchange(settings) / settings.course_id
    if released and not (course / "outbound" / week_id).is_dir():
        raise WorkflowError(f"week {week_id} has not been released yet (nothing in {course / 'outbound' / week_id}); "
                            f"the instructor releases it with release_week")
    return course


def run_step(app, what: str) -> str:
    """Run an nbgrader exchange app; its failure becomes a WorkflowError with nbgrader's log."""
    from nbgrader.utils import capture_log

    return check_result(capture_log(app), what)


def check_result(result: dict, what: str) -> str:
    """nbgrader's API answers {success, log, error}; a failure becomes a WorkflowError."""
    if not result.get("success"):
        log = result.get("log", "").strip()
        error = result.get("error", "").strip().splitlines()
        reason = log or (error[-1] if error else "no log")
        raise WorkflowError(f"{what} failed: {reason}")
    return result.get("log", "")
