"""A full-factorial set of images with known factors of variation (in the spirit of
dSprites): every combination of shape, scale, rotation and horizontal position, once.
Disentanglement metrics need exactly this: each factor varies over all values of the others."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import torch

NAMES = ("shape", "scale", "rotation", "position")
SHAPES = ("square", "ellipse", "triangle")
SCALES = tuple(3.25 + i for i in range(6))                # half-size in pixels, a pixel apart: all distinct
ROTATIONS = tuple(18.0 * i for i in range(5))             # degrees; none is a symmetry of any shape
POSITIONS = tuple(12.5 + 2.25 * i for i in range(4))      # centre x in pixels; y is the image centre


@dataclass(frozen=True)
class Factors:
    images: torch.Tensor     # [3·6·5·4 = 360, 1, size, size]: the share of each pixel the shape covers
    factors: torch.Tensor    # [360, 4] long: the index of each factor's value
    names: tuple[str, ...] = NAMES
    sizes: tuple[int, ...] = (len(SHAPES), len(SCALES), len(ROTATIONS), len(POSITIONS))


def factors(size: int = 32, supersample: int = 4) -> Factors:
    """Every combination, in lexicographic order of (shape, scale, rotation, position). Each
    pixel holds the share of it that the shape covers (`supersample`² samples per pixel), so
    that small changes of scale or rotation change the image."""
    if size < 32:
        raise ValueError(f"the largest shapes need 32 pixels, not {size}")
    fine = (torch.arange(size * supersample) + 0.5) / supersample
    ys, xs = torch.meshgrid(fine, fine, indexing="ij")
    combos = list(product(*(range(k) for k in (len(SHAPES), len(SCALES), len(ROTATIONS), len(POSITIONS)))))
    images = torch.zeros(len(combos), 1, size, size)
    for i, (shape, scale, rotation, position) in enumerate(combos):
        angle = math.radians(ROTATIONS[rotation])
        dx, dy = xs - POSITIONS[position], ys - size / 2
        u = (math.cos(angle) * dx + math.sin(angle) * dy) / SCALES[scale]   # object coordinates
        v = (-math.sin(angle) * dx + math.cos(angle) * dy) / SCALES[scale]
        if SHAPES[shape] == "square":
            inside = (u.abs() <= 1) & (v.abs() <= 1)
        elif SHAPES[shape] == "ellipse":
            inside = u ** 2 + (v / 0.6) ** 2 <= 1
        else:
            inside = (v <= 0.5) & (v >= 2 * u.abs() - 1)
        images[i, 0] = torch.nn.functional.avg_pool2d(inside.float()[None], supersample)[0]
    return Factors(images, torch.tensor(combos, dtype=torch.long))
