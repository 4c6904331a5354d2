"""Image corruptions at five severities, as in CIFAR-10-C (Hendrycks and Dietterich 2019),
whose constants suit small images; each parameter table below is the one in the original
CIFAR-10-C generation code (`make_cifar_c.py`).

Images are [..., C, H, W] in [0, 1]; results are clipped to [0, 1]. Noise is drawn from a
seeded generator, so a corruption is the same for the same seed.
"""

from __future__ import annotations

from typing import Callable

import torch

from autograder.kit.seeding import generator

SEVERITIES = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),   # std of additive noise
    "shot_noise": (500, 250, 100, 75, 50),               # photons per unit intensity (Poisson)
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),     # fraction of values set to 0 or 1 (salt and pepper)
    "speckle_noise": (0.06, 0.10, 0.12, 0.16, 0.20),     # std of multiplicative noise
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),             # factor towards each channel's mean
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),           # added to the HSV value channel
}


def _gaussian_noise(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    return x + c * torch.randn(x.shape, generator=g, dtype=x.dtype)


def _shot_noise(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    return torch.poisson(x * c, generator=g) / c


def _impulse_noise(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    hit = torch.rand(x.shape, generator=g) < c
    salt = torch.rand(x.shape, generator=g) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def _speckle_noise(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    return x + x * c * torch.randn(x.shape, generator=g, dtype=x.dtype)


def _contrast(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    means = x.mean(dim=(-2, -1), keepdim=True)
    return (x - means) * c + means


def _brightness(x: torch.Tensor, c: float, g: torch.Generator) -> torch.Tensor:
    """HSV value V = max over channels moves to min(V + c, 1) with hue and saturation kept: each
    channel scales by V'/V (black pixels, whose hue is undefined, become grey V')."""
    value = x.amax(dim=-3, keepdim=True)
    brighter = (value + c).clamp(0, 1)
    return torch.where(value > 0, x * brighter / value.clamp_min(1e-12), brighter.expand_as(x))


CORRUPTIONS: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise, "contrast": _contrast, "brightness": _brightness,
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """`images` with corruption `name` at `severity` 1 (mild) to 5 (strong)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if severity not in range(1, 6):
        raise ValueError(f"severity must be 1 to 5, not {severity}")
    c = SEVERITIES[name][severity - 1]
    return CORRUPTIONS[name](images, c, generator(seed)).clamp(0, 1)
