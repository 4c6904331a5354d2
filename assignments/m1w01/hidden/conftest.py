"""Shared data and trusted models for m1w01's hidden suite (the trusted side only).

Fixture names start with `m1w01_` so that they cannot clash with other weeks' fixtures.
"""

from __future__ import annotations

import types
from functools import partial

import pytest
import torch
from torch import nn

from autograder.kit.data import digits


@pytest.fixture(scope="session")
def m1w01_timm() -> types.SimpleNamespace:
    """timm's modules, with the constructor arguments that match the notebook's contract."""
    from timm.layers import Mlp, PatchEmbed
    from timm.models import vision_transformer as vt

    norm = partial(nn.LayerNorm, eps=1e-6)  # VisionTransformer's default; Block's own default differs
    return types.SimpleNamespace(
        PatchEmbed=lambda **kw: PatchEmbed(**kw),
        Attention=lambda **kw: vt.Attention(**kw),
        Mlp=lambda **kw: Mlp(**kw),
        Block=lambda **kw: vt.Block(norm_layer=norm, **kw),
        VisionTransformer=lambda **kw: vt.VisionTransformer(**kw),
    )


@pytest.fixture(scope="session")
def m1w01_digits() -> dict[str, torch.Tensor]:
    """scikit-learn's 8x8 digits in [0, 1], [n, 1, 8, 8]; a fixed split of 1297 train / 500 test."""
    return digits().as_dict()
