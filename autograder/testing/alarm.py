"""Time limits for code that runs in this process: a self-check in the student's own kernel or
shell, where there is no worker to kill. The grader's limits apply, so a hang in a self-check
ends the way it would in grading, in seconds, with the grader's words."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


class TimeLimitExceeded(BaseException):
    """Raised into the running code when its time is up. A BaseException, so that the student's
    own `except Exception:` cannot swallow it."""


@contextmanager
def time_limit(seconds: float | None, message: str) -> Iterator[None]:
    """Interrupt the block after `seconds` with TimeLimitExceeded(message). Only the main thread
    can receive the alarm; elsewhere (and with no limit) the block runs unlimited."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeLimitExceeded(message)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
