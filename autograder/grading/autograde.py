"""Autograding a collected week: every submission in sandboxed workers, in parallel batches.

Each batch is one trusted pytest process (its imports paid once) grading several
submissions one after another; `jobs` batches run side by side. A broken, hostile or
slow submission costs its own time only. Each student's results.json and feedback.md
are written to `.course-work/autograded/<student>/<week>/`, with the late policy applied.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autograder.config import Course
from autograder.grading.report import feedback_markdown, results_json, write_json_atomically
from autograder.grading.run import GradeResult, Submitted, grade
from autograder.layout import CoursePaths
from autograder.pipeline.week_info import read_week_info
from autograder.workflow.collect import Collected, read_collected
from autograder.grading.score import WeekScore
from autograder.workflow.late import apply_late_policy, late_penalty, late_score
from autograder.workflow.settings import WorkflowError, WorkflowSettings


@dataclass
class Autograded:
    student: str
    result: GradeResult
    score: WeekScore    # the week's one score: after the late policy, written answers pending or graded
    late_note: str
    results_path: Path


def autograde_week(course: Course, root: Path, week_id: str, settings: WorkflowSettings,
                   students: list[str] | None = None, jobs: int = 1, sandbox: str | None = None,
                   on_progress: Callable[[str, float, float], None] | None = None) -> list[Autograded]:
    """Grade, record each submission's part scores in the gradebook, then write each student's
    results.json and feedback.md with the score the gradebook now holds (manual grades of
    written answers included, so a regrade keeps them)."""
    week = course.week(week_id)
    collected = [c for c in read_collected(root, week) if not students or c.student in students]
    if not collected:
        raise WorkflowError(f"no collected submissions of {week_id}" +
                            (f" for {', '.join(students)}" if students else "") + ": run `course collect` first")
    batches = _batches(collected, jobs)
    def grade_batch(index: int, batch: list[Collected]) -> dict[str, GradeResult]:
        return grade(course, root, week_id, [Submitted(c.student, c.notebook) for c in batch],
                     sandbox=sandbox, on_progress=on_progress, gpu_index=index)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        graded = pool.map(grade_batch, range(len(batches)), batches)
        results = {name: result for batch in graded for name, result in batch.items()}
    info = read_week_info(CoursePaths(Path(root)).release(week_id))
    problem = _record(root, week_id, settings, collected, results, info)
    if problem is None:
        _keep_for_formgrader(root, week_id, settings, collected, info)
    done = [_write(course, root, week_id, c, results[c.student], settings, info, recorded=problem is None)
            for c in collected]
    if problem:
        raise WorkflowError(problem)
    return done


def _record(root: Path, week_id: str, settings: WorkflowSettings, collected: list[Collected],
            results: dict[str, GradeResult], info: dict) -> str | None:
    """One score per part into nbgrader's gradebook, where formgrader and its exports see them;
    what went wrong, if anything."""
    from autograder.gradebook.store import GradebookError, record_autograde
    from autograder.workflow.nbconfig import gradebook_url

    for item in collected:
        def penalty(score: float, max_score: float, late_by=item.late_by) -> float:
            return late_penalty(score, max_score, late_by, settings)

        try:
            record_autograde(gradebook_url(Path(root)), settings.course_id, week_id, item.student,
                             info["notebook"], results[item.student], info.get("parts", []),
                             timestamp=item.submitted_at, late_penalty=penalty)
        except GradebookError as exc:
            return (f"results are in .course-work/autograded, but the gradebook cannot take them: {exc}; "
                    f"release {week_id} with `course release` first")
    return None


def _keep_for_formgrader(root: Path, week_id: str, settings: WorkflowSettings, collected: list[Collected],
                         info: dict) -> None:
    """Each submitted notebook where formgrader looks for it, so that its written answers can be
    graded by hand there (formgrader lists a submission only once its autograded notebook exists)."""
    from autograder.workflow.feedback import write_graded_notebook
    from autograder.workflow.nbconfig import instructor_config

    config = instructor_config(Path(root).resolve(), settings)
    for item in collected:
        write_graded_notebook(Path(root).resolve(), week_id, item.student, info, config)


def _batches(collected: list[Collected], jobs: int) -> list[list[Collected]]:
    """`jobs` batches of about equal size: the trusted imports are paid once per batch."""
    size = max(1, math.ceil(len(collected) / max(1, jobs)))
    return [collected[i:i + size] for i in range(0, len(collected), size)]


def _write(course: Course, root: Path, week_id: str, item: Collected, result: GradeResult,
           settings: WorkflowSettings, info: dict, recorded: bool) -> Autograded:
    from autograder.gradebook.store import recorded_score
    from autograder.workflow.nbconfig import gradebook_url

    week = course.week(week_id)
    written = float(info.get("written", {}).get("points", 0.0))
    score = recorded and recorded_score(gradebook_url(Path(root)), settings.course_id, week_id, item.student)
    if not score:
        score = late_score(result.earned, result.possible, written, week.points, item.late_by, settings)
    note = apply_late_policy(score.raw, week.points, item.late_by, settings)[1]
    data = results_json(result, score)
    data["extra_data"].update({"late_by_seconds": item.late_by.total_seconds(), "late_policy": note,
                               "submitted_at": item.submitted_at.isoformat()})
    data["output"] = (data["output"] + "\n" if data["output"] else "") + note
    folder = CoursePaths(Path(root)).work("autograded") / item.student / week_id
    write_json_atomically(data, folder / "results.json")
    (folder / "feedback.md").write_text(feedback_markdown(result, week.title, score) + f"\n{note}\n")
    return Autograded(item.student, result, score, note, folder / "results.json")


def failure_rates(root: Path) -> dict[str, dict[str, float]]:
    """week -> {test: share of graded submissions that failed it}, from the autograded results."""
    counts: dict[str, dict[str, list[int]]] = {}
    for path in sorted(CoursePaths(Path(root)).work("autograded").glob("*/*/results.json")):
        week = path.parent.name
        for test in json.loads(path.read_text()).get("tests", []):
            failed, seen = counts.setdefault(week, {}).setdefault(test["name"], [0, 0])
            counts[week][test["name"]] = [failed + (test["status"] != "passed"), seen + 1]
    return {week: {name: failed / seen for name, (failed, seen) in tests.items()}
            for week, tests in counts.items()}
