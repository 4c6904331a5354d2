"""The kit's trusted-module helpers: random non-trivial weights, strict loading with names
and shapes in the message, seeds and threads."""

import pytest
import torch
from torch import nn

from autograder.kit import check_names, load_same_weights, randn, randomize, setup


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        for name in ("cls_token", "dist_token", "reg_token", "mask_token"):
            setattr(self, name, nn.Parameter(torch.zeros(1, 1, 4)))
        self.pos_embed = nn.Parameter(torch.zeros(1, 3, 4))
        self.bn = nn.BatchNorm1d(4)
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 3)


def test_randomize_is_seeded_and_leaves_nothing_trivial():
    a, b = randomize(Tokens(), seed=7), randomize(Tokens(), seed=7)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), f"{name} differs for the same seed"
        assert p.abs().min() > 0, f"{name} has a zero entry (a bias timm leaves at zero would go unchecked)"
    assert not torch.allclose(a.norm.weight, torch.ones(4)), "norm weights move away from 1"
    assert a.cls_token.std() > 0.2 and a.reg_token.std() > 0.2, "tokens are drawn at scale 0.5"
    assert a.bn.running_mean.abs().min() > 0 and not torch.allclose(a.bn.running_var, torch.ones(4))
    assert (a.bn.running_var >= 0.5).all() and (a.bn.running_var < 1.5).all()
    assert not torch.equal(randomize(Tokens(), seed=8).fc.weight, a.fc.weight)


def test_check_names_lists_missing_and_unexpected_names_and_hints_at_derived_buffers():
    trusted = {"fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(3)}
    student = {"fc.weight": torch.zeros(3, 4), "linear.bias": torch.zeros(3), "attn.relative_position_index": 0}
    with pytest.raises(AssertionError) as info:
        check_names(student, trusted, "MLP")
    message = str(info.value)
    assert "missing ['fc.bias']" in message and "'linear.bias'" in message and "persistent=False" in message
    with pytest.raises(AssertionError, match=r"MLP entry `fc.weight` should have shape \(3, 4\)"):
        check_names({"fc.weight": torch.zeros(4, 3), "fc.bias": torch.zeros(3)}, trusted, "MLP")


def test_load_same_weights_makes_outputs_equal_in_float64_and_eval_mode():
    trusted = randomize(nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.5), nn.Linear(5, 2)), seed=1)
    student = nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.5), nn.Linear(5, 2)).train()
    load_same_weights(student, trusted, "net")
    x = randn(3, 4, seed=0)
    assert not student.training and student[0].weight.dtype == torch.float64
    assert torch.equal(student(x), trusted(x))


def test_randn_is_seeded_and_float32_is_float64_rounded():
    assert torch.equal(randn(2, 3, seed=4), randn(2, 3, seed=4))
    assert torch.equal(randn(2, 3, seed=4, dtype=torch.float32), randn(2, 3, seed=4).float())
    assert not torch.equal(randn(2, 3, seed=4), randn(2, 3, seed=5))


def test_setup_sets_threads_and_seeds():
    before = torch.get_num_threads()
    try:
        g = setup(seed=3, threads=1)
        assert torch.get_num_threads() == 1
        first = torch.rand(2)
        setup(seed=3, threads=1)
        assert torch.equal(first, torch.rand(2))
        assert torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=torch.Generator().manual_seed(3)))
    finally:
        torch.set_num_threads(before)
