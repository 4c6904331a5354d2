"""What does the test suite cost per ready week, and what will it cost with all 29? A benchmark,
not a test: it prints figures, asserts nothing. Run it with nothing else on the machine.

The suite's cost has two parts. The platform tests (everything but tests/test_weeks.py) do not
grow with the number of weeks. The week tests do: `course verify` of every ready week in one
trusted process (a fixed start-up, paid once, plus each week's own tests) and `course build
--check` of each week. This script times

1. the platform tests: `pytest tests --ignore tests/test_weeks.py`;
2. `course verify` of all N ready weeks together, and of each week alone: from these, the
   fixed start-up F and each week's marginal cost m_w (alone: F + m_w; together: F + sum m_w,
   so F = (sum of the alone times - the together time) / (N - 1));
3. the release freshness check of each week (its fingerprint), in-process as the tests run it;

and prints the projection platform + F + 29 x mean(m_w + build check). The grader image,
which CI builds on a fresh machine, comes on top (`.ci/run` prints its time).

    uv run python benchmarks/suite_cost.py [--skip-platform]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from autograder.config import load_course

ROOT = Path(__file__).resolve().parent.parent
WEEKS_PLANNED = 29


def timed(command: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - started
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    print(f"  {seconds:7.1f} s  {' '.join(command[2:]) if command[1] == '-m' else ' '.join(command)}", flush=True)
    return seconds


def freshness_seconds(week: str) -> float:
    from autograder.pipeline.build import stale_files

    started = time.monotonic()
    stale_files(load_course(ROOT / "course.yaml"), week, ROOT)
    seconds = time.monotonic() - started
    print(f"  {seconds:7.1f} s  build --check {week}", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-platform", action="store_true", help="do not time the platform tests")
    args = parser.parse_args()
    weeks = [w.id for w in load_course(ROOT / "course.yaml").weeks if w.state == "ready"]
    course = [sys.executable, "-m", "autograder.cli"]
    print(f"ready weeks: {', '.join(weeks)}")

    platform = 0.0
    if not args.skip_platform:
        print("platform tests:")
        platform = timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                          "--ignore", "tests/test_weeks.py"])
    print("verification:")
    together = timed(course + ["verify", *weeks])
    alone = {w: timed(course + ["verify", w]) for w in weeks}
    fixed = (sum(alone.values()) - together) / (len(weeks) - 1) if len(weeks) > 1 else 0.0
    print("release freshness (in-process, as the test suite checks it):")
    checks = {w: freshness_seconds(w) for w in weeks}

    print(f"\n{'week':8} {'verify (marginal)':>18} {'build --check':>14} {'per week':>9}")
    per_week = {}
    for w in weeks:
        per_week[w] = alone[w] - fixed + checks[w]
        print(f"{w:8} {alone[w] - fixed:17.1f}s {checks[w]:13.1f}s {per_week[w]:8.1f}s")
    mean = sum(per_week.values()) / len(per_week)
    print(f"\nfixed start-up of the one verification run: {fixed:.1f} s")
    if platform:
        print(f"platform tests alone: {platform:.0f} s")
    print(f"mean cost per ready week: {mean:.1f} s")
    projection = platform + fixed + WEEKS_PLANNED * mean
    print(f"projection for {WEEKS_PLANNED} weeks: {projection / 60:.1f} min"
          + ("" if platform else " (without the platform tests)"))


if __name__ == "__main__":
    main()
