"""The course's folder layout, in one place.

    course.yaml                      the course (autograder.config)
    reference/<week>_<slug>.py       each week's reference, the source of its notebook
    reference/given/<name>.py        code later weeks give ready-made (autograder.pipeline.render)
    assignments/<week>/public/       public tests, released
    assignments/<week>/hidden/       hidden tests, never released
    assignments/<week>/mutants/      known-bug patches of the answer key
    release/<week>/                  what students get: notebook, public_tests/, week.json
    build/source/<week>/             nbgrader's source folder (the answer key)
    gradebook/gradebook.db           nbgrader's gradebook
    .course-work/<step>/<student>/<week>/   submitted, autograded, feedback, solution (not committed)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COURSE_FILE = "course.yaml"
COURSE_ENV = "COURSE_YAML"  # the course file, for `course` run outside the course's folder
COURSE_WORK = ".course-work"
SOURCE_DIRECTORY = "build/source"
RELEASE_DIRECTORY = "release"
PUBLIC_TESTS_DIR = "public_tests"  # inside a release folder


@dataclass(frozen=True)
class CoursePaths:
    root: Path

    @property
    def course_file(self) -> Path:
        return self.root / COURSE_FILE

    @property
    def reference(self) -> Path:
        return self.root / "reference"

    def given(self, name: str) -> Path:
        return self.reference / "given" / f"{name}.py"

    def assignment(self, week: str) -> Path:
        return self.root / "assignments" / week

    def suite(self, week: str, suite: str) -> Path:
        """`suite` is "public" or "hidden"."""
        return self.assignment(week) / suite

    def source(self, week: str) -> Path:
        """nbgrader's source folder of a released week (the answer key), kept for formgrader."""
        return self.root / SOURCE_DIRECTORY / week

    def mutants(self, week: str) -> Path:
        return self.assignment(week) / "mutants"

    @property
    def release_root(self) -> Path:
        return self.root / RELEASE_DIRECTORY

    def release(self, week: str) -> Path:
        return self.release_root / week

    def released_notebook(self, week: str, slug: str) -> Path:
        return self.release(week) / f"{slug}.ipynb"

    @property
    def gradebook_db(self) -> Path:
        return self.root / "gradebook" / "gradebook.db"

    def work(self, step: str) -> Path:
        """`.course-work/<step>`: submitted, autograded, feedback or solution."""
        return self.root / COURSE_WORK / step
