"""A week's one score, as every report shows it: the autograder's table, the gradebook and its
exports, the feedback page and results.json.

A week is worth course.yaml's `points`. Its written answers (cells marked `written=<points>`)
keep their own points; the hidden tests share the rest in proportion to their `points`
markers, part by part (the gradebook's `part-<part>` cells are worth exactly that share).
A written answer nobody has graded yet counts 0 and is reported as pending, never as a 0.
The late policy comes off last, from the total of both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeekScore:
    tests: float          # the hidden tests' share of the week's points
    manual: float         # written answers graded by hand
    pending: float        # written answers' points not graded yet
    late_penalty: float
    possible: float       # the week's points

    @property
    def raw(self) -> float:
        return self.tests + self.manual

    @property
    def final(self) -> float:
        return max(0.0, round(self.raw - self.late_penalty, 4))

    def text(self) -> str:
        """`86 / 100`, with what is still pending."""
        return f"{self.final:g} / {self.possible:g}" + (f" ({self.pending_text()})" if self.pending else "")

    def pending_text(self) -> str:
        return f"{self.pending:g} points of written answers not graded yet" if self.pending else ""

    def as_dict(self) -> dict:
        return {"score": self.final, "possible": self.possible, "tests_points": self.tests,
                "manual_points": self.manual, "pending_manual_points": self.pending,
                "late_penalty": self.late_penalty}


def part_points(hidden_parts: dict[str, float], written_points: float, week_points: float) -> dict[str, float]:
    """What each part's gradebook cell is worth: the points left after the written answers,
    shared by the parts' hidden points."""
    hidden = sum(hidden_parts.values())
    share = (week_points - written_points) / hidden if hidden else 0.0
    return {part: points * share for part, points in hidden_parts.items()}


def tests_share(earned: float, possible: float, written_points: float, week_points: float) -> float:
    """The hidden tests' points, `earned` of `possible`, as their share of the week's points."""
    return round((week_points - written_points) * earned / possible, 4) if possible else 0.0


def score_from_tests(earned: float, possible: float, written_points: float, week_points: float,
                     late_penalty: float = 0.0) -> WeekScore:
    """The score before the gradebook has any manual grade: the hidden tests' share, and every
    written answer pending."""
    return WeekScore(tests=tests_share(earned, possible, written_points, week_points), manual=0.0,
                     pending=written_points, late_penalty=late_penalty, possible=week_points)
