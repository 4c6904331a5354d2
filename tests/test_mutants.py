"""Mutants as patches of the answer key: loading, applying, and refusing stale ones."""

from __future__ import annotations

import pytest

from autograder.grading.mutants import Mutant, MutantError, load_mutants
from autograder.grading.verify import verify_week, write_variants


def test_apply_replaces_each_text_once():
    mutant = Mutant("m", "bug", ["test_x"], [("a = 1", "a = 2"), ("b = a", "b = -a")])
    assert mutant.apply("a = 1\nb = a\n") == "a = 2\nb = -a\n"


@pytest.mark.parametrize("source, word", [("c = 3\n", "is not in"), ("a = 1\na = 1\n", "appears 2 times")])
def test_a_replacement_that_no_longer_applies_is_an_error(source, word):
    with pytest.raises(MutantError, match=word):
        Mutant("m", "bug", ["test_x"], [("a = 1", "a = 2")]).apply(source)


@pytest.mark.parametrize("text, problem", [
    ("bug: x\ncatches: [t]\n", "exactly the keys"),
    ("bug: x\ncatches: []\nreplace: [{find: a, with: b}]\n", "catches must list"),
    ("bug: x\ncatches: [t]\nreplace: [{find: a}]\n", "replace must be"),
    ("bug: [unclosed\n", "not valid YAML"),
])
def test_malformed_mutant_files_are_reported(tmp_path, text, problem):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(MutantError, match=problem):
        load_mutants(tmp_path)


def test_write_variants_reports_stale_mutants(toy, tmp_path):
    course, root = toy
    stale = root / "assignments" / "m1w01" / "mutants" / "stale.yaml"
    stale.write_text("bug: gone\ncatches: [test_softmax_values]\nreplace:\n  - find: 'no such line'\n    with: x\n")
    key, variants, problems = write_variants(course, root, "m1w01", tmp_path)
    variants = [v for v in variants if v.name.startswith("mutant:")]
    assert [v.name for v in variants] == ["mutant:no_max_shift"]
    assert variants[0].only == ["test_softmax_large_logits"]
    assert "torch.exp(x)\n" in variants[0].path.read_text()
    assert len(problems) == 1 and "stale no longer applies" in problems[0]


@pytest.mark.slow
def test_toy_week_verification_names_every_problem(toy):
    course, root = toy
    from autograder.pipeline.build import build_week

    build_week(course, "m1w01", root)
    listed = root / "assignments" / "m1w01" / "mutants" / "no_max_shift.yaml"
    listed.write_text(listed.read_text().replace("catches: [test_softmax_large_logits]",
                                                 "catches: [test_softmax_large_logits, test_softmax_shape, test_nope]"))
    verdict = verify_week(course, root, "m1w01")
    rows = {row[0]: row for row in verdict.rows}
    assert rows["answer key"][2] == "full marks" and rows["release"][2] == "zero"
    assert rows["mutant:no_max_shift"][2].startswith("caught by test_softmax_large_logits")
    for kind in ("constant", "identity", "copy"):
        assert rows[f"null:softmax:{kind}"][2].startswith("earns nothing"), rows[f"null:softmax:{kind}"]
    assert rows["answer key"][3] == "passes all" and rows["mutant:no_max_shift"][3] == "passes"
    assert verdict.problems == [
        "only 1 usable mutants in assignments/m1w01/mutants (at least 6): write more plausible student bugs as mutants",
        "mutant:no_max_shift lists test_softmax_shape in catches, but it passes: update the list",
        "mutant:no_max_shift lists test_nope in catches, but no hidden test has that name",
        "the public tests catch 0 of 1 mutants (at least 1): add cheap public checks for the common bugs of each "
        "part, without revealing hidden cases; they miss no_max_shift"]


@pytest.mark.slow
def test_verify_reports_which_mutants_the_public_tests_catch(toy):
    """A public test that finds the bug shows in the report and lifts the public-share problem;
    one the answer key fails is a problem of its own."""
    course, root = toy
    from autograder.pipeline.build import build_week

    public = root / "assignments" / "m1w01" / "public" / "test_public.py"
    public.write_text(public.read_text() + '''
@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_softmax_large_logits_stay_finite(sub):
    """large logits"""
    assert torch.isfinite(sub.softmax(torch.tensor([[1000.0, 0.0]]))).all(), "subtract the row maximum"


@pytest.mark.points(1)
@pytest.mark.kind("value")
def test_softmax_is_wrong_on_purpose(sub):
    """nothing passes this"""
    assert sub.softmax(torch.zeros(1, 2))[0, 0] == 0.9, "the key fails this"
''')
    build_week(course, "m1w01", root)
    verdict = verify_week(course, root, "m1w01")
    rows = {row[0]: row for row in verdict.rows}
    assert rows["mutant:no_max_shift"][3] == "caught by test_softmax_large_logits_stay_finite"
    assert rows["answer key"][3] == "FAILS"
    assert not any("the public tests catch" in p for p in verdict.problems), verdict.problems
    assert any(p.startswith("the answer key fails public tests: test_softmax_is_wrong_on_purpose: the key fails")
               for p in verdict.problems), verdict.problems


def test_blocks_match_at_any_indentation_and_keep_it():
    source = "class A:\n    def f(self):\n        x = 1\n        return x\n"
    mutant = Mutant("m", "bug", ["t"], [("x = 1\nreturn x", "return 2")])
    assert mutant.apply(source) == "class A:\n    def f(self):\n        return 2\n"


def test_a_mutant_applies_to_the_one_notebook_cell_that_holds_its_text():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook(cells=[new_markdown_cell("a = 1 in prose"), new_code_cell("a = 1"), new_code_cell("b = a")])
    buggy = Mutant("m", "bug", ["t"], [("a = 1", "a = 2")]).apply_to_notebook(nb)
    assert [c.source for c in buggy.cells] == ["a = 1 in prose", "a = 2", "b = a"]
    assert nb.cells[1].source == "a = 1", "the answer key itself is left alone"
    with pytest.raises(MutantError, match="exactly one cell"):
        Mutant("m", "bug", ["t"], [("b = a", "b = 0")]).apply_to_notebook(
            new_notebook(cells=[new_code_cell("b = a"), new_code_cell("b = a")]))
