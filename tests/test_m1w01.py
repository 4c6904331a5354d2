"""Week m1w01 end to end: the suite proves itself, and forbidden APIs cost what relies on them."""

from __future__ import annotations

import re

import pytest

from autograder.grading.run import Submitted, grade, grade_in_process
from autograder.grading.verify import verify_week
from autograder.pipeline.build import source_notebook, stale_files
from autograder.submission.notebook import strip_magics
from autograder.testing.plugin import KINDS

WEEK = "m1w01"
ATTENTION_BODY = re.compile(r"(def attention\(q, k, v\):.*?### BEGIN SOLUTION\n)(.*?)(\s*### END SOLUTION)", re.S)


def _answer_key_source(course, root) -> str:
    nb = source_notebook(course.week(WEEK), root)
    return "\n\n".join(strip_magics(c.source) for c in nb.cells
                       if c.cell_type == "code" and "demo" not in c.metadata.get("tags", []))


def _with_attention(source: str, body: str) -> str:
    replaced, count = ATTENTION_BODY.subn(lambda m: m.group(1) + body + m.group(3), source)
    assert count == 1, "the reference's attention function has changed shape"
    return replaced


@pytest.mark.slow
def test_week_verifies(repo_course):
    """Answer key full marks, release zero, every mutant loses points, all four kinds present."""
    course, root = repo_course
    verdict = verify_week(course, root, WEEK)
    assert verdict.ok, "\n".join(verdict.problems)
    assert sum(row[0].startswith("mutant:") for row in verdict.rows) >= 6


@pytest.mark.slow
def test_answer_key_passes_identically_in_both_transports(repo_course, tmp_path):
    course, root = repo_course
    key = tmp_path / "key.py"
    key.write_text(_answer_key_source(course, root))
    in_process = grade_in_process(course, root, WEEK, [Submitted("key", key)])["key"]
    over_wire = grade(course, root, WEEK, [Submitted("key", key)])["key"].tests
    assert [(o.name, o.passed) for o in in_process] == [(o.name, o.passed) for o in over_wire]
    assert in_process and all(o.passed for o in in_process)


def test_release_is_fresh(repo_course):
    course, root = repo_course
    assert stale_files(course, WEEK, root) == [], "run `course build m1w01` and commit release/"


@pytest.mark.slow
def test_forbidden_api_costs_the_parts_that_rely_on_it(repo_course, tmp_path):
    course, root = repo_course
    key = _answer_key_source(course, root)
    plain = _with_attention(key, "    return torch.nn.functional.scaled_dot_product_attention(q, k, v)\n")
    hidden = _with_attention(key, '    fused = getattr(torch.nn.functional, "scaled_dot_" + "product_attention")\n'
                                  "    return fused(q, k, v)\n")
    unused_import = "import timm\n" + key
    subs = []
    for name, source in (("plain", plain), ("obfuscated", hidden), ("unused_import", unused_import)):
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        subs.append(Submitted(name, path))
    results = grade(course, root, WEEK, subs)

    plain_result = results["plain"]
    assert 0 < plain_result.earned < plain_result.possible, "parts without attention keep their points"
    assert any("scaled_dot_product_attention" in n for n in plain_result.notes)
    lost = [t for t in plain_result.tests if not t.passed]
    unexplained = [(t.name, t.message) for t in lost if "allow" not in t.message]
    assert lost and not unexplained, unexplained
    assert any(t.passed and "patch" in t.name for t in plain_result.tests)

    obfuscated = results["obfuscated"]
    assert 0 < obfuscated.earned < obfuscated.possible, "the runtime guard catches what reading misses"
    assert any("not allowed" in t.message for t in obfuscated.tests if not t.passed), [t.message for t in obfuscated.tests if not t.passed][:3]

    unused = results["unused_import"]
    assert unused.earned == unused.possible, "an unused import costs nothing"
    assert any("timm" in n for n in unused.notes), "but it is reported"


def test_suite_has_every_kind_of_check():
    import ast

    from tests.conftest import REPO

    kinds = set()
    for path in (REPO / "assignments" / WEEK / "hidden").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "kind" and node.args:
                kinds.add(node.args[0].value)
    assert kinds == set(KINDS)
