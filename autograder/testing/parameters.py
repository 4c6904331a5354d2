"""Trusted modules with weights worth comparing against.

timm's initialisation leaves biases at zero and the class token tiny, so a student's
module that ignores a bias or the class token would still match. Hidden suites give the
trusted module random, non-trivial values first, then load them into the student's.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter random and non-trivial, drawn in float64 from `seed`: tokens and
    position embeddings at scale 0.5, matrices scaled by fan-in, norm weights near 1,
    everything else at scale 0.2. Returns the module."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            if name.endswith(("cls_token", "pos_embed")):
                p.copy_(0.5 * noise)
            elif p.dim() >= 2:
                p.copy_(noise / math.sqrt(p[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.2 * noise)
    return module
