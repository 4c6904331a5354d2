"""Checks on the exchange folder, and running nbgrader's exchange steps.

nbgrader's exchange is shared by every account on the machine. What nbgrader leaves open and
the course closes: a world-writable root without the sticky bit lets any student rename or
delete the course's folder (refused here, with the command that fixes it); submissions land
in an `inbound` folder others cannot list, under names that end in a random string (kept on,
whatever a site's config says); feedback pages are named by a hash of a secret that only the
submitting student's cache holds, and `fetch_feedback_week` looks only at that student's
entries of the cache, which a shared account shares.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from autograder.workflow.settings import WorkflowError, WorkflowSettings

HOW_TO_CREATE = "create it once, as an administrator: sudo mkdir -p {root} && sudo chmod 1777 {root}"


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
                            f"make it writable for everyone, with the sticky bit: sudo chmod 1777 {root}")
    mode = root.stat().st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise WorkflowError(f"the nbgrader exchange folder {root} is writable for everyone without the sticky bit, "
                            f"so any student could rename or delete the course's folder in it; "
                            f"set the sticky bit: sudo chmod +t {root}")
    return root


def keep_sticky(root: Path) -> None:
    """nbgrader's release sets the exchange root's mode to 0777 when it differs, which clears the
    sticky bit; put it back where this user may (the owner, or an administrator)."""
    mode = root.stat().st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        try:
            os.chmod(root, stat.S_IMODE(mode) | stat.S_ISVTX)
        except PermissionError:
            pass  # the next check_exchange says what to run


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
