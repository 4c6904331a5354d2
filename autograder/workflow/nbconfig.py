"""nbgrader configurations: the instructor's course folder and a student's work folder.

The instructor's folders are the course's layout (autograder.layout). nbgrader joins
`root / step / student / assignment`, so a step may itself be a relative path; that is how the
working folders live under `.course-work/`.

The course folder also holds an `nbgrader_config.py` (`write_nbgrader_config`), so that nbgrader's
own commands and formgrader work there with no flags. It holds no settings of its own: it reads
course.yaml each time nbgrader starts (`configure`), so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

from autograder.layout import COURSE_FILE, COURSE_WORK, RELEASE_DIRECTORY, SOURCE_DIRECTORY, CoursePaths
from autograder.workflow.settings import WorkflowSettings


def gradebook_url(root: Path) -> str:
    return f"sqlite:///{CoursePaths(Path(root).resolve()).gradebook_db}"


def submitted_folder(root: Path) -> Path:
    return CoursePaths(Path(root).resolve()).work("submitted")


def instructor_config(root: Path, settings: WorkflowSettings) -> Config:
    """The configuration nbgrader would read from the instructor's nbgrader_config.py."""
    root = Path(root).resolve()
    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.course_id = settings.course_id
    config.CourseDirectory.source_directory = SOURCE_DIRECTORY
    config.CourseDirectory.release_directory = RELEASE_DIRECTORY
    for step in ("submitted", "autograded", "feedback", "solution"):
        setattr(config.CourseDirectory, f"{step}_directory", f"{COURSE_WORK}/{step}")
    config.CourseDirectory.db_url = gradebook_url(root)
    config.Exchange.root = str(settings.exchange)
    # Student ids are course ids (alice), not the OS accounts that own the files in
    # inbound/, so nbgrader's owner check would warn about every submission.
    config.ExchangeCollect.check_owner = False
    config.ExportApp.plugin_class = "autograder.gradebook.export.CourseCsvExport"
    return config


NBGRADER_CONFIG = "nbgrader_config.py"
_CONFIG_FILE = f'''"""nbgrader's settings for this course, read from {COURSE_FILE} each time nbgrader starts.

Written by `course release`; nothing to edit here: change {COURSE_FILE} instead.
"""
import os

from autograder.workflow.nbconfig import configure

configure(c, os.path.join(os.path.dirname(os.path.abspath(__file__)), "{COURSE_FILE}"))
'''


def write_nbgrader_config(root: Path) -> Path:
    """The course folder's nbgrader_config.py (rewritten only when it differs)."""
    path = Path(root) / NBGRADER_CONFIG
    if not path.is_file() or path.read_text() != _CONFIG_FILE:
        path.write_text(_CONFIG_FILE)
    return path


def configure(c: Config, course_file: str) -> None:
    """What the course folder's nbgrader_config.py does: the instructor's settings from course.yaml."""
    from autograder.config import load_course
    from autograder.workflow.settings import settings_from_course

    course = load_course(Path(course_file))
    c.merge(instructor_config(Path(course_file).parent, settings_from_course(course)))


def student_config(student: str, workdir: Path, settings: WorkflowSettings,
                   cache: Path | None = None) -> Config:
    """A student's configuration: `workdir` is where fetched weeks land (`workdir/<week>/`).

    `CourseDirectory.student_id` is what nbgrader's submit writes into the inbound name
    instead of the OS user; `cache` is nbgrader's local copy of submissions (default
    `$JUPYTER_DATA_DIR/nbgrader_cache`).
    """
    config = Config()
    config.CourseDirectory.root = str(Path(workdir).resolve())
    config.CourseDirectory.course_id = settings.course_id
    config.CourseDirectory.student_id = student
    config.Exchange.root = str(settings.exchange)
    config.Exchange.assignment_dir = str(Path(workdir).resolve())
    config.ExchangeSubmit.add_random_string = True  # an inbound name no classmate can guess
    if cache is not None:
        config.Exchange.cache = str(Path(cache).resolve())
    return config
