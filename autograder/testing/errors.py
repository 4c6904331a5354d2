"""Errors that tests see when the student's side fails; each one reads as advice to a student."""

from __future__ import annotations

from autograder.testing.bounds import ERROR_PART_CHARS, NAME_CHARS, cut


class SubmissionError(Exception):
    """Something about the submission, not the test, went wrong."""


class StudentCodeError(SubmissionError):
    """The student's code raised an exception."""

    def __init__(self, type_name: str, message: str, where: str = ""):
        self.type_name, self.message, self.where = type_name, message, where
        text = f"your code raised {type_name}: {message}"
        if where:
            text += f"\n{where.rstrip()}"
        super().__init__(text)


class NotImplementedYet(StudentCodeError):
    """A placeholder (`raise NotImplementedError()`) was reached."""

    def __init__(self, type_name: str, message: str, where: str = ""):
        super().__init__(type_name, message, where)
        self.args = ("this part is not implemented yet: replace `raise NotImplementedError()` with your code"
                     + (f"\n{where.rstrip()}" if where else ""),)


class ImportFailed(SubmissionError):
    """The notebook could not be loaded at all; every test fails with this."""


class MissingName(SubmissionError):
    def __init__(self, name: str):
        super().__init__(f"your notebook does not define `{name}` (check the spelling, "
                         "and that its cell was run and saved)")


class ForbiddenAPIUsed(SubmissionError):
    """The static check found a forbidden API in this part of the submission."""


class WorkerTimeout(SubmissionError):
    """The student's code missed a deadline. `starved` says that its worker got little CPU time
    while the wall clock ran (a busy machine, not slow code): the test is tried once more."""

    def __init__(self, message: str, starved: bool = False, cpu_s: float | None = None, wall_s: float | None = None):
        super().__init__(message)
        self.starved, self.cpu_s, self.wall_s = starved, cpu_s, wall_s


class WorkerCrashed(SubmissionError):
    pass


class BudgetExhausted(SubmissionError):
    """The submission's total time is spent; remaining tests are not run."""


def student_error(info: dict) -> StudentCodeError:
    """The worker's account of an exception, each of its texts cut here, whatever the worker did."""
    kind = NotImplementedYet if info.get("type") == "NotImplementedError" else StudentCodeError
    return kind(cut(info.get("type", "Exception"), NAME_CHARS), cut(info.get("message", ""), ERROR_PART_CHARS),
                cut(info.get("traceback", ""), ERROR_PART_CHARS))
