"""What week test suites import: comparisons with helpful messages, the check kinds, and
trusted modules with random, non-trivial weights."""

from autograder.testing.compare import assert_close, assert_shape
from autograder.testing.parameters import randomize
from autograder.testing.plugin import KINDS

__all__ = ["assert_close", "assert_shape", "randomize", "KINDS"]
