"""Week m1w01's forbidden APIs cost the parts that rely on them, and no more.
(What every ready week must prove is in test_weeks.py.)"""

from __future__ import annotations

import re

import pytest

from autograder.grading.run import Submitted, grade
from autograder.grading.verify import answer_key_source

WEEK = "m1w01"
ATTENTION_BODY = re.compile(r"(def attention\(q, k, v\):.*?### BEGIN SOLUTION\n)(.*?)(\s*### END SOLUTION)", re.S)


def _with_attention(source: str, body: str) -> str:
    replaced, count = ATTENTION_BODY.subn(lambda m: m.group(1) + body + m.group(3), source)
    assert count == 1, "the reference's attention function has changed shape"
    return replaced


@pytest.mark.slow
def test_forbidden_api_costs_the_parts_that_rely_on_it(repo_course, tmp_path):
    course, root = repo_course
    key = answer_key_source(course, root, WEEK)
    plain = _with_attention(key, "    return torch.nn.functional.scaled_dot_product_attention(q, k, v)\n")
    hidden = _with_attention(key, '    fused = getattr(torch.nn.functional, "scaled_dot_" + "product_attention")\n'
                                  "    return fused(q, k, v)\n")
    unused_import = "import timm\n" + key
    subs = []
    for name, source in (("plain", plain), ("obfuscated", hidden), ("unused_import", unused_import)):
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        subs.append(Submitted(name, path, skip_kinds=("convergence",)))  # the parts, not the training
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
