"""Writing a grade down: Gradescope's results.json, and a feedback report in words.

Neither ever contains a hidden test's source: a test appears by its name, its one-line
description and the failure message, which the suite writes for students.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from autograder.gradebook.parts import case_of
from autograder.grading.run import GradeResult
from autograder.grading.score import WeekScore

STUDENT_OUTPUT_LIMIT = 8000


def results_json(result: GradeResult, score: WeekScore) -> dict:
    """The Gradescope results schema: the week's one score on top, tests[] (name, score,
    max_score, status, ...) in the hidden tests' own points."""
    tests = [{
        "name": t.name,
        "name_format": "text",
        "score": t.points if t.passed else 0.0,
        "max_score": t.points,
        "status": "passed" if t.passed else "failed",
        "visibility": t.visibility,
        "output": t.description + ("" if t.passed else f"\n{t.message}") + (f"\n({t.note})" if t.note else ""),
        "tags": [f"kind:{t.kind}"] + (["retried"] if t.note else []),
    } for t in result.tests]
    output = result.error or ""
    if result.notes:
        output += ("\n" if output else "") + "\n".join(result.notes)
    if score.pending:
        output += ("\n" if output else "") + f"Score {score.text()}."
    return {
        "score": score.final,
        "execution_time": round(result.seconds, 2),
        "output": output,
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"week": result.week, **score.as_dict(), "hidden_points_earned": result.earned,
                       "hidden_points_possible": result.possible, "sandbox": result.sandbox,
                       "student_output": result.output[-STUDENT_OUTPUT_LIMIT:]},
    }


def write_json_atomically(data: dict, path: Path) -> None:
    """Replace `path` in one step, so a reader never sees half a file (nor what a submission wrote)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def fenced(text: str) -> list[str]:
    """A code block that `text` cannot close: its fence is longer than any run of backticks in it,
    so whatever a submission put in its messages (fences, HTML, markdown) stays literal text."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


def common_failure(result: GradeResult) -> str | None:
    """The one message every test failed with (a notebook that did not load), to say once."""
    messages = {t.message.strip() for t in result.tests if not t.passed}
    if len(result.tests) > 1 and all(not t.passed for t in result.tests) and len(messages) == 1:
        return messages.pop() or None
    return None


def feedback_markdown(result: GradeResult, title: str, score: WeekScore) -> str:
    """A report a student can act on: what passed, what failed and why, what to look at."""
    lines = [f"# Feedback: {result.week}, {title}", "", f"**Score: {score.text()}**", ""]
    if result.error and not result.tests:
        return "\n".join(lines + ["**Your submission could not be graded:**", ""] + fenced(result.error) + [""])
    lines += [f"Hidden tests: {result.earned:g} of {result.possible:g} points, "
              f"{sum(t.passed for t in result.tests)} of {len(result.tests)} tests passed.", ""]
    if result.notes:
        lines += ["## Notes", ""] + fenced("\n".join(result.notes)) + [""]
    headline = common_failure(result)
    if headline:
        lines += ["**Every test failed for the same reason:**", ""] + fenced(headline) + [""]
    lines += ["| | test | kind | points |", "|---|---|---|---|"]
    for t in result.tests:
        mark = "passed" if t.passed else "**failed**"
        lines.append(f"| {mark} | {t.description}{case_of(t.name)} | {t.kind} | "
                     f"{t.points if t.passed else 0:g} / {t.points:g} |")
    failed = [t for t in result.tests if not t.passed] if not headline else []
    if failed:
        lines += ["", "## What to look at", ""]
        for t in failed:
            lines += [f"### {t.description}{case_of(t.name)}", ""] + fenced(t.message.strip() or "(no message)") + [""]
            lines += [f"_{t.note}_", ""] if t.note else []
    elif not headline:
        lines += ["", "Every test passed."]
    return "\n".join(lines) + "\n"
