"""Timings under load: a test that ran out of wall-clock time while its worker got little CPU
(a busy machine, not slow code) is tried once more on a fresh worker, and the results say so;
code that burns the CPU itself is charged at once."""

from __future__ import annotations

import re

import pytest

from autograder.config import load_course
from autograder.grading.run import Submitted, grade
from autograder.testing.remote import STARVED_CPU_SHARE
from tests.conftest import write_module

SLEEPS = '''
import time, torch

def softmax(x):
    time.sleep(30)  # waits without using the CPU, as a starved worker does
    return torch.softmax(x, -1)
'''

SPINS = '''
import torch

def softmax(x):
    while True:
        pass
'''


@pytest.mark.slow
def test_a_starved_timeout_is_retried_once_and_a_busy_loop_is_not(toy, tmp_path):
    _, root = toy
    settings = root / "course.yaml"
    settings.write_text(settings.read_text().replace("test_timeout_s: 8", "test_timeout_s: 3"))
    course = load_course(settings)
    subs = [Submitted(name, write_module(tmp_path, name, source), only=["test_softmax_shape"])
            for name, source in (("sleeps", SLEEPS), ("spins", SPINS))]
    results = grade(course, root, "m1w01", subs)

    [slept] = results["sleeps"].tests
    assert not slept.passed and "did not finish within this test's time limit" in slept.message
    assert slept.note.startswith("retried once on a fresh worker"), slept.note
    assert slept.duration >= 2 * course.grading.test_timeout_s, "it was given a second full try"

    [spun] = results["spins"].tests
    assert not spun.passed and "did not finish within" in spun.message
    if spun.note:  # a machine so busy that even the busy loop got under half a core: the rule still held
        cpu, wall = map(float, re.search(r"got ([\d.]+) s of CPU in ([\d.]+) s", spun.note).groups())
        assert cpu - 0.05 < STARVED_CPU_SHARE * (wall + 0.05), spun.note  # the note rounds to 0.1 s
    else:
        assert spun.duration < 2 * course.grading.test_timeout_s, "a worker that used its CPU time: no retry"


@pytest.mark.slow
def test_a_zygote_still_booting_is_not_charged_to_the_test(tmp_path):
    """Booting a worker (torch and its optimizers, seconds) is our time: a test whose deadline
    falls inside the boot still gets its whole limit once the worker is up."""
    import time

    from autograder.sandbox.spec import WorkerSpec
    from autograder.testing.remote import RemoteSubmission, WorkerClient

    client = WorkerClient(WorkerSpec(module_path=write_module(tmp_path, "x", "answer = 42\n")))
    try:
        client.start()  # booting begins: it imports torch, which takes longer than the limit below
        client.deadline = time.monotonic() + 0.5
        assert RemoteSubmission(client).answer == 42
    finally:
        client.kill()
