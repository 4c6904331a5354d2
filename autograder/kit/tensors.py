"""Seeded random tensors for test inputs."""

from __future__ import annotations

import torch

from autograder.kit.seeding import generator


def randn(*shape: int, seed: int, scale: float = 1.0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard normal entries times `scale`, drawn in float64 from `seed` and then cast, so
    the float32 and float64 versions of one input agree to float32 precision."""
    values = torch.randn(*shape, generator=generator(seed), dtype=torch.float64)
    return (scale * values).to(dtype)
