"""Trusted references for m2w02's hidden suite (the trusted side only).

Fixture names start with `m2w02_` so that they cannot clash with other weeks' fixtures.
`transformers` is imported here, once per session and only when a test asks for it (about
2-9 s on a busy 2-core machine, most of it torchvision, which transformers imports).
"""

from __future__ import annotations

import types
import warnings

import pytest


@pytest.fixture(scope="session")
def m2w02_hf() -> types.SimpleNamespace:
    """Hugging Face transformers' pure-PyTorch deformable attention and LW-DETR's loss code."""
    from transformers import DeformableDetrConfig
    from transformers.loss.loss_lw_detr import LwDetrHungarianMatcher, LwDetrImageLoss
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        DeformableDetrMultiscaleDeformableAttention, MultiScaleDeformableAttention)

    def module(d_model, n_levels, n_heads, n_points):
        config = DeformableDetrConfig(d_model=d_model, num_feature_levels=n_levels, use_timm_backbone=False,
                                      backbone_config=None, use_pretrained_backbone=False)
        with warnings.catch_warnings():  # it warns when d_model / n_heads is not a power of 2
            warnings.simplefilter("ignore")
            return DeformableDetrMultiscaleDeformableAttention(config, num_heads=n_heads, n_points=n_points)

    return types.SimpleNamespace(core=MultiScaleDeformableAttention(), module=module,
                                 Matcher=LwDetrHungarianMatcher, ImageLoss=LwDetrImageLoss)
