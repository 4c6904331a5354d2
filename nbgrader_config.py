"""nbgrader's settings for this course, read from course.yaml each time nbgrader starts.

Written by `course release`; nothing to edit here: change course.yaml instead.
"""
import os

from autograder.workflow.nbconfig import configure

configure(c, os.path.join(os.path.dirname(os.path.abspath(__file__)), "course.yaml"))
