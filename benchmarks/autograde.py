"""How fast does a week autograde? A benchmark, not a test: it prints figures, asserts nothing.

Grades N copies of a week's answer key and N of its released notebook, with --jobs 1 and
--jobs 2, through the same code as `course autograde` (sandboxed workers), and reports:
- wall time and submissions per minute;
- per-submission overhead: core-seconds of grading per submission (wall x jobs / N) minus
  the hidden suite's own time in-process (no sandbox, no wire, imports already paid) per
  submission, measured on one key and one release. The overhead thus includes the trusted
  side's imports, paid once per batch, and the sandboxed workers.

    uv run python benchmarks/autograde.py --copies 4 --week m1w01 [--backend docker]

With --backend docker, the difference from the local figures is the containers' cost.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.config import load_course
from autograder.grading.run import Submitted, grade, grade_in_process
from autograder.pipeline.build import source_notebook

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--week", default="m1w01")
    parser.add_argument("--copies", type=int, default=4, help="copies of the key and of the release (N)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backend", choices=["local", "docker"], default="local",
                        help="docker: a container per submission (needs DOCKER_HOST and the grader image)")
    args = parser.parse_args()
    course = load_course(ROOT / "course.yaml")
    week = course.week(args.week)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        key = folder / "key.ipynb"
        nbformat.write(source_notebook(course, week, ROOT), key)
        release = ROOT / "release" / week.id / f"{week.slug}.ipynb"
        submissions = []
        for i in range(args.copies):
            shutil.copy(key, folder / f"key{i}.ipynb")
            shutil.copy(release, folder / f"release{i}.ipynb")
            submissions += [Submitted(f"key{i}", folder / f"key{i}.ipynb"),
                            Submitted(f"release{i}", folder / f"release{i}.ipynb")]

        grade_in_process(course, ROOT, week.id, [Submitted("release", release)])  # pays the imports
        started = time.monotonic()
        grade_in_process(course, ROOT, week.id, [Submitted("key", key), Submitted("release", release)])
        in_process = (time.monotonic() - started) / 2
        print(f"hidden suite in-process (imports already paid), key and release: "
              f"{in_process:.1f} s per submission")

        for jobs in args.jobs:
            started = time.monotonic()
            size = -(-len(submissions) // jobs)
            batches = [submissions[i:i + size] for i in range(0, len(submissions), size)]
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(jobs) as pool:
                sandbox = "docker" if args.backend == "docker" else None
                results = [r for batch in pool.map(lambda b: grade(course, ROOT, week.id, b, sandbox=sandbox), batches)
                           for r in batch.values()]
            wall = time.monotonic() - started
            n = len(results)
            full = sum(r.earned == r.possible for r in results)
            print(f"{args.backend} --jobs {jobs}: {n} submissions in {wall:.1f} s = {60 * n / wall:.1f} per minute; "
                  f"per submission {wall / n:.1f} s wall, overhead over in-process "
                  f"{wall * jobs / n - in_process:.1f} s of a core (keys at full marks: {full}/{args.copies})")


if __name__ == "__main__":
    main()
