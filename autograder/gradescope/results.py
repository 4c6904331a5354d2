"""Gradescope's results.json for one submission.

The top-level `score` is the week's one score (autograder.grading.score). Each hidden test is
named by its sentence (and case), numbered `<part>.<test>` so Gradescope groups a part's tests,
and shown as course.yaml's `gradescope.hidden_visibility` says; the public self-checks follow,
worth 0 points, shown as `gradescope.public_visibility` says. The pytest id stays in
`extra_data`. Everything is plain text: nothing a submission wrote is rendered.
"""

from __future__ import annotations

from autograder.config import Gradescope
from autograder.gradebook.parts import case_of, part_of
from autograder.grading.run import GradeResult
from autograder.grading.score import WeekScore
from autograder.testing.plugin import TestOutcome


def gradescope_results(hidden: GradeResult, public: GradeResult | None, score: WeekScore, parts: list[str],
                       visibility: Gradescope, note: str = "") -> dict:
    numbers = _Numbers(parts)
    tests = [_test(t, numbers.next(t.name), visibility.hidden_visibility, scored=True) for t in hidden.tests]
    tests += [_test(t, numbers.next(t.name), visibility.public_visibility, scored=False)
              for t in (public.tests if public else [])]
    lines = [line for line in (hidden.error, *hidden.notes) if line]
    lines.append(f"Score: {score.text()}. Hidden tests: {hidden.earned:g} of {hidden.possible:g} points, "
                 f"{sum(t.passed for t in hidden.tests)} of {len(hidden.tests)} passed.")
    if note:
        lines.append(note)
    return {
        "score": score.final,
        "execution_time": round(hidden.seconds, 2),
        "output": "\n".join(lines),
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"week": hidden.week, **score.as_dict(), "sandbox": hidden.sandbox, "device": hidden.device},
    }


class _Numbers:
    """`<part>.<k>`: the part's place in the notebook, then the test's place in its part;
    tests of no part come after the parts."""

    def __init__(self, parts: list[str]):
        self.parts = list(dict.fromkeys(parts))
        self.seen: dict[int, int] = {}

    def next(self, test_name: str) -> str:
        part = part_of(test_name, self.parts)
        major = self.parts.index(part) + 1 if part else len(self.parts) + 1
        self.seen[major] = self.seen.get(major, 0) + 1
        return f"{major}.{self.seen[major]}"


def _test(outcome: TestOutcome, number: str, visibility: str, scored: bool) -> dict:
    name = (outcome.description or outcome.name) + case_of(outcome.name)
    output = "" if outcome.passed else outcome.message
    if outcome.note:
        output += ("\n" if output else "") + f"({outcome.note})"
    points = outcome.points if scored else 0.0
    return {
        "name": name if scored else f"Self-check: {name}",
        "name_format": "text",
        "number": number,
        "score": points if outcome.passed else 0.0,
        "max_score": points,
        "status": "passed" if outcome.passed else "failed",
        "visibility": visibility,
        "output": output,
        "output_format": "text",
        "tags": [f"kind:{outcome.kind}", "public" if not scored else "hidden"],
        "extra_data": {"test": outcome.name, "kind": outcome.kind, "suite": "hidden" if scored else "public"},
    }
