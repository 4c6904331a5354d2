"""Grading one or a few submissions of the toy week: scores, results JSON, feedback, parity."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest

from autograder.config import load_course
from autograder.grading.report import feedback_markdown, results_json
from autograder.grading.score import score_from_tests
from autograder.grading.run import Submitted, grade, grade_in_process
from autograder.selfcheck import run_public_tests
from tests.conftest import HONEST_SOFTMAX, TOY, write_module

SCORE = score_from_tests(0, 0, 0, 100)  # where the report's score is not what a test looks at


def score_of(result, written: float = 0.0, points: float = 100.0):
    return score_from_tests(result.earned, result.possible, written, points)


def _notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    nbformat.write(nb, path)
    return path


def test_broken_notebooks_score_zero_with_a_reason(toy, tmp_path):
    course, root = toy
    not_json = tmp_path / "not_json.ipynb"
    not_json.write_text("{ this is not json")
    syntax = _notebook(tmp_path / "syntax.ipynb", nbformat.v4.new_code_cell("def softmax(x:\n    pass"))
    empty = tmp_path / "empty.ipynb"
    empty.write_text("")
    honest = _notebook(tmp_path / "honest.ipynb",
                       nbformat.v4.new_code_cell("%matplotlib inline\n" + HONEST_SOFTMAX),
                       nbformat.v4.new_code_cell("while True: pass", metadata={"tags": ["demo"]}))
    results = grade(course, root, "m1w01", [Submitted(p.stem, p) for p in (not_json, syntax, empty, honest)])
    assert "not valid JSON" in results["not_json"].error
    assert "syntax error" in results["syntax"].error and "cell 1" in results["syntax"].error
    assert "empty" in results["empty"].error
    for name in ("not_json", "syntax", "empty"):
        assert results[name].earned == 0
        assert results_json(results[name], score_of(results[name]))["score"] == 0
    assert results["honest"].earned == results["honest"].possible == 5


def test_results_follow_gradescopes_schema(toy, tmp_path):
    course, root = toy
    half = HONEST_SOFTMAX.replace("x - x.max(-1, keepdim=True).values", "x")  # unstable: loses one test
    results = grade(course, root, "m1w01", [Submitted("half", write_module(tmp_path, "half", half))])
    data = results_json(results["half"], score_of(results["half"], written=10, points=50))
    assert data["score"] == pytest.approx(32.0), "4 of 5 hidden points, of the 40 left after the written answers"
    assert data["extra_data"]["hidden_points_earned"] == 4 and data["extra_data"]["pending_manual_points"] == 10
    assert "10 points of written answers not graded yet" in data["output"]
    assert {t["status"] for t in data["tests"]} == {"passed", "failed"}
    for test in data["tests"]:
        assert set(test) >= {"name", "score", "max_score", "status", "visibility", "output", "tags"}
        assert test["tags"][0].startswith("kind:")
        assert test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
    json.dumps(data)


def test_feedback_explains_without_showing_test_source(toy, tmp_path):
    course, root = toy
    wrong = HONEST_SOFTMAX.replace("e.sum(-1, keepdim=True)", "e.sum(0, keepdim=True)")
    results = grade(course, root, "m1w01", [Submitted("wrong", write_module(tmp_path, "wrong", wrong))])
    report = feedback_markdown(results["wrong"], "Toy softmax", score_of(results["wrong"]))
    assert "**failed**" in report and "softmax equals torch.softmax on random logits" in report
    assert "largest error" in report
    hidden_source = (root / "assignments" / "m1w01" / "hidden" / "test_h.py").read_text()
    for line in hidden_source.splitlines():
        if len(line.strip()) > 25:
            assert line.strip() not in report, f"feedback shows the hidden test's source: {line.strip()}"


def test_reference_passes_identically_in_both_transports(toy, tmp_path):
    """The same suite, in-process and over the sandboxed wire, gives the same verdicts."""
    course, root = toy
    source = write_module(tmp_path, "ref", HONEST_SOFTMAX)
    broken = write_module(tmp_path, "broken", HONEST_SOFTMAX.replace("x.max(-1", "x.min(-1"))
    remote = grade(course, root, "m1w01", [Submitted("ref", source), Submitted("broken", broken)])

    in_process = grade_in_process(course, root, "m1w01", [Submitted("ref", source), Submitted("broken", broken)])
    local = {(name, o.name): o.passed for name, outcomes in in_process.items() for o in outcomes}
    over_wire = {(name, t.name): t.passed for name, r in remote.items() for t in r.tests}
    assert local == over_wire
    assert all(v for (name, _), v in local.items() if name == "ref")


def test_public_self_check_reports_hidden_suite_size(toy, tmp_path):
    course, root = toy
    from autograder.pipeline.build import build_week

    release = build_week(course, "m1w01", root)
    namespace: dict = {}
    exec(HONEST_SOFTMAX, namespace)
    report = run_public_tests("m1w01", namespace, release / "public_tests")
    assert report.passed == len(report.outcomes) == 1
    assert "4 more tests worth 5 points" in report.text()
    assert "not a full score" in report.text()
    empty = run_public_tests("m1w01", {}, release / "public_tests")
    assert empty.passed == 0 and "does not define `softmax`" in empty.text()


def test_two_suites_in_one_process_each_run_their_own_tests(tmp_path):
    """Two weeks' suites share module names (`test_h`, `conftest`): a second in-process run
    (or a second `check()` in the same kernel) must not find the first week's module."""
    roots = []
    for name in ("first", "second"):
        root = tmp_path / name
        shutil.copytree(TOY, root)
        roots.append(root)
    extra = "\n\ndef test_softmax_sums_to_one(sub):\n    assert abs(float(sub.softmax(torch.randn(5)).sum()) - 1) < 1e-6\n"
    hidden = roots[1] / "assignments" / "m1w01" / "hidden" / "test_h.py"
    hidden.write_text(hidden.read_text() + extra)
    key = write_module(tmp_path, "key", HONEST_SOFTMAX)
    counts = [len(grade_in_process(load_course(r / "course.yaml"), r, "m1w01", [Submitted("key", key)])["key"])
              for r in roots]
    assert counts == [4, 5]


def test_feedback_keeps_what_a_submission_wrote_inside_its_code_block():
    from autograder.grading.run import GradeResult
    from autograder.testing.plugin import TestOutcome

    hostile = "boom\n```\n<h1>owned</h1><script>alert(1)</script>\n````\n# heading"
    failed = TestOutcome("s", "test_x", "softmax is right", 1.0, "value", "visible", False, message=hostile)
    report = feedback_markdown(GradeResult("s", "m1w01", tests=[failed], notes=["line 3: ```<img onerror=x>"]),
                               "Toy", SCORE)
    fence = "`````"  # longer than the longest run of backticks in the message (four)
    assert f"{fence}\n{hostile}\n{fence}" in report
    outside = report.replace(f"{fence}\n{hostile}\n{fence}", "")
    assert "<h1>" not in outside and "<script>" not in outside and "# heading" not in outside
    assert "````\nline 3: ```<img onerror=x>\n````" in report
    broken = feedback_markdown(GradeResult("s", "m1w01", error="SyntaxError: ```\n<b>x</b>"), "Toy", SCORE)
    assert "````\nSyntaxError: ```\n<b>x</b>\n````" in broken


def test_the_trusted_process_runs_under_a_memory_limit(tmp_path):
    """Whatever arrives from workers, the trusted pytest process cannot take the machine's memory."""
    import sys

    from autograder.grading.run import _run_reporting_progress

    probe = "import resource; print('DATA LIMIT', resource.getrlimit(resource.RLIMIT_DATA)[0])"
    log = _run_reporting_progress([sys.executable, "-c", probe], {}, tmp_path, 60, tmp_path / "progress.jsonl",
                                  None, memory_bytes=3 << 30)
    assert f"DATA LIMIT {3 << 30}" in log


NOTEBOOK_WITH_A_BUG = [
    "import torch",
    "def helper(x):\n    scale = 1.0\n    return x.max(dim=7)",
    "def softmax(x):\n    e = torch.exp(x - helper(x).values)\n    return e / e.sum(-1, keepdim=True)",
]


def test_messages_name_the_notebook_cell_not_a_module_line(toy, tmp_path):
    """A student never sees the generated module: errors point at cell number and first line."""
    course, root = toy
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# my work")]
                                  + [nbformat.v4.new_code_cell(code) for code in NOTEBOOK_WITH_A_BUG])
    path = tmp_path / "mine.ipynb"
    nbformat.write(nb, path)
    result = grade(course, root, "m1w01", [Submitted("mine", path)])["mine"]
    message = next(t.message for t in result.tests if t.name == "test_softmax_values")
    assert "cell 3 (def helper(x):), line 3" in message and "cell 4 (def softmax(x):), line 2" in message, message
    assert "submission.py" not in message


def test_reports_show_each_case_once_and_a_load_failure_once():
    from autograder.grading.run import GradeResult
    from autograder.testing.plugin import TestOutcome

    cases = [TestOutcome("s", f"test_attention_values[{n}]", "attention equals sdpa", 1.0, "value", "visible",
                         n == 2, message="" if n == 2 else "off by 0.1") for n in (2, 3)]
    report = feedback_markdown(GradeResult("s", "m1w01", tests=cases), "Toy", SCORE)
    assert "attention equals sdpa (case 2)" in report and "attention equals sdpa (case 3)" in report
    load = "running your notebook's code failed: your code raised NameError: name 'x' is not defined"
    broken = [TestOutcome("s", f"test_{n}", f"test {n}", 1.0, "value", "visible", False, message=load)
              for n in range(5)]
    report = feedback_markdown(GradeResult("s", "m1w01", tests=broken), "Toy", SCORE)
    assert report.count(load) == 1 and "Every test failed for the same reason" in report


def test_self_check_report_names_each_case():
    """Parametrized public tests share a description; the report tells their cases apart."""
    from autograder.selfcheck import CheckReport
    from autograder.testing.plugin import TestOutcome

    outcomes = [TestOutcome("s", f"test_x[{case}]", "x is right", 1.0, "value", "visible", True) for case in "ab"]
    text = CheckReport("m1w01", None, outcomes).text()
    assert "PASS  x is right (case a)" in text and "PASS  x is right (case b)" in text
