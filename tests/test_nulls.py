"""Null variants: each part's code replaced by code that does nothing must earn nothing but shape points."""

from __future__ import annotations

import textwrap

import pytest
import torch

from autograder.grading.nulls import NullVariant, null, null_variants, student_targets

SOLVED = "    ### BEGIN SOLUTION\n    {}\n    ### END SOLUTION\n"


def cell(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


CELLS = [
    ("import torch", None),
    (cell('''
        def helper(x):
            return x

        def attention(q, k, v):
            ### BEGIN SOLUTION
            return q
            ### END SOLUTION
        '''), None),
    ("check('w', 'attention')", "attention"),
    (cell('''
        class Block(torch.nn.Module):
            def __init__(self, dim):
                ### BEGIN SOLUTION
                super().__init__()
                ### END SOLUTION

            def forward(self, x):
                ### BEGIN SOLUTION
                return x
                ### END SOLUTION

            def extra_repr(self):
                return "given"
        '''), None),
    ("check('w', 'block')", "block"),
    ("def later():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", None),
]


def test_targets_are_the_solved_functions_and_methods_before_each_check():
    assert student_targets(CELLS) == {"attention": ["attention"], "block": ["Block.forward"]}


def test_three_kinds_per_part():
    names = [v.name for v in null_variants(CELLS)]
    assert names == [f"null:{p}:{k}" for p in ("attention", "block") for k in ("constant", "identity", "copy")]


def test_a_variant_is_the_key_with_plain_assignments_appended():
    source = NullVariant("block", "copy", ("Block.forward",)).source("import torch\n")
    assert source.startswith("import torch\n")
    assert "Block.forward = _vitssl_null(Block.forward, 'copy')" in source
    compile(source, "variant", "exec")


def double(x, scale=2.0):
    return torch.cat([x, x], 0) * scale


@pytest.mark.parametrize("kind", ["constant", "identity", "copy"])
def test_nulls_do_nothing_in_their_own_way(kind):
    x = torch.arange(6.0).reshape(2, 3)
    out = null(double, kind)(x)
    if kind == "identity":
        assert out is x
    elif kind == "constant":
        assert out.shape == (4, 3) and torch.all(out == double(x).mean())
    else:
        assert out.shape == (4, 3) and torch.equal(out, torch.cat([x, x], 0))


def test_a_training_loop_null_leaves_the_model_untrained_and_runs_the_loop_once():
    calls = []

    def train(model, x, steps=3):
        calls.append(steps)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for _ in range(steps):
            loss = model(x).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    model, x = torch.nn.Linear(3, 1), torch.randn(8, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    nothing = null(train, "constant")
    assert nothing(model, x) == [0.0, 0.0, 0.0]
    assert nothing(model, x, steps=5) == [0.0, 0.0, 0.0], "a result without tensors is worked out once"
    assert calls == [3]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the real model stays untrained"
