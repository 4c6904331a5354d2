"""Gaussian data with known answers: a mixture with known clusters, and correlated pairs
with a known mutual information."""

from __future__ import annotations

import math

import torch

from autograder.kit.seeding import generator


def gaussian_mixture(n: int, seed: int = 0, clusters: int = 10, dim: int = 8, separation: float = 2.0
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` points [n, dim] from `clusters` equally likely unit-variance Gaussians whose centres
    are N(0, separation² I); returns the points, their clusters and the centres."""
    g = generator(seed)
    centres = separation * torch.randn(clusters, dim, generator=g)
    labels = torch.randint(clusters, (n,), generator=g)
    return centres[labels] + torch.randn(n, dim, generator=g), labels, centres


def correlated_gaussians(n: int, dim: int, rho: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (x, y) of standard normal vectors [n, dim] whose coordinates are correlated by
    `rho` pairwise (corr(x_i, y_i) = rho, independent across i): y = rho·x + sqrt(1 - rho²)·e."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie strictly between -1 and 1, not {rho}")
    g = generator(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho * rho) * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x, y


def gaussian_mi(dim: int, rho: float) -> float:
    """The mutual information of `correlated_gaussians`, in nats: -(dim / 2)·log(1 - rho²)."""
    return -0.5 * dim * math.log(1 - rho * rho)
