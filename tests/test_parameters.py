"""`randomize`: trusted modules get random, non-trivial weights, the same for the same seed."""

import torch
from torch import nn

from autograder.testing import randomize


def test_randomize_is_seeded_and_leaves_nothing_trivial():
    a = randomize(nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)), seed=7)
    b = randomize(nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)), seed=7)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), f"{name} differs for the same seed"
        assert p.abs().min() > 0, f"{name} has a zero entry (a bias timm leaves at zero would go unchecked)"
    assert not torch.allclose(a[1].weight, torch.ones(3)), "norm weights move away from 1"
