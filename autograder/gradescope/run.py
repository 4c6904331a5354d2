"""What Gradescope's `run_autograder` runs: grade the submitted notebook, write results.json.

The trusted pytest process reads the suites; the student's code runs in the sandboxed worker,
as `nobody` (Gradescope runs this as root). results.json is always written: a submission
that cannot be graded gets a score of 0 and the reason, and so does a grader that fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from autograder.config import load_course
from autograder.grading.report import write_json_atomically
from autograder.grading.run import Batch, GradeResult, Submitted, grade_batches
from autograder.gradescope.results import gradescope_results
from autograder.layout import COURSE_FILE, CoursePaths
from autograder.pipeline.week_info import read_week_info
from autograder.workflow.late import apply_late_policy, late_score
from autograder.workflow.settings import settings_from_course

BUNDLE_INFO = "gradescope.json"  # in the bundle's root: which week it grades
HIDDEN, PUBLIC = "submission", "public:submission"


def grade_submission(source: Path, submission_dir: Path, metadata: Path | None) -> dict:
    course = load_course(source / COURSE_FILE)
    bundle = json.loads((source / BUNDLE_INFO).read_text())
    week = course.week(bundle["week"])
    info = read_week_info(CoursePaths(source).release(week.id))
    written = float(info.get("written", {}).get("points", 0.0))
    notebook, problem = find_notebook(submission_dir, info.get("notebook", f"{week.slug}.ipynb"))
    if notebook is None:
        hidden, public = GradeResult(HIDDEN, week.id, error=problem), None
    else:
        public_tests = bundle.get("public_tests") or []
        batches = [Batch(week.id, [Submitted(HIDDEN, notebook)])]
        if public_tests:
            batches.append(Batch(week.id, [Submitted(PUBLIC, notebook, public_tests)], suite="public"))
        results = grade_batches(course, source, batches)
        hidden, public = results[(week.id, HIDDEN)], results.get((week.id, PUBLIC))
    late_by, when = lateness(metadata)
    settings = settings_from_course(course)
    score = late_score(hidden.earned, hidden.possible, written, week.points, late_by, settings)
    note = when + " " + apply_late_policy(score.tests, week.points, late_by, settings)[1]
    return gradescope_results(hidden, public, score, info.get("parts", []), course.gradescope, note.strip())


def find_notebook(folder: Path, expected: str) -> tuple[Path | None, str]:
    """The submitted notebook: the released notebook's name anywhere in the upload, else the
    only notebook there is."""
    found = sorted(p for p in Path(folder).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    named = [p for p in found if p.name == expected]
    if named:
        return named[0], ""
    if len(found) == 1:
        return found[0], ""
    if not found:
        return None, f"no notebook was submitted: upload {expected}"
    return None, (f"{len(found)} notebooks were submitted ({', '.join(p.name for p in found[:5])}) and none is "
                  f"named {expected}: upload only {expected}")


def lateness(metadata: Path | None) -> tuple[dt.timedelta, str]:
    """How late the submission is, from Gradescope's submission_metadata.json (created_at
    against the assignment's due_date), with a sentence saying so."""
    try:
        data = json.loads(Path(metadata).read_text()) if metadata else {}
        created = dt.datetime.fromisoformat(data["created_at"])
        due = dt.datetime.fromisoformat(data["assignment"]["due_date"])
    except (OSError, ValueError, KeyError, TypeError):
        return dt.timedelta(0), "(No submission time and due date were found; counted as on time.)"
    return max(dt.timedelta(0), created - due), ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.gradescope.run",
                                     description="Grade a Gradescope submission; write results.json.")
    parser.add_argument("--source", type=Path, default=Path("/autograder/source"))
    parser.add_argument("--submission", type=Path, default=Path("/autograder/submission"))
    parser.add_argument("--metadata", type=Path, default=Path("/autograder/submission_metadata.json"))
    parser.add_argument("--results", type=Path, default=Path("/autograder/results/results.json"))
    args = parser.parse_args(argv)
    try:
        results = grade_submission(args.source, args.submission, args.metadata)
    except Exception as exc:  # the grader failed, not the student: say so, score 0, and let staff regrade
        results = {"score": 0.0, "output": f"The autograder itself failed ({type(exc).__name__}: {exc}); "
                   "this is not your fault: ask the course staff to regrade.", "output_format": "text",
                   "visibility": "visible", "tests": []}
        write_json_atomically(results, args.results)
        raise
    write_json_atomically(results, args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
